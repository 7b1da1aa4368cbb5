//! Ctrl-C (SIGINT) for the long-running subcommands, an explicit opt-in: a training
//! loop watching the returned [`StopFlag`] stops after its current step and writes a
//! checkpoint. `timeout -s INT` and a terminal may deliver the signal twice, so a
//! second one only repeats that the checkpoint is being written; a third exits at once
//! with code 130 (the last checkpoint on disk stays valid: checkpoints are replaced
//! atomically). A signal that arrives while no loop watches the flag exits at once.

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

fn on_signal(flag: &StopFlag) {
    let n = flag.request();
    if !flag.is_watched() {
        eprintln!("interrupted");
        std::process::exit(130);
    }
    match n {
        1 => eprintln!("interrupt: stopping after the current step and writing a checkpoint"),
        2 => eprintln!(
            "interrupt again: still writing the checkpoint (a third Ctrl-C quits at once)"
        ),
        _ => {
            eprintln!("interrupted at once; the last checkpoint written stays valid");
            std::process::exit(130);
        }
    }
}
