//! The Python module `feature_collapse._native` (PyO3, abi3), wrapped by the
//! package `feature_collapse` (see `python/`). Only with `--features python`.
//!
//! Every function calls the same library code as the command line; errors that
//! the CLI reports with exit code 2 (bad input) raise `ValueError` with the same
//! message, others `RuntimeError`. Arrays are NumPy `float64`, `W` shaped
//! `(n_w, d)` and `U` shaped `(K, L d)` (the `nn.Linear` layout) or `(K, L, d)`.
//! The GIL is released while the library computes; the long calls (`train`,
//! `verify`) run on a worker thread while the calling thread checks Python's
//! signals, so that Ctrl-C raises `KeyboardInterrupt` (see [`interruptible`]).
//! `certify` (the proof of `fcollapse certify`) is in [`certify`]: it proves only
//! in a module built with the `certify` feature too (`HAS_CERTIFY`).

mod certify;

use crate::analyze::{self, AnalyzeConfig};
use crate::cli::{FreqArg, TaskArgs};
use crate::collapse::{self, Form};
use crate::error::Error;
use crate::limit;
use crate::metrics;
use crate::network::Params;
use crate::spectrum;
use crate::stop::StopFlag;
use crate::task::{Task, TaskConfig};
use crate::train::{Observe, ObserverMode, Outcome, TrainConfig, Trainer};
use crate::verify::{self, Theorem, VerifyConfig};
use crate::Versioned;
use numpy::{PyArray1, PyArrayDyn, PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

/// The Python exception for a library error: `ValueError` for bad input (the
/// CLI's exit code 2), `RuntimeError` otherwise; the message is the CLI's.
fn py_err(e: Error) -> PyErr {
    if e.is_bad_input() {
        PyValueError::new_err(e.report())
    } else {
        PyRuntimeError::new_err(e.report())
    }
}

/// How often a waiting call runs Python's signal handlers.
const SIGNAL_POLL: std::time::Duration = std::time::Duration::from_millis(50);

/// Runs `f` on a worker thread, handing it a fresh stop flag, while the calling
/// thread waits with the GIL released and every [`SIGNAL_POLL`] runs Python's
/// signal handlers (`check_signals`). When a handler raises (Ctrl-C:
/// `KeyboardInterrupt`), the flag is raised, the worker is waited for (the library
/// stops at its next check of the flag) and that exception is returned; otherwise
/// the worker's result, its error as [`py_err`] makes it.
fn interruptible<T, F>(py: Python<'_>, f: F) -> PyResult<T>
where
    T: Send,
    F: FnOnce(StopFlag) -> crate::Result<T> + Send,
{
    let flag = StopFlag::new();
    let caller = std::thread::current();
    std::thread::scope(|s| {
        let stop = flag.clone();
        let worker = s.spawn(move || {
            let out = f(stop);
            caller.unpark();
            out
        });
        let mut raised: Option<PyErr> = None;
        while !worker.is_finished() {
            py.detach(|| std::thread::park_timeout(SIGNAL_POLL));
            if raised.is_none() && !worker.is_finished() {
                if let Err(e) = py.check_signals() {
                    flag.request();
                    raised = Some(e);
                }
            }
        }
        let out = worker
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        match raised {
            Some(e) => Err(e),
            None => out.map_err(py_err),
        }
    })
}

/// A Python object from serialisable data, through JSON (`json.loads`), so every
/// field of the Rust type (present and future) reaches Python.
fn to_py<'py>(py: Python<'py>, value: &impl serde::Serialize) -> PyResult<Bound<'py, PyAny>> {
    let text = serde_json::to_string(value).map_err(|e| py_err(e.into()))?;
    py.import("json")?.call_method1("loads", (text,))
}

/// A validated task (docs/theory.md §1): `n_c` concepts of `s_c` tokens, sentences of
/// length `L`, embedding dimension `d`, `K` classes with latent variables `z_k`.
#[pyclass(name = "Task", module = "feature_collapse", frozen)]
pub struct PyTask {
    inner: Task,
}

