//! Integration tests of `feature_collapse::plots`: every figure writes a PNG of
//! the requested size and an SVG, and bad input is an error, never a panic.

use feature_collapse::plots::{self, Series, HEIGHT, WIDTH};
use feature_collapse::Error;
use std::path::{Path, PathBuf};

/// A fresh, empty directory for one test under Cargo's integration-test tmp dir.
fn out_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("plots")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn with_ext(stem: &Path, ext: &str) -> PathBuf {
    let mut s = stem.as_os_str().to_owned();
    s.push(".");
    s.push(ext);
    PathBuf::from(s)
}

/// Asserts `<stem>.png` is a PNG of WIDTH × HEIGHT and `<stem>.svg` an SVG.
fn assert_figure(stem: &Path) {
    let png = std::fs::read(with_ext(stem, "png")).expect("PNG written");
    assert!(
        png.len() > 1000,
        "PNG suspiciously small: {} bytes",
        png.len()
    );
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "PNG signature");
    // The first chunk must be IHDR: length 13, type, width, height (big-endian).
    assert_eq!(u32::from_be_bytes(png[8..12].try_into().unwrap()), 13);
    assert_eq!(&png[12..16], b"IHDR");
    let w = u32::from_be_bytes(png[16..20].try_into().unwrap());
    let h = u32::from_be_bytes(png[20..24].try_into().unwrap());
    assert_eq!((w, h), (WIDTH, HEIGHT), "PNG size");

    let svg = std::fs::read_to_string(with_ext(stem, "svg")).expect("SVG written");
    assert!(svg.contains("<svg"), "not an SVG");
    assert!(svg.contains(&format!("width=\"{WIDTH}\"")));
    assert!(svg.trim_end().ends_with("</svg>"));
}

/// Asserts nothing was written for `stem`.
fn assert_no_figure(stem: &Path) {
    assert!(!with_ext(stem, "png").exists());
    assert!(!with_ext(stem, "svg").exists());
}

/// Points, labels and singular values of one `pca_scatter` call.
type ScatterCase = (Vec<[f64; 2]>, Vec<usize>, Vec<f64>);
/// Series and y range of one `curves` call.
type CurvesCase = (Vec<Series>, Option<(f64, f64)>);

fn is_input_error(e: &Error) -> bool {
    matches!(e, Error::InvalidParam { .. } | Error::Plot(_))
}

fn names() -> Vec<String> {
    vec!["concept 1".into(), "concept 2".into(), "concept 3".into()]
}

fn triangle(n: usize) -> (Vec<[f64; 2]>, Vec<usize>) {
    let labels: Vec<usize> = (0..n).map(|i| i % 3).collect();
    let points = labels
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            let a = 2.0 * std::f64::consts::PI * c as f64 / 3.0;
            let jitter = 0.05 * ((i * 7919 % 101) as f64 / 101.0 - 0.5);
            [a.cos() + jitter, a.sin() - jitter]
        })
        .collect();
    (points, labels)
}

