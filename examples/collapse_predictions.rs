//! Predictions of `collapse::predict` at the paper's shapes, with timings.
//! `cargo run --release --example collapse_predictions`
use feature_collapse::collapse::{build, equiangular_frame, predict, Form};
use feature_collapse::experiments::Preset;
use feature_collapse::metrics::{collapse_metrics, family_distance, pca_points_u};
use feature_collapse::network::Params;
use feature_collapse::task::{Freq, TaskConfig};
use rand::SeedableRng;
use std::time::Instant;

fn main() {
    let paper = Preset::Fig3.task();
    let cases = [
        ("fig3 uniform", paper.clone()),
        (
            "fig4c LN",
            TaskConfig {
                freq: Freq::Zipf { exponent: 1.0 },
                layer_norm: Some(0.0),
                lambda_w: 0.0,
                ..paper.clone()
            },
        ),
        (
            "fig4a Zipf",
            TaskConfig {
                freq: Freq::Zipf { exponent: 1.0 },
                ..paper.clone()
            },
        ),
        (
            "K=50 uniform",
            TaskConfig {
                classes: Some(50),
                ..paper.clone()
            },
        ),
    ];
    for (name, cfg) in cases {
        let task = cfg.build().expect("task");
        for form in [Form::LatentSet, Form::MeanField] {
            // best of three wall-clock timings (the machine may be shared)
            let mut dt = f64::INFINITY;
            let mut res = None;
            for _ in 0..3 {
                let t0 = Instant::now();
                res = Some(predict(&task, form));
                dt = dt.min(t0.elapsed().as_secs_f64());
            }
            match res.expect("ran") {
                Ok(p) => {
                    let head: Vec<String> = p.r.iter().take(5).map(|v| format!("{v:.6}")).collect();
                    println!(
                        "{name:14} {form:10} {:?}: word_norm {:.6} u_norm {:.6} c {:.6} risk {:.6} err {:?} n {:?} r[..5] [{}] r_last {:.6}  ({dt:.3} s)",
                        p.kind,
                        p.word_norm,
                        p.u_norm,
                        p.c,
                        p.risk,
                        p.risk_error,
                        p.n_samples,
                        head.join(", "),
                        p.r[p.r.len() - 1]
                    );
                }
                Err(e) => println!("{name:14} {form:10}: error {e}"),
            }
        }
    }
    // metrics at the paper's shape, on the collapsed configuration and on random weights
    let task = paper.build().expect("task");
    let pred = predict(&task, Form::MeanField).expect("prediction");
    let frame = equiangular_frame(task.n_c(), task.dim(), false).expect("frame");
    let collapsed = build(&task, &pred, &frame);
    let random = Params::random(&task, 1.0, &mut rand_chacha::ChaCha8Rng::seed_from_u64(1));
    for (name, p) in [("collapsed", &collapsed), ("random", &random)] {
        let t0 = Instant::now();
        let m = collapse_metrics(&task, p);
        let t1 = t0.elapsed().as_secs_f64();
        let f = family_distance(&task, p, &pred);
        let t2 = t0.elapsed().as_secs_f64() - t1;
        let t0 = Instant::now();
        let pts = pca_points_u(&task, p);
        let t3 = t0.elapsed().as_secs_f64();
        println!(
            "metrics {name}: within_w {:.3e} dir_w {:.3e} gram_w {:.3e} within_u {:.3e} duality {:.6} pca_w {:?} family max {:.3e}  (metrics {t1:.3} s, family {t2:.3} s, pca_points_u {} pts {t3:.3} s)",
            m.within_spread_w, m.direction_spread_w, m.gram_error_w, m.within_spread_u, m.duality, m.pca_w, f.max, pts.0.len()
        );
    }
}
