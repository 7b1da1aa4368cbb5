//! The exact limit risk, its gradient and its Hessian in interval arithmetic, over
//! a box of parameters (docs/certificate.md §3).
//!
//! With `phi_t = phi(w_t)`, the table `A_l[t, j] = <u_{j,l}, phi_t>` and, for class
//! `k` and token choice `beta`, the scores `h = sum_l A_l[x_l, :]` and
//! `p = softmax(h)`:
//!
//! - `R = (1/K) sum_k sum_beta P(beta) (log sum_j e^{h_j} - h_k) + (lambda_W/2)||W||^2
//!   + (lambda_U/2)||U||^2`, `P(beta) = prod_l mu_{beta_l}`;
//! - `G_l[t, j] = (1/K) sum_{k, beta: x_l = t} P(beta) (p_j - [j = k])` is `dR/dA`;
//!   `dR/du_{j,l} = sum_t G_l[t, j] phi_t + lambda_U u_{j,l}` and
//!   `dR/dw_t = Dphi(w_t)ᵀ sum_{l,j} G_l[t, j] u_{j,l} + lambda_W w_t`;
//! - `H_A[(l,t,j), (l',t',j')] = (1/K) sum_{k, beta: x_l = t, x_l' = t'} P(beta)
//!   (p_j [j = j'] - p_j p_j')` is the Hessian in `A` (the softmax curvature), and
//!   `d2R = Jᵀ H_A J + sum_(l,t,j) G_l[t, j] d2A_l[t, j] + diag(lambda)`, where `J =
//!   dA/dtheta` has, in row `(l, t, j)`, `phi_t` at `u_{j,l}` and `Dphi(w_t)ᵀ u_{j,l}`
//!   at `w_t`, and `d2A_l[t, j]` couples `u_{j,l}` with `w_t` through `Dphi(w_t)` (the
//!   bilinear term) and `w_t` with itself through `sum_e u_{j,l,e} d2phi_e(w_t)`
//!   (LayerNorm's second derivatives).
//!
//! LayerNorm (`eps >= 0`, biased variance): `v = w - mean(w) 1`, `s = (|v|^2/d +
//! eps)^{-1/2}`, `phi = s v`, `dphi_e/dw_c = s([e = c] - 1/d) - s^3 v_e v_c / d`, and
//! `d2phi_e/dw_c dw_c' = -(s^3/d) (v_c' ([e = c] - 1/d) + v_c ([e = c'] - 1/d) + v_e
//! ([c = c'] - 1/d)) + 3 s^5 v_e v_c v_c' / d^2`.
//!
//! Every quantity is computed in interval arithmetic from the box of parameters, so
//! each enclosure holds for every parameter vector in the box.

use super::ival::{pt, zero, I};
use crate::task::Task;
use rayon::prelude::*;

/// The instance in exact (interval) numbers.
pub struct Instance<'a> {
    pub task: &'a Task,
    /// The exact token frequencies.
    pub mu: Vec<I>,
    /// LayerNorm's `eps`, or `None` without normalisation.
    pub eps: Option<f64>,
}

/// Enclosures of the risk, its gradient and (optionally) the Hessian restricted
/// to a set of coordinates, over a box.
pub struct Enclosure {
    pub risk: I,
    pub grad: Vec<I>,
    /// Row-major `|S| x |S|` for the coordinate set `S` asked for.
    pub hess: Option<Vec<I>>,
}

/// `phi(w_t)`, `Dphi(w_t)` (`d x d`, `[e][c] = dphi_e/dw_c`) and, with LayerNorm,
/// `d2phi(w_t)` (`d x d x d`, `[e][c][c']`), for every token.
struct Features {
    phi: Vec<I>,
    jac: Vec<I>,
    second: Option<Vec<I>>,
}

