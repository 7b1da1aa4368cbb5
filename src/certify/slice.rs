//! The local certificate in the full parameter space (docs/certificate.md §3):
//! the symmetry generators, a slice transverse to the orbit, strong convexity of
//! the risk on a ball of the slice, and transversality on the whole ball.
//!
//! The slice is `f(y) = R(theta_hat + Q y)` where `Q` selects the coordinates `S`
//! (every coordinate but `k` pivots chosen so that the orbit's tangent vectors
//! are well conditioned on them): `Qᵀ grad R = (grad R)_S` and `Qᵀ H Q = H_SS`, a
//! principal block, and `||Q|| = 1`.

use super::identify::{identify, Identification};
use super::ival::{iv, norm_upper, pt, verified_min_eig, zero, I};
use super::risk::{enclose, Instance};
use nalgebra::DMatrix;

/// A generator of the symmetry group, acting on `theta = (W, U)` (flat order).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Generator {
    /// The rotation `x_a <- x_b, x_b <- -x_a` of every `d`-block (no normalisation).
    Rotation { a: usize, b: usize },
    /// The rotation fixing `1_d` of every block: `A = E_0b - E_b0 + E_bc - E_cb +
    /// E_c0 - E_0c` (LayerNorm; these span the rotations that fix `1_d`).
    Cyclic { b: usize, c: usize },
    /// The scale of the row `w_t` (LayerNorm, `eps = 0`, `lambda_W = 0`).
    Scale { t: usize },
    /// The shift `w_t + s 1_d` (LayerNorm, `lambda_W = 0`): a constant field.
    Shift { t: usize },
}

impl Generator {
    /// `A theta` (for a constant field, the field), in interval arithmetic.
    pub fn apply(&self, x: &[I], n_w: usize, d: usize) -> Vec<I> {
        let mut out = vec![zero(); x.len()];
        match *self {
            Generator::Rotation { a, b } => {
                for (o, v) in out.chunks_mut(d).zip(x.chunks(d)) {
                    o[a] = v[b];
                    o[b] = -v[a];
                }
            }
            Generator::Cyclic { b, c } => {
                for (o, v) in out.chunks_mut(d).zip(x.chunks(d)) {
                    o[0] = v[b] - v[c];
                    o[b] = v[c] - v[0];
                    o[c] = v[0] - v[b];
                }
            }
            Generator::Scale { t } => {
                out[t * d..(t + 1) * d].copy_from_slice(&x[t * d..(t + 1) * d]);
            }
            Generator::Shift { t } => {
                debug_assert!(t < n_w);
                out[t * d..(t + 1) * d].fill(pt(1.0));
            }
        }
        out
    }

    /// A bound on `||A||_2` for a linear generator; `0` for a constant field
    /// (whose value does not move with `theta`).
    pub fn norm_bound(&self) -> f64 {
        match self {
            Generator::Rotation { .. } | Generator::Scale { .. } => 1.0,
            // Row and column absolute sums are 2.
            Generator::Cyclic { .. } => 2.0,
            Generator::Shift { .. } => 0.0,
        }
    }
}

/// The generators of the symmetries of the instance: rotations of `R^d` (those
/// fixing `1_d` with LayerNorm) and, with LayerNorm, `eps = 0` and `lambda_W = 0`,
/// the scale and shift of every row of `W`.
pub fn generators(n_w: usize, d: usize, layer_norm: Option<f64>, lambda_w: f64) -> Vec<Generator> {
    let mut g = Vec::new();
    match layer_norm {
        None => {
            for a in 0..d {
                for b in a + 1..d {
                    g.push(Generator::Rotation { a, b });
                }
            }
        }
        Some(eps) => {
            for b in 1..d {
                for c in b + 1..d {
                    g.push(Generator::Cyclic { b, c });
                }
            }
            if lambda_w == 0.0 {
                for t in 0..n_w {
                    if eps == 0.0 {
                        g.push(Generator::Scale { t });
                    }
                    g.push(Generator::Shift { t });
                }
            }
        }
    }
    g
}

/// The slice: coordinates kept (`s`), pivots removed, the generators used.
pub struct Slice {
    pub s: Vec<usize>,
    pub pivots: Vec<usize>,
    pub chosen: Vec<Generator>,
}

