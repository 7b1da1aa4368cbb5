use super::*;
use crate::collapse::{self, Form};
use crate::task::{Freq, TaskConfig};

const S3: f64 = 1.732_050_807_568_877_2; // sqrt(3)

/// Unit vectors at 0, 120 and 240 degrees: a simplex ETF of 3 classes in R^2.
fn triangle() -> Vec<Vec<f64>> {
    (0..3)
        .map(|k| {
            let a = k as f64 * std::f64::consts::TAU / 3.0;
            vec![a.cos(), a.sin()]
        })
        .collect()
}

/// Rows `means[c] + offsets[j]` for every class `c` and offset `j`, with labels.
fn around(means: &[Vec<f64>], offsets: &[Vec<f64>]) -> (Vec<f64>, Vec<usize>) {
    let mut rows = Vec::new();
    let mut labels = Vec::new();
    for (c, m) in means.iter().enumerate() {
        for o in offsets {
            rows.extend(m.iter().zip(o).map(|(a, b)| a + b));
            labels.push(c);
        }
    }
    (rows, labels)
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol
}

#[test]
fn exact_simplex_etf_with_self_dual_classifier() {
    // Regular tetrahedron: 4 unit vectors in R^3 with pairwise cosines -1/3.
    let m: Vec<Vec<f64>> = [
        [1.0, 1.0, 1.0],
        [1.0, -1.0, -1.0],
        [-1.0, 1.0, -1.0],
        [-1.0, -1.0, 1.0],
    ]
    .iter()
    .map(|v| v.iter().map(|x| x / S3).collect())
    .collect();
    let (rows, labels) = around(&m, &vec![vec![0.0; 3]; 3]);
    let v = nc_from_samples(&rows, 3, &labels, None, 4, Some(&m));
    assert_eq!((v.classes, v.dim, v.sigma_b_rank), (4, 3, 3));
    assert!(v.nc1.abs() < 1e-28, "{v:?}");
    for x in [
        v.nc2_norm_cv_means,
        v.nc2_cos_std_means,
        v.nc2_cos_shift_means,
    ] {
        assert!(x.abs() < 1e-14, "{v:?}");
    }
    assert!(v.nc2_norm_cv_classifier.unwrap() < 1e-14);
    assert!(v.nc2_cos_shift_classifier.unwrap() < 1e-14);
    assert!(v.nc3.unwrap() < 1e-14);
    assert_eq!(v.nc4, Some(1.0));
    // A common offset of all features changes neither NC1 nor NC2.
    let shifted: Vec<f64> = rows
        .iter()
        .enumerate()
        .map(|(i, x)| x + [2.0, -1.0, 0.5][i % 3])
        .collect();
    let s = nc_from_samples(&shifted, 3, &labels, None, 4, None);
    assert!(
        s.nc1.abs() < 1e-26 && s.nc2_cos_shift_means < 1e-14,
        "{s:?}"
    );
    assert_eq!(s.nc3, None);
}

#[test]
fn perturbed_etf_has_the_values_computed_by_hand() {
    // Samples m_k +- eps e_1: Sigma_B = I/2 (so Sigma_B^+ = 2 I), Sigma_W = eps^2 e_1 e_1^T,
    // NC1 = tr(2 eps^2 e_1 e_1^T)/3 = 2 eps^2 / 3.
    let m = triangle();
    let eps = 0.1;
    let (rows, labels) = around(&m, &[vec![eps, 0.0], vec![-eps, 0.0]]);
    // Classifier: the means with the third row doubled. Norms (1, 1, 2): mean 4/3,
    // unbiased std 1/sqrt(3), CV sqrt(3)/4; cosines unchanged (deviation 0);
    // NC3^2 = 2 (1/sqrt(6) - 1/sqrt(3))^2 + (2/sqrt(6) - 1/sqrt(3))^2.
    let mut w = m.clone();
    w[2].iter_mut().for_each(|x| *x *= 2.0);
    let v = nc_from_samples(&rows, 2, &labels, None, 3, Some(&w));
    assert!(close(v.nc1, 2.0 * eps * eps / 3.0, 1e-15), "{}", v.nc1);
    assert_eq!(v.sigma_b_rank, 2);
    assert!(v.nc2_cos_shift_means < 1e-15 && v.nc2_norm_cv_means < 1e-15);
    assert!(close(v.nc2_norm_cv_classifier.unwrap(), S3 / 4.0, 1e-15));
    assert!(v.nc2_cos_std_classifier.unwrap() < 1e-15);
    let (a, b) = (1.0 / 6f64.sqrt(), 1.0 / S3);
    let nc3 = (2.0 * (a - b).powi(2) + (2.0 * a - b).powi(2)).sqrt();
    assert!(close(v.nc3.unwrap(), nc3, 1e-15), "{:?} vs {nc3}", v.nc3);
    assert_eq!(v.nc4, Some(1.0));
    // Classifier rows at 0, 90 and 180 degrees: cosines (0, -1, 0), mean -1/3,
    // unbiased std 1/sqrt(3); mean |cos + 1/2| = 1/2.
    let w = vec![vec![1.0, 0.0], vec![0.0, 1.0], vec![-1.0, 0.0]];
    let v = nc_from_samples(&rows, 2, &labels, None, 3, Some(&w));
    assert!(close(v.nc2_cos_std_classifier.unwrap(), 1.0 / S3, 1e-15));
    assert!(close(v.nc2_cos_shift_classifier.unwrap(), 0.5, 1e-15));
}

