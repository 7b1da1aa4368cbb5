//! Properties of the exact limit risk (`feature_collapse::limit`): gradient against
//! finite differences, Gray-code enumeration against the naive one, the
//! invariances of docs/theory.md §5, the value at zero weights, the budget check,
//! and the exact Hessian-vector product (against extrapolated central
//! differences of the gradient, symmetric, linear).

use feature_collapse::limit::{self, check_budget, risk, risk_grad, risk_naive};
use feature_collapse::network::{standard_normal, Params};
use feature_collapse::task::{Freq, Task, TaskConfig};
use feature_collapse::Error;
use nalgebra::DMatrix;
use proptest::prelude::*;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::time::{Duration, Instant};

/// A random small instance, kept as plain numbers so proptest can shrink it.
#[derive(Debug, Clone)]
struct Spec {
    n_c: usize,
    s_c: usize,
    len: usize,
    dim: usize,
    /// `None`: full latent set.
    classes: Option<usize>,
    /// 0: no LayerNorm, 1: eps = 0, 2: eps = 1e-5.
    ln: u8,
    zipf: bool,
    lambda_w: f64,
    lambda_u: f64,
    scale: f64,
    seed: u64,
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        2usize..=3,
        1usize..=3,
        1usize..=3,
        2usize..=4,
        prop_oneof![Just(None), (1usize..=6).prop_map(Some)],
        0u8..=2,
        any::<bool>(),
        0.0f64..0.1,
        0.0f64..0.1,
        0.3f64..1.5,
        any::<u64>(),
    )
        .prop_map(
            |(n_c, s_c, len, dim, classes, ln, zipf, lambda_w, lambda_u, scale, seed)| Spec {
                n_c,
                s_c,
                len,
                dim,
                classes,
                ln,
                zipf,
                lambda_w,
                lambda_u,
                scale,
                seed,
            },
        )
}

impl Spec {
    fn eps(&self) -> Option<f64> {
        match self.ln {
            0 => None,
            1 => Some(0.0),
            _ => Some(1e-5),
        }
    }

    fn task(&self) -> Task {
        let ln = self.eps();
        let min_d = if ln.is_some() { self.n_c } else { self.n_c - 1 };
        TaskConfig {
            n_c: self.n_c,
            s_c: self.s_c,
            len: self.len,
            dim: self.dim.max(min_d),
            // a drawn latent set has between 2 and n_c^L classes
            classes: self
                .classes
                .map(|k| k.clamp(2, self.n_c.pow(self.len as u32))),
            freq: if self.zipf {
                Freq::Zipf { exponent: 1.0 }
            } else {
                Freq::Uniform
            },
            layer_norm: ln,
            norm: None,
            lambda_affine: None,
            lambda_w: self.lambda_w,
            lambda_u: self.lambda_u,
            seed: self.seed,
            latent: None,
        }
        .build()
        .unwrap()
    }

    fn rng(&self) -> ChaCha8Rng {
        ChaCha8Rng::seed_from_u64(self.seed ^ 0x5eed)
    }

    fn params(&self, task: &Task) -> Params {
        Params::random(task, self.scale, &mut self.rng())
    }
}

/// Smallest (biased) standard deviation of a row of `W`: LayerNorm is only smooth
/// away from constant rows.
fn min_row_std(p: &Params) -> f64 {
    p.w.chunks(p.dim)
        .map(|row| {
            let d = row.len() as f64;
            let m = row.iter().sum::<f64>() / d;
            (row.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / d).sqrt()
        })
        .fold(f64::INFINITY, f64::min)
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-300)
}

fn assert_close(a: f64, b: f64, tol: f64, what: &str) -> Result<(), TestCaseError> {
    prop_assert!(rel(a, b) <= tol, "{what}: {a} vs {b} (rel {:e})", rel(a, b));
    Ok(())
}

