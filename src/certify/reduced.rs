//! Proofs about the reduced objective of the full latent set (docs/certificate.md
//! §2): an interval Newton (Krawczyk) test that a narrow box around the candidate
//! constants holds exactly one critical point, and a branch and bound that this
//! critical point is the reduced objective's global minimiser.
//!
//! The reduced objectives, with `z_beta = ln(n_c - 1) - kappa b rho_beta`:
//!
//! - types I/III (no normalisation), variables `x = (r_1 .. r_{s_c}, b)`:
//!   `F(r, b) = L sum_beta mu_beta softplus(z_beta) + (lambda_W/2) n_c sum_beta r_beta^2
//!   + (lambda_U/2) K L b^2`, `rho_beta = r_beta` (type I is the case of equal `r`);
//! - type II (LayerNorm, `lambda_W = 0`), variable `x = (b)`:
//!   `F(b) = L softplus(ln(n_c - 1) - kappa sqrt(d) b) + (lambda_U/2) K L b^2`.
//!
//! With `sigma_beta = logistic(z_beta)` and `tau_beta = sigma_beta (1 - sigma_beta)`:
//! `dF/dr_beta = -L kappa mu_beta b sigma_beta + lambda_W n_c r_beta`,
//! `dF/db = -L kappa sum_beta mu_beta r_beta sigma_beta + lambda_U K L b`,
//! `d2F/dr_beta^2 = L kappa^2 mu_beta b^2 tau_beta + lambda_W n_c`,
//! `d2F/dr_beta db = -L kappa mu_beta (sigma_beta - kappa b r_beta tau_beta)`,
//! `d2F/db^2 = L kappa^2 sum_beta mu_beta r_beta^2 tau_beta + lambda_U K L`.

use super::ival::{iv, logistic, logistic_slope, pt, softplus, sum, verified_min_eig, zero, I};
use crate::task::Task;
use nalgebra::DMatrix;

/// The reduced objective of one instance, in exact (interval) constants.
pub struct Reduced {
    /// `L`, `kappa`, `ln(n_c - 1)`, `n_c`, `K`, `lambda_W`, `lambda_U`.
    len: I,
    kappa: I,
    ln_nc1: I,
    n_c: I,
    k: I,
    lambda_w: I,
    lambda_u: I,
    /// `mu_beta` (types I/III), or the single weight 1 (type II).
    mu: Vec<I>,
    /// `Some(sqrt(d))` for type II (LayerNorm).
    rho: Option<I>,
}

/// The outcome of the reduced proofs.
#[derive(Debug, Clone)]
pub struct ReducedProof {
    /// The Krawczyk box: exactly one critical point of `F` lies in it.
    pub critical_box: Vec<I>,
    /// `F` over the Krawczyk box: encloses the reduced optimum `R*`.
    pub risk: I,
    /// Largest relative width of the box's entries and of `risk`.
    pub rel_width: f64,
    /// Boxes examined by the branch and bound (0 when it did not run).
    pub boxes: usize,
    /// Radius (relative) of the convex region around the candidate.
    pub convex_radius: f64,
    /// `None` when proved; else the step that failed, with its numbers.
    pub failure: Option<String>,
}

/// Largest number of boxes the branch and bound may examine.
pub const MAX_BOXES: usize = 2_000_000;

impl Reduced {
    /// The reduced objective of `task` (full latent set), exact frequencies `mu`
    /// (types I/III) or type II when `layer_norm` is true.
    pub fn new(task: &Task, mu: Vec<I>, layer_norm: bool) -> Self {
        let n_c = pt(task.n_c() as f64);
        Reduced {
            len: pt(task.len() as f64),
            kappa: n_c / (n_c - pt(1.0)),
            ln_nc1: (n_c - pt(1.0)).ln(),
            n_c,
            k: pt(task.k() as f64),
            lambda_w: pt(task.lambda_w()),
            lambda_u: pt(task.lambda_u()),
            mu: if layer_norm { vec![pt(1.0)] } else { mu },
            rho: layer_norm.then(|| pt(task.dim() as f64).sqrt()),
        }
    }

    /// Number of variables.
    pub fn dim(&self) -> usize {
        if self.rho.is_some() {
            1
        } else {
            self.mu.len() + 1
        }
    }

    /// `(rho_beta, b)` of the point `x`.
    fn split(&self, x: &[I]) -> (Vec<I>, I) {
        let b = x[x.len() - 1];
        match self.rho {
            Some(rho) => (vec![rho], b),
            None => (x[..x.len() - 1].to_vec(), b),
        }
    }

