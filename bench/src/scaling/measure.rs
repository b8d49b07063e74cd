//! What one point of a sweep costs: the measurements behind every claim of the theory table.
//!
//! - [`solve_steps`]: steps of a linear solver (CG, GD/Richardson, the fixed point, Neumann) to a
//!   relative residual on a diagonal SPD operator with its eigenvalues at the Chebyshev nodes of
//!   [1/κ, 1] (the arcsine density, dense at both ends: the spectrum on which CG's √κ bound is
//!   tight for d above the step count; with linear or log spacing CG removes the isolated
//!   smallest eigenvalues early and does better than √κ).
//!   Krylov and stationary iterations are invariant under an orthogonal change of basis, so the
//!   step count is a dense rotated matrix's, at O(d) per product.
//! - [`to_target`]: a registered algorithm on a problem, run by the driver until a target
//!   (relative error or ‖∇L‖²), with the oracle counts at the first row that met it; the best
//!   over a grid of inner/linear step counts where the paper tunes them.
//! - [`dense_hvp_seconds`], [`sparse_hvp_seconds`]: wall time of one Hessian-vector product, dense (one triangle of a d×d
//!   matrix) or sparse (a logistic model with a given number of non-zeros), median of repeats.

use bilevel_kernels::linop::{DenseSym, FnOp, Operator};
use bilevel_kernels::linsolve::{Cg, FixedPoint, LinearSolver, Neumann, Richardson, Stopping};
use bilevel_kernels::models::{Design, Hyper, LogisticModel};
use bilevel_kernels::{Batch, BilevelProblem, Counted, CountingConvention, KernelError, OracleCounts, Result};
use bilevel_solvers::algorithms::{self, Settings};
use bilevel_solvers::{constants, run, Overrides, StepRule, StopRule};
use std::ops::ControlFlow;
use std::time::Instant;

/// The cost of one point.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Measured {
    /// Whether the target was met within the budget.
    pub reached: bool,
    /// Oracle calls to the target (or to the budget).
    pub counts: OracleCounts,
    /// Outer iterations (or solver steps).
    pub iterations: u64,
    /// Wall time, seconds (the steps only for algorithms; one product for the per-oracle timings).
    pub seconds: f64,
    /// The inner and linear step counts (T, N) that gave this cost, where a grid was searched.
    pub steps: Option<(usize, usize)>,
}

/// The linear solvers of the per-solve claims, by the table's names.
pub const SOLVERS: &[&str] = &["cg", "gd", "fixed-point", "neumann"];

/// Steps of `solver` to ‖Hx − b‖ ≤ `rel_tol`·‖b‖ on the diagonal operator of dimension `dim`
/// with eigenvalues at the Chebyshev nodes of [1/κ, 1] (step 1/L = 1 for the stationary
/// ones), b seeded.
pub fn solve_steps(
    solver: &str,
    kappa: f64,
    dim: usize,
    rel_tol: f64,
    max_steps: usize,
    seed: u64,
) -> Result<Measured> {
    if !(kappa.is_finite() && kappa >= 1.0) || dim < 2 {
        return Err(KernelError::InvalidParameter {
            name: "kappa",
            reason: format!("needs κ ≥ 1 and d ≥ 2, got {kappa}, {dim}"),
        });
    }
    let mu = 1.0 / kappa;
    // λ_i = (1 + µ)/2 − (1 − µ)/2·cos(π(i + ½)/d), then the ends set to µ and 1 exactly.
    let mut diag: Vec<f64> = (0..dim)
        .map(|i| 0.5 * (1.0 + mu) - 0.5 * (1.0 - mu) * (std::f64::consts::PI * (i as f64 + 0.5) / dim as f64).cos())
        .collect();
    (diag[0], diag[dim - 1]) = (mu, 1.0);
    let op = FnOp::symmetric(dim, |v: &[f64], out: &mut [f64]| {
        out.iter_mut().zip(v).zip(&diag).for_each(|((o, v), d)| *o = d * v);
    });
    let b = crate::vector(dim, seed);
    let stop = Stopping::default().with_rel_tol(rel_tol).with_max_iters(max_steps);
    let mut solver: Box<dyn LinearSolver> = match solver {
        "cg" => Box::new(Cg::new(dim, stop)),
        "gd" => Box::new(Richardson::new(dim, 1.0, stop)),
        "fixed-point" => Box::new(FixedPoint::new(dim, 1.0, stop)),
        "neumann" => Box::new(Neumann::new(dim, 1.0, stop)),
        other => {
            return Err(KernelError::InvalidParameter {
                name: "solver",
                reason: format!("unknown `{other}`; one of {}", SOLVERS.join(", ")),
            })
        }
    };
    let mut x = vec![0.0; dim];
    let t = Instant::now();
    let report = solver.solve(&op, &b, &mut x)?;
    let seconds = t.elapsed().as_secs_f64();
    let counts = OracleCounts { hvp: report.operator_applications as u64, ..OracleCounts::default() };
    Ok(Measured { reached: report.converged, counts, iterations: report.iterations as u64, seconds, steps: None })
}

