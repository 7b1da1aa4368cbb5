//! `atlas report DIR`: merges the shard files into `DIR/results.jsonl` and
//! writes `DIR/atlas.md` with the per-theorem counts (and the proofs when the
//! SPEC says `certify = true`), the phase diagrams
//! (`DIR/phase-no-layernorm.{png,svg}`, `DIR/phase-layernorm.{png,svg}`) and the
//! list of counterexamples.

use super::proof::{self, ProofCounts};
use super::run::{read_results, result_files, ResultLine};
use crate::error::{Error, Result};
use crate::npy::write_atomic;
use crate::plots::{category_grid, CategoryGrid, Cell};
use crate::verify::Verdict;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

/// Counts of one theorem.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TheoremCounts {
    pub instances: usize,
    pub restarts: usize,
    pub confirmed: usize,
    pub refuted: usize,
    pub inconclusive: usize,
    pub errors: usize,
    /// Instances whose report says they are outside the theorem's hypotheses.
    pub outside_hypotheses: usize,
    /// Largest `(R_pred - R_best) / max(1, |R_pred|)` (positive: below the
    /// prediction) over the full-latent-set instances, where the prediction is the claim.
    pub largest_gap_below: Option<f64>,
    /// The same over drawn latent sets (a measured deviation of the geometry).
    pub largest_gap_below_drawn: Option<f64>,
    /// Proof outcomes (`certify = true`; all 0 otherwise).
    pub proofs: ProofCounts,
}

/// What [`report`] found.
#[derive(Debug, Clone)]
pub struct AtlasSummary {
    /// Index 0, 1, 2 for theorems 1, 2, 3.
    pub theorems: [TheoremCounts; 3],
    /// Distinct results (by id).
    pub results: usize,
    /// Ids of the counterexamples.
    pub counterexamples: Vec<String>,
}

/// Legend of the phase diagrams: the three verdicts, then "error", then "mixed"
/// is not used (a cell shows the worst verdict, see [`Verdict::worst`]).
const CATEGORIES: [(&str, (u8, u8, u8)); 4] = [
    ("confirmed", (44, 160, 44)),
    ("refuted", (214, 39, 40)),
    ("inconclusive", (255, 160, 40)),
    ("error", (150, 150, 150)),
];

fn category(r: &ResultLine) -> usize {
    match r.verdict {
        Some(Verdict::Confirmed) => 0,
        Some(Verdict::Refuted) => 1,
        Some(Verdict::Inconclusive) => 2,
        None => 3,
    }
}

/// Severity order of the categories for a cell: refuted > inconclusive > error > confirmed.
fn severity(c: usize) -> u8 {
    [0, 3, 2, 1][c]
}

fn fmt_num(v: f64) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

