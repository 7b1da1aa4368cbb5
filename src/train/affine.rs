//! The affine parameters of `layer-affine` in the f32 trainer:
//! `phi(w) = gamma ⊙ LN(w) + beta` with `gamma, beta ∈ R^d`, as PyTorch's
//! `nn.LayerNorm(d, elementwise_affine = True)`.
//!
//! The parameters are stored as one vector `aff = [gamma ; beta]` (length `2 d`),
//! initialised to `gamma = 1`, `beta = 0` (PyTorch's initialisation; no random draw,
//! so the other weights' seeded streams are unchanged). Every gathered row `r` and
//! position `l` ("occurrence") keeps `xhat = LN(w)` for the backward pass:
//!
//! - `dR/dgamma = sum_occ dR/dphi ⊙ xhat`, `dR/dbeta = sum_occ dR/dphi`, summed over
//!   the occurrences in row-major order, sequentially (the same sum whatever the
//!   thread count);
//! - `dR/dw = LN'(w)^T (gamma ⊙ dR/dphi)` per occurrence;
//! - update `theta <- (1 - lr lambda_affine) theta - lr dR/dtheta`, as for `W` and `U`.

use super::kernel::{Shape, Work};
use rayon::prelude::*;

/// Occurrences (blocks of `d`) handed to one rayon task by [`backward`].
const BLOCKS_PER_TASK: usize = 64;

/// `[gamma ; beta]` at PyTorch's initialisation (`1`, `0`) for `d` features.
pub(super) fn init(dim: usize) -> Vec<f32> {
    let mut a = vec![1.0f32; dim];
    a.resize(2 * dim, 0.0);
    a
}

/// `x <- gamma ⊙ x + beta` on every block of `d = aff.len() / 2` entries of `x`
/// (which holds `LN(w)` on entry).
pub(super) fn forward(aff: &[f32], x: &mut [f32]) {
    let d = aff.len() / 2;
    let (gamma, beta) = aff.split_at(d);
    for xb in x.chunks_mut(d) {
        for ((v, &g), &b) in xb.iter_mut().zip(gamma).zip(beta) {
            *v = g * *v + b;
        }
    }
}

/// From `dR/dphi` in `work.dx` (first `b` rows): `[dR/dgamma ; dR/dbeta]` into
/// `work.g_aff`, and `work.dx` turned into `dR/dw` per occurrence (LayerNorm's
/// backward pass of `gamma ⊙ dR/dphi`).
pub(super) fn backward(s: &Shape, aff: &[f32], work: &mut Work, b: usize) {
    let d = s.dim;
    let n = b * s.len * d;
    let (gamma, _) = aff.split_at(d);
    let Work {
        dx,
        xhat,
        rstd,
        g_aff,
        ..
    } = work;
    g_aff.fill(0.0);
    let (dg, db) = g_aff.split_at_mut(d);
    for (gb, xb) in dx[..n].chunks(d).zip(xhat[..n].chunks(d)) {
        for (((a, c), &gi), &xi) in dg.iter_mut().zip(db.iter_mut()).zip(gb).zip(xb) {
            *a += gi * xi;
            *c += gi;
        }
    }
    let norm = s.norm;
    let task = |((gc, xc), rc): ((&mut [f32], &[f32]), &[f32])| {
        for ((gb, xb), &r) in gc.chunks_mut(d).zip(xc.chunks(d)).zip(rc) {
            for (v, &gm) in gb.iter_mut().zip(gamma) {
                *v *= gm;
            }
            norm.backward(xb, gb, r);
        }
    };
    let (dx, xhat, rstd) = (&mut dx[..n], &xhat[..n], &rstd[..b * s.len]);
    if s.threads <= 1 {
        task(((dx, xhat), rstd));
    } else {
        dx.par_chunks_mut(d * BLOCKS_PER_TASK)
            .zip(xhat.par_chunks(d * BLOCKS_PER_TASK))
            .zip(rstd.par_chunks(BLOCKS_PER_TASK))
            .for_each(task);
    }
}

/// `aff <- (1 - lr lambda_affine) aff - lr g`.
pub(super) fn update(s: &Shape, aff: &mut [f32], g: &[f32]) {
    let decay = 1.0 - s.lr * s.lambda_aff;
    for (a, &gi) in aff.iter_mut().zip(g) {
        *a = decay * *a - s.lr * gi;
    }
}
