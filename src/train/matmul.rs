//! The three f32 products of an SGD step by register-tiled AVX-512 kernels that read
//! the classifier `U` where it lies (no packing), for CPUs with `avx512f` (checked at
//! run time by [`available`]; elsewhere the trainer uses `gemm`).
//!
//! All matrices are row-major: `X` and `dX` are `B x Ld`, `U` is `K x Ld`, `G` (and
//! `H`) is `B x K`.
//!
//! | function | computes | summation order of each output |
//! |---|---|---|
//! | [`x_ut`] | `H = X U^T`, `h_rj = sum_p x_rp u_jp` | 16 lane sums, lane `l` over `p = l mod 16` in order (the last `Ld mod 16` terms masked into lanes `0..`), then `_mm512_reduce_add_ps` |
//! | [`g_u`] | `dX = G U`, `dx_rp = sum_j g_rj u_jp` | `j = 0, 1, .., K-1`, one FMA each |
//! | [`u_update`] | `U <- alpha U + beta G^T X`, `u_jp <- alpha u_jp + beta sum_r g_rj x_rp` | `r = 0, .., B-1`, one FMA each, then `fma(alpha, u, beta * s)` (`beta * s` if `alpha = 0`: `U` is not read) |
//!
//! [`g_u_update`] computes [`g_u`] then [`u_update`] (with the old `U` in `dX`) one
//! column panel of `U` at a time, so the panel is read twice from the L2 cache, not
//! twice from memory.
//!
//! Each output is the same sum in the same order wherever it falls in a tile, so the
//! results do not depend on `threads`: [`x_ut`] splits the classes across threads,
//! the others split the columns `0..Ld`; the inner dimension is never split.

use std::sync::atomic::{AtomicBool, Ordering};

/// Columns of one panel of `dX` / `U` in [`g_u`] and [`u_update`] (4 vectors of 16).
const PANEL: usize = 64;

/// Cleared by [`use_own_kernels`]`(false)`.
static ENABLED: AtomicBool = AtomicBool::new(true);

