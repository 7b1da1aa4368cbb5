//! The `W` update of an SGD step: `W <- (1 - lr lambda_W) W` on every row, then
//! `w_t <- w_t - lr dX_{r,l}` for every occurrence `x_{r,l} = t` in row-major occurrence
//! order. Threads split the columns of `W`, so every element sees the same operations
//! in the same order whatever the thread count.

use super::kernel::{SendPtr, Shape};
use crate::task::Sentences;
use rayon::prelude::*;

/// The whole `W` update on the calling thread: decay `W *= 1 - lr lambda_W` fused
/// into the scatter of `-lr dX` (each row decayed just before its first update,
/// untouched rows after: the same operations in the same order).
pub(super) fn w_update_single(
    s: &Shape,
    w: &mut [f32],
    data: &Sentences,
    rows: &[usize],
    dx: &[f32],
) {
    let n_w = w.len() / s.dim;
    let f = (s.lambda_w != 0.0).then_some(1.0 - s.lr * s.lambda_w);
    // SAFETY: single task over all columns of `w`, which it borrows mutably.
    unsafe {
        w_update_band(
            s,
            s.lr,
            f,
            SendPtr(w.as_mut_ptr()),
            n_w,
            data,
            rows,
            dx,
            0,
            s.dim,
        )
    };
}

/// `W *= decay` (if given), then `w_t <- w_t - lr * dx_{r,l}` for every occurrence, in
/// occurrence order, in one pass (each row decayed just before its first update,
/// untouched rows after). Columns are split across threads (each column sees every
/// occurrence in the same order), so the result is independent of the thread count.
pub(super) fn scatter(
    s: &Shape,
    lr: f32,
    decay: Option<f32>,
    w: &mut [f32],
    data: &Sentences,
    rows: &[usize],
    dx: &[f32],
) {
    let d = s.dim;
    let wp = SendPtr(w.as_mut_ptr());
    let n_w = w.len() / d;
    let work = rows.len() * s.len * d;
    if s.threads <= 1 || work < 32_768 || d < 32 {
        // SAFETY: single task over all columns of `w`, which it borrows mutably.
        unsafe { w_update_band(s, lr, decay, wp, n_w, data, rows, dx, 0, d) };
        return;
    }
    // `threads` column bands (at most d / 16 of them).
    let nb = s.threads.min(d / 16);
    (0..nb).into_par_iter().for_each(|bi| {
        // SAFETY: the bands [d bi / nb, d (bi + 1) / nb) are disjoint column ranges of
        // `w`, which is mutably borrowed for the whole parallel loop.
        unsafe {
            w_update_band(
                s,
                lr,
                decay,
                wp,
                n_w,
                data,
                rows,
                dx,
                d * bi / nb,
                d * (bi + 1) / nb,
            )
        };
    });
}

/// On the columns `c0..c1` of `W` (`n_w x d` at `wp`): `W *= decay` (if given), then
/// `w_t -= lr dx_{r,l}` for every occurrence in occurrence order.
///
/// # Safety
/// `wp` must point to `n_w * d` valid floats, and no other thread may access columns
/// `c0..c1` of them during the call.
#[allow(clippy::too_many_arguments)]
unsafe fn w_update_band(
    s: &Shape,
    lr: f32,
    decay: Option<f32>,
    wp: SendPtr<f32>,
    n_w: usize,
    data: &Sentences,
    rows: &[usize],
    dx: &[f32],
    c0: usize,
    c1: usize,
) {
    let (d, len) = (s.dim, s.len);
    assert!(c0 <= c1 && c1 <= d && dx.len() >= rows.len() * len * d);
    // SAFETY (all blocks): row t's band is floats t d + c0 .. t d + c1 < n_w d, touched
    // by this call only (caller's contract); t < n_w for every token of the task.
    let band =
        |t: usize| unsafe { std::slice::from_raw_parts_mut(wp.get().add(t * d + c0), c1 - c0) };
    // `W *= decay` is applied to each row just before its first update in the pass
    // and to the rows never updated afterwards: every element sees the same
    // operations in the same order as a separate decay pass first.
    let mut decayed = vec![decay.is_none(); n_w];
    for (r, &i) in rows.iter().enumerate() {
        for (l, &t) in data.sentence(i).iter().enumerate() {
            let t = t as usize;
            assert!(t < n_w);
            let g = &dx[(r * len + l) * d + c0..(r * len + l) * d + c1];
            let row = band(t);
            if !decayed[t] {
                decayed[t] = true;
                let f = decay.unwrap_or(1.0);
                for (a, &gv) in row.iter_mut().zip(g) {
                    *a = *a * f - lr * gv;
                }
            } else {
                for (a, &gv) in row.iter_mut().zip(g) {
                    *a -= lr * gv;
                }
            }
        }
    }
    if let Some(f) = decay {
        for (t, _) in decayed.iter().enumerate().filter(|(_, &done)| !done) {
            band(t).iter_mut().for_each(|v| *v *= f);
        }
    }
}
