//! The crate's single error type.

use std::path::PathBuf;

/// Everything that can go wrong in `feature-collapse`.
///
/// Input errors (`InvalidParam`, `OverBudget`) map to exit code 2 in the CLI,
/// run-time failures (`Io`, `Json`, `Optimiser`, `Plot`, `Diverged`) to exit code 3
/// (`train` reports a divergence itself, with exit code 1), a stop request
/// (`Interrupted`, `Stopped`) to exit code 130.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration value outside its allowed range.
    #[error("invalid parameter `{name}` = {value}: {reason}")]
    InvalidParam {
        name: &'static str,
        value: String,
        reason: String,
    },
    /// An exact enumeration whose work would exceed the stated budget.
    #[error("{what} needs about {work:.3e} operations, over the budget of {budget:.3e}; use smaller n_c, s_c, L or K (or raise --budget)")]
    OverBudget {
        what: String,
        work: f64,
        budget: f64,
    },
    /// The optimiser itself failed (not: did not converge, which is a verdict).
    #[error("optimiser failed: {0}")]
    Optimiser(String),
    /// File-system error, with the path involved.
    #[error("I/O error on {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// JSON (de)serialisation error (its cause is printed by [`Error::report`]).
    #[error("JSON error")]
    Json(#[from] serde_json::Error),
    /// Drawing a figure failed.
    #[error("plot error: {0}")]
    Plot(String),
    /// SGD produced a non-finite loss (the learning rate is too large).
    #[error("training diverged (non-finite loss) at epoch {epoch}, step {step}; lr = {} is too large, try a smaller lr", crate::task::short(*lr))]
    Diverged { epoch: usize, step: usize, lr: f64 },
    /// A run was interrupted (Ctrl-C) after writing a checkpoint.
    #[error("interrupted; checkpoint written to {}", path.display())]
    Interrupted { path: PathBuf },
    /// A computation without a checkpoint stopped on request (a raised
    /// [`StopFlag`](crate::stop::StopFlag), e.g. Ctrl-C in Python) before it finished.
    #[error("stopped on request before the end")]
    Stopped,
}

impl Error {
    /// Shorthand for [`Error::InvalidParam`].
    /// A number that prints longer than 16 characters (`1e-300` prints as 300
    /// digits) is shown in scientific notation.
    pub fn invalid(name: &'static str, value: impl ToString, reason: impl ToString) -> Self {
        let mut value = value.to_string();
        if value.len() > 16 {
            if let Ok(v) = value.parse::<f64>() {
                value = format!("{v:e}");
            }
        }
        Error::InvalidParam {
            name,
            value,
            reason: reason.to_string(),
        }
    }

    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// An error reading the input file `path` given as parameter `name`: a file
    /// that does not exist (or is a directory) is bad input naming the
    /// parameter; any other failure stays an I/O error.
    pub fn input_file(name: &'static str, path: &std::path::Path, source: std::io::Error) -> Self {
        match source.kind() {
            std::io::ErrorKind::NotFound => Error::invalid(name, path.display(), "no such file"),
            std::io::ErrorKind::IsADirectory => {
                Error::invalid(name, path.display(), "is a directory, not a file")
            }
            _ => Error::io(path, source),
        }
    }

    /// The message with its whole chain of causes, `msg: cause: cause ...` (what the CLI prints).
    /// (No variant repeats its source's text in its own message, so each cause
    /// appears once.)
    pub fn report(&self) -> String {
        let mut msg = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(s) = source {
            msg.push_str(&format!(": {s}"));
            source = s.source();
        }
        msg
    }

    /// True for errors in what the caller asked (a parameter out of range, an
    /// instance over budget), as opposed to failures while running. The CLI
    /// turns this into its exit code (`cli::exit_code`); Python into `ValueError`.
    pub fn is_bad_input(&self) -> bool {
        matches!(self, Error::InvalidParam { .. } | Error::OverBudget { .. })
    }
}

/// Result alias used across the crate.
pub type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_prints_each_cause_once() {
        let json = serde_json::from_str::<u32>("null").unwrap_err();
        let cause = json.to_string();
        let msg = Error::from(json).report();
        assert_eq!(msg.matches(&cause).count(), 1, "{msg}");
        assert!(msg.starts_with("JSON error: "), "{msg}");
        let io = Error::io(
            "some/file",
            std::io::Error::new(std::io::ErrorKind::NotFound, "gone"),
        );
        assert_eq!(io.report(), "I/O error on some/file: gone");
    }

    #[test]
    fn a_missing_input_file_is_bad_input() {
        let path = std::path::Path::new("no/such/spec.toml");
        let gone = Error::input_file(
            "spec",
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "gone"),
        );
        assert!(gone.is_bad_input());
        assert_eq!(
            gone.report(),
            "invalid parameter `spec` = no/such/spec.toml: no such file"
        );
        let denied = Error::input_file(
            "spec",
            path,
            std::io::Error::new(std::io::ErrorKind::PermissionDenied, "denied"),
        );
        assert!(!denied.is_bad_input());
    }

    #[test]
    fn long_numbers_are_shortened() {
        let v: f64 = format!("0.{}1", "0".repeat(299)).parse().unwrap();
        match Error::invalid("lambda", v, "x") {
            Error::InvalidParam { value, .. } => assert_eq!(value, "1e-300"),
            other => panic!("{other:?}"),
        }
        match Error::invalid("n", 12, "x") {
            Error::InvalidParam { value, .. } => assert_eq!(value, "12"),
            other => panic!("{other:?}"),
        }
    }
}
