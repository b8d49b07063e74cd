//! Your own bilevel problem through the library: implement [`BilevelProblem`] (values,
//! gradients, the Hessian-vector and cross products of g), check the derivatives against finite
//! differences, and run an algorithm of the papers through the driver.
//!
//!     cargo run --release --example own_problem
//!
//! The problem: learn one ridge weight per feature on a validation set (hyper-parameter
//! optimization, paper 002 §6's shape with a squared loss so the example stays short),
//!
//! ```text
//! g(x, y) = (1/2n)‖A y − b‖² + ½ Σ_j exp(x_j) y_j²        (training loss + ridge, strongly convex in y)
//! f(x, y) = (1/2m)‖C y − d‖² + (ρ/2)‖x‖²                  (validation loss + a small prior on x)
//! ∂yy g = AᵀA/n + diag(exp(x)),   ∂x∂y g · v = exp(x) ⊙ y ⊙ v
//! ```
//!
//! It has no closed-form hypergradient, so the driver measures ‖∇L(x_k)‖ against its dense
//! Newton reference (d_y ≤ 200).

use bilevel::kernels::{ops, Batch, BilevelProblem, Counted};
use bilevel::solvers::algorithms::{self, Settings};
use bilevel::solvers::{constants, run, Context, Overrides, StepRule, StopRule};
use std::ops::ControlFlow;

/// The weight of ½‖x‖² in f: keeps the learned log-ridges finite (without it, the ridge of a
/// useless feature runs to +∞ and ∇L only decays slowly).
const RHO: f64 = 1e-4;

/// The per-feature ridge problem: training rows `a` (n × p), validation rows `c` (m × p),
/// row-major.
struct Ridge {
    p: usize,
    a: Vec<f64>,
    b: Vec<f64>,
    c: Vec<f64>,
    d: Vec<f64>,
}

impl Ridge {
    /// A seeded instance: targets from a sparse true weight vector plus noise.
    fn new(n: usize, m: usize, p: usize) -> Self {
        let mut state = 7_u64;
        let mut uniform = move || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        };
        let truth: Vec<f64> = (0..p).map(|j| if j % 4 == 0 { 1.0 } else { 0.0 }).collect();
        let mut rows = |k: usize| {
            let x: Vec<f64> = (0..k * p).map(|_| uniform()).collect();
            let t = (0..k).map(|i| ops::dot(&x[i * p..(i + 1) * p], &truth) + 0.1 * uniform()).collect();
            (x, t)
        };
        let ((a, b), (c, d)) = (rows(n), rows(m));
        Self { p, a, b, c, d }
    }

    /// out = Mᵀ(M y − t)/rows, the gradient of (1/2 rows)‖M y − t‖².
    fn ls_grad(&self, m: &[f64], t: &[f64], y: &[f64], out: &mut [f64]) {
        out.fill(0.0);
        for (row, ti) in m.chunks_exact(self.p).zip(t) {
            ops::axpy((ops::dot(row, y) - ti) / t.len() as f64, row, out);
        }
    }

    fn ls_value(&self, m: &[f64], t: &[f64], y: &[f64]) -> f64 {
        m.chunks_exact(self.p).zip(t).map(|(row, ti)| (ops::dot(row, y) - ti).powi(2)).sum::<f64>()
            / (2.0 * t.len() as f64)
    }
}

// Full-batch problem: every oracle ignores `batch` (n_samples_* default to 1).
impl BilevelProblem for Ridge {
    fn dim_x(&self) -> usize {
        self.p
    }
    fn dim_y(&self) -> usize {
        self.p
    }
    fn f(&self, x: &[f64], y: &[f64], _: Batch<'_>) -> f64 {
        self.ls_value(&self.c, &self.d, y) + 0.5 * RHO * ops::dot(x, x)
    }
    fn g(&self, x: &[f64], y: &[f64], _: Batch<'_>) -> f64 {
        let ridge: f64 = x.iter().zip(y).map(|(xj, yj)| xj.exp() * yj * yj).sum();
        self.ls_value(&self.a, &self.b, y) + 0.5 * ridge
    }
    fn grad_x_f(&self, x: &[f64], _: &[f64], _: Batch<'_>, out: &mut [f64]) {
        out.iter_mut().zip(x).for_each(|(o, xj)| *o = RHO * xj);
    }
    fn grad_y_f(&self, _: &[f64], y: &[f64], _: Batch<'_>, out: &mut [f64]) {
        self.ls_grad(&self.c, &self.d, y, out);
    }
    fn grad_y_g(&self, x: &[f64], y: &[f64], _: Batch<'_>, out: &mut [f64]) {
        self.ls_grad(&self.a, &self.b, y, out);
        out.iter_mut().zip(x.iter().zip(y)).for_each(|(o, (xj, yj))| *o += xj.exp() * yj);
    }
    fn hvp(&self, x: &[f64], _: &[f64], v: &[f64], _: Batch<'_>, out: &mut [f64]) {
        // AᵀA v / n: the least-squares gradient at y = v with zero targets.
        out.fill(0.0);
        for row in self.a.chunks_exact(self.p) {
            ops::axpy(ops::dot(row, v) / self.b.len() as f64, row, out);
        }
        out.iter_mut().zip(x.iter().zip(v)).for_each(|(o, (xj, vj))| *o += xj.exp() * vj);
    }
    fn cross(&self, x: &[f64], y: &[f64], v: &[f64], _: Batch<'_>, out: &mut [f64]) {
        for (j, o) in out.iter_mut().enumerate() {
            *o = x[j].exp() * y[j] * v[j];
        }
    }
}

