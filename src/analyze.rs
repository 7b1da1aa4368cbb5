//! Collapse analysis of weights trained anywhere (`fcollapse analyze`, and the
//! Python functions built on it).
//!
//! Given a task and weights `(W, U)` — `W` an `n_w x d` embedding (a PyTorch
//! `nn.Embedding` weight), `U` a `K x (L d)` classifier (an `nn.Linear` weight,
//! row `j` being `u_{j,0} .. u_{j,L-1}`) or `K x L x d` — [`analyze`] reports:
//!
//! - every measure of [`metrics::collapse_metrics`];
//! - [`metrics::within_concept_spread`], `||Phi - M||_F / ||Phi||_F`;
//! - the neural-collapse measures NC1–NC4 of [`metrics::nc_metrics`] (tokens by
//!   concept, sentence features by class with `U` as classifier; NC4 of the
//!   classes on `samples` sentences, seeded, or all of them when fewer);
//! - for each form of the prediction ([`collapse::predict`]), the distance
//!   [`metrics::family_distance`] of `(W, U)` to the predicted collapsed family;
//! - the limit risk `R(W, U)`: exact ([`limit::risk`]) when
//!   [`limit::check_budget`] allows the enumeration, otherwise the stratified
//!   Monte-Carlo estimate of [`sampled_risk`] with its standard error.
//!
//! The Hessian spectrum at the weights (`analyze --hessian`) is
//! [`crate::spectrum::hessian_spectrum`], drawn by [`crate::spectrum::density_figure`].

use crate::collapse::{self, Form, Prediction};
use crate::error::{Error, Result};
use crate::limit;
use crate::metrics::{self, CollapseMetrics, FamilyDistance, NcMetrics};
use crate::network::{cross_entropy, features, scores, Params};
use crate::npy::NpyArray;
use crate::plots;
use crate::task::{RankSampler, Task};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Settings of [`analyze`].
#[derive(Debug, Clone, PartialEq)]
pub struct AnalyzeConfig {
    /// Work budget of the exact limit risk (see [`limit::check_budget`]).
    pub budget: f64,
    /// Sentences drawn in all (split evenly over the classes, at least 2 per
    /// class) when the limit risk is estimated by sampling; also the sentences
    /// behind NC4 of the classes ([`metrics::nc_metrics`]).
    pub samples: usize,
    /// Seed of the sampled estimate.
    pub seed: u64,
}

impl Default for AnalyzeConfig {
    fn default() -> Self {
        AnalyzeConfig {
            budget: limit::DEFAULT_WORK_BUDGET,
            samples: 20_000,
            seed: 0,
        }
    }
}

impl AnalyzeConfig {
    /// Checks `budget > 0` and `samples >= 1`.
    pub fn validate(&self) -> Result<()> {
        if self.budget.is_nan() || self.budget <= 0.0 {
            return Err(Error::invalid("budget", self.budget, "must be > 0"));
        }
        if self.samples == 0 {
            return Err(Error::invalid("samples", 0, "must be >= 1"));
        }
        Ok(())
    }
}

/// The limit risk `R(W, U)` as reported.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LimitRisk {
    /// `R(W, U)` (exact) or its estimate (sampled).
    pub value: f64,
    /// True when enumerated exactly.
    pub exact: bool,
    /// Standard error of a sampled estimate.
    pub std_error: Option<f64>,
    /// Sentences drawn for a sampled estimate.
    pub n_samples: Option<usize>,
    /// Why the exact enumeration was not done (the budget refusal).
    pub note: Option<String>,
}

/// Distance of the weights to the collapsed family of one form of the prediction.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FamilyMatch {
    pub form: Form,
    pub prediction: Option<Prediction>,
    pub distance: Option<FamilyDistance>,
    /// Why there is no prediction in this form (e.g. no weight decay).
    pub error: Option<String>,
}

/// Everything [`analyze`] measures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Analysis {
    pub task: Task,
    pub metrics: CollapseMetrics,
    /// `||Phi - M||_F / ||Phi||_F` ([`metrics::within_concept_spread`]).
    pub within_concept_spread: f64,
    pub families: Vec<FamilyMatch>,
    pub limit_risk: LimitRisk,
    /// NC1–NC4 ([`metrics::nc_metrics`]).
    pub nc: NcMetrics,
}

