//! Saving the weights behind a `refuted` verdict.

use super::TheoremReport;
use crate::error::{Error, Result};
use crate::npy::write_npy_f64;
use std::path::Path;

/// Writes each witness of `report` as two `.npy` files (float64, C order) in
/// `dir` (created if needed): `theorem{N}-{label}-W.npy`, shape `[n_w, d]`, and
/// `theorem{N}-{label}-U.npy`, shape `[K, L, d]`; records the paths in
/// `report.witnesses`. Does nothing when there is no witness.
pub fn write_witnesses(report: &mut TheoremReport, dir: &Path) -> Result<()> {
    if report.witness_params.is_empty() {
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    for w in &report.witness_params {
        let p = &w.params;
        for (part, shape, data) in [
            ("W", vec![p.n_w, p.dim], &p.w),
            ("U", vec![p.k, p.len, p.dim], &p.u),
        ] {
            let path = dir.join(format!("theorem{}-{}-{part}.npy", report.theorem, w.label));
            write_npy_f64(&path, &shape, data)?;
            report.witnesses.push(path.display().to_string());
        }
    }
    Ok(())
}
