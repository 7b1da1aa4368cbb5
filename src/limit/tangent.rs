//! The per-class pass of the exact Hessian-vector product: the derivative of
//! the gradient table `G` of [`kernel`](super::kernel) along a direction.
//!
//! At a leaf (token choice `beta` of class `k`) the gradient pass adds
//! `P(beta) (p - e_k)` to the rows `G_l[x_l, :]`, with `p = softmax(h)`. Along a
//! direction that moves the score table by `dA`, the scores move by
//! `dh = sum_l dA_l[x_l, :]` and the softmax by
//!
//! ```text
//! dp = p ⊙ (dh - <p, dh> 1)        (the softmax curvature term),
//! ```
//!
//! while `e_k` does not move. So `dG` is accumulated exactly like `G`, with the
//! leaf value `P(beta) dp` in place of `P(beta) (p - e_k)`: the same Gray-code
//! walk ([`Gray`]), the tangent scores `dh` updated in `O(K)` per step next to
//! `h` (`dh += dA_l[t', :] - dA_l[t, :]`), the same prefix sums and flushes, and
//! both `h` and `dh` recomputed from scratch every [`REFRESH`] leaves.
//!
//! One Gray step is one sweep over the `K`-vectors: it finishes the leaf just
//! visited (`S += c e ⊙ (dh - q)` with `c = P(beta) / sum_j e_j`,
//! `q = <e, dh> / sum_j e_j = <p, dh>`, then the flush of the position that
//! changes), moves `h` and `dh` to the next leaf, exponentiates
//! `e = exp(h - shift)` and takes the lane sums `sum_j e_j`, `sum_j e_j dh_j`
//! and `max_j h_j` that the next leaf needs. Only explicit fused multiply-adds
//! and fixed 8-lane sums, so every compiled copy (see [`simd`](super::simd))
//! returns the same bits.

use super::gray::Gray;
use super::kernel::{flush, recompute, Table, SHIFT_SLACK, TILE};
use super::simd::{
    exp_bounded, lanes_add, lanes_fma, lanes_fold_max, lanes_max, lanes_max_into, lanes_total,
    LANES,
};
use super::REFRESH;
use crate::task::Task;

/// Per-worker buffers of the tangent pass.
pub(super) struct TangentScratch {
    gray: Gray,
    h: Vec<f64>,
    dh: Vec<f64>,
    e: Vec<f64>,
    s: Vec<f64>,
    s_last: Vec<f64>,
}

impl TangentScratch {
    pub(super) fn new(task: &Task) -> Self {
        let kk = task.k();
        TangentScratch {
            gray: Gray::new(task.len(), task.s_c()),
            h: vec![0.0; kk],
            dh: vec![0.0; kk],
            e: vec![0.0; kk],
            s: vec![0.0; kk],
            s_last: vec![0.0; kk * task.len()],
        }
    }
}

/// Adds `sum_beta P(beta) [x_l = t] dp(beta)` for class `k` into `dg` (layout of
/// `A`), where `dp = p ⊙ (dh - <p, dh>)`, `p = softmax(h)`, `h` from `table` and
/// `dh` from `dtable` (module docs). Written once and compiled into each copy of
/// [`tangent_class`](super::simd::tangent_class).
#[inline(always)]
pub(super) fn tangent_class_impl(
    table: &Table,
    dtable: &Table,
    k: usize,
    sc: &mut TangentScratch,
    dg: &mut [f64],
) {
    let task = table.task();
    let (kk, mu) = (task.k(), task.mu());
    let (a, da) = (&table.a[..], &dtable.a[..]);
    let TangentScratch {
        gray,
        h,
        dh,
        e,
        s,
        s_last,
    } = sc;
    gray.reset();
    s.fill(0.0);
    s_last.fill(0.0);

    // Invariants at a leaf: h, dh = scores and their tangent, e = exp(h - shift),
    // sum = sum_j e_j, q = sum_j e_j dh_j, m = max_j h_j, |m - shift| <= SHIFT_SLACK.
    recompute(table, k, h, &gray.digits);
    recompute(dtable, k, dh, &gray.digits);
    let mut m = lanes_max(h);
    let mut shift = m;
    let (mut sum, mut q) = exp_store_dot(h, dh, shift, e);
    let mut in_block = 0usize;
    loop {
        let weight: f64 = gray.digits.iter().map(|&b| mu[b]).product();
        in_block += 1;
        // The leaf's share is c e ⊙ (dh - qbar) = P(beta) dp.
        let c = weight / sum;
        let qbar = q / sum;

        let step = gray.next();
        match step {
            Some((l, old, new)) if in_block < REFRESH => {
                let (o_old, o_new) = (table.row(k, l, old), table.row(k, l, new));
                shift = m;
                let (next_sum, next_q, next_m) = tangent_sweep(
                    TangentSweep {
                        h,
                        dh,
                        e,
                        s,
                        last: &mut s_last[l * kk..(l + 1) * kk],
                        g_row: &mut dg[o_old..o_old + kk],
                    },
                    [&a[o_new..o_new + kk], &a[o_old..o_old + kk]],
                    [&da[o_new..o_new + kk], &da[o_old..o_old + kk]],
                    c,
                    qbar,
                    shift,
                );
                sum = next_sum;
                q = next_q;
                m = next_m;
                if (m - shift).abs() > SHIFT_SLACK {
                    shift = m;
                    (sum, q) = exp_store_dot(h, dh, shift, e);
                }
            }
            _ => {
                // End of a block (or of the enumeration): finish the leaf, flush
                // every position at the tokens of the leaf just visited.
                for ((sx, &ex), &dx) in s.iter_mut().zip(e.iter()).zip(dh.iter()) {
                    *sx = (c * ex).mul_add(dx - qbar, *sx);
                }
                for (l, b) in gray.before(step) {
                    flush(dg, s, s_last, table.row(k, l, b), l);
                }
                s.fill(0.0);
                s_last.fill(0.0);
                if step.is_none() {
                    break;
                }
                in_block = 0;
                recompute(table, k, h, &gray.digits);
                recompute(dtable, k, dh, &gray.digits);
                m = lanes_max(h);
                shift = m;
                (sum, q) = exp_store_dot(h, dh, shift, e);
            }
        }
    }
}

