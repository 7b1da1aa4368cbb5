//! The solvers of the reduced objectives (module docs of [`super`]):
//! safeguarded 1-D Newton root finding and minimisation, the damped Newton
//! method for `min_x F(x) + gamma ||x||`, and the type-III full-form
//! critical-point system.

use super::objective::Consts;
use crate::error::{Error, Result};
use crate::task::Task;

/// Root of an increasing function `g` (returning `(g, g')`) inside `(lo, hi)`
/// with `g(lo) <= 0 <= g(hi)`: Newton steps, replaced by bisection whenever they
/// leave the bracket or stall; runs until the iterate stops moving (round-off).
pub(super) fn increasing_root(g: impl Fn(f64) -> (f64, f64), mut lo: f64, mut hi: f64) -> f64 {
    let mut x = 0.5 * (lo + hi);
    let mut best = (f64::INFINITY, x);
    let mut last_abs = f64::INFINITY;
    for _ in 0..400 {
        let (f, df) = g(x);
        if f.abs() < best.0 {
            best = (f.abs(), x);
        }
        if f == 0.0 {
            return x;
        }
        if f < 0.0 {
            lo = x;
        } else {
            hi = x;
        }
        let newton = x - f / df;
        let mut next = if df > 0.0 && newton > lo && newton < hi && f.abs() < 0.5 * last_abs {
            newton
        } else {
            0.5 * (lo + hi)
        };
        last_abs = f.abs();
        if !(next > lo && next < hi) {
            next = 0.5 * (lo + hi);
        }
        if next == x || next <= lo || next >= hi {
            break;
        }
        x = next;
    }
    best.1
}

/// Minimiser over `v >= 0` of a convex `phi` given by `(phi', phi'')`.
pub(super) fn minimise_1d(dphi: impl Fn(f64) -> (f64, f64)) -> Result<f64> {
    if dphi(0.0).0 >= 0.0 {
        return Ok(0.0);
    }
    let mut hi = 1.0;
    let mut n = 0;
    while dphi(hi).0 < 0.0 {
        hi *= 2.0;
        n += 1;
        if n > 2000 || !hi.is_finite() {
            return Err(Error::Optimiser("1-D minimiser: no bracket found".into()));
        }
    }
    Ok(increasing_root(dphi, 0.0, hi))
}

/// Damped Newton for `min_x F(x) + gamma ||x||` with convex `F` given by
/// `eval(x) -> (F, grad, Hessian row-major)`. Returns the minimiser.
pub(super) fn newton_norm_penalised(
    gamma: f64,
    x0: Vec<f64>,
    eval: impl Fn(&[f64], u8) -> (f64, Vec<f64>, Vec<f64>),
) -> Result<Vec<f64>> {
    let n = x0.len();
    let total = |x: &[f64]| eval(x, 0).0 + gamma * norm(x);
    let mut x = x0;
    let mut cur = eval(&x, 2);
    for _ in 0..100 {
        let (f, mut g, mut h) = cur;
        let nx = norm(&x);
        let j = f + gamma * nx;
        if nx > 0.0 {
            for a in 0..n {
                g[a] += gamma * x[a] / nx;
                for b in 0..n {
                    let id = if a == b { 1.0 } else { 0.0 };
                    h[a * n + b] += gamma / nx * (id - x[a] * x[b] / (nx * nx));
                }
            }
        }
        let hm = nalgebra::DMatrix::from_row_slice(n, n, &h);
        let gv = nalgebra::DVector::from_column_slice(&g);
        let trace = (0..n).map(|a| h[a * n + a].abs()).sum::<f64>() / n as f64;
        let mut tau = 0.0;
        let step = loop {
            let mut m = hm.clone();
            for a in 0..n {
                m[(a, a)] += tau;
            }
            if let Some(ch) = m.cholesky() {
                break -ch.solve(&gv);
            }
            tau = if tau == 0.0 {
                1e-12 * trace.max(1e-300)
            } else {
                tau * 10.0
            };
            if !tau.is_finite() {
                return Err(Error::Optimiser("type-III Newton: singular Hessian".into()));
            }
        };
        // Newton decrement g^T H^{-1} g.
        let dec = -gv.dot(&step);
        // (also stops on a NaN decrement)
        if dec.is_nan() || dec <= 1e-24 * j.abs().max(1.0) {
            break;
        }
        let at =
            |t: f64| -> Vec<f64> { x.iter().zip(step.iter()).map(|(a, s)| a + t * s).collect() };
        // Full step, evaluated with its Hessian (reused on acceptance). Near the
        // minimiser the decrease is below round-off, so the full step is taken.
        let full = at(1.0);
        let ev = eval(&full, 2);
        if dec < 1e-16 * j.abs().max(1.0) || ev.0 + gamma * norm(&full) <= j - 1e-4 * dec {
            x = full;
            cur = ev;
            continue;
        }
        // Armijo backtracking on values only.
        let mut t = 0.5;
        let mut moved = false;
        while t >= 1e-12 {
            let trial = at(t);
            if total(&trial) <= j - 1e-4 * t * dec {
                x = trial;
                moved = true;
                break;
            }
            t *= 0.5;
        }
        if !moved {
            break;
        }
        cur = eval(&x, 2);
    }
    Ok(x)
}