/// Merges, summarises and plots the results of `dir`.
pub fn report(dir: &Path) -> Result<AtlasSummary> {
    if result_files(dir)?.is_empty() {
        return Err(Error::invalid(
            "dir",
            dir.display(),
            "no results*.jsonl here (run `fcollapse atlas run` first)",
        ));
    }
    // Every line must be an instance of DIR/spec.toml (no foreign shard).
    let spec_path = dir.join("spec.toml");
    let spec_text = std::fs::read_to_string(&spec_path).map_err(|e| {
        Error::invalid(
            "dir",
            dir.display(),
            format!("its spec.toml cannot be read ({e}): the results cannot be checked"),
        )
    })?;
    let spec = super::spec::parse(&spec_text)?;
    let known: BTreeMap<&str, &super::spec::Instance> =
        spec.instances.iter().map(|i| (i.id.as_str(), i)).collect();
    // merge: one line per id, by index
    let mut by_id: BTreeMap<(usize, String), ResultLine> = BTreeMap::new();
    for r in read_results(dir)? {
        let ok = known
            .get(r.id.as_str())
            .is_some_and(|i| i.index == r.index && i.theorem == r.instance.theorem);
        if !ok {
            return Err(Error::invalid(
                "dir",
                dir.display(),
                format!(
                    "result {} (index {}) is not an instance of its spec.toml: a results file from another SPEC was copied in",
                    r.id, r.index
                ),
            ));
        }
        by_id.entry((r.index, r.id.clone())).or_insert(r);
    }
    let results: Vec<ResultLine> = by_id.into_values().collect();
    // Merge into results.jsonl only while no run holds DIR: a run appends to
    // its results file, and a file swapped under it would lose its lines.
    if let Some(_lock) = super::lock::try_lock(dir)? {
        let mut merged = String::new();
        for r in &results {
            merged.push_str(&serde_json::to_string(r)?);
            merged.push('\n');
        }
        write_atomic(&dir.join("results.jsonl"), merged.as_bytes())?;
    } else {
        eprintln!(
            "note: a run is writing to {}: its results are reported as they stand, and merged into results.jsonl by a report after the run",
            dir.display()
        );
    }

    let mut theorems: [TheoremCounts; 3] = Default::default();
    for r in &results {
        let Some(t) = theorems.get_mut((r.instance.theorem as usize).wrapping_sub(1)) else {
            continue;
        };
        t.instances += 1;
        t.restarts += r.restarts;
        match r.verdict {
            Some(Verdict::Confirmed) => t.confirmed += 1,
            Some(Verdict::Refuted) => t.refuted += 1,
            Some(Verdict::Inconclusive) => t.inconclusive += 1,
            None => t.errors += 1,
        }
        if r.hypotheses == Some(false) {
            t.outside_hypotheses += 1;
        }
        t.proofs.add(r.certificate.as_ref());
        if let Some(g) = r.gap_below {
            let slot = if r.instance.task.classes.is_some() {
                &mut t.largest_gap_below_drawn
            } else {
                &mut t.largest_gap_below
            };
            *slot = Some(slot.map_or(g, |m: f64| m.max(g)));
        }
    }
    let counter: Vec<&ResultLine> = results
        .iter()
        .filter(|r| r.counterexample.is_some())
        .collect();

    let mut md = String::new();
    let _ = writeln!(md, "# Atlas\n");
    let _ = writeln!(
        md,
        "{} instances of `spec.toml` (generated by `fcollapse atlas report`).\n",
        results.len()
    );
    let versions: BTreeSet<String> = results
        .iter()
        .map(|r| {
            format!(
                "{} @ {}",
                r.provenance.crate_version,
                r.provenance
                    .git_commit
                    .as_deref()
                    .unwrap_or("unknown commit")
            )
        })
        .collect();
    let wall: f64 = results.iter().map(|r| r.provenance.wall_seconds).sum();
    let _ = writeln!(
        md,
        "Built by feature-collapse {}; total wall time of the instances {:.1} s.\n",
        versions.into_iter().collect::<Vec<_>>().join(", "),
        wall
    );
    // The "proved" column only when the results carry proofs.
    let certified = results.iter().any(|r| r.certificate.is_some());
    let _ = writeln!(md, "## Per theorem\n");
    let _ = writeln!(
        md,
        "| theorem | instances | restarts | confirmed (passes) | refuted | inconclusive | errors | outside hypotheses | largest gap below prediction, full latent set | same, drawn latent sets |{}",
        if certified { " proved (of applicable) |" } else { "" }
    );
    let _ = writeln!(
        md,
        "|---|---|---|---|---|---|---|---|---|---|{}",
        if certified { "---|" } else { "" }
    );
    for (i, t) in theorems.iter().enumerate() {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |{}",
            i + 1,
            t.instances,
            t.restarts,
            t.confirmed,
            t.refuted,
            t.inconclusive,
            t.errors,
            t.outside_hypotheses,
            t.largest_gap_below
                .map_or("–".to_string(), |g| format!("{g:.2e}")),
            t.largest_gap_below_drawn
                .map_or("–".to_string(), |g| format!("{g:.2e}")),
            if certified {
                format!(" {} of {} |", t.proofs.proved, t.proofs.applicable())
            } else {
                String::new()
            }
        );
    }
    let _ = writeln!(
        md,
        "\nThe gap is `(R_pred - R_best) / max(1, |R_pred|)` over the restarts: positive \
         means a restart ended below the prediction. On the full latent set the \
         prediction is the theorem's claim, and a gap beyond tolerance is a refutation. \
         On a drawn latent set the equiangular geometry is exact only for the full set \
         (docs/theory.md §7): the gap there is a measured deviation, not a refutation; \
         the claim checked is that the tokens of one concept share one representation. \
         \"Outside hypotheses\" counts the instances whose verify report sets \
         `hypotheses: false`.{}\n",
        if certified {
            " \"Proved\" counts the certificates of `fcollapse certify` whose verdict \
             is `proved`, out of the instances it covers (see Proofs below)."
        } else {
            ""
        }
    );
    proof::write_section(&mut md, &results);

    let _ = writeln!(md, "## Phase diagrams\n");
    let _ = writeln!(
        md,
        "One cell per (lambda / lambda_critical, Zipf exponent); exponent 0 is uniform mu. \
         A cell shows the worst verdict of its instances (refuted, then inconclusive, then \
         error, then confirmed) and the count `confirmed/instances`. With LayerNorm, \
         lambda_W = 0 and the ratio is lambda_U over lambda_critical of the same task \
         without LayerNorm.\n"
    );
    for (ln, stem, title) in [
        (
            false,
            "phase-no-layernorm",
            "Atlas verdicts without LayerNorm",
        ),
        (true, "phase-layernorm", "Atlas verdicts with LayerNorm"),
    ] {
        let sel: Vec<&ResultLine> = results
            .iter()
            .filter(|r| {
                r.instance
                    .task
                    .resolved_norm()
                    .is_ok_and(|n| !n.is_linear())
                    == ln
            })
            .collect();
        if sel.is_empty() {
            let _ = writeln!(md, "- {title}: no instance.\n");
            continue;
        }
        let key = |v: f64| (v * 1e9).round() as i64;
        let xs: BTreeSet<i64> = sel.iter().map(|r| key(r.instance.lambda_ratio)).collect();
        let ys: BTreeSet<i64> = sel.iter().map(|r| key(r.instance.zipf_exponent)).collect();
        let xs: Vec<i64> = xs.into_iter().collect();
        let ys: Vec<i64> = ys.into_iter().collect();
        let mut cells: Vec<Vec<Option<(usize, usize, usize)>>> =
            vec![vec![None; xs.len()]; ys.len()];
        for r in &sel {
            let x = xs
                .binary_search(&key(r.instance.lambda_ratio))
                .expect("present");
            let y = ys
                .binary_search(&key(r.instance.zipf_exponent))
                .expect("present");
            let c = category(r);
            let cell = cells[y][x].get_or_insert((c, 0, 0));
            if severity(c) > severity(cell.0) {
                cell.0 = c;
            }
            cell.1 += usize::from(c == 0);
            cell.2 += 1;
        }
        let grid: Vec<Vec<Cell>> = cells
            .iter()
            .map(|row| {
                row.iter()
                    .map(|c| c.map(|(cat, ok, n)| (cat, format!("{ok}/{n}"))))
                    .collect()
            })
            .collect();
        let x_ticks: Vec<String> = xs.iter().map(|&v| fmt_num(v as f64 * 1e-9)).collect();
        let y_ticks: Vec<String> = ys.iter().map(|&v| fmt_num(v as f64 * 1e-9)).collect();
        category_grid(
            &dir.join(stem),
            &CategoryGrid {
                title,
                x_label: "lambda / lambda_critical",
                y_label: "Zipf exponent (0 = uniform)",
                x_ticks: &x_ticks,
                y_ticks: &y_ticks,
                categories: &CATEGORIES,
                cells: &grid,
            },
        )?;
        let _ = writeln!(md, "### {title}\n");
        let _ = writeln!(md, "![{title}]({stem}.png) ([SVG]({stem}.svg))\n");
    }

    let _ = writeln!(md, "## Counterexamples\n");
    if counter.is_empty() {
        let _ = writeln!(
            md,
            "None: no instance was refuted. (On drawn latent sets a restart below the \
             equiangular prediction is a measured deviation of the geometry, counted in \
             the table above, not a counterexample.)\n"
        );
    } else {
        let _ = writeln!(
            md,
            "| id | theorem | instance | R_pred | R_best | gap | W | U |"
        );
        let _ = writeln!(md, "|---|---|---|---|---|---|---|---|");
        for r in &counter {
            let c = r.counterexample.as_ref().expect("filtered");
            let _ = writeln!(
                md,
                "| {} | {} | {} | {:.12} | {:.12} | {:.2e} | [{}]({}) | [{}]({}) |",
                r.id,
                r.instance.theorem,
                super::run::short_instance(&r.instance.task),
                r.predicted_risk.unwrap_or(f64::NAN),
                c.risk,
                r.gap_below.unwrap_or(f64::NAN),
                c.w,
                c.w,
                c.u,
                c.u
            );
        }
        let _ = writeln!(md);
    }
    let others: Vec<&ResultLine> = results
        .iter()
        .filter(|r| r.verdict != Some(Verdict::Confirmed) && r.counterexample.is_none())
        .collect();
    if !others.is_empty() {
        let _ = writeln!(md, "## Inconclusive and failed instances\n");
        let _ = writeln!(
            md,
            "| id | theorem | instance | verdict | failed checks or error |"
        );
        let _ = writeln!(md, "|---|---|---|---|---|");
        for r in others {
            let reasons = || -> String {
                r.report
                    .as_ref()
                    .and_then(|v| v.get("reasons"))
                    .and_then(|v| v.as_array())
                    .map(|a| {
                        a.iter()
                            .filter_map(|x| x.as_str())
                            .collect::<Vec<_>>()
                            .join("; ")
                    })
                    .unwrap_or_default()
            };
            let why = match &r.error {
                Some(e) => e.clone(),
                None if r.failed_checks.is_empty() => reasons(),
                None => r.failed_checks.join("; "),
            };
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} |",
                r.id,
                r.instance.theorem,
                super::run::short_instance(&r.instance.task),
                r.verdict.map_or("error", |v| v.name()),
                why.replace('|', "/")
            );
        }
        let _ = writeln!(md);
    }
    write_atomic(&dir.join("atlas.md"), md.as_bytes())?;
    Ok(AtlasSummary {
        theorems,
        results: results.len(),
        counterexamples: counter.iter().map(|r| r.id.clone()).collect(),
    })
}
