//! Re-examination of evidence before a claim is called refuted.
//!
//! A failed check only refutes when the numbers actually computed show it
//! beyond their own error: a lower risk by more than both evaluations' error
//! ([`limit::risk_error_bound`]), negative curvature that the exact risk itself
//! shows along the eigenvector, a gradient along which the exact risk really
//! decreases. Each function returns a [`Recheck`]: whether the evidence holds,
//! and a sentence with the numbers, for the report.

use crate::limit;
use crate::network::{dot, Params};
use crate::task::Task;

/// The outcome of one re-examination.
#[derive(Debug, Clone)]
pub struct Recheck {
    /// The evidence holds in the exact risk beyond its evaluation error.
    pub holds: bool,
    /// What was computed, with the numbers.
    pub detail: String,
}

/// The exact risk at `p` with its error bound.
fn evaluate(task: &Task, p: &Params) -> (f64, f64) {
    (limit::risk(task, p), limit::risk_error_bound(task, p))
}

/// `p + t v` (flat order).
fn shifted(p: &Params, x0: &[f64], v: &[f64], t: f64) -> Params {
    let x: Vec<f64> = x0.iter().zip(v).map(|(a, b)| a + t * b).collect();
    p.with_flat(&x)
}

/// Is `r_low` (error `e_low`) below `r_high` (error `e_high`) by more than both
/// errors together? Non-finite values never are.
pub fn clearly_below(r_low: f64, e_low: f64, r_high: f64, e_high: f64) -> bool {
    r_low.is_finite() && r_high.is_finite() && r_high - r_low > e_low + e_high
}

/// A point at risk `r_low` (weights `low`) below a claimed minimiser `at`:
/// both exact risks are evaluated again, and the gap must exceed the sum of
/// their error bounds.
pub fn lower_point(task: &Task, low: &Params, at: &Params) -> Recheck {
    let (rl, el) = evaluate(task, low);
    let (ra, ea) = evaluate(task, at);
    let holds = clearly_below(rl, el, ra, ea);
    Recheck {
        holds,
        detail: format!(
            "exact risks re-evaluated: {rl:.15e} (error <= {el:.1e}) vs {ra:.15e} (error <= {ea:.1e}), gap {:.2e}",
            ra - rl
        ),
    }
}

/// Descent along `-grad R` from `p`: the largest step `t = t_0 2^-i` (`i < 60`,
/// `t_0 = 0.1 max(1, ||theta||)`) with `R(p - t g/||g||)` below `R(p)` by more
/// than both error bounds. A non-critical point is not a minimiser only if this
/// exists.
pub fn descent(task: &Task, p: &Params, grad: &[f64]) -> Recheck {
    let gn = dot(grad, grad).sqrt();
    let (r0, e0) = evaluate(task, p);
    if !(gn > 0.0 && gn.is_finite() && r0.is_finite()) {
        return Recheck {
            holds: false,
            detail: format!(
                "no finite gradient or risk to descend along (||g|| = {gn:.1e}, R = {r0:e})"
            ),
        };
    }
    let x0 = p.to_flat();
    let dir: Vec<f64> = grad.iter().map(|g| -g / gn).collect();
    let mut t = 0.1 * dot(&x0, &x0).sqrt().max(1.0);
    for _ in 0..60 {
        let (r, e) = evaluate(task, &shifted(p, &x0, &dir, t));
        if clearly_below(r, e, r0, e0) {
            return Recheck {
                holds: true,
                detail: format!(
                    "the exact risk decreases along -grad R: R = {r:.15e} at distance {t:.1e} vs {r0:.15e}, more than the evaluation errors {e:.1e} + {e0:.1e}"
                ),
            };
        }
        t *= 0.5;
    }
    Recheck {
        holds: false,
        detail: format!(
            "no step along -grad R lowers the exact risk beyond its evaluation error ({e0:.1e}) at R = {r0:.15e}"
        ),
    }
}

