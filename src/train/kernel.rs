//! The f32 compute kernels of one SGD step and of evaluation.
//!
//! Shapes (`B` = rows of the batch, `Ld = L * d`):
//!
//! | buffer | shape | meaning |
//! |---|---|---|
//! | `x` | `B x Ld` | gathered features `phi(w_{x_{i,l}})`, position blocks side by side |
//! | `h` | `B x K` | scores `X U^T`, then overwritten by `G = (softmax(h) - onehot(y)) / B` |
//! | `dx` | `B x Ld` | `G U`, then (LayerNorm) `dR/dw` per occurrence |
//! | `rstd` | `B x L` | the scale of each gathered row's normalization ([`RowNorm::forward`]) |
//!
//! The three products run on the kernels of [`matmul`] where the CPU has AVX-512
//! (`avx512f` + `avx512vl`, detected at run time: they split outputs across threads,
//! never an inner dimension, and with at least 256 classes and no normalization
//! `dX = G U` and the `U` update run as one pass, [`matmul::g_u_update`]); elsewhere
//! through [`gemm::gemm`].
//! With `gemm` and many classes each product is one call with
//! `Parallelism::Rayon(threads)`: `gemm` splits the output into tiles across threads
//! and never splits the inner dimension across threads. With few classes (`K < 256`)
//! the forward/backward pass runs in one row panel per thread, each panel
//! single-threaded; pieces are kept on gemm's regular kernel and the inner dimension
//! of `X U^T` is cut at fixed places by us. The two kernel sets sum in different
//! orders, so their last bits differ; within one machine the choice is fixed.
//! Either way the results do not depend on
//! the thread count (checked by tests with 1, 2 and 3 threads). Every element-wise
//! loop works row by row (or element by element), so its result does not depend on
//! how rayon splits the rows either; the only reduction across rows (the batch loss)
//! is summed sequentially in row order.

use super::matmul;
pub(crate) use super::rownorm::RowNorm;
#[cfg(test)]
pub(crate) use super::softmax::exp_nonpositive;
use super::softmax::softmax_xent;
use super::uupdate::{gt_x, gt_x_cols, U_SPLIT_ALIGN, U_SPLIT_DEN, U_SPLIT_NUM};
use super::wupdate::{scatter, w_update_single};
use crate::task::Sentences;
use rayon::prelude::*;

/// Rows handed to one rayon task by the element-wise loops.
pub(super) const ROWS_PER_TASK: usize = 16;

/// Preallocated per-step work buffers (sized for the largest batch).
#[derive(Debug, Clone)]
pub(crate) struct Work {
    pub x: Vec<f32>,
    pub h: Vec<f32>,
    pub dx: Vec<f32>,
    pub rstd: Vec<f32>,
    pub row_loss: Vec<f64>,
    /// `LN(w)` of every gathered row (`B x Ld`) with `layer-affine`, else empty
    /// (`x` then holds `gamma ⊙ LN(w) + beta`).
    pub xhat: Vec<f32>,
    /// `[dR/dgamma ; dR/dbeta]` of the last step with `layer-affine` (`2 d`), else empty.
    pub g_aff: Vec<f32>,
}

impl Work {
    pub fn new(batch: usize, k: usize, len: usize, dim: usize, affine: bool) -> Self {
        Work {
            x: vec![0.0; batch * len * dim],
            h: vec![0.0; batch * k],
            dx: vec![0.0; batch * len * dim],
            rstd: vec![0.0; batch * len],
            row_loss: vec![0.0; batch],
            xhat: vec![0.0; if affine { batch * len * dim } else { 0 }],
            g_aff: vec![0.0; if affine { 2 * dim } else { 0 }],
        }
    }
}

/// Static sizes and hyper-parameters of a step, in f32.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shape {
    pub k: usize,
    pub len: usize,
    pub dim: usize,
    pub threads: usize,
    /// LayerNorm `eps` (f32) if LayerNorm is on.
    /// The normalization of every gathered row.
    pub norm: RowNorm,
    /// `layer-affine`: `norm` is LayerNorm and its output is mapped by
    /// `gamma ⊙ . + beta` (see [`super::affine`]).
    pub affine: bool,
    /// Weight decay of `gamma`, `beta`.
    pub lambda_aff: f32,
    pub lr: f32,
    pub lambda_w: f32,
    pub lambda_u: f32,
}

