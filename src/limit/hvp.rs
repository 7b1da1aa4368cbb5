//! Exact Hessian-vector products of the limit risk `R(W, U)` (module docs of
//! [`super`]), and the dense Hessian built from them.
//!
//! The point's quantities are computed once by [`HessianOperator::new`] and
//! shared by every product at that point; the formulas are on
//! [`HessianOperator`]. Deterministic and independent of the rayon thread count
//! (the classes are chunked as in [`risk_grad`]).

use super::feature_map::{add_features_second, features_jvp};
use super::kernel::Table;
use super::simd::tangent_class;
use super::tangent::TangentScratch;
use super::{assert_shape, chunk_ranges, gradient_table, map_chunks, risk_grad, wave_len};
use crate::network::{dot, features, features_backward, Params};
use crate::task::Task;
use nalgebra::DMatrix;
use rayon::prelude::*;

/// The Hessian of [`risk`](super::risk) at one point, as an operator `v -> H v`.
///
/// Write `A_l[t, j] = <u_{j,l}, phi_t>` with `phi_t = phi(w_t)`, and for a leaf
/// (class `k`, token choice `beta`, tokens `x_l`) `h = sum_l A_l[x_l, :]`,
/// `p = softmax(h)`. The gradient is `dR/dA = G / K` with
/// `G_l[t, j] = sum_k sum_beta P(beta) [x_l = t] (p_j - δ_jk)`, then
///
/// ```text
/// dR/du_{j,l} = (1/K) sum_t G_l[t, j] phi_t + lambda_U u_{j,l},
/// dR/dphi_t   = (1/K) sum_{l,j} G_l[t, j] u_{j,l},
/// dR/dw_t     = Dphi(w_t)^T dR/dphi_t + lambda_W w_t.
/// ```
///
/// The product `H v` is the derivative of this gradient along
/// `v = (v_W, v_U)`:
///
/// 1. `dphi_t = Dphi(w_t)[v_{w,t}]` and the tangent table
///    `dA_l[t, j] = <v_{u,j,l}, phi_t> + <u_{j,l}, dphi_t>`;
/// 2. at each leaf `dh = sum_l dA_l[x_l, :]` and the softmax curvature term
///    `dp = p ⊙ (dh - <p, dh> 1)`, i.e. `d(p_j - δ_jk) = sum_i p_j (δ_ij - p_i) dh_i`;
///    `dG` sums `P(beta) [x_l = t] dp` like `G` (same Gray-code walk and
///    prefix sums, `dh` updated next to `h` in `O(K)` per step);
/// 3. the chain rule, where the product rule on `G_l[t, j] phi_t` and
///    `G_l[t, j] u_{j,l}` gives the bilinear cross terms between `u` and `w`
///    (the factor `p_j - δ_jk` of `G` times the tangent of the other factor):
///
/// ```text
/// (H v)_{u_{j,l}} = (1/K) sum_t (dG_l[t, j] phi_t + G_l[t, j] dphi_t) + lambda_U v_{u,j,l},
/// d(dR/dphi_t)    = (1/K) sum_{l,j} (dG_l[t, j] u_{j,l} + G_l[t, j] v_{u,j,l}),
/// (H v)_{w_t}     = Dphi(w_t)^T d(dR/dphi_t) + D^2phi(w_t)[v_{w,t}]^T dR/dphi_t
///                   + lambda_W v_{w,t},
/// ```
///
/// with LayerNorm's Jacobian `Dphi(w) = (P - x x^T/d) / s` and second derivative
/// `D^2phi(w)[v]^T g = (-a P g - b P v + (3 a b - <Pv, Pg>/d) x) / s^2`, where
/// `x = phi(w)`, `s = sqrt(var(w) + eps)`, `P = I - 1 1^T/d`, `a = <x, v>/d`,
/// `b = <x, g>/d` (without LayerNorm `Dphi = I` and `D^2phi = 0`).
///
/// Nothing is approximated: the only error is floating-point round-off, of the
/// same order as that of [`risk_grad`] (measured: within `2e-15` of the largest
/// entry of PyTorch's `torch.func.hessian`, where a central difference of the
/// gradient, [`hessian_vector_product_fd`], is off by `5e-10`–`6e-9`; see
/// docs/performance.md).
///
/// The point's features, score table, gradient table `G / K` and
/// `dR/dphi` are computed once (one gradient pass, like [`risk_grad`]); each
/// [`apply`](Self::apply) then costs one tangent pass over the enumeration plus
/// `O(L n_w K d)` dense products. The caller checks
/// [`check_budget`](super::check_budget) first. Memory: the operator keeps `A`
/// and `G`, and a product allocates `dA`, the summed `dG` and one `dG` per chunk
/// in flight, i.e. two `L x n_w x K` tables more than [`risk_grad`].
pub struct HessianOperator<'a> {
    task: &'a Task,
    p: &'a Params,
    phi: Vec<f64>,
    table: Table<'a>,
    /// `G / K` (layout of `A`).
    g: Vec<f64>,
    /// `dR/dphi_t` of the data term, row-major `n_w x d`.
    g_phi: Vec<f64>,
    /// False for the normalizations without a derived Hessian (rms, center,
    /// layer-affine: [`Norm::has_exact_hessian`](crate::norm::Norm::has_exact_hessian)),
    /// whose products are [`hessian_vector_product_fd`].
    exact: bool,
}