#[pymethods]
impl PyTask {
    #[new]
    #[pyo3(signature = (nc, sc, len, dim, classes=None, freq="uniform", zipf_exponent=1.0,
        layer_norm=false, eps=0.0, lambda_w=0.01, lambda_u=0.01, seed=0, z=None, norm=None,
        lambda_affine=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        nc: usize,
        sc: usize,
        len: usize,
        dim: usize,
        classes: Option<usize>,
        freq: &str,
        zipf_exponent: f64,
        layer_norm: bool,
        eps: f64,
        lambda_w: f64,
        lambda_u: f64,
        seed: u64,
        z: Option<&Bound<'_, PyAny>>,
        norm: Option<&str>,
        lambda_affine: Option<f64>,
    ) -> PyResult<Self> {
        let freq = match freq {
            "uniform" => FreqArg::Uniform,
            "zipf" => FreqArg::Zipf,
            other => {
                return Err(py_err(Error::invalid(
                    "freq",
                    other,
                    "expected 'uniform' or 'zipf'",
                )))
            }
        };
        let args = TaskArgs {
            nc: Some(nc),
            sc: Some(sc),
            len: Some(len),
            dim: Some(dim),
            classes,
            lambda_w: Some(lambda_w),
            lambda_u: Some(lambda_u),
            freq: Some(freq),
            zipf_exponent: (freq == FreqArg::Zipf).then_some(zipf_exponent),
            layer_norm,
            eps: (layer_norm || norm.is_some()).then_some(eps),
            lambda_affine,
            seed: Some(seed),
            ..TaskArgs::default()
        };
        let mut cfg = args.apply(TaskConfig::default(), 0.0).map_err(py_err)?;
        if let Some(name) = norm {
            let n = crate::norm::Norm::parse(name, eps).map_err(py_err)?;
            if layer_norm && n.layer_eps().is_none() {
                return Err(py_err(Error::invalid(
                    "norm",
                    name,
                    "conflicts with layer_norm=True (which is norm='layer')",
                )));
            }
            cfg.set_norm(n);
        }
        if let Some(z) = z {
            let (shape, values) = latent_array(z, len)?;
            if let Some(c) = classes.filter(|&c| c != shape[0]) {
                return Err(py_err(Error::invalid(
                    "classes",
                    c,
                    format!(
                        "z has {} rows, one per class; give classes={} or leave it out",
                        shape[0], shape[0]
                    ),
                )));
            }
            if let Some(pair) = crate::task::repeated_rows(&values, len) {
                return Err(py_err(crate::task::repeated_rows_error(
                    "z",
                    format!("{shape:?}"),
                    &values,
                    len,
                    pair,
                )));
            }
            cfg.classes = Some(shape[0]);
            cfg.latent = Some(values);
        }
        let inner = cfg.build().map_err(py_err)?;
        Ok(PyTask { inner })
    }

    /// Latent variables `z_k`, a `(K, L)` int64 array (row `k` is `z_k`).
    #[getter]
    fn z<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArrayDyn<i64>>> {
        let v: Vec<i64> = self.inner.z().iter().map(|&a| a as i64).collect();
        PyArray1::from_vec(py, v).reshape(vec![self.inner.k(), self.inner.len()])
    }
    /// Token frequencies `mu_beta` inside a concept (length `s_c`, sum 1).
    #[getter]
    fn mu<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        PyArray1::from_vec(py, self.inner.mu().to_vec())
    }
    /// Vocabulary size `n_w = n_c s_c`.
    #[getter]
    fn n_w(&self) -> usize {
        self.inner.n_w()
    }
    /// Number of classes `K`.
    #[getter]
    fn k(&self) -> usize {
        self.inner.k()
    }
    #[getter]
    fn nc(&self) -> usize {
        self.inner.n_c()
    }
    #[getter]
    fn sc(&self) -> usize {
        self.inner.s_c()
    }
    #[getter]
    fn len(&self) -> usize {
        self.inner.len()
    }
    #[getter]
    fn dim(&self) -> usize {
        self.inner.dim()
    }
    /// LayerNorm `eps`, or `None` when the normalization is not plain LayerNorm.
    #[getter]
    fn layer_norm(&self) -> Option<f64> {
        self.inner.norm().layer_eps()
    }
    /// The normalization: 'none', 'layer', 'rms', 'center' or 'layer-affine'.
    #[getter]
    fn norm(&self) -> &'static str {
        self.inner.norm().name()
    }
    /// `eps` of the normalization (`None` for 'none' and 'center').
    #[getter]
    fn eps(&self) -> Option<f64> {
        self.inner.norm().eps()
    }
    #[getter]
    fn lambda_w(&self) -> f64 {
        self.inner.lambda_w()
    }
    #[getter]
    fn lambda_u(&self) -> f64 {
        self.inner.lambda_u()
    }
    #[getter]
    fn seed(&self) -> u64 {
        self.inner.seed()
    }
    /// True when the classes are the whole latent set `[n_c]^L`.
    #[getter]
    fn full_latent(&self) -> bool {
        self.inner.full_latent()
    }
    /// The task as JSON (with `z`), readable by `fcollapse analyze --task`.
    fn to_json(&self) -> PyResult<String> {
        serde_json::to_string(&self.inner).map_err(|e| py_err(e.into()))
    }
    fn __repr__(&self) -> String {
        format!("Task({})", self.inner)
    }
}