fn features(x: &[I], n_w: usize, d: usize, eps: Option<f64>, second: bool) -> Features {
    let mut phi = vec![zero(); n_w * d];
    let mut jac = vec![zero(); n_w * d * d];
    let mut sec = (second && eps.is_some()).then(|| vec![zero(); n_w * d * d * d]);
    let dd = pt(d as f64);
    let inv_d = pt(1.0) / dd;
    for t in 0..n_w {
        let w = &x[t * d..(t + 1) * d];
        let jt = &mut jac[t * d * d..(t + 1) * d * d];
        let Some(eps) = eps else {
            phi[t * d..(t + 1) * d].copy_from_slice(w);
            for e in 0..d {
                jt[e * d + e] = pt(1.0);
            }
            continue;
        };
        let mean = w.iter().fold(zero(), |a, &b| a + b) * inv_d;
        let v: Vec<I> = w.iter().map(|&a| a - mean).collect();
        let var = v.iter().fold(zero(), |a, b| a + b.sqr()) * inv_d + pt(eps);
        let s = pt(1.0) / var.sqrt();
        let s3 = s * s.sqr();
        for e in 0..d {
            phi[t * d + e] = v[e] * s;
            for c in 0..d {
                let delta = if e == c { pt(1.0) - inv_d } else { -inv_d };
                jt[e * d + c] = s * delta - s3 * v[e] * v[c] * inv_d;
            }
        }
        if let Some(sec) = sec.as_mut() {
            let s5 = s3 * s.sqr();
            let a = s3 * inv_d;
            let b = pt(3.0) * s5 * inv_d * inv_d;
            let delta = |i: usize, j: usize| if i == j { pt(1.0) - inv_d } else { -inv_d };
            let st = &mut sec[t * d * d * d..(t + 1) * d * d * d];
            for e in 0..d {
                for c in 0..d {
                    for c2 in c..d {
                        let val = b * v[e] * v[c] * v[c2]
                            - a * (v[c2] * delta(e, c) + v[c] * delta(e, c2) + v[e] * delta(c, c2));
                        st[(e * d + c) * d + c2] = val;
                        st[(e * d + c2) * d + c] = val;
                    }
                }
            }
        }
    }
    Features {
        phi,
        jac,
        second: sec,
    }
}

/// Number of fixed class chunks (independent of the thread count, so the
/// enclosures are the same bits on every machine).
const CHUNKS: usize = 2;