#[test]
fn rank_deficient_between_class_covariance() {
    // Collinear means -e1, 0, e1: Sigma_B = (2/3) e1 e1^T has rank 1 and
    // Sigma_B^+ = (3/2) e1 e1^T. Samples mean +- (delta e1 + eps e2) give
    // Sigma_W = (delta, eps)(delta, eps)^T, so NC1 = (3/2) delta^2 / 3 = delta^2 / 2,
    // whatever eps (variation outside the span of the means is not counted).
    let m = vec![vec![-1.0, 0.0, 0.0], vec![0.0; 3], vec![1.0, 0.0, 0.0]];
    let delta = 0.3;
    for eps in [0.0, 0.7, 5.0] {
        let o = vec![delta, eps, 0.0];
        let (rows, labels) = around(&m, &[o.clone(), o.iter().map(|x| -x).collect()]);
        let v = nc_from_samples(&rows, 3, &labels, None, 3, None);
        assert_eq!(v.sigma_b_rank, 1);
        assert!(
            close(v.nc1, delta * delta / 2.0, 1e-14),
            "eps {eps}: {}",
            v.nc1
        );
        // Norms (1, 0, 1): CV = (1/sqrt 3)/(2/3); cosines (0, -1, 0) as above.
        assert!(close(v.nc2_norm_cv_means, S3 / 2.0, 1e-14));
        assert!(close(v.nc2_cos_std_means, 1.0 / S3, 1e-14));
        assert!(close(v.nc2_cos_shift_means, 0.5, 1e-14));
    }
}

#[test]
fn nearest_class_centre_disagreement_by_hand() {
    // Means (-1, 0), (1, 0); the classifier w = (-1, 1), (1, -1) predicts class 2 iff
    // x > y, the nearest centre iff x > 0. Of (-1, 2), (-1, -2), (1, 2), (1, -2), the
    // second and the third disagree: NC4 = 1/2.
    let (rows, labels) = around(
        &[vec![-1.0, 0.0], vec![1.0, 0.0]],
        &[vec![0.0, 2.0], vec![0.0, -2.0]],
    );
    let w = vec![vec![-1.0, 1.0], vec![1.0, -1.0]];
    let v = nc_from_samples(&rows, 2, &labels, None, 2, Some(&w));
    assert_eq!(v.nc4, Some(0.5));
    // Two classes: the centred means are antipodal, so equiangular by construction;
    // the within-class spread is orthogonal to them: NC1 = 0.
    assert!(v.nc2_cos_std_means == 0.0 && v.nc2_cos_shift_means < 1e-15);
    assert!(v.nc1.abs() < 1e-15);
}

fn task(freq: Freq, classes: Option<usize>) -> Task {
    TaskConfig {
        n_c: 3,
        s_c: 3,
        len: 2,
        dim: 3,
        freq,
        classes,
        seed: 2,
        ..TaskConfig::default()
    }
    .build()
    .unwrap()
}

