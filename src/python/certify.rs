//! `feature_collapse.certify(task)`: the computer-assisted proof of
//! `fcollapse certify` for one instance, as the certificate's JSON fields (a dict).
//! Only a module built with both the `python` and the `certify` features proves
//! anything; without `certify` the function raises `NotImplementedError` (the
//! published wheel is built without it, see docs/certificate.md).

use super::PyTask;
use pyo3::prelude::*;

/// Whether this module was built with the `certify` feature.
pub(super) const AVAILABLE: bool = cfg!(feature = "certify");

/// The certificate of `candidate` (`"predicted"`, `"type-i"` or `"origin"`;
/// `candidate_scale` multiplies its classifier norm `b`) for `task`: the fields of
/// `fcollapse certify --json`, `verdict` (`"proved"` or `"unproved"`),
/// `risk_enclosure` (`[lo, hi]` of `R*`), `transverse_lower_bound` (`m`),
/// `radius` (`r`), `distance_bound`, `phase`, `reasons`, every enclosure with
/// exact endpoints, the instance and the version among them.
#[pyfunction]
#[pyo3(signature = (task, candidate="predicted", candidate_scale=1.0))]
pub(super) fn certify<'py>(
    py: Python<'py>,
    task: &PyTask,
    candidate: &str,
    candidate_scale: f64,
) -> PyResult<Bound<'py, PyAny>> {
    imp::certify(py, task, candidate, candidate_scale)
}

#[cfg(feature = "certify")]
mod imp {
    use super::super::{interruptible, py_err, to_py, PyTask};
    use crate::certify::{self, Candidate, CertifyConfig};
    use crate::error::Error;
    use crate::Versioned;
    use pyo3::prelude::*;

    pub(super) fn certify<'py>(
        py: Python<'py>,
        task: &PyTask,
        candidate: &str,
        candidate_scale: f64,
    ) -> PyResult<Bound<'py, PyAny>> {
        let candidate = match candidate {
            "predicted" => Candidate::Predicted,
            "type-i" => Candidate::TypeI,
            "origin" => Candidate::Origin,
            other => {
                return Err(py_err(Error::invalid(
                    "candidate",
                    other,
                    "expected \"predicted\", \"type-i\" or \"origin\"",
                )))
            }
        };
        let cfg = CertifyConfig::new(candidate, candidate_scale).map_err(py_err)?;
        let t = &task.inner;
        certify::check_instance(t).map_err(py_err)?;
        // (no stop flag inside a proof: Ctrl-C is seen when it ends)
        let cert = interruptible(py, |_stop| certify::certify(t, &cfg))?;
        to_py(py, &Versioned::new(&cert))
    }
}

#[cfg(not(feature = "certify"))]
mod imp {
    use super::super::PyTask;
    use pyo3::exceptions::PyNotImplementedError;
    use pyo3::prelude::*;

    pub(super) fn certify<'py>(
        _py: Python<'py>,
        _task: &PyTask,
        _candidate: &str,
        _candidate_scale: f64,
    ) -> PyResult<Bound<'py, PyAny>> {
        Err(PyNotImplementedError::new_err(
            "certify: this feature_collapse was built without the `certify` feature; \
             build the module with `maturin build --release --features python,certify` \
             (needs the m4 package, see docs/certificate.md) or run `fcollapse certify`",
        ))
    }
}
