//! Computer-assisted proofs per instance (docs/certificate.md): `certify` turns a
//! `confirmed` into `proved`, or says `unproved` with the step that failed.
//!
//! Every number a proof uses is an interval enclosure computed with outward
//! rounding (`inari`, IEEE 1788; `exp` and `ln` from MPFR). Floating-point
//! numbers only propose candidates (the predicted constants, a shift for a
//! Cholesky factor, the pivots of the slice); each claim is then checked in
//! interval arithmetic.
//!
//! For an instance on the full latent set:
//!
//! - **collapsed phase** (below `lambda_crit`, or with LayerNorm): the reduced
//!   objective has exactly one critical point in a narrow box around the
//!   candidate constants and it is the reduced objective's global minimiser
//!   ([`reduced`]); the full risk has a strict local minimiser, modulo its
//!   symmetries, within a proved distance of the candidate configuration, with
//!   its risk enclosed ([`slice`]); the two risks agree;
//! - **trivial phase** (no normalisation, `sqrt(lambda_W lambda_U) >= sigma`): the
//!   origin is the global minimiser, from an upper bound on `sigma` (docs/theory.md §6).

pub mod identify;
pub mod ival;
pub mod record;
pub mod reduced;
pub mod risk;
pub mod slice;

use crate::collapse::{self, CollapseType, Form};
use crate::error::{Error, Result};
use crate::norm::Norm;
use crate::task::{Freq, Task};
use ival::{frequencies, iv, pt, verified_min_eig, zero, I};
pub use record::{Certificate, Phase, ProofVerdict, Step};
use reduced::Reduced;
use risk::Instance;
use std::time::Instant;

/// The configuration a proof is attempted for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Candidate {
    /// The theory's prediction for the instance (its phase and collapse type).
    #[default]
    Predicted,
    /// The type-I configuration (equal word norms, constants of the uniform-`mu`
    /// instance), whatever `mu` is: a wrong candidate on a Zipf instance.
    TypeI,
    /// The origin `W = U = 0`, claimed to be the global minimiser.
    Origin,
}

/// What to prove, checked once by [`CertifyConfig::new`].
#[derive(Debug, Clone, PartialEq)]
pub struct CertifyConfig {
    candidate: Candidate,
    candidate_scale: f64,
    constants: Option<Vec<f64>>,
}

impl CertifyConfig {
    /// `candidate_scale` multiplies the candidate's classifier norm `b` (anything
    /// but 1 is a wrong candidate); it must be finite and positive.
    pub fn new(candidate: Candidate, candidate_scale: f64) -> Result<Self> {
        if !(candidate_scale.is_finite() && candidate_scale > 0.0) {
            return Err(Error::invalid(
                "candidate_scale",
                candidate_scale,
                "must be finite and > 0",
            ));
        }
        Ok(CertifyConfig {
            candidate,
            candidate_scale,
            constants: None,
        })
    }

    /// The candidate constants given explicitly (`(r_1..r_{s_c}, b)`, or `(b)` for
    /// type II), as a certificate file proposes them to `--check`.
    pub fn with_constants(mut self, constants: Vec<f64>) -> Self {
        self.constants = Some(constants);
        self
    }
}

/// Largest `N_A = L n_w K` (the Hessian in the score table is `N_A x N_A`
/// intervals, one per class chunk: 2 x 0.9 GiB at this size).
pub const MAX_TABLE: usize = 7500;

/// Refuses what `certify` cannot treat: a normalization other than none and
/// LayerNorm, a drawn latent set, or an instance whose interval Hessian would not
/// fit in memory.
pub fn check_instance(task: &Task) -> Result<()> {
    if !matches!(task.norm(), Norm::None | Norm::Layer { .. }) {
        return Err(Error::invalid(
            "norm",
            task.norm().name(),
            "certify covers no normalization and LayerNorm (--norm none or layer)",
        ));
    }
    if !task.full_latent() {
        return Err(Error::invalid(
            "classes",
            task.k(),
            "certify covers the full latent set (K = n_c^L): leave --classes out",
        ));
    }
    let n_a = task.len() * task.n_w() * task.k();
    if n_a > MAX_TABLE {
        return Err(Error::invalid(
            "len",
            task.len(),
            format!(
                "certify holds the interval Hessian of the score table, (L n_w K)^2 intervals; \
                 L n_w K = {n_a} is over its limit of {MAX_TABLE}: use smaller n_c, s_c or L"
            ),
        ));
    }
    crate::limit::check_budget(task, crate::limit::DEFAULT_WORK_BUDGET)
}