/// Picks independent generators (column-pivoted Gram–Schmidt on `A_i theta_hat`,
/// relative tolerance `1e-9`) and as many pivot coordinates (row pivoting).
pub fn choose_slice(x: &[I], n_w: usize, d: usize, gens: &[Generator]) -> Slice {
    let n = x.len();
    let cols: Vec<Vec<f64>> = gens
        .iter()
        .map(|g| g.apply(x, n_w, d).iter().map(|v| v.mid()).collect())
        .collect();
    let norm = |v: &[f64]| v.iter().map(|a| a * a).sum::<f64>().sqrt();
    let scale = cols.iter().map(|c| norm(c)).fold(0.0, f64::max);
    let mut resid = cols.clone();
    let mut chosen_idx = Vec::new();
    let mut basis: Vec<Vec<f64>> = Vec::new();
    loop {
        let best = (0..resid.len())
            .filter(|i| !chosen_idx.contains(i))
            .map(|i| (i, norm(&resid[i])))
            .fold(None, |m: Option<(usize, f64)>, c| match m {
                Some(mm) if mm.1 >= c.1 => Some(mm),
                _ => Some(c),
            });
        let Some((i, nv)) = best else { break };
        if nv <= 1e-9 * scale || nv == 0.0 {
            break;
        }
        let q: Vec<f64> = resid[i].iter().map(|v| v / nv).collect();
        for r in resid.iter_mut() {
            let dp: f64 = r.iter().zip(&q).map(|(a, b)| a * b).sum();
            for (a, b) in r.iter_mut().zip(&q) {
                *a -= dp * b;
            }
        }
        basis.push(q);
        chosen_idx.push(i);
    }
    // Row pivoting on the chosen columns.
    let k = chosen_idx.len();
    let mut m: Vec<Vec<f64>> = chosen_idx.iter().map(|&i| cols[i].clone()).collect();
    let mut used = vec![false; n];
    let mut pivots = Vec::with_capacity(k);
    for j in 0..k {
        let (p, _) = (0..n)
            .filter(|&r| !used[r])
            .map(|r| (r, m[j][r].abs()))
            .fold((usize::MAX, -1.0), |a, c| if c.1 > a.1 { c } else { a });
        used[p] = true;
        pivots.push(p);
        let piv = m[j][p];
        for jj in j + 1..k {
            let f = m[jj][p] / piv;
            let (head, tail) = m.split_at_mut(jj);
            for (a, b) in tail[0].iter_mut().zip(&head[j]) {
                *a -= f * b;
            }
        }
    }
    let s = (0..n).filter(|&r| !used[r]).collect();
    Slice {
        s,
        pivots,
        chosen: chosen_idx.iter().map(|&i| gens[i]).collect(),
    }
}

/// The local certificate's numbers.
#[derive(Debug, Clone)]
pub struct LocalProof {
    /// Orbit dimension `k` (generators kept) and slice dimension `n - k`.
    pub orbit_dim: usize,
    pub slice_dim: usize,
    /// Upper bound on `||Qᵀ grad R(theta_hat)||`.
    pub grad_norm: f64,
    /// Proved lower bound `m` on `lambda_min(Qᵀ H Q)` over the ball (`-inf` if none).
    pub transverse_lower_bound: f64,
    /// Floating-point estimate of the same at the ball's centre.
    pub transverse_estimate: f64,
    /// Radius `r` of the ball (a box of half-width `r` in the slice coordinates).
    pub radius: f64,
    /// `||grad|| / m`, rounded up: the certified minimiser is this close to `theta_hat`.
    pub distance_bound: f64,
    /// Proved lower bound on `sigma_min` of the tangent vectors on the pivots.
    pub sigma_min_lower: f64,
    /// `r sqrt(sum_i ||A_i||^2)`: what `sigma_min_lower` must exceed.
    pub transversality_margin: f64,
    /// `R(theta_hat)`.
    pub risk_at_candidate: I,
    /// `R(theta*)`, `theta*` the certified local minimiser.
    pub risk: I,
    /// The predicted configuration moved onto the slice (when a family box was given).
    pub identification: Option<Identification>,
    /// `None` when proved; else the step that failed, with its numbers.
    pub failure: Option<String>,
}

/// Relative radius of the first ball tried (times `max(1, max |theta_hat|)`).
pub const RADIUS0: f64 = 1e-9;
/// Largest relative radius allowed (a wider ball would not be a narrow certificate).
pub const RADIUS_MAX: f64 = 1e-7;

