//! The per-class pass of the Gray-code enumeration (module docs of [`super`],
//! steps 1–3): the score table `A`, the per-worker buffers, the walk over
//! `beta` with `O(K)` score updates, and the prefix-sum gradient.

use super::gray::Gray;
use super::simd::{
    axpy, exp_bounded, exp_store, lanes_add, lanes_fold_max, lanes_max, lanes_max_into,
    lanes_total, LANES,
};
use super::REFRESH;
use crate::network::{dot, Params};
use crate::task::Task;

/// The table `A_l[t, j] = <u_{j,l}, phi(w_t)>`, with what the per-class pass needs.
pub(super) struct Table<'a> {
    task: &'a Task,
    /// `a[(l n_w + t) K + j]`.
    pub(super) a: Vec<f64>,
}

impl<'a> Table<'a> {
    pub(super) fn new(task: &'a Task, p: &Params, phi: &[f64]) -> Self {
        let (k_n, len, d, n_w) = (task.k(), task.len(), task.dim(), task.n_w());
        let mut a = vec![0.0; len * n_w * k_n];
        for (lt, row) in a.chunks_mut(k_n).enumerate() {
            let (l, t) = (lt / n_w, lt % n_w);
            let phi_t = &phi[t * d..(t + 1) * d];
            for (j, x) in row.iter_mut().enumerate() {
                *x = dot(p.u_block(j, l), phi_t);
            }
        }
        Table { task, a }
    }

    /// A table of the same layout with the given entries (e.g. the tangent
    /// table `dA` of the Hessian-vector product).
    pub(super) fn from_entries(task: &'a Task, a: Vec<f64>) -> Self {
        assert_eq!(a.len(), task.len() * task.n_w() * task.k(), "table size");
        Table { task, a }
    }

    /// The task the table belongs to.
    #[inline]
    pub(super) fn task(&self) -> &'a Task {
        self.task
    }

    /// Offset of the `K`-vector of position `l`, rank `b` for class `k`.
    #[inline]
    pub(super) fn row(&self, k: usize, l: usize, b: usize) -> usize {
        let t = self.task.z()[k * self.task.len() + l] * self.task.s_c() + b;
        (l * self.task.n_w() + t) * self.task.k()
    }
}

/// Per-worker buffers of the class pass.
pub(super) struct Scratch {
    gray: Gray,
    h: Vec<f64>,
    e: Vec<f64>,
    s: Vec<f64>,
    s_last: Vec<f64>,
}

impl Scratch {
    pub(super) fn new(task: &Task, grad: bool) -> Self {
        let kk = task.k();
        let g = if grad { kk } else { 0 };
        Scratch {
            gray: Gray::new(task.len(), task.s_c()),
            h: vec![0.0; kk],
            e: vec![0.0; kk],
            s: vec![0.0; g],
            s_last: vec![0.0; g * task.len()],
        }
    }
}

