//! The study's summary (rates per measure and solver), its Markdown report
//! `convergence.md` and its figures (PNG + SVG, log-log: `log10` of the median
//! over seeds against `log10 n_spl`, one line per solver, the theory's slope dashed).

use super::rates::{self, Rate};
use super::{Record, Reference, Solver};
use crate::error::{Error, Result};
use crate::plots::{self, Series};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

/// A measure with a rate: its key, its label, the slope classical
/// M-estimation suggests for the ERM (`None`: no prediction), and its floor:
/// values at or below it are at the optimiser's tolerance (round-off for the
/// risk, `~ grad_tol`-driven for distances) and are left out of the rates.
pub struct Measure {
    pub key: &'static str,
    pub label: &'static str,
    pub theory_slope: Option<f64>,
    pub floor: f64,
    pub get: fn(&Record) -> f64,
}

/// The measures whose rates are fitted.
pub const MEASURES: [Measure; 6] = [
    Measure {
        key: "excess_limit_risk",
        floor: 1e-12,
        label: "R(theta) - R*",
        theory_slope: Some(-1.0),
        get: |r| r.measures.excess_limit_risk,
    },
    Measure {
        key: "within_concept_spread",
        floor: 1e-6,
        label: "||Phi - M||_F / ||Phi||_F",
        theory_slope: Some(-0.5),
        get: |r| r.measures.within_concept_spread,
    },
    Measure {
        key: "family_distance",
        floor: 1e-6,
        label: "family distance (max)",
        theory_slope: Some(-0.5),
        get: |r| r.measures.family_distance,
    },
    Measure {
        key: "norm_w_err",
        floor: 1e-6,
        label: "max_t | ||phi(w_t)|| - r_beta | / S_w",
        theory_slope: Some(-0.5),
        get: |r| r.measures.family.norm_w_err,
    },
    Measure {
        key: "norm_u_err",
        floor: 1e-6,
        label: "max | ||u_{k,l}|| - b | / b",
        theory_slope: Some(-0.5),
        get: |r| r.measures.family.norm_u_err,
    },
    Measure {
        key: "test_error",
        floor: 0.0,
        label: "1 - test accuracy",
        theory_slope: None,
        get: |r| 1.0 - r.measures.test_accuracy,
    },
];

/// Per-solver counts.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SolverSummary {
    pub records: usize,
    /// Records whose solver did not converge (left out of the rates).
    pub not_converged: usize,
    /// Records whose basin run ended in the predicted family.
    pub basin_in_family: usize,
    /// Median basin iterations.
    pub basin_median_iterations: u64,
}

/// The summary of a study (the last `--json` line).
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub summary: bool,
    pub theorem: Option<u8>,
    pub instance: String,
    pub r_star: f64,
    /// Predicted small-step SGD floor of the excess limit risk ([`super::noise`]).
    pub sgd_floor: Option<f64>,
    /// `C` of the ERM's predicted `E[R - R*] ≈ C / n_spl` ([`super::noise`]).
    pub erm_excess_coefficient: Option<f64>,
    /// `n_spl` -> mean over seeds of `n_spl (R(theta_hat) - R*)` for the ERM (to compare with `C`).
    pub erm_scaled_excess: BTreeMap<usize, f64>,
    /// measure -> solver -> slope (null when it cannot be fitted).
    pub slopes: BTreeMap<String, BTreeMap<String, Option<f64>>>,
    /// measure -> solver -> the full fit (slope, 95 % half-width, seeds, points).
    pub rates: BTreeMap<String, BTreeMap<String, Option<Rate>>>,
    /// measure -> solver -> converged points at or below the measure's floor
    /// (tolerance level: the solution is exact there), left out of the rates.
    pub below_floor: BTreeMap<String, BTreeMap<String, usize>>,
    pub solvers: BTreeMap<String, SolverSummary>,
    pub seconds: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

fn solvers_of(records: &[Record]) -> Vec<Solver> {
    let mut s: Vec<Solver> = records.iter().map(|r| r.solver).collect();
    s.sort();
    s.dedup();
    s
}

