//! The problem constants step sizes are written in (µ_g, L_g, L_L, µ_L), resolved once per run and
//! shared by every command (`bilevel hypergrad`, `bilevel solve`, the harness).
//!
//! Where each constant comes from, first match wins:
//! 1. the user ([`Overrides`], the CLI's `--mu-g`, `--l-g`, `--l-outer`, `--mu-outer`);
//! 2. the problem itself ([`BilevelProblem::constants`]): a generator that prescribes its
//!    spectrum knows µ_g, L_g and L_L exactly, with no eigen-solve, whatever κ;
//! 3. an estimate at the starting point, only for the constants the chosen step-size rule needs:
//!    L_g = λ_max(∂yy g(x0, y0)) by Lanczos (fast: the top of a spectrum converges in a few dozen
//!    HVPs); µ_g = λ_min from the dense Hessian only up to [`spectrum::DENSE_MAX_DIM`] (the
//!    bottom of an ill-conditioned spectrum does not converge in a matrix-free solver); L_L by
//!    Lanczos on finite differences of a reference hypergradient (the problem's closed form, or
//!    the Newton reference of [`crate::reference`]).
//!
//! A constant that none of these gives is a typed error naming the constant and its flag.
//! Estimates at x0 are local for non-quadratic problems: [`Constants::estimated`] lists them so
//! the caller can say so.

use crate::reference::reference_hypergradient;
use bilevel_kernels::linop::FnOp;
use bilevel_kernels::spectrum::{self, extreme_eigenvalues, largest_eigenvalue, spectral_radius};
use bilevel_kernels::{Batch, BilevelProblem, HessianOp, KernelError, ProblemConstants, Result};
use std::sync::Mutex;

/// One constant of a problem.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Constant {
    /// µ_g, the strong convexity of g in y.
    MuG,
    /// L_g, the smoothness of g in y.
    LG,
    /// L_L, the smoothness of the outer objective L(x) = f(x, y*(x)).
    LOuter,
    /// µ_L, the strong convexity of L (AmIGO's averaging weight; never estimated).
    MuOuter,
}

impl Constant {
    /// The field name (`mu_g`, `l_g`, `l_outer`).
    pub fn name(self) -> &'static str {
        match self {
            Constant::MuG => "mu_g",
            Constant::LG => "l_g",
            Constant::LOuter => "l_outer",
            Constant::MuOuter => "mu_outer",
        }
    }
    /// The CLI flag that sets it by hand.
    pub fn flag(self) -> &'static str {
        match self {
            Constant::MuG => "--mu-g",
            Constant::LG => "--l-g",
            Constant::LOuter => "--l-outer",
            Constant::MuOuter => "--mu-outer",
        }
    }
    fn unknown(self, why: &str) -> KernelError {
        KernelError::InvalidParameter {
            name: self.name(),
            reason: format!("{why}; set it by hand with {}", self.flag()),
        }
    }
}

/// Constants the user sets by hand (`None`: take the problem's or estimate).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Overrides {
    /// µ_g.
    pub mu_g: Option<f64>,
    /// L_g.
    pub l_g: Option<f64>,
    /// L_L.
    pub l_outer: Option<f64>,
    /// µ_L.
    pub mu_outer: Option<f64>,
}

/// The resolved constants of a run (what [`resolve`] could establish).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Constants {
    /// Everything known: the problem's constants with the overrides and estimates filled in.
    pub known: ProblemConstants,
    /// Which of (µ_g, L_g, L_L, µ_L) were estimated at the starting point (local for
    /// non-quadratic problems) rather than given by the problem or the user (µ_L never is).
    pub estimated: [bool; 4],
    /// Whether the lower-level constants are the problem's bounds at x_0
    /// ([`BilevelProblem::constants_at`]): they move with x, and the algorithms rescale their
    /// lower-level steps along the run.
    pub at_x0: bool,
}

impl Constants {
    /// Constants given directly (tests, embedding users): nothing estimated.
    pub fn new(known: ProblemConstants) -> Self {
        Self { known, estimated: [false; 4], at_x0: false }
    }
    fn get(&self, c: Constant) -> Option<f64> {
        match c {
            Constant::MuG => self.known.mu_g,
            Constant::LG => self.known.l_g,
            Constant::LOuter => self.known.l_outer,
            Constant::MuOuter => self.known.mu_outer,
        }
    }
    /// The value of `c`, or a typed error naming it and its flag.
    pub fn require(&self, c: Constant) -> Result<f64> {
        self.get(c).ok_or_else(|| c.unknown("not known for this problem"))
    }
    /// µ_g, required.
    pub fn mu_g(&self) -> Result<f64> {
        self.require(Constant::MuG)
    }
    /// L_g, required.
    pub fn l_g(&self) -> Result<f64> {
        self.require(Constant::LG)
    }
    /// L_L, required.
    pub fn l_outer(&self) -> Result<f64> {
        self.require(Constant::LOuter)
    }
    /// µ_L, required.
    pub fn mu_outer(&self) -> Result<f64> {
        self.require(Constant::MuOuter)
    }
    /// κ_g = L_g/µ_g when both are known.
    pub fn kappa_g(&self) -> Option<f64> {
        Some(self.known.l_g? / self.known.mu_g?)
    }
    /// Whether `c` was estimated at the starting point.
    pub fn is_estimated(&self, c: Constant) -> bool {
        self.estimated[c as usize]
    }
}