impl Shape {
    pub(super) fn ld(&self) -> usize {
        self.len * self.dim
    }
    pub(super) fn par(&self) -> gemm::Parallelism {
        gemm::Parallelism::Rayon(self.threads)
    }
}

/// Gathers `X[r] = [phi(w_{x_{i_r,0}}) .. phi(w_{x_{i_r,L-1}})]` for the sentences `rows`.
pub(crate) fn gather(
    s: &Shape,
    w: &[f32],
    data: &Sentences,
    rows: &[usize],
    x: &mut [f32],
    rstd: &mut [f32],
) {
    let (ld, d, len) = (s.ld(), s.dim, s.len);
    let b = rows.len();
    let task = |((xc, rc), ic): ((&mut [f32], &mut [f32]), &[usize])| {
        for ((xr, rr), &i) in xc.chunks_mut(ld).zip(rc.chunks_mut(len)).zip(ic) {
            let sent = data.sentence(i);
            for ((xb, r), &t) in xr.chunks_mut(d).zip(rr.iter_mut()).zip(sent) {
                let wt = &w[t as usize * d..(t as usize + 1) * d];
                *r = s.norm.forward(wt, xb);
            }
        }
    };
    if s.threads <= 1 {
        // One thread: no rayon tasks (the rows are independent, same result).
        task(((&mut x[..b * ld], &mut rstd[..b * len]), rows));
        return;
    }
    x[..b * ld]
        .par_chunks_mut(ld * ROWS_PER_TASK)
        .zip(rstd[..b * len].par_chunks_mut(len * ROWS_PER_TASK))
        .zip(rows.par_chunks(ROWS_PER_TASK))
        .for_each(task);
}

/// Largest inner dimension of one `gemm` call in [`scores`]. `gemm` cuts the inner
/// dimension into blocks of at least 512 (fewer when its panel is small), so calls
/// with `k <= 512` are never cut: splitting the inner dimension ourselves, at fixed
/// places, makes every score the same sum in the same order whatever the panels.
const MAX_KC: usize = 512;

/// gemm computes products with at most 16 x 16 outputs by a different kernel
/// (horizontal dot products) than larger ones, so a product is only ever split into
/// pieces with more outputs than this: all pieces then use the same kernel as the whole.
const MIN_SPLIT_OUTPUT: usize = 256;

/// Below this many classes, `H = X U^T` is split into class panels run concurrently
/// (gemm's own threading gains little on such a thin output).
const SMALL_K: usize = 256;

/// `H = X U^T` for `b` rows: `h[r*K + j] = <x_r, u_j>`.
///
/// The inner dimension `Ld` is cut into `ceil(Ld / 512)` equal chunks accumulated in
/// order; with fewer than [`SMALL_K`] classes the classes are split into one panel
/// per thread (at least 16 classes and more than [`MIN_SPLIT_OUTPUT`] outputs each).
/// Neither choice changes the result.
pub(crate) fn scores(s: &Shape, u: &[f32], x: &[f32], h: &mut [f32], b: usize) {
    let (ld, k) = (s.ld(), s.k);
    if matmul::available() {
        matmul::x_ut(x, u, h, b, k, ld, s.threads);
        return;
    }
    assert!(x.len() >= b * ld && h.len() >= b * k && u.len() == k * ld);
    let panels = if k < SMALL_K {
        let min_cols = 16.max(MIN_SPLIT_OUTPUT / b.max(1) + 1);
        s.threads.min(k / min_cols).max(1)
    } else {
        1
    };
    let par = if panels > 1 {
        gemm::Parallelism::None
    } else {
        s.par()
    };
    let chunks = ld.div_ceil(MAX_KC);
    let kc = ld.div_ceil(chunks);
    let hp = SendPtr(h.as_mut_ptr());
    let run = |p: usize| {
        let (j0, j1) = (k * p / panels, k * (p + 1) / panels);
        for c in 0..chunks {
            let (p0, p1) = (c * kc, ((c + 1) * kc).min(ld));
            // SAFETY: dst = columns j0..j1 of the b x K row-major `h` (disjoint across
            // panels); lhs = columns p0..p1 of the b x Ld row-major `x`;
            // rhs(q, j) = u[(j0 + j) * Ld + p0 + q] inside `u`. Checked sizes above.
            unsafe {
                gemm::gemm(
                    b,
                    j1 - j0,
                    p1 - p0,
                    hp.get().add(j0),
                    1,
                    k as isize,
                    c > 0,
                    x.as_ptr().add(p0),
                    1,
                    ld as isize,
                    u.as_ptr().add(j0 * ld + p0),
                    ld as isize,
                    1,
                    if c > 0 { 1.0 } else { 0.0 },
                    1.0,
                    false,
                    false,
                    false,
                    par,
                );
            }
        }
    };
    if panels == 1 {
        run(0);
    } else {
        (0..panels).into_par_iter().for_each(run);
    }
}