/// Latent variables from `z`, an array of any integer dtype (or nested lists)
/// shaped `(K, L)` with entries `>= 0`: its shape and entries in row-major order.
/// The task checks the entries against `n_c`.
fn latent_array(z: &Bound<'_, PyAny>, len: usize) -> PyResult<(Vec<usize>, Vec<usize>)> {
    let a = z.py().import("numpy")?.call_method1("asarray", (z,))?;
    let dtype = a.getattr("dtype")?;
    let kind: String = dtype.getattr("kind")?.extract()?;
    if kind != "i" && kind != "u" {
        let name: String = dtype.str()?.extract()?;
        return Err(py_err(Error::invalid(
            "z",
            format!("dtype {name}"),
            "expected an integer array of concepts (int8 to int64 or unsigned)",
        )));
    }
    let shape: Vec<usize> = a.getattr("shape")?.extract()?;
    if shape.len() != 2 || shape[1] != len {
        return Err(py_err(Error::invalid(
            "z",
            format!("{shape:?}"),
            format!("expected shape (K, L) = (K, {len})"),
        )));
    }
    // every integer dtype, uint64 included, fits in i128
    let flat: Vec<i128> = a.call_method0("ravel")?.call_method0("tolist")?.extract()?;
    let values = flat
        .into_iter()
        .map(|v| {
            usize::try_from(v)
                .map_err(|_| py_err(Error::invalid("z", v, "entries must be concepts >= 0")))
        })
        .collect::<PyResult<_>>()?;
    Ok((shape, values))
}

/// `(W, U)` as library parameters, with the shape and finiteness checks of
/// `fcollapse analyze`.
fn params(
    task: &Task,
    w: &PyReadonlyArrayDyn<'_, f64>,
    u: &PyReadonlyArrayDyn<'_, f64>,
) -> PyResult<Params> {
    analyze::params_from_arrays(
        task,
        (w.shape(), w.as_array().iter().copied().collect(), "W"),
        (u.shape(), u.as_array().iter().copied().collect(), "U"),
    )
    .map_err(py_err)
}

/// The exact limit risk `R(W, U)` (see the package docstring of `limit_risk`).
#[pyfunction]
fn limit_risk(
    py: Python<'_>,
    task: &PyTask,
    w: PyReadonlyArrayDyn<'_, f64>,
    u: PyReadonlyArrayDyn<'_, f64>,
) -> PyResult<f64> {
    let t = &task.inner;
    limit::check_budget(t, limit::DEFAULT_WORK_BUDGET).map_err(py_err)?;
    let p = params(t, &w, &u)?;
    Ok(py.detach(|| limit::risk(t, &p)))
}

/// `(R(W, U), dR/dW, dR/dU)`, `dU` shaped like `U`.
#[pyfunction]
fn limit_risk_grad<'py>(
    py: Python<'py>,
    task: &PyTask,
    w: PyReadonlyArrayDyn<'py, f64>,
    u: PyReadonlyArrayDyn<'py, f64>,
) -> PyResult<Bound<'py, PyTuple>> {
    let t = &task.inner;
    limit::check_budget(t, limit::DEFAULT_WORK_BUDGET).map_err(py_err)?;
    let p = params(t, &w, &u)?;
    let (risk, mut grad) = py.detach(|| limit::risk_grad(t, &p));
    let g_u = grad.split_off(p.w.len());
    let dw = PyArray1::from_vec(py, grad).reshape(w.shape().to_vec())?;
    let du = PyArray1::from_vec(py, g_u).reshape(u.shape().to_vec())?;
    PyTuple::new(
        py,
        [
            risk.into_pyobject(py)?.into_any(),
            dw.into_any(),
            du.into_any(),
        ],
    )
}

/// The predicted collapsed configuration in `form` as a dict.
#[pyfunction]
#[pyo3(signature = (task, form="full"))]
fn predict<'py>(py: Python<'py>, task: &PyTask, form: &str) -> PyResult<Bound<'py, PyAny>> {
    let form: Form = form.parse().map_err(py_err)?;
    let t = &task.inner;
    let pred = py.detach(|| collapse::predict(t, form)).map_err(py_err)?;
    to_py(py, &Versioned::new(&pred))
}