fn check_value(c: Constant, v: f64) -> Result<f64> {
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(KernelError::InvalidParameter { name: c.name(), reason: format!("must be finite and > 0, got {v:?}") })
    }
}

/// Relative accuracy of the eigenvalue estimates.
const EIG_TOL: f64 = 1e-8;

/// `e` itself where it is an interruption (the caller's Ctrl-C or time limit, which must reach
/// the caller as such), else `wrap(e)`.
fn keep_interrupt(e: KernelError, wrap: impl FnOnce(KernelError) -> KernelError) -> KernelError {
    if bilevel_kernels::interrupt::cause_of(&e).is_some() {
        e
    } else {
        wrap(e)
    }
}

/// Resolves the constants `needs` lists for `problem` at the starting point (x0, y0); the
/// others are filled in only when free (from the problem or the user).
pub fn resolve(
    problem: &dyn BilevelProblem,
    x0: &[f64],
    y0: &[f64],
    needs: &[Constant],
    overrides: &Overrides,
) -> Result<Constants> {
    let mut k = problem.constants();
    let at = problem.constants_at(x0);
    if let Some(at) = at {
        k.mu_g = k.mu_g.or(at.mu_g);
        k.l_g = k.l_g.or(at.l_g);
        k.l_g_sample = k.l_g_sample.or(at.l_g_sample);
        k.mu_g_sample = k.mu_g_sample.or(at.mu_g_sample);
    }
    let mut estimated = [false; 4];
    for (c, slot, over) in [
        (Constant::MuG, &mut k.mu_g, overrides.mu_g),
        (Constant::LG, &mut k.l_g, overrides.l_g),
        (Constant::LOuter, &mut k.l_outer, overrides.l_outer),
        (Constant::MuOuter, &mut k.mu_outer, overrides.mu_outer),
    ] {
        if let Some(v) = over {
            *slot = Some(check_value(c, v)?);
        }
    }
    let needed = |c: Constant| needs.contains(&c);
    if needed(Constant::LG) && k.l_g.is_none() {
        let hess = HessianOp::new(problem, x0, y0, Batch::Full);
        let l = largest_eigenvalue(&hess, EIG_TOL)
            .map_err(|e| keep_interrupt(e, |e| Constant::LG.unknown(&format!("estimation failed ({e})"))))?;
        k.l_g = Some(check_value(Constant::LG, l)?);
        estimated[Constant::LG as usize] = true;
    }
    if needed(Constant::MuG) && k.mu_g.is_none() {
        let n = problem.dim_y();
        if n > spectrum::DENSE_MAX_DIM {
            return Err(Constant::MuG.unknown(&format!(
                "the problem does not know it and d_y = {n} is above the size ({}) where it is computed densely",
                spectrum::DENSE_MAX_DIM
            )));
        }
        let hess = HessianOp::new(problem, x0, y0, Batch::Full);
        let (mu, l) = extreme_eigenvalues(&hess, EIG_TOL)
            .map_err(|e| keep_interrupt(e, |e| Constant::MuG.unknown(&format!("estimation failed ({e})"))))?;
        k.mu_g = Some(check_value(Constant::MuG, mu)?);
        estimated[Constant::MuG as usize] = true;
        if k.l_g.is_none() {
            k.l_g = Some(l);
            estimated[Constant::LG as usize] = true;
        }
    }
    if needed(Constant::LOuter) && k.l_outer.is_none() {
        let l = estimate_l_outer(problem, x0, y0)
            .map_err(|e| keep_interrupt(e, |e| Constant::LOuter.unknown(&format!("{e}"))))?;
        k.l_outer = Some(check_value(Constant::LOuter, l)?);
        estimated[Constant::LOuter as usize] = true;
    }
    if needed(Constant::MuOuter) && k.mu_outer.is_none() {
        return Err(Constant::MuOuter.unknown("the problem does not know it (it is not estimated)"));
    }
    // A strong-convexity constant is at most the smoothness constant of the same function
    // (λ_min ≤ λ_max), whoever gave them: checked once here, for every algorithm.
    for (mu, l, names) in [
        (k.mu_g, k.l_g, ("mu_g", "µ_g", "L_g", "--mu-g", "--l-g")),
        (k.mu_outer, k.l_outer, ("mu_outer", "µ_L", "L_L", "--mu-outer", "--l-outer")),
    ] {
        if let (Some(mu), Some(l)) = (mu, l) {
            if mu > l {
                let (name, m, big_l, mflag, lflag) = names;
                return Err(KernelError::InvalidParameter {
                    name,
                    reason: format!(
                        "{m} = {mu:.6e} exceeds {big_l} = {l:.6e}, but {m} ≤ {big_l} (the smallest eigenvalue of a \
                         Hessian is at most its largest): check {mflag} and {lflag} (or the problem's values)"
                    ),
                });
            }
        }
    }
    Ok(Constants { known: k, estimated, at_x0: at.is_some() })
}