/// Python-style shape, `(6, 4)`.
fn shape_str(shape: &[usize]) -> String {
    let parts: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    if parts.len() == 1 {
        format!("({},)", parts[0])
    } else {
        format!("({})", parts.join(", "))
    }
}

/// The values of a float array, or an error naming `origin` and the expected array.
pub fn float_values(
    name: &'static str,
    origin: &str,
    a: &NpyArray,
    expected: &str,
) -> Result<Vec<f64>> {
    let v = a.to_f64().ok_or_else(|| {
        Error::invalid(
            name,
            origin,
            format!(
                "expected a float32 or float64 array {expected}, found dtype '{}' shape {}",
                a.descr,
                shape_str(&a.shape)
            ),
        )
    })?;
    check_finite(name, origin, &v)?;
    Ok(v)
}

/// Refuses weights with a NaN or infinite entry, naming the first one.
fn check_finite(name: &'static str, origin: &str, v: &[f64]) -> Result<()> {
    match v.iter().position(|x| !x.is_finite()) {
        Some(i) => Err(Error::invalid(
            name,
            origin,
            format!(
                "entry {i} (flat, C order) is {}: weights must be finite",
                v[i]
            ),
        )),
        None => Ok(()),
    }
}

/// Weights `(W, U)` for `task` from row-major arrays: `W` shaped `(n_w, d)` and
/// `U` shaped `(K, L d)` (the `nn.Linear` layout) or `(K, L, d)`. `w_origin` and
/// `u_origin` (file names, or `"W"`/`"U"`) name the culprit in the error, which
/// also states the expected shape or the first entry that is not finite.
pub fn params_from_arrays(
    task: &Task,
    (w_shape, w, w_origin): (&[usize], Vec<f64>, &str),
    (u_shape, u, u_origin): (&[usize], Vec<f64>, &str),
) -> Result<Params> {
    let (n_w, d, k, len) = (task.n_w(), task.dim(), task.k(), task.len());
    if w_shape != [n_w, d] {
        return Err(Error::invalid(
            "w",
            w_origin,
            format!(
                "expected shape (n_w, d) = ({n_w}, {d}) (an nn.Embedding weight), found {}",
                shape_str(w_shape)
            ),
        ));
    }
    if u_shape != [k, len * d] && u_shape != [k, len, d] {
        return Err(Error::invalid(
            "u",
            u_origin,
            format!(
                "expected shape (K, L*d) = ({k}, {}) (an nn.Linear weight) or (K, L, d) = ({k}, {len}, {d}), found {}{}",
                len * d,
                shape_str(u_shape),
                if task.full_latent() && u_shape.first().is_some_and(|&r| r != k) {
                    "; for drawn latent variables give them (--z) or --classes"
                } else {
                    ""
                }
            ),
        ));
    }
    check_finite("w", w_origin, &w)?;
    check_finite("u", u_origin, &u)?;
    if task.norm().is_affine() {
        return Err(Error::invalid(
            "norm",
            task.norm().name(),
            "the weights are W and U only; layer-affine also needs its gain and bias",
        ));
    }
    let mut p = Params::zeros(task);
    p.w = w;
    p.u = u;
    Ok(p)
}

/// Latent variables from a `(K, L)` integer array with entries in `0..n_c` and
/// distinct rows (row-major, as [`Task::z`]).
pub fn latent_from_array(origin: &str, a: &NpyArray, n_c: usize, len: usize) -> Result<Vec<usize>> {
    let expected = format!("of shape (K, L) = (K, {len}) with entries in 0..{n_c}");
    let bad = |why: String| Error::invalid("z", origin, why);
    let ints = a.as_ints().ok_or_else(|| {
        bad(format!(
            "expected an integer array {expected}, found dtype '{}' shape {}",
            a.descr,
            shape_str(&a.shape)
        ))
    })?;
    if a.shape.len() != 2 || a.shape[1] != len || a.shape[0] == 0 {
        return Err(bad(format!(
            "expected an integer array {expected}, found shape {}",
            shape_str(&a.shape)
        )));
    }
    let z: Vec<usize> = ints
        .iter()
        .map(|&v| {
            usize::try_from(v)
                .ok()
                .filter(|&x| x < n_c)
                .ok_or_else(|| bad(format!("entry {v} is outside 0..{n_c}")))
        })
        .collect::<Result<_>>()?;
    match crate::task::repeated_rows(&z, len) {
        Some(pair) => Err(crate::task::repeated_rows_error("z", origin, &z, len, pair)),
        None => Ok(z),
    }
}

