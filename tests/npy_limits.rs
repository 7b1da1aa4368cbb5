//! Arrays are refused from their header, before their data is read or inflated:
//! a lying shape, a zip bomb in an `.npz`, a float `--z` (on the real binary).

mod common;

use feature_collapse::npy::{header_v1, read_array, read_array_checked};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn scratch(name: &str) -> PathBuf {
    common::scratch("fc-npy-limits", name)
}

/// A `.npy` whose header claims `shape` but holds only `data_bytes` zero bytes.
fn lying_npy(descr: &str, shape: &[usize], data_bytes: usize) -> Vec<u8> {
    let mut b = header_v1(descr, shape).unwrap();
    b.extend(std::iter::repeat_n(0u8, data_bytes));
    b
}

/// An `.npz` with one member `name` holding `bytes`, deflated.
fn npz(path: &Path, name: &str, bytes: &[u8]) {
    let f = std::fs::File::create(path).unwrap();
    let mut z = zip::ZipWriter::new(f);
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    z.start_file(format!("{name}.npy"), opts).unwrap();
    z.write_all(bytes).unwrap();
    z.finish().unwrap();
}

#[test]
fn a_lying_shape_is_refused_before_allocation() {
    let d = scratch("lying");
    let p = d.join("big.npy");
    std::fs::write(&p, lying_npy("<f8", &[1_000_000_000, 2], 16)).unwrap();
    let started = Instant::now();
    let e = read_array(&p).unwrap_err().report();
    assert!(e.contains("elements"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn an_npz_member_is_not_inflated_when_its_header_is_refused() {
    let d = scratch("bomb");
    let p = d.join("bomb.npz");
    // 64 MiB of zeros behind a header claiming 2^27 doubles (1 GiB): deflates to
    // about 64 KiB on disk.
    let body = lying_npy("<f8", &[1 << 27], 64 << 20);
    npz(&p, "w", &body);
    assert!(std::fs::metadata(&p).unwrap().len() < 1 << 20);
    let mut seen = None;
    let e = read_array_checked(&p, |h| {
        seen = Some(h.elements);
        Err("too many elements for this test".into())
    })
    .unwrap_err()
    .report();
    assert_eq!(seen, Some(1 << 27));
    assert!(e.contains("too many elements for this test"), "{e}");
}

#[test]
fn analyze_refuses_a_float_z_and_a_huge_w_from_the_header() {
    let d = scratch("analyze");
    let w = d.join("w.npy");
    let u = d.join("u.npy");
    let z = d.join("z.npy");
    std::fs::write(&w, lying_npy("<f8", &[6, 2], 6 * 2 * 8)).unwrap();
    std::fs::write(&u, lying_npy("<f8", &[4, 4], 4 * 4 * 8)).unwrap();
    // a float z whose header claims 2^29 elements (4 GiB): refused for its dtype
    std::fs::write(&z, lying_npy("<f8", &[1 << 28, 2], 64)).unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_fcollapse"))
            .args(args)
            .output()
            .unwrap()
    };
    let (ws, us, zs) = (
        w.to_str().unwrap(),
        u.to_str().unwrap(),
        z.to_str().unwrap(),
    );
    let started = Instant::now();
    let o = run(&["analyze", "--w", ws, "--u", us, "--z", zs, "--nc", "3"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("`z`") && err.contains("'<f8'"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    // a W whose header claims 2^29 elements
    let big = d.join("big.npz");
    npz(&big, "w", &lying_npy("<f8", &[1 << 28, 2], 1 << 20));
    let o = run(&[
        "analyze",
        "--w",
        big.to_str().unwrap(),
        "--u",
        us,
        "--nc",
        "3",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("`w`") && err.contains("2^28"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(20));
}

/// Weights whose metrics would not be finite are refused with the input named
/// (exit 2): entries near 1e160 (their squares overflow), and with LayerNorm at
/// `eps = 0` a constant row of `W` (a zero padding row).
#[test]
fn analyze_refuses_weights_whose_metrics_would_not_be_finite() {
    use feature_collapse::npy::write_npy_f64;
    let d = scratch("finite");
    let w: Vec<f64> = (0..12).map(|i| ((i * 7 % 5) as f64) - 2.0).collect();
    let u: Vec<f64> = (0..36).map(|i| ((i * 3 % 7) as f64) - 3.0).collect();
    let huge: Vec<f64> = w.iter().map(|x| x * 1e160).collect();
    let mut padded = w.clone();
    padded[10] = 0.0;
    padded[11] = 0.0;
    write_npy_f64(&d.join("w.npy"), &[6, 2], &w).unwrap();
    write_npy_f64(&d.join("huge.npy"), &[6, 2], &huge).unwrap();
    write_npy_f64(&d.join("pad.npy"), &[6, 2], &padded).unwrap();
    write_npy_f64(&d.join("u.npy"), &[9, 4], &u).unwrap();
    let run = |w: &str, extra: &[&str]| {
        let mut args = vec!["analyze", "--w", w, "--u", "u.npy", "--nc", "3"];
        args.extend_from_slice(extra);
        Command::new(env!("CARGO_BIN_EXE_fcollapse"))
            .current_dir(&d)
            .args(&args)
            .output()
            .unwrap()
    };
    let ok = run("w.npy", &[]);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    for (w, extra, needle) in [
        ("huge.npy", &[][..], "rescale the weights"),
        ("pad.npy", &["--eps", "0"][..], "row 5"),
    ] {
        let o = run(w, extra);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{w}: {err}");
        assert!(err.contains("`w`") && err.contains(needle), "{err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    }
    // with eps > 0 the padding row is fine
    let o = run("pad.npy", &["--eps", "1e-5"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
