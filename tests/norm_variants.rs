//! The normalization axis (`feature_collapse::norm`): the exact limit risk's and
//! the sample risk's gradients against finite differences for every variant, the
//! Gray-code risk against the naive one, the identities that define `center` and
//! `rms`, and loading settings and weights written before the axis existed.

use feature_collapse::empirical::{sample_risk, sample_risk_grad, WeightedSample};
use feature_collapse::limit::{risk, risk_grad, risk_naive};
use feature_collapse::network::{standard_normal, Params};
use feature_collapse::norm::Norm;
use feature_collapse::task::{Freq, Task, TaskConfig};
use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn variant(i: u8, eps: f64) -> Norm {
    match i {
        0 => Norm::None,
        1 => Norm::Layer { eps },
        2 => Norm::Rms { eps },
        3 => Norm::Center,
        _ => Norm::LayerAffine { eps },
    }
}

#[derive(Debug, Clone)]
struct Spec {
    n_c: usize,
    s_c: usize,
    len: usize,
    dim: usize,
    classes: Option<usize>,
    norm: u8,
    eps: f64,
    zipf: bool,
    lambda_w: f64,
    lambda_u: f64,
    lambda_affine: f64,
    seed: u64,
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        (2usize..=3, 1usize..=3, 1usize..=3, 2usize..=4),
        prop_oneof![Just(None), (2usize..=6).prop_map(Some)],
        (0u8..=4, prop_oneof![Just(0.0), Just(1e-5), Just(0.1)]),
        any::<bool>(),
        (0.0f64..0.1, 0.0f64..0.1, 0.0f64..0.1),
        any::<u64>(),
    )
        .prop_map(
            |((n_c, s_c, len, dim), classes, (norm, eps), zipf, (lw, lu, la), seed)| Spec {
                n_c,
                s_c,
                len,
                dim,
                classes,
                norm,
                eps,
                zipf,
                lambda_w: lw,
                lambda_u: lu,
                lambda_affine: la,
                seed,
            },
        )
}

impl Spec {
    fn task(&self) -> Task {
        let full = self.n_c.pow(self.len as u32);
        TaskConfig {
            n_c: self.n_c,
            s_c: self.s_c,
            len: self.len,
            dim: self.dim,
            classes: self.classes.filter(|&k| k <= full),
            freq: if self.zipf {
                Freq::Zipf { exponent: 1.0 }
            } else {
                Freq::Uniform
            },
            norm: Some(variant(self.norm, self.eps)),
            lambda_w: self.lambda_w,
            lambda_u: self.lambda_u,
            lambda_affine: Some(self.lambda_affine),
            seed: self.seed,
            ..Default::default()
        }
        .build()
        .unwrap()
    }

    /// Random weights, the gain and bias perturbed away from `(1, 0)`.
    fn params(&self, task: &Task) -> Params {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ 0x5eed);
        let mut p = Params::random(task, 0.8, &mut rng);
        for v in p.gain.iter_mut().chain(p.bias.iter_mut()) {
            *v += 0.5 * standard_normal(&mut rng);
        }
        p
    }
}

/// Central differences of `f` at `x0` in the coordinates `idx`, against `g`.
fn check_fd(f: impl Fn(&[f64]) -> f64, x0: &[f64], g: &[f64], idx: &[usize], what: &str) {
    let h = 1e-6;
    for &i in idx {
        let mut xp = x0.to_vec();
        xp[i] += h;
        let mut xm = x0.to_vec();
        xm[i] -= h;
        let fd = (f(&xp) - f(&xm)) / (2.0 * h);
        assert!(
            (fd - g[i]).abs() <= 2e-6 * (1.0 + g[i].abs()),
            "{what} coordinate {i}: finite difference {fd} vs gradient {}",
            g[i]
        );
    }
}

