//! The critical weight decay located numerically, on the exact problem: bisection
//! on `lambda` (`lambda_W = lambda_U = lambda`) of the test "the origin is the
//! global minimiser", decided by the Hessian of the exact `R` at the origin
//! (central differences, [`hessian_fd`]) and by random restarts.
//!
//! This uses neither the closed form of docs/theory.md §6 nor the reduced
//! objectives, so agreement with [`crate::collapse::lambda_critical`] is a check of both.

use super::{hessian_fd, minimise, VerifyConfig};
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

/// Whether the origin is the global minimiser of `R` (no LayerNorm): the smallest
/// eigenvalue of the finite-difference Hessian at `W = U = 0` is positive, and no
/// restart (`cfg.restarts`, L-BFGS) ends below `R(0) = log K` by more than round-off.
pub fn origin_is_minimiser(task: &Task, cfg: &VerifyConfig) -> Result<bool> {
    let origin = Params::zeros(task);
    let min = SymmetricEigen::new(hessian_fd(task, &origin))
        .eigenvalues
        .min();
    if min <= 0.0 {
        return Ok(false);
    }
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
/// relative bracket width `rel_tol`; `None` with LayerNorm (no phase change).
/// The upper end starts at 1 and doubles until the origin is the minimiser.
pub fn lambda_critical_bisection(
    task: &Task,
    cfg: &VerifyConfig,
    rel_tol: f64,
) -> Result<Option<Bisection>> {
    if task.layer_norm().is_some() {
        return Ok(None);
    }
    if rel_tol.is_nan() || rel_tol <= 0.0 {
        return Err(Error::invalid("rel_tol", rel_tol, "must be > 0"));
    }
    let mut evaluations = 0;
    let mut trivial_at = |lambda: f64| -> Result<bool> {
        evaluations += 1;
        origin_is_minimiser(&with_lambda(task, lambda)?, cfg)
    };
    let (mut lo, mut hi) = (0.0, 1.0);
    while !trivial_at(hi)? {
        lo = hi;
        hi *= 2.0;
        if hi > 1e12 {
            return Err(Error::Optimiser(
                "bisection: the origin is not the minimiser even at lambda = 1e12".into(),
            ));
        }
    }
    while hi - lo > rel_tol * hi {
        let mid = 0.5 * (lo + hi);
        if trivial_at(mid)? {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Ok(Some(Bisection {
        lambda: 0.5 * (lo + hi),
        bracket: [lo, hi],
        evaluations,
    }))
}
