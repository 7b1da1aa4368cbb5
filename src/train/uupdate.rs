//! The classifier update of an SGD step, `U <- alpha U + beta G^T X`
//! (`K x Ld = (K x b)(b x Ld)`, `G^T(j, r) = h[r K + j]`): by the own kernels of
//! [`super::matmul`] where the CPU has AVX-512, else by `gemm`; whole, or one column
//! range on the calling thread.

use super::kernel::{SendPtr, Shape};
use super::matmul;

/// `dst <- alpha dst + beta G^T X` (`K x Ld = (K x b)(b x Ld)`, `G^T(j, r) = h[r K + j]`).
#[allow(clippy::too_many_arguments)] // a thin gemm wrapper
pub(super) fn gt_x(
    s: &Shape,
    dst: &mut [f32],
    read_dst: bool,
    alpha: f32,
    beta: f32,
    h: &[f32],
    x: &[f32],
    b: usize,
) {
    let (ld, k) = (s.ld(), s.k);
    debug_assert!(dst.len() == k * ld && h.len() >= b * k && x.len() >= b * ld);
    if matmul::available() {
        let alpha = if read_dst { alpha } else { 0.0 };
        matmul::u_update(h, x, dst, (b, k, ld), (alpha, beta), (0, ld), s.threads);
        return;
    }
    // SAFETY: dst is K x Ld row-major, lhs(j, r) = h[r K + j], rhs is b x Ld row-major;
    // distinct buffers.
    unsafe {
        gemm::gemm(
            k,
            ld,
            b,
            dst.as_mut_ptr(),
            1,
            ld as isize,
            read_dst,
            h.as_ptr(),
            k as isize,
            1,
            x.as_ptr(),
            1,
            ld as isize,
            alpha,
            beta,
            false,
            false,
            false,
            s.par(),
        );
    }
}

/// Split of the U update's columns between two threads (see `kernel::sgd_step`): the first
/// thread takes `U_SPLIT_NUM / U_SPLIT_DEN` of them (the second also updates W),
/// rounded down to a multiple of `U_SPLIT_ALIGN`.
pub(super) const U_SPLIT_NUM: usize = 3;
pub(super) const U_SPLIT_DEN: usize = 5;
pub(super) const U_SPLIT_ALIGN: usize = 16;

/// Columns `c0..c1` of `U <- alpha U + beta G^T X` (`U` is `K x Ld` row-major at `up`),
/// single-threaded.
///
/// # Safety
/// `up` must point to `K * Ld` valid floats, `c0 <= c1 <= Ld`, and no other thread may
/// access columns `c0..c1` of them during the call.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn gt_x_cols(
    s: &Shape,
    up: SendPtr<f32>,
    alpha: f32,
    beta: f32,
    h: &[f32],
    x: &[f32],
    b: usize,
    c0: usize,
    c1: usize,
) {
    let (ld, k) = (s.ld(), s.k);
    assert!(c0 <= c1 && c1 <= ld && h.len() >= b * k && x.len() >= b * ld);
    if matmul::available() {
        // SAFETY: `up` holds K * Ld floats and columns c0..c1 are ours (caller's contract).
        unsafe { matmul::u_update_cols(h, x, up.get(), (b, k, ld), (alpha, beta), (c0, c1)) };
        return;
    }
    // SAFETY: dst(j, q) = u[j Ld + c0 + q], lhs(j, r) = h[r K + j],
    // rhs(r, q) = x[r Ld + c0 + q]; all in bounds (checked above, caller's contract).
    unsafe {
        gemm::gemm(
            k,
            c1 - c0,
            b,
            up.get().add(c0),
            1,
            ld as isize,
            true,
            h.as_ptr(),
            k as isize,
            1,
            x.as_ptr().add(c0),
            1,
            ld as isize,
            alpha,
            beta,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}