impl<'a> HessianOperator<'a> {
    /// The point's quantities: `phi`, `A`, `G / K` and `dR/dphi`.
    pub fn new(task: &'a Task, p: &'a Params) -> Self {
        assert_shape(task, p);
        if !task.norm().has_exact_hessian() {
            // Products by central differences; only the (cheap) table is kept.
            let phi = features(p, task.norm());
            let table = Table::new(task, p, &phi);
            return HessianOperator {
                task,
                p,
                phi,
                table,
                g: Vec::new(),
                g_phi: Vec::new(),
                exact: false,
            };
        }
        let phi = features(p, task.norm());
        let table = Table::new(task, p, &phi);
        let (_, mut g) = gradient_table(task, &table);
        let inv_k = 1.0 / task.k() as f64;
        g.iter_mut().for_each(|x| *x *= inv_k);
        let (len, d, n_w, k_n) = (task.len(), task.dim(), task.n_w(), task.k());
        let mut g_phi = vec![0.0; phi.len()];
        for l in 0..len {
            for t in 0..n_w {
                let row = &g[(l * n_w + t) * k_n..(l * n_w + t + 1) * k_n];
                let gphi_t = &mut g_phi[t * d..(t + 1) * d];
                for (j, &gj) in row.iter().enumerate() {
                    if gj != 0.0 {
                        for (o, u) in gphi_t.iter_mut().zip(p.u_block(j, l)) {
                            *o += gj * u;
                        }
                    }
                }
            }
        }
        HessianOperator {
            task,
            p,
            phi,
            table,
            g,
            g_phi,
            exact: true,
        }
    }

    /// Number of parameters (`n = n_w d + K L d`, plus `2 d` with an affine
    /// LayerNorm).
    pub fn dim(&self) -> usize {
        self.p.flat_len()
    }

