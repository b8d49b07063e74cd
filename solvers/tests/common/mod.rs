//! A small bilevel problem whose Hessian, cross derivative and ∂y f all depend on y (unlike the
//! F.1 quadratic, where every estimator's output is independent of y): tests that run on it can
//! see a wrong inner step, a wrong warm start of y, or an HVP taken at the wrong iterate.
//!
//! ```text
//! g(x, y) = ½ yᵀAy + c Σ_i logcosh(y_i − (Bx)_i)          (A SPD: g is λ_min(A)-strongly convex)
//! f(x, y) = ½‖y − t‖² + Σ_i logcosh(y_i) + ½ρ‖x‖²
//! ∂y g = Ay + c tanh(y − Bx),   ∂yy g = A + c diag(sech²(y − Bx)),
//! ∂x∂y g·v = −Bᵀ(c sech²(y − Bx) ⊙ v),   ∂y f = y − t + tanh(y),   ∂x f = ρx
//! ```
#![allow(dead_code, clippy::needless_range_loop)]

use bilevel_kernels::{Batch, BilevelProblem, StepBatches};

pub struct LogCosh {
    pub dx: usize,
    pub dy: usize,
    /// A, row-major dy × dy.
    pub a: Vec<f64>,
    /// B, row-major dy × dx.
    pub b: Vec<f64>,
    pub t: Vec<f64>,
    pub c: f64,
    pub rho: f64,
}

/// A deterministic pseudo-random number in [−0.5, 0.5).
fn r(i: usize) -> f64 {
    let z = (i as u64).wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    ((z >> 11) as f64 / (1u64 << 53) as f64) - 0.5
}

impl LogCosh {
    /// A = MMᵀ/dy + µI with κ(A) ≈ 1 + λ_max(MMᵀ/dy)/µ.
    pub fn new(dx: usize, dy: usize, mu: f64) -> Self {
        let m: Vec<f64> = (0..dy * dy).map(|i| r(i) * 2.0).collect();
        let mut a = vec![0.0; dy * dy];
        for i in 0..dy {
            for j in 0..dy {
                a[i * dy + j] = (0..dy).map(|k| m[i * dy + k] * m[j * dy + k]).sum::<f64>() / dy as f64;
            }
            a[i * dy + i] += mu;
        }
        let b = (0..dy * dx).map(|i| 2.0 * r(i + 7919)).collect();
        let t = (0..dy).map(|i| 2.0 * r(i + 104729)).collect();
        Self { dx, dy, a, b, t, c: 1.0, rho: 0.1 }
    }
    fn bx(&self, x: &[f64], out: &mut [f64]) {
        for i in 0..self.dy {
            out[i] = (0..self.dx).map(|j| self.b[i * self.dx + j] * x[j]).sum();
        }
    }
    fn ay(&self, y: &[f64], i: usize) -> f64 {
        (0..self.dy).map(|j| self.a[i * self.dy + j] * y[j]).sum()
    }
    /// sech²(y_i − (Bx)_i) for each i.
    fn sech2(&self, x: &[f64], y: &[f64], i: usize) -> f64 {
        let u = y[i] - (0..self.dx).map(|j| self.b[i * self.dx + j] * x[j]).sum::<f64>();
        1.0 / u.cosh().powi(2)
    }
    pub fn x0(&self) -> Vec<f64> {
        (0..self.dx).map(|i| r(i + 31337)).collect()
    }
}

fn logcosh(u: f64) -> f64 {
    // Stable for large |u|: |u| + ln(1 + e^{−2|u|}) − ln 2.
    u.abs() + (-2.0 * u.abs()).exp().ln_1p() - std::f64::consts::LN_2
}

impl BilevelProblem for LogCosh {
    fn dim_x(&self) -> usize {
        self.dx
    }
    fn dim_y(&self) -> usize {
        self.dy
    }
    fn f(&self, x: &[f64], y: &[f64], _: Batch<'_>) -> f64 {
        let fy: f64 = y.iter().zip(&self.t).map(|(y, t)| 0.5 * (y - t).powi(2) + logcosh(*y)).sum();
        fy + 0.5 * self.rho * x.iter().map(|v| v * v).sum::<f64>()
    }
    fn g(&self, x: &[f64], y: &[f64], _: Batch<'_>) -> f64 {
        let mut bx = vec![0.0; self.dy];
        self.bx(x, &mut bx);
        (0..self.dy).map(|i| 0.5 * y[i] * self.ay(y, i) + self.c * logcosh(y[i] - bx[i])).sum()
    }
    fn grad_x_f(&self, x: &[f64], _: &[f64], _: Batch<'_>, out: &mut [f64]) {
        out.iter_mut().zip(x).for_each(|(o, x)| *o = self.rho * x);
    }
    fn grad_y_f(&self, _: &[f64], y: &[f64], _: Batch<'_>, out: &mut [f64]) {
        for i in 0..self.dy {
            out[i] = y[i] - self.t[i] + y[i].tanh();
        }
    }
    fn grad_y_g(&self, x: &[f64], y: &[f64], _: Batch<'_>, out: &mut [f64]) {
        let mut bx = vec![0.0; self.dy];
        self.bx(x, &mut bx);
        for i in 0..self.dy {
            out[i] = self.ay(y, i) + self.c * (y[i] - bx[i]).tanh();
        }
    }
    fn hvp(&self, x: &[f64], y: &[f64], v: &[f64], _: Batch<'_>, out: &mut [f64]) {
        for i in 0..self.dy {
            out[i] = self.ay(v, i) + self.c * self.sech2(x, y, i) * v[i];
        }
    }
    fn cross(&self, x: &[f64], y: &[f64], v: &[f64], _: Batch<'_>, out: &mut [f64]) {
        let w: Vec<f64> = (0..self.dy).map(|i| self.c * self.sech2(x, y, i) * v[i]).collect();
        for j in 0..self.dx {
            out[j] = -(0..self.dy).map(|i| self.b[i * self.dx + j] * w[i]).sum::<f64>();
        }
    }
}

/// The central finite-difference gradient of `fun` at `x` with step `h`.
pub fn fd_gradient(fun: impl Fn(&[f64]) -> f64, x: &[f64], h: f64) -> Vec<f64> {
    (0..x.len())
        .map(|j| {
            let (mut xp, mut xm) = (x.to_vec(), x.to_vec());
            xp[j] += h;
            xm[j] -= h;
            (fun(&xp) - fun(&xm)) / (2.0 * h)
        })
        .collect()
}

pub fn rel_err(a: &[f64], b: &[f64]) -> f64 {
    let d: f64 = a.iter().zip(b).map(|(a, b)| (a - b).powi(2)).sum::<f64>().sqrt();
    d / b.iter().map(|v| v * v).sum::<f64>().sqrt().max(f64::MIN_POSITIVE)
}

/// y after `steps` gradient steps of size `alpha` from 0.
pub fn inner_gd(p: &dyn BilevelProblem, x: &[f64], alpha: f64, steps: usize) -> Vec<f64> {
    let (mut y, mut w) = (vec![0.0; p.dim_y()], vec![0.0; p.dim_y()]);
    p.inner_gradient_steps(x, &mut y, alpha, StepBatches::full(steps), &mut w);
    y
}
