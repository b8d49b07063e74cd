//! ITD — iterative differentiation in reverse mode: Ji, Yang & Liang, *Provably Faster
//! Algorithms for Bilevel Optimization* (ICML 2021), Alg. 1 (ITD branch) and Prop. 2; Arbel &
//! Mairal's "Reverse" baseline (paper 000 §5).
//!
//! ```text
//! y_{t+1} = y_t − α ∂y g(x, y_t),  t = 0..T−1                     (forward, trajectory stored)
//! v_T = ∂y f(x, y_T);  h = ∂x f(x, y_T)
//! for t = T−1 … 0:  h ← h − α ∂x∂y g(x, y_t)·v_{t+1}
//!                   v_t = v_{t+1} − α ∂yy g(x, y_t)·v_{t+1}   (not needed at t = 0)
//! ∂f(x, y_T(x))/∂x = h    (y_0 treated as a constant, Prop. 2's proof)
//! ```
//! Cost per estimate: T ∂y g, T cross products (JVPs), T − 1 HVPs, one ∂x f and one ∂y f (the
//! paper counts T HVPs: the last one is not needed and not computed). Memory O(T·d_y).
//!
//! Mini-batch form ([`Itd::estimate_on`]): paper 002 Theorem 4's task-sampled ITD-BiO — one
//! batch 𝓑 of lower-level samples for the whole unrolled loop and its reverse pass (so the
//! estimate is the exact gradient of x ↦ f(x, y_T(x; 𝓑)) on the batch), one batch for ∂x f
//! and ∂y f. A batch is read at T points: its samples count once (the first ∂y g), as the
//! papers count a sample accessed at several points ([`BilevelProblem::replay`]).

use bilevel_kernels::{interrupt, ops, Batch, BilevelProblem, KernelError, Result};

/// The ITD estimator (see the module doc).
pub struct Itd {
    steps: usize,
    alpha: f64,
    /// y_0 … y_{T−1}, row t at `t·d_y`.
    trajectory: Vec<f64>,
    v: Vec<f64>,
    hv: Vec<f64>,
    gx: Vec<f64>,
}

impl Itd {
    /// T inner steps of size α (T ≥ 1, α > 0) for a problem of dimensions (dim_x, dim_y).
    pub fn new(steps: usize, alpha: f64, dim_x: usize, dim_y: usize) -> Result<Self> {
        if steps == 0 {
            return Err(KernelError::InvalidParameter { name: "steps", reason: "must be >= 1".into() });
        }
        if !(alpha.is_finite() && alpha > 0.0) {
            return Err(KernelError::InvalidParameter { name: "alpha", reason: format!("must be > 0, got {alpha}") });
        }
        // The trajectory is T·d_y doubles: refused with the figure before allocating.
        let bytes = bilevel_kernels::memory::f64_bytes(&[steps, dim_y]);
        bilevel_kernels::memory::check_fits(|| format!("ITD's trajectory of T·d_y = {steps}·{dim_y} doubles"), bytes)?;
        let len = steps * dim_y;
        Ok(Self {
            steps,
            alpha,
            trajectory: vec![0.0; len],
            v: vec![0.0; dim_y],
            hv: vec![0.0; dim_y],
            gx: vec![0.0; dim_x],
        })
    }

    /// T, the number of inner steps differentiated through.
    pub fn steps(&self) -> usize {
        self.steps
    }

    /// Sets the step α of the next estimates (the algorithm's rescaling along the run).
    pub fn set_alpha(&mut self, alpha: f64) {
        self.alpha = alpha;
    }

    /// Runs T inner steps from `y` (overwritten with y_T) and writes the exact gradient of
    /// x ↦ f(x, y_T(x)) into `out`.
    pub fn estimate(&mut self, problem: &dyn BilevelProblem, x: &[f64], y: &mut [f64], out: &mut [f64]) -> Result<()> {
        self.estimate_on(problem, x, y, Batch::Full, Batch::Full, out)
    }

    /// [`estimate`](Self::estimate) with the lower level on batch `g` throughout and f on
    /// batch `f` (see the module doc).
    pub fn estimate_on(
        &mut self,
        problem: &dyn BilevelProblem,
        x: &[f64],
        y: &mut [f64],
        g: Batch<'_>,
        f: Batch<'_>,
        out: &mut [f64],
    ) -> Result<()> {
        let dy = problem.dim_y();
        super::check_sizes(problem, x, y, out, (self.gx.len(), self.v.len()))?;
        let (alpha, steps) = (self.alpha, self.steps);
        let Self { trajectory, v, hv, gx, .. } = self;
        for t in 0..steps {
            interrupt::check()?;
            trajectory[t * dy..(t + 1) * dy].copy_from_slice(y);
            if t == 0 || g == Batch::Full {
                problem.grad_y_g(x, y, g, hv);
            } else {
                problem.replay(&mut || problem.grad_y_g(x, y, g, hv));
            }
            ops::axpy(-alpha, hv, y);
        }
        problem.grad_y_f(x, y, f, v);
        problem.replay(&mut || problem.grad_x_f(x, y, f, out));
        let replayed = g != Batch::Full;
        for t in (0..steps).rev() {
            let yt = &trajectory[t * dy..(t + 1) * dy];
            let mut back = || {
                problem.cross(x, yt, v, g, gx);
                ops::axpy(-alpha, gx, out);
                if t > 0 {
                    problem.hvp(x, yt, v, g, hv);
                    ops::axpy(-alpha, hv, v);
                }
            };
            if replayed {
                problem.replay(&mut back);
            } else {
                back();
            }
        }
        Ok(())
    }
}
