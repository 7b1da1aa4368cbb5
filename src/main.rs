//! `fcollapse`: thin entry point; all logic lives in the library (`feature_collapse::cli`).

use std::process::ExitCode;

fn main() -> ExitCode {
    match feature_collapse::cli::run() {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            eprintln!("error: {}", e.report());
            ExitCode::from(feature_collapse::cli::exit_code(&e))
        }
    }
}
