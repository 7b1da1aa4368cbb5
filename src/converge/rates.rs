//! Convergence rates: the log-log slope of a measure against `n_spl`, with a
//! 95 % interval over seeds.
//!
//! For each seed `s` the slope `p_s` is the least-squares fit of
//! `ln y = c + p ln n_spl` over that seed's points with `y > 0` (at least two
//! distinct `n_spl`). The reported slope is the mean `p_bar` of the `p_s`, and the
//! interval `p_bar ± t_{0.975, S-1} sd(p_s) / sqrt(S)` over the `S` seeds
//! (Student's `t`; no interval for `S = 1`).

use serde::Serialize;

/// A fitted rate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rate {
    /// Mean of the per-seed slopes.
    pub slope: f64,
    /// Half-width of the 95 % interval (`None` with a single seed).
    pub half_width: Option<f64>,
    /// Seeds with a slope (at least two positive points).
    pub seeds: usize,
    /// Points used over all seeds.
    pub points: usize,
}

/// Two-sided 95 % quantile `t_{0.975, df}` of Student's distribution
/// (tabulated for `df <= 30`, then `1.96 + 2.4 / df`, within 0.003 of the exact value).
pub fn t_975(df: usize) -> f64 {
    const T: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    match df {
        0 => f64::INFINITY,
        1..=30 => T[df - 1],
        _ => 1.96 + 2.4 / df as f64,
    }
}

/// Least-squares slope of `ln y` on `ln x` over the points with `x > 0`, `y > 0`,
/// both finite; `None` with fewer than two distinct `x`.
pub fn loglog_slope(points: &[(f64, f64)]) -> Option<(f64, usize)> {
    let pts: Vec<(f64, f64)> = points
        .iter()
        .filter(|(x, y)| *x > 0.0 && *y > 0.0 && x.is_finite() && y.is_finite())
        .map(|(x, y)| (x.ln(), y.ln()))
        .collect();
    let n = pts.len() as f64;
    if pts.len() < 2 {
        return None;
    }
    let mx = pts.iter().map(|p| p.0).sum::<f64>() / n;
    let my = pts.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = pts.iter().map(|p| (p.0 - mx).powi(2)).sum();
    if sxx <= 0.0 {
        return None;
    }
    let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    Some((sxy / sxx, pts.len()))
}

/// The rate over seeds: `per_seed[s]` holds seed `s`'s `(n_spl, y)` points.
pub fn rate(per_seed: &[Vec<(f64, f64)>]) -> Option<Rate> {
    let fits: Vec<(f64, usize)> = per_seed.iter().filter_map(|p| loglog_slope(p)).collect();
    if fits.is_empty() {
        return None;
    }
    let s = fits.len() as f64;
    let mean = fits.iter().map(|f| f.0).sum::<f64>() / s;
    let half_width = (fits.len() >= 2).then(|| {
        let var = fits.iter().map(|f| (f.0 - mean).powi(2)).sum::<f64>() / (s - 1.0);
        t_975(fits.len() - 1) * (var / s).sqrt()
    });
    Some(Rate {
        slope: mean,
        half_width,
        seeds: fits.len(),
        points: fits.iter().map(|f| f.1).sum(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_power_laws_give_their_exponent() {
        let ns = [8.0, 32.0, 128.0, 512.0];
        let seeds: Vec<Vec<(f64, f64)>> = [0.7, 1.3, 2.0]
            .iter()
            .map(|c| ns.iter().map(|&n| (n, c * f64::powf(n, -0.5))).collect())
            .collect();
        let r = rate(&seeds).unwrap();
        assert!((r.slope + 0.5).abs() < 1e-12);
        assert!(r.half_width.unwrap() < 1e-12);
        assert_eq!((r.seeds, r.points), (3, 12));
    }

    #[test]
    fn interval_follows_the_spread_of_the_seeds() {
        let ns = [10.0, 100.0];
        let seeds: Vec<Vec<(f64, f64)>> = [-1.2, -0.8]
            .iter()
            .map(|p| ns.iter().map(|&n| (n, f64::powf(n, *p))).collect())
            .collect();
        let r = rate(&seeds).unwrap();
        assert!((r.slope + 1.0).abs() < 1e-12);
        // sd = 0.2 sqrt(2), sd / sqrt(2) = 0.2, t_{0.975,1} = 12.706
        assert!((r.half_width.unwrap() - 12.706 * 0.2).abs() < 1e-9);
        // non-positive values are left out; a seed with one point has no slope
        let sparse = vec![vec![(8.0, 0.0), (32.0, 1.0)], vec![(8.0, 1.0)]];
        assert!(rate(&sparse).is_none());
        assert!(t_975(40) > 1.96 && t_975(40) < t_975(30));
    }
}