/// The enclosures of `R`, `grad R` and, when `hess_coords` is given, the Hessian
/// block on those (sorted, distinct) flat coordinates, for every parameter
/// vector in the box `x` (flat `[W ; U]` order of [`crate::network::Params`]).
///
/// Cost: `K s_c^L (L K + K)` interval operations and `K s_c^L` interval
/// exponentials for the risk and gradient; with the Hessian add `K s_c^L L^2 K^2`
/// for `H_A`, then `|S| (n_w + L K) N_A` and `|S|^2 (n_w + L K)`,
/// `N_A = L n_w K`; memory `N_A^2 + |S| N_A` intervals.
pub fn enclose(inst: &Instance, x: &[I], hess_coords: Option<&[usize]>) -> Enclosure {
    let task = inst.task;
    let (n_w, d, k_n, len, s_c) = (task.n_w(), task.dim(), task.k(), task.len(), task.s_c());
    let n_a = len * n_w * k_n;
    let want_h = hess_coords.is_some();
    let (xw, xu) = x.split_at(n_w * d);
    let f = features(x, n_w, d, inst.eps, want_h);

    // A_l[t, j] = <u_{j,l}, phi_t>.
    let mut a = vec![zero(); n_a];
    for l in 0..len {
        for t in 0..n_w {
            for j in 0..k_n {
                let u = &xu[(j * len + l) * d..(j * len + l + 1) * d];
                a[(l * n_w + t) * k_n + j] = super::ival::dot(u, &f.phi[t * d..(t + 1) * d]);
            }
        }
    }
    // Token choices: weights P(beta) and ranks, lexicographic (position L-1 fastest).
    let leaves = s_c.pow(len as u32);
    let mut ranks = vec![0usize; leaves * len];
    let mut weight = vec![pt(1.0); leaves];
    for (i, w) in weight.iter_mut().enumerate() {
        let mut r = i;
        for l in (0..len).rev() {
            ranks[i * len + l] = r % s_c;
            r /= s_c;
        }
        *w = (0..len).fold(pt(1.0), |acc, l| acc * inst.mu[ranks[i * len + l]]);
    }

    let chunk = k_n.div_ceil(CHUNKS).max(1);
    let parts: Vec<(I, Vec<I>, Vec<I>)> = (0..k_n)
        .step_by(chunk)
        .collect::<Vec<_>>()
        .into_par_iter()
        .map(|lo| {
            let hi = (lo + chunk).min(k_n);
            let mut risk = zero();
            let mut g = vec![zero(); n_a];
            let mut h = if want_h {
                vec![zero(); n_a * n_a]
            } else {
                Vec::new()
            };
            let mut rows = vec![0usize; len];
            let mut sc = vec![zero(); k_n];
            let mut p = vec![zero(); k_n];
            let mut q = vec![zero(); k_n];
            let mut row = vec![zero(); k_n];
            for k in lo..hi {
                let z = task.z_of(k);
                for leaf in 0..leaves {
                    for l in 0..len {
                        let tok = task.token(z[l], ranks[leaf * len + l]);
                        rows[l] = l * n_w + tok;
                    }
                    sc.fill(zero());
                    for &r in &rows {
                        for (s, &av) in sc.iter_mut().zip(&a[r * k_n..(r + 1) * k_n]) {
                            *s += av;
                        }
                    }
                    let shift = sc.iter().map(|v| v.mid()).fold(f64::NEG_INFINITY, f64::max);
                    let shift = pt(shift);
                    let mut total = zero();
                    for (pj, &s) in p.iter_mut().zip(&sc) {
                        *pj = (s - shift).exp();
                        total += *pj;
                    }
                    let wt = weight[leaf];
                    risk += wt * (total.ln() + shift - sc[k]);
                    for (j, pj) in p.iter_mut().enumerate() {
                        *pj /= total;
                        q[j] = wt * *pj;
                    }
                    for &r in &rows {
                        let gr = &mut g[r * k_n..(r + 1) * k_n];
                        for (gj, &qj) in gr.iter_mut().zip(&q) {
                            *gj += qj;
                        }
                        gr[k] -= wt;
                    }
                    if want_h {
                        for (j, &qj) in q.iter().enumerate() {
                            // Row j of P (diag p - p pᵀ), added to every pair of positions.
                            for (j2, (cv, &pj2)) in row.iter_mut().zip(p.iter()).enumerate() {
                                let c = -qj * pj2;
                                *cv = if j2 == j { c + qj } else { c };
                            }
                            for &r in &rows {
                                let base = (r * k_n + j) * n_a;
                                for &r2 in &rows {
                                    let dst = &mut h[base + r2 * k_n..base + (r2 + 1) * k_n];
                                    for (hv, &cv) in dst.iter_mut().zip(&row) {
                                        *hv += cv;
                                    }
                                }
                            }
                        }
                    }
                }
            }
            (risk, g, h)
        })
        .collect();
    let inv_k = pt(1.0) / pt(k_n as f64);
    let mut risk = zero();
    let mut g = vec![zero(); n_a];
    let mut h_a = if want_h {
        vec![zero(); n_a * n_a]
    } else {
        Vec::new()
    };
    for (r, gp, hp) in parts {
        risk += r;
        for (acc, v) in g.iter_mut().zip(gp) {
            *acc += v;
        }
        for (acc, v) in h_a.iter_mut().zip(hp) {
            *acc += v;
        }
    }
    let (lw, lu) = (pt(task.lambda_w()), pt(task.lambda_u()));
    let sq = |v: &[I]| v.iter().fold(zero(), |a, b| a + b.sqr());
    let risk = risk * inv_k + pt(0.5) * (lw * sq(xw) + lu * sq(xu));
    g.iter_mut().for_each(|v| *v *= inv_k);
    h_a.iter_mut().for_each(|v| *v *= inv_k);

    // Gradient.
    let mut grad = vec![zero(); x.len()];
    let mut gphi = vec![zero(); n_w * d];
    for l in 0..len {
        for t in 0..n_w {
            for j in 0..k_n {
                let gv = g[(l * n_w + t) * k_n + j];
                let off = (j * len + l) * d;
                for c in 0..d {
                    grad[n_w * d + off + c] += gv * f.phi[t * d + c];
                    gphi[t * d + c] += gv * xu[off + c];
                }
            }
        }
    }
    for t in 0..n_w {
        for c in 0..d {
            let mut acc = lw * xw[t * d + c];
            for e in 0..d {
                acc += f.jac[(t * d + e) * d + c] * gphi[t * d + e];
            }
            grad[t * d + c] = acc;
        }
    }
    for (gv, &u) in grad[n_w * d..].iter_mut().zip(xu) {
        *gv += lu * u;
    }

    let hess = hess_coords.map(|s| hessian(inst, x, &f, &g, &h_a, s));
    Enclosure { risk, grad, hess }
}

