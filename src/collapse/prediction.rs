//! [`predict`]: the minimiser of the reduced objective of the task's collapse
//! type in a given form, with its reduced risk (module docs of [`super`]).

use super::expectation::{eval_samples, std_error};
use super::objective::{check_form, factorises, penalty, reduced_risk, Consts, Loss1d};
use super::samples::RankSamples;
use super::solve::{minimise_1d, newton_norm_penalised, norm, solve_iii_full};
use super::{collapse_type, CollapseType, Form, Prediction};
use crate::error::{Error, Result};
use crate::task::Task;

/// Largest `s_c` for the dense type-III Newton Hessian (`s_c x s_c`).
const MAX_DENSE_RANKS: usize = 2000;

fn require_positive(name: &'static str, v: f64, kind: CollapseType) -> Result<()> {
    if v > 0.0 {
        Ok(())
    } else {
        Err(Error::invalid(
            name,
            v,
            format!("type {kind:?} has no minimiser without weight decay (the norms grow without bound)"),
        ))
    }
}

/// Minimiser over `c >= 0` of `loss(c) + gamma1 c` along the equal-`x` line.
fn minimise_equal(loss: &Loss1d, cs: &Consts, gamma1: f64) -> Result<f64> {
    minimise_1d(|c| {
        let [_, d1, d2] = loss.eval(cs, c);
        (d1 + gamma1, d2)
    })
}

/// Minimiser of the reduced objective of `collapse_type(task)` in `form`, with
/// the task's own `lambda_W`, `lambda_U` (see the module docs for the
/// objectives and methods).
///
/// - Type I: `min_c loss(c) + c sqrt(lambda_W lambda_U n_w K L)`; then
///   `a^2 = c sqrt(lambda_U K L/(lambda_W n_w))`, `b^2 = c sqrt(lambda_W n_w/(lambda_U K L))`.
///   Full form in closed form: with `s = sqrt(lambda_W lambda_U n_w K L)/(L kappa)`,
///   `c = ln((n_c-1)(1-s)/s)/kappa` (`c = 0` when `s >= (n_c-1)/n_c`), from
///   `L kappa sigma(c) = sqrt(lambda_W lambda_U n_w K L)`.
/// - Type II: `min_b loss(sqrt(d) b) + (lambda_U/2) K L b^2`, `rho = sqrt(d)`.
/// - Type III: `min_x loss(x) + gamma ||x||`, `r_beta = x_beta / b`.
///
/// Errors: `form` (full form without the full latent set), `lambda_w` /
/// `lambda_u` (zero where the minimiser does not exist: types I/III need both,
/// type II needs `lambda_U`), `OverBudget` for latent sets too large to handle;
/// `lambda_w` / `lambda_u` also when the result is not finite in f64 (weight
/// decays so small or large that the constants overflow: a non-finite prediction
/// would decide nothing).
pub fn predict(task: &Task, form: Form) -> Result<Prediction> {
    let p = solve_prediction(task, form)?;
    let finite = p.risk.is_finite()
        && p.u_norm.is_finite()
        && p.c.is_finite()
        && p.word_norm.is_finite()
        && p.r.iter().all(|v| v.is_finite());
    if !finite {
        let (name, value) = if task.lambda_w() != task.lambda_u() && task.lambda_w() > 0.0 {
            ("lambda_w", task.lambda_w())
        } else {
            ("lambda_u", task.lambda_u())
        };
        return Err(Error::invalid(
            name,
            crate::task::short(value),
            "the predicted configuration is not finite in double precision at this weight decay (too close to 0 or too large); try a weight decay between 1e-150 and 1e150",
        ));
    }
    Ok(p)
}

