//! `fcollapse`: thin entry point; all logic lives in the library (`feature_collapse::cli`).

use std::process::ExitCode;

fn main() -> ExitCode {
    restore_sigpipe();
    match feature_collapse::cli::run() {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            eprintln!("error: {}", e.report());
            ExitCode::from(feature_collapse::cli::exit_code(&e))
        }
    }
}

/// Rust ignores SIGPIPE, so `println!` into a closed pipe (`fcollapse ... | head`)
/// panics; like other command-line tools, end quietly instead.
fn restore_sigpipe() {
    #[cfg(unix)]
    // SAFETY: called first thing in `main`, before any thread exists; resetting a
    // signal's disposition to its default has no other effect on this process.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