/// Every 5th coordinate, and all the affine ones.
fn coordinates(task: &Task, n: usize) -> Vec<usize> {
    let aff = task.norm().n_affine(task.dim());
    (0..n - aff).step_by(5).chain(n - aff..n).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn limit_gradient_matches_finite_differences_for_every_norm(s in spec()) {
        let task = s.task();
        let p = s.params(&task);
        let (r, g) = risk_grad(&task, &p);
        let x0 = p.to_flat();
        prop_assert_eq!(g.len(), x0.len());
        prop_assert_eq!(x0.len(), task.n_params());
        let rn = risk_naive(&task, &p);
        prop_assert!((r - rn).abs() <= 1e-12 * rn.abs().max(1.0), "{} vs naive {}", r, rn);
        prop_assert!((risk(&task, &p) - r).abs() <= 1e-13 * r.abs().max(1.0));
        let what = format!("{} limit", task.norm());
        check_fd(|x| risk(&task, &p.with_flat(x)), &x0, &g, &coordinates(&task, x0.len()), &what);
    }

    #[test]
    fn sample_gradient_matches_finite_differences_for_every_norm(s in spec()) {
        let task = s.task();
        let p = s.params(&task);
        let mut rng = ChaCha8Rng::seed_from_u64(s.seed);
        let data = task.sample_sentences(2, &mut rng);
        let sample = WeightedSample::from_sentences(&data).unwrap();
        let (r, g) = sample_risk_grad(&task, &p, &sample);
        prop_assert!((r - sample_risk(&task, &p, &sample)).abs() <= 1e-12 * r.abs().max(1.0));
        let x0 = p.to_flat();
        let what = format!("{} sample", task.norm());
        check_fd(|x| sample_risk(&task, &p.with_flat(x), &sample), &x0, &g, &coordinates(&task, x0.len()), &what);
    }
}

fn zipf_task(norm: Norm, lambda_w: f64) -> Task {
    TaskConfig {
        n_c: 3,
        s_c: 3,
        len: 2,
        dim: 4,
        freq: Freq::Zipf { exponent: 1.0 },
        norm: Some(norm),
        lambda_w,
        ..Default::default()
    }
    .build()
    .unwrap()
}

/// `center` is `none` applied to `P W` (`P` the projection onto `1_d^perp`),
/// with the decay on the full `W`.
#[test]
fn center_is_no_norm_on_the_projected_embedding() {
    let c = zipf_task(Norm::Center, 0.03);
    let n = zipf_task(Norm::None, 0.03);
    let p = Params::random(&c, 0.9, &mut ChaCha8Rng::seed_from_u64(4));
    let mut q = p.clone();
    for row in q.w.chunks_mut(4) {
        let m = row.iter().sum::<f64>() / 4.0;
        row.iter_mut().for_each(|x| *x -= m);
    }
    let (w2, _) = p.sq_norms();
    let (pw2, _) = q.sq_norms();
    let expect = risk(&n, &q) + 0.5 * 0.03 * (w2 - pw2);
    assert!(
        (risk(&c, &p) - expect).abs() < 1e-13,
        "{} vs {expect}",
        risk(&c, &p)
    );
    assert!(w2 - pw2 > 0.1, "the test weights have a mean component");
}

/// With `eps = 0` and `lambda_W = 0`, `rms` is invariant under `w_t -> c_t w_t`
/// (`c_t > 0`), and unlike `layer` it sees the mean of `w_t`.
#[test]
fn rms_is_scale_invariant_but_not_shift_invariant() {
    let t = zipf_task(Norm::Rms { eps: 0.0 }, 0.0);
    let p = Params::random(&t, 0.9, &mut ChaCha8Rng::seed_from_u64(5));
    let mut scaled = p.clone();
    for (i, row) in scaled.w.chunks_mut(4).enumerate() {
        row.iter_mut().for_each(|x| *x *= 0.3 + i as f64);
    }
    assert!((risk(&t, &p) - risk(&t, &scaled)).abs() < 1e-13);
    let mut shifted = p.clone();
    shifted.w.iter_mut().for_each(|x| *x += 0.7);
    assert!((risk(&t, &p) - risk(&t, &shifted)).abs() > 1e-3);
    let l = zipf_task(Norm::Layer { eps: 0.0 }, 0.0);
    assert!((risk(&l, &p) - risk(&l, &shifted)).abs() < 1e-12);
}

/// `layer-affine` with `gamma = 1`, `beta = 0` is `layer` plus the affine decay
/// `(lambda_affine/2) d`.
#[test]
fn layer_affine_at_its_initialisation_is_layer_norm_plus_its_decay() {
    let a = zipf_task(Norm::LayerAffine { eps: 1e-5 }, 0.02);
    let l = zipf_task(Norm::Layer { eps: 1e-5 }, 0.02);
    let p = Params::random(&a, 0.9, &mut ChaCha8Rng::seed_from_u64(6));
    assert_eq!((p.gain.len(), p.bias.len()), (4, 4));
    assert_eq!(a.lambda_affine(), 0.02, "defaults to lambda_W");
    let q = Params {
        gain: Vec::new(),
        bias: Vec::new(),
        ..p.clone()
    };
    let expect = risk(&l, &q) + 0.5 * 0.02 * 4.0;
    assert!((risk(&a, &p) - expect).abs() < 1e-13);
}