/// Rates and counts over `records` (converged records only in the rates).
pub fn summarise(
    records: &[Record],
    theorem: Option<u8>,
    instance: &str,
    reference: &Reference,
    seconds: f64,
) -> Summary {
    let mut slopes = BTreeMap::new();
    let mut fitted = BTreeMap::new();
    let mut floored = BTreeMap::new();
    let solvers = solvers_of(records);
    for m in &MEASURES {
        let mut s_map = BTreeMap::new();
        let mut r_map = BTreeMap::new();
        let mut below = BTreeMap::new();
        for &solver in &solvers {
            let mut per_seed: BTreeMap<u64, Vec<(f64, f64)>> = BTreeMap::new();
            for r in records.iter().filter(|r| r.solver == solver && r.converged) {
                let y = (m.get)(r);
                if y > m.floor {
                    per_seed
                        .entry(r.seed)
                        .or_default()
                        .push((r.n_spl as f64, y));
                } else {
                    *below.entry(solver.name().to_string()).or_insert(0) += 1;
                }
            }
            let rate = rates::rate(&per_seed.into_values().collect::<Vec<_>>());
            s_map.insert(solver.name().to_string(), rate.as_ref().map(|r| r.slope));
            r_map.insert(solver.name().to_string(), rate);
        }
        slopes.insert(m.key.to_string(), s_map);
        fitted.insert(m.key.to_string(), r_map);
        floored.insert(m.key.to_string(), below);
    }
    let mut counts = BTreeMap::new();
    for &solver in &solvers {
        let rs: Vec<&Record> = records.iter().filter(|r| r.solver == solver).collect();
        counts.insert(
            solver.name().to_string(),
            SolverSummary {
                records: rs.len(),
                not_converged: rs.iter().filter(|r| !r.converged).count(),
                basin_in_family: rs.iter().filter(|r| r.measures.basin.in_family).count(),
                basin_median_iterations: median(
                    rs.iter()
                        .map(|r| r.measures.basin.iterations as f64)
                        .collect(),
                ) as u64,
            },
        );
    }
    Summary {
        summary: true,
        theorem,
        instance: instance.to_string(),
        r_star: reference.r_star,
        sgd_floor: reference.sgd_floor,
        erm_excess_coefficient: reference.erm_excess_coefficient,
        erm_scaled_excess: {
            let mut by_n: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
            for r in records
                .iter()
                .filter(|r| r.solver == Solver::Erm && r.converged)
            {
                by_n.entry(r.n_spl)
                    .or_default()
                    .push(r.n_spl as f64 * r.measures.excess_limit_risk);
            }
            by_n.into_iter()
                .map(|(n, v)| (n, v.iter().sum::<f64>() / v.len() as f64))
                .collect()
        },
        slopes,
        rates: fitted,
        below_floor: floored,
        solvers: counts,
        seconds,
    }
}

/// `slope ± half-width` for tables.
pub fn fmt_rate(r: &Option<Rate>) -> String {
    match r {
        None => "n/a".into(),
        Some(r) => match r.half_width {
            Some(h) => format!("{:+.3} ± {:.3}", r.slope, h),
            None => format!("{:+.3}", r.slope),
        },
    }
}

/// The table cell of a rate: `slope ± half-width`, plus how many points were at
/// the floor (`all <= floor` when none was above it).
pub fn rate_cell(summary: &Summary, m: &Measure, solver: &str) -> String {
    let below = summary.below_floor[m.key].get(solver).copied().unwrap_or(0);
    let rate = &summary.rates[m.key][solver];
    match (rate, below) {
        (None, b) if b > 0 && m.floor == 0.0 => "all 0".into(),
        (None, b) if b > 0 => format!("all <= {:.0e}", m.floor),
        (_, 0) => fmt_rate(rate),
        (_, b) => format!("{} ({b} <= {:.0e})", fmt_rate(rate), m.floor),
    }
}

/// Medians over seeds of `measure` for each `(solver, n_spl)`.
fn medians(records: &[Record], solver: Solver, m: &Measure) -> Vec<(usize, f64)> {
    let mut by_n: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
    for r in records.iter().filter(|r| r.solver == solver) {
        by_n.entry(r.n_spl).or_default().push((m.get)(r));
    }
    by_n.into_iter().map(|(n, v)| (n, median(v))).collect()
}