/// The proof for `task` (see the module docs), as a [`Certificate`].
pub fn certify(task: &Task, cfg: &CertifyConfig) -> Result<Certificate> {
    // Also guards `--check` files, whose instance comes from the file.
    check_instance(task)?;
    let start = Instant::now();
    let mu = frequencies(task);
    let mut cert = Certificate::new(task, cfg);
    let trivial_predicted = task.norm().is_none()
        && task.lambda_geo() >= collapse::origin_coupling(task)
        && cfg.constants.is_none();
    if cfg.candidate == Candidate::Origin
        || (cfg.candidate == Candidate::Predicted && trivial_predicted)
    {
        prove_trivial(task, &mu, &mut cert);
    } else {
        prove_collapsed(task, mu, cfg, &mut cert)?;
    }
    cert.finish(start.elapsed().as_secs_f64());
    Ok(cert)
}

/// The trivial phase: `sqrt(lambda_W lambda_U) >= sigma_hi >= sigma` proves the
/// origin is the global minimiser (docs/theory.md §6), with `sigma^2 = (||mu||^2 /
/// K) lambda_max(sum_l (diag nu_l - nu_l nu_lᵀ))` bounded above in intervals.
fn prove_trivial(task: &Task, mu: &[I], cert: &mut Certificate) {
    cert.phase = Phase::Trivial;
    cert.kind = None;
    let n_c = task.n_c();
    let k = task.k();
    if !task.norm().is_none() {
        cert.fail(
            "trivial phase",
            "with LayerNorm the origin is never a minimiser (phi(w) has norm sqrt(d))".into(),
        );
        return;
    }
    // M = sum_l (diag nu_l - nu_l nu_lᵀ), nu_l(alpha) = #{k : z_{k,l} = alpha} / K.
    let mut m = vec![zero(); n_c * n_c];
    for l in 0..task.len() {
        let mut count = vec![0usize; n_c];
        for kk in 0..k {
            count[task.z_of(kk)[l]] += 1;
        }
        let nu: Vec<I> = count.iter().map(|&c| pt(c as f64) / pt(k as f64)).collect();
        for a in 0..n_c {
            m[a * n_c + a] += nu[a];
            for b in 0..n_c {
                m[a * n_c + b] -= nu[a] * nu[b];
            }
        }
    }
    let est = nalgebra::DMatrix::from_fn(n_c, n_c, |i, j| m[i * n_c + j].mid())
        .symmetric_eigen()
        .eigenvalues
        .iter()
        .copied()
        .fold(0.0f64, f64::max);
    // lambda_max(M) <= c once c I - M is proved positive semidefinite.
    let c = est * (1.0 + 1e-9) + 1e-300;
    let shifted: Vec<I> = (0..n_c * n_c)
        .map(|i| {
            if i % (n_c + 1) == 0 {
                pt(c) - m[i]
            } else {
                -m[i]
            }
        })
        .collect();
    let lmax_hi = if verified_min_eig(&shifted, n_c).lower >= 0.0 {
        c
    } else {
        f64::INFINITY
    };
    let mu2 = mu.iter().fold(zero(), |a, m| a + m.sqr());
    let sigma_hi = (mu2 * pt(lmax_hi) / pt(k as f64)).sqrt().sup();
    let geo = (pt(task.lambda_w()) * pt(task.lambda_u())).sqrt();
    cert.enclose("sigma_upper", iv(0.0, sigma_hi));
    cert.enclose("sqrt_lambda_w_lambda_u", geo);
    let passed = geo.inf() >= sigma_hi;
    let detail = format!(
        "sqrt(lambda_W lambda_U) >= {:.17e} vs sigma <= {:.17e}",
        geo.inf(),
        sigma_hi
    );
    if passed {
        cert.step(
            "origin is the global minimiser (sqrt(lambda_W lambda_U) >= sigma)",
            true,
            detail,
        );
        // R(0) = log K exactly.
        let r0 = pt(k as f64).ln();
        cert.set_risk(r0);
        cert.enclose("risk", r0);
    } else {
        cert.fail(
            "origin is the global minimiser (sqrt(lambda_W lambda_U) >= sigma)",
            format!("{detail}: below lambda_crit the origin is a saddle, not a minimiser"),
        );
    }
}

