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

/// Columns of one panel of `dX` / `U` in [`g_u`] and [`u_update`] (5 vectors of 16).
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
            let hp = hp;
            avx512::x_ut(x.as_ptr(), u.as_ptr(), hp.0, b, k, ld, j0, j1)
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
            let dp = dp;
            avx512::g_u(g.as_ptr(), u.as_ptr(), dp.0, b, k, ld, c0, c1)
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
        #[cfg(target_arch = "x86_64")]
        // SAFETY: avx512f checked; columns p0..p1 of u are touched by this task only.
        unsafe {
            let up = up;
            avx512::u_update(g.as_ptr(), x.as_ptr(), up.0, b, k, ld, alpha, beta, p0, p1)
        };
        let _ = (up, p0, p1, alpha, beta);
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
                avx512::g_u(g.as_ptr(), up.0, dp.0, b, k, ld, p0, p1);
                avx512::u_update(g.as_ptr(), x.as_ptr(), up.0, b, k, ld, alpha, beta, p0, p1);
            }
            let _ = (up, dp, p0, p1, alpha, beta);
        }
    });
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    /// Lanes `0..n` set (`n <= 16`).
    #[inline(always)]
    fn mask(n: usize) -> __mmask16 {
        ((1u32 << n) - 1) as __mmask16
    }

    /// Calls the tile kernel `f::<mr, n>` for `1 <= mr <= 5`, `1 <= n <= 5`.
    macro_rules! dispatch {
        ($f:ident, $mr:expr, $nv:expr, $($a:expr),*) => {
            match ($mr, $nv) {
                (5, 5) => $f::<5, 5>($($a),*),
                (5, 4) => $f::<5, 4>($($a),*),
                (5, 3) => $f::<5, 3>($($a),*),
                (5, 2) => $f::<5, 2>($($a),*),
                (5, 1) => $f::<5, 1>($($a),*),
                (4, 5) => $f::<4, 5>($($a),*),
                (4, 4) => $f::<4, 4>($($a),*),
                (4, 3) => $f::<4, 3>($($a),*),
                (4, 2) => $f::<4, 2>($($a),*),
                (4, 1) => $f::<4, 1>($($a),*),
                (3, 5) => $f::<3, 5>($($a),*),
                (3, 4) => $f::<3, 4>($($a),*),
                (3, 3) => $f::<3, 3>($($a),*),
                (3, 2) => $f::<3, 2>($($a),*),
                (3, 1) => $f::<3, 1>($($a),*),
                (2, 5) => $f::<2, 5>($($a),*),
                (2, 4) => $f::<2, 4>($($a),*),
                (2, 3) => $f::<2, 3>($($a),*),
                (2, 2) => $f::<2, 2>($($a),*),
                (2, 1) => $f::<2, 1>($($a),*),
                (1, 5) => $f::<1, 5>($($a),*),
                (1, 4) => $f::<1, 4>($($a),*),
                (1, 3) => $f::<1, 3>($($a),*),
                (1, 2) => $f::<1, 2>($($a),*),
                _ => $f::<1, 1>($($a),*),
            }
        };
    }

    /// Inner columns of one block of [`x_ut`] (a multiple of 16): the block of `U`'s
    /// rows of a tile stays in the L1 cache while every row tile of `X` passes.
    const XU_BLOCK: usize = 512;

    /// One `MR x NR` tile of `H = X U^T` over the inner columns `p0..p1` (`p1 - p0` a
    /// multiple of 16 unless `p1 = ld`): rows `x[i ld ..]`, `u[j ld ..]`; the lane
    /// sums continue from `acc[i NR + j]` (zero if `first`) and are stored back there,
    /// or, with `out = Some((h, hs))`, reduced into `h[i hs + j]`.
    #[target_feature(enable = "avx512f,avx512vl")]
    #[inline(never)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn dot_tile<const MR: usize, const NR: usize>(
        x: *const f32,
        u: *const f32,
        ld: usize,
        (p0, p1): (usize, usize),
        acc_mem: *mut __m512,
        first: bool,
        out: Option<(*mut f32, usize)>,
    ) {
        // Flat, fixed size (LLVM keeps such arrays in registers more reliably than nested
        // ones); entry `i NR + j` is output `(i, j)`.
        let mut acc = [_mm512_setzero_ps(); 25];
        let full = (p1 - p0) / 16;
        // SAFETY (all loads and stores): inside the rows the caller passes, and
        // `acc_mem` holds MR * NR vectors.
        unsafe {
            if !first {
                for (n, a) in acc.iter_mut().take(MR * NR).enumerate() {
                    *a = *acc_mem.add(n);
                }
            }
            for q in 0..full {
                let p = p0 + 16 * q;
                let mut xv = [_mm512_setzero_ps(); MR];
                for (i, v) in xv.iter_mut().enumerate() {
                    *v = _mm512_loadu_ps(x.add(i * ld + p));
                }
                for j in 0..NR {
                    let uv = _mm512_loadu_ps(u.add(j * ld + p));
                    for i in 0..MR {
                        acc[i * NR + j] = _mm512_fmadd_ps(xv[i], uv, acc[i * NR + j]);
                    }
                }
            }
            let rem = p1 - p0 - 16 * full;
            if rem > 0 {
                let (m, p) = (mask(rem), p0 + 16 * full);
                let mut xv = [_mm512_setzero_ps(); MR];
                for (i, v) in xv.iter_mut().enumerate() {
                    *v = _mm512_maskz_loadu_ps(m, x.add(i * ld + p));
                }
                for j in 0..NR {
                    let uv = _mm512_maskz_loadu_ps(m, u.add(j * ld + p));
                    for i in 0..MR {
                        acc[i * NR + j] = _mm512_fmadd_ps(xv[i], uv, acc[i * NR + j]);
                    }
                }
            }
            for i in 0..MR {
                for j in 0..NR {
                    let a = acc[i * NR + j];
                    match out {
                        Some((h, hs)) => *h.add(i * hs + j) = _mm512_reduce_add_ps(a),
                        None => *acc_mem.add(i * NR + j) = a,
                    }
                }
            }
        }
    }

    /// `H[0..b, j0..j1] = X U[j0..j1]^T`: tiles of 5 classes (outer loop), blocks of
    /// [`XU_BLOCK`] inner columns, tiles of 5 rows (inner loop).
    #[target_feature(enable = "avx512f,avx512vl")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn x_ut(
        x: *const f32,
        u: *const f32,
        h: *mut f32,
        b: usize,
        k: usize,
        ld: usize,
        j0: usize,
        j1: usize,
    ) {
        let mut buf = vec![_mm512_setzero_ps(); b.div_ceil(5) * 25];
        let blocks = ld.div_ceil(XU_BLOCK);
        // SAFETY: every tile stays inside rows 0..b of x / h and j0..j1 of u; each row
        // tile has its own 25 vectors of `buf`.
        unsafe {
            let mut j = j0;
            while j < j1 {
                let nr = (j1 - j).min(5);
                for blk in 0..blocks {
                    let p = (blk * XU_BLOCK, ((blk + 1) * XU_BLOCK).min(ld));
                    let mut r = 0;
                    while r < b {
                        let mr = (b - r).min(5);
                        let acc = buf.as_mut_ptr().add(r / 5 * 25);
                        let out = (blk + 1 == blocks).then_some((h.add(r * k + j), k));
                        let (xr, uj) = (x.add(r * ld), u.add(j * ld));
                        dispatch!(dot_tile, mr, nr, xr, uj, ld, p, acc, blk == 0, out);
                        r += mr;
                    }
                }
                j += nr;
            }
        }
    }

    /// `MR` rows by `NV` vectors (the last masked by `m`) of `dX = G U`:
    /// `dx[i ds + 16 v ..] = sum_j g[i gs + j] u[j us + 16 v ..]`, `j = 0..k` in order.
    #[target_feature(enable = "avx512f,avx512vl")]
    #[inline(never)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn axpy_tile<const MR: usize, const NV: usize>(
        g: *const f32,
        gs: usize,
        u: *const f32,
        us: usize,
        k: usize,
        dx: *mut f32,
        ds: usize,
        m: __mmask16,
    ) {
        let mut acc = [_mm512_setzero_ps(); 25]; // entry `i NV + v`
        // SAFETY (all loads and stores): inside the rows and columns the caller passes;
        // the last vector only touches the lanes of `m`.
        unsafe {
            for j in 0..k {
                let mut uv = [_mm512_setzero_ps(); NV];
                for (v, w) in uv.iter_mut().enumerate() {
                    let p = u.add(j * us + 16 * v);
                    *w = if v + 1 < NV {
                        _mm512_loadu_ps(p)
                    } else {
                        _mm512_maskz_loadu_ps(m, p)
                    };
                }
                for i in 0..MR {
                    let gv = _mm512_set1_ps(*g.add(i * gs + j));
                    for v in 0..NV {
                        acc[i * NV + v] = _mm512_fmadd_ps(gv, uv[v], acc[i * NV + v]);
                    }
                }
            }
            for i in 0..MR {
                for v in 0..NV {
                    let (a, p) = (acc[i * NV + v], dx.add(i * ds + 16 * v));
                    if v + 1 < NV {
                        _mm512_storeu_ps(p, a);
                    } else {
                        _mm512_mask_storeu_ps(p, m, a);
                    }
                }
            }
        }
    }

    /// `dX[0..b, c0..c1] = G U[.., c0..c1]`, panels of at most 80 columns (outer) by
    /// 5 rows.
    #[target_feature(enable = "avx512f,avx512vl")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn g_u(
        g: *const f32,
        u: *const f32,
        dx: *mut f32,
        b: usize,
        k: usize,
        ld: usize,
        c0: usize,
        c1: usize,
    ) {
        let mut c = c0;
        while c < c1 {
            let cols = (c1 - c).min(super::PANEL);
            let nv = cols.div_ceil(16);
            let m = mask(cols - 16 * (nv - 1));
            let mut r = 0;
            while r < b {
                let mr = (b - r).min(5);
                // SAFETY: rows r..r+mr < b, columns c..c+cols <= c1 <= ld.
                unsafe {
                    dispatch!(
                        axpy_tile,
                        mr,
                        nv,
                        g.add(r * k),
                        k,
                        u.add(c),
                        ld,
                        k,
                        dx.add(r * ld + c),
                        ld,
                        m
                    )
                };
                r += mr;
            }
            c += cols;
        }
    }

    /// `MR` rows of `U` by `NV` vectors (the last masked by `m`):
    /// `u <- fma(alpha, u, beta * sum_r g[r gs + i] x[r xs + 16 v ..])`, `r = 0..b` in order.
    #[target_feature(enable = "avx512f,avx512vl")]
    #[inline(never)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn update_tile<const MR: usize, const NV: usize>(
        g: *const f32,
        gs: usize,
        x: *const f32,
        xs: usize,
        b: usize,
        u: *mut f32,
        us: usize,
        ab: (f32, f32),
        m: __mmask16,
    ) {
        let mut acc = [_mm512_setzero_ps(); 25]; // entry `i NV + v`
        // SAFETY (all loads and stores): inside the rows and columns the caller passes.
        unsafe {
            // The tile of `U` is read after the sums: fetch it meanwhile.
            for i in 0..MR {
                for v in 0..NV {
                    _mm_prefetch::<_MM_HINT_T0>(u.add(i * us + 16 * v) as *const i8);
                }
            }
            for r in 0..b {
                let mut xv = [_mm512_setzero_ps(); NV];
                for (v, w) in xv.iter_mut().enumerate() {
                    let p = x.add(r * xs + 16 * v);
                    *w = if v + 1 < NV {
                        _mm512_loadu_ps(p)
                    } else {
                        _mm512_maskz_loadu_ps(m, p)
                    };
                }
                for i in 0..MR {
                    let gv = _mm512_set1_ps(*g.add(r * gs + i));
                    for v in 0..NV {
                        acc[i * NV + v] = _mm512_fmadd_ps(gv, xv[v], acc[i * NV + v]);
                    }
                }
            }
            let (alpha, beta) = (_mm512_set1_ps(ab.0), _mm512_set1_ps(ab.1));
            for i in 0..MR {
                for v in 0..NV {
                    let (a, p) = (acc[i * NV + v], u.add(i * us + 16 * v));
                    let lanes = if v + 1 < NV { !0 } else { m };
                    let mut new = _mm512_mul_ps(beta, a);
                    if ab.0 != 0.0 {
                        // alpha = 0 does not read U (it may hold anything).
                        new = _mm512_fmadd_ps(alpha, _mm512_maskz_loadu_ps(lanes, p), new);
                    }
                    _mm512_mask_storeu_ps(p, lanes, new);
                }
            }
        }
    }

    /// `U[.., c0..c1] <- alpha U + beta G^T X[.., c0..c1]`, panels of at most 80 columns
    /// (outer) by 5 rows of `U`.
    #[target_feature(enable = "avx512f,avx512vl")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn u_update(
        g: *const f32,
        x: *const f32,
        u: *mut f32,
        b: usize,
        k: usize,
        ld: usize,
        alpha: f32,
        beta: f32,
        c0: usize,
        c1: usize,
    ) {
        let mut c = c0;
        while c < c1 {
            let cols = (c1 - c).min(super::PANEL);
            let nv = cols.div_ceil(16);
            let m = mask(cols - 16 * (nv - 1));
            let mut j = 0;
            while j < k {
                let mr = (k - j).min(5);
                // SAFETY: rows j..j+mr < k of u, columns c..c+cols <= c1 <= ld.
                unsafe {
                    dispatch!(
                        update_tile,
                        mr,
                        nv,
                        g.add(j),
                        k,
                        x.add(c),
                        ld,
                        b,
                        u.add(j * ld + c),
                        ld,
                        (alpha, beta),
                        m
                    )
                };
                j += mr;
            }
            c += cols;
        }
    }
}