    /// `H v`, flat in the [`Params::to_flat`] order (see [`HessianOperator`]). Panics when
    /// `v` does not have [`dim`](Self::dim) entries.
    pub fn apply(&self, v: &[f64]) -> Vec<f64> {
        let (task, p) = (self.task, self.p);
        assert_eq!(v.len(), self.dim(), "direction length");
        if !self.exact {
            return hessian_vector_product_fd(task, p, v);
        }
        let (len, d, n_w, k_n) = (task.len(), task.dim(), task.n_w(), task.k());
        let eps = task.norm().layer_eps();
        let (v_w, v_u) = v.split_at(p.w.len());
        let v_block = |j: usize, l: usize| &v_u[(j * len + l) * d..(j * len + l + 1) * d];

        // 1. dphi and the tangent table dA.
        let dphi = features_jvp(&p.w, v_w, d, eps);
        let mut da = vec![0.0; self.table.a.len()];
        for (lt, row) in da.chunks_mut(k_n).enumerate() {
            let (l, t) = (lt / n_w, lt % n_w);
            let (phi_t, dphi_t) = (&self.phi[t * d..(t + 1) * d], &dphi[t * d..(t + 1) * d]);
            for (j, x) in row.iter_mut().enumerate() {
                *x = dot(v_block(j, l), phi_t) + dot(p.u_block(j, l), dphi_t);
            }
        }
        let dtable = Table::from_entries(task, da);

        // 2. dG, summed over classes.
        let inv_k = 1.0 / k_n as f64;
        let dg = tangent_table(task, &self.table, &dtable);

        // 3. The chain rule.
        let mut h_u = vec![0.0; p.u.len()];
        let mut h_phi = vec![0.0; self.phi.len()];
        for l in 0..len {
            for t in 0..n_w {
                let off = (l * n_w + t) * k_n;
                let (g_row, dg_row) = (&self.g[off..off + k_n], &dg[off..off + k_n]);
                let (phi_t, dphi_t) = (&self.phi[t * d..(t + 1) * d], &dphi[t * d..(t + 1) * d]);
                let hphi_t = &mut h_phi[t * d..(t + 1) * d];
                for (j, (&gj, &dgj)) in g_row.iter().zip(dg_row).enumerate() {
                    if gj == 0.0 && dgj == 0.0 {
                        continue;
                    }
                    let dgj = dgj * inv_k;
                    let b = (j * len + l) * d;
                    let (hu, u, vu) = (&mut h_u[b..b + d], &p.u[b..b + d], &v_u[b..b + d]);
                    for c in 0..d {
                        hu[c] += dgj * phi_t[c] + gj * dphi_t[c];
                        hphi_t[c] += dgj * u[c] + gj * vu[c];
                    }
                }
            }
        }
        let (mut h_w, _) = features_backward(p, task.norm(), h_phi);
        add_features_second(&p.w, &self.g_phi, v_w, d, eps, &mut h_w);
        for (h, x) in h_w.iter_mut().zip(v_w) {
            *h += task.lambda_w() * x;
        }
        for (h, x) in h_u.iter_mut().zip(v_u) {
            *h += task.lambda_u() * x;
        }
        h_w.extend_from_slice(&h_u);
        h_w
    }
}

/// `dG = sum_k sum_beta P(beta) [x_l = t] dp` (layout of `A`, summed over
/// classes): the tangent passes in the chunks of [`risk_grad`], [`wave_len`] at
/// a time, added in chunk order.
fn tangent_table(task: &Task, table: &Table, dtable: &Table) -> Vec<f64> {
    let chunks = chunk_ranges(task.k());
    let size = table.a.len();
    let mut total = vec![0.0; size];
    for wave in chunks.chunks(wave_len(task.k())) {
        let parts: Vec<Vec<f64>> = map_chunks(task, wave, |lo, hi| {
            let mut scratch = TangentScratch::new(task);
            let mut dg = vec![0.0; size];
            for k in lo..hi {
                tangent_class(table, dtable, k, &mut scratch, &mut dg);
            }
            dg
        });
        for dg in parts {
            for (acc, x) in total.iter_mut().zip(&dg) {
                *acc += x;
            }
        }
    }
    total
}

/// The exact Hessian-vector product `H v` of the limit risk at `p`
/// ([`HessianOperator::new`]`(task, p).apply(v)`, formulas there). For many
/// products at one point build the operator once.
pub fn hessian_vector_product(task: &Task, p: &Params, v: &[f64]) -> Vec<f64> {
    HessianOperator::new(task, p).apply(v)
}

