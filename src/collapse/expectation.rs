//! Value, gradient and dense Hessian (in rank space) of the type-III loss
//! averaged over the [`RankSamples`] points, and its Monte-Carlo standard error.

use super::objective::{logistic, softplus, Consts};
use super::samples::{diff_mask, RankSamples};
use crate::task::Task;
use rayon::prelude::*;

/// Largest number of work chunks (results do not depend on the thread count).
const N_CHUNKS: usize = 16;

/// Value (and optionally gradient / dense Hessian in rank space) of the
/// sampled or enumerated type-III loss at `x` (length `s_c`).
#[derive(Debug, Clone)]
pub(super) struct SampleEval {
    pub(super) value: f64,
    /// `sum w loss^2`, for the Monte-Carlo error.
    pub(super) second_moment: f64,
    pub(super) grad: Vec<f64>,
    pub(super) hess: Vec<f64>,
}

impl SampleEval {
    /// Zero value, with a zero gradient (`order >= 1`) and a zero dense Hessian
    /// (`order >= 2`) over `s_c` ranks; empty otherwise.
    fn zeros(s_c: usize, order: u8) -> Self {
        SampleEval {
            value: 0.0,
            second_moment: 0.0,
            grad: if order >= 1 {
                vec![0.0; s_c]
            } else {
                Vec::new()
            },
            hess: if order >= 2 {
                vec![0.0; s_c * s_c]
            } else {
                Vec::new()
            },
        }
    }
}