/// The class pass of [`class_sum`](super::simd::class_sum), written once and
/// compiled into each of its copies (portable, AVX2, AVX-512).
#[inline(always)]
pub(super) fn class_sum_impl<const GRAD: bool>(
    table: &Table,
    k: usize,
    sc: &mut Scratch,
    g: &mut [f64],
) -> f64 {
    let task = table.task;
    let (kk, len, mu) = (task.k(), task.len(), task.mu());
    let a = &table.a[..];
    let Scratch {
        gray,
        h,
        e,
        s,
        s_last,
    } = sc;
    gray.reset();
    if GRAD {
        s.fill(0.0);
        s_last.fill(0.0);
    }

    // Invariants at a leaf: h = scores, e = exp(h - shift), sum = sum_j e_j,
    // m = max_j h_j, |m - shift| <= SHIFT_SLACK.
    recompute(table, k, h, &gray.digits);
    let mut m = lanes_max(h);
    let mut shift = m;
    let mut sum = exp_store(h, shift, e);
    let mut total = 0.0;
    let mut in_block = 0usize;
    loop {
        // Visit the leaf: P(beta) CE(h, k).
        let weight: f64 = gray.digits.iter().map(|&b| mu[b]).product();
        total += weight * (shift + sum.ln() - h[k]);
        in_block += 1;
        // The leaf's share of the gradient is c e = P(beta) softmax(h).
        let c = weight / sum;

        let step = gray.next();
        match step {
            Some((l, old, new)) if in_block < REFRESH => {
                // One sweep: finish this leaf (S += c e, flush position l leaving
                // token `old`), move h to the next leaf, exponentiate with the
                // previous maximum as shift.
                let (o_old, o_new) = (table.row(k, l, old), table.row(k, l, new));
                shift = m;
                let row = if GRAD { o_old } else { 0 };
                let (next_sum, next_m) = sweep::<GRAD>(
                    Sweep {
                        h,
                        e,
                        s,
                        last: if GRAD {
                            &mut s_last[l * kk..(l + 1) * kk]
                        } else {
                            &mut []
                        },
                        g_row: if GRAD { &mut g[row..row + kk] } else { &mut [] },
                    },
                    &a[o_new..o_new + kk],
                    &a[o_old..o_old + kk],
                    c,
                    shift,
                );
                sum = next_sum;
                m = next_m;
                if (m - shift).abs() > SHIFT_SLACK {
                    // Rare: the maximum moved far; exponentiate again around it.
                    shift = m;
                    sum = exp_store(h, shift, e);
                }
            }
            _ => {
                // End of a block (or of the enumeration).
                if GRAD {
                    axpy(s, c, e);
                    // Flush every position at the tokens of the leaf just visited.
                    for (l, b) in gray.before(step) {
                        flush(g, s, s_last, table.row(k, l, b), l);
                    }
                    s.fill(0.0);
                    s_last.fill(0.0);
                }
                if step.is_none() {
                    break;
                }
                in_block = 0;
                recompute(table, k, h, &gray.digits);
                m = lanes_max(h);
                shift = m;
                sum = exp_store(h, shift, e);
            }
        }
    }
    if GRAD {
        // The -e_k part: position l holds rank b with total weight mu_b.
        for l in 0..len {
            for (b, &m_b) in mu.iter().enumerate() {
                g[table.row(k, l, b) + k] -= m_b;
            }
        }
    }
    total
}

/// Largest allowed `|max h - shift|` in `e = exp(h - shift)`: keeps `sum e` far
/// from overflow (`K e^600` is finite for any `K`) and the leading terms far from
/// underflow.
pub(super) const SHIFT_SLACK: f64 = 600.0;

/// Elements per tile of [`sweep`]: its streams stay in L1 while the tile's
/// partial sums and maxima are taken.
pub(super) const TILE: usize = 512;

/// The mutable `K`-vectors of one [`sweep`]; `last` and `g_row` are empty
/// without gradient.
struct Sweep<'a> {
    h: &'a mut [f64],
    e: &'a mut [f64],
    s: &'a mut [f64],
    last: &'a mut [f64],
    g_row: &'a mut [f64],
}