/// `e_j = exp(h_j - shift)`; returns `(sum_j e_j, sum_j e_j dh_j)`, each in
/// [`LANES`] partial sums in a fixed order.
#[inline(always)]
fn exp_store_dot(h: &[f64], dh: &[f64], shift: f64, e: &mut [f64]) -> (f64, f64) {
    for (ex, &hx) in e.iter_mut().zip(h) {
        *ex = exp_bounded(hx - shift);
    }
    let mut acc = [0.0; LANES];
    let mut acc_q = [0.0; LANES];
    lanes_add(&mut acc, e);
    lanes_fma(&mut acc_q, e, dh);
    (lanes_total(&acc), lanes_total(&acc_q))
}

/// The mutable `K`-vectors of one [`tangent_sweep`].
struct TangentSweep<'a> {
    h: &'a mut [f64],
    dh: &'a mut [f64],
    e: &'a mut [f64],
    s: &'a mut [f64],
    last: &'a mut [f64],
    g_row: &'a mut [f64],
}

/// One Gray step in a single pass, tile by tile: `S += c e ⊙ (dh - qbar);
/// dG_row += S - S_last; S_last = S` (the leaf just visited), then
/// `h += a_new - a_old`, `dh += da_new - da_old`, `e = exp(h - shift)` (the next
/// leaf). Returns `(sum_j e_j, sum_j e_j dh_j, max_j h_j)` of the next leaf.
#[inline(always)]
fn tangent_sweep(
    v: TangentSweep,
    a: [&[f64]; 2],
    da: [&[f64]; 2],
    c: f64,
    qbar: f64,
    shift: f64,
) -> (f64, f64, f64) {
    let kk = v.h.len();
    let mut acc_sum = [0.0; LANES];
    let mut acc_q = [0.0; LANES];
    let mut acc_max = [f64::NEG_INFINITY; LANES];
    let mut t0 = 0;
    while t0 < kk {
        let t1 = (t0 + TILE).min(kk);
        let h = &mut v.h[t0..t1];
        let dh = &mut v.dh[t0..t1];
        let e = &mut v.e[t0..t1];
        let s = &mut v.s[t0..t1];
        let last = &mut v.last[t0..t1];
        let gr = &mut v.g_row[t0..t1];
        let (an, ao) = (&a[0][t0..t1], &a[1][t0..t1]);
        let (dn, dold) = (&da[0][t0..t1], &da[1][t0..t1]);
        let n = t1 - t0;
        // Equal lengths, stated once, so the loop below runs without bounds checks.
        assert!(
            [dh.len(), e.len(), s.len(), last.len(), gr.len()] == [n; 5]
                && [an.len(), ao.len(), dn.len(), dold.len()] == [n; 4]
        );
        for j in 0..n {
            let sv = (c * e[j]).mul_add(dh[j] - qbar, s[j]);
            s[j] = sv;
            gr[j] += sv - last[j];
            last[j] = sv;
            let hv = h[j] + (an[j] - ao[j]);
            h[j] = hv;
            dh[j] += dn[j] - dold[j];
            e[j] = exp_bounded(hv - shift);
        }
        lanes_add(&mut acc_sum, e);
        lanes_fma(&mut acc_q, e, dh);
        lanes_max_into(&mut acc_max, h);
        t0 = t1;
    }
    (
        lanes_total(&acc_sum),
        lanes_total(&acc_q),
        lanes_fold_max(&acc_max),
    )
}