/// The dense exact Hessian at `p` before symmetrisation: column `i` is
/// `H e_i` ([`HessianOperator::apply`]), columns computed in parallel. Its
/// antisymmetric part `(H - H^T)/2` is pure round-off (the exact Hessian is
/// symmetric), a measured error estimate. Cost: one gradient pass and `n`
/// tangent passes.
pub fn hessian_raw(task: &Task, p: &Params) -> DMatrix<f64> {
    let op = HessianOperator::new(task, p);
    let n = op.dim();
    let cols: Vec<Vec<f64>> = (0..n)
        .into_par_iter()
        .map(|i| {
            let mut e = vec![0.0; n];
            e[i] = 1.0;
            op.apply(&e)
        })
        .collect();
    DMatrix::from_fn(n, n, |r, c| cols[c][r])
}

/// The dense exact Hessian at `p`, symmetrised: `(H + H^T)/2` of [`hessian_raw`].
pub fn hessian(task: &Task, p: &Params) -> DMatrix<f64> {
    let h = hessian_raw(task, p);
    (&h + h.transpose()) * 0.5
}

/// `H v` by a central difference of the exact gradient along `v`, kept to
/// cross-check [`hessian_vector_product`]:
///
/// `H v ~ ||v|| (grad R(x + h v/||v||) - grad R(x - h v/||v||)) / (2h)`,
/// `h = 1e-5 max(1, max_i |x_i|)`.
///
/// Accuracy: the truncation error is `(h^2/6) D^3 grad R[v, v]`, about `1e-10`
/// times the third derivative, and the round-off `~ 1e-16 ||grad R|| / h`, about
/// `1e-11` times the gradient scale: each product is good to about `1e-10`
/// (relative to `max(1, ||H||)`). Cost: two exact gradients ([`risk_grad`]).
pub fn hessian_vector_product_fd(task: &Task, p: &Params, v: &[f64]) -> Vec<f64> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limit::tests::task;
    use crate::network::standard_normal;
    use crate::task::Freq;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// `dG` by direct enumeration: `beta` in lexicographic order, `h` and `dh`
    /// summed from scratch at every leaf, `dp = p ⊙ (dh - <p, dh>)`.
    fn tangent_table_direct(task: &Task, a: &[f64], da: &[f64]) -> Vec<f64> {
        let (k_n, len, s_c, n_w) = (task.k(), task.len(), task.s_c(), task.n_w());
        let mut dg = vec![0.0; a.len()];
        for k in 0..k_n {
            let z = task.z_of(k);
            for idx in 0..s_c.pow(len as u32) {
                let beta: Vec<usize> = (0..len)
                    .map(|l| idx / s_c.pow((len - 1 - l) as u32) % s_c)
                    .collect();
                let rows: Vec<usize> = (0..len)
                    .map(|l| (l * n_w + task.token(z[l], beta[l])) * k_n)
                    .collect();
                let h: Vec<f64> = (0..k_n)
                    .map(|j| rows.iter().map(|r| a[r + j]).sum())
                    .collect();
                let dh: Vec<f64> = (0..k_n)
                    .map(|j| rows.iter().map(|r| da[r + j]).sum())
                    .collect();
                let m = h.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = h.iter().map(|x| (x - m).exp()).collect();
                let sum: f64 = e.iter().sum();
                let q: f64 = e.iter().zip(&dh).map(|(x, y)| x * y).sum::<f64>() / sum;
                let weight: f64 = beta.iter().map(|&b| task.mu()[b]).product();
                for r in &rows {
                    for j in 0..k_n {
                        dg[r + j] += weight * e[j] / sum * (dh[j] - q);
                    }
                }
            }
        }
        dg
    }

    #[test]
    fn tangent_pass_matches_direct_enumeration() {
        // s_c^L = 729 > REFRESH (several blocks); large scores move the shift
        // (the softmax is then almost one-hot and dG tiny: the error is compared
        // with the tangent scores too, |dh| <= L max |dA|).
        let zipf = Freq::Zipf { exponent: 1.0 };
        for (t, scale) in [
            (task(3, 6, Some(7), None, zipf), 1.0),
            (task(3, 6, Some(5), Some(1e-5), Freq::Uniform), 2.0),
            (task(3, 3, Some(4), None, zipf), 25.0),
        ] {
            let mut rng = ChaCha8Rng::seed_from_u64(3);
            let p = Params::random(&t, scale, &mut rng);
            let phi = features(&p, t.norm());
            let table = Table::new(&t, &p, &phi);
            let da: Vec<f64> = (0..table.a.len())
                .map(|_| standard_normal(&mut rng))
                .collect();
            let dh_max = t.len() as f64 * da.iter().fold(0.0f64, |m, x| m.max(x.abs()));
            let want = tangent_table_direct(&t, &table.a, &da);
            let dtable = Table::from_entries(&t, da);
            let got = tangent_table(&t, &table, &dtable);
            let scale = want.iter().fold(0.0f64, |m, x| m.max(x.abs()));
            let err = got
                .iter()
                .zip(&want)
                .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
            assert!(scale > 1e-8, "dG vanishes: {scale:e}");
            assert!(
                err <= 1e-12 * scale + 1e-15 * dh_max,
                "err {err:e} scale {scale:e}"
            );
        }
    }

    #[test]
    fn exact_product_matches_central_differences() {
        for ln in [None, Some(1e-5), Some(0.0)] {
            let t = task(2, 3, None, ln, Freq::Zipf { exponent: 1.0 });
            let mut rng = ChaCha8Rng::seed_from_u64(9);
            let p = Params::random(&t, 0.7, &mut rng);
            let v: Vec<f64> = (0..t.n_params())
                .map(|_| standard_normal(&mut rng))
                .collect();
            let exact = hessian_vector_product(&t, &p, &v);
            let fd = hessian_vector_product_fd(&t, &p, &v);
            let scale = exact.iter().fold(0.0f64, |m, x| m.max(x.abs()));
            let err = exact
                .iter()
                .zip(&fd)
                .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
            assert!(
                scale > 1e-2 && err <= 1e-7 * scale,
                "{ln:?}: {err:e} / {scale:e}"
            );
        }
    }

    #[test]
    fn product_is_independent_of_thread_count() {
        // Large enough for the chunks to run in parallel.
        let t = task(3, 4, None, Some(1e-5), Freq::Zipf { exponent: 1.0 });
        assert!(super::super::work(&t) >= super::super::PARALLEL_WORK);
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let p = Params::random(&t, 1.0, &mut rng);
        let v = Params::random(&t, 1.0, &mut rng).to_flat();
        let run = |threads: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| hessian_vector_product(&t, &p, &v))
        };
        let h1 = run(1);
        for threads in [2, 3] {
            let h = run(threads);
            assert!(h.iter().zip(&h1).all(|(a, b)| a.to_bits() == b.to_bits()));
        }
    }

    #[test]
    fn dense_hessian_is_symmetric_to_round_off_and_thread_independent() {
        let t = task(2, 3, Some(5), Some(1e-5), Freq::Uniform);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let p = Params::random(&t, 1.0, &mut rng);
        let run = |threads: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| hessian_raw(&t, &p))
        };
        let h1 = run(1);
        let h3 = run(3);
        assert!(h1
            .iter()
            .zip(h3.iter())
            .all(|(a, b)| a.to_bits() == b.to_bits()));
        let asym = (&h1 - h1.transpose()).amax();
        assert!(asym <= 1e-14 * h1.amax().max(1.0), "asymmetry {asym:e}");
    }
}
