//! The complexity harness behind `bilevel scaling`: for every claim of the theory table
//! ([`crate::claims`]) it measures the claim's cost at the points of its sweep (κ, d, nnz or
//! 1/ε), fits the log-log slope with a bootstrap interval ([`crate::fit`]) and holds it against
//! the claimed exponent; the report says agrees / better / worse / inconclusive and why.
//!
//! Three sizes ([`Mode`]): `Test` (seconds, for the test suite), `Quick` (every claim at
//! reduced range, minutes on 2 cores) and `Full` (the ranges of the issue, documented in
//! docs/complexity.md). Every point is written to `points.json`/`points.csv` as soon as it is
//! measured; [`Options::resume`] skips the points already there, so an interrupted run
//! continues where it stopped and gives the same points (their oracle counts are
//! deterministic; only wall times differ).

pub mod html;
pub mod measure;
pub mod plots;
pub mod points;
pub mod report;

use crate::claims::{self, Claim, TargetMetric};
use bilevel_data::stochastic_quadratic;
use bilevel_kernels::{CountingConvention, KernelError, OracleCounts, Result};
use bilevel_solvers::algorithms::Settings;
use bilevel_solvers::BatchSizes;
use measure::{Measured, Target};
pub use points::{Point, Store, Task};
use std::path::PathBuf;
use std::time::Instant;

/// How much of each sweep to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// A few points per claim on tiny problems: seconds (the test suite's).
    Test,
    /// Every claim at reduced range: minutes on a 2-core machine.
    Quick,
    /// The full ranges.
    Full,
}

/// What to run and where to write it.
#[derive(Clone, Debug)]
pub struct Options {
    /// The size of the sweeps.
    pub mode: Mode,
    /// Only these claim ids (all when empty).
    pub only: Vec<String>,
    /// Only these algorithms (all of each claim's when empty).
    pub algos: Vec<String>,
    /// The output directory (points, report, plots).
    pub out: PathBuf,
    /// Keep the points already in `out` and measure only the missing ones.
    pub resume: bool,
    /// Stop after this many new points (`None`: all): an interruption on purpose, for tests.
    pub max_new_points: Option<usize>,
}

/// Where a run stands, for a progress bar.
#[derive(Clone, Debug)]
pub struct Progress<'a> {
    /// Points done (kept from a resumed run included).
    pub done: usize,
    /// Points in the plan.
    pub total: usize,
    /// The point being measured.
    pub current: &'a Task,
    /// Seconds since the start.
    pub elapsed: f64,
}

/// Whether a claim runs on a finite-sum problem with mini-batches (its ε and κ sweeps on the
/// stochastic quadratic).
fn stochastic(claim: &Claim) -> bool {
    claim.problem == "stochastic_quadratic"
}

/// The sweep grid of a claim in `mode`: the x values (κ, d, nnz, 1/ε).
pub fn grid(claim: &Claim, algorithm: &str, mode: Mode) -> Vec<f64> {
    use Mode::*;
    let pow = |a: i32, b: i32| (a..=b).map(|e| 10f64.powi(e)).collect::<Vec<_>>();
    let solver = measure::SOLVERS.contains(&algorithm);
    let stationary = solver && algorithm != "cg";
    match (claim.sweep.as_str(), mode) {
        ("kappa", _) if stochastic(claim) => match mode {
            Test => vec![2.0, 5.0, 10.0],
            Quick => vec![2.0, 5.0, 10.0, 20.0],
            Full => vec![2.0, 5.0, 10.0, 20.0, 50.0, 100.0],
        },
        // BSGM's Theorem 17 schedule takes c₃ = 1/log(1/q) ≈ κ inner steps per outer step.
        ("kappa", Test | Quick) if algorithm == "bsgm" => pow(1, 3),
        ("kappa", Test) if stationary => pow(1, 3),
        ("kappa", Test) => pow(1, 4),
        ("kappa", Quick) if stationary => pow(1, 4),
        ("kappa", Quick) if solver => pow(1, 6),
        ("kappa", Quick) => pow(1, 4),
        ("kappa", Full) if stationary => pow(1, 5),
        ("kappa", Full) => pow(0, 7),
        ("dim", Test) => vec![100.0, 200.0, 400.0],
        ("dim", Quick) => vec![250.0, 500.0, 1000.0, 2000.0, 4000.0],
        ("dim", Full) => vec![125.0, 250.0, 500.0, 1000.0, 2000.0, 4000.0, 8000.0],
        ("nnz", Test) => vec![1e4, 3e4, 1e5],
        ("nnz", Quick) => vec![1e4, 1e5, 1e6],
        ("nnz", Full) => vec![1e4, 1e5, 1e6, 1e7],
        ("epsilon", _) if stochastic(claim) => match mode {
            Test => vec![3.0, 10.0, 30.0],
            Quick => vec![3.0, 10.0, 30.0, 100.0],
            Full => vec![3.0, 10.0, 30.0, 100.0, 300.0, 1000.0],
        },
        ("epsilon", Test) => vec![1e2, 1e4, 1e6],
        ("epsilon", Quick) => vec![1e2, 1e4, 1e6, 1e8],
        ("epsilon", Full) => pow(2, 10),
        _ => Vec::new(),
    }
}

