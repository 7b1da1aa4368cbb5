//! The AVX-512 tiles and loops behind [`super`]'s products (compiled for every
//! x86-64 CPU with `#[target_feature]`, run only where [`super::available`]).

use std::arch::x86_64::*;

/// Lanes `0..n` set (`n <= 16`).
#[inline(always)]
fn mask(n: usize) -> __mmask16 {
    ((1u32 << n) - 1) as __mmask16
}

/// The column panels of `c0..c1` (at most [`super::PANEL`] columns each): their first
/// column, their number of 16-lane vectors and the mask of the last vector.
fn panels(c0: usize, c1: usize) -> impl Iterator<Item = (usize, usize, __mmask16)> {
    (c0..c1).step_by(super::PANEL).map(move |c| {
        let cols = (c1 - c).min(super::PANEL);
        let nv = cols.div_ceil(16);
        (c, nv, mask(cols - 16 * (nv - 1)))
    })
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
                    // Fetch the next tile's block of U meanwhile: 8 cache lines per row
                    // tile (5 rows of 32 lines over the first 20 row tiles).
                    for q in 0..8 {
                        let f = r / 5 * 8 + q;
                        let (row, col) = (j + nr + f / 32, p.0 + 16 * (f % 32));
                        if row < j1 && col < p.1 {
                            _mm_prefetch::<_MM_HINT_T0>(u.add(row * ld + col) as *const i8);
                        }
                    }
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

/// `dX[0..b, c0..c1] = G U[.., c0..c1]`, panels of at most 64 columns (outer) by
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
    for (c, nv, m) in panels(c0, c1) {
        let mut r = 0;
        while r < b {
            let mr = (b - r).min(5);
            // SAFETY: rows r..r+mr < b, the panel's columns from c lie in c0..c1, c1 <= ld.
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

/// `U[.., c0..c1] <- alpha U + beta G^T X[.., c0..c1]`, panels of at most 64 columns
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
    for (c, nv, m) in panels(c0, c1) {
        let mut j = 0;
        while j < k {
            let mr = (k - j).min(5);
            // SAFETY: rows j..j+mr < k of u, the panel's columns from c lie in c0..c1, c1 <= ld.
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
    }
}