/// Stratified Monte-Carlo estimate of the data term of `R(W, U)` plus the exact
/// penalty: for each class `k`, `n_per_class` sentences `x_l = (z_{k,l}, beta_l)`
/// with `beta_l ~ mu` i.i.d.; the estimate is
/// `(1/K) sum_k mean_i CE(h(x_{k,i}), k) + (lambda_W/2)||W||^2 + (lambda_U/2)||U||^2`
/// and its standard error `sqrt(sum_k s_k^2 / n_per_class) / K`, with `s_k^2` the
/// unbiased sample variance of the losses of class `k` (`n_per_class >= 2`).
/// Deterministic in `seed` (one ChaCha8 stream per class), whatever the thread count.
/// Cost `O(K n_per_class K L d)` (every sentence scores all `K` classes).
pub fn sampled_risk(task: &Task, p: &Params, n_per_class: usize, seed: u64) -> (f64, f64) {
    let n = n_per_class.max(2);
    let phi = features(p, task.norm());
    let sampler = RankSampler::new(task.mu());
    let per_class: Vec<(f64, f64)> = (0..task.k())
        .into_par_iter()
        .map(|k| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            rng.set_stream(k as u64);
            let z = task.z_of(k);
            let mut sentence = vec![0u32; task.len()];
            let (mut sum, mut sum2) = (0.0, 0.0);
            for _ in 0..n {
                for (x, &alpha) in sentence.iter_mut().zip(z) {
                    *x = task.token(alpha, sampler.sample(&mut rng)) as u32;
                }
                let ce = cross_entropy(&scores(p, &phi, &sentence), k);
                sum += ce;
                sum2 += ce * ce;
            }
            let mean = sum / n as f64;
            let var = ((sum2 - n as f64 * mean * mean) / (n as f64 - 1.0)).max(0.0);
            (mean, var)
        })
        .collect();
    let k = task.k() as f64;
    let data = per_class.iter().map(|c| c.0).sum::<f64>() / k;
    let se = (per_class.iter().map(|c| c.1).sum::<f64>() / n as f64).sqrt() / k;
    (data + task.penalty(p), se)
}

/// `R(W, U)`: exact when [`limit::check_budget`]`(task, cfg.budget)` passes,
/// else [`sampled_risk`] with `ceil(cfg.samples / K)` (at least 2) sentences per class.
pub fn limit_risk(task: &Task, p: &Params, cfg: &AnalyzeConfig) -> LimitRisk {
    match limit::check_budget(task, cfg.budget) {
        Ok(()) => LimitRisk {
            value: limit::risk(task, p),
            exact: true,
            std_error: None,
            n_samples: None,
            note: None,
        },
        Err(e) => {
            let per_class = cfg.samples.div_ceil(task.k()).max(2);
            let (value, se) = sampled_risk(task, p, per_class, cfg.seed);
            LimitRisk {
                value,
                exact: false,
                std_error: Some(se),
                n_samples: Some(per_class * task.k()),
                note: Some(e.to_string()),
            }
        }
    }
}

/// The forms whose prediction is compared: `full` on the full latent set, else
/// `latent-set` and `mean-field`.
fn forms(task: &Task) -> Vec<Form> {
    if task.full_latent() {
        vec![Form::Full]
    } else {
        vec![Form::LatentSet, Form::MeanField]
    }
}

/// Largest weight magnitude [`analyze`] accepts: the metrics square and sum
/// the weights, so larger entries would overflow `f64` into `inf`/NaN.
pub const MAX_WEIGHT: f64 = 1e100;

/// Weights whose metrics are finite: every entry finite and at most
/// [`MAX_WEIGHT`] in magnitude, and with LayerNorm at `eps = 0` no constant row
/// of `W` (its variance is 0 and LayerNorm divides by it). Refused as bad input,
/// naming the input, otherwise.
pub fn check_weights(task: &Task, p: &Params) -> Result<()> {
    for (name, v) in [("w", &p.w), ("u", &p.u)] {
        check_finite(name, "the weights", v)?;
        let m = v.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        if m > MAX_WEIGHT {
            return Err(Error::invalid(
                name,
                format!("max |entry| {m:e}"),
                format!("is over {MAX_WEIGHT:e}: the metrics would overflow double precision; rescale the weights"),
            ));
        }
    }
    if task.norm().eps() == Some(0.0) {
        let d = task.dim();
        for (t, row) in p.w.chunks(d).enumerate() {
            if row.iter().all(|x| *x == row[0]) {
                return Err(Error::invalid(
                    "w",
                    format!("row {t}"),
                    "is constant: the normalization with eps = 0 divides by its zero spread; pass --eps > 0 (e.g. 1e-5, as in training)",
                ));
            }
        }
    }
    Ok(())
}