/// The largest relative gap between the analytic ∂y g, HVP and cross product and central finite
/// differences of g and ∂y g at (x, y) along the direction v.
fn derivative_check(p: &Ridge, x: &[f64], y: &[f64], v: &[f64]) -> f64 {
    let (h, n) = (1e-6, p.p);
    let shift = |z: &[f64], t: f64| -> Vec<f64> { z.iter().zip(v).map(|(a, b)| a + t * b).collect() };
    let grad = |x: &[f64], y: &[f64]| {
        let mut g = vec![0.0; n];
        p.grad_y_g(x, y, Batch::Full, &mut g);
        g
    };
    let rel = |fd: &[f64], an: &[f64]| {
        let diff: Vec<f64> = fd.iter().zip(an).map(|(a, b)| a - b).collect();
        ops::norm2(&diff) / ops::norm2(an).max(1e-300)
    };
    let fd_dir = (p.g(x, &shift(y, h), Batch::Full) - p.g(x, &shift(y, -h), Batch::Full)) / (2.0 * h);
    let an_dir = ops::dot(&grad(x, y), v);
    let fd_hvp: Vec<f64> =
        grad(x, &shift(y, h)).iter().zip(grad(x, &shift(y, -h))).map(|(a, b)| (a - b) / (2.0 * h)).collect();
    let (mut hv, mut cr) = (vec![0.0; n], vec![0.0; n]);
    p.hvp(x, y, v, Batch::Full, &mut hv);
    // ⟨∂x∂y g · v, e⟩ = d/dt ⟨∂y g(x + t e, y), v⟩: the cross product against FD in x along v.
    p.cross(x, y, v, Batch::Full, &mut cr);
    let fd_cross = (ops::dot(&grad(&shift(x, h), y), v) - ops::dot(&grad(&shift(x, -h), y), v)) / (2.0 * h);
    let an_cross = ops::dot(&cr, v);
    let scalar = |fd: f64, an: f64| (fd - an).abs() / an.abs().max(1e-300);
    rel(&fd_hvp, &hv).max(scalar(fd_dir, an_dir)).max(scalar(fd_cross, an_cross))
}

/// Builds the problem, checks its derivatives and runs AmIGO-CG; returns (derivative gap,
/// first ‖∇L‖, last ‖∇L‖).
fn example() -> Result<(f64, f64, f64), Box<dyn std::error::Error>> {
    let problem = Ridge::new(200, 100, 40);
    let (x0, y0) = (vec![0.0; 40], vec![0.0; 40]);
    let v: Vec<f64> = (0..40).map(|i| (i as f64).sin()).collect();
    let gap = derivative_check(&problem, &x0, &v, &v);
    println!("derivatives against finite differences: largest relative gap {gap:.1e}");

    // The default rule takes α = 1/L_g and γ = 1/L_L (paper 000 §5.1's values). L_g is estimated
    // at x0 (Lanczos on the Hessian). L_L at x0 is ≈ 5e-4, but the curvature of L grows as the
    // ridges shrink, and 1/L_L at x0 diverges within a few steps (the driver stops it:
    // `Diverged`): the outer step is set by hand, and L_L is then not estimated.
    let rule = StepRule::Default;
    let settings = Settings { outer_step: Some(300.0), ..Settings::default() };
    let c = constants::resolve(
        &problem,
        &x0,
        &y0,
        &algorithms::needs("amigo-cg", rule, &settings)?,
        &Overrides::default(),
    )?;
    let ctx = Context { problem: &problem, family: "", constants: &c, x0: &x0 };
    let built = algorithms::build("amigo-cg", rule, &ctx, &settings)?;
    print!("parameters:\n{}", built.params.render());
    let mut alg = built.algorithm;
    let counted = Counted::new(problem);
    let trace = run(alg.as_mut(), &counted, &x0, &y0, &StopRule::iterations(300), |_| ControlFlow::Continue(()))?;
    let (first, last) = (trace.rows[0].grad_norm.unwrap_or(f64::NAN), trace.last().grad_norm.unwrap_or(f64::NAN));
    let c = trace.last().counts;
    println!(
        "AmIGO-CG, {} iterations: ‖∇L‖ {first:.3e} -> {last:.3e} (Newton reference); {} HVPs, {} cross products",
        trace.last().iteration,
        c.hvp,
        c.cross
    );
    Ok((gap, first, last))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    example().map(|_| ())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_example_checks_its_derivatives_and_converges() {
        let (gap, first, last) = super::example().unwrap();
        assert!(gap < 1e-6, "derivative gap {gap}");
        assert!(last < 1e-3 * first, "‖∇L‖ {first} -> {last}");
    }
}
