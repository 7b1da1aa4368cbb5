//! The softmax cross-entropy pass of an SGD step on the scores `H` (`B x K`, row-major),
//! row by row (rows split across threads in fixed tasks; each row's result does not
//! depend on the split).

use super::kernel::{Shape, ROWS_PER_TASK};
use crate::task::Sentences;
use rayon::prelude::*;

/// `e^x` for `x <= 0` (inputs below -87 give `e^-87`), to about 1 ulp, in a form the
/// compiler vectorises: `x = n ln2 + r` with `|r| <= ln2 / 2`, `e^r` by the degree-7
/// minimax polynomial of Cephes' `expf`, times `2^n` built from its exponent bits.
#[inline(always)]
pub(crate) fn exp_nonpositive(x: f32) -> f32 {
    const ROUND: f32 = 12_582_912.0; // 1.5 * 2^23: (t + ROUND) - ROUND rounds t to an integer
    let x = x.max(-87.0);
    let n = (x * std::f32::consts::LOG2_E + ROUND) - ROUND;
    let r = x - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let e = p * r * r + r + 1.0;
    e * f32::from_bits(((n as i32 + 127) << 23) as u32)
}

/// Largest element (8 interleaved partial maxima, combined in a fixed order).
fn max_f32(v: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; 8];
    let mut it = v.chunks_exact(8);
    for c in &mut it {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a = a.max(x);
        }
    }
    let tail = it
        .remainder()
        .iter()
        .fold(f32::NEG_INFINITY, |a, &x| a.max(x));
    acc.iter().fold(tail, |a, &x| a.max(x))
}

/// Sum with 8 interleaved partial sums, combined in a fixed order (deterministic).
fn sum_f32(v: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let mut it = v.chunks_exact(8);
    for c in &mut it {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a += x;
        }
    }
    let tail: f32 = it.remainder().iter().sum();
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

/// Turns scores into the loss gradient in place: `h[r] <- (softmax(h[r]) - e_{y_r}) / b`,
/// storing `CE_r = log sum_j exp(h_rj) - h_{r y_r}` in `row_loss[r]`; `inv_b` is one
/// over the size of the whole batch.
pub(crate) fn softmax_xent(
    s: &Shape,
    data: &Sentences,
    rows: &[usize],
    h: &mut [f32],
    row_loss: &mut [f64],
    inv_b: f32,
) {
    let k = s.k;
    let b = rows.len();
    let task = |((hc, lc), ic): ((&mut [f32], &mut [f64]), &[usize])| {
        for ((hr, lr), &i) in hc.chunks_mut(k).zip(lc.iter_mut()).zip(ic) {
            let y = data.labels[i] as usize;
            let m = max_f32(hr);
            let hy = hr[y];
            for v in hr.iter_mut() {
                *v = exp_nonpositive(*v - m);
            }
            let sum = sum_f32(hr);
            *lr = (m + sum.ln() - hy) as f64;
            let scale = inv_b / sum;
            for v in hr.iter_mut() {
                *v *= scale;
            }
            hr[y] -= inv_b;
        }
    };
    if s.threads <= 1 {
        // One thread: no rayon tasks (the rows are independent, same result).
        task(((&mut h[..b * k], &mut row_loss[..b]), rows));
        return;
    }
    h[..b * k]
        .par_chunks_mut(k * ROWS_PER_TASK)
        .zip(row_loss[..b].par_chunks_mut(ROWS_PER_TASK))
        .zip(rows.par_chunks(ROWS_PER_TASK))
        .for_each(task);
}