/// `Jᵀ H_A J + sum G d2A + diag(lambda)` on the coordinates `s` (module docs).
fn hessian(inst: &Instance, x: &[I], f: &Features, g: &[I], h_a: &[I], s: &[usize]) -> Vec<I> {
    let task = inst.task;
    let (n_w, d, k_n, len) = (task.n_w(), task.dim(), task.k(), task.len());
    let n_a = len * n_w * k_n;
    let nw_d = n_w * d;
    let xu = &x[nw_d..];
    let m = s.len();
    let mut pos = vec![usize::MAX; x.len()];
    for (i, &c) in s.iter().enumerate() {
        pos[c] = i;
    }
    // Column lists of J: (row of A, value).
    let col = |idx: usize| -> Vec<(usize, I)> {
        if idx < nw_d {
            let (t, c) = (idx / d, idx % d);
            let mut out = Vec::with_capacity(len * k_n);
            for l in 0..len {
                for j in 0..k_n {
                    let u = &xu[(j * len + l) * d..(j * len + l + 1) * d];
                    let v = (0..d).fold(zero(), |acc, e| acc + f.jac[(t * d + e) * d + c] * u[e]);
                    out.push(((l * n_w + t) * k_n + j, v));
                }
            }
            out
        } else {
            let r = idx - nw_d;
            let (jl, c) = (r / d, r % d);
            let (j, l) = (jl / len, jl % len);
            (0..n_w)
                .map(|t| ((l * n_w + t) * k_n + j, f.phi[t * d + c]))
                .collect()
        }
    };
    let cols: Vec<Vec<(usize, I)>> = s.iter().map(|&c| col(c)).collect();
    // XT[s'] = sum_{(beta, v) in col(s')} v H_A[beta, :].
    let xt: Vec<Vec<I>> = cols
        .par_iter()
        .map(|cl| {
            let mut row = vec![zero(); n_a];
            for &(beta, v) in cl {
                for (acc, &hv) in row.iter_mut().zip(&h_a[beta * n_a..(beta + 1) * n_a]) {
                    *acc += v * hv;
                }
            }
            row
        })
        .collect();
    let mut h: Vec<I> = (0..m)
        .into_par_iter()
        .flat_map_iter(|i| {
            let cl = &cols[i];
            let xt = &xt;
            (0..m).map(move |j| cl.iter().fold(zero(), |acc, &(al, v)| acc + v * xt[j][al]))
        })
        .collect();
    // Second-order terms of A and the penalties.
    let mut add = |a: usize, b: usize, v: I| {
        let (pa, pb) = (pos[a], pos[b]);
        if pa != usize::MAX && pb != usize::MAX {
            h[pa * m + pb] += v;
        }
    };
    for l in 0..len {
        for t in 0..n_w {
            for j in 0..k_n {
                let gv = g[(l * n_w + t) * k_n + j];
                let uo = nw_d + (j * len + l) * d;
                for c in 0..d {
                    for c2 in 0..d {
                        // d2A / du_{j,l,c} dw_{t,c2} = dphi_c / dw_{c2}.
                        let v = gv * f.jac[(t * d + c) * d + c2];
                        add(uo + c, t * d + c2, v);
                        add(t * d + c2, uo + c, v);
                    }
                }
                if let Some(sec) = &f.second {
                    let u = &xu[(j * len + l) * d..(j * len + l + 1) * d];
                    for c in 0..d {
                        for c2 in 0..d {
                            let v = (0..d).fold(zero(), |acc, e| {
                                acc + u[e] * sec[((t * d + e) * d + c) * d + c2]
                            });
                            add(t * d + c, t * d + c2, gv * v);
                        }
                    }
                }
            }
        }
    }
    let (lw, lu) = (pt(task.lambda_w()), pt(task.lambda_u()));
    for (i, &c) in s.iter().enumerate() {
        h[i * m + i] += if c < nw_d { lw } else { lu };
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certify::ival::{frequencies, iv};
    use crate::limit;
    use crate::network::Params;
    use crate::task::{Freq, TaskConfig};
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// Central differences of the exact gradient (step 1e-5), `n x n`.
    fn fd_hessian(t: &Task, p: &Params) -> nalgebra::DMatrix<f64> {
        let x0 = p.to_flat();
        let n = x0.len();
        let h = 1e-5;
        let mut m = nalgebra::DMatrix::zeros(n, n);
        for j in 0..n {
            let (mut xp, mut xm) = (x0.clone(), x0.clone());
            xp[j] += h;
            xm[j] -= h;
            let gp = limit::risk_grad(t, &p.with_flat(&xp)).1;
            let gm = limit::risk_grad(t, &p.with_flat(&xm)).1;
            for i in 0..n {
                m[(i, j)] = (gp[i] - gm[i]) / (2.0 * h);
            }
        }
        (&m + m.transpose()) * 0.5
    }

    fn task(ln: Option<f64>) -> Task {
        TaskConfig {
            n_c: 2,
            s_c: 2,
            len: 2,
            dim: 3,
            classes: None,
            freq: Freq::Zipf { exponent: 1.0 },
            layer_norm: ln,
            norm: None,
            lambda_affine: None,
            lambda_w: 0.03,
            lambda_u: 0.02,
            seed: 1,
            latent: None,
        }
        .build()
        .unwrap()
    }

    #[test]
    fn point_enclosures_contain_the_float_risk_gradient_and_hessian() {
        for ln in [None, Some(0.0), Some(1e-3)] {
            let t = task(ln);
            let mut rng = ChaCha8Rng::seed_from_u64(3);
            let p = Params::random(&t, 0.8, &mut rng);
            let x: Vec<I> = p.to_flat().iter().map(|&v| pt(v)).collect();
            let inst = Instance {
                task: &t,
                mu: frequencies(&t),
                eps: ln,
            };
            let n = x.len();
            let all: Vec<usize> = (0..n).collect();
            let e = enclose(&inst, &x, Some(&all));
            let (r, g) = limit::risk_grad(&t, &p);
            // The float risk carries its own round-off: compare with a tolerance.
            assert!(
                (e.risk.mid() - r).abs() <= 1e-13 * r.abs(),
                "{:?} vs {r}",
                e.risk
            );
            assert!(e.risk.wid() <= 1e-13 * r.abs());
            for (i, (ge, gf)) in e.grad.iter().zip(&g).enumerate() {
                assert!((ge.mid() - gf).abs() <= 1e-12, "{i}: {ge:?} vs {gf}");
            }
            let hf = fd_hessian(&t, &p);
            let h = e.hess.unwrap();
            let scale = hf.iter().fold(1.0f64, |m, v| m.max(v.abs()));
            for i in 0..n {
                for j in 0..n {
                    let he = h[i * n + j];
                    assert!(he.wid() <= 1e-12 * scale);
                    assert!(
                        (he.mid() - hf[(i, j)]).abs() <= 2e-6 * scale,
                        "{ln:?} ({i},{j}): {he:?} vs fd {}",
                        hf[(i, j)]
                    );
                }
            }
        }
    }

    #[test]
    fn box_enclosures_contain_every_point_of_the_box() {
        let t = task(Some(0.0));
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let p = Params::random(&t, 1.0, &mut rng);
        let c = p.to_flat();
        let r = 1e-3;
        let x: Vec<I> = c.iter().map(|&v| pt(v) + iv(-r, r)).collect();
        let inst = Instance {
            task: &t,
            mu: frequencies(&t),
            eps: Some(0.0),
        };
        let s: Vec<usize> = (0..c.len()).step_by(3).collect();
        let e = enclose(&inst, &x, Some(&s));
        let h = e.hess.unwrap();
        for trial in 0..5 {
            let y: Vec<f64> = c
                .iter()
                .enumerate()
                .map(|(i, &v)| v + r * (((i * 7 + trial * 3) % 11) as f64 / 5.0 - 1.0))
                .collect();
            let q = p.with_flat(&y);
            let (rv, gv) = limit::risk_grad(&t, &q);
            assert!(e.risk.contains(rv), "{:?} vs {rv}", e.risk);
            for (ge, gf) in e.grad.iter().zip(&gv) {
                assert!(ge.inf() - 1e-12 <= *gf && *gf <= ge.sup() + 1e-12);
            }
            let hf = fd_hessian(&t, &q);
            let m = s.len();
            for (a, &i) in s.iter().enumerate() {
                for (b, &j) in s.iter().enumerate() {
                    let he = h[a * m + b];
                    assert!(
                        he.inf() - 1e-5 <= hf[(i, j)] && hf[(i, j)] <= he.sup() + 1e-5,
                        "({i},{j}): {he:?} vs {}",
                        hf[(i, j)]
                    );
                }
            }
        }
    }
}