/// The local certificate at the float point `theta_hat` (docs/certificate.md §3);
/// with `family` (an enclosure of the predicted configuration `theta(c*)`), also
/// the identification of [`super::identify`].
pub fn prove_local(inst: &Instance, theta: &[f64], family: Option<&[I]>) -> LocalProof {
    let task = inst.task;
    let (n_w, d) = (task.n_w(), task.dim());
    let x: Vec<I> = theta.iter().map(|&v| pt(v)).collect();
    let gens = generators(n_w, d, inst.eps, task.lambda_w());
    let slice = choose_slice(&x, n_w, d, &gens);
    let k = slice.chosen.len();
    let at = enclose(inst, &x, None);
    let g: Vec<I> = slice.s.iter().map(|&i| at.grad[i]).collect();
    let grad_norm = norm_upper(&g);
    let scale = theta.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    let mut out = LocalProof {
        orbit_dim: k,
        slice_dim: slice.s.len(),
        grad_norm,
        transverse_lower_bound: f64::NEG_INFINITY,
        transverse_estimate: f64::NAN,
        radius: RADIUS0 * scale,
        distance_bound: f64::INFINITY,
        sigma_min_lower: f64::NEG_INFINITY,
        transversality_margin: f64::INFINITY,
        risk_at_candidate: at.risk,
        risk: I::ENTIRE,
        identification: None,
        failure: None,
    };
    // Strong convexity on the ball; one retry with a ball fitted to the gradient.
    let mut r = RADIUS0 * scale;
    for attempt in 0..2 {
        let bx: Vec<I> = x.clone();
        let mut bx = bx;
        for &i in &slice.s {
            bx[i] += iv(-r, r);
        }
        let h = enclose(inst, &bx, Some(&slice.s)).hess.expect("asked for");
        let eig = verified_min_eig(&h, slice.s.len());
        out.transverse_lower_bound = eig.lower;
        out.transverse_estimate = eig.estimate;
        out.radius = r;
        let m = eig.lower;
        if m.is_nan() || m <= 0.0 {
            out.failure = Some(format!(
                "strong convexity: the transverse Hessian on the ball of radius {r:.3e} is not proved \
                 positive definite (estimated smallest eigenvalue {:.3e}, proved bound {:.3e})",
                eig.estimate, m
            ));
            return out;
        }
        let dist = (pt(grad_norm) / pt(m)).sup();
        out.distance_bound = dist;
        if dist < r {
            break;
        }
        let fitted = 4.0 * dist;
        if attempt == 1 || fitted > RADIUS_MAX * scale {
            out.failure = Some(format!(
                "unique minimiser on the slice: ||Q^T grad R|| / m = {grad_norm:.3e} / {m:.3e} = {dist:.3e} \
                 is not below the radius {r:.3e} (and a ball of radius {fitted:.3e} would exceed the narrow \
                 limit {:.3e}): the candidate is not a critical point to that precision",
                RADIUS_MAX * scale
            ));
            return out;
        }
        r = fitted;
    }
    let m = out.transverse_lower_bound;
    // Transversality on the whole ball.
    let cols: Vec<Vec<I>> = slice.chosen.iter().map(|g| g.apply(&x, n_w, d)).collect();
    let mut btb = vec![zero(); k * k];
    for i in 0..k {
        for j in 0..=i {
            let v = slice
                .pivots
                .iter()
                .fold(zero(), |acc, &p| acc + cols[i][p] * cols[j][p]);
            btb[i * k + j] = v;
            btb[j * k + i] = v;
        }
    }
    let lam = verified_min_eig(&btb, k);
    out.sigma_min_lower = if k == 0 {
        // No symmetry: the slice is the whole space.
        f64::INFINITY
    } else if lam.lower > 0.0 {
        pt(lam.lower).sqrt().inf()
    } else {
        f64::NEG_INFINITY
    };
    let sum_sq = slice
        .chosen
        .iter()
        .fold(zero(), |acc, g| acc + pt(g.norm_bound()).sqr());
    out.transversality_margin = (pt(r) * sum_sq.sqrt()).sup();
    if k > 0 && out.sigma_min_lower <= out.transversality_margin {
        out.failure = Some(format!(
            "transversality: sigma_min of the orbit's tangent vectors on the pivots >= {:.3e} is not \
             above r sqrt(sum ||A_i||^2) = {:.3e}",
            out.sigma_min_lower, out.transversality_margin
        ));
        return out;
    }
    if let Some(fam) = family {
        let id = identify(
            theta,
            fam,
            &slice.chosen,
            d,
            out.sigma_min_lower.max(0.0),
            r,
        );
        out.identification = Some(id);
        if !id.passed {
            out.failure = Some(format!(
                "identification: the predicted configuration (within {:.3e} of the candidate) could not be                  moved onto the slice ball (contraction factor {:.3e} must be <= 0.5, distance {:.3e} <= r = {r:.3e})",
                id.eps, id.q, id.distance
            ));
            return out;
        }
    }
    // R(theta*) in R(theta_hat) - [0, ||g||^2 / (2m)].
    let drop = (pt(grad_norm).sqr() / (pt(2.0) * pt(m))).sup();
    out.risk = iv((at.risk - pt(drop)).inf(), at.risk.sup());
    out
}