/// Negative curvature `lambda < 0` along the unit vector `v` at `p`, checked in
/// the exact risk by the second difference
/// `D(t) = R(p + t v) + R(p - t v) - 2 R(p) ~ lambda t^2` (the gradient term
/// cancels) at `t = sqrt(2000 e / |lambda|)` and four times that (`e` the error
/// bound at `p`), each step at most `0.1 max(1, ||theta||)`. It holds when `D`
/// is below minus the four evaluation errors and one of `p +- t v` is clearly
/// below `p`: a lower point next to the claimed minimiser.
pub fn negative_curvature(task: &Task, p: &Params, v: &[f64], lambda: f64) -> Recheck {
    let (r0, e0) = evaluate(task, p);
    let x0 = p.to_flat();
    let nv = dot(v, v).sqrt();
    if !(lambda < 0.0 && nv > 0.0 && r0.is_finite()) {
        return Recheck {
            holds: false,
            detail: format!("nothing to check (eigenvalue {lambda:.3e}, R = {r0:e})"),
        };
    }
    let v: Vec<f64> = v.iter().map(|a| a / nv).collect();
    let cap = 0.1 * dot(&x0, &x0).sqrt().max(1.0);
    let t1 = (2000.0 * e0 / lambda.abs()).sqrt().min(cap);
    let mut last = String::new();
    for t in [t1, (4.0 * t1).min(cap)] {
        let (rp, ep) = evaluate(task, &shifted(p, &x0, &v, t));
        let (rm, em) = evaluate(task, &shifted(p, &x0, &v, -t));
        let d2 = rp + rm - 2.0 * r0;
        let err = ep + em + 2.0 * e0;
        let (rl, el) = if rp < rm { (rp, ep) } else { (rm, em) };
        if d2 < -err && clearly_below(rl, el, r0, e0) {
            return Recheck {
                holds: true,
                detail: format!(
                    "the exact risk confirms it: second difference {d2:.3e} at step {t:.1e} (error <= {err:.1e}), R = {rl:.15e} next to {r0:.15e}"
                ),
            };
        }
        last = format!(
            "the exact risk does not show it: second difference {d2:.3e} at step {t:.1e} against an evaluation error of {err:.1e}"
        );
    }
    Recheck {
        holds: false,
        detail: last,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::TaskConfig;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn task() -> Task {
        TaskConfig {
            n_c: 2,
            s_c: 2,
            len: 2,
            dim: 2,
            ..TaskConfig::default()
        }
        .build()
        .unwrap()
    }

    #[test]
    fn descent_holds_at_a_random_point_and_lower_point_sees_the_gap() {
        let task = task();
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let p = Params::random(&task, 0.5, &mut rng);
        let (_, g) = limit::risk_grad(&task, &p);
        let d = descent(&task, &p, &g);
        assert!(d.holds, "{}", d.detail);
        // the same point is not below itself
        assert!(!lower_point(&task, &p, &p).holds);
    }

    #[test]
    fn curvature_recheck_refuses_a_made_up_negative_eigenvalue_at_a_minimiser() {
        let task = task();
        let pred = crate::collapse::predict(&task, crate::collapse::Form::Full).unwrap();
        let frame = crate::collapse::equiangular_frame(task.n_c(), task.dim(), false).unwrap();
        let built = crate::collapse::build(&task, &pred, &frame);
        let n = task.n_params();
        let v: Vec<f64> = (0..n).map(|i| ((i * 7 % 5) as f64) - 2.0).collect();
        let r = negative_curvature(&task, &built, &v, -1e-12);
        assert!(!r.holds, "{}", r.detail);
    }

    #[test]
    fn curvature_recheck_holds_at_the_origin_below_lambda_critical() {
        // The origin is a saddle in the collapsed phase: h_0 < 0 along its eigenvector.
        let task = task();
        let origin = Params::zeros(&task);
        let pair = crate::verify::min_eigenpair(&task, &origin).unwrap();
        assert!(pair.min_eig < 0.0);
        let r = negative_curvature(&task, &origin, &pair.vector, pair.min_eig);
        assert!(r.holds, "{}", r.detail);
    }
}