fn check_fd(task: &Task, p: &Params) -> Result<(), TestCaseError> {
    let (r0, g) = risk_grad(task, p);
    prop_assert!(rel(r0, risk(task, p)) == 0.0, "risk_grad and risk disagree");
    let x0 = p.to_flat();
    prop_assert_eq!(g.len(), x0.len());
    let h = 1e-5;
    for i in 0..x0.len() {
        let mut xp = x0.clone();
        xp[i] += h;
        let mut xm = x0.clone();
        xm[i] -= h;
        let fd = (risk(task, &p.with_flat(&xp)) - risk(task, &p.with_flat(&xm))) / (2.0 * h);
        prop_assert!(
            (fd - g[i]).abs() <= 1e-6 * (1.0 + g[i].abs()),
            "coordinate {i}: finite difference {fd} vs gradient {}",
            g[i]
        );
    }
    Ok(())
}

/// A random permutation of `0..n`.
fn perm(n: usize, rng: &mut ChaCha8Rng) -> Vec<usize> {
    let mut v: Vec<usize> = (0..n).collect();
    v.shuffle(rng);
    v
}

/// Applies the `d x d` matrix `q` to every `w_t` and every `u_{j,l}`.
fn map_all(p: &Params, q: &DMatrix<f64>) -> Params {
    let d = p.dim;
    let apply = |v: &[f64]| -> Vec<f64> {
        (0..d)
            .map(|r| (0..d).map(|c| q[(r, c)] * v[c]).sum())
            .collect()
    };
    let mut out = p.clone();
    out.w = p.w.chunks(d).flat_map(apply).collect();
    out.u = p.u.chunks(d).flat_map(apply).collect();
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// (a) The gradient matches central finite differences.
    #[test]
    fn gradient_matches_finite_differences(s in spec()) {
        let task = s.task();
        let p = s.params(&task);
        // LayerNorm is very curved near constant rows: keep the finite-difference
        // step small against the spread of every row.
        if task.norm().centres() {
            prop_assume!(min_row_std(&p) > 0.2);
        }
        check_fd(&task, &p)?;
    }

    /// (b) The Gray-code enumeration equals the direct one.
    #[test]
    fn gray_code_risk_equals_naive(s in spec()) {
        let task = s.task();
        let p = s.params(&task);
        assert_close(risk(&task, &p), risk_naive(&task, &p), 1e-12, "gray vs naive")?;
    }

    /// (c) Relabelling the concepts (in `z` and in the token rows of `W`).
    #[test]
    fn invariant_under_permuting_concepts(s in spec()) {
        let task = s.task();
        let p = s.params(&task);
        let pi = perm(task.n_c(), &mut s.rng());
        let t2 = task.with_latent(task.z().iter().map(|&a| pi[a]).collect()).unwrap();
        let mut p2 = p.clone();
        let d = p.dim;
        for (a, &pa) in pi.iter().enumerate() {
            for b in 0..task.s_c() {
                let (src, dst) = (task.token(a, b), task.token(pa, b));
                p2.w[dst * d..(dst + 1) * d].copy_from_slice(p.w_row(src));
            }
        }
        assert_close(risk(&t2, &p2), risk(&task, &p), 1e-12, "concepts")?;
    }

    /// (c) Permuting the positions (columns of `z` and blocks of `U`).
    #[test]
    fn invariant_under_permuting_positions(s in spec()) {
        let task = s.task();
        let p = s.params(&task);
        let (len, d) = (task.len(), task.dim());
        let sigma = perm(len, &mut s.rng());
        let mut z2 = task.z().to_vec();
        let mut p2 = p.clone();
        for k in 0..task.k() {
            for (l, &sl) in sigma.iter().enumerate() {
                z2[k * len + l] = task.z()[k * len + sl];
                let dst = (k * len + l) * d;
                p2.u[dst..dst + d].copy_from_slice(p.u_block(k, sl));
            }
        }
        let t2 = task.with_latent(z2).unwrap();
        assert_close(risk(&t2, &p2), risk(&task, &p), 1e-12, "positions")?;
    }

    /// (c) Permuting the classes (rows of `z` and rows of `U`).
    #[test]
    fn invariant_under_permuting_classes(s in spec()) {
        let task = s.task();
        let p = s.params(&task);
        let (len, row) = (task.len(), task.len() * task.dim());
        let pi = perm(task.k(), &mut s.rng());
        let mut z2 = task.z().to_vec();
        let mut p2 = p.clone();
        for (k, &j) in pi.iter().enumerate() {
            z2[j * len..(j + 1) * len].copy_from_slice(task.z_of(k));
            p2.u[j * row..(j + 1) * row].copy_from_slice(&p.u[k * row..(k + 1) * row]);
        }
        let t2 = task.with_latent(z2).unwrap();
        assert_close(risk(&t2, &p2), risk(&task, &p), 1e-12, "classes")?;
    }

    /// (c) Permuting the tokens inside each concept when `mu` is uniform.
    #[test]
    fn invariant_under_permuting_tokens_with_uniform_mu(s in spec()) {
        let task = Spec { zipf: false, ..s.clone() }.task();
        let p = s.params(&task);
        let d = task.dim();
        let mut rng = s.rng();
        let mut p2 = p.clone();
        for a in 0..task.n_c() {
            let tau = perm(task.s_c(), &mut rng);
            for (b, &tb) in tau.iter().enumerate() {
                let (src, dst) = (task.token(a, b), task.token(a, tb));
                p2.w[dst * d..(dst + 1) * d].copy_from_slice(p.w_row(src));
            }
        }
        assert_close(risk(&task, &p2), risk(&task, &p), 1e-12, "tokens")?;
    }

    /// (c) Any orthogonal map of R^d applied to every `w_t` and `u_{j,l}`
    /// (without LayerNorm).
    #[test]
    fn invariant_under_orthogonal_maps(s in spec()) {
        let task = Spec { ln: 0, ..s.clone() }.task();
        let p = s.params(&task);
        let d = task.dim();
        let mut rng = s.rng();
        let m = DMatrix::from_fn(d, d, |_, _| standard_normal(&mut rng));
        let q = m.qr().q();
        let err = (q.transpose() * &q - DMatrix::identity(d, d)).norm();
        prop_assert!(err < 1e-13);
        assert_close(risk(&task, &map_all(&p, &q)), risk(&task, &p), 1e-12, "orthogonal")?;
    }

    /// (c) With LayerNorm: orthogonal maps fixing `1_d` (a Householder reflection
    /// in a vector orthogonal to `1_d`, after a permutation of the coordinates).
    #[test]
    fn invariant_under_orthogonal_maps_fixing_ones_with_layer_norm(
        s in spec(),
        eps_zero in any::<bool>(),
    ) {
        let task = Spec { ln: if eps_zero { 1 } else { 2 }, ..s.clone() }.task();
        let p = s.params(&task);
        if eps_zero {
            prop_assume!(min_row_std(&p) > 1e-3);
        }
        let d = task.dim();
        let mut rng = s.rng();
        let mut v: Vec<f64> =
            (0..d).map(|_| standard_normal(&mut rng)).collect();
        let mean = v.iter().sum::<f64>() / d as f64;
        v.iter_mut().for_each(|x| *x -= mean);
        let vv: f64 = v.iter().map(|x| x * x).sum();
        prop_assume!(vv > 1e-3);
        let house = DMatrix::from_fn(d, d, |r, c| {
            f64::from(u8::from(r == c)) - 2.0 * v[r] * v[c] / vv
        });
        let sigma = perm(d, &mut rng);
        let permutation = DMatrix::from_fn(d, d, |r, c| f64::from(u8::from(sigma[r] == c)));
        let q = house * permutation;
        let ones = DMatrix::from_element(d, 1, 1.0);
        prop_assert!((&q * &ones - &ones).norm() < 1e-13);
        assert_close(risk(&task, &map_all(&p, &q)), risk(&task, &p), 1e-12, "orthogonal, LN")?;
    }

    /// (c) LayerNorm (eps = 0) forgets the scale and mean of every `w_t`:
    /// `w_t -> c_t w_t + s_t 1_d`, `c_t > 0` (no weight decay on `W`, which would
    /// see the change).
    #[test]
    fn layer_norm_is_scale_and_shift_invariant(s in spec()) {
        let task = Spec { ln: 1, lambda_w: 0.0, ..s.clone() }.task();
        let p = s.params(&task);
        prop_assume!(min_row_std(&p) > 1e-3);
        let mut rng = s.rng();
        let mut p2 = p.clone();
        for row in p2.w.chunks_mut(task.dim()) {
            let c = 0.25 + 3.0 * rand::RngExt::random::<f64>(&mut rng);
            let shift = 4.0 * rand::RngExt::random::<f64>(&mut rng) - 2.0;
            row.iter_mut().for_each(|x| *x = c * *x + shift);
        }
        assert_close(risk(&task, &p2), risk(&task, &p), 1e-12, "scale and shift")?;
    }

    /// (d) At all-zero weights every score is 0, so `R = log K` (up to the
    /// round-off of summing the weights `P(beta)`); exactly 0 for `K = 1`.
    #[test]
    fn risk_at_zero_weights_is_log_k(s in spec()) {
        // LayerNorm of a zero row is 0/0 with eps = 0: use eps > 0 or none.
        let task = Spec { ln: if s.ln == 1 { 2 } else { s.ln }, ..s.clone() }.task();
        let p = Params::zeros(&task);
        let r = risk(&task, &p);
        let log_k = (task.k() as f64).ln();
        if task.k() == 1 {
            prop_assert_eq!(r, 0.0);
        } else {
            prop_assert!(rel(r, log_k) <= 4.0 * f64::EPSILON, "{r} vs log K = {log_k}");
        }
        prop_assert_eq!(risk_grad(&task, &p).0, r);
    }
}

