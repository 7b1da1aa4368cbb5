//! The robustness of `fcollapse train` and `reproduce` on the real binary: divergence,
//! non-UTF-8 paths, resume conflicts, corrupted checkpoints, torn logs, repeated
//! SIGINT, refusing to overwrite a run, bad `--out` / `--report`. Tiny shapes only.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_fcollapse");

fn fcollapse<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("run fcollapse")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("fc-cli-train-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A tiny task: 3 concepts of 5 tokens, L = 4, d = 8, K = 12 classes, 10 sentences
/// per class, batch 10 (12 steps per epoch).
const TINY: [&str; 14] = [
    "--nc",
    "3",
    "--sc",
    "5",
    "--len",
    "4",
    "--dim",
    "8",
    "--classes",
    "12",
    "--nspl",
    "10",
    "--batch",
    "10",
];

fn train_args(out: &Path, extra: &[&str]) -> Vec<OsString> {
    let mut a: Vec<OsString> = vec!["train".into(), "--quiet".into()];
    a.extend(TINY.iter().map(OsString::from));
    a.extend(extra.iter().map(OsString::from));
    a.push("--out".into());
    a.push(out.as_os_str().to_owned());
    a
}

fn ok(o: &Output) {
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(o));
}

/// Exit code `code` and a one-line `error: ` message on stderr; returns the message.
fn fails(o: &Output, code: i32) -> String {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(code), "stderr: {err}");
    assert!(err.starts_with("error: "), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    err
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The JSON header of a checkpoint (layout: magic, u64 length, header, ...).
fn checkpoint_header(path: &Path) -> serde_json::Value {
    let b = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(b[8..16].try_into().unwrap()) as usize;
    serde_json::from_slice(&b[16..16 + n]).unwrap()
}

/// Every line of the log parses, with a finite loss; returns the epochs.
fn log_epochs(dir: &Path) -> Vec<u64> {
    std::fs::read_to_string(dir.join("log.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("bad log line {l:?}: {e}"));
            assert!(v["loss"].as_f64().unwrap().is_finite(), "{l}");
            v["epoch"].as_u64().unwrap()
        })
        .collect()
}

#[test]
fn divergence_stops_keeps_the_last_finite_checkpoint_and_exits_1() {
    let d = scratch("diverge");
    let run = d.join("run");
    // an earlier, finished run leaves a summary and weights behind
    ok(&fcollapse(&train_args(&run, &["--epochs", "2"])));
    assert!(run.join("summary.json").exists() && run.join("W.npy").exists());
    let o = fcollapse(&train_args(
        &run,
        &[
            "--force",
            "--epochs",
            "50",
            "--lr",
            "60",
            "--checkpoint-every",
            "1",
            "--eval-every",
            "1",
            "--json",
        ],
    ));
    let err = fails(&o, 1);
    assert!(
        err.contains("diverged") && err.contains("smaller --lr"),
        "{err}"
    );
    let s = json(&run.join("summary.json"));
    assert_eq!(s["diverged"], true);
    let (epoch, step) = (s["epoch"].as_u64().unwrap(), s["step"].as_u64().unwrap());
    assert!(epoch >= 2 && (1..=12).contains(&step), "{s}");
    assert!(
        err.contains(&format!("epoch {epoch}, step {step} of 12")),
        "{err}"
    );
    // the same summary on stdout with --json
    let printed: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(printed["epoch"], s["epoch"]);
    // no NaN weights beside it, no stale ones either
    assert!(!run.join("W.npy").exists() && !run.join("U.npy").exists());
    // the kept checkpoint is the last finite one: epoch - 1 (checkpoint every epoch)
    let kept = s["checkpoint_epoch"].as_u64().unwrap();
    assert_eq!(kept, epoch - 1);
    assert_eq!(
        checkpoint_header(&run.join("checkpoint.bin"))["epoch"],
        kept
    );
    // every log line reads back
    assert_eq!(log_epochs(&run), (1..epoch).collect::<Vec<_>>());
    // and the checkpoint holds finite weights: finishing the run at that epoch gives
    // finite metrics
    let o = fcollapse(&[
        OsString::from("train"),
        "--resume".into(),
        run.clone().into_os_string(),
        "--epochs".into(),
        kept.to_string().into(),
        "--json".into(),
    ]);
    ok(&o);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["word_norm_mean"].as_f64().unwrap().is_finite(), "{v}");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn non_utf8_out_is_written_without_panic() {
    use std::os::unix::ffi::OsStrExt;
    let d = scratch("utf8");
    let run = d.join(std::ffi::OsStr::from_bytes(b"run-\xff"));
    let o = fcollapse(&train_args(&run, &["--epochs", "2", "--json", "--plots"]));
    ok(&o);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        v["out_dir"].as_str().unwrap().ends_with("run-\u{fffd}"),
        "{v}"
    );
    assert_eq!(json(&run.join("summary.json"))["epochs"], 2);
    assert!(run.join("fig_accuracy.png").exists());
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn resume_refuses_conflicting_flags_and_keeps_the_name() {
    let d = scratch("conflicts");
    let run = d.join("run");
    ok(&fcollapse(&train_args(
        &run,
        &[
            "--preset", "fig4c", "--epochs", "3", "--lr", "0.25", "--seed", "4",
        ],
    )));
    let resume = |extra: &[&str]| {
        let mut a: Vec<OsString> = vec!["train".into(), "--resume".into(), run.clone().into()];
        a.extend(extra.iter().map(OsString::from));
        fcollapse(&a)
    };
    for (flags, name, theirs) in [
        (&["--lr", "0.5"][..], "lr", "lr = 0.25"),
        (&["--lr", "nan"][..], "lr", "lr = 0.25"),
        (&["--classes", "7"][..], "classes", "classes = 12"),
        (&["--nc", "4"][..], "nc", "nc = 3"),
        (&["--seed", "5"][..], "seed", "seed = 4"),
        (&["--batch", "3"][..], "batch", "batch = 10"),
        (&["--preset", "fig3"][..], "preset", "run `fig4c`"),
        (&["--freq", "uniform"][..], "freq", "freq = zipf"),
        (&["--epochs", "2"][..], "epochs", "already done 3 epochs"),
    ] {
        let err = fails(&resume(flags), 2);
        assert!(
            err.contains(&format!("`{name}`")) && err.contains(theirs),
            "{flags:?}: {err}"
        );
    }
    // the documented changeable flags pass, and so does a flag equal to the checkpoint's
    let o = resume(&[
        "--epochs",
        "4",
        "--threads",
        "1",
        "--checkpoint-every",
        "1",
        "--quiet",
        "--lr",
        "0.25",
        "--preset",
        "fig4c",
        "--json",
    ]);
    ok(&o);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["name"], "fig4c");
    assert_eq!(v["epochs"], 4);
    assert_eq!(json(&run.join("summary.json"))["name"], "fig4c");
    assert_eq!(log_epochs(&run), [1, 3, 4]); // fig4c evaluates every 10 epochs and at the end
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn corrupted_checkpoints_are_refused_naming_the_file() {
    let d = scratch("corrupt");
    let run = d.join("run");
    ok(&fcollapse(&train_args(
        &run,
        &["--epochs", "2", "--lr", "0.25"],
    )));
    let path = run.join("checkpoint.bin");
    let good = std::fs::read(&path).unwrap();
    let n = u64::from_le_bytes(good[8..16].try_into().unwrap()) as usize;
    let header = String::from_utf8(good[16..16 + n].to_vec()).unwrap();
    // one changed bit in the header's lr, epoch, z (seed) and in the payload
    let at = |key: &str| 16 + header.find(key).unwrap() + key.len();
    for pos in [
        at("\"lr\":0."),
        at("\"epoch\":"),
        at("\"seed\":"),
        good.len() - 100,
    ] {
        let mut bad = good.clone();
        bad[pos] ^= 1;
        std::fs::write(&path, &bad).unwrap();
        let o = fcollapse(&[
            OsString::from("train"),
            "--resume".into(),
            run.clone().into_os_string(),
        ]);
        let err = fails(&o, 3);
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(err.contains("checksum"), "{err}");
    }
    std::fs::write(&path, &good).unwrap();
    ok(&fcollapse(&[
        OsString::from("train"),
        "--resume".into(),
        run.clone().into_os_string(),
        "--epochs".into(),
        "3".into(),
    ]));
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn a_torn_last_log_line_is_cut_on_resume() {
    let d = scratch("torn");
    let run = d.join("run");
    ok(&fcollapse(&train_args(
        &run,
        &["--epochs", "2", "--eval-every", "1"],
    )));
    let log = run.join("log.jsonl");
    let mut text = std::fs::read_to_string(&log).unwrap();
    text.push_str("{\"epoch\":3,\"loss\":0.12");
    std::fs::write(&log, &text).unwrap();
    let resume = |epochs: &str| {
        fcollapse(&[
            OsString::from("train"),
            "--resume".into(),
            run.clone().into_os_string(),
            "--epochs".into(),
            epochs.into(),
            "--quiet".into(),
        ])
    };
    ok(&resume("3"));
    assert_eq!(log_epochs(&run), [1, 2, 3]);
    // a broken line that is not the last: the error names the file and the line
    let text = std::fs::read_to_string(&log).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines[1] = "{\"epoch\":2,";
    std::fs::write(&log, lines.join("\n") + "\n").unwrap();
    let err = fails(&resume("4"), 3);
    assert!(
        err.contains(&log.display().to_string()) && err.contains("line 2"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&d);
}

/// Kills the child if the test fails before it exits.
struct Reap(std::process::Child);
impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_second_sigint_still_leaves_a_valid_checkpoint() {
    let d = scratch("sigint");
    let run = d.join("run");
    // the paper's shape (K = 1000, L = 15, d = 100) with 2 sentences per class: steps
    // of tens of milliseconds, so the second signal lands while the first is handled
    let args: Vec<OsString> = [
        "train",
        "--quiet",
        "--preset",
        "fig3",
        "--nspl",
        "2",
        "--epochs",
        "1000000",
        "--eval-every",
        "100000",
        "--checkpoint-every",
        "0",
        "--out",
    ]
    .iter()
    .map(OsString::from)
    .chain([run.clone().into_os_string()])
    .collect();
    let child = Command::new(BIN)
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = Reap(child);
    let t0 = Instant::now();
    while !run.join("log.jsonl").exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "no first evaluation"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // two signals 20 ms apart, as `timeout -s INT` sends them (to the child, then
    // to its group)
    let pid = child.0.id().to_string();
    let k = Command::new("sh")
        .args([
            "-c",
            &format!("kill -INT {pid}; sleep 0.02; kill -INT {pid}"),
        ])
        .status()
        .unwrap();
    assert!(k.success());
    let out = child.0.wait_with_output_ref();
    assert_eq!(out.0.code(), Some(130), "{}", out.1);
    assert!(out.1.contains("checkpoint written to"), "{}", out.1);
    let h = checkpoint_header(&run.join("checkpoint.bin"));
    let epoch = h["epoch"].as_u64().unwrap();
    if h["step_in_epoch"].as_u64().unwrap() > 0 {
        // stopped inside epoch + 1: that epoch must be finished, not cut
        let o = fcollapse(&[
            OsString::from("train"),
            "--resume".into(),
            run.clone().into_os_string(),
            "--epochs".into(),
            epoch.to_string().into(),
        ]);
        let err = fails(&o, 2);
        assert!(err.contains(&format!("of epoch {}", epoch + 1)), "{err}");
    }
    // the checkpoint is valid: the run continues from it to the end of that epoch
    let o = fcollapse(&[
        OsString::from("train"),
        "--resume".into(),
        run.clone().into_os_string(),
        "--epochs".into(),
        (epoch + 1).to_string().into(),
        "--json".into(),
    ]);
    ok(&o);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["epochs"].as_u64(), Some(epoch + 1));
    let _ = std::fs::remove_dir_all(&d);
}

trait WaitRef {
    fn wait_with_output_ref(&mut self) -> (std::process::ExitStatus, String);
}
impl WaitRef for std::process::Child {
    fn wait_with_output_ref(&mut self) -> (std::process::ExitStatus, String) {
        use std::io::Read;
        let mut err = String::new();
        if let Some(mut e) = self.stderr.take() {
            e.read_to_string(&mut err).unwrap();
        }
        (self.wait().unwrap(), err)
    }
}

#[test]
fn a_fresh_run_over_a_run_is_refused_without_force() {
    let d = scratch("force");
    let run = d.join("run");
    ok(&fcollapse(&train_args(&run, &["--epochs", "2"])));
    let before = std::fs::read(run.join("checkpoint.bin")).unwrap();
    let err = fails(&fcollapse(&train_args(&run, &["--epochs", "3"])), 2);
    assert!(
        err.contains("`out`") && err.contains("--resume") && err.contains("--force"),
        "{err}"
    );
    assert!(err.contains("epoch 2 of 2"), "{err}");
    assert_eq!(std::fs::read(run.join("checkpoint.bin")).unwrap(), before);
    ok(&fcollapse(&train_args(&run, &["--epochs", "3", "--force"])));
    assert_eq!(checkpoint_header(&run.join("checkpoint.bin"))["epoch"], 3);
    assert_eq!(log_epochs(&run), [1, 3]);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn bad_out_and_report_name_the_parameter_before_any_work() {
    let d = scratch("paths");
    let file = d.join("a-file");
    std::fs::write(&file, "x").unwrap();
    let err = fails(&fcollapse(&train_args(&file, &["--epochs", "1"])), 2);
    assert!(err.contains("`out`"), "{err}");
    let err = fails(
        &fcollapse(&[
            OsString::from("train"),
            "--resume".into(),
            d.clone().into_os_string(),
        ]),
        2,
    );
    assert!(
        err.contains("`resume`") && err.contains("checkpoint.bin"),
        "{err}"
    );
    let runs = d.join("runs");
    let started = Instant::now();
    let o = fcollapse(&[
        OsString::from("reproduce"),
        "--quick".into(),
        "--quiet".into(),
        "--out".into(),
        runs.clone().into_os_string(),
        "--report".into(),
        file.join("report.md").into_os_string(),
    ]);
    let err = fails(&o, 2);
    assert!(err.contains("`report`"), "{err}");
    assert!(!runs.exists(), "runs started before the report was checked");
    assert!(started.elapsed() < Duration::from_secs(20));
    // a run directory that holds a run (a checkpoint) is refused before any training
    std::fs::create_dir_all(runs.join("fig4b")).unwrap();
    std::fs::write(runs.join("fig4b/checkpoint.bin"), "").unwrap();
    let o = fcollapse(&[
        OsString::from("reproduce"),
        "--quick".into(),
        "--quiet".into(),
        "--out".into(),
        runs.clone().into_os_string(),
        "--report".into(),
        d.join("report.md").into_os_string(),
    ]);
    let err = fails(&o, 2);
    assert!(
        err.contains("`out`") && err.contains("--resume") && err.contains("--force"),
        "{err}"
    );
    assert!(!runs.join("fig3").exists(), "fig3 trained before the check");
    let _ = std::fs::remove_dir_all(&d);
}

/// A run that diverged (or was killed) before its first checkpoint leaves only a
/// log: nothing to resume, so a fresh run with a smaller lr may replace it.
#[test]
fn a_log_without_checkpoint_does_not_block_a_fresh_run() {
    let d = scratch("logonly");
    let out = d.join("run");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("log.jsonl"), "").unwrap();
    ok(&fcollapse(&train_args(&out, &["--epochs", "1"])));
    assert!(out.join("checkpoint.bin").is_file());
    let _ = std::fs::remove_dir_all(&d);
}

/// On resume every log line is checked before training, and records written
/// after the checkpoint (a crash fell back to it) are dropped.
#[test]
fn resume_checks_the_log_first_and_drops_records_past_the_checkpoint() {
    let d = scratch("logcheck");
    let out = d.join("run");
    ok(&fcollapse(&train_args(
        &out,
        &["--epochs", "2", "--eval-every", "1"],
    )));
    let log = std::fs::read_to_string(out.join("log.jsonl")).unwrap();
    let first = log.lines().next().unwrap().to_string();
    // a record from "epoch 9", as if written after the checkpoint before a crash
    let late = first.replacen("\"epoch\":1", "\"epoch\":9", 1);
    assert_ne!(late, first, "{first}");
    std::fs::write(out.join("log.jsonl"), format!("{log}{late}\n")).unwrap();
    let resume = |epochs: &str| {
        fcollapse(&[
            OsString::from("train"),
            "--quiet".into(),
            "--resume".into(),
            out.clone().into_os_string(),
            "--epochs".into(),
            epochs.into(),
        ])
    };
    ok(&resume("3"));
    let log = std::fs::read_to_string(out.join("log.jsonl")).unwrap();
    assert!(!log.contains("\"epoch\":9"), "{log}");
    // a broken line that is not the last one is refused before any training
    let broken = format!("garbage\n{log}");
    std::fs::write(out.join("log.jsonl"), broken).unwrap();
    let started = Instant::now();
    let err = fails(&resume("400"), 3);
    assert!(err.contains("log.jsonl") && err.contains("line 1"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(20));
    let _ = std::fs::remove_dir_all(&d);
}

/// `reproduce --resume` continues only checkpoints of the same setting.
#[test]
fn reproduce_resume_refuses_another_setting() {
    let d = scratch("repro-resume");
    let runs = d.join("runs");
    let report = d.join("rep.md");
    let repro = |extra: &[&str]| {
        let mut a: Vec<OsString> = vec![
            "reproduce".into(),
            "--quick".into(),
            "--quiet".into(),
            "--out".into(),
            runs.clone().into_os_string(),
            "--report".into(),
            report.clone().into_os_string(),
        ];
        a.extend(extra.iter().map(OsString::from));
        fcollapse(&a)
    };
    ok(&repro(&[]));
    ok(&repro(&["--resume"]));
    let err = fails(&repro(&["--resume", "--seed", "7"]), 2);
    assert!(err.contains("`resume`") && err.contains("fig3"), "{err}");
    let _ = std::fs::remove_dir_all(&d);
}

/// `--lambda` with `--lambda-w` on resume compares only the side it sets.
#[test]
fn resume_with_lambda_and_lambda_w_compares_each_side_once() {
    let d = scratch("lambda-sides");
    let out = d.join("run");
    ok(&fcollapse(&train_args(
        &out,
        &["--epochs", "1", "--lambda", "0.01", "--lambda-w", "0.5"],
    )));
    let resume = |lambda: &str| {
        fcollapse(&[
            OsString::from("train"),
            "--quiet".into(),
            "--resume".into(),
            out.clone().into_os_string(),
            "--epochs".into(),
            "2".into(),
            "--lambda".into(),
            lambda.into(),
            "--lambda-w".into(),
            "0.5".into(),
        ])
    };
    let err = fails(&resume("0.02"), 2);
    assert!(err.contains("`lambda`"), "{err}");
    ok(&resume("0.01"));
    let _ = std::fs::remove_dir_all(&d);
}
