//! Ctrl-C (SIGINT) for the long-running subcommands, an explicit opt-in: a training
//! loop watching the returned [`StopFlag`] stops after its current step and writes a
//! checkpoint. `timeout -s INT` and a terminal may deliver the signal twice, so a
//! second one only repeats that the checkpoint is being written (also when the loop
//! has just returned and the process is exiting); a third exits at once with code 130
//! (the last checkpoint on disk stays valid: checkpoints are replaced atomically). A
//! first signal that arrives while no loop watches the flag exits at once.

use crate::train::StopFlag;
use std::sync::OnceLock;

/// The stop flag raised by Ctrl-C; installs the handler on first use. If the process
/// already has a handler, Ctrl-C keeps its previous behaviour.
pub(super) fn stop_on_ctrl_c() -> StopFlag {
    static FLAG: OnceLock<StopFlag> = OnceLock::new();
    FLAG.get_or_init(|| {
        let flag = StopFlag::new();
        let seen = flag.clone();
        let _ = ctrlc::set_handler(move || on_signal(&seen));
        flag
    })
    .clone()
}

/// What a signal does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    /// Ask the watching loop to stop after its step and write a checkpoint.
    Stop,
    /// A stop is under way (the loop may have just returned): say so, keep going.
    Again,
    /// Exit at once with code 130.
    Exit,
}

/// The action for the `n`-th signal (1-based), `watched` if a loop watches the flag.
fn action(n: usize, watched: bool) -> Action {
    match n {
        1 if watched => Action::Stop,
        1 => Action::Exit, // nothing to checkpoint
        2 => Action::Again,
        _ => Action::Exit,
    }
}

fn on_signal(flag: &StopFlag) {
    match action(flag.request(), flag.is_watched()) {
        Action::Stop => {
            eprintln!("interrupt: stopping after the current step and writing a checkpoint")
        }
        Action::Again => eprintln!(
            "interrupt again: still writing the checkpoint (a third Ctrl-C quits at once)"
        ),
        Action::Exit => {
            eprintln!("interrupted");
            std::process::exit(130);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_third_signal_quits_a_watched_run() {
        // a run being trained: the first two signals leave time for the checkpoint
        assert_eq!(action(1, true), Action::Stop);
        assert_eq!(action(2, true), Action::Again);
        // the loop has returned after the first (checkpoint written, exit under way)
        assert_eq!(action(2, false), Action::Again);
        assert_eq!(action(3, true), Action::Exit);
        // no run to checkpoint: quit at once
        assert_eq!(action(1, false), Action::Exit);
    }
}