/// [`predict`] without the finiteness check of its result.
fn solve_prediction(task: &Task, form: Form) -> Result<Prediction> {
    check_form(task, form)?;
    let kind = collapse_type(task);
    let cs = Consts::of(task);
    let (lw, lu) = (task.lambda_w(), task.lambda_u());
    match kind {
        CollapseType::I => {
            require_positive("lambda_w", lw, kind)?;
            require_positive("lambda_u", lu, kind)?;
        }
        CollapseType::II => require_positive("lambda_u", lu, kind)?,
        CollapseType::III => {
            require_positive("lambda_w", lw, kind)?;
            require_positive("lambda_u", lu, kind)?;
            if task.s_c() > MAX_DENSE_RANKS && !factorises(task, form) {
                return Err(Error::invalid(
                    "s_c",
                    task.s_c(),
                    format!("the type-III Newton solver is limited to s_c <= {MAX_DENSE_RANKS}"),
                ));
            }
        }
    }
    let n_w = task.n_w() as f64;
    let kl = cs.k * cs.len;
    match kind {
        CollapseType::I => {
            let gamma1 = task.lambda_geo() * (n_w * kl).sqrt();
            let c = if factorises(task, form) {
                let s = gamma1 / (cs.len * cs.kappa);
                if s >= (cs.n_c - 1.0) / cs.n_c {
                    0.0
                } else {
                    (((cs.n_c - 1.0) * (1.0 - s)) / s).ln() / cs.kappa
                }
            } else {
                minimise_equal(&Loss1d::new(task, form)?, &cs, gamma1)?
            };
            let a = (c * (lu / lw).sqrt() * (kl / n_w).sqrt()).sqrt();
            let b = (c * (lw / lu).sqrt() * (n_w / kl).sqrt()).sqrt();
            let r = vec![a; task.s_c()];
            let risk = reduced_risk(task, form, kind, &r, b)?;
            Ok(Prediction {
                kind,
                form,
                word_norm: a,
                r,
                u_norm: b,
                c: a * b,
                risk,
                risk_error: None,
                n_samples: None,
            })
        }
        CollapseType::II => {
            let rho = (task.dim() as f64).sqrt();
            let loss = Loss1d::new(task, form)?;
            let b = minimise_1d(|b| {
                let [_, d1, d2] = loss.eval(&cs, rho * b);
                (rho * d1 + lu * kl * b, rho * rho * d2 + lu * kl)
            })?;
            let r = vec![rho; task.s_c()];
            let risk = reduced_risk(task, form, kind, &r, b)?;
            Ok(Prediction {
                kind,
                form,
                word_norm: rho,
                r,
                u_norm: b,
                c: rho * b,
                risk,
                risk_error: None,
                n_samples: None,
            })
        }
        CollapseType::III => {
            let gamma = task.lambda_geo() * (cs.n_c * kl).sqrt();
            let (x, risk_error, n_samples) = if factorises(task, form) {
                (solve_iii_full(task, &cs, gamma), None, None)
            } else {
                let samples = RankSamples::of(task, form)?;
                // Start on the equal-x line (the type-I minimiser of the same form).
                let gamma1 = gamma * (task.s_c() as f64).sqrt();
                let c0 = minimise_equal(&Loss1d::new(task, form)?, &cs, gamma1)?;
                let eval = |x: &[f64], order: u8| {
                    let ev = eval_samples(task, &cs, &samples, x, order);
                    (ev.value, ev.grad, ev.hess)
                };
                let zero = vec![0.0; task.s_c()];
                let g0 = eval_samples(task, &cs, &samples, &zero, 1).grad;
                let x = if norm(&g0) <= gamma {
                    zero
                } else {
                    let x0 = if c0 > 0.0 {
                        vec![c0; task.s_c()]
                    } else {
                        let ng = norm(&g0);
                        g0.iter().map(|g| -g / ng).collect()
                    };
                    newton_norm_penalised(gamma, x0, eval)?
                };
                let ev = eval_samples(task, &cs, &samples, &x, 0);
                let n = samples.sampled.then(|| samples.n());
                (x, Some((ev.value, std_error(&samples, &ev))), n)
            };
            let nx = norm(&x);
            let b = (nx * (lw * cs.n_c / (lu * kl)).sqrt()).sqrt();
            let r: Vec<f64> = if b > 0.0 {
                x.iter().map(|v| v / b).collect()
            } else {
                vec![0.0; task.s_c()]
            };
            let word_norm = r.iter().sum::<f64>() / task.s_c() as f64;
            // Sampled / enumerated forms: the loss already evaluated at x.
            let (risk, risk_error) = match risk_error {
                Some((loss, err)) => (loss + penalty(task, kind, &r, b), err),
                None => (reduced_risk(task, form, kind, &r, b)?, None),
            };
            Ok(Prediction {
                kind,
                form,
                word_norm,
                r,
                u_norm: b,
                c: word_norm * b,
                risk,
                risk_error,
                n_samples,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collapse::tests::cfg;
    use crate::task::{Freq, TaskConfig};

    /// `phi'(c)` of the type-I 1-D objective and the size of its terms.
    fn type_i_slope(task: &Task, form: Form, c: f64) -> (f64, f64) {
        let cs = Consts::of(task);
        let gamma1 =
            (task.lambda_w() * task.lambda_u() * (task.n_w() * task.k() * task.len()) as f64)
                .sqrt();
        let d1 = Loss1d::new(task, form).unwrap().eval(&cs, c)[1];
        (d1 + gamma1, gamma1)
    }

    #[test]
    fn type_i_closed_form_matches_numeric_minimisation_and_is_stationary() {
        for (n_c, s_c, len, lw, lu) in [
            (3, 2, 2, 0.01, 0.02),
            (2, 3, 4, 0.001, 0.001),
            (4, 1, 3, 0.05, 0.003),
        ] {
            let task = TaskConfig {
                lambda_w: lw,
                lambda_u: lu,
                ..cfg(n_c, s_c, len, None)
            }
            .build()
            .unwrap();
            let pred = predict(&task, Form::Full).unwrap();
            assert!(pred.c > 0.0);
            let (slope, scale) = type_i_slope(&task, Form::Full, pred.c);
            assert!(slope.abs() <= 1e-12 * scale, "slope {slope} scale {scale}");
            let cs = Consts::of(&task);
            let gamma1 = scale;
            let numeric = minimise_1d(|c| {
                let [_, d1, d2] = Loss1d::Full.eval(&cs, c);
                (d1 + gamma1, d2)
            })
            .unwrap();
            assert!(
                (numeric - pred.c).abs() <= 1e-13 * pred.c,
                "{numeric} vs {}",
                pred.c
            );
            // a n_w a^2 lambda_W = lambda_U K L b^2 balance and c = a b
            assert!((pred.word_norm * pred.u_norm - pred.c).abs() <= 1e-14 * pred.c);
            let bal_w = lw * task.n_w() as f64 * pred.word_norm.powi(2);
            let bal_u = lu * (task.k() * task.len()) as f64 * pred.u_norm.powi(2);
            assert!((bal_w - bal_u).abs() <= 1e-13 * bal_w);
        }
    }

    #[test]
    fn one_dimensional_forms_are_stationary_to_round_off() {
        // drawn latent set (with a duplicate-prone small Z) and mean field, types I and II
        for classes in [Some(7), Some(27)] {
            for form in [Form::LatentSet, Form::MeanField] {
                let task = cfg(3, 2, 3, classes).build().unwrap();
                let pred = predict(&task, form).unwrap();
                let (slope, scale) = type_i_slope(&task, form, pred.c);
                assert!(
                    pred.c > 0.0 && slope.abs() <= 1e-12 * scale,
                    "{form}: {slope}"
                );

                let ln = TaskConfig {
                    layer_norm: Some(0.0),
                    lambda_w: 0.0,
                    freq: Freq::Zipf { exponent: 1.0 },
                    ..cfg(3, 2, 3, classes)
                }
                .build()
                .unwrap();
                let pred = predict(&ln, form).unwrap();
                assert_eq!(pred.kind, CollapseType::II);
                let cs = Consts::of(&ln);
                let rho = (ln.dim() as f64).sqrt();
                let d1 = Loss1d::new(&ln, form).unwrap().eval(&cs, rho * pred.u_norm)[1];
                let pen = ln.lambda_u() * (ln.k() * ln.len()) as f64 * pred.u_norm;
                assert!(
                    (rho * d1 + pen).abs() <= 1e-12 * pen,
                    "{form} II: {}",
                    rho * d1 + pen
                );
            }
        }
    }

    #[test]
    fn sampled_and_enumerated_type_iii_minimisers_are_stationary() {
        // latent set enumerated (small), mean field enumerated, mean field sampled (s_c^L large)
        for (s_c, len, classes, form) in [
            (3, 3, Some(6), Form::LatentSet),
            (3, 3, None, Form::MeanField),
            (40, 4, Some(20), Form::MeanField),
            (40, 4, Some(20), Form::LatentSet),
        ] {
            let task = TaskConfig {
                freq: Freq::Zipf { exponent: 1.0 },
                lambda_w: 0.002,
                lambda_u: 0.003,
                ..cfg(3, s_c, len, classes)
            }
            .build()
            .unwrap();
            let pred = predict(&task, form).unwrap();
            let cs = Consts::of(&task);
            let samples = RankSamples::of(&task, form).unwrap();
            assert_eq!(samples.sampled, pred.risk_error.is_some());
            let x: Vec<f64> = pred.r.iter().map(|r| r * pred.u_norm).collect();
            let ev = eval_samples(&task, &cs, &samples, &x, 1);
            let gamma = (task.lambda_w() * task.lambda_u() * cs.n_c * cs.k * cs.len).sqrt();
            let nx = norm(&x);
            let g: Vec<f64> = ev
                .grad
                .iter()
                .zip(&x)
                .map(|(g, xb)| g + gamma * xb / nx)
                .collect();
            assert!(
                norm(&g) <= 1e-11 * gamma,
                "{form} s_c {s_c}: |grad| {}",
                norm(&g)
            );
            // r decreasing with the rank where ranks are well sampled
            assert!(
                pred.r[0] > pred.r[1] && pred.r[1] > pred.r[2],
                "{:?}",
                &pred.r[..3]
            );
        }
    }
}