/// A direction with standard normal entries.
fn direction(task: &Task, rng: &mut ChaCha8Rng) -> Vec<f64> {
    (0..task.n_params()).map(|_| standard_normal(rng)).collect()
}

/// `H v` by central differences of the exact gradient along `v`, Richardson
/// extrapolated: `(4 D(h/2) - D(h)) / 3` with `D(h) = (g(x + h v) - g(x - h v)) / (2h)`,
/// truncation `O(h^4)`, `h = 2e-3 / max(1, ||v||_inf)`.
fn hvp_richardson(task: &Task, p: &Params, v: &[f64]) -> Vec<f64> {
    let x0 = p.to_flat();
    let h = 2e-3 / v.iter().fold(1.0f64, |m, x| m.max(x.abs()));
    let diff = |h: f64| -> Vec<f64> {
        let at = |sign: f64| {
            let x: Vec<f64> = x0.iter().zip(v).map(|(a, b)| a + sign * h * b).collect();
            risk_grad(task, &p.with_flat(&x)).1
        };
        let (gp, gm) = (at(1.0), at(-1.0));
        gp.iter()
            .zip(&gm)
            .map(|(a, b)| (a - b) / (2.0 * h))
            .collect()
    };
    let (d1, d2) = (diff(h), diff(h / 2.0));
    d2.iter()
        .zip(&d1)
        .map(|(a, b)| (4.0 * a - b) / 3.0)
        .collect()
}