/// All measures of `(W, U)` for `task` (see the module doc). The predictions use
/// the theory's LayerNorm (`eps = 0`) when the task has LayerNorm; the limit
/// risk uses the task as given.
pub fn analyze(task: &Task, p: &Params, cfg: &AnalyzeConfig) -> Result<Analysis> {
    cfg.validate()?;
    check_weights(task, p)?;
    let theory = task.with_norm(task.norm().with_eps(0.0))?;
    let families = forms(task)
        .into_iter()
        .map(|form| match collapse::predict(&theory, form) {
            Ok(pred) => FamilyMatch {
                form,
                distance: Some(metrics::family_distance(task, p, &pred)),
                prediction: Some(pred),
                error: None,
            },
            Err(e) => FamilyMatch {
                form,
                prediction: None,
                distance: None,
                error: Some(e.report()),
            },
        })
        .collect();
    Ok(Analysis {
        task: task.clone(),
        metrics: metrics::collapse_metrics(task, p),
        within_concept_spread: metrics::within_concept_spread(task, p),
        families,
        limit_risk: limit_risk(task, p, cfg),
        nc: metrics::nc_metrics(task, p, cfg.samples, cfg.seed),
    })
}

/// Draws `DIR/analyze_{pca_w,pca_u,norms}.{png,svg}`: PCA scatters of `phi(w_t)`
/// and of the blocks `u_{k,l}` (first three concepts), and the norm of `phi(w)`
/// per frequency rank against the prediction's `r_beta`. Returns the PNG paths.
pub fn figures(task: &Task, p: &Params, a: &Analysis, dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let names: Vec<String> = (0..task.n_c().min(3))
        .map(|c| format!("concept {}", c + 1))
        .collect();
    let mut out = Vec::new();
    let stem = dir.join("analyze_pca_w");
    let (pw, lw) = metrics::pca_points_w(task, p);
    let pw2: Vec<[f64; 2]> = pw.iter().map(|q| [q[0], q[1]]).collect();
    plots::pca_scatter(
        &stem,
        "token representations phi(w_t), PCA",
        &pw2,
        &lw,
        &names,
        &a.metrics.pca_w,
    )?;
    out.push(stem.with_extension("png"));
    let (pu, lu) = metrics::pca_points_u(task, p);
    if !pu.is_empty() {
        let stem = dir.join("analyze_pca_u");
        let pu2: Vec<[f64; 2]> = pu.iter().map(|q| [q[0], q[1]]).collect();
        plots::pca_scatter(
            &stem,
            "classifier blocks u_(k,l) by z_(k,l), PCA",
            &pu2,
            &lu,
            &names,
            &a.metrics.pca_u,
        )?;
        out.push(stem.with_extension("png"));
    }
    let stem = dir.join("analyze_norms");
    let predicted = a
        .families
        .iter()
        .rev()
        .find_map(|f| f.prediction.as_ref())
        .map(|pr| pr.r.as_slice());
    plots::norms_vs_rank(
        &stem,
        "norm of phi(w) per frequency rank",
        &a.metrics.norm_by_rank,
        predicted,
        task.s_c() > 20,
    )?;
    out.push(stem.with_extension("png"));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::npy::NpyData;
    use crate::task::{Freq, TaskConfig};

    fn task() -> Task {
        TaskConfig {
            n_c: 3,
            s_c: 3,
            len: 2,
            dim: 4,
            freq: Freq::Zipf { exponent: 1.0 },
            ..TaskConfig::default()
        }
        .build()
        .unwrap()
    }

    #[test]
    fn sampled_risk_agrees_with_the_exact_risk() {
        let t = task();
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let p = Params::random(&t, 0.7, &mut rng);
        let exact = limit::risk(&t, &p);
        let (est, se) = sampled_risk(&t, &p, 4000, 11);
        assert!(se > 0.0 && se < 0.05 * exact, "se {se}, exact {exact}");
        assert!((est - exact).abs() < 4.0 * se, "{est} vs {exact} (se {se})");
        // Deterministic in the seed, different across seeds.
        assert_eq!(sampled_risk(&t, &p, 50, 1), sampled_risk(&t, &p, 50, 1));
        assert_ne!(sampled_risk(&t, &p, 50, 1).0, sampled_risk(&t, &p, 50, 2).0);
    }

    #[test]
    fn budget_picks_exact_or_sampled() {
        let t = task();
        let p = Params::random(&t, 0.5, &mut ChaCha8Rng::seed_from_u64(1));
        let exact = limit_risk(&t, &p, &AnalyzeConfig::default());
        assert!(exact.exact && exact.std_error.is_none());
        assert_eq!(exact.value, limit::risk(&t, &p));
        let cfg = AnalyzeConfig {
            budget: 1.0,
            samples: 900,
            seed: 5,
        };
        let s = limit_risk(&t, &p, &cfg);
        assert!(!s.exact);
        assert_eq!(s.n_samples, Some(900));
        assert!(s.note.as_deref().unwrap().contains("budget"));
        assert!((s.value - exact.value).abs() < 5.0 * s.std_error.unwrap());
    }

    #[test]
    fn shapes_and_dtypes_are_checked_with_the_expected_shape() {
        let t = task();
        let (nw, d, k) = (t.n_w(), t.dim(), t.k());
        let w = vec![0.5; nw * d];
        let u = vec![0.25; k * 2 * d];
        let p = params_from_arrays(
            &t,
            (&[nw, d], w.clone(), "W.npy"),
            (&[k, 2, d], u.clone(), "U.npy"),
        )
        .unwrap();
        assert_eq!(p.u_block(k - 1, 1), &[0.25; 4][..]);
        let err = params_from_arrays(
            &t,
            (&[d, nw], w.clone(), "W.npy"),
            (&[k, 2 * d], u.clone(), "U.npy"),
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("W.npy") && msg.contains("(9, 4)") && msg.contains("(4, 9)"),
            "{msg}"
        );
        assert!(err.is_bad_input());
        let msg = params_from_arrays(
            &t,
            (&[nw, d], w, "W.npy"),
            (&[k, d], vec![0.0; k * d], "U.npy"),
        )
        .unwrap_err()
        .to_string();
        assert!(msg.contains("U.npy") && msg.contains("(9, 8)"), "{msg}");

        let ints = NpyArray {
            shape: vec![2, 2],
            descr: "<i8".into(),
            fortran_order: false,
            data: NpyData::Int(vec![0, 2, 1, 1]),
        };
        assert_eq!(
            latent_from_array("Z.npy", &ints, 3, 2).unwrap(),
            vec![0, 2, 1, 1]
        );
        let msg = latent_from_array("Z.npy", &ints, 2, 2)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("entry 2 is outside 0..2"), "{msg}");
        let msg = latent_from_array("Z.npy", &ints, 3, 3)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("(K, 3)"), "{msg}");
        let msg = float_values("w", "Z.npy", &ints, "(n_w, d)")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("'<i8'") && msg.contains("Z.npy"), "{msg}");
    }

    #[test]
    fn analysis_of_a_built_collapse_is_near_zero() {
        // Weights on the predicted family: every distance and spread ~ 0.
        let t = TaskConfig {
            n_c: 3,
            s_c: 2,
            len: 2,
            dim: 4,
            ..TaskConfig::default()
        }
        .build()
        .unwrap();
        let pred = collapse::predict(&t, Form::Full).unwrap();
        let frame = collapse::equiangular_frame(t.n_c(), t.dim(), false).unwrap();
        let p = collapse::build(&t, &pred, &frame);
        let a = analyze(&t, &p, &AnalyzeConfig::default()).unwrap();
        assert_eq!(a.families.len(), 1);
        let dist = a.families[0].distance.as_ref().unwrap();
        assert!(dist.max < 1e-10, "{dist:?}");
        assert!(a.within_concept_spread < 1e-12);
        assert!(a.limit_risk.exact);
        assert!((a.limit_risk.value - pred.risk).abs() < 1e-8 * pred.risk.abs().max(1.0));
        // Moving one token breaks the collapse and shows in every measure.
        let mut q = p.clone();
        q.w[0] += 0.3;
        let b = analyze(&t, &q, &AnalyzeConfig::default()).unwrap();
        assert!(b.families[0].distance.as_ref().unwrap().max > 1e-3);
        assert!(b.within_concept_spread > 1e-3);
        assert!(b.limit_risk.value > a.limit_risk.value);
    }
}
