//! Predictions of `collapse::predict` at the paper's shapes, with timings.
//! `cargo run --release --example collapse_predictions`
use feature_collapse::collapse::{predict, Form};
use feature_collapse::task::{Freq, TaskConfig};
use std::time::Instant;

fn main() {
    let paper = TaskConfig {
        n_c: 3,
        s_c: 400,
        len: 15,
        dim: 100,
        classes: Some(1000),
        freq: Freq::Uniform,
        layer_norm: None,
        lambda_w: 0.001,
        lambda_u: 0.001,
        seed: 0,
    };
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
            let t0 = Instant::now();
            match predict(&task, form) {
                Ok(p) => {
                    let dt = t0.elapsed().as_secs_f64();
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
}
