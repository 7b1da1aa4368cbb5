//! The critical weight decay located numerically, on the exact problem: bisection
//! on `lambda` (`lambda_W = lambda_U = lambda`) of the test "the origin is the
//! global minimiser", decided by the Hessian of the exact `R` at the origin
//! (exact second derivatives, [`limit::hessian`]) and by random restarts (see
//! [`lambda_critical_bisection`] for how the two are combined).
//!
//! This uses neither the closed form of docs/theory.md §6 nor the reduced
//! objectives, so agreement with [`crate::collapse::lambda_critical`] is a check of both.

use super::{minimise, VerifyConfig};
use crate::error::{Error, Result};
use crate::limit;
use crate::network::Params;
use crate::task::{Task, TaskConfig};
use nalgebra::SymmetricEigen;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::Serialize;

/// Result of the bisection.
#[derive(Debug, Clone, Serialize)]
pub struct Bisection {
    /// Midpoint of the final bracket.
    pub lambda: f64,
    /// `[collapsed, trivial]`: the origin is not the minimiser at the left end, it is at the right.
    pub bracket: [f64; 2],
    /// Number of `lambda` values tested.
    pub evaluations: usize,
}

/// `task` with `lambda_W = lambda_U = lambda` (same configuration, hence the same latent variables).
pub fn with_lambda(task: &Task, lambda: f64) -> Result<Task> {
    TaskConfig {
        lambda_w: lambda,
        lambda_u: lambda,
        ..task.config().clone()
    }
    .build()
}

/// Local test: the smallest eigenvalue of the exact Hessian of `R`
/// at `W = U = 0` is positive (the origin is a strict local minimiser).
pub fn origin_is_local_minimiser(task: &Task) -> bool {
    let origin = Params::zeros(task);
    SymmetricEigen::new(limit::hessian(task, &origin))
        .eigenvalues
        .min()
        > 0.0
}

/// Global test: no restart (`cfg.restarts`, L-BFGS) ends below `R(0) = log K` by
/// more than round-off.
pub fn no_restart_below_origin(task: &Task, cfg: &VerifyConfig) -> Result<bool> {
    let lk = (task.k() as f64).ln();
    let below = (0..cfg.restarts)
        .into_par_iter()
        .map(|i| -> Result<bool> {
            let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed.wrapping_add(i as u64));
            let start = Params::random(task, cfg.init_scale, &mut rng);
            let m = minimise(task, &start, cfg)?;
            Ok(limit::risk(task, &start.with_flat(&m.x)) < lk - 1e-12 * lk.max(1.0))
        })
        .collect::<Result<Vec<bool>>>()?;
    Ok(!below.into_iter().any(|b| b))
}

/// Bisection for the `lambda` where the origin becomes the global minimiser, to
/// relative bracket width `rel_tol` (absolute `1e-12 rel_tol` near 0); `None`
/// with LayerNorm (no phase change).
///
/// The upper end starts at 1 and doubles. The bisection runs on the local
/// (Hessian) test; the restarts then check the upper end of the bracket. That
/// suffices: `R(theta) - log K` grows with `lambda` for every `theta != 0`, so if
/// nothing lies below `log K` at `lambda`, nothing does at any larger value. If
/// something does (a jump of the minimiser, which the closed form would miss),
/// the bisection resumes above that point with both tests.
pub fn lambda_critical_bisection(
    task: &Task,
    cfg: &VerifyConfig,
    rel_tol: f64,
) -> Result<Option<Bisection>> {
    if !task.norm().is_linear() {
        return Ok(None);
    }
    if rel_tol.is_nan() || rel_tol <= 0.0 {
        return Err(Error::invalid("rel_tol", rel_tol, "must be > 0"));
    }
    let mut evaluations = 0;
    let mut lo = 0.0;
    let mut global = false;
    loop {
        let mut trivial_at = |lambda: f64| -> Result<bool> {
            evaluations += 1;
            let t = with_lambda(task, lambda)?;
            Ok(origin_is_local_minimiser(&t) && (!global || no_restart_below_origin(&t, cfg)?))
        };
        let mut hi = if lo > 0.0 { 2.0 * lo } else { 1.0 };
        while !trivial_at(hi)? {
            lo = hi;
            hi *= 2.0;
            if hi > 1e12 {
                return Err(Error::Optimiser(
                    "bisection: the origin is not the minimiser even at lambda = 1e12".into(),
                ));
            }
        }
        // relative width, down to an absolute 1e-12 (lambda_critical = 0 when no
        // two classes can be told apart, e.g. a drawn latent set of duplicates)
        while hi - lo > rel_tol * hi.max(1e-12) {
            let mid = 0.5 * (lo + hi);
            if trivial_at(mid)? {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        evaluations += 1;
        if global || no_restart_below_origin(&with_lambda(task, hi)?, cfg)? {
            return Ok(Some(Bisection {
                lambda: 0.5 * (lo + hi),
                bracket: [lo, hi],
                evaluations,
            }));
        }
        lo = hi;
        global = true;
    }
}