    /// `F(x)`.
    pub fn value(&self, x: &[I]) -> I {
        let (rho, b) = self.split(x);
        let loss = sum(rho
            .iter()
            .zip(&self.mu)
            .map(|(&r, &m)| m * softplus(self.ln_nc1 - self.kappa * b * r)));
        let pen_u = pt(0.5) * self.lambda_u * self.k * self.len * b.sqr();
        let pen_w = match self.rho {
            Some(_) => zero(),
            None => pt(0.5) * self.lambda_w * self.n_c * sum(rho.iter().map(|r| r.sqr())),
        };
        self.len * loss + pen_w + pen_u
    }

    /// `grad F(x)`.
    pub fn grad(&self, x: &[I]) -> Vec<I> {
        let (rho, b) = self.split(x);
        let lk = self.len * self.kappa;
        let mut g = Vec::with_capacity(x.len());
        let mut acc = zero();
        for (&r, &m) in rho.iter().zip(&self.mu) {
            let s = logistic(self.ln_nc1 - self.kappa * b * r);
            if self.rho.is_none() {
                g.push(-lk * m * b * s + self.lambda_w * self.n_c * r);
            }
            acc += m * r * s;
        }
        g.push(-lk * acc + self.lambda_u * self.k * self.len * b);
        g
    }

    /// The Hessian of `F` (row-major, `dim x dim`).
    pub fn hessian(&self, x: &[I]) -> Vec<I> {
        let (rho, b) = self.split(x);
        let n = self.dim();
        let lk = self.len * self.kappa;
        let lkk = lk * self.kappa;
        let mut h = vec![zero(); n * n];
        let mut bb = self.lambda_u * self.k * self.len;
        for (i, (&r, &m)) in rho.iter().zip(&self.mu).enumerate() {
            let z = self.ln_nc1 - self.kappa * b * r;
            let (s, tau) = (logistic(z), logistic_slope(z));
            bb += lkk * m * r.sqr() * tau;
            if self.rho.is_none() {
                h[i * n + i] = lkk * m * b.sqr() * tau + self.lambda_w * self.n_c;
                let cross = -lk * m * (s - self.kappa * b * r * tau);
                h[i * n + n - 1] = cross;
                h[(n - 1) * n + i] = cross;
            }
        }
        h[n * n - 1] = bb;
        h
    }

    /// Krawczyk's test on `grad F` around the float point `c`, then the branch and
    /// bound. The proof establishes: `grad F` has exactly one zero `x*` in
    /// `critical_box`; `F` is strictly convex on a box `C` around it; every
    /// global minimiser of `F` (with `b >= 0` for types I/III, which loses nothing
    /// since `F(r, b) = F(-r, -b)`) lies in `C`; hence `x*` is the global minimiser
    /// (unique up to that sign) and `R* = F(x*)` lies in `risk`.
    pub fn prove(&self, c: &[f64]) -> ReducedProof {
        let mut out = ReducedProof {
            critical_box: c.iter().map(|&v| pt(v)).collect(),
            risk: I::ENTIRE,
            rel_width: f64::INFINITY,
            boxes: 0,
            convex_radius: 0.0,
            failure: None,
        };
        let Some(xbox) = self.krawczyk(c) else {
            out.failure = Some(format!(
                "Krawczyk: no box of relative radius <= 1e-11 around the candidate constants {c:?} \
                 is mapped into itself (the candidate is not a critical point of the reduced objective \
                 to 1e-11, or its Hessian is singular there)"
            ));
            return out;
        };
        let risk = self.value(&xbox);
        out.rel_width = xbox
            .iter()
            .chain(std::iter::once(&risk))
            .map(|v| rel_width(*v))
            .fold(0.0, f64::max);
        out.critical_box = xbox.clone();
        out.risk = risk;
        let Some((cbox, radius)) = self.convex_region(c, &xbox) else {
            out.failure = Some(
                "convexity: the reduced Hessian could not be proved positive definite on any box \
                 around the critical point (a saddle or a maximum of the reduced objective)"
                    .into(),
            );
            return out;
        };
        out.convex_radius = radius;
        match self.branch_and_bound(&cbox, risk.sup()) {
            Ok(n) => out.boxes = n,
            Err((n, why)) => {
                out.boxes = n;
                out.failure = Some(why);
            }
        }
        out
    }