/// Forward and backward pass without any update: fills `work.x` (features),
/// `work.h` (`G`), `work.dx` (`dR/dw` per occurrence, through LayerNorm backward if
/// on) and returns the batch-mean cross entropy (row losses summed in row order).
///
/// Every phase is row-wise, so with fewer than [`SMALL_K`] classes the batch is cut
/// into one row panel per thread (at least 8 rows and more than [`MIN_SPLIT_OUTPUT`]
/// outputs per product each) and each panel runs the whole
/// pass single-threaded: no synchronisation between phases, and thin products that
/// gemm does not thread well are avoided. The results do not depend on the panels:
/// `X U^T` is accumulated over fixed inner chunks (see [`scores`]) and `G U` has an
/// inner dimension `K < 512` that gemm never cuts.
fn forward_backward(
    s: &Shape,
    w: &[f32],
    u: &[f32],
    aff: &[f32],
    work: &mut Work,
    data: &Sentences,
    rows: &[usize],
) -> f64 {
    let b = rows.len();
    let inv_b = 1.0 / b as f32;
    let (ld, k, len) = (s.ld(), s.k, s.len);
    let panels = if k < SMALL_K {
        // Each panel keeps >= 8 rows and outputs of more than 256 entries (see
        // `MIN_SPLIT_OUTPUT`), so it takes the same gemm code path as the whole batch.
        let min_rows = 8
            .max(MIN_SPLIT_OUTPUT / k + 1)
            .max(MIN_SPLIT_OUTPUT / ld + 1);
        s.threads.min(b / min_rows).max(1)
    } else {
        1
    };
    let Work {
        x,
        h,
        dx,
        rstd,
        row_loss,
        xhat,
        ..
    } = work;
    if panels == 1 {
        let bufs = RowBufs {
            x,
            h,
            dx,
            rstd,
            row_loss,
            xhat,
        };
        rows_pass(s, w, u, aff, data, rows, inv_b, bufs);
    } else {
        let one = Shape { threads: 1, ..*s };
        let (xp, hp, dxp, rp) = (
            SendPtr(x.as_mut_ptr()),
            SendPtr(h.as_mut_ptr()),
            SendPtr(dx.as_mut_ptr()),
            SendPtr(rstd.as_mut_ptr()),
        );
        let lp = SendPtr(row_loss.as_mut_ptr());
        let xhp = SendPtr(xhat.as_mut_ptr());
        let xh_ld = if s.affine { ld } else { 0 };
        assert!(x.len() >= b * ld && dx.len() >= b * ld && h.len() >= b * k);
        assert!(xhat.len() >= b * xh_ld);
        assert!(rstd.len() >= b * len && row_loss.len() >= b);
        (0..panels).into_par_iter().for_each(|p| {
            let (r0, r1) = (b * p / panels, b * (p + 1) / panels);
            let n = r1 - r0;
            // SAFETY: the row ranges [r0, r1) of distinct panels are disjoint, and every
            // buffer holds at least `b` rows (asserted above), so these are disjoint,
            // in-bounds sub-slices of buffers that outlive the parallel loop.
            unsafe {
                let bufs = RowBufs {
                    x: std::slice::from_raw_parts_mut(xp.get().add(r0 * ld), n * ld),
                    h: std::slice::from_raw_parts_mut(hp.get().add(r0 * k), n * k),
                    dx: std::slice::from_raw_parts_mut(dxp.get().add(r0 * ld), n * ld),
                    rstd: std::slice::from_raw_parts_mut(rp.get().add(r0 * len), n * len),
                    row_loss: std::slice::from_raw_parts_mut(lp.get().add(r0), n),
                    // Empty (length 0 at the start of the buffer) without affine parameters.
                    xhat: std::slice::from_raw_parts_mut(xhp.get().add(r0 * xh_ld), n * xh_ld),
                };
                rows_pass(&one, w, u, aff, data, &rows[r0..r1], inv_b, bufs);
            }
        });
    }
    row_loss[..b].iter().sum::<f64>() / b as f64
}