/// One theorem check, the fields of `fcollapse verify --json`.
#[pyfunction]
#[pyo3(name = "verify", signature = (task, theorem, restarts=16, seed=0))]
fn verify_py<'py>(
    py: Python<'py>,
    task: &PyTask,
    theorem: u8,
    restarts: usize,
    seed: u64,
) -> PyResult<Bound<'py, PyAny>> {
    let th = Theorem::from_number(theorem).map_err(py_err)?;
    let cfg = VerifyConfig {
        restarts,
        seed,
        ..VerifyConfig::default()
    };
    cfg.validate().map_err(py_err)?;
    let t = &task.inner;
    th.outside(t).map_err(py_err)?;
    limit::check_budget(t, cfg.budget).map_err(py_err)?;
    let report = interruptible(py, |stop| {
        let cfg = VerifyConfig {
            stop: Some(stop),
            ..cfg
        };
        verify::verify_theorem(th, t, &cfg, |_| {})
    })?;
    to_py(py, &Versioned::new(&report))
}

/// Every collapse measure of `(W, U)` plus `within_concept_spread`, as a dict.
#[pyfunction]
fn collapse_metrics<'py>(
    py: Python<'py>,
    task: &PyTask,
    w: PyReadonlyArrayDyn<'py, f64>,
    u: PyReadonlyArrayDyn<'py, f64>,
) -> PyResult<Bound<'py, PyAny>> {
    let t = &task.inner;
    let p = params(t, &w, &u)?;
    let (m, spread) = py.detach(|| {
        (
            metrics::collapse_metrics(t, &p),
            metrics::within_concept_spread(t, &p),
        )
    });
    let d = to_py(py, &m)?;
    d.set_item("within_concept_spread", spread)?;
    Ok(d)
}

/// Everything `fcollapse analyze --json` reports, as a dict.
#[pyfunction]
#[pyo3(name = "analyze", signature = (task, w, u, budget=limit::DEFAULT_WORK_BUDGET, samples=20_000, seed=0))]
fn analyze_py<'py>(
    py: Python<'py>,
    task: &PyTask,
    w: PyReadonlyArrayDyn<'py, f64>,
    u: PyReadonlyArrayDyn<'py, f64>,
    budget: f64,
    samples: usize,
    seed: u64,
) -> PyResult<Bound<'py, PyAny>> {
    let t = &task.inner;
    let p = params(t, &w, &u)?;
    let cfg = AnalyzeConfig {
        budget,
        samples,
        seed,
    };
    let a = py
        .detach(|| analyze::analyze(t, &p, &cfg))
        .map_err(py_err)?;
    to_py(py, &Versioned::new(&a))
}

/// NC1–NC4 (`metrics::nc_metrics`) as a dict: `tokens` (token representations by
/// concept) and `classes` (sentence features by class, classifier `U`).
#[pyfunction]
#[pyo3(signature = (task, w, u, samples=20_000, seed=0))]
fn nc_metrics<'py>(
    py: Python<'py>,
    task: &PyTask,
    w: PyReadonlyArrayDyn<'py, f64>,
    u: PyReadonlyArrayDyn<'py, f64>,
    samples: usize,
    seed: u64,
) -> PyResult<Bound<'py, PyAny>> {
    let t = &task.inner;
    let p = params(t, &w, &u)?;
    if samples == 0 {
        return Err(py_err(Error::invalid("samples", 0, "must be >= 1")));
    }
    let nc = py.detach(|| metrics::nc_metrics(t, &p, samples, seed));
    to_py(py, &nc)
}

/// The Hessian spectrum of the exact limit risk at `(W, U)` as `fcollapse analyze
/// --hessian --json` reports it under `hessian`.
#[pyfunction]
#[pyo3(signature = (task, w, u, top_k=5, hutchinson_probes=100, slq_probes=10, slq_steps=60,
    slq_sigma=0.01, seed=0, budget=limit::DEFAULT_WORK_BUDGET))]
#[allow(clippy::too_many_arguments)]
fn hessian_spectrum<'py>(
    py: Python<'py>,
    task: &PyTask,
    w: PyReadonlyArrayDyn<'py, f64>,
    u: PyReadonlyArrayDyn<'py, f64>,
    top_k: usize,
    hutchinson_probes: usize,
    slq_probes: usize,
    slq_steps: usize,
    slq_sigma: f64,
    seed: u64,
    budget: f64,
) -> PyResult<Bound<'py, PyAny>> {
    let t = &task.inner;
    let p = params(t, &w, &u)?;
    let cfg = spectrum::SpectrumConfig {
        top_k,
        hutchinson_probes,
        slq_probes,
        slq_steps,
        slq_sigma,
        seed,
        ..Default::default()
    };
    let s = py
        .detach(|| spectrum::hessian_spectrum(t, &p, &cfg, budget))
        .map_err(py_err)?;
    to_py(py, &s)
}

