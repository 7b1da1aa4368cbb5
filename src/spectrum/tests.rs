use super::*;
use crate::collapse::{self, Form};
use crate::limit;
use crate::network::Params;
use crate::task::{Task, TaskConfig};
use nalgebra::{DMatrix, SymmetricEigen};
use rand::SeedableRng;

fn small_task() -> Task {
    TaskConfig {
        n_c: 3,
        s_c: 2,
        len: 2,
        dim: 3,
        ..TaskConfig::default()
    }
    .build()
    .unwrap()
}

/// The dense Hessian from the same products, column `i` = `H e_i`, symmetrised,
/// and its eigenvalues, descending.
fn dense_from_products(task: &Task, p: &Params) -> (DMatrix<f64>, Vec<f64>) {
    let n = p.flat_len();
    let cols: Vec<Vec<f64>> = (0..n)
        .map(|i| {
            let mut e = vec![0.0; n];
            e[i] = 1.0;
            limit::hessian_vector_product(task, p, &e)
        })
        .collect();
    let h = DMatrix::from_fn(n, n, |r, c| cols[c][r]);
    let h = (&h + h.transpose()) * 0.5;
    let mut eig: Vec<f64> = SymmetricEigen::new(h.clone())
        .eigenvalues
        .iter()
        .copied()
        .collect();
    eig.sort_by(|a, b| b.total_cmp(a));
    (h, eig)
}

#[test]
fn top_eigenvalues_find_every_copy_of_a_repeated_eigenvalue() {
    // diag(5, 5, 5, 3, 2, 1, 0.5, ...): one Lanczos run sees 5 once; the
    // confirming runs must find the other two copies.
    let n = 40;
    let mut diag: Vec<f64> = (0..n).map(|i| 1.0 / (1.0 + i as f64)).collect();
    diag[..3].copy_from_slice(&[5.0, 5.0, 5.0]);
    diag[3] = 3.0;
    let apply = |v: &[f64]| v.iter().zip(&diag).map(|(a, d)| a * d).collect();
    let t = top_eigenvalues(apply, n, 4, 7, 1000, 1e-10);
    assert!(t.converged);
    for (got, want) in t.values.iter().zip([5.0, 5.0, 5.0, 3.0]) {
        assert!((got - want).abs() < 1e-8, "{:?}", t.values);
    }
    assert_eq!(t.values.len(), 4);
    // A budget too small to converge is reported, not hidden.
    let short = top_eigenvalues(apply, n, 4, 7, 3, 1e-10);
    assert!(!short.converged);
}

#[test]
fn hutchinson_is_exact_on_a_diagonal_operator_and_unbiased_otherwise() {
    // z^T D z = tr D for every Rademacher z: zero spread.
    let diag = [1.0, -2.0, 3.5, 0.25];
    let apply = |v: &[f64]| {
        v.iter()
            .zip(&diag)
            .map(|(a, d)| a * d)
            .collect::<Vec<f64>>()
    };
    let t = hutchinson_trace(apply, 4, 10, 3);
    assert!(
        (t.value - 2.75).abs() < 1e-14 && t.std_error < 1e-14,
        "{t:?}"
    );
    // A full symmetric matrix: within 4 standard errors, and the standard
    // error matches its exact value sqrt(2 sum_{i != j} a_ij^2 / m).
    let n = 30;
    let a = DMatrix::from_fn(n, n, |r, c| ((r * 7 + c * 7 + r * c) % 11) as f64 - 5.0);
    let apply = |v: &[f64]| {
        (&a * nalgebra::DVector::from_column_slice(v))
            .as_slice()
            .to_vec()
    };
    let m = 400;
    let t = hutchinson_trace(apply, n, m, 11);
    let off: f64 = (0..n)
        .flat_map(|r| (0..n).filter(move |&c| c != r).map(move |c| (r, c)))
        .map(|(r, c)| a[(r, c)].powi(2))
        .sum();
    let se = (2.0 * off / m as f64).sqrt();
    assert!(
        (t.value - a.trace()).abs() < 4.0 * se,
        "{} vs {}",
        t.value,
        a.trace()
    );
    assert!(
        (t.std_error / se - 1.0).abs() < 0.2,
        "{} vs {se}",
        t.std_error
    );
    // Seeded.
    assert_eq!(t, hutchinson_trace(apply, n, m, 11));
}

