//! The per-row normalizations of the f32 trainer, forward and backward.

/// The parameter-free normalizations the f32 trainer applies to each row
/// (those of [`crate::norm::Norm`] without the affine one).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RowNorm {
    None,
    /// LayerNorm with `eps`.
    Layer(f32),
    /// RMSNorm with `eps`: `v / sqrt(mean(v^2) + eps)`.
    Rms(f32),
    /// `v - mean(v)`.
    Center,
}

impl RowNorm {
    /// `phi(v)` into `out`, returning the scale its backward pass needs
    /// (`1/sqrt(var + eps)`, `1/sqrt(mean(v^2) + eps)`, or 1).
    #[inline]
    pub(super) fn forward(self, v: &[f32], out: &mut [f32]) -> f32 {
        match self {
            RowNorm::None => {
                out.copy_from_slice(v);
                1.0
            }
            RowNorm::Layer(eps) => layer_norm_row(v, out, eps),
            RowNorm::Rms(eps) => {
                let ms = v.iter().map(|&a| a * a).sum::<f32>() / v.len() as f32;
                let r = 1.0 / (ms + eps).sqrt();
                for (o, &a) in out.iter_mut().zip(v) {
                    *o = a * r;
                }
                r
            }
            RowNorm::Center => {
                let mean = v.iter().sum::<f32>() / v.len() as f32;
                for (o, &a) in out.iter_mut().zip(v) {
                    *o = a - mean;
                }
                1.0
            }
        }
    }

    /// Backward in place from the forward output `x = phi(v)` and its scale `r`:
    /// LayerNorm as [`layer_norm_backward_row`]; RMSNorm
    /// `g <- r (g - x mean(g ⊙ x))`; centring `g <- g - mean(g)`.
    #[inline]
    pub(super) fn backward(self, x: &[f32], g: &mut [f32], r: f32) {
        let inv_d = 1.0 / g.len() as f32;
        match self {
            RowNorm::None => {}
            RowNorm::Layer(_) => layer_norm_backward_row(x, g, r),
            RowNorm::Rms(_) => {
                let gx = g.iter().zip(x).map(|(&a, &b)| a * b).sum::<f32>() * inv_d;
                for (gi, &xi) in g.iter_mut().zip(x) {
                    *gi = r * (*gi - xi * gx);
                }
            }
            RowNorm::Center => {
                let gm = g.iter().sum::<f32>() * inv_d;
                g.iter_mut().for_each(|gi| *gi -= gm);
            }
        }
    }
}

/// `phi(v)` into `out`, returning `1/sqrt(var + eps)`: LayerNorm without affine
/// parameters, biased variance, `out = (v - mean) / sqrt(var + eps)`.
#[inline]
fn layer_norm_row(v: &[f32], out: &mut [f32], eps: f32) -> f32 {
    let inv_d = 1.0 / v.len() as f32;
    let mean = v.iter().sum::<f32>() * inv_d;
    let var = v.iter().map(|&a| (a - mean) * (a - mean)).sum::<f32>() * inv_d;
    let rstd = 1.0 / (var + eps).sqrt();
    for (o, &a) in out.iter_mut().zip(v) {
        *o = (a - mean) * rstd;
    }
    rstd
}

/// LayerNorm backward in place: `g <- rstd * (g - mean(g) - xhat * mean(g ⊙ xhat))`
/// where `xhat = phi(v)` is the forward output.
#[inline]
fn layer_norm_backward_row(xhat: &[f32], g: &mut [f32], rstd: f32) {
    let inv_d = 1.0 / g.len() as f32;
    let gm = g.iter().sum::<f32>() * inv_d;
    let gx = g.iter().zip(xhat).map(|(&a, &b)| a * b).sum::<f32>() * inv_d;
    for (gi, &xi) in g.iter_mut().zip(xhat) {
        *gi = rstd * (*gi - gm - xi * gx);
    }
}