/// Settings and weights written before the axis existed load as before.
#[test]
fn settings_and_weights_without_the_new_fields_load_unchanged() {
    let old = r#"{"n_c":3,"s_c":2,"len":2,"dim":4,"classes":null,"freq":{"kind":"uniform"},
        "layer_norm":1e-5,"lambda_w":0.01,"lambda_u":0.01,"seed":0}"#;
    let c: TaskConfig = serde_json::from_str(old).unwrap();
    assert_eq!(c.build().unwrap().norm(), Norm::Layer { eps: 1e-5 });
    let none = old.replace("1e-5", "null");
    let c: TaskConfig = serde_json::from_str(&none).unwrap();
    assert_eq!(c.build().unwrap().norm(), Norm::None);
    let new = none.replace(
        r#""seed":0"#,
        r#""seed":0,"norm":{"kind":"rms","eps":0.001}"#,
    );
    let c: TaskConfig = serde_json::from_str(&new).unwrap();
    let t = c.build().unwrap();
    assert_eq!(t.norm(), Norm::Rms { eps: 1e-3 });
    // the written task carries the norm and reads back
    let back: TaskConfig = serde_json::from_value(serde_json::to_value(&t).unwrap()).unwrap();
    assert_eq!(back.build().unwrap().norm(), t.norm());
    // norm and the legacy field disagreeing is bad input naming norm
    let both = new.replace(r#""layer_norm":null"#, r#""layer_norm":0.0"#);
    let e = serde_json::from_str::<TaskConfig>(&both)
        .unwrap()
        .build()
        .unwrap_err();
    assert!(e.is_bad_input() && e.to_string().contains("norm"), "{e}");
    let p: Params =
        serde_json::from_str(r#"{"n_w":2,"k":2,"len":1,"dim":1,"w":[1.0,2.0],"u":[3.0,4.0]}"#)
            .unwrap();
    assert!(p.gain.is_empty() && p.bias.is_empty());
    assert_eq!(p.to_flat(), vec![1.0, 2.0, 3.0, 4.0]);
    let json = serde_json::to_string(&p).unwrap();
    assert!(!json.contains("gain"), "{json}");
}

/// The exact reduction of docs/theory.md §10: RMSNorm in dimension `d` with
/// `lambda_U` is LayerNorm in dimension `d + 1` with `lambda_U (d+1)/d`, through
/// `w -> Q w`, `u -> c Q u` (`Q` an isometry onto `1_{d+1}^perp`, `c = sqrt(d/(d+1))`).
#[test]
fn rms_in_d_is_layer_norm_in_d_plus_one() {
    let d = 3;
    let task = |norm, dim, lambda_u| {
        TaskConfig {
            n_c: 3,
            s_c: 2,
            len: 2,
            dim,
            freq: Freq::Zipf { exponent: 1.0 },
            norm: Some(norm),
            lambda_w: 0.0,
            lambda_u,
            ..Default::default()
        }
        .build()
        .unwrap()
    };
    let rms = task(Norm::Rms { eps: 0.0 }, d, 0.02);
    let ln = task(
        Norm::Layer { eps: 0.0 },
        d + 1,
        0.02 * (d + 1) as f64 / d as f64,
    );
    let q = feature_collapse::collapse::ones_complement_basis(d + 1); // d rows of length d + 1
    let c = (d as f64 / (d + 1) as f64).sqrt();
    let lift = |v: &[f64], s: f64| -> Vec<f64> {
        (0..=d)
            .map(|j| s * (0..d).map(|i| v[i] * q[i][j]).sum::<f64>())
            .collect()
    };
    let p = Params::random(&rms, 0.9, &mut ChaCha8Rng::seed_from_u64(8));
    let mut big = Params::zeros(&ln);
    big.w = p.w.chunks(d).flat_map(|r| lift(r, 1.0)).collect();
    big.u = p.u.chunks(d).flat_map(|r| lift(r, c)).collect();
    let (a, b) = (risk(&rms, &p), risk(&ln, &big));
    assert!((a - b).abs() < 1e-13 * a, "{a} vs {b}");
}