#[test]
fn pca_scatter_writes_png_and_svg() {
    let dir = out_dir("scatter");
    let (points, labels) = triangle(300);
    let stem = dir.join("nested/dir/fig3.pca");
    plots::pca_scatter(
        &stem,
        "Type-I collapse <&> test",
        &points,
        &labels,
        &names(),
        &[10.0, 9.9, 1e-4, 1e-6],
    )
    .unwrap();
    assert_figure(&stem);
    let svg = std::fs::read_to_string(with_ext(&stem, "svg")).unwrap();
    assert!(svg.contains("concept 2"), "legend in SVG");
    assert!(svg.contains("&lt;&amp;&gt;"), "title escaped in SVG");
    assert!(svg.contains("9.900"), "singular values in caption");
    // No temporary files are left behind.
    let leftovers: Vec<_> = std::fs::read_dir(stem.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().contains("tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn pca_scatter_handles_degenerate_data() {
    let dir = out_dir("scatter_degenerate");
    // A single point, no singular values, and all points identical.
    let stem = dir.join("one");
    plots::pca_scatter(&stem, "one point", &[[1.0, 2.0]], &[1], &names(), &[]).unwrap();
    assert_figure(&stem);
    let stem = dir.join("same");
    plots::pca_scatter(&stem, "same", &[[0.0, 0.0]; 9], &[0; 9], &names(), &[0.0]).unwrap();
    assert_figure(&stem);
}

#[test]
fn pca_scatter_rejects_bad_input() {
    let dir = out_dir("scatter_bad");
    let stem = dir.join("bad");
    let (points, labels) = triangle(30);
    let cases: Vec<ScatterCase> = vec![
        (points.clone(), labels[..29].to_vec(), vec![1.0]), // length mismatch
        (points.clone(), vec![3; 30], vec![1.0]),           // label without a name
        (vec![], vec![], vec![1.0]),                        // nothing to plot
        (
            {
                let mut p = points.clone();
                p[4][1] = f64::NAN;
                p
            },
            labels.clone(),
            vec![1.0],
        ),
        (
            {
                let mut p = points.clone();
                p[0][0] = f64::INFINITY;
                p
            },
            labels.clone(),
            vec![1.0],
        ),
        (points.clone(), labels.clone(), vec![1.0, f64::NAN]),
    ];
    for (i, (p, l, s)) in cases.iter().enumerate() {
        let err = plots::pca_scatter(&stem, "bad", p, l, &names(), s).unwrap_err();
        assert!(is_input_error(&err), "case {i}: {err}");
        assert_no_figure(&stem);
    }
    let many: Vec<String> = (0..11).map(|i| i.to_string()).collect();
    let err = plots::pca_scatter(&stem, "bad", &points, &labels, &many, &[]).unwrap_err();
    assert!(is_input_error(&err), "{err}");
}

#[test]
fn curves_write_png_and_svg() {
    let dir = out_dir("curves");
    let train: Vec<(f64, f64)> = (0..=1200)
        .map(|e| (e as f64, 1.0 - 0.6 * (-(e as f64) / 100.0).exp()))
        .collect();
    let test: Vec<(f64, f64)> = train.iter().map(|&(e, a)| (e, 0.95 * a)).collect();
    let stem = dir.join("accuracy");
    plots::curves(
        &stem,
        "Accuracy",
        "epoch",
        "accuracy",
        &[Series::solid("train", train), Series::dashed("test", test)],
        Some((0.0, 1.0)),
    )
    .unwrap();
    assert_figure(&stem);

    // Few points (markers), automatic y range, a one-point series.
    let stem = dir.join("loss");
    let loss = vec![(1.0, 0.9), (2.0, 0.5), (3.0, 0.3)];
    plots::curves(
        &stem,
        "Loss",
        "epoch",
        "loss",
        &[
            Series::solid("train loss", loss),
            Series::dashed("final test loss", vec![(3.0, 0.35)]),
        ],
        None,
    )
    .unwrap();
    assert_figure(&stem);
}

#[test]
fn curves_reject_bad_input() {
    let dir = out_dir("curves_bad");
    let stem = dir.join("bad");
    let ok = Series::solid("ok", vec![(0.0, 1.0), (1.0, 2.0)]);
    let bad_sets: Vec<CurvesCase> = vec![
        (vec![], None),
        (vec![ok.clone(), Series::solid("empty", vec![])], None),
        (vec![Series::solid("nan", vec![(0.0, f64::NAN)])], None),
        (
            vec![Series::dashed("inf", vec![(f64::INFINITY, 0.0)])],
            None,
        ),
        (vec![ok.clone()], Some((1.0, 0.0))),
        (vec![ok.clone()], Some((0.0, f64::NAN))),
        (vec![ok.clone(); 11], None),
    ];
    for (i, (series, y_range)) in bad_sets.iter().enumerate() {
        let err = plots::curves(&stem, "t", "x", "y", series, *y_range).unwrap_err();
        assert!(is_input_error(&err), "case {i}: {err}");
        assert_no_figure(&stem);
    }
}

#[test]
fn norms_vs_rank_writes_png_and_svg() {
    let dir = out_dir("norms");
    let k = 1000;
    let predicted: Vec<f64> = (1..=k)
        .map(|r| 1.0 + 3.0 / (1.0 + r as f64 / 40.0))
        .collect();
    let measured: Vec<f64> = predicted
        .iter()
        .enumerate()
        .map(|(i, p)| p * (1.0 + 0.03 * ((i * 37 % 17) as f64 / 17.0 - 0.5)))
        .collect();
    for log_x in [true, false] {
        let stem = dir.join(format!("norms_log{log_x}"));
        plots::norms_vs_rank(&stem, "Norms", &measured, Some(&predicted), log_x).unwrap();
        assert_figure(&stem);
    }
    let stem = dir.join("measured_only");
    plots::norms_vs_rank(&stem, "Norms", &measured[..1], None, true).unwrap();
    assert_figure(&stem);
    let svg = std::fs::read_to_string(with_ext(&dir.join("norms_logtrue"), "svg")).unwrap();
    assert!(svg.contains("type-III prediction"));
}

#[test]
fn norms_vs_rank_rejects_bad_input() {
    let dir = out_dir("norms_bad");
    let stem = dir.join("bad");
    let m = [3.0, 2.0, 1.0];
    let cases: Vec<(Vec<f64>, Option<Vec<f64>>)> = vec![
        (vec![], None),
        (m.to_vec(), Some(vec![1.0, 2.0])),
        (vec![1.0, f64::NAN], None),
        (m.to_vec(), Some(vec![1.0, f64::NEG_INFINITY, 2.0])),
    ];
    for (i, (measured, predicted)) in cases.iter().enumerate() {
        let err =
            plots::norms_vs_rank(&stem, "t", measured, predicted.as_deref(), true).unwrap_err();
        assert!(is_input_error(&err), "case {i}: {err}");
        assert_no_figure(&stem);
    }
}

#[test]
fn font_is_found() {
    let path = plots::ensure_font().expect("a font must be installed (fonts-dejavu-core)");
    assert!(path.is_file());
}