    /// `K(X) = c - Y grad F(c) + (I - Y H(X)) (X - c)` with `Y` the float inverse of
    /// the Hessian at `c`; `Some(X ∩ K(X))` once `K(X)` lies in the interior of
    /// `X = c ± rel |c|` for `rel` in `1e-14 .. 1e-11`.
    fn krawczyk(&self, c: &[f64]) -> Option<Vec<I>> {
        let n = c.len();
        if n != self.dim() || c.iter().any(|v| !v.is_finite()) {
            return None;
        }
        let cp: Vec<I> = c.iter().map(|&v| pt(v)).collect();
        let h0 = self.hessian(&cp);
        let mid = DMatrix::from_fn(n, n, |i, j| h0[i * n + j].mid());
        let y = mid.try_inverse()?;
        let g = self.grad(&cp);
        for rel in [1e-14, 1e-13, 1e-12, 1e-11] {
            let x: Vec<I> = c
                .iter()
                .map(|&v| {
                    let r = rel * v.abs().max(1e-300);
                    pt(v) + iv(-r, r)
                })
                .collect();
            let hx = self.hessian(&x);
            let mut kx = Vec::with_capacity(n);
            for i in 0..n {
                let mut acc = cp[i];
                for j in 0..n {
                    acc -= pt(y[(i, j)]) * g[j];
                }
                for j in 0..n {
                    let mut m = if i == j { pt(1.0) } else { zero() };
                    for l in 0..n {
                        m -= pt(y[(i, l)]) * hx[l * n + j];
                    }
                    acc += m * (x[j] - cp[j]);
                }
                kx.push(acc);
            }
            if kx.iter().zip(&x).all(|(k, xi)| k.interior(*xi)) {
                return Some(
                    kx.iter()
                        .zip(&x)
                        .map(|(k, xi)| k.intersection(*xi))
                        .collect(),
                );
            }
        }
        None
    }

    /// The largest box `c ± rho |c|` (`rho = 1/4, 1/8, ...`, at least the
    /// Krawczyk box) on which the Hessian is proved positive definite.
    fn convex_region(&self, c: &[f64], xbox: &[I]) -> Option<(Vec<I>, f64)> {
        let n = c.len();
        let mut rho = 0.25;
        while rho > 1e-12 {
            let cbox: Vec<I> = c
                .iter()
                .zip(xbox)
                .map(|(&v, xb)| {
                    let r = rho * v.abs().max(1e-300);
                    (pt(v) + iv(-r, r)).convex_hull(*xb)
                })
                .collect();
            if verified_min_eig(&self.hessian(&cbox), n).lower > 0.0 {
                return Some((cbox, rho));
            }
            rho *= 0.5;
        }
        None
    }

    /// Every box of the coercivity domain is either inside the convex region
    /// `cbox`, or `F > upper` on it, or `grad F` has no zero in it. Returns the
    /// number of boxes examined, or the failure.
    fn branch_and_bound(&self, cbox: &[I], upper: f64) -> Result<usize, (usize, String)> {
        // Coercivity: F >= the penalty, so a minimiser has penalty <= upper.
        let up = pt(upper);
        let b_max = (pt(2.0) * up / (self.lambda_u * self.k * self.len))
            .sqrt()
            .sup();
        let mut root: Vec<I> = Vec::new();
        match self.rho {
            Some(_) => root.push(iv(-b_max, b_max)),
            None => {
                let r_max = (pt(2.0) * up / (self.lambda_w * self.n_c)).sqrt().sup();
                root.extend(std::iter::repeat_n(iv(-r_max, r_max), self.mu.len()));
                root.push(iv(0.0, b_max));
            }
        }
        if root.iter().any(|v| !super::ival::is_finite(*v)) {
            return Err((
                0,
                "branch and bound: the coercivity domain is not bounded".into(),
            ));
        }
        let mut stack = vec![root];
        let mut n = 0usize;
        while let Some(bx) = stack.pop() {
            n += 1;
            if n > MAX_BOXES {
                return Err((
                    n,
                    format!(
                        "branch and bound: more than {MAX_BOXES} boxes; the global minimum is not isolated enough to prove"
                    ),
                ));
            }
            if bx.iter().zip(cbox).all(|(a, c)| a.subset(*c)) {
                continue;
            }
            if self.value(&bx).inf() > upper {
                continue;
            }
            if self.grad(&bx).iter().any(|g| !g.contains(0.0)) {
                continue;
            }
            // Bisect the widest coordinate (relative to the convex region's size).
            let (i, _) = bx
                .iter()
                .zip(cbox)
                .map(|(a, c)| a.wid() / c.wid().max(1e-300))
                .enumerate()
                .fold(
                    (0, f64::NEG_INFINITY),
                    |m, (i, w)| if w > m.1 { (i, w) } else { m },
                );
            if bx[i].wid() <= 1e-12 * bx[i].mag().max(1e-300) {
                return Err((
                    n,
                    format!("branch and bound: a box {bx:?} could not be excluded at the resolution limit"),
                ));
            }
            let m = bx[i].mid();
            let mut lo = bx.clone();
            let mut hi = bx;
            lo[i] = iv(lo[i].inf(), m);
            hi[i] = iv(m, hi[i].sup());
            stack.push(lo);
            stack.push(hi);
        }
        Ok(n)
    }
}

/// `wid(x) / |mid(x)|` (`wid` when the midpoint is 0).
pub fn rel_width(x: I) -> f64 {
    let m = x.mid().abs();
    if m > 0.0 {
        x.wid() / m
    } else {
        x.wid()
    }
}