/// Turns the kernels of this module off (`false`: the trainer then uses `gemm` for all
/// three products, as on CPUs without AVX-512) or back on, for the whole process; for
/// timing comparisons (`train_timing --gemm`).
pub fn use_own_kernels(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Whether the kernels of this module run: the CPU has `avx512f` and `avx512vl`
/// (detected at run time) and [`use_own_kernels`] did not turn them off.
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        ENABLED.load(Ordering::Relaxed)
            && is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512vl")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Runs `f(i0, i1)` on `parts` contiguous ranges of `0..n` (`n * p / parts` cuts),
/// on rayon tasks when `parts > 1`.
fn split(n: usize, parts: usize, f: impl Fn(usize, usize) + Sync) {
    let parts = parts.clamp(1, n.max(1));
    if parts == 1 {
        f(0, n);
        return;
    }
    use rayon::prelude::*;
    (0..parts)
        .into_par_iter()
        .for_each(|p| f(n * p / parts, n * (p + 1) / parts));
}

/// A raw pointer that may cross to rayon tasks (each touches a disjoint part).
#[derive(Clone, Copy)]
struct Ptr(*mut f32);
// SAFETY: only used to hand disjoint parts of one buffer to rayon tasks.
unsafe impl Send for Ptr {}
unsafe impl Sync for Ptr {}
impl Ptr {
    /// The pointer (a method, so that closures capture the whole `Ptr`).
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// `H = X U^T` (`h[r K + j] = sum_p x[r Ld + p] u[j Ld + p]`) for `b` rows, on
/// `threads` tasks (classes split across them).
///
/// # Panics
/// If [`available`] is false or a buffer is too short.
pub fn x_ut(x: &[f32], u: &[f32], h: &mut [f32], b: usize, k: usize, ld: usize, threads: usize) {
    assert!(available(), "x_ut needs avx512f");
    assert!(x.len() >= b * ld && u.len() >= k * ld && h.len() >= b * k);
    let hp = Ptr(h.as_mut_ptr());
    // Tiles of 5 classes; each task takes whole tiles.
    split(k.div_ceil(5), threads, |t0, t1| {
        let (j0, j1) = (5 * t0, (5 * t1).min(k));
        #[cfg(target_arch = "x86_64")]
        // SAFETY: avx512f checked above; rows `0..b` of x, rows `j0..j1` of u and the
        // columns `j0..j1` of the first `b` rows of h are in bounds (asserted), and
        // distinct tasks write distinct columns of h.
        unsafe {
            avx512::x_ut(x.as_ptr(), u.as_ptr(), hp.get(), b, k, ld, j0, j1)
        };
        let _ = (hp, j0, j1);
    });
}

/// `dX = G U` (`dx[r Ld + p] = sum_j g[r K + j] u[j Ld + p]`, `j` in order) for `b`
/// rows, on `threads` tasks (columns split across them).
///
/// # Panics
/// If [`available`] is false or a buffer is too short.
pub fn g_u(g: &[f32], u: &[f32], dx: &mut [f32], b: usize, k: usize, ld: usize, threads: usize) {
    assert!(available(), "g_u needs avx512f");
    assert!(g.len() >= b * k && u.len() >= k * ld && dx.len() >= b * ld);
    let dp = Ptr(dx.as_mut_ptr());
    split(ld.div_ceil(PANEL), threads, |q0, q1| {
        let (c0, c1) = (PANEL * q0, (PANEL * q1).min(ld));
        #[cfg(target_arch = "x86_64")]
        // SAFETY: avx512f checked; columns c0..c1 < ld of the first b rows of dx are
        // written by this task only; all reads in bounds (asserted).
        unsafe {
            avx512::g_u(g.as_ptr(), u.as_ptr(), dp.get(), b, k, ld, c0, c1)
        };
        let _ = (dp, c0, c1);
    });
}

/// `U <- alpha U + beta G^T X` (`u[j Ld + p] <- alpha u[j Ld + p] + beta sum_r g[r K + j]
/// x[r Ld + p]`, `r` in order) on the columns `c0..c1` of `U`, on `threads` tasks
/// (columns split across them).
///
/// # Panics
/// If [`available`] is false, a buffer is too short or `c0 > c1 > ld`.
#[allow(clippy::too_many_arguments)]
pub fn u_update(
    g: &[f32],
    x: &[f32],
    u: &mut [f32],
    (b, k, ld): (usize, usize, usize),
    (alpha, beta): (f32, f32),
    (c0, c1): (usize, usize),
    threads: usize,
) {
    assert!(available(), "u_update needs avx512f");
    assert!(g.len() >= b * k && x.len() >= b * ld && u.len() >= k * ld);
    assert!(c0 <= c1 && c1 <= ld);
    let up = Ptr(u.as_mut_ptr());
    split((c1 - c0).div_ceil(PANEL), threads, |q0, q1| {
        let (p0, p1) = (c0 + PANEL * q0, (c0 + PANEL * q1).min(c1));
        // SAFETY: u holds k * ld floats (asserted); columns p0..p1 of u are touched by
        // this task only.
        unsafe { u_update_cols(g, x, up.get(), (b, k, ld), (alpha, beta), (p0, p1)) };
    });
}

/// [`u_update`] on the columns `c0..c1` of the `K x Ld` matrix at `u`, on the calling
/// thread, for callers that hand the other columns to other threads.
///
/// # Safety
/// `u` must point to `k * ld` valid floats whose columns `c0..c1` no other thread
/// accesses during the call.
///
/// # Panics
/// If [`available`] is false, a buffer is too short or `c0 > c1 > ld`.
pub(crate) unsafe fn u_update_cols(
    g: &[f32],
    x: &[f32],
    u: *mut f32,
    (b, k, ld): (usize, usize, usize),
    (alpha, beta): (f32, f32),
    (c0, c1): (usize, usize),
) {
    assert!(available(), "u_update needs avx512f");
    assert!(g.len() >= b * k && x.len() >= b * ld && c0 <= c1 && c1 <= ld);
    #[cfg(target_arch = "x86_64")]
    // SAFETY: avx512f checked; the caller owns columns c0..c1 of u.
    unsafe {
        avx512::u_update(g.as_ptr(), x.as_ptr(), u, b, k, ld, alpha, beta, c0, c1)
    };
    let _ = (u, alpha, beta);
}

/// [`g_u`] then [`u_update`] on all columns, panel by panel (`dX` from the old `U`).
///
/// # Panics
/// If [`available`] is false or a buffer is too short.
#[allow(clippy::too_many_arguments)]
pub fn g_u_update(
    g: &[f32],
    x: &[f32],
    u: &mut [f32],
    dx: &mut [f32],
    (b, k, ld): (usize, usize, usize),
    (alpha, beta): (f32, f32),
    threads: usize,
) {
    assert!(available(), "g_u_update needs avx512f");
    assert!(g.len() >= b * k && x.len() >= b * ld && u.len() >= k * ld && dx.len() >= b * ld);
    let (up, dp) = (Ptr(u.as_mut_ptr()), Ptr(dx.as_mut_ptr()));
    split(ld.div_ceil(PANEL), threads, |q0, q1| {
        let (up, dp) = (up, dp);
        for q in q0..q1 {
            let (p0, p1) = (PANEL * q, (PANEL * (q + 1)).min(ld));
            #[cfg(target_arch = "x86_64")]
            // SAFETY: avx512f checked; columns p0..p1 of u and dx belong to this task.
            unsafe {
                avx512::g_u(g.as_ptr(), up.get(), dp.get(), b, k, ld, p0, p1)
            };
            // SAFETY: as above (u holds k * ld floats, asserted).
            unsafe { u_update_cols(g, x, up.get(), (b, k, ld), (alpha, beta), (p0, p1)) };
            let _ = dp;
        }
    });
}

#[cfg(target_arch = "x86_64")]
mod avx512;

#[cfg(test)]
mod tests;