/// Euclidean norm.
pub(super) fn norm(x: &[f64]) -> f64 {
    x.iter().map(|v| v * v).sum::<f64>().sqrt()
}

/// Type-III full form: `x` solving `L kappa mu_beta sigma(x_beta) = gamma x_beta/||x||`
/// through `t = ||x||/gamma` (module docs), or `0` when that has no positive root.
pub(super) fn solve_iii_full(task: &Task, cs: &Consts, gamma: f64) -> Vec<f64> {
    let sigma0 = (cs.n_c - 1.0) / cs.n_c;
    let norm_mu = norm(task.mu());
    if cs.len * cs.kappa * sigma0 * norm_mu <= gamma {
        return vec![0.0; task.s_c()];
    }
    // x_beta(t): root of x - a sigma(x), a = t L kappa mu_beta, in (0, a sigma0].
    let x_of = |t: f64| -> Vec<f64> {
        task.mu()
            .iter()
            .map(|&m| {
                let a = t * cs.len * cs.kappa * m;
                if a <= 0.0 {
                    return 0.0;
                }
                increasing_root(
                    |x| {
                        let (_, s) = cs.full_term(x);
                        (x - a * s, 1.0 + a * cs.kappa * s * (1.0 - s))
                    },
                    0.0,
                    a * sigma0,
                )
            })
            .collect()
    };
    // f(t) = gamma - ||x(t)||/t is increasing, f(0+) < 0.
    let f = |t: f64| -> (f64, f64) {
        let x = x_of(t);
        let nx = norm(&x);
        // dx_beta/dt = (x_beta/t) / (1 + a kappa sigma (1 - sigma))
        let mut dn = 0.0;
        for (&xb, &m) in x.iter().zip(task.mu()) {
            if xb == 0.0 {
                continue;
            }
            let a = t * cs.len * cs.kappa * m;
            let (_, s) = cs.full_term(xb);
            dn += xb * (xb / t) / (1.0 + a * cs.kappa * s * (1.0 - s));
        }
        let dn = if nx > 0.0 { dn / nx } else { 0.0 };
        (gamma - nx / t, -dn / t + nx / (t * t))
    };
    // f(t) -> gamma > 0 as t -> inf (x_beta(t) grows like log t): bracket by doubling.
    let mut hi = 1.0 / gamma;
    for _ in 0..2000 {
        if f(hi).0 >= 0.0 {
            break;
        }
        hi *= 2.0;
    }
    let t = increasing_root(f, 0.0, hi);
    x_of(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collapse::expectation::eval_samples;
    use crate::collapse::samples::RankSamples;
    use crate::collapse::tests::cfg;
    use crate::collapse::{predict, Form};

    #[test]
    fn type_iii_solver_at_uniform_mu_gives_type_i_constants() {
        let task = cfg(3, 3, 3, None).build().unwrap();
        let i = predict(&task, Form::Full).unwrap();
        let cs = Consts::of(&task);
        let gamma = (task.lambda_w() * task.lambda_u() * cs.n_c * cs.k * cs.len).sqrt();
        let x = solve_iii_full(&task, &cs, gamma);
        for &xb in &x {
            assert!((xb - i.c).abs() <= 1e-13 * i.c, "{xb} vs {}", i.c);
        }
        // exact-enumeration Newton (mean field, small s_c^L) on uniform mu
        let mf = predict(&task, Form::MeanField).unwrap();
        let samples = RankSamples::of(&task, Form::MeanField).unwrap();
        assert!(!samples.sampled);
        let eval = |x: &[f64], order: u8| {
            let ev = eval_samples(&task, &cs, &samples, x, order);
            (ev.value, ev.grad, ev.hess)
        };
        let x = newton_norm_penalised(gamma, vec![0.3, 0.9, 0.5], eval).unwrap();
        for &xb in &x {
            assert!((xb - mf.c).abs() <= 1e-11 * mf.c, "{xb} vs {}", mf.c);
        }
    }

    #[test]
    fn root_finder_reaches_round_off() {
        let x = increasing_root(|x| (x * x * x - 2.0, 3.0 * x * x), 0.0, 2.0);
        assert!((x - 2f64.cbrt()).abs() <= 2.0 * f64::EPSILON);
    }
}
