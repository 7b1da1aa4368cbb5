//! The own kernels against f64 sums, and their independence of the thread count.

use super::*;

/// Deterministic test entries in `[-1, 1)`.
fn fill(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

/// `sum_q a(q) b(q)` in f64, and the bound `sum |a b|` that scales its f32 error.
fn dot(n: usize, f: impl Fn(usize) -> (f32, f32)) -> (f64, f64) {
    (0..n).fold((0.0, 0.0), |(s, m), q| {
        let (a, b) = f(q);
        let p = a as f64 * b as f64;
        (s + p, m + p.abs())
    })
}

/// Shapes with every tile remainder: rows and classes not multiples of 5, inner
/// sizes across the 512-column blocks and the 16-lane masks.
const SHAPES: [(usize, usize, usize); 4] = [(7, 13, 37), (23, 11, 530), (5, 5, 16), (12, 8, 1100)];

#[test]
fn products_match_f64_and_ignore_threads() {
    if !available() {
        eprintln!("no avx512f + avx512vl: own kernels not tested");
        return;
    }
    for &(b, k, ld) in &SHAPES {
        let (x, g, u0) = (fill(b * ld, 1), fill(b * k, 2), fill(k * ld, 3));
        let tol = |m: f64| 1e-6 * m + 1e-30;
        let mut h = vec![0.0; b * k];
        x_ut(&x, &u0, &mut h, b, k, ld, 1);
        for r in 0..b {
            for j in 0..k {
                let (e, m) = dot(ld, |p| (x[r * ld + p], u0[j * ld + p]));
                assert!(
                    (h[r * k + j] as f64 - e).abs() <= tol(m),
                    "x_ut {b} {k} {ld}"
                );
            }
        }
        let mut dx = vec![0.0; b * ld];
        g_u(&g, &u0, &mut dx, b, k, ld, 1);
        for r in 0..b {
            for p in 0..ld {
                let (e, m) = dot(k, |j| (g[r * k + j], u0[j * ld + p]));
                assert!(
                    (dx[r * ld + p] as f64 - e).abs() <= tol(m),
                    "g_u {b} {k} {ld}"
                );
            }
        }
        let (alpha, beta) = (0.75f32, -0.5f32);
        let mut u = u0.clone();
        u_update(&g, &x, &mut u, (b, k, ld), (alpha, beta), (0, ld), 1);
        for j in 0..k {
            for p in 0..ld {
                let (e, m) = dot(b, |r| (g[r * k + j], x[r * ld + p]));
                let e = alpha as f64 * u0[j * ld + p] as f64 + beta as f64 * e;
                let m = (alpha * u0[j * ld + p]).abs() as f64 + 0.5 * m;
                assert!(
                    (u[j * ld + p] as f64 - e).abs() <= tol(m),
                    "update {b} {k} {ld}"
                );
            }
        }
        // Three threads, the fused pass and column pieces: the same bits.
        let mut h3 = vec![0.0; b * k];
        x_ut(&x, &u0, &mut h3, b, k, ld, 3);
        assert_eq!(h, h3);
        let mut dx3 = vec![0.0; b * ld];
        g_u(&g, &u0, &mut dx3, b, k, ld, 3);
        assert_eq!(dx, dx3);
        let (mut u3, mut dxf) = (u0.clone(), vec![0.0; b * ld]);
        g_u_update(&g, &x, &mut u3, &mut dxf, (b, k, ld), (alpha, beta), 3);
        assert_eq!(u, u3);
        assert_eq!(dx, dxf);
        let mut u4 = u0.clone();
        let c = ld / 3;
        u_update(&g, &x, &mut u4, (b, k, ld), (alpha, beta), (c, ld), 2);
        u_update(&g, &x, &mut u4, (b, k, ld), (alpha, beta), (0, c), 1);
        assert_eq!(u, u4);
    }
}

#[test]
fn zero_alpha_does_not_read_u() {
    if !available() {
        eprintln!("no avx512f + avx512vl: own kernels not tested");
        return;
    }
    let (b, k, ld) = (6, 7, 40);
    let (x, g) = (fill(b * ld, 4), fill(b * k, 5));
    let mut u = vec![f32::NAN; k * ld];
    u_update(&g, &x, &mut u, (b, k, ld), (0.0, 2.0), (0, ld), 1);
    for j in 0..k {
        for p in 0..ld {
            let (e, m) = dot(b, |r| (g[r * k + j], x[r * ld + p]));
            assert!((u[j * ld + p] as f64 - 2.0 * e).abs() <= 2e-6 * m + 1e-30);
        }
    }
}