/// `max_i |a_i - b_i|` and `max_i |b_i|`.
fn max_diff(a: &[f64], b: &[f64]) -> (f64, f64) {
    let d = a
        .iter()
        .zip(b)
        .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()));
    (d, b.iter().fold(0.0f64, |m, x| m.max(x.abs())))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// (f) The exact Hessian-vector product equals extrapolated central
    /// differences of the exact gradient (truncation `O(h^4)`, about `1e-11`
    /// relative here), full and drawn latent sets, with and without LayerNorm.
    #[test]
    fn hessian_vector_product_matches_finite_differences(s in spec()) {
        let task = s.task();
        let p = s.params(&task);
        if !task.norm().is_none() {
            prop_assume!(min_row_std(&p) > 0.2);
        }
        let v = direction(&task, &mut s.rng());
        let exact = limit::hessian_vector_product(&task, &p, &v);
        let fd = hvp_richardson(&task, &p, &v);
        let (d, scale) = max_diff(&exact, &fd);
        // Largest seen over 400 random cases: 4.5e-11 (LayerNorm, eps = 0).
        prop_assert!(d <= 1e-9 * scale.max(1e-3), "max difference {d:e}, max |Hv| {scale:e}");
    }

    /// (g) `x^T H v = v^T H x` and `H (a x + b v) = a H x + b H v`, to round-off.
    #[test]
    fn hessian_vector_product_is_symmetric_and_linear(s in spec(), a in -2.0f64..2.0, b in -2.0f64..2.0) {
        let task = s.task();
        let p = s.params(&task);
        let mut rng = s.rng();
        let (x, v) = (direction(&task, &mut rng), direction(&task, &mut rng));
        let op = limit::HessianOperator::new(&task, &p);
        let (hx, hv) = (op.apply(&x), op.apply(&v));
        let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
        let abs_dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| (x * y).abs()).sum::<f64>();
        let (xhv, vhx) = (dot(&x, &hv), dot(&v, &hx));
        let size = abs_dot(&x, &hv).max(abs_dot(&v, &hx)).max(1e-300);
        prop_assert!((xhv - vhx).abs() <= 1e-12 * size, "{xhv} vs {vhx}");
        let comb: Vec<f64> = x.iter().zip(&v).map(|(p, q)| a * p + b * q).collect();
        let lin: Vec<f64> = hx.iter().zip(&hv).map(|(p, q)| a * p + b * q).collect();
        let (d, _) = max_diff(&op.apply(&comb), &lin);
        let size = hx.iter().zip(&hv).fold(0.0f64, |m, (p, q)| m.max(p.abs() + q.abs()));
        prop_assert!(d <= 1e-12 * 2.0 * size.max(1e-300), "linearity: {d:e} vs {size:e}");
    }
}