/// Seeds per point: several for the stochastic (ε) claims, one otherwise.
fn seeds(claim: &Claim, mode: Mode) -> u64 {
    match (stochastic(claim), mode) {
        (false, _) => 1,
        (true, Mode::Test) => 2,
        (true, Mode::Quick) => 3,
        (true, Mode::Full) => 5,
    }
}

/// The tasks of a run, in order.
pub fn plan(claims: &[Claim], options: &Options) -> Vec<Task> {
    let mut tasks = Vec::new();
    for claim in claims.iter().filter(|c| options.only.is_empty() || options.only.contains(&c.id)) {
        for algorithm in claim.algorithms.iter().filter(|a| options.algos.is_empty() || options.algos.contains(a)) {
            for x in grid(claim, algorithm, options.mode) {
                for seed in 0..seeds(claim, options.mode) {
                    let claim_version = points::claim_version(claim);
                    tasks.push(Task { claim: claim.id.clone(), algorithm: algorithm.clone(), x, seed, claim_version });
                }
            }
        }
    }
    tasks
}

fn convention(claim: &Claim) -> CountingConvention {
    match claim.convention {
        claims::Convention::Separate => CountingConvention::SeparateGradF,
        claims::Convention::Paired => CountingConvention::PairedGradF,
    }
}

/// The accuracy of a task: the claim's threshold, or ε = 1/x where the claim sweeps it.
fn threshold(claim: &Claim, task: &Task) -> f64 {
    claim.target.value.unwrap_or(1.0 / task.x)
}

/// The driver's target for a task (‖∇L‖ claims as their square).
fn run_target(claim: &Claim, task: &Task) -> Result<Target> {
    let v = threshold(claim, task);
    Ok(match claim.target.metric {
        TargetMetric::RelError => Target::RelError(v),
        TargetMetric::GradNormSq => Target::GradNormSq(v),
        TargetMetric::GradNorm => Target::GradNormSq(v * v),
        other => {
            return Err(KernelError::InvalidParameter {
                name: "target",
                reason: format!("claim `{}`: a run cannot stop at `{}`", claim.id, other.as_str()),
            })
        }
    })
}

/// The F.1 quadratic of `mode`'s size at condition number κ (the generator's exact constants,
/// no eigen-solve) and its x0.
fn quadratic(kappa: f64, mode: Mode) -> Result<(bilevel_data::quadratic::QuadraticProblem, Vec<f64>)> {
    // The κ sweeps count oracle calls, which do not depend on d: `small` (d_x = 200, d_y = 100)
    // keeps the full sweep to κ = 1e7 within hours; the dimension sweep is separate.
    let preset = match mode {
        Mode::Test => "tiny",
        Mode::Quick | Mode::Full => "small",
    };
    let config = bilevel_data::quadratic::Config { kappa_g: kappa, ..bilevel_data::quadratic::Config::preset(preset)? };
    let p = bilevel_data::quadratic::generate(&config, 0)?;
    let x0 = p.x0(1);
    Ok((p, x0))
}