pub(super) fn eval_samples(
    task: &Task,
    cs: &Consts,
    s: &RankSamples,
    x: &[f64],
    order: u8,
) -> SampleEval {
    let s_c = task.s_c();
    let len = s.len;
    let n = s.n();
    let latent = !s.class.is_empty();
    // Per-rank mean-field factors.
    let mf: Vec<[f64; 3]> = if latent {
        Vec::new()
    } else {
        x.iter().map(|&xb| cs.mean_field_factor(xb)).collect()
    };
    let ln_k = cs.k.ln();
    let z32: Vec<u32> = if latent {
        task.z().iter().map(|&a| a as u32).collect()
    } else {
        Vec::new()
    };
    // A fixed chunking (depending on s_c only, so results do not depend on the
    // thread count); fewer chunks for large s_c bound the Hessian buffers to ~64 MB.
    let n_chunks = ((1usize << 26) / (8 * s_c * s_c)).clamp(1, N_CHUNKS);
    let chunk = n.div_ceil(n_chunks).max(1);
    // bit positions of every byte value
    let byte_bits: Vec<Vec<usize>> = (0..256usize)
        .map(|bb| (0..8).filter(|i| bb >> i & 1 == 1).collect())
        .collect();
    let parts: Vec<SampleEval> = (0..n_chunks)
        .into_par_iter()
        .map(|ci| {
            let mut acc = SampleEval::zeros(s_c, order);
            let (start, end) = ((ci * chunk).min(n), ((ci + 1) * chunk).min(n));
            let mut xs = vec![0.0; len];
            let mut e = vec![0.0; task.k()];
            let mut masks = vec![0u64; task.k()];
            let mut gpos = vec![0.0; len];
            let mut apos = vec![0.0; len * len];
            let n_groups = len.div_ceil(8);
            let mut sums = vec![0.0; n_groups * 256];
            let mut hist = vec![0.0; n_groups * 256];
            let n_pairs = n_groups * (n_groups - 1) / 2;
            let mut cross = vec![0.0; if order >= 2 { n_pairs * 256 * 8 } else { 0 }];
            for i in start..end {
                let w = s.weight[i];
                let beta = &s.ranks[i * len..(i + 1) * len];
                let loss;
                if latent {
                    let k = s.class[i] as usize;
                    let zk = &z32[k * len..(k + 1) * len];
                    for (xl, &b) in xs.iter_mut().zip(beta) {
                        *xl = x[b as usize];
                    }
                    // Difference masks of z_j against z_k (precomputed when K is small).
                    let row: &[u64] = if s.masks.is_empty() {
                        for (m, zj) in masks.iter_mut().zip(z32.chunks_exact(len)) {
                            *m = diff_mask(zj, zk);
                        }
                        &masks
                    } else {
                        &s.masks[k * task.k()..(k + 1) * task.k()]
                    };
                    // Subset sums of xs over each byte of the mask.
                    for (g, table) in sums.chunks_exact_mut(256).enumerate() {
                        let base = 8 * g;
                        let width = (len - base).min(8);
                        table[0] = 0.0;
                        for bb in 1..(1usize << width) {
                            table[bb] =
                                table[bb & (bb - 1)] + xs[base + bb.trailing_zeros() as usize];
                        }
                    }
                    let mut mx = 0.0f64;
                    for (ej, &mask) in e.iter_mut().zip(row) {
                        let mut sum = 0.0;
                        for (g, table) in sums.chunks_exact(256).enumerate() {
                            sum += table[((mask >> (8 * g)) & 255) as usize];
                        }
                        *ej = -cs.kappa * sum;
                        mx = mx.max(*ej);
                    }
                    e[k] = f64::NEG_INFINITY;
                    // e_j <- exp(e_j - mx)
                    let mut z = (-mx).exp();
                    for ej in e.iter_mut() {
                        *ej = (*ej - mx).exp();
                        z += *ej;
                    }
                    loss = mx + z.ln();
                    if order >= 1 {
                        // With P_j = e_j / z: G_l = sum_j P_j [l in D_j] and
                        // A_lm = sum_j P_j [l, m in D_j], through histograms of P_j over
                        // the bytes of the masks (same-byte pairs) and, per pair of
                        // bytes (g < h), over the low byte for each bit of the high one.
                        hist.iter_mut().for_each(|v| *v = 0.0);
                        if order >= 2 {
                            cross.iter_mut().for_each(|v| *v = 0.0);
                        }
                        for (j, (&ej, &mask)) in e.iter().zip(row).enumerate() {
                            if j == k || mask == 0 {
                                continue;
                            }
                            let pj = ej / z;
                            for g in 0..n_groups {
                                hist[g * 256 + ((mask >> (8 * g)) & 255) as usize] += pj;
                            }
                            if order >= 2 {
                                let mut pair = 0;
                                for g in 0..n_groups {
                                    let lo = ((mask >> (8 * g)) & 255) as usize;
                                    for h in g + 1..n_groups {
                                        let hb = ((mask >> (8 * h)) & 255) as usize;
                                        let base = (pair * 256 + lo) * 8;
                                        for &i2 in &byte_bits[hb] {
                                            cross[base + i2] += pj;
                                        }
                                        pair += 1;
                                    }
                                }
                            }
                        }
                        gpos.iter_mut().for_each(|v| *v = 0.0);
                        if order >= 2 {
                            apos.iter_mut().for_each(|v| *v = 0.0);
                        }
                        for g in 0..n_groups {
                            for (bb, bits) in byte_bits.iter().enumerate().skip(1) {
                                let v = hist[g * 256 + bb];
                                if v == 0.0 {
                                    continue;
                                }
                                for (ai, &i) in bits.iter().enumerate() {
                                    let l = 8 * g + i;
                                    gpos[l] += v;
                                    if order >= 2 {
                                        for &i2 in &bits[ai..] {
                                            apos[l * len + 8 * g + i2] += v;
                                        }
                                    }
                                }
                            }
                        }
                        if order >= 2 {
                            let mut pair = 0;
                            for g in 0..n_groups {
                                for h in g + 1..n_groups {
                                    let width = (len - 8 * h).min(8);
                                    for (bb, bits) in byte_bits.iter().enumerate().skip(1) {
                                        let c = &cross[(pair * 256 + bb) * 8..][..width];
                                        for &i in bits {
                                            let l = 8 * g + i;
                                            let dst = &mut apos[l * len + 8 * h..][..width];
                                            for (a, &v) in dst.iter_mut().zip(c) {
                                                *a += v;
                                            }
                                        }
                                    }
                                    pair += 1;
                                }
                            }
                        }
                        for l in 0..len {
                            acc.grad[beta[l] as usize] += w * (-cs.kappa * gpos[l]);
                        }
                        if order >= 2 {
                            let k2 = cs.kappa * cs.kappa;
                            for l in 0..len {
                                for m in l..len {
                                    let h = w * k2 * (apos[l * len + m] - gpos[l] * gpos[m]);
                                    let (bl, bm) = (beta[l] as usize, beta[m] as usize);
                                    acc.hess[bl * s_c + bm] += h;
                                    if m != l {
                                        acc.hess[bm * s_c + bl] += h;
                                    }
                                }
                            }
                        }
                    }
                } else {
                    let t = ln_k + beta.iter().map(|&b| mf[b as usize][0]).sum::<f64>();
                    loss = softplus(t);
                    if order >= 1 {
                        let sg = logistic(t);
                        for &b in beta {
                            acc.grad[b as usize] += w * sg * mf[b as usize][1];
                        }
                        if order >= 2 {
                            // upper triangle only (symmetrised after the merge)
                            let c1 = w * sg * (1.0 - sg);
                            for (li, &bl) in beta.iter().enumerate() {
                                let bl = bl as usize;
                                let gl = c1 * mf[bl][1];
                                acc.hess[bl * s_c + bl] += w * sg * mf[bl][2] + gl * mf[bl][1];
                                for &bm in &beta[li + 1..] {
                                    let bm = bm as usize;
                                    let v = gl * mf[bm][1];
                                    if bl == bm {
                                        acc.hess[bl * s_c + bl] += 2.0 * v;
                                    } else {
                                        acc.hess[bl.min(bm) * s_c + bl.max(bm)] += v;
                                    }
                                }
                            }
                        }
                    }
                }
                acc.value += w * loss;
                acc.second_moment += w * loss * loss;
            }
            acc
        })
        .collect();
    let mut out = SampleEval::zeros(s_c, order);
    for part in parts {
        out.value += part.value;
        out.second_moment += part.second_moment;
        for (a, b) in out.grad.iter_mut().zip(&part.grad) {
            *a += b;
        }
        for (a, b) in out.hess.iter_mut().zip(&part.hess) {
            *a += b;
        }
    }
    if order >= 2 && !latent {
        for a in 0..s_c {
            for b in a + 1..s_c {
                out.hess[b * s_c + a] = out.hess[a * s_c + b];
            }
        }
    }
    out
}