/// SGD as `fcollapse train` (no files): returns `(W, U, summary)`; with
/// `norm = "layer-affine"` the summary holds the trained `gain` and `bias`.
#[pyfunction]
#[pyo3(signature = (task, **protocol))]
fn train<'py>(
    py: Python<'py>,
    task: &PyTask,
    protocol: Option<&Bound<'py, PyDict>>,
) -> PyResult<Bound<'py, PyTuple>> {
    let t = &task.inner;
    let mut cfg = TrainConfig {
        seed: t.seed(),
        threads: 0,
        ..TrainConfig::default()
    };
    if let Some(kw) = protocol {
        for (key, value) in kw.iter() {
            let key: String = key.extract()?;
            match key.as_str() {
                "n_spl" => cfg.n_spl = value.extract()?,
                "n_test" => cfg.n_test = value.extract()?,
                "epochs" => cfg.epochs = value.extract()?,
                "lr" => cfg.lr = value.extract()?,
                "batch" => cfg.batch = value.extract()?,
                "seed" => cfg.seed = value.extract()?,
                "threads" => cfg.threads = value.extract()?,
                other => {
                    return Err(PyValueError::new_err(format!(
                        "unknown protocol key `{other}`: expected n_spl, n_test, epochs, lr, batch, seed or threads"
                    )))
                }
            }
        }
    }
    cfg.eval_every = 0;
    cfg.checkpoint_every = 0;
    let (p, summary) = interruptible(py, |stop| {
        let mut tr = Trainer::new(t, &cfg)?;
        let mut losses = Vec::new();
        let outcome = tr
            .session()
            .add_observer(Losses(&mut losses), ObserverMode::Always)
            .stop_on(stop)
            .run()?;
        let s = match outcome {
            Outcome::Completed(s) => s,
            Outcome::Interrupted => return Err(Error::Stopped),
            // as `fcollapse train`: a divergence is an error, never NaN weights
            Outcome::Diverged(d) => {
                return Err(Error::Diverged {
                    epoch: d.epoch,
                    step: d.step,
                    lr: d.lr,
                })
            }
        };
        let p = tr.params_f64();
        let mut summary = serde_json::json!({
            "version": crate::VERSION,
            "epochs": s.epochs,
            "losses": losses,
            "train_accuracy": s.last.train_accuracy,
            "test_accuracy": s.last.test_accuracy,
            "train_secs": s.train_secs,
            "config": cfg,
        });
        if !p.gain.is_empty() {
            // layer-affine: the trained gamma and beta.
            summary["gain"] = serde_json::json!(p.gain);
            summary["bias"] = serde_json::json!(p.bias);
        }
        Ok((p, summary))
    })?;
    let w = PyArray1::from_vec(py, p.w).reshape([t.n_w(), t.dim()])?;
    let u = PyArray1::from_vec(py, p.u).reshape([t.k(), t.len() * t.dim()])?;
    let s = to_py(py, &summary)?;
    PyTuple::new(py, [w.into_any(), u.into_any(), s])
}

/// Collects the mean loss of every epoch.
struct Losses<'a>(&'a mut Vec<f64>);

impl Observe for Losses<'_> {
    fn observe_epoch(&mut self, _t: &Trainer, loss: f64) -> crate::Result<()> {
        self.0.push(loss);
        Ok(())
    }
}

/// The extension module (`feature_collapse._native`).
#[pymodule]
#[pyo3(name = "_native")]
fn native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyTask>()?;
    m.add_function(wrap_pyfunction!(limit_risk, m)?)?;
    m.add_function(wrap_pyfunction!(limit_risk_grad, m)?)?;
    m.add_function(wrap_pyfunction!(predict, m)?)?;
    m.add_function(wrap_pyfunction!(verify_py, m)?)?;
    m.add_function(wrap_pyfunction!(collapse_metrics, m)?)?;
    m.add_function(wrap_pyfunction!(analyze_py, m)?)?;
    m.add_function(wrap_pyfunction!(nc_metrics, m)?)?;
    m.add_function(wrap_pyfunction!(hessian_spectrum, m)?)?;
    m.add_function(wrap_pyfunction!(train, m)?)?;
    m.add_function(wrap_pyfunction!(certify::certify, m)?)?;
    m.add("HAS_CERTIFY", certify::AVAILABLE)?;
    m.add("__version__", crate::VERSION)?;
    Ok(())
}
