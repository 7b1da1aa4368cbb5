//! `fcollapse`: thin entry point; all logic lives in the library (`feature_collapse::cli`).

use std::process::ExitCode;

fn main() -> ExitCode {
    match feature_collapse::cli::run() {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            let mut msg = format!("error: {e}");
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                msg.push_str(&format!(": {s}"));
                source = s.source();
            }
            eprintln!("{msg}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}