/// Monte-Carlo standard error of a sample mean with equal weights `1/M`.
pub(super) fn std_error(s: &RankSamples, ev: &SampleEval) -> Option<f64> {
    if !s.sampled {
        return None;
    }
    let m = s.n() as f64;
    let var = (ev.second_moment - ev.value * ev.value).max(0.0) * m / (m - 1.0);
    Some((var / m).sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collapse::tests::cfg;
    use crate::collapse::Form;
    use crate::task::{Freq, TaskConfig};

    #[test]
    fn sample_gradients_and_hessians_match_finite_differences() {
        // L = 3 (one mask byte), 11 (two), 19 (three); latent set (with and without
        // the precomputed mask table) and mean field
        for (len, classes, form) in [
            (3, 9, Form::LatentSet),
            (11, 30, Form::LatentSet),
            (19, 12, Form::LatentSet),
            (19, 2100, Form::LatentSet),
            (6, 10, Form::MeanField),
        ] {
            let task = TaskConfig {
                freq: Freq::Zipf { exponent: 1.0 },
                ..cfg(3, 4, len, Some(classes))
            }
            .build()
            .unwrap();
            let cs = Consts::of(&task);
            let mut samples = RankSamples::of(&task, form).unwrap();
            assert_eq!(
                samples.masks.is_empty(),
                form == Form::MeanField || classes > 2048
            );
            // keep the test fast
            let keep = samples.n().min(64);
            samples.ranks.truncate(keep * len);
            samples.weight.truncate(keep);
            if form == Form::LatentSet {
                samples.class.truncate(keep);
            }
            let x = [0.9, 0.4, -0.2, 0.7];
            let ev = eval_samples(&task, &cs, &samples, &x, 2);
            let h = 1e-5;
            for a in 0..4 {
                let mut xp = x;
                xp[a] += h;
                let mut xm = x;
                xm[a] -= h;
                let (ep, em) = (
                    eval_samples(&task, &cs, &samples, &xp, 1),
                    eval_samples(&task, &cs, &samples, &xm, 1),
                );
                let fd = (ep.value - em.value) / (2.0 * h);
                assert!(
                    (fd - ev.grad[a]).abs() < 1e-8 * (1.0 + fd.abs()),
                    "L {len} grad {a}: {fd} vs {}",
                    ev.grad[a]
                );
                for bb in 0..4 {
                    let fd = (ep.grad[bb] - em.grad[bb]) / (2.0 * h);
                    let an = ev.hess[a * 4 + bb];
                    assert!(
                        (fd - an).abs() < 1e-7 * (1.0 + fd.abs()),
                        "L {len} hess {a},{bb}: {fd} vs {an}"
                    );
                }
            }
        }
    }

    #[test]
    #[ignore]
    fn time_sample_evaluations_at_paper_shape() {
        let task = TaskConfig {
            n_c: 3,
            s_c: 400,
            len: 15,
            dim: 100,
            classes: Some(1000),
            freq: Freq::Zipf { exponent: 1.0 },
            layer_norm: None,
            norm: None,
            lambda_affine: None,
            lambda_w: 1e-3,
            lambda_u: 1e-3,
            seed: 0,
            latent: None,
        }
        .build()
        .unwrap();
        let cs = Consts::of(&task);
        for form in [Form::LatentSet, Form::MeanField] {
            let s = RankSamples::of(&task, form).unwrap();
            let x = vec![1.0; 400];
            for order in 0..3u8 {
                let mut best = f64::INFINITY;
                for _ in 0..3 {
                    let t0 = std::time::Instant::now();
                    std::hint::black_box(eval_samples(&task, &cs, &s, &x, order));
                    best = best.min(t0.elapsed().as_secs_f64());
                }
                eprintln!("{form} order {order}: {best:.4} s");
            }
        }
    }
}
