//! `fcollapse atlas` under concurrent and hostile use on the real binary: a
//! report while a run writes, two runs into one directory, an unreadable or
//! foreign spec, grids too large to expand, and the exit code of a run.

mod common;

use feature_collapse::atlas;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_fcollapse"))
}

fn scratch(name: &str) -> PathBuf {
    common::scratch("fcollapse-safety", name)
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn run(spec: &Path, out: &Path) -> Output {
    bin()
        .args(["atlas", "run"])
        .arg(spec)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap()
}

/// Twelve instances of about a tenth of a second each.
const MEDIUM: &str = r#"
[[grid]]
n_c = 3
s_c = 2
len = 3
dim = [3, 4]
freq = ["uniform", "zipf"]
lambda_ratio = [0.2, 0.4, 0.7]
restarts = 3
"#;

/// Every line of every results file of `dir`, counted by id.
fn line_counts(dir: &Path) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for f in atlas::result_files(dir).unwrap() {
        for l in std::fs::read_to_string(f).unwrap().lines() {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            *m.entry(v["id"].as_str().unwrap().to_string()).or_default() += 1;
        }
    }
    m
}

#[test]
fn a_report_during_a_run_loses_no_line() {
    let base = scratch("report-during-run");
    let spec = write(&base, "s.toml", MEDIUM);
    let n = atlas::load(&spec).unwrap().0.instances.len();
    let out = base.join("out");
    let mut child = bin()
        .args(["atlas", "run"])
        .arg(&spec)
        .arg("--out")
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while line_counts(&out).is_empty() && child.try_wait().unwrap().is_none() {
        assert!(started.elapsed() < Duration::from_secs(300));
        std::thread::sleep(Duration::from_millis(10));
    }
    // reports while the run appends
    for _ in 0..3 {
        let o = bin().args(["atlas", "report"]).arg(&out).output().unwrap();
        assert_eq!(
            o.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let status = child.wait().unwrap();
    assert!(matches!(status.code(), Some(0 | 4)), "{status:?}");
    let counts = line_counts(&out);
    assert_eq!(counts.len(), n, "every instance has its line");
    let o = bin().args(["atlas", "report"]).arg(&out).output().unwrap();
    assert_eq!(o.status.code(), Some(0));
    let merged = std::fs::read_to_string(out.join("results.jsonl")).unwrap();
    assert_eq!(merged.lines().count(), n);
}

#[test]
fn two_runs_into_one_directory_never_mix_or_repeat() {
    let base = scratch("two-runs");
    let a = write(&base, "a.toml", MEDIUM);
    let b = write(
        &base,
        "b.toml",
        &MEDIUM.replace("restarts = 3", "restarts = 2"),
    );
    let n = atlas::load(&a).unwrap().0.instances.len();
    // different specs at once: one runs, the other is refused
    let out = base.join("mixed");
    let (ra, rb) = std::thread::scope(|s| {
        let ha = s.spawn(|| run(&a, &out));
        let hb = s.spawn(|| run(&b, &out));
        (ha.join().unwrap(), hb.join().unwrap())
    });
    let codes = [ra.status.code(), rb.status.code()];
    let refused = codes.iter().filter(|c| **c == Some(2)).count();
    assert_eq!(refused, 1, "{codes:?}");
    let counts = line_counts(&out);
    assert_eq!(counts.len(), n);
    assert!(counts.values().all(|c| *c == 1), "{counts:?}");
    // the same spec twice at once: every instance is computed once
    let out = base.join("same");
    let (r1, r2) = std::thread::scope(|s| {
        let h1 = s.spawn(|| run(&a, &out));
        let h2 = s.spawn(|| run(&a, &out));
        (h1.join().unwrap(), h2.join().unwrap())
    });
    for r in [&r1, &r2] {
        assert!(matches!(r.status.code(), Some(0 | 4)), "{r:?}");
    }
    let counts = line_counts(&out);
    assert_eq!(counts.len(), n);
    assert!(counts.values().all(|c| *c == 1), "{counts:?}");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&r1.stdout),
        String::from_utf8_lossy(&r2.stdout)
    );
    assert!(
        said.contains(&format!("0 run now, {n} already done")),
        "{said}"
    );
}

#[test]
fn unreadable_or_foreign_specs_are_refused() {
    let base = scratch("foreign");
    let a = write(&base, "a.toml", MEDIUM);
    // an unreadable spec.toml (here a folder) is refused, not overwritten
    let out = base.join("unreadable");
    std::fs::create_dir_all(out.join("spec.toml")).unwrap();
    let o = run(&a, &out);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("spec.toml cannot be read"), "{err}");
    assert!(out.join("spec.toml").is_dir());
    // a shard of another spec copied in: report refuses it
    let small = MEDIUM.replace("dim = [3, 4]", "dim = 3");
    let b = write(
        &base,
        "b.toml",
        &small.replace("restarts = 3", "restarts = 1"),
    );
    let ours = base.join("ours");
    let theirs = base.join("theirs");
    assert!(matches!(
        run(&write(&base, "c.toml", &small), &ours).status.code(),
        Some(0 | 4)
    ));
    assert!(matches!(run(&b, &theirs).status.code(), Some(0 | 4)));
    std::fs::copy(
        theirs.join("results.jsonl"),
        ours.join("results.shard-1-of-9.jsonl"),
    )
    .unwrap();
    let o = bin().args(["atlas", "report"]).arg(&ours).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("not an instance of its spec.toml"), "{err}");
}

#[test]
fn huge_grids_and_restarts_exit_2_naming_the_keys_and_write_nothing() {
    let base = scratch("huge");
    for (text, keys) in [
        (
            "[[grid]]\nn_c = 2\ns_c = 2\nlen = 2\ndim = 2\nrestarts = { from = 1, to = 100000 }\nseed = { from = 0, to = 99999 }\n",
            vec!["grid[0].restarts", "grid[0].seed"],
        ),
        (
            "[[grid]]\nn_c = 2\ns_c = 2\nlen = 2\ndim = 2\nrestarts = 100000000000000\n",
            vec!["grid[0].restarts"],
        ),
    ] {
        let spec = write(&base, "s.toml", text);
        let out = base.join("out");
        let started = Instant::now();
        let o = run(&spec, &out);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(started.elapsed() < Duration::from_secs(60));
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        for k in keys {
            assert!(err.contains(k), "{k} in {err}");
        }
        assert!(!out.exists());
    }
}