/// Draws one log-log figure per measure into `dir/figures/` (file stems are the
/// measure keys); returns the stems relative to `dir`. `sgd_floor`, if given, is
/// drawn dashed on the excess-risk figure.
pub fn figures(
    dir: &Path,
    records: &[Record],
    title: &str,
    sgd_floor: Option<f64>,
    erm_coefficient: Option<f64>,
) -> Result<Vec<String>> {
    let solvers = solvers_of(records);
    let mut stems = Vec::new();
    for m in &MEASURES {
        let mut series = Vec::new();
        let mut first: Option<(f64, f64)> = None;
        let mut last_x = f64::NAN;
        for &solver in &solvers {
            let pts: Vec<(f64, f64)> = medians(records, solver, m)
                .into_iter()
                .filter(|&(_, y)| y > 0.0 && y.is_finite())
                .map(|(n, y)| ((n as f64).log10(), y.log10()))
                .collect();
            if let Some(&p) = pts.first() {
                // anchor the theory's slope on the ERM's first point, unless it
                // is at the floor (the solution is exact there: no rate to show)
                if solver == Solver::Erm && 10f64.powf(p.1) > m.floor {
                    first = Some(p);
                }
                last_x = pts.last().map_or(last_x, |q| q.0);
            }
            if !pts.is_empty() {
                series.push(Series::solid(solver.name().to_uppercase(), pts));
            }
        }
        if series.is_empty() {
            continue;
        }
        let xs: Vec<f64> = series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.0))
            .collect();
        let (x_lo, x_hi) = xs
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
                (a.min(x), b.max(x))
            });
        let c =
            erm_coefficient.filter(|&c| c > m.floor && x_hi > x_lo && m.key == "excess_limit_risk");
        if let Some(c) = c {
            series.push(Series::dashed(
                "ERM theory tr(H+ Sigma_w)/(2K n_spl)",
                vec![(x_lo, c.log10() - x_lo), (x_hi, c.log10() - x_hi)],
            ));
        }
        let floor = sgd_floor.filter(|&f| f > 0.0 && x_hi > x_lo && m.key == "excess_limit_risk");
        if let Some(f) = floor {
            series.push(Series::dashed(
                "SGD floor lr tr(Sigma)/(4B)",
                vec![(x_lo, f.log10()), (x_hi, f.log10())],
            ));
        }
        let has_c = erm_coefficient.is_some_and(|c| c > m.floor) && m.key == "excess_limit_risk";
        if let (Some(s), Some((x0, y0)), false) = (m.theory_slope, first, has_c) {
            if last_x > x0 {
                series.push(Series::dashed(
                    format!("slope {s}"),
                    vec![(x0, y0), (last_x, y0 + s * (last_x - x0))],
                ));
            }
        }
        let stem = format!("figures/{}", m.key);
        plots::curves(
            &dir.join(&stem),
            &format!("{title}: {}", m.label),
            "log10 n_spl",
            &format!("log10 median {}", m.key),
            &series,
            None,
        )?;
        stems.push(stem);
    }
    Ok(stems)
}