/// The collapsed phase: reduced proofs, then the local certificate.
fn prove_collapsed(
    task: &Task,
    mu: Vec<I>,
    cfg: &CertifyConfig,
    cert: &mut Certificate,
) -> Result<()> {
    cert.phase = Phase::Collapsed;
    let ln = task.norm().layer_eps();
    let kind = match (cfg.candidate, ln) {
        (_, Some(_)) => CollapseType::II,
        (Candidate::TypeI, None) => CollapseType::I,
        (_, None) => collapse::collapse_type(task),
    };
    cert.kind = Some(kind);
    // Hypotheses under which the collapsed configuration can be a minimiser.
    let mut outside = Vec::new();
    match ln {
        None => {
            if task.lambda_w() <= 0.0 || task.lambda_u() <= 0.0 {
                outside.push("without normalisation both weight decays must be > 0 (else the infimum is not attained)");
            }
            if task.dim() + 1 < task.n_c() {
                outside.push("d < n_c - 1: no equiangular frame");
            }
        }
        Some(eps) => {
            if eps != 0.0 {
                outside.push("LayerNorm with eps > 0: phi(w) only tends to sqrt(d) f as ||w|| grows, no minimiser is attained");
            }
            if task.lambda_w() != 0.0 {
                outside.push("LayerNorm with lambda_W > 0: W shrinks to 0 without changing phi(W), no minimiser is attained");
            }
            if task.lambda_u() <= 0.0 {
                outside.push("lambda_U must be > 0");
            }
            if task.dim() < task.n_c() {
                outside.push("d < n_c: no mean-zero equiangular frame");
            }
        }
    }
    if !outside.is_empty() {
        for o in outside {
            cert.fail("hypotheses", o.to_string());
        }
        return Ok(());
    }
    // Candidate constants.
    let constants = match &cfg.constants {
        Some(c) => c.clone(),
        None => {
            let pred = match kind {
                CollapseType::I if task.freq() != Freq::Uniform => {
                    collapse::predict(&task.with_freq(Freq::Uniform)?, Form::Full)?
                }
                _ => collapse::predict(task, Form::Full)?,
            };
            let b = pred.u_norm * cfg.candidate_scale;
            match kind {
                CollapseType::II => vec![b],
                _ => pred.r.iter().copied().chain(std::iter::once(b)).collect(),
            }
        }
    };
    let want = if kind == CollapseType::II {
        1
    } else {
        task.s_c() + 1
    };
    if constants.len() != want || constants.iter().any(|v| !v.is_finite()) {
        return Err(Error::invalid(
            "constants",
            format!("{constants:?}"),
            format!("expected {want} finite candidate constants"),
        ));
    }
    cert.set_constants(&constants);
    let red = Reduced::new(task, mu.clone(), ln.is_some());
    let rp = red.prove(&constants);
    for (i, v) in rp.critical_box.iter().enumerate() {
        cert.enclose(&format!("reduced_critical_point[{i}]"), *v);
    }
    cert.enclose("reduced_risk", rp.risk);
    cert.reduced_rel_width = Some(rp.rel_width);
    cert.bb_boxes = Some(rp.boxes);
    let narrow = rp.rel_width <= 1e-10;
    match &rp.failure {
        None => {
            cert.step(
                "reduced objective: one critical point in the box, its global minimiser",
                true,
                format!(
                    "Krawczyk box of relative width {:.2e}; convex on a box of relative radius {}; branch and bound {} boxes",
                    rp.rel_width, rp.convex_radius, rp.boxes
                ),
            );
            if !narrow {
                cert.fail(
                    "narrow enclosures",
                    format!("relative width {:.2e} above 1e-10", rp.rel_width),
                );
            }
        }
        Some(why) => cert.fail("reduced objective", why.clone()),
    }
    cert.set_risk(rp.risk);

    // The candidate configuration theta_hat.
    let frame = collapse::equiangular_frame(task.n_c(), task.dim(), ln.is_some())?;
    let (r, b) = match kind {
        CollapseType::II => (vec![(task.dim() as f64).sqrt(); task.s_c()], constants[0]),
        _ => (constants[..task.s_c()].to_vec(), constants[task.s_c()]),
    };
    let theta = collapse::build(task, &candidate_prediction(kind, r, b), &frame).to_flat();
    let inst = Instance { task, mu, eps: ln };
    let family = rp
        .failure
        .is_none()
        .then(|| identify::family_point(task, &rp.critical_box, ln.is_some()));
    let lp = slice::prove_local(&inst, &theta, family.as_deref());
    cert.local = Some(record::LocalNumbers::of(&lp));
    cert.enclose("risk_at_candidate", lp.risk_at_candidate);
    cert.enclose("local_minimum_risk", lp.risk);
    match &lp.failure {
        None => {
            cert.transverse_lower_bound = Some(lp.transverse_lower_bound);
            cert.radius = Some(lp.radius);
            cert.distance_bound = Some(lp.distance_bound);
            let (name, ident) = match lp.identification {
                Some(id) => (
                    "the predicted configuration is a strict local minimiser modulo symmetry",
                    format!(
                        "; the predicted configuration lies within {:.3e} of the candidate and maps onto the slice (contraction {:.1e}, distance {:.3e})",
                        id.eps, id.q, id.distance
                    ),
                ),
                None => ("a strict local minimiser modulo symmetry near the candidate", String::new()),
            };
            cert.step(
                name,
                true,
                format!(
                    "m >= {:.6e} on the ball of radius {:.3e}; ||Q^T grad R|| <= {:.3e}; distance <= {:.3e}; orbit dim {}, slice dim {}{ident}",
                    lp.transverse_lower_bound, lp.radius, lp.grad_norm, lp.distance_bound, lp.orbit_dim, lp.slice_dim
                ),
            );
            // Consistency (not a proof of equality): the local minimum's risk and
            // the reduced optimum R* must meet if the minimiser is the predicted one.
            if rp.failure.is_none() {
                let both = lp.risk.intersection(rp.risk);
                if both.is_empty() {
                    cert.fail(
                        "risk consistency",
                        format!(
                            "the local minimum's risk [{:.17e}, {:.17e}] and the reduced optimum [{:.17e}, {:.17e}] are disjoint",
                            lp.risk.inf(), lp.risk.sup(), rp.risk.inf(), rp.risk.sup()
                        ),
                    );
                } else {
                    cert.step(
                        "risk consistency: the local minimum's risk meets the reduced optimum R*",
                        true,
                        format!("common part [{:.17e}, {:.17e}]", both.inf(), both.sup()),
                    );
                }
            }
        }
        Some(why) => cert.fail("local minimality", why.clone()),
    }
    Ok(())
}

/// The prediction record of the candidate constants (what
/// [`collapse::build`] reads: the word norms `r` and the classifier norm `b`).
fn candidate_prediction(kind: CollapseType, r: Vec<f64>, b: f64) -> collapse::Prediction {
    collapse::Prediction {
        kind,
        form: Form::Full,
        word_norm: 0.0,
        r,
        u_norm: b,
        c: 0.0,
        risk: 0.0,
        risk_error: None,
        n_samples: None,
    }
}
