//! Draws every figure type from synthetic data, for a visual check.
//!
//! ```text
//! cargo run --release --example plot_demo [OUT_DIR]    # default: target/plot_demo
//! ```
//!
//! Writes `scatter_collapsed`, `scatter_spread`, `accuracy`, `loss`,
//! `norms_log` and `norms_linear` (each as `.png` and `.svg`), plus `points.npy`.

use feature_collapse::plots::{self, Series};
use feature_collapse::{npy, Result};
use std::f64::consts::PI;
use std::path::PathBuf;

/// Small deterministic generator (xorshift64*) so the demo needs no RNG crate.
struct Gen(u64);

impl Gen {
    fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal by Box–Muller.
    fn normal(&mut self) -> f64 {
        let u = self.uniform().max(1e-300);
        let v = self.uniform();
        (-2.0 * u.ln()).sqrt() * (2.0 * PI * v).cos()
    }
}

fn main() -> Result<()> {
    let out = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/plot_demo"));
    let mut g = Gen(0x9e37_79b9_7f4a_7c15);
    let names: Vec<String> = (1..=3).map(|c| format!("concept {c}")).collect();

    // Type-I collapse: three tight clusters at the vertices of an equilateral triangle.
    let n = 1200;
    let labels: Vec<usize> = (0..n).map(|i| i % 3).collect();
    let collapsed: Vec<[f64; 2]> = labels
        .iter()
        .map(|&c| {
            let a = PI / 2.0 + 2.0 * PI * c as f64 / 3.0;
            [
                5.0 * a.cos() + 0.15 * g.normal(),
                5.0 * a.sin() + 0.15 * g.normal(),
            ]
        })
        .collect();
    plots::pca_scatter(
        &out.join("scatter_collapsed"),
        "Token representations (uniform \u{3bc}, 1200 epochs)",
        &collapsed,
        &labels,
        &names,
        &[122.47, 122.41, 0.0123],
    )?;

    // No collapse: overlapping anisotropic blobs.
    let spread: Vec<[f64; 2]> = labels
        .iter()
        .map(|&c| [g.normal() * 2.0 + c as f64 * 0.5, g.normal() * 0.8])
        .collect();
    plots::pca_scatter(
        &out.join("scatter_spread"),
        "Token representations (Zipf \u{3bc}, n_spl = 5)",
        &spread,
        &labels,
        &names,
        &[69.3, 27.7, 26.9],
    )?;

    // Accuracy: train rises to 1, test peaks near 2/3 then decays.
    let epochs: Vec<f64> = (0..=3000).step_by(10).map(|e| e as f64).collect();
    let train: Vec<(f64, f64)> = epochs
        .iter()
        .map(|&e| (e, 1.0 - 0.65 * (-e / 150.0).exp()))
        .collect();
    let test: Vec<(f64, f64)> = epochs
        .iter()
        .map(|&e| {
            let up = 0.33 + 0.37 * (1.0 - (-e / 120.0).exp());
            (
                e,
                up - 0.25 * (1.0 - (-e / 1500.0).exp()) + 0.01 * g.normal(),
            )
        })
        .collect();
    plots::curves(
        &out.join("accuracy"),
        "Accuracy (Zipf \u{3bc}, n_spl = 5)",
        "epoch",
        "accuracy",
        &[Series::solid("train", train), Series::dashed("test", test)],
        Some((0.0, 1.0)),
    )?;

    // Loss over 10 epochs: few points, so markers are drawn.
    let loss: Vec<(f64, f64)> = (1..=10)
        .map(|e| (e as f64, 1.1 * (-(e as f64) / 2.5).exp() + 0.02))
        .collect();
    let test_loss: Vec<(f64, f64)> = loss.iter().map(|&(e, l)| (e, l * 1.15 + 0.01)).collect();
    plots::curves(
        &out.join("loss"),
        "Cross-entropy loss",
        "epoch",
        "loss",
        &[
            Series::solid("train loss", loss),
            Series::dashed("test loss", test_loss),
        ],
        None,
    )?;

    // Norms against Zipf rank: prediction c / (1 + beta / rank)-like shape plus noise.
    let k = 1000;
    let predicted: Vec<f64> = (1..=k)
        .map(|r| 4.0 - 3.0 / (1.0 + 30.0 / r as f64))
        .collect();
    let measured: Vec<f64> = predicted
        .iter()
        .map(|p| p * (1.0 + 0.04 * g.normal()))
        .collect();
    plots::norms_vs_rank(
        &out.join("norms_log"),
        "Word-embedding norm vs frequency rank (Zipf \u{3bc})",
        &measured,
        Some(&predicted),
        true,
    )?;
    plots::norms_vs_rank(
        &out.join("norms_linear"),
        "Word-embedding norm vs frequency rank",
        &measured[..100],
        Some(&predicted[..100]),
        false,
    )?;

    let flat: Vec<f64> = collapsed.iter().flatten().copied().collect();
    npy::write_npy_f64(&out.join("points.npy"), &[n, 2], &flat)?;
    println!("wrote demo figures to {}", out.display());
    Ok(())
}