/// Measures one task.
pub fn measure_task(task: &Task, claim: &Claim, mode: Mode, cache: &mut measure::RunCache) -> Result<Point> {
    let conv = convention(claim);
    let measure = claim.measure.as_str();
    let (m, batch) = match (claim.sweep.as_str(), measure) {
        (sweep, "solve_steps") => {
            let dim = match mode {
                Mode::Test => 2_000,
                Mode::Quick => 20_000,
                Mode::Full => 100_000,
            };
            // A κ sweep at the claim's residual; an ε sweep at κ = 100.
            let kappa = if sweep == "kappa" { task.x } else { 100.0 };
            (measure::solve_steps(&task.algorithm, kappa, dim, threshold(claim, task), 100_000_000, task.seed)?, None)
        }
        (_, _) if stochastic(claim) => stochastic_point(task, claim, mode, cache)?,
        ("kappa" | "epsilon", _) => {
            let grid: &[(usize, usize)] = match mode {
                Mode::Test => &[(10, 10)],
                Mode::Quick => &[(10, 10), (100, 100)],
                Mode::Full => &[(1, 1), (10, 10), (100, 100), (1000, 1000)],
            };
            let max_iters = match mode {
                Mode::Test => 5_000,
                Mode::Quick => 5_000,
                Mode::Full => 100_000,
            };
            let cost = |c: &OracleCounts| measure::cost_of(measure, c, conv).unwrap_or(f64::INFINITY);
            let kappa = if claim.sweep.as_str() == "kappa" { task.x } else { 100.0 };
            let make = || quadratic(kappa, mode);
            let target = run_target(claim, task)?;
            let key = format!("quadratic:{kappa:e}:{mode:?}");
            let base = Settings::default();
            (measure::to_target(&task.algorithm, &key, &make, &base, grid, target, max_iters, &cost, cache)?, None)
        }
        ("dim", _) => {
            let repeats = if mode == Mode::Test { 5 } else { 21 };
            let s = measure::dense_hvp_seconds(task.x as usize, repeats)?;
            (Measured { reached: true, seconds: s, ..Measured::default() }, None)
        }
        ("nnz", _) => {
            let per_row = 20;
            let rows = (task.x as usize / per_row).max(1);
            let repeats = if mode == Mode::Test { 5 } else { 21 };
            let s = measure::sparse_hvp_seconds(rows, (rows / 2).max(per_row), per_row, repeats)?;
            (Measured { reached: true, seconds: s, ..Measured::default() }, None)
        }
        (sweep, _) => {
            return Err(KernelError::InvalidParameter {
                name: "sweep",
                reason: format!("claim `{}`: sweep `{sweep}` is not measured by the harness", claim.id),
            })
        }
    };
    let cost = match measure {
        "solve_steps" => m.iterations as f64,
        "seconds_per_oracle" => m.seconds,
        other => {
            let calls = measure::cost_of(other, &m.counts, conv).ok_or_else(|| KernelError::InvalidParameter {
                name: "measure",
                reason: format!("claim `{}`: unknown measure `{other}`", claim.id),
            })?;
            // Samples: all of them as the problem counted them for the total; one oracle's
            // as its calls × the batch (every oracle of a run draws the same size, except
            // BSGM's J_s, which follows its schedule: its total is exact, its per-oracle
            // figures are not).
            match (claim.unit, batch, other) {
                (claims::Unit::Samples, Some(_), "total_calls") => (m.counts.samples_f + m.counts.samples_g) as f64,
                (claims::Unit::Samples, Some(b), _) => calls * b as f64,
                _ => calls,
            }
        }
    };
    let c = m.counts;
    Ok(Point {
        task: task.clone(),
        reached: m.reached,
        cost,
        iterations: m.iterations,
        grad_x_f: c.grad_x_f,
        grad_y_f: c.grad_y_f,
        grad_y_g: c.grad_y_g,
        hvp: c.hvp,
        cross: c.cross,
        samples: c.samples_f + c.samples_g,
        seconds: m.seconds,
        inner_steps: m.steps.map(|s| s.0),
        adjoint_steps: m.steps.map(|s| s.1),
        batch,
    })
}

