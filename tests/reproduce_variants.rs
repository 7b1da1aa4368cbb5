//! `reproduce --variants --quick` on the real binary: every normalization trained,
//! its report, figures and weights; and `train --norm layer-affine`.

mod common;
use common::fcollapse;

use std::path::PathBuf;

fn scratch(name: &str) -> PathBuf {
    common::scratch("fcollapse-variants", name)
}

fn summary(dir: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap()
}

fn norms_by_rank(s: &serde_json::Value) -> Vec<f64> {
    s["norm_by_rank"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect()
}

#[test]
fn variants_quick_end_to_end() {
    let d = scratch("quick");
    let out = d.join("runs");
    let args = [
        "reproduce",
        "--variants",
        "--quick",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ];
    let o = fcollapse(&args);
    let stdout = String::from_utf8_lossy(&o.stdout);
    common::assert_success(&o);
    let text = std::fs::read_to_string(out.join("variants.md")).unwrap();
    for norm in ["none", "center", "layer", "rms", "layer-affine"] {
        assert!(text.contains(&format!("| {norm} |")), "report lacks {norm}");
        assert!(stdout.lines().any(|l| l.starts_with(norm)), "{stdout}");
        let dir = out.join(format!("variant_{norm}"));
        let s = summary(&dir);
        assert_eq!(s["task"]["norm"]["kind"], norm);
        for fig in ["accuracy", "norms"] {
            let png = std::fs::read(out.join(format!("figures/variant_{norm}_{fig}.png"))).unwrap();
            assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        }
        assert_eq!(dir.join("affine.npy").exists(), norm == "layer-affine");
    }
    let png = std::fs::read(out.join("figures/variants_norms.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    // The scale-invariant norms hold every token at sqrt(d) = 4; the linear ones keep
    // frequency-dependent norms (rank 1 above the rarest rank).
    for norm in ["layer", "rms"] {
        let s = summary(&out.join(format!("variant_{norm}")));
        let r = norms_by_rank(&s);
        assert!(r.iter().all(|&x| (x - 4.0).abs() < 0.1), "{norm}: {r:?}");
        assert_eq!(s["predictions"][0]["kind"], "II");
    }
    for norm in ["none", "center"] {
        let s = summary(&out.join(format!("variant_{norm}")));
        let r = norms_by_rank(&s);
        assert!(r[0] > 1.5 * r[r.len() - 1], "{norm}: {r:?}");
        assert_eq!(s["predictions"][0]["kind"], "III");
        assert_eq!(s["task"]["lambda_w"], 0.001);
    }
    let s = summary(&out.join("variant_layer-affine"));
    assert!(s["no_prediction"]
        .as_str()
        .unwrap()
        .contains("layer-affine"));
    assert_eq!(s["task"]["lambda_affine"], 0.001);
    // The npy of [gamma ; beta] is 2 x d.
    let npy = std::fs::read(out.join("variant_layer-affine/affine.npy")).unwrap();
    let header = String::from_utf8_lossy(&npy[..128]);
    assert!(header.contains("(2, 16)"), "{header}");
    // A second run without --resume or --force is refused (nothing is overwritten).
    let again = fcollapse(&args);
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("out"));
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn train_layer_affine_runs_and_resumes() {
    let d = scratch("train");
    let dir = d.join("run");
    let args = |epochs: &'static str| {
        vec![
            "train",
            "--preset",
            "fig4c",
            "--norm",
            "layer-affine",
            "--lambda-affine",
            "0.01",
            "--classes",
            "20",
            "--epochs",
            epochs,
            "--quiet",
        ]
    };
    let mut a = args("4");
    a.extend(["--out", dir.to_str().unwrap()]);
    let o = fcollapse(&a);
    common::assert_success(&o);
    let s = summary(&dir);
    assert_eq!(s["epochs"], 4);
    assert!(dir.join("affine.npy").exists());
    let first = std::fs::read(dir.join("affine.npy")).unwrap();
    // Extending the finished run to 6 epochs from its checkpoint equals one 6-epoch run.
    let o = fcollapse(&[
        "train",
        "--resume",
        dir.to_str().unwrap(),
        "--epochs",
        "6",
        "--quiet",
    ]);
    common::assert_success(&o);
    let dir6 = d.join("run6");
    let mut a = args("6");
    a.extend(["--out", dir6.to_str().unwrap()]);
    assert_eq!(fcollapse(&a).status.code(), Some(0));
    let (r, f) = (
        std::fs::read(dir.join("affine.npy")).unwrap(),
        std::fs::read(dir6.join("affine.npy")).unwrap(),
    );
    assert_eq!(r, f, "resumed and straight runs differ");
    assert_ne!(r, first, "gamma, beta should move between epochs 4 and 6");
    assert_eq!(
        std::fs::read(dir.join("W.npy")).unwrap(),
        std::fs::read(dir6.join("W.npy")).unwrap()
    );
    let _ = std::fs::remove_dir_all(&d);
}