/// ‖∇²L(x0)‖ = max |λ(∇²L(x0))| on central differences of the reference hypergradient (exact
/// for the quadratics, where ∇L is affine; a local estimate otherwise). The spectral radius,
/// not λ_max: where L is not convex at x0 (a negative end of the spectrum) its smoothness is the
/// largest |λ|.
fn estimate_l_outer(problem: &dyn BilevelProblem, x0: &[f64], y0: &[f64]) -> Result<f64> {
    let dx = problem.dim_x();
    let failure = Mutex::new(None);
    let grad_at = |x: &[f64], out: &mut [f64]| {
        let r = match problem.exact() {
            Some(e) => {
                e.hypergradient(x, out);
                Ok(())
            }
            None => reference_hypergradient(problem, x, y0).map(|r| out.copy_from_slice(&r.hypergradient)),
        };
        if let Err(e) = r {
            out.fill(f64::NAN);
            failure.lock().expect("not poisoned").get_or_insert(e);
        }
    };
    let scale = bilevel_kernels::ops::norm2(x0).max(1.0);
    let h = 1e-4 * scale;
    let hess_l = FnOp::symmetric(dx, |v: &[f64], out: &mut [f64]| {
        let mut plus: Vec<f64> = x0.iter().zip(v).map(|(x, v)| x + h * v).collect();
        let minus: Vec<f64> = x0.iter().zip(v).map(|(x, v)| x - h * v).collect();
        grad_at(&plus, out);
        grad_at(&minus, &mut plus);
        out.iter_mut().zip(&plus).for_each(|(o, m)| *o = (*o - m) / (2.0 * h));
    });
    let l = spectral_radius(&hess_l, 1e-6);
    if let Some(e) = failure.into_inner().expect("not poisoned") {
        return Err(e);
    }
    let l = l?;
    if !(l.is_finite() && l > 0.0) {
        return Err(KernelError::InvalidParameter {
            name: "l_outer",
            reason: format!("the estimate at x0 is {l:e}: ∇²L vanishes or is not finite there"),
        });
    }
    Ok(l)
}

/// How many batches [`batch_smoothness_at`] draws.
pub const SMOOTHNESS_DRAWS: u64 = 8;

/// The smoothness a step on a mini-batch of `batch` samples of g meets at (x0, y0): the
/// largest λ_max(∂yy g on the batch) over [`SMOOTHNESS_DRAWS`] batches drawn with replacement
/// from stream 0 of `seed` (Lanczos on each). An estimate, local to (x0, y0), for problems
/// that do not report a per-sample bound ([`ProblemConstants::l_g_sample`]): on a batch of b
/// of n tasks a head's Hessian block is n/b times the full batch's, and a step of 1/L_g of the
/// full batch diverges (meta-learning with 16 of 200 tasks: 12.5×).
pub fn batch_smoothness_at(
    problem: &dyn BilevelProblem,
    x0: &[f64],
    y0: &[f64],
    batch: usize,
    seed: u64,
) -> Result<f64> {
    use crate::sampling::{BatchStream, Sampling};
    let mut stream = BatchStream::new(problem.n_samples_g(), Some(batch), Sampling::Replacement, seed, 0, 0)?;
    let mut largest: f64 = 0.0;
    for _ in 0..SMOOTHNESS_DRAWS {
        let hess = HessianOp::new(problem, x0, y0, stream.draw());
        let l = largest_eigenvalue(&hess, EIG_TOL)
            .map_err(|e| Constant::LG.unknown(&format!("estimation on a batch failed ({e})")))?;
        largest = largest.max(check_value(Constant::LG, l)?);
    }
    Ok(largest)
}
