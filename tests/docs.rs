//! The documentation is the project's own and matches the program's output:
//! no tracked file cites a reference outside the repository (docs/theory.md is
//! the reference), and the README's excerpt of `fcollapse verify` is what the
//! program prints today.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The name of a private notes file that must not be cited (spelled in two
/// parts so that this file does not contain it).
const PRIVATE_NAME: &str = concat!("THE", "ORY");

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The repository's tracked files (`git ls-files`), or, without git, every file
/// under the root except `target/` and hidden folders.
fn tracked_files() -> Vec<PathBuf> {
    let root = root();
    if let Ok(o) = Command::new("git")
        .args(["ls-files", "-z"])
        .current_dir(&root)
        .output()
    {
        if o.status.success() && !o.stdout.is_empty() {
            return o
                .stdout
                .split(|&b| b == 0)
                .filter(|p| !p.is_empty())
                .map(|p| root.join(String::from_utf8_lossy(p).as_ref()))
                .collect();
        }
    }
    let mut out = Vec::new();
    walk(&root, &mut out);
    out
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read_dir").flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if path.is_dir() {
            if name != "target" && !name.starts_with('.') {
                walk(&path, out);
            }
        } else {
            out.push(path);
        }
    }
}

#[test]
fn no_tracked_file_cites_the_private_notes() {
    let files = tracked_files();
    assert!(
        files.iter().any(|p| p.ends_with("docs/theory.md")),
        "the file list must include docs/theory.md"
    );
    let needle = PRIVATE_NAME.as_bytes();
    let mut hits = Vec::new();
    for path in &files {
        // a tracked file deleted in the working tree is not there to read
        let Ok(bytes) = std::fs::read(path) else {
            continue;
        };
        for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
            if line.windows(needle.len()).any(|w| w == needle) {
                hits.push(format!(
                    "{}:{}",
                    path.strip_prefix(root()).unwrap_or(path).display(),
                    i + 1
                ));
            }
        }
    }
    assert!(
        hits.is_empty(),
        "cite docs/theory.md instead of {PRIVATE_NAME}: {hits:?}"
    );
}

/// `line` without a trailing timing such as ` (1.0 s)`.
fn without_timing(line: &str) -> &str {
    match line.rfind(" (") {
        Some(i) if line.ends_with(" s)") => &line[..i],
        _ => line,
    }
}

/// The lines of the first fenced block after the heading `heading` in `text`.
fn block_after<'a>(text: &'a str, heading: &str) -> Vec<&'a str> {
    let start = text.find(heading).expect("heading in README");
    let rest = &text[start..];
    let open = rest.find("\n```").expect("a fenced block") + 4;
    let body = &rest[open..];
    let body = &body[body.find('\n').expect("fence line") + 1..];
    let close = body.find("\n```").expect("closing fence");
    body[..close].lines().collect()
}

#[test]
fn readme_verify_excerpt_is_the_real_output() {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    let excerpt = block_after(&readme, "## What `verify` prints");
    assert!(excerpt.len() > 5, "{excerpt:?}");
    assert!(excerpt[0].starts_with("Theorem 1"), "{excerpt:?}");

    let o = Command::new(env!("CARGO_BIN_EXE_fcollapse"))
        .args(["verify", "--theorem", "1"])
        .output()
        .expect("run fcollapse");
    assert_eq!(o.status.code(), Some(0));
    let out = String::from_utf8(o.stdout).expect("utf-8");
    let real: Vec<&str> = out.lines().map(without_timing).collect();

    // every excerpt line other than `...` is a real line, in the same order
    let mut next = 0;
    for line in excerpt.iter().filter(|l| l.trim() != "...") {
        let want = without_timing(line);
        match real[next..].iter().position(|r| *r == want) {
            Some(i) => next += i + 1,
            None => panic!(
                "README excerpt line not in the output (in order):\n{line}\n\noutput:\n{out}"
            ),
        }
    }
    // the elided part is elided: the excerpt is shorter than the output
    assert!(excerpt.contains(&"  ..."), "{excerpt:?}");
}

/// `fcollapse SUB --help`.
fn help(sub: &str) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_fcollapse"))
        .args([sub, "--help"])
        .output()
        .expect("run fcollapse");
    assert_eq!(o.status.code(), Some(0));
    String::from_utf8(o.stdout).expect("utf-8")
}

/// The help text of `flag` (from the flag to the next flag), on one line.
fn flag_help(help: &str, flag: &str) -> String {
    let start = help
        .find(&format!("{flag} <"))
        .unwrap_or_else(|| panic!("{flag} in {help}"));
    let rest = &help[start + flag.len()..];
    let end = rest.find("\n      -").unwrap_or(rest.len());
    rest[..end].split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn train_help_states_the_defaults_the_code_uses() {
    use feature_collapse::experiments::Preset;
    use feature_collapse::train::TrainConfig;
    let h = help("train");
    let (nspl, epochs) = (flag_help(&h, "--nspl"), flag_help(&h, "--epochs"));
    for p in Preset::ALL {
        let t = p.train();
        let name = p.name();
        assert!(nspl.contains(&format!("{name} {}", t.n_spl)), "{nspl}");
        assert!(epochs.contains(&format!("{name} {}", t.epochs)), "{epochs}");
        assert_eq!(p.task().classes, Some(1000), "{name}");
        assert_eq!(
            (t.lr, t.batch),
            (TrainConfig::default().lr, TrainConfig::default().batch)
        );
    }
    let d = TrainConfig::default();
    assert!(flag_help(&h, "--lr").contains(&format!("(default: {})", d.lr)));
    assert!(flag_help(&h, "--batch").contains(&format!("(default: {})", d.batch)));
    assert!(flag_help(&h, "--classes").contains("the preset's K, 1000"));
}

#[test]
fn classes_help_mentions_presets_only_where_there_are_presets() {
    for sub in ["train", "predict", "verify", "converge"] {
        let h = help(sub);
        let has_preset = h.contains("--preset <");
        let classes = flag_help(&h, "--classes");
        assert_eq!(classes.contains("preset"), has_preset, "{sub}: {classes}");
        assert!(
            classes.contains("full latent set K = n_c^L"),
            "{sub}: {classes}"
        );
    }
}