/// Algorithm `name` under its default rule (constants from the problem, estimated where it
/// has none; on the quadratics paper 000 §5.1's α = β = 1/L_g, γ = 1/L_L) run by the driver on
/// `problem` from (x0, 0) until `stop`.
fn run_default<P: BilevelProblem>(
    name: &str,
    problem: P,
    x0: &[f64],
    settings: &Settings,
    stop: &StopRule,
) -> Result<bilevel_solvers::Trace> {
    let y0 = vec![0.0; problem.dim_y()];
    let rule = StepRule::Default;
    let need = algorithms::needs(name, rule, settings)?;
    let c = constants::resolve(&problem, x0, &y0, &need, &Overrides::default())?;
    let ctx = bilevel_solvers::Context { problem: &problem, family: "", constants: &c, x0 };
    let mut alg = algorithms::build(name, rule, &ctx, settings)?.algorithm;
    let counted = Counted::new(problem);
    run(alg.as_mut(), &counted, x0, &y0, stop, |_| ControlFlow::Continue(()))
}

/// The target of a run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Target {
    /// (L(x) − L*)/(L(x0) − L*) ≤ this.
    RelError(f64),
    /// ‖∇L(x)‖² ≤ this.
    GradNormSq(f64),
}

/// Runs algorithm `name` (experiments rule, `settings`) on `problem` from (x0, 0) until
/// `target`, `max_iters` or `max_calls` oracle calls (paper 000's count); the counts are those
/// of the first row that met the target.
pub fn run_budgeted<P: BilevelProblem>(
    name: &str,
    problem: P,
    x0: &[f64],
    settings: &Settings,
    target: Target,
    max_iters: usize,
    max_calls: Option<u64>,
) -> Result<Measured> {
    let mut stop = StopRule::iterations(max_iters);
    stop.divergence_growth = None;
    stop.max_oracle_calls = max_calls;
    match target {
        Target::RelError(t) => stop.target_rel_error = Some(t),
        Target::GradNormSq(t) => stop.target_grad_norm = Some(t.sqrt()),
    }
    let trace = run_default(name, problem, x0, settings, &stop)?;
    let last = trace.last();
    Ok(Measured {
        reached: trace.stop == bilevel_solvers::StopReason::Target,
        counts: last.counts,
        iterations: last.iteration as u64,
        seconds: last.seconds,
        steps: Some((
            settings.inner_steps.unwrap_or(algorithms::DEFAULT_STEPS),
            settings.adjoint_steps.unwrap_or(algorithms::DEFAULT_STEPS),
        )),
    })
}

