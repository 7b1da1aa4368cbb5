//! A stop request shared between whoever wants a computation to stop (a signal
//! handler installed by the command line, the Python module on Ctrl-C, a test) and
//! the loops that check it: training after every step, a verification before every
//! random restart and every L-BFGS round. Nothing here touches signals: handling
//! Ctrl-C is an explicit choice of the caller (see `cli` and `python`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

#[derive(Debug, Default)]
struct State {
    /// Number of stop requests so far.
    requests: AtomicUsize,
    /// Number of training loops watching this flag right now.
    watchers: AtomicUsize,
}

/// A cloneable stop request: every clone shares the same state.
#[derive(Debug, Clone, Default)]
pub struct StopFlag(Arc<State>);

impl StopFlag {
    /// A flag with no request.
    pub fn new() -> Self {
        Self::default()
    }

    /// Requests a stop; returns how many requests have been made so far (this one included).
    pub fn request(&self) -> usize {
        self.0.requests.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Whether a stop has been requested.
    pub fn is_requested(&self) -> bool {
        self.0.requests.load(Ordering::SeqCst) > 0
    }

    /// Forgets the requests made so far.
    pub fn clear(&self) {
        self.0.requests.store(0, Ordering::SeqCst);
    }

    /// Whether a training loop is watching the flag now (and will honour a request by
    /// stopping after the current step and writing a checkpoint).
    pub fn is_watched(&self) -> bool {
        self.0.watchers.load(Ordering::SeqCst) > 0
    }

    /// Marks the flag as watched until the guard is dropped.
    pub(crate) fn watch(&self) -> Watch {
        self.0.watchers.fetch_add(1, Ordering::SeqCst);
        Watch(self.clone())
    }
}

/// While alive, [`StopFlag::is_watched`] is true.
pub(crate) struct Watch(StopFlag);

impl Drop for Watch {
    fn drop(&mut self) {
        self.0 .0.watchers.fetch_sub(1, Ordering::SeqCst);
    }
}
