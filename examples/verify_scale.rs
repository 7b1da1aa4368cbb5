//! Theorem 1 at scale: `n_c = 3, s_c = 3, L = 6, d = 8`, full latent set
//! (35,064 parameters), the Hessian-free certificate at the prediction and 4
//! L-BFGS restarts with the saddle escape, each stage timed:
//! `cargo run --release --example verify_scale [-- NC SC L D RESTARTS]`.

use feature_collapse::collapse;
use feature_collapse::limit;
use feature_collapse::network::Params;
use feature_collapse::task::TaskConfig;
use feature_collapse::verify::{exact_form, hessian_report, minimise, Theorem, VerifyConfig};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::time::Instant;

fn main() -> feature_collapse::Result<()> {
    let a: Vec<usize> = std::env::args()
        .skip(1)
        .map(|s| s.parse().expect("integer"))
        .collect();
    let get = |i: usize, d: usize| a.get(i).copied().unwrap_or(d);
    let task = TaskConfig {
        n_c: get(0, 3),
        s_c: get(1, 3),
        len: get(2, 6),
        dim: get(3, 8),
        ..Theorem::One.default_task()
    }
    .build()?;
    let restarts = get(4, 4);
    let cfg = VerifyConfig {
        restarts,
        ..VerifyConfig::default()
    };
    Theorem::One.outside(&task)?;
    limit::check_budget(&task, cfg.budget)?;
    println!(
        "{task}: {} parameters, work {:.3e} per evaluation, {} rayon threads",
        task.n_params(),
        limit::work(&task),
        rayon::current_num_threads()
    );
    let all = Instant::now();
    let t = Instant::now();
    let p0 = Params::zeros(&task);
    limit::risk_grad(&task, &p0);
    println!("one risk_grad: {:.3} s", t.elapsed().as_secs_f64());

    let t = Instant::now();
    let pred = collapse::predict(&task, exact_form(&task))?;
    let frame = collapse::equiangular_frame(task.n_c(), task.dim(), false)?;
    let built = collapse::build(&task, &pred, &frame);
    let (r, g) = limit::risk_grad(&task, &built);
    let gn = g.iter().map(|x| x * x).sum::<f64>().sqrt();
    println!(
        "prediction: R = {:.15} (reduced {:.15}), ||grad R|| = {gn:.2e} ({:.1} s)",
        r,
        pred.risk,
        t.elapsed().as_secs_f64()
    );

    let t = Instant::now();
    let h = hessian_report(&task, &built);
    println!(
        "certificate ({}): min eig {:.3e}, max eig {:.3e}, {} near zero, symmetry dim {}, transverse min {:.3e}, tangent residual {:.1e}, {} Hessian-vector products ({:.1} s)",
        h.method, h.min_eig, h.max_eig, h.near_zero, h.symmetry_dim, h.transverse_min_eig, h.tangent_residual, h.hessian_products, t.elapsed().as_secs_f64()
    );
    for i in 0..restarts {
        let t = Instant::now();
        let mut rng = ChaCha8Rng::seed_from_u64(i as u64);
        let start = Params::random(&task, cfg.init_scale, &mut rng);
        let m = minimise(&task, &start, &cfg)?;
        let (r, g) = limit::risk_grad(&task, &start.with_flat(&m.x));
        let gn = g.iter().map(|x| x * x).sum::<f64>().sqrt();
        println!(
            "restart {i}: R = {:.15} (gap to prediction {:.1e}), ||grad R|| = {gn:.2e}, {} iterations, {} evaluations, {} saddles, {:?}, {} ({:.1} s)",
            r, (r - pred.risk) / pred.risk.abs().max(1.0), m.iterations, m.evaluations, m.saddles.len(), m.safeguards, m.termination, t.elapsed().as_secs_f64()
        );
    }
    println!("total {:.1} s", all.elapsed().as_secs_f64());
    Ok(())
}