#[test]
fn limit_hessian_top_k_trace_and_density_match_the_dense_hessian() {
    let task = small_task();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
    let random = Params::random(&task, 0.6, &mut rng);
    let pred = collapse::predict(&task, Form::Full).unwrap();
    let frame = collapse::equiangular_frame(task.n_c(), task.dim(), false).unwrap();
    let collapsed = collapse::build(&task, &pred, &frame);
    for p in [random, collapsed] {
        let (h, eig) = dense_from_products(&task, &p);
        let n = h.nrows();
        let cfg = SpectrumConfig {
            top_k: 6,
            hutchinson_probes: 200,
            slq_probes: 40,
            slq_steps: 30,
            ..SpectrumConfig::default()
        };
        let s = hessian_spectrum(&task, &p, &cfg, limit::DEFAULT_WORK_BUDGET).unwrap();
        assert_eq!(s.n_params, n);
        assert!(s.top.converged);
        let scale = eig[0].abs();
        for (got, want) in s.top.values.iter().zip(&eig) {
            assert!(
                (got - want).abs() < 1e-6 * scale,
                "top {:?} vs dense {:?}",
                s.top.values,
                &eig[..6]
            );
        }
        // Hutchinson: within 4 of its exact standard error sqrt(2 sum_{i!=j} h_ij^2 / m).
        let off =
            h.iter().map(|v| v * v).sum::<f64>() - h.diagonal().iter().map(|v| v * v).sum::<f64>();
        let se = (2.0 * off / cfg.hutchinson_probes as f64).sqrt();
        assert!(
            (s.trace.value - h.trace()).abs() < 4.0 * se,
            "{:?} vs {}",
            s.trace,
            h.trace()
        );
        // SLQ: unit mass, first moment = the nodes' mean = tr/n within 4 standard
        // errors of the mean Rayleigh quotient of a normalised Rademacher probe.
        assert!(
            (s.density.integral(0) - 1.0).abs() < 1e-6,
            "{}",
            s.density.integral(0)
        );
        assert!((s.density.integral(1) - s.slq_mean).abs() < 1e-6 * scale);
        let se_q = (2.0 * off / (n * n) as f64 / cfg.slq_probes as f64).sqrt();
        let mean = h.trace() / n as f64;
        assert!(
            (s.slq_mean - mean).abs() < 4.0 * se_q + 1e-9 * scale,
            "{} vs {mean}",
            s.slq_mean
        );
        // Every SLQ node lies in [lambda_min, lambda_max] (Cauchy interlacing).
        let (lo, hi) = s.slq.range();
        assert!(lo >= eig[n - 1] - 1e-6 * scale && hi <= eig[0] + 1e-6 * scale);
        assert_eq!(s.hessian_products, s.top.products + 200 + s.slq.products);
    }
}

#[test]
fn slq_with_full_steps_reproduces_the_spectrum() {
    // diag with distinct values: n steps make the Krylov space complete, so
    // the nodes are the eigenvalues and the weights the squared components of
    // q = z/||z||, i.e. 1/n each for a Rademacher z.
    let diag: Vec<f64> = (0..8).map(|i| i as f64 * 0.5 - 1.0).collect();
    let apply = |v: &[f64]| {
        v.iter()
            .zip(&diag)
            .map(|(a, d)| a * d)
            .collect::<Vec<f64>>()
    };
    let s = slq(apply, 8, 3, 8, 1);
    for (nodes, w) in s.nodes.iter().zip(&s.weights) {
        for (got, want) in nodes.iter().zip(&diag) {
            assert!((got - want).abs() < 1e-10, "{nodes:?}");
        }
        assert!(w.iter().all(|w| (w - 0.125).abs() < 1e-10), "{w:?}");
    }
    assert!((s.moment(1) - diag.iter().sum::<f64>() / 8.0).abs() < 1e-12);
    let d = Density::new(&s, 0.02, 400);
    assert!((d.integral(0) - 1.0).abs() < 1e-6);
}

#[test]
fn bad_settings_name_the_flag() {
    let cfg = SpectrumConfig {
        hutchinson_probes: 1,
        ..SpectrumConfig::default()
    };
    let e = cfg.validate().unwrap_err();
    assert!(
        e.is_bad_input() && e.to_string().contains("hutchinson-probes"),
        "{e}"
    );
    let cfg = SpectrumConfig {
        slq_sigma: 0.0,
        ..SpectrumConfig::default()
    };
    assert!(cfg
        .validate()
        .unwrap_err()
        .to_string()
        .contains("slq-sigma"));
    // Over the work budget the exact Hessian is refused.
    let task = small_task();
    let p = Params::zeros(&task);
    let e = hessian_spectrum(&task, &p, &SpectrumConfig::default(), 1.0).unwrap_err();
    assert!(e.is_bad_input(), "{e}");
}
