//! Ctrl-C handling: while a training with an output directory runs, the first Ctrl-C
//! sets a flag that the training loop checks after every step (it then writes a
//! checkpoint and returns `Error::Interrupted`); a second Ctrl-C, or one arriving when
//! no such training runs, exits at once with code 130. The handler is installed once
//! per process; if the process already has one, `ctrlc` refuses and Ctrl-C keeps its
//! previous behaviour (use `Trainer::set_stop_flag` then).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::OnceLock;

/// Set by the Ctrl-C handler while a training with an output directory runs.
static CTRL_C: AtomicBool = AtomicBool::new(false);
/// Number of running trainings that handle Ctrl-C themselves.
static ARMED: AtomicUsize = AtomicUsize::new(0);
static HANDLER: OnceLock<bool> = OnceLock::new();

/// The process-wide stop flag set by Ctrl-C.
pub(super) fn ctrl_c_flag() -> &'static AtomicBool {
    &CTRL_C
}

/// While alive, Ctrl-C requests a checkpointed stop instead of killing the process.
pub(super) struct CtrlCGuard;

impl CtrlCGuard {
    pub(super) fn arm() -> Self {
        HANDLER.get_or_init(|| {
            ctrlc::set_handler(|| {
                if ARMED.load(Ordering::SeqCst) == 0 || CTRL_C.swap(true, Ordering::SeqCst) {
                    // Nobody to checkpoint, or a second Ctrl-C: leave now.
                    std::process::exit(130);
                }
            })
            .is_ok()
        });
        if ARMED.fetch_add(1, Ordering::SeqCst) == 0 {
            CTRL_C.store(false, Ordering::SeqCst);
        }
        CtrlCGuard
    }
}

impl Drop for CtrlCGuard {
    fn drop(&mut self) {
        if ARMED.fetch_sub(1, Ordering::SeqCst) == 1 {
            CTRL_C.store(false, Ordering::SeqCst);
        }
    }
}