/// One Gray step in a single pass over the `K`-vectors, tile by tile:
/// with `GRAD`, `S += c e; G_row += S - S_last; S_last = S` (the leaf just
/// visited); then `h += a_new - a_old` and `e = exp(h - shift)` (the next leaf).
/// Returns `(sum_j e_j, max_j h_j)` of the next leaf, both in [`LANES`] lanes.
#[inline(always)]
fn sweep<const GRAD: bool>(
    v: Sweep,
    a_new: &[f64],
    a_old: &[f64],
    c: f64,
    shift: f64,
) -> (f64, f64) {
    let kk = v.h.len();
    let mut acc_sum = [0.0; LANES];
    let mut acc_max = [f64::NEG_INFINITY; LANES];
    let mut t0 = 0;
    while t0 < kk {
        let t1 = (t0 + TILE).min(kk);
        let h = &mut v.h[t0..t1];
        let e = &mut v.e[t0..t1];
        let an = &a_new[t0..t1];
        let ao = &a_old[t0..t1];
        if GRAD {
            let s = &mut v.s[t0..t1];
            let last = &mut v.last[t0..t1];
            let gr = &mut v.g_row[t0..t1];
            for ((((ex, sx), lx), gx), ((hx, nx), ox)) in e
                .iter_mut()
                .zip(s.iter_mut())
                .zip(last.iter_mut())
                .zip(gr.iter_mut())
                .zip(h.iter_mut().zip(an).zip(ao))
            {
                let sv = c.mul_add(*ex, *sx);
                *sx = sv;
                *gx += sv - *lx;
                *lx = sv;
                let hv = *hx + (nx - ox);
                *hx = hv;
                *ex = exp_bounded(hv - shift);
            }
        } else {
            for ((ex, hx), (nx, ox)) in e.iter_mut().zip(h.iter_mut()).zip(an.iter().zip(ao)) {
                let hv = *hx + (nx - ox);
                *hx = hv;
                *ex = exp_bounded(hv - shift);
            }
        }
        lanes_add(&mut acc_sum, e);
        lanes_max_into(&mut acc_max, h);
        t0 = t1;
    }
    (lanes_total(&acc_sum), lanes_fold_max(&acc_max))
}

/// `h = sum_l A_l[z_{k,l} s_c + beta_l, :]`, summed in position order (the same
/// order and values as [`network::scores`](crate::network::scores)).
#[inline(always)]
pub(super) fn recompute(table: &Table, k: usize, h: &mut [f64], digits: &[usize]) {
    let kk = h.len();
    let a = &table.a[..];
    let off = table.row(k, 0, digits[0]);
    h.copy_from_slice(&a[off..off + kk]);
    for (l, &b) in digits.iter().enumerate().skip(1) {
        let off = table.row(k, l, b);
        for (x, y) in h.iter_mut().zip(&a[off..off + kk]) {
            *x += y;
        }
    }
}

/// Prefix-sum flush of position `l` leaving the row at `off`:
/// `G[off..] += S - S_last_l; S_last_l = S`.
#[inline(always)]
pub(super) fn flush(g: &mut [f64], s: &[f64], s_last: &mut [f64], off: usize, l: usize) {
    let kk = s.len();
    let last = &mut s_last[l * kk..(l + 1) * kk];
    for ((gx, sx), lx) in g[off..off + kk].iter_mut().zip(s).zip(last.iter_mut()) {
        *gx += *sx - *lx;
        *lx = *sx;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limit::tests::task;
    use crate::limit::{risk, risk_grad, risk_naive};
    use crate::network::features;
    use crate::task::Freq;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn huge_scores_move_the_shift_and_stay_exact() {
        // Scores of order 1e3 jump by more than SHIFT_SLACK between leaves, so the
        // exponentials are re-centred; the risk must still match the naive one
        // and the gradient its finite differences.
        let t = task(3, 3, Some(4), None, Freq::Zipf { exponent: 1.0 });
        let mut rng = ChaCha8Rng::seed_from_u64(8);
        let p = Params::random(&t, 25.0, &mut rng);
        let phi = features(&p, t.norm());
        let table = Table::new(&t, &p, &phi);
        let spread = table.a.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        assert!(spread > 2.0 * SHIFT_SLACK, "scores too small: {spread}");
        let (r, g) = risk_grad(&t, &p);
        let rn = risk_naive(&t, &p);
        assert!((r - rn).abs() <= 1e-13 * rn.abs(), "{r} vs naive {rn}");
        let x0 = p.to_flat();
        for i in (0..x0.len()).step_by(5) {
            let h = 1e-7;
            let (mut xp, mut xm) = (x0.clone(), x0.clone());
            xp[i] += h;
            xm[i] -= h;
            let fd = (risk(&t, &p.with_flat(&xp)) - risk(&t, &p.with_flat(&xm))) / (2.0 * h);
            assert!(
                (fd - g[i]).abs() <= 1e-5 * (1.0 + g[i].abs()),
                "{i}: {fd} vs {}",
                g[i]
            );
        }
    }
}