/// Writes `dir/convergence.md`: the instance, the rates with their intervals,
/// the medians per `n_spl`, the basin counts, every non-converged solution, and the figures.
pub fn write_markdown(
    dir: &Path,
    records: &[Record],
    summary: &Summary,
    reference: &Reference,
    stems: &[String],
) -> Result<()> {
    let mut s = String::new();
    let t = summary
        .theorem
        .map_or(String::new(), |t| format!(", theorem {t}"));
    let _ = writeln!(
        s,
        "# Convergence to the limit minimiser (type {:?}{t})\n",
        reference.kind
    );
    let _ = writeln!(s, "Instance: `{}`.\n", summary.instance);
    let _ = writeln!(
        s,
        "Limit minimum `R* = {:.12}` (prediction: `R = {:.12}`, `||grad R|| = {:.1e}`; polish {} L-BFGS iterations).\n",
        reference.r_star,
        reference.risk_at_prediction,
        reference.grad_norm_at_prediction,
        reference.polish_iterations
    );
    if let (Some(tr), Some(fl)) = (reference.gradient_noise_trace, reference.sgd_floor) {
        let _ = writeln!(
            s,
            "Gradient noise at the limit minimiser: `tr(Sigma) = {tr:.4e}`; small-step SGD floor `lr tr(Sigma) / (4 B) = {fl:.3e}`.\n"
        );
    }
    if let Some(c) = reference.erm_excess_coefficient {
        let _ = writeln!(
            s,
            "ERM excess risk from M-estimation: `E[R - R*] ≈ C / n_spl` with `C = tr(H^+ Sigma_w) / (2K) = {c:.4e}`.\n"
        );
        if !summary.erm_scaled_excess.is_empty() {
            let _ = writeln!(
                s,
                "| n_spl | ERM mean of `n_spl (R - R*)` | C |\n|---|---|---|"
            );
            for (n, v) in &summary.erm_scaled_excess {
                let _ = writeln!(s, "| {n} | {v:.4e} | {c:.4e} |");
            }
            let _ = writeln!(s);
        }
    }
    let solvers: Vec<String> = summary.solvers.keys().cloned().collect();
    let _ = writeln!(
        s,
        "## Rates (log-log slope in n_spl, mean over seeds ± 95 % interval)\n"
    );
    let _ = writeln!(
        s,
        "| measure | M-estimation (ERM, generic) | {} |",
        solvers
            .iter()
            .map(|x| x.to_uppercase())
            .collect::<Vec<_>>()
            .join(" | ")
    );
    let _ = writeln!(s, "|---|---|{}", "---|".repeat(solvers.len()));
    for m in &MEASURES {
        let row: Vec<String> = solvers.iter().map(|sv| rate_cell(summary, m, sv)).collect();
        let th = m.theory_slope.map_or("–".into(), |v| format!("{v}"));
        let _ = writeln!(s, "| `{}` | {} | {} |", m.key, th, row.join(" | "));
    }
    let _ = writeln!(s, "\n## Medians over seeds\n");
    let _ = writeln!(
        s,
        "| solver | n_spl | {} | basin in family | converged |",
        MEASURES
            .iter()
            .map(|m| format!("`{}`", m.key))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    let _ = writeln!(s, "|---|---|{}---|---|", "---|".repeat(MEASURES.len()));
    for sv in solvers_of(records) {
        let mut ns: Vec<usize> = records
            .iter()
            .filter(|r| r.solver == sv)
            .map(|r| r.n_spl)
            .collect();
        ns.sort_unstable();
        ns.dedup();
        for n in ns {
            let rs: Vec<&Record> = records
                .iter()
                .filter(|r| r.solver == sv && r.n_spl == n)
                .collect();
            let cells: Vec<String> = MEASURES
                .iter()
                .map(|m| format!("{:.3e}", median(rs.iter().map(|r| (m.get)(r)).collect())))
                .collect();
            let _ = writeln!(
                s,
                "| {} | {} | {} | {}/{} | {}/{} |",
                sv.name().to_uppercase(),
                n,
                cells.join(" | "),
                rs.iter().filter(|r| r.measures.basin.in_family).count(),
                rs.len(),
                rs.iter().filter(|r| r.converged).count(),
                rs.len()
            );
        }
    }
    let _ = writeln!(s, "\n## Solvers\n");
    for (name, c) in &summary.solvers {
        let _ = writeln!(
            s,
            "- {}: {} solutions, {} not converged (left out of the rates), {} in the predicted basin (median {} L-BFGS iterations to it).",
            name.to_uppercase(),
            c.records,
            c.not_converged,
            c.basin_in_family,
            c.basin_median_iterations
        );
    }
    let bad: Vec<&Record> = records.iter().filter(|r| !r.converged).collect();
    if !bad.is_empty() {
        let _ = writeln!(s, "\nNot converged:\n");
        for r in bad {
            let _ = writeln!(
                s,
                "- {} n_spl={} seed={}: {} iterations/epochs, residual {:.3e}",
                r.solver.name().to_uppercase(),
                r.n_spl,
                r.seed,
                r.iterations,
                r.fit_residual
            );
        }
    }
    if !stems.is_empty() {
        let _ = writeln!(s, "\n## Figures\n");
        for st in stems {
            let _ = writeln!(s, "![{st}]({st}.png)\n");
        }
    }
    let path = dir.join("convergence.md");
    std::fs::write(&path, s).map_err(|e| Error::io(&path, e))
}