/// (a) also across refresh blocks: `s_c^L = 729 > REFRESH`, so the score vector
/// is rebuilt and the prefix sums restarted several times per class.
#[test]
fn gradient_matches_finite_differences_across_refresh_blocks() {
    assert!(3usize.pow(6) > limit::REFRESH);
    for (ln, zipf) in [(0u8, true), (2, false)] {
        let s = Spec {
            n_c: 2,
            s_c: 3,
            len: 6,
            dim: 2,
            classes: Some(3),
            ln,
            zipf,
            lambda_w: 0.01,
            lambda_u: 0.02,
            scale: 0.8,
            seed: 9,
        };
        let task = s.task();
        check_fd(&task, &s.params(&task)).unwrap();
        assert!(
            rel(
                risk(&task, &s.params(&task)),
                risk_naive(&task, &s.params(&task))
            ) < 1e-13
        );
    }
}

/// (e) `check_budget` refuses huge instances at once (no enumeration, no
/// allocation), including `s_c^L` beyond `usize` and beyond f64.
#[test]
fn check_budget_refuses_huge_instances_quickly() {
    let cfg = |s_c: usize, len: usize, dim: usize, classes: usize| TaskConfig {
        n_c: 2,
        s_c,
        len,
        dim,
        classes: Some(classes),
        ..Default::default()
    };
    let small = cfg(2, 3, 2, 4).build().unwrap();
    assert!(check_budget(&small, limit::DEFAULT_WORK_BUDGET).is_ok());
    let cases = [
        cfg(1000, 12, 2, 1000),   // s_c^L = 1e36
        cfg(1 << 20, 80, 2, 10),  // s_c^L = 2^1600: infinite in f64
        cfg(1_000_000, 6, 2, 64), // under an unlimited work budget, the tables need > 2 GiB
    ];
    for (i, c) in cases.into_iter().enumerate() {
        let task = c.build().unwrap();
        if i == 1 {
            assert!(limit::work(&task).is_infinite());
        }
        let t0 = Instant::now();
        let budget = if i == 2 {
            f64::MAX
        } else {
            limit::DEFAULT_WORK_BUDGET
        };
        let res = check_budget(&task, budget);
        assert!(t0.elapsed() < Duration::from_millis(50));
        match res {
            Err(e @ Error::OverBudget { .. }) => {
                assert_eq!(feature_collapse::cli::exit_code(&e), 2)
            }
            other => panic!("expected OverBudget for {c:?}, got {other:?}"),
        }
    }
}