/// A convergence curve: (cost, error) along one run, for the plots of paper 000's Fig. 1–2
/// (relative error against oracle calls) and of the stochastic methods (‖∇L‖² against
/// samples).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Curve {
    /// Which figure it belongs to (e.g. `deterministic-kappa-1e3`, `stochastic`).
    pub figure: String,
    /// The algorithm.
    pub algorithm: String,
    /// The x-axis: total oracle calls (paper 000's eq. (8)) or samples.
    pub x_label: String,
    /// The y-axis: relative error or ‖∇L‖².
    pub y_label: String,
    /// The evaluated rows, (x, y), y > 0.
    pub points: Vec<(f64, f64)>,
}

/// The curve of one run of `name` on `problem` (experiments rule, `settings`), `max_iters`
/// iterations, every `every`-th row: relative error against total calls (`samples = false`,
/// needs L*), or ‖∇L‖² against the samples touched (`samples = true`).
#[allow(clippy::too_many_arguments)]
pub fn curve<P: BilevelProblem>(
    figure: &str,
    name: &str,
    problem: P,
    x0: &[f64],
    settings: &Settings,
    max_iters: usize,
    every: usize,
    samples: bool,
) -> Result<Curve> {
    let mut stop = StopRule::iterations(max_iters);
    stop.eval_every = every.max(1);
    stop.target_rel_error = Some(1e-12);
    stop.divergence_growth = None;
    let trace = run_default(name, problem, x0, settings, &stop)?;
    let relative = !samples;
    let points = trace
        .rows
        .iter()
        .filter_map(|r| {
            if relative {
                r.rel_error.map(|e| (r.total_calls() as f64, e))
            } else {
                r.grad_norm.map(|g| ((r.counts.samples_f + r.counts.samples_g) as f64, g * g))
            }
        })
        .filter(|(_, y)| *y > 0.0 && y.is_finite())
        .collect();
    let (x_label, y_label) = if relative {
        ("oracle calls (paper 000 eq. (8))", "relative error (L(x) − L*)/(L(x0) − L*)")
    } else {
        ("samples of f and g", "‖∇L(x)‖²")
    };
    Ok(Curve {
        figure: figure.into(),
        algorithm: name.into(),
        x_label: x_label.into(),
        y_label: y_label.into(),
        points,
    })
}

/// The oracle-call budget of one run of the grid (paper 000's count): a run that would need
/// more is reported as not reaching the target.
pub const MAX_CALLS: u64 = 2_000_000;

/// Runs already made in this invocation, by a key naming the algorithm, the problem, the
/// settings and the target: claims that count different oracles of the same runs (ITD's
/// gradients, HVPs and cross products) share them.
pub type RunCache = std::collections::HashMap<String, Measured>;

/// The cheapest run to the target over the grid of (T, N) (`cost` ranks them; unreached runs
/// lose to reached ones); `make` builds the problem afresh for each run not in `cache`,
/// `problem_key` names it there.
#[allow(clippy::too_many_arguments)]
pub fn to_target<P: BilevelProblem>(
    name: &str,
    problem_key: &str,
    make: &dyn Fn() -> Result<(P, Vec<f64>)>,
    base: &Settings,
    grid: &[(usize, usize)],
    target: Target,
    max_iters: usize,
    cost: &dyn Fn(&OracleCounts) -> f64,
    cache: &mut RunCache,
) -> Result<Measured> {
    let mut best: Option<Measured> = None;
    for &(t, n) in grid {
        // The grid's (T, N) for every algorithm; N is dropped where there is no such loop (ITD).
        let settings =
            Settings { inner_steps: Some(t), adjoint_steps: Some(n), ..*base }.keep_used(name, StepRule::Default);
        let key =
            format!("{name}|{problem_key}|{t}|{n}|{:?}|{}|{target:?}|{max_iters}", settings.batches, settings.seed);
        let m = match cache.get(&key) {
            Some(m) => m.clone(),
            None => {
                let (problem, x0) = make()?;
                let m = run_budgeted(name, problem, &x0, &settings, target, max_iters, Some(MAX_CALLS))?;
                cache.insert(key, m.clone());
                m
            }
        };
        let better = match &best {
            None => true,
            Some(b) => (m.reached && !b.reached) || (m.reached == b.reached && cost(&m.counts) < cost(&b.counts)),
        };
        if better {
            best = Some(m);
        }
    }
    best.ok_or_else(|| KernelError::InvalidParameter { name: "grid", reason: "empty".into() })
}