/// The row-aligned buffers of [`rows_pass`] (whole [`Work`] buffers or one panel of them).
struct RowBufs<'a> {
    x: &'a mut [f32],
    h: &'a mut [f32],
    dx: &'a mut [f32],
    rstd: &'a mut [f32],
    row_loss: &'a mut [f64],
    xhat: &'a mut [f32],
}

/// The forward and backward pass for the sentences `rows` into row-aligned buffers.
/// With `layer-affine` the backward pass stops at `dR/dphi` (in `dx`): the chain
/// rule through `gamma ⊙ LN + beta` needs the whole batch ([`super::affine::backward`]).
#[allow(clippy::too_many_arguments)]
fn rows_pass(
    s: &Shape,
    w: &[f32],
    u: &[f32],
    aff: &[f32],
    data: &Sentences,
    rows: &[usize],
    inv_b: f32,
    bufs: RowBufs<'_>,
) {
    let RowBufs {
        x,
        h,
        dx,
        rstd,
        row_loss,
        xhat,
    } = bufs;
    let b = rows.len();
    let (ld, k, d) = (s.ld(), s.k, s.dim);
    gather(s, w, data, rows, x, rstd);
    if s.affine {
        // LN(w) is kept for the backward pass.
        xhat[..b * ld].copy_from_slice(&x[..b * ld]);
        super::affine::forward(aff, &mut x[..b * ld]);
    }
    scores(s, u, x, h, b);
    softmax_xent(s, data, rows, h, row_loss, inv_b);
    // dX = G U: b x Ld = (b x K)(K x Ld).
    assert!(dx.len() >= b * ld && h.len() >= b * k && u.len() == k * ld);
    if matmul::available() {
        matmul::g_u(h, u, dx, b, k, ld, s.threads);
    } else {
        // SAFETY: dst, lhs, rhs are row-major blocks inside their own buffers (sizes checked).
        unsafe {
            gemm::gemm(
                b,
                ld,
                k,
                dx.as_mut_ptr(),
                1,
                ld as isize,
                false,
                h.as_ptr(),
                1,
                k as isize,
                u.as_ptr(),
                1,
                ld as isize,
                0.0,
                1.0,
                false,
                false,
                false,
                s.par(),
            );
        }
    }
    if s.affine {
        // The whole batch's dR/dphi first (see above).
    } else if s.norm != RowNorm::None && s.threads <= 1 {
        for ((g, xh), &r) in dx[..b * ld]
            .chunks_mut(d)
            .zip(x[..b * ld].chunks(d))
            .zip(&rstd[..b * s.len])
        {
            s.norm.backward(xh, g, r);
        }
    } else if s.norm != RowNorm::None {
        dx[..b * ld]
            .par_chunks_mut(d * ROWS_PER_TASK)
            .zip(x[..b * ld].par_chunks(d * ROWS_PER_TASK))
            .zip(rstd[..b * s.len].par_chunks(ROWS_PER_TASK))
            .for_each(|((gc, xc), rc)| {
                for ((g, xh), &r) in gc.chunks_mut(d).zip(xc.chunks(d)).zip(rc) {
                    s.norm.backward(xh, g, r);
                }
            });
    }
}

