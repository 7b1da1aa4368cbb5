//! Helpers shared by the integration tests that run the real binary (each test file
//! that needs them says `mod common;`; not every file uses every helper).
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};

/// Runs `fcollapse ARGS` (the binary built for these tests) to completion.
pub fn fcollapse(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fcollapse"))
        .args(args)
        .output()
        .expect("run fcollapse")
}

/// An empty scratch folder `TMP/TAG-PID-NAME`, created afresh (unique per test
/// process, so parallel test binaries never share one).
pub fn scratch(tag: &str, name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("{tag}-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Asserts that the run exited with 0, showing its stderr otherwise.
pub fn assert_success(o: &Output) {
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A Python interpreter that can `import MODULE`, if any: `$FCOLLAPSE_PYTHON`, else
/// `python3` on the `PATH`.
pub fn python_with(module: &str) -> Option<String> {
    let mut candidates = Vec::new();
    if let Ok(p) = std::env::var("FCOLLAPSE_PYTHON") {
        candidates.push(p);
    }
    candidates.push("python3".into());
    candidates.into_iter().find(|py| {
        Command::new(py)
            .args(["-c", &format!("import {module}")])
            .output()
            .is_ok_and(|o| o.status.success())
    })
}