/// A stochastic method on the stochastic quadratic (`tiny`, problem seed 0; κ_g = 1/µ set by
/// the task in a κ sweep, the preset's 10 otherwise) to the claim's target (‖∇L(x)‖² ≤ ε, or
/// ε² for a claim in ‖∇L‖ units), the cheapest over a grid of batch sizes (every oracle's batch
/// the same), seeded by the task.
fn stochastic_point(
    task: &Task,
    claim: &Claim,
    mode: Mode,
    cache: &mut measure::RunCache,
) -> Result<(Measured, Option<usize>)> {
    let mut config = stochastic_quadratic::Config::preset("tiny")?;
    if claim.sweep.as_str() == "kappa" {
        config.mu = 1.0 / task.x;
    }
    let make = || -> Result<(stochastic_quadratic::StochasticQuadratic, Vec<f64>)> {
        let p = stochastic_quadratic::generate(&config, 0)?;
        let x0 = p.x0(1);
        Ok((p, x0))
    };
    let target = run_target(claim, task)?;
    let batches: &[usize] = match mode {
        Mode::Test => &[8],
        Mode::Quick => &[4, 32],
        Mode::Full => &[1, 4, 16, 64, 256],
    };
    let max_iters = match mode {
        Mode::Test => 3_000,
        Mode::Quick => 5_000,
        Mode::Full => 100_000,
    };
    // Ranked by the samples touched (the stochastic papers' unit).
    let cost = |m: &Measured| (m.counts.samples_f + m.counts.samples_g) as f64;
    let mut best: Option<(Measured, usize)> = None;
    let key = format!("stochastic_quadratic:tiny:mu={:e}", config.mu);
    for &b in batches {
        let base = Settings { batches: BatchSizes::all(b), seed: task.seed, ..Settings::default() };
        let grid = [(bilevel_solvers::algorithms::DEFAULT_STEPS, bilevel_solvers::algorithms::DEFAULT_STEPS)];
        let m = measure::to_target(&task.algorithm, &key, &make, &base, &grid, target, max_iters, &|_| 0.0, cache)?;
        let better = match &best {
            None => true,
            Some((bm, _)) => (m.reached && !bm.reached) || (m.reached == bm.reached && cost(&m) < cost(bm)),
        };
        if better {
            best = Some((m, b));
        }
    }
    let (m, b) = best.expect("the batch grid is not empty");
    Ok((m, Some(b)))
}

/// The methods of the convergence figures: paper 000's Fig. 1 set on the F.1 quadratic, and
/// the stochastic methods on the stochastic quadratic.
pub const DETERMINISTIC_CURVES: &[&str] =
    &["amigo-cg", "amigo-gd", "aid-cg", "aid-gd", "aid-cg-ws", "aid-fp", "aid-n", "itd"];
/// See [`DETERMINISTIC_CURVES`].
pub const STOCHASTIC_CURVES: &[&str] = &["stocbio", "amigo-gd", "bsgm", "sustain", "bo-rep", "bsa", "ttsa"];

/// The convergence curves of `mode` (written to `curves.json` by [`run`]): every method of
/// [`DETERMINISTIC_CURVES`] on the F.1 quadratic at κ_g = 1e3 (paper 000 Fig. 1(b)'s style)
/// and of [`STOCHASTIC_CURVES`] on the stochastic quadratic with batches of 16, seed 0.
pub fn curves(options: &Options) -> Result<Vec<measure::Curve>> {
    let (iters, every, stoch_iters) = match options.mode {
        Mode::Test => (200, 10, 200),
        Mode::Quick => (2_000, 20, 2_000),
        Mode::Full => (20_000, 100, 20_000),
    };
    let wanted = |a: &str| options.algos.is_empty() || options.algos.iter().any(|b| b == a);
    let mut out = Vec::new();
    for name in DETERMINISTIC_CURVES.iter().filter(|a| wanted(a)) {
        let (p, x0) = quadratic(1e3, options.mode)?;
        out.push(measure::curve("deterministic-kappa-1e3", name, p, &x0, &Settings::default(), iters, every, false)?);
    }
    let config = stochastic_quadratic::Config::preset("tiny")?;
    for name in STOCHASTIC_CURVES.iter().filter(|a| wanted(a)) {
        let p = stochastic_quadratic::generate(&config, 0)?;
        let x0 = p.x0(1);
        let settings = Settings { batches: BatchSizes::all(16), ..Settings::default() };
        out.push(measure::curve("stochastic", name, p, &x0, &settings, stoch_iters, every, true)?);
    }
    Ok(out)
}

/// What a run produced.
pub struct Outcome {
    /// Every point (kept ones from a resumed run included).
    pub store: Store,
    /// The convergence curves (empty when the run stopped early, `max_new_points`).
    pub curves: Vec<measure::Curve>,
    /// Whether every planned point is measured.
    pub complete: bool,
    /// Seconds per HVP by thread count ([`measure::thread_scaling`]; empty when incomplete).
    pub threads: Vec<(String, usize, f64)>,
}

