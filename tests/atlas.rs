//! `fcollapse atlas`: malformed specs, shards against the full run, resume after
//! a kill of the real binary, and the report.

mod common;

use feature_collapse::atlas::{self, ResultLine};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_fcollapse"))
}

/// `atlas run` ended normally: 0 (all confirmed) or 4 (some inconclusive); never 1 (refuted) here.
fn finished(o: &std::process::Output) -> bool {
    matches!(o.status.code(), Some(0 | 4))
}

fn scratch(name: &str) -> PathBuf {
    common::scratch("fcollapse-atlas", name)
}

fn write_spec(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("spec.in.toml");
    std::fs::write(&p, text).unwrap();
    p
}

/// Ten quick instances over the three theorems.
const QUICK: &str = r#"
[[grid]]
name = "quick"
n_c = [2, 3]
s_c = 2
len = 2
dim = 3
freq = ["uniform", "zipf"]
lambda_ratio = [0.3, 0.6]
layer_norm = [false, true]
restarts = 2
"#;

/// Finished results by id: (verdict, best risk bits, theorem).
fn outcomes(dir: &Path) -> BTreeMap<String, (Option<String>, Option<u64>, u8)> {
    atlas::read_results(dir)
        .unwrap()
        .into_iter()
        .map(|r: ResultLine| {
            (
                r.id,
                (
                    r.verdict.map(|v| v.name().to_string()),
                    r.best_risk.map(f64::to_bits),
                    r.instance.theorem,
                ),
            )
        })
        .collect()
}