#[test]
fn class_features_closed_form_equals_the_enumerated_sentences() {
    use rand::SeedableRng;
    for t in [
        task(Freq::Zipf { exponent: 1.0 }, None),
        task(Freq::Uniform, Some(5)),
    ] {
        let p = Params::random(&t, 0.8, &mut rand_chacha::ChaCha8Rng::seed_from_u64(9));
        let phi = features(&p, t.norm());
        let (d, len) = (t.dim(), t.len());
        // Every sentence of every class, weight prod_l mu_{beta_l}.
        let (mut rows, mut labels, mut weights) = (Vec::new(), Vec::new(), Vec::new());
        for c in 0..t.k() {
            for b0 in 0..t.s_c() {
                for b1 in 0..t.s_c() {
                    let z = t.z_of(c);
                    for (a, b) in [(z[0], b0), (z[1], b1)] {
                        rows.extend_from_slice(&phi[t.token(a, b) * d..][..d]);
                    }
                    labels.push(c);
                    weights.push(t.mu()[b0] * t.mu()[b1]);
                }
            }
        }
        let u: Vec<Vec<f64>> = p.u.chunks(len * d).map(<[f64]>::to_vec).collect();
        let brute = nc_from_samples(&rows, len * d, &labels, Some(&weights), t.k(), Some(&u));
        let nc = nc_metrics(&t, &p, 1000, 0);
        let c = &nc.classes;
        assert!(nc.nc4_exact && nc.nc4_sentences == t.k() * 9);
        assert!(
            close(c.nc1, brute.nc1, 1e-10 * brute.nc1),
            "{} vs {}",
            c.nc1,
            brute.nc1
        );
        assert!(close(c.nc4.unwrap(), brute.nc4.unwrap(), 1e-12));
        assert!(close(c.nc3.unwrap(), brute.nc3.unwrap(), 1e-12));
        assert!(close(
            c.nc2_cos_shift_means,
            brute.nc2_cos_shift_means,
            1e-12
        ));
        assert_eq!(c.sigma_b_rank, brute.sigma_b_rank);
    }
}

#[test]
fn sampled_nc4_agrees_with_the_enumeration() {
    use rand::SeedableRng;
    // K s_c^L = 27 * 125 = 3375 sentences: exact with 10 000, sampled with 3000.
    let t = TaskConfig {
        n_c: 3,
        s_c: 5,
        len: 3,
        dim: 3,
        freq: Freq::Zipf { exponent: 1.0 },
        ..TaskConfig::default()
    }
    .build()
    .unwrap();
    let p = Params::random(&t, 0.8, &mut rand_chacha::ChaCha8Rng::seed_from_u64(5));
    let exact = nc_metrics(&t, &p, 10_000, 0);
    assert!(exact.nc4_exact && exact.nc4_sentences == 3375);
    let s = nc_metrics(&t, &p, 3000, 3);
    assert!(!s.nc4_exact && s.nc4_sentences == 27 * 112);
    // Within 5 binomial standard errors; the rest is unchanged by the sampling.
    let q = exact.classes.nc4.unwrap();
    let se = (q * (1.0 - q) / s.nc4_sentences as f64).sqrt().max(1e-3);
    assert!(
        close(s.classes.nc4.unwrap(), q, 5.0 * se),
        "{:?} vs {q}",
        s.classes.nc4
    );
    assert!(q > 0.0 && q < 1.0, "{q}");
    assert_eq!(s.classes.nc1, exact.classes.nc1);
    assert_eq!(s, nc_metrics(&t, &p, 3000, 3));
}

#[test]
fn collapsed_configuration_on_the_full_latent_set() {
    // Type I on Z = [3]^2: tokens collapse to a simplex frame (NC1 = NC2 = 0). Class
    // means (a f_{z_1}, a f_{z_2}) with U = (b/a) M: NC1 = NC3 = 0, NC4 = 1, equinorm, but
    // cos(m_j, m_k) = (1/2)(shared - (2 - shared)/2): 1/4 for one shared position,
    // -1/2 for none, 4 partners of each kind out of 8. The mean |cos + 1/8| is 3/8 and
    // the 36 pairs, half at each value, have unbiased std (3/8) sqrt(36/35).
    let t = task(Freq::Uniform, None);
    let pred = collapse::predict(&t, Form::Full).unwrap();
    let frame = collapse::equiangular_frame(3, 3, false).unwrap();
    let p = collapse::build(&t, &pred, &frame);
    let nc = nc_metrics(&t, &p, 1000, 0);
    let tk = &nc.tokens;
    assert_eq!((tk.classes, tk.dim, tk.sigma_b_rank), (3, 3, 2));
    assert!(
        tk.nc1.abs() < 1e-20 && tk.nc2_norm_cv_means < 1e-12 && tk.nc2_cos_shift_means < 1e-12,
        "{tk:?}"
    );
    assert_eq!((tk.nc3, tk.nc4), (None, None));
    let c = &nc.classes;
    assert_eq!((c.classes, c.dim), (9, 6));
    assert!(c.nc1.abs() < 1e-20, "{c:?}");
    assert!(c.nc3.unwrap() < 1e-12 && c.nc4 == Some(1.0), "{c:?}");
    assert!(c.nc2_norm_cv_means < 1e-12 && c.nc2_norm_cv_classifier.unwrap() < 1e-12);
    assert!(close(c.nc2_cos_shift_means, 0.375, 1e-12));
    assert!(close(
        c.nc2_cos_std_means,
        0.375 * (36.0f64 / 35.0).sqrt(),
        1e-12
    ));
    assert!(close(c.nc2_cos_shift_classifier.unwrap(), 0.375, 1e-12));
}