/// Median seconds of `repeats` calls of `f` (after one warm-up call).
fn median_seconds(repeats: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut times: Vec<f64> = (0..repeats.max(1))
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// Seconds of one dense symmetric HVP (one triangle of a seeded d×d matrix) on the current
/// rayon pool.
pub fn dense_hvp_seconds(dim: usize, repeats: usize) -> Result<f64> {
    let a = faer::Mat::from_fn(dim, dim, |i, j| {
        let (p, q) = (i.min(j) as f64, i.max(j) as f64);
        ((p * 0.37 + q * 0.11).sin() + if i == j { dim as f64 } else { 0.0 }) / dim as f64
    });
    let op = DenseSym::new(a)?;
    let v = crate::vector(dim, 1);
    let mut out = vec![0.0; dim];
    Ok(median_seconds(repeats, || op.apply(&v, &mut out)))
}

/// Seconds of one sparse binary-logistic HVP on `rows` × `cols` data with `per_row` non-zeros
/// per row (nnz = rows·per_row) on the current rayon pool.
pub fn sparse_hvp_seconds(rows: usize, cols: usize, per_row: usize, repeats: usize) -> Result<f64> {
    let x = crate::random_csr(rows, cols, per_row, 1);
    let labels: Vec<f64> = (0..rows).map(|i| if i % 3 == 0 { 1.0 } else { -1.0 }).collect();
    let model = LogisticModel::new(Design::Sparse(x), labels, Hyper::per_feature_benchopt())?;
    let (theta, v, lambda) = (crate::vector(cols, 2), crate::vector(cols, 3), vec![0.0; cols]);
    let mut ws = model.workspace();
    let mut pt = model.point(&theta, &lambda, Batch::Full, &mut ws)?;
    let mut out = vec![0.0; cols];
    let mut failed = None;
    let s = median_seconds(repeats, || {
        if let Err(e) = pt.hvp(&v, &mut out) {
            failed = Some(e);
        }
    });
    failed.map_or(Ok(s), Err)
}

/// The cost a claim counts, from the counts of a run.
pub fn cost_of(measure: &str, counts: &OracleCounts, convention: CountingConvention) -> Option<f64> {
    Some(match measure {
        "total_calls" => counts.total(convention) as f64,
        "hvp" => counts.hvp as f64,
        "grad_f" => counts.grad_f(convention) as f64,
        "grad_g" => counts.grad_y_g as f64,
        "cross" => counts.cross as f64,
        "samples" => (counts.samples_f + counts.samples_g) as f64,
        _ => return None,
    })
}

/// Seconds of one HVP with 1, 2 and all threads: the dense one-triangle product at `dim` and the
/// sparse logistic one at `nnz` (the per-oracle cost the harness reports beside the claims).
pub fn thread_scaling(dim: usize, nnz: usize, repeats: usize) -> Result<Vec<(String, usize, f64)>> {
    let all = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut counts = vec![1, 2, all];
    counts.dedup();
    let mut out = Vec::new();
    for threads in counts {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .map_err(|e| KernelError::InvalidParameter { name: "threads", reason: e.to_string() })?;
        let dense = pool.install(|| dense_hvp_seconds(dim, repeats))?;
        out.push((format!("dense HVP, d = {dim}"), threads, dense));
        let per_row = 20;
        let rows = nnz / per_row;
        let sparse = pool.install(|| sparse_hvp_seconds(rows, rows / 2, per_row, repeats))?;
        out.push((format!("sparse logistic HVP, nnz = {nnz:e}"), threads, sparse));
    }
    Ok(out)
}