/// One SGD step on the sentences `rows` of `data`; returns the mean CE of the batch.
///
/// Order of operations (all f32):
/// 1. `X = gather(phi(W))`, 2. `H = X U^T`, 3. `G = (softmax(H) - Y) / B`,
/// 4. `dX = G U` (old `U`), then LayerNorm backward on its rows (if on),
/// 5. `U <- (1 - lr lambda_U) U - lr G^T X` (one product with `alpha`, `beta`; with
///    the own kernels, at least 256 classes and no normalization fused with step 4,
///    see [`fused_step`]),
/// 6. `W <- (1 - lr lambda_W) W` on every row, then `w_t <- w_t - lr dX_{r,l}` for every
///    occurrence `x_{r,l} = t`, in row-major occurrence order (5 and 6 run concurrently,
///    except in [`fused_step`]).
///
/// Steps 5 and 6 are `theta - lr (grad + lambda theta)` rewritten as
/// `(1 - lr lambda) theta - lr grad`, the same maths as PyTorch's `SGD(weight_decay)`.
pub(crate) fn sgd_step(
    s: &Shape,
    w: &mut [f32],
    u: &mut [f32],
    aff: &mut [f32],
    work: &mut Work,
    data: &Sentences,
    rows: &[usize],
) -> f64 {
    if s.k >= SMALL_K && s.norm == RowNorm::None && matmul::available() {
        return fused_step(s, w, u, work, data, rows);
    }
    let b = rows.len();
    let loss = forward_backward(s, w, u, aff, work, data, rows);
    if s.affine {
        super::affine::backward(s, aff, work, b);
        super::affine::update(s, aff, &work.g_aff);
    }
    let (h, x, dx) = (&work.h, &work.x, &work.dx[..b * s.ld()]);
    let ld = s.ld();
    if s.k < SMALL_K && s.threads == 2 && s.k * ld >= 4 * U_SPLIT_ALIGN * MIN_SPLIT_OUTPUT {
        // Two threads, few classes: one fork-join for the whole update. The first
        // thread takes the columns `0..c` of the U update, the second the columns
        // `c..Ld` and the W update, `c` chosen so both do about the same work. Every
        // entry of U is the same sum in the same order as in one product (the inner
        // dimension `b` is never cut, both pieces stay on gemm's regular kernel).
        let c = (ld * U_SPLIT_NUM / U_SPLIT_DEN) / U_SPLIT_ALIGN * U_SPLIT_ALIGN;
        let (alpha, beta) = (1.0 - s.lr * s.lambda_u, -s.lr);
        let up = SendPtr(u.as_mut_ptr());
        assert!(u.len() == s.k * ld && h.len() >= b * s.k && x.len() >= b * ld);
        rayon::join(
            // SAFETY: columns 0..c and c..Ld of the K x Ld row-major `u` are disjoint.
            || unsafe { gt_x_cols(s, up, alpha, beta, h, x, b, 0, c) },
            || {
                // SAFETY: as above.
                unsafe { gt_x_cols(s, up, alpha, beta, h, x, b, c, ld) };
                w_update_single(s, w, data, rows, dx);
            },
        );
        return loss;
    }
    // The U update (a gemm) and the W update touch disjoint data: run them side by
    // side, so that the thread done first with its part helps with the other.
    rayon::join(
        || gt_x(s, u, true, 1.0 - s.lr * s.lambda_u, -s.lr, h, x, b),
        || {
            let decay = 1.0 - s.lr * s.lambda_w;
            if s.k < SMALL_K {
                // Small products: one thread updates W while the other starts the gemm
                // (fewer thread wake-ups than splitting both).
                // The decay is fused into the scatter pass (each row decayed just before
                // its first update, untouched rows after): same operations, same order.
                w_update_single(s, w, data, rows, dx);
            } else {
                // Column bands across threads, each decaying its rows in the same pass.
                scatter(
                    s,
                    s.lr,
                    (s.lambda_w != 0.0).then_some(decay),
                    w,
                    data,
                    rows,
                    dx,
                );
            }
        },
    );
    loss
}