#[test]
fn malformed_specs_exit_2_naming_the_key_and_write_nothing() {
    let base = scratch("malformed");
    let cases = [
        (
            "[[grid]]\nn_c = 2\ns_c = 2\nlen = 2\ndim = 2\ncolour = 1\n",
            "grid[0].colour",
        ),
        (
            "[[grid]]\nn_c = []\ns_c = 2\nlen = 2\ndim = 2\n",
            "grid[0].n_c",
        ),
        (
            "[[grid]]\nn_c = \"two\"\ns_c = 2\nlen = 2\ndim = 2\n",
            "grid[0].n_c",
        ),
        ("[[grid]]\nn_c = 2\ns_c = 2\nlen = 2\n", "grid[0].dim"),
        (
            "[[grid]]\nn_c = 2\ns_c = { from = 3, to = 1 }\nlen = 2\ndim = 2\n",
            "grid[0].s_c",
        ),
        ("[[grid]]\nn_c = 4\ns_c = 2\nlen = 2\ndim = 1\n", "grid[0]"),
        (
            "[[grid]]\nn_c = 2\ns_c = 2\nlen = 2\ndim = 2\nlayer_norm = 1\n",
            "grid[0].layer_norm",
        ),
        (
            "restarts = 3\n[[grid]]\nn_c = 2\ns_c = 2\nlen = 2\ndim = 2\n",
            "restarts",
        ),
        ("description = \"no grid\"\n", "grid"),
        ("[[grid]\nn_c = 2\n", "TOML"),
    ];
    for (i, (text, key)) in cases.iter().enumerate() {
        let spec = write_spec(&base, text);
        let out = base.join(format!("out{i}"));
        let o = bin()
            .args(["atlas", "run"])
            .arg(&spec)
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{text}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(err.contains(key), "expected `{key}` in: {err}");
        assert!(!out.exists(), "{text}: nothing may be written");
    }
    let o = bin()
        .args(["atlas", "run"])
        .arg(base.join("missing.toml"))
        .arg("--out")
        .arg(base.join("o"))
        .args(["--shard", "3/2"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("shard"));
}

#[test]
fn union_of_the_shards_equals_the_full_run() {
    let base = scratch("shards");
    let spec = write_spec(&base, QUICK);
    let full = base.join("full");
    let o = bin()
        .args(["atlas", "run"])
        .arg(&spec)
        .arg("--out")
        .arg(&full)
        .output()
        .unwrap();
    assert!(finished(&o), "{}", String::from_utf8_lossy(&o.stderr));
    let sharded = base.join("sharded");
    for i in 1..=3 {
        let o = bin()
            .args(["atlas", "run"])
            .arg(&spec)
            .arg("--out")
            .arg(&sharded)
            .args(["--shard", &format!("{i}/3"), "--jobs", "2"])
            .output()
            .unwrap();
        assert!(finished(&o), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(sharded
            .join(format!("results.shard-{i}-of-3.jsonl"))
            .exists());
    }
    let a = outcomes(&full);
    let b = outcomes(&sharded);
    let (parsed, _) = atlas::load(&spec).unwrap();
    assert_eq!(a.len(), parsed.instances.len());
    assert_eq!(a, b);
    // every theorem is present
    for t in 1..=3u8 {
        assert!(a.values().any(|v| v.2 == t), "theorem {t} missing");
    }
    // report merges the shards into results.jsonl and writes the figures
    let o = bin()
        .args(["atlas", "report"])
        .arg(&sharded)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let merged = std::fs::read_to_string(sharded.join("results.jsonl")).unwrap();
    assert_eq!(merged.lines().count(), parsed.instances.len());
    let md = std::fs::read_to_string(sharded.join("atlas.md")).unwrap();
    for f in ["phase-no-layernorm", "phase-layernorm"] {
        assert!(md.contains(&format!("{f}.png")));
        for ext in ["png", "svg"] {
            let meta = std::fs::metadata(sharded.join(format!("{f}.{ext}"))).unwrap();
            assert!(meta.len() > 1000);
        }
    }
    let summary = atlas::report(&sharded).unwrap();
    let counted: usize = summary.theorems.iter().map(|t| t.instances).sum();
    assert_eq!(counted, parsed.instances.len());
    for t in &summary.theorems {
        assert_eq!(
            t.confirmed + t.refuted + t.inconclusive + t.errors,
            t.instances
        );
    }
    // a rerun has nothing left to do
    let o = bin()
        .args(["atlas", "run"])
        .arg(&spec)
        .arg("--out")
        .arg(&full)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("0 run now"), "{out}");
    // another spec into the same directory is refused
    let other = write_spec(&base, &QUICK.replace("restarts = 2", "restarts = 1"));
    let o = bin()
        .args(["atlas", "run"])
        .arg(&other)
        .arg("--out")
        .arg(&full)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
}

/// Slower instances (about a second each), so that a kill lands mid-run.
const SLOW: &str = r#"
[[grid]]
n_c = 3
s_c = 3
len = 3
dim = [4, 5]
freq = ["uniform", "zipf"]
lambda_ratio = [0.2, 0.4]
restarts = 4
"#;

#[test]
fn resume_after_killing_the_binary() {
    let base = scratch("resume");
    let spec = write_spec(&base, SLOW);
    let (parsed, _) = atlas::load(&spec).unwrap();
    let n = parsed.instances.len();
    let out = base.join("out");
    let results = out.join("results.jsonl");
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
    let lines = |p: &Path| {
        std::fs::read_to_string(p)
            .map(|t| t.matches('\n').count())
            .unwrap_or(0)
    };
    while lines(&results) < 2 {
        assert!(started.elapsed() < Duration::from_secs(300), "no result");
        assert!(
            child.try_wait().unwrap().is_none(),
            "finished before the kill"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let before = lines(&results);
    assert!(
        before >= 2 && before < n,
        "{before} of {n} done at the kill"
    );
    let kept = outcomes(&out);
    assert_eq!(kept.len(), before);
    let o = bin()
        .args(["atlas", "run"])
        .arg(&spec)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(finished(&o));
    let msg = String::from_utf8_lossy(&o.stdout);
    assert!(
        msg.contains(&format!("{} run now, {before} already done", n - before)),
        "{msg}"
    );
    let after = outcomes(&out);
    assert_eq!(after.len(), n);
    assert_eq!(lines(&results), n, "each instance exactly once");
    for (id, v) in &kept {
        assert_eq!(after.get(id), Some(v));
    }
    // the same results as an uninterrupted run
    let clean = base.join("clean");
    let o = bin()
        .args(["atlas", "run"])
        .arg(&spec)
        .arg("--out")
        .arg(&clean)
        .output()
        .unwrap();
    assert!(finished(&o));
    assert_eq!(outcomes(&clean), after);
}

/// The `norm` key: every normalization expands (the centring ones only where
/// `d >= n_c`), goes to its theorem, and keeps the instances of `layer_norm`.
#[test]
fn norm_key_expands_every_normalization() {
    use feature_collapse::norm::Norm;
    let grid = "[[grid]]\nn_c = 3\ns_c = 2\nlen = 2\ndim = [2, 3]\nfreq = \"zipf\"\n";
    let spec = atlas::parse(&format!(
        "{grid}norm = [\"none\", \"layer\", \"rms\", \"center\", \"layer-affine\"]\n"
    ))
    .unwrap();
    let got: Vec<(Norm, usize, u8)> = spec
        .instances
        .iter()
        .map(|i| (i.task.resolved_norm().unwrap(), i.task.dim, i.theorem))
        .collect();
    let eps = 0.0;
    let expect = [
        (Norm::None, 2, 2),
        (Norm::Rms { eps }, 2, 3),
        (Norm::None, 3, 2),
        (Norm::Layer { eps }, 3, 3),
        (Norm::Rms { eps }, 3, 3),
        (Norm::Center, 3, 2),
        (Norm::LayerAffine { eps }, 3, 3),
    ];
    assert_eq!(got, expect);
    for i in &spec.instances {
        let theorem3 = i.theorem == 3;
        assert_eq!(i.task.lambda_w == 0.0, theorem3, "{:?}", i.task);
    }
    let affine = spec.instances.last().unwrap();
    assert_eq!(affine.task.lambda_affine, Some(affine.task.lambda_u));
    // layer_norm = [false, true] gives the same instances (and ids) as norm = ["none", "layer"]
    let a = atlas::parse(&format!("{grid}layer_norm = [false, true]\n")).unwrap();
    let b = atlas::parse(&format!("{grid}norm = [\"none\", \"layer\"]\n")).unwrap();
    let ids = |s: &atlas::Spec| s.instances.iter().map(|i| i.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&a), ids(&b));
    for (text, why) in [
        ("norm = [\"batch\"]\n", "expected one of"),
        ("norm = \"rms\"\nlayer_norm = true\n", "not both"),
    ] {
        let e = atlas::parse(&format!("{grid}{text}")).unwrap_err();
        assert!(
            e.is_bad_input()
                && e.to_string().contains("grid[0].norm")
                && e.to_string().contains(why),
            "{e}"
        );
    }
}