/// Refuses `--algos` entries that would measure nothing, as `--only` refuses an unknown claim:
/// an algorithm no claim of the table measures (unknown, or known but in no claim: the error
/// lists the table's algorithms) and one that no claim selected by `--only` measures (the error
/// names the claims that do). Checked before anything is written, so a typo cannot replace an
/// earlier report in `--out` with an empty one.
fn check_algos(table: &[Claim], options: &Options) -> Result<()> {
    let selected = |c: &&Claim| options.only.is_empty() || options.only.contains(&c.id);
    for algo in &options.algos {
        if table.iter().filter(selected).any(|c| c.algorithms.contains(algo)) {
            continue;
        }
        let users: Vec<&str> = table.iter().filter(|c| c.algorithms.contains(algo)).map(|c| c.id.as_str()).collect();
        let reason = if users.is_empty() {
            let mut measured: Vec<&str> = table.iter().flat_map(|c| c.algorithms.iter().map(String::as_str)).collect();
            measured.sort_unstable();
            measured.dedup();
            let known = claims::ALGORITHMS.contains(&algo.as_str()) || claims::SOLVERS.contains(&algo.as_str());
            let what = if known { "no claim of bench/claims.csv measures" } else { "unknown algorithm" };
            format!("{what} `{algo}`; the claims measure {}", measured.join(", "))
        } else {
            format!(
                "no selected claim (--only {}) measures `{algo}`; the claims that do: {}",
                options.only.join(","),
                users.join(", ")
            )
        };
        return Err(KernelError::InvalidParameter { name: "algos", reason });
    }
    Ok(())
}

/// Runs the plan of `options`, writing every point as it is measured, then the convergence
/// curves (`curves.json`); `progress` sees each point before it is measured.
pub fn run(options: &Options, progress: &mut dyn FnMut(&Progress<'_>)) -> Result<Outcome> {
    let table = claims::table().map_err(|e| KernelError::InvalidParameter { name: "claims", reason: e.to_string() })?;
    for id in &options.only {
        if !table.iter().any(|c| &c.id == id) {
            let ids: Vec<&str> = table.iter().map(|c| c.id.as_str()).collect();
            return Err(KernelError::InvalidParameter {
                name: "only",
                reason: format!("unknown claim `{id}`; one of {}", ids.join(", ")),
            });
        }
    }
    check_algos(&table, options)?;
    let tasks = plan(&table, options);
    if tasks.is_empty() {
        // Every sweep of the table has a grid in every mode today; kept so that a new sweep
        // without one cannot write an empty report over an earlier one.
        return Err(KernelError::InvalidParameter {
            name: "only",
            reason: format!("the selection plans no point in {:?} mode: nothing to measure", options.mode),
        });
    }
    let io = |e: std::io::Error| KernelError::InvalidParameter { name: "out", reason: e.to_string() };
    let mut store = Store::open(&options.out, options.resume).map_err(io)?;
    // Points of an earlier version of a claim's row (another target, measure, problem) are
    // stale: dropped, and measured again if planned.
    let current =
        |p: &Point| table.iter().any(|c| c.id == p.task.claim && points::claim_version(c) == p.task.claim_version);
    if !store.points.iter().all(current) {
        store.retain(current).map_err(io)?;
    }
    let start = Instant::now();
    let mut new = 0;
    let mut cache = measure::RunCache::new();
    for (i, task) in tasks.iter().enumerate() {
        if store.has(task) {
            continue;
        }
        if options.max_new_points.is_some_and(|m| new >= m) {
            break;
        }
        progress(&Progress { done: i, total: tasks.len(), current: task, elapsed: start.elapsed().as_secs_f64() });
        let claim = table.iter().find(|c| c.id == task.claim).expect("planned from the table");
        let point = measure_task(task, claim, options.mode, &mut cache)?;
        store.push(point).map_err(io)?;
        new += 1;
    }
    let complete = tasks.iter().all(|t| store.has(t));
    let (mut curves_out, mut threads) = (Vec::new(), Vec::new());
    if complete {
        curves_out = curves(options)?;
        let (dim, nnz, repeats) = match options.mode {
            Mode::Test => (400, 100_000, 5),
            Mode::Quick => (4_000, 1_000_000, 11),
            Mode::Full => (8_000, 10_000_000, 21),
        };
        threads = measure::thread_scaling(dim, nnz, repeats)?;
        let json_err = |e: serde_json::Error| io(std::io::Error::other(e));
        let curves_json = serde_json::to_string_pretty(&curves_out).map_err(json_err)?;
        points::replace(&options.out.join("curves.json"), curves_json.as_bytes()).map_err(io)?;
        let threads_json = serde_json::to_string_pretty(&threads).map_err(json_err)?;
        points::replace(&options.out.join("threads.json"), threads_json.as_bytes()).map_err(io)?;
    }
    Ok(Outcome { store, curves: curves_out, complete, threads })
}