/// The float matrix of the tangent vectors on the pivots (for reports and tests).
pub fn pivot_matrix(x: &[I], n_w: usize, d: usize, slice: &Slice) -> DMatrix<f64> {
    let k = slice.chosen.len();
    DMatrix::from_fn(k, k, |a, i| {
        slice.chosen[i].apply(x, n_w, d)[slice.pivots[a]].mid()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limit;
    use crate::network::Params;
    use crate::task::{Freq, TaskConfig};
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// Every generator is an infinitesimal symmetry: `grad R(theta) . A theta = 0`
    /// at random points (to round-off), and a non-symmetry (a rotation that moves
    /// `1_d`, with LayerNorm) is not.
    #[test]
    fn generators_are_symmetries_of_the_risk() {
        for (ln, lw) in [(None, 0.02), (Some(0.0), 0.0), (Some(1e-3), 0.0)] {
            let t = TaskConfig {
                n_c: 3,
                s_c: 2,
                len: 2,
                dim: 4,
                classes: None,
                freq: Freq::Zipf { exponent: 1.0 },
                layer_norm: ln,
                norm: None,
                lambda_affine: None,
                lambda_w: lw,
                lambda_u: 0.03,
                seed: 2,
                latent: None,
            }
            .build()
            .unwrap();
            let mut rng = ChaCha8Rng::seed_from_u64(9);
            let p = Params::random(&t, 1.0, &mut rng);
            let theta = p.to_flat();
            let x: Vec<I> = theta.iter().map(|&v| pt(v)).collect();
            let (_, g) = limit::risk_grad(&t, &p);
            let gn = g.iter().map(|v| v * v).sum::<f64>().sqrt();
            let gens = generators(t.n_w(), t.dim(), ln, lw);
            let expect = match ln {
                None => 6,
                Some(0.0) => 3 + 2 * t.n_w(),
                Some(_) => 3 + t.n_w(),
            };
            assert_eq!(gens.len(), expect);
            for gen in &gens {
                let a: Vec<f64> = gen
                    .apply(&x, t.n_w(), t.dim())
                    .iter()
                    .map(|v| v.mid())
                    .collect();
                let an = a.iter().map(|v| v * v).sum::<f64>().sqrt();
                let dir: f64 = g.iter().zip(&a).map(|(p, q)| p * q).sum();
                assert!(
                    dir.abs() <= 1e-12 * gn * an,
                    "{gen:?}: {dir} vs {}",
                    gn * an
                );
            }
            if ln.is_some() {
                let moves_ones = Generator::Rotation { a: 0, b: 1 };
                let a: Vec<f64> = moves_ones
                    .apply(&x, t.n_w(), t.dim())
                    .iter()
                    .map(|v| v.mid())
                    .collect();
                let dir: f64 = g.iter().zip(&a).map(|(p, q)| p * q).sum();
                assert!(
                    dir.abs() > 1e-6,
                    "a rotation moving 1_d is not a symmetry: {dir}"
                );
            }
            // The slice keeps every coordinate but one pivot per independent generator.
            let slice = choose_slice(&x, t.n_w(), t.dim(), &gens);
            assert_eq!(slice.s.len() + slice.pivots.len(), theta.len());
            let b = pivot_matrix(&x, t.n_w(), t.dim(), &slice);
            let sv = b.singular_values();
            assert!(sv.min() > 1e-6 * sv.max(), "{sv}");
        }
    }
}