/// [`sgd_step`] with at least [`SMALL_K`] classes and no normalization (features
/// `phi(w) = w`), by the kernels of [`matmul`]: steps 4 and 5 in one pass over the
/// column panels of `U` ([`matmul::g_u_update`]: each panel's `dX` from the old `U`,
/// then its update, the panel still in cache), then the `W` update (decay fused into
/// the scatter). With a normalization the step goes through [`forward_backward`],
/// which owns its chain rule.
fn fused_step(
    s: &Shape,
    w: &mut [f32],
    u: &mut [f32],
    work: &mut Work,
    data: &Sentences,
    rows: &[usize],
) -> f64 {
    let (b, ld) = (rows.len(), s.ld());
    let Work {
        x,
        h,
        dx,
        rstd,
        row_loss,
        ..
    } = work;
    gather(s, w, data, rows, x, rstd);
    scores(s, u, x, h, b);
    softmax_xent(s, data, rows, h, row_loss, 1.0 / b as f32);
    let ab = (1.0 - s.lr * s.lambda_u, -s.lr);
    matmul::g_u_update(h, x, u, dx, (b, s.k, ld), ab, s.threads);
    let decay = (s.lambda_w != 0.0).then_some(1.0 - s.lr * s.lambda_w);
    scatter(s, s.lr, decay, w, data, rows, &dx[..b * ld]);
    row_loss[..b].iter().sum::<f64>() / b as f64
}

/// The gradient of the batch-mean cross entropy (no weight decay) into `gw` (`n_w x d`)
/// and `gu` (`K x Ld`) (with `layer-affine` also `[dgamma ; dbeta]` into `work.g_aff`),
/// by the same kernels as [`sgd_step`]; returns the loss.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gradient(
    s: &Shape,
    w: &[f32],
    u: &[f32],
    aff: &[f32],
    work: &mut Work,
    data: &Sentences,
    rows: &[usize],
    gw: &mut [f32],
    gu: &mut [f32],
) -> f64 {
    let b = rows.len();
    let loss = forward_backward(s, w, u, aff, work, data, rows);
    if s.affine {
        super::affine::backward(s, aff, work, b);
    }
    gt_x(s, gu, false, 0.0, 1.0, &work.h, &work.x, b);
    gw.fill(0.0);
    scatter(s, -1.0, None, gw, data, rows, &work.dx[..b * s.ld()]);
    loss
}

/// A raw pointer that may cross to rayon tasks (each task touches a disjoint part).
#[derive(Clone, Copy)]
pub(super) struct SendPtr<T>(pub(super) *mut T);
// SAFETY: only used to hand disjoint parts of one buffer to rayon tasks.
unsafe impl<T> Send for SendPtr<T> {}
unsafe impl<T> Sync for SendPtr<T> {}
impl<T> SendPtr<T> {
    pub(super) fn get(self) -> *mut T {
        self.0
    }
}

/// Predicted class (first argmax of the scores) for each sentence of `data`,
/// computed in blocks with freshly allocated buffers (evaluation only).
pub(crate) fn predict(s: &Shape, w: &[f32], u: &[f32], aff: &[f32], data: &Sentences) -> Vec<u32> {
    const BLOCK: usize = 512;
    let n = data.n();
    let blk = BLOCK.min(n.max(1));
    let mut x = vec![0.0f32; blk * s.ld()];
    let mut rstd = vec![0.0f32; blk * s.len];
    let mut h = vec![0.0f32; blk * s.k];
    let mut pred = Vec::with_capacity(n);
    let idx: Vec<usize> = (0..n).collect();
    for rows in idx.chunks(blk) {
        gather(s, w, data, rows, &mut x, &mut rstd);
        if s.affine {
            super::affine::forward(aff, &mut x[..rows.len() * s.ld()]);
        }
        scores(s, u, &x, &mut h, rows.len());
        for hr in h[..rows.len() * s.k].chunks(s.k) {
            let mut best = 0;
            for (j, &v) in hr.iter().enumerate() {
                if v > hr[best] {
                    best = j;
                }
            }
            pred.push(best as u32);
        }
    }
    pred
}
