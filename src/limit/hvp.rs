//! Hessian-vector products of the exact limit risk.

use super::risk_grad;
use crate::network::Params;
use crate::task::Task;

/// Hessian-vector product `H v` by a central difference of the exact gradient
/// along `v`:
///
/// `H v ~ ||v|| (grad R(x + h v/||v||) - grad R(x - h v/||v||)) / (2h)`,
/// `h = 1e-5 max(1, max_i |x_i|)`.
///
/// Accuracy: the truncation error is `(h^2/6) D^3 grad R[v, v]`, about `1e-10`
/// times the third derivative, and the round-off `~ 1e-16 ||grad R|| / h`, about
/// `1e-11` times the gradient scale: each product is good to about `1e-10`
/// (relative to `max(1, ||H||)`). Cost: two exact gradients ([`risk_grad`]).
pub fn hessian_vector_product(task: &Task, p: &Params, v: &[f64]) -> Vec<f64> {
    let x0 = p.to_flat();
    let nv = v.iter().map(|a| a * a).sum::<f64>().sqrt();
    if nv == 0.0 {
        return vec![0.0; v.len()];
    }
    let h = 1e-5 * x0.iter().fold(1.0f64, |m, a| m.max(a.abs()));
    let step = |sign: f64| -> Vec<f64> {
        let x: Vec<f64> = x0
            .iter()
            .zip(v)
            .map(|(a, b)| a + sign * h * b / nv)
            .collect();
        risk_grad(task, &p.with_flat(&x)).1
    };
    let gp = step(1.0);
    let gm = step(-1.0);
    gp.iter()
        .zip(&gm)
        .map(|(a, b)| nv * (a - b) / (2.0 * h))
        .collect()
}
