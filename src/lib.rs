//! # feature-collapse
//!
//! A numerical verifier for the theory of *Feature Collapse* (Laurent, von Brecht,
//! Bresson, ICLR 2024). One module per idea of the paper:
//!
//! - [`task`]: concepts, tokens, frequencies, latent variables, sentences (docs/theory.md §1);
//! - [`network`]: embedding, LayerNorm, linear classifier, cross entropy (§2);
//! - [`limit`]: the exact large-sample limit risk and its gradient (§2);
//! - [`collapse`]: equiangular frames, type I/II/III configurations, reduced objectives (§3–4);
//! - [`metrics`]: collapse measures for any weights;
//! - [`verify`]: the theorem checks with argmin (§5);
//! - [`empirical`]: the sample risk with per-sentence weights and its gradient (§2);
//! - [`converge`]: finite-sample solutions (ERM, SGD) against the limit minimiser;
//! - [`train`]: finite-sample SGD (§6);
//! - [`experiments`]: the paper's experiments and their report;
//! - [`analyze`]: collapse measures of weights trained anywhere;
//! - [`cli`]: the `fcollapse` command line;
//! - [`spectrum`]: top eigenvalues, trace and spectral density of an operator
//!   known by its products (the Hessian of the limit risk);
//! - [`plots`]: PNG + SVG figures of the experiments;
//! - [`npy`]: NumPy `.npy` / `.npz` reading and `.npy` export of arrays;
//! - [`stop`]: a stop request (Ctrl-C) that long computations check between steps;
//! - [`version`]: the crate version written into every JSON report;
//! - `python` (with `--features python`): the Python module `feature_collapse`.

pub mod analyze;
pub mod atlas;
#[cfg(feature = "certify")]
pub mod certify;
pub mod cli;
pub mod collapse;
pub mod converge;
pub mod display;
pub mod empirical;
pub mod error;
pub mod experiments;
pub mod limit;
pub mod metrics;
pub mod network;
pub mod norm;
pub mod npy;
pub mod plots;
#[cfg(feature = "python")]
pub mod python;
pub mod spectrum;
pub mod stop;
pub mod task;
pub mod train;
pub mod verify;
pub mod version;

pub use error::{Error, Result};
pub use version::{Versioned, VERSION};
