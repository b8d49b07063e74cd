//! One driver for every algorithm (argmin's `Executor` in spirit): initialises the algorithm,
//! runs steps until a budget or a target is met, checks the iterates once per step (the error
//! policy of [`BilevelProblem`]), and records a [`Trace`].
//!
//! Metrics are evaluated on the uncounted problem, outside the timed work: the exact ones from
//! the problem's closed form, or from the Newton reference ([`crate::reference`]) for problems
//! without one up to [`REFERENCE_MAX_DIM`]; and whatever the problem itself can measure
//! ([`BilevelProblem::metrics`]: validation loss, accuracy, ...).

use crate::reference::reference_hypergradient;
use crate::trace::{OutputPoint, Trace, TraceRow};
use crate::{Algorithm, FixedPointAlgorithm, Iterates, Output};
use bilevel_kernels::interrupt::{self, Cause};
use bilevel_kernels::{
    memory, ops, BilevelProblem, Counted, CountingConvention, FixedPointProblem, KernelError, OracleCounts,
    ProblemMetrics, Result,
};
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

/// Largest d_y for which the driver measures ‖∇L‖ and the inner error against the Newton
/// reference when the problem has no closed form (a dense solve per evaluated row).
pub const REFERENCE_MAX_DIM: usize = 200;

/// When to stop; the first rule met ends the run. `max_iters` always applies.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct StopRule {
    /// Outer iterations.
    pub max_iters: usize,
    /// Total oracle calls (see [`TraceRow::total_calls`]).
    pub max_oracle_calls: Option<u64>,
    /// Wall time of the steps (metrics excluded), seconds. Honoured inside a step too: the
    /// loops of a step (inner steps, linear solves, initialisation phases) check it
    /// ([`bilevel_kernels::interrupt`]), and a step it cuts adds no row.
    pub time_limit_s: Option<f64>,
    /// Relative error (L(x_k) − L*)/(L(x_0) − L*) (needs the problem's minimum), in (0, 1):
    /// the relative error starts at 1, so a target of 1 or more is met before any work.
    pub target_rel_error: Option<f64>,
    /// ‖∇L(x_k)‖ (needs the exact hypergradient or the reference).
    pub target_grad_norm: Option<f64>,
    /// Evaluate the metrics (and the targets) every this many iterations (≥ 1; the first and
    /// last rows always are).
    pub eval_every: usize,
    /// Divergence test ([`DEFAULT_DIVERGENCE_GROWTH`]; `None` turns it off): the run stops with
    /// [`StopReason::Diverged`] when the monitored quantity, smoothed as the smallest of its
    /// last 9 values (a noisy value's large draws are not a trend; a sustained growth is),
    /// exceeds both this factor times its smallest smoothed value so far and its first value.
    /// The quantity is ‖∇L(x_k)‖ on evaluated rows where the driver measures it (a property of
    /// the iterates: the noise of a single-sample estimate does not reach it), else (no
    /// reference, or the reference failed at the last evaluated row) the hypergradient
    /// estimate ‖ψ_k‖. Non-finite iterates always stop the run. A quantity whose first value
    /// is 0 is not monitored. The inner error is not: a warm-started inner loop lags behind a
    /// fast-moving x for a few steps and recovers.
    pub divergence_growth: Option<f64>,
}

/// The default [`StopRule::divergence_growth`]: a hundredfold growth over the best value seen,
/// to above where the run started. A converging run, deterministic or on mini-batches, stays
/// far below it; a step too large for the curvature met away from x0 crosses it within a few
/// steps of the blow-up (the meta-learning instance of docs/reliability.md: ‖∇L‖ 2e-3 → 0.3 in
/// 20 steps, stopped at step 377, one before its iterates turn NaN).
pub const DEFAULT_DIVERGENCE_GROWTH: f64 = 100.0;

impl StopRule {
    /// Only an iteration cap; metrics at every row.
    pub fn iterations(max_iters: usize) -> Self {
        Self {
            max_iters,
            max_oracle_calls: None,
            time_limit_s: None,
            target_rel_error: None,
            target_grad_norm: None,
            eval_every: 1,
            divergence_growth: Some(DEFAULT_DIVERGENCE_GROWTH),
        }
    }
}

/// Why the run stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum StopReason {
    /// `max_iters` reached.
    MaxIters,
    /// `max_oracle_calls` reached.
    OracleBudget,
    /// `time_limit_s` reached.
    TimeLimit,
    /// A target was met.
    Target,
    /// The observer asked to stop (the CLI's observer does on Ctrl-C), or the interrupt
    /// watch's flag cut a step ([`bilevel_kernels::interrupt`]).
    Observer,
    /// An iterate became non-finite, or a monitored quantity grew past
    /// [`StopRule::divergence_growth`] ([`Trace::failure`] says which).
    Diverged,
    /// A step failed with an error (a linear solver's breakdown, ...; [`Trace::failure`] has it).
    Failed,
    /// The run used its budget (iterations, time or oracle calls) and its outer objective L(x)
    /// (on a fixed-point problem its training loss) ended above where it started: not a
    /// success ([`Trace::failure`] has the values).
    NoProgress,
}

impl StopReason {
    /// Whether the run ended on a failure (divergence or an error) rather than a rule.
    pub fn is_failure(self) -> bool {
        matches!(self, StopReason::Diverged | StopReason::Failed | StopReason::NoProgress)
    }
}

/// The last [`WINDOW`] values of a noisy quantity and their minimum: the hypergradient
/// estimate of a stochastic algorithm is monitored through it, so that large draws (a
/// randomized truncation's deep samples, single-sample batches: heavy tails) are not read as
/// divergence while a sustained growth, every recent value large, is. No allocation (a fixed
/// array).
#[derive(Clone, Copy, Debug)]
struct Window {
    values: [f64; WINDOW],
    len: usize,
    next: usize,
}

/// How many recent estimates [`Window`] takes the minimum of.
const WINDOW: usize = 9;

impl Window {
    fn new() -> Self {
        Self { values: [0.0; WINDOW], len: 0, next: 0 }
    }
    /// Records `v` and returns the minimum of the values held (up to [`WINDOW`]).
    fn push(&mut self, v: f64) -> f64 {
        self.values[self.next] = v;
        self.next = (self.next + 1) % WINDOW;
        self.len = (self.len + 1).min(WINDOW);
        self.values[..self.len].iter().copied().fold(f64::INFINITY, f64::min)
    }
}

/// The divergence monitor of one (smoothed) quantity: its first and smallest values so far.
#[derive(Clone, Copy, Debug, Default)]
struct Growth {
    first: Option<f64>,
    best: f64,
}

impl Growth {
    /// Records `value`; `true` if it exceeds `factor` × the best so far and the first value.
    fn diverged(&mut self, value: f64, factor: f64) -> bool {
        let Some(first) = self.first else {
            (self.first, self.best) = (Some(value), value);
            return false;
        };
        // A quantity that starts at 0 (x0 already optimal) is not monitored.
        let grew = first > 0.0 && value > factor * self.best && value > first;
        self.best = self.best.min(value);
        grew
    }
}

/// The metric columns of a run of `alg` on `problem`: the problem's own metrics, then
/// `avg_rel_error` and `avg_grad_norm` (the measurements at [`Iterates::averaged`]) when the
/// algorithm outputs an averaged iterate and the problem has a closed form or a Newton
/// reference (NaN where the reference fails at x̂). Known before the run (a streamed CSV's
/// header).
pub fn metric_names(problem: &dyn BilevelProblem, alg: &dyn Algorithm) -> Vec<&'static str> {
    let mut names = problem.metrics().map_or_else(Vec::new, |m| m.names().to_vec());
    if averaged_measured(problem, alg) {
        names.extend(AVERAGED_COLUMNS);
    }
    names
}

fn averaged_measured(problem: &dyn BilevelProblem, alg: &dyn Algorithm) -> bool {
    alg.output() == Output::Averaged && (problem.exact().is_some() || problem.dim_y() <= REFERENCE_MAX_DIM)
}

/// The columns measured at the averaged iterate.
const AVERAGED_COLUMNS: [&str; 2] = ["avg_rel_error", "avg_grad_norm"];

/// What the driver can measure on a problem: on a bilevel problem its exact references or the
/// Newton reference, and its metrics; on a fixed-point problem its metrics only.
struct Evaluator<'a> {
    problem: Option<&'a dyn BilevelProblem>,
    metrics: Option<&'a dyn ProblemMetrics>,
    l0: Option<f64>,
    reference: bool,
    averaged: bool,
    names: Vec<&'static str>,
    /// On a fixed-point problem, the metric column of ‖G_α(λ)‖ (`grad_mapping`), the measure of
    /// stationarity its theorems bound in place of ‖∇L‖.
    stationarity: Option<usize>,
    /// On a fixed-point problem, the metric column of its outer objective (`train_loss`, paper
    /// 001 §7.1's E): the row's `value`, which the no-progress test reads.
    objective: Option<usize>,
    scratch: (Vec<f64>, Vec<f64>),
}

impl<'a> Evaluator<'a> {
    fn new(problem: &'a dyn BilevelProblem, alg: &dyn Algorithm, x0: &[f64]) -> Self {
        let l0 = problem.exact().map(|e| e.value(x0));
        let reference = problem.exact().is_none() && problem.dim_y() <= REFERENCE_MAX_DIM;
        let names = metric_names(problem, alg);
        let scratch = (vec![0.0; x0.len()], vec![0.0; problem.dim_y()]);
        let averaged = averaged_measured(problem, alg);
        let metrics = problem.metrics();
        Self {
            problem: Some(problem),
            metrics,
            l0,
            reference,
            averaged,
            names,
            stationarity: None,
            objective: None,
            scratch,
        }
    }

    fn fixed_point(problem: &'a dyn FixedPointProblem) -> Self {
        let metrics = problem.metrics();
        let names: Vec<&'static str> = metrics.map_or_else(Vec::new, |m| m.names().to_vec());
        let stationarity = names.iter().position(|n| *n == "grad_mapping");
        let objective = names.iter().position(|n| *n == "train_loss");
        Self {
            problem: None,
            metrics,
            l0: None,
            reference: false,
            averaged: false,
            names,
            stationarity,
            objective,
            scratch: (Vec::new(), Vec::new()),
        }
    }

    /// Whether the rows carry ‖∇L(x)‖ (a closed form, or the Newton reference).
    fn measures_grad(&self) -> bool {
        self.problem.is_some_and(|p| p.exact().is_some()) || self.reference
    }

    /// (rel_error, ‖∇L(x)‖, ‖y − y*(x_at_y)‖, L(x)) from the closed form or the Newton
    /// reference.
    fn exact_at(&mut self, x: &[f64], x_at_y: &[f64], y: &[f64]) -> [Option<f64>; 4] {
        let (g, ys) = &mut self.scratch;
        let mut out = [None; 4];
        if let Some(exact) = self.problem.and_then(|p| p.exact()) {
            exact.hypergradient(x, g);
            exact.y_star(x_at_y, ys);
            ys.iter_mut().zip(y).for_each(|(a, b)| *a -= b);
            let value = exact.value(x);
            out[0] = exact.minimum().zip(self.l0).map(|((_, l_star), l0)| (value - l_star) / (l0 - l_star));
            (out[1], out[2], out[3]) = (Some(ops::norm2(g)), Some(ops::norm2(ys)), Some(value));
        } else if let Some(problem) = self.problem.filter(|_| self.reference) {
            // The reference is a measurement, not part of the run: where Newton fails (an
            // iterate far from where the problem is well conditioned) the row has no value.
            let at_x = reference_hypergradient(problem, x, y);
            let at_y = reference_hypergradient(problem, x_at_y, y);
            if let (Ok(at_x), Ok(at_y)) = (at_x, at_y) {
                ys.iter_mut().zip(&at_y.y_star).zip(y).for_each(|((a, s), b)| *a = s - b);
                (out[1], out[2]) = (Some(ops::norm2(&at_x.hypergradient)), Some(ops::norm2(ys)));
                out[3] = Some(problem.f(x, &at_x.y_star, bilevel_kernels::Batch::Full));
            }
        }
        // A measurement that cannot be made at this iterate (a reference overflowing far from
        // where the problem is well conditioned) is left out, never reported as NaN.
        out.map(|v| v.filter(|v| v.is_finite()))
    }

    /// The row of measurements at the iterates `it` (rel_error, ‖∇L(x)‖, ‖y − y*(x_at_y)‖, the
    /// problem's metrics, and those at the averaged iterate).
    fn evaluate(&mut self, it: &Iterates) -> Result<TraceRow> {
        let mut row = TraceRow::default();
        [row.rel_error, row.grad_norm, row.y_error, row.value] = self.exact_at(&it.x, &it.x_at_y, &it.y);
        let own = self.names.len() - if self.averaged { AVERAGED_COLUMNS.len() } else { 0 };
        if let Some(m) = self.metrics {
            row.metrics = vec![0.0; own];
            m.evaluate(&it.x, &it.y, &mut row.metrics);
        }
        if let Some(i) = self.objective {
            row.value = row.metrics.get(i).copied().filter(|v| v.is_finite());
        }
        if self.averaged {
            let avg = it.averaged.as_deref().unwrap_or(&it.x);
            let [rel, grad, ..] = self.exact_at(avg, &it.x_at_y, &it.y);
            row.metrics.extend([rel, grad].map(|v| v.unwrap_or(f64::NAN)));
        }
        Ok(row)
    }
}

/// `Err(NonFinite)` naming the iterate if `v` has a non-finite entry.
fn check_iterate(what: &'static str, v: &[f64]) -> Result<()> {
    match v.iter().position(|a| !a.is_finite()) {
        Some(index) => Err(KernelError::NonFinite { what, index }),
        None => Ok(()),
    }
}

/// What the driver steps: an algorithm bound to the problem it runs on.
trait Stepping {
    fn name(&self) -> &str;
    fn step(&mut self) -> Result<()>;
    fn iterates(&self) -> &Iterates;
    fn output(&self) -> Output;
}

struct OnBilevel<'a, P> {
    alg: &'a mut dyn Algorithm,
    problem: &'a Counted<P>,
}

impl<P: BilevelProblem> Stepping for OnBilevel<'_, P> {
    fn name(&self) -> &str {
        self.alg.name()
    }
    fn step(&mut self) -> Result<()> {
        self.alg.step(self.problem)
    }
    fn iterates(&self) -> &Iterates {
        self.alg.iterates()
    }
    fn output(&self) -> Output {
        self.alg.output()
    }
}

struct OnFixedPoint<'a, P> {
    alg: &'a mut dyn FixedPointAlgorithm,
    problem: &'a Counted<P>,
}

impl<P: FixedPointProblem> Stepping for OnFixedPoint<'_, P> {
    fn name(&self) -> &str {
        self.alg.name()
    }
    fn step(&mut self) -> Result<()> {
        self.alg.step_fixed_point(self.problem)
    }
    fn iterates(&self) -> &Iterates {
        self.alg.iterates()
    }
    fn output(&self) -> Output {
        self.alg.output()
    }
}

/// Refuses a stop rule the driver cannot apply.
fn check_stop(stop: &StopRule) -> Result<()> {
    if stop.eval_every == 0 {
        return Err(KernelError::InvalidParameter { name: "eval_every", reason: "must be >= 1".into() });
    }
    if let Some(g) = stop.divergence_growth.filter(|g| g.is_nan() || *g <= 1.0) {
        return Err(KernelError::InvalidParameter {
            name: "divergence_growth",
            reason: format!("must be > 1, got {g}"),
        });
    }
    if let Some(t) = stop.target_rel_error.filter(|t| !(*t > 0.0 && *t < 1.0)) {
        return Err(KernelError::InvalidParameter {
            name: "target_rel_error",
            reason: format!(
                "must be in (0, 1), got {t}: the relative error (L(x_k) − L*)/(L(x_0) − L*) is 1 at x_0, so the \
                 target would be met before any work"
            ),
        });
    }
    if let Some(t) = stop.target_grad_norm.filter(|t| !(*t > 0.0 && t.is_finite())) {
        return Err(KernelError::InvalidParameter {
            name: "target_grad_norm",
            reason: format!("must be finite and > 0, got {t}"),
        });
    }
    Ok(())
}

/// The instant `seconds` from now (`None` where it is too far to represent: no deadline).
fn deadline_in(seconds: f64) -> Option<Instant> {
    Duration::try_from_secs_f64(seconds.max(0.0)).ok().and_then(|d| Instant::now().checked_add(d))
}

/// Runs an algorithm's initialisation under the run's watch: its memory checks counted
/// together ([`memory::ledger`]) and its loops cut by the time limit (an initialisation
/// phase, as BO-REP's refinement, can be long) or the caller's flag.
fn init_watched(stop: &StopRule, init: impl FnOnce() -> Result<()>) -> Result<()> {
    let deadline = stop.time_limit_s.and_then(deadline_in);
    memory::ledger(|| interrupt::with_deadline(deadline, init))
}

/// The trace of a run cut during its initialisation: the row of the starting point, the stop
/// the cut asked for, and a message saying no step was taken.
fn cut_in_init(name: &str, mut eval: Evaluator<'_>, start: &Iterates, cause: Cause) -> Result<Trace> {
    let row = eval.evaluate(start)?;
    let stop = match cause {
        Cause::Flag => StopReason::Observer,
        Cause::Deadline => StopReason::TimeLimit,
    };
    Ok(Trace {
        algorithm: name.to_string(),
        metric_names: eval.names.clone(),
        rows: vec![row],
        stop,
        failure: Some(format!("the initialisation: {cause} before the first step")),
        output: None,
    })
}

/// Initialises `alg` at (x0, y0) and runs it on `problem` until `stop`; `observer` sees every
/// row and may stop the run.
///
/// Errors before the first step (a bad stop rule, `init` refusing the problem) are returned; once
/// the run has started, nothing measured is lost: a step that fails or an iterate that diverges
/// ends the run with [`StopReason::Failed`] or [`StopReason::Diverged`], the message in
/// [`Trace::failure`], and the rows so far (a step whose iterate is not finite adds no row; one
/// that grew past the divergence test adds its evaluated row).
pub fn run<P: BilevelProblem>(
    alg: &mut dyn Algorithm,
    problem: &Counted<P>,
    x0: &[f64],
    y0: &[f64],
    stop: &StopRule,
    mut observer: impl FnMut(&TraceRow) -> ControlFlow<()>,
) -> Result<Trace> {
    check_stop(stop)?;
    let initialised = init_watched(stop, || alg.init(problem, x0, y0));
    let eval = Evaluator::new(problem.inner(), alg, x0);
    if let Err(e) = initialised {
        return match interrupt::cause_of(&e) {
            Some(cause) => cut_in_init(alg.name(), eval, &Iterates::new(problem.inner(), x0, y0)?, cause),
            None => Err(e),
        };
    }
    drive(&mut OnBilevel { alg, problem }, &|| problem.counts(), eval, stop, &mut observer)
}

/// [`run`] for a fixed-point problem: initialises `alg` at λ_0 and the states w_0 (all samples,
/// `n_samples · dim_state` values) and runs it on `problem` until `stop`, with the same rules,
/// divergence detection (non-finite λ or states, a growing hypergradient estimate), failure
/// handling and trace. Counts are `problem`'s, in the fields of [`Counted`]'s mapping
/// (map → `grad_y_g`, ∂wΦ products → `hvp`, ∂λΦᵀ → `cross`, ∇wE/∇λE → `grad_y_f`/`grad_x_f`).
/// The rows carry the problem's own metrics ([`FixedPointProblem::metrics`], evaluated on the
/// uncounted problem outside the timed work) and no `rel_error`, `grad_norm` or `y_error`:
/// the targets of `stop` never fire.
pub fn run_fixed_point<P: FixedPointProblem>(
    alg: &mut dyn FixedPointAlgorithm,
    problem: &Counted<P>,
    lambda0: &[f64],
    w0: &[f64],
    stop: &StopRule,
    mut observer: impl FnMut(&TraceRow) -> ControlFlow<()>,
) -> Result<Trace> {
    check_stop(stop)?;
    let initialised = init_watched(stop, || alg.init_fixed_point(problem, lambda0, w0));
    let eval = Evaluator::fixed_point(problem.inner());
    if let Err(e) = initialised {
        return match interrupt::cause_of(&e) {
            Some(cause) => {
                cut_in_init(alg.name(), eval, &Iterates::for_fixed_point(problem.inner(), lambda0, w0)?, cause)
            }
            None => Err(e),
        };
    }
    drive(&mut OnFixedPoint { alg, problem }, &|| problem.counts(), eval, stop, &mut observer)
}

/// The loop of [`run`] and [`run_fixed_point`] on an initialised algorithm.
fn drive(
    alg: &mut dyn Stepping,
    counts_now: &dyn Fn() -> OracleCounts,
    mut eval: Evaluator<'_>,
    stop: &StopRule,
    observer: &mut dyn FnMut(&TraceRow) -> ControlFlow<()>,
) -> Result<Trace> {
    let start = counts_now();
    let mut rows = Vec::with_capacity(stop.max_iters.min(1 << 20) + 1);
    let mut seconds = 0.0;
    let (mut reason, mut failure) = (StopReason::MaxIters, None);
    let mut last_evaluated = true;
    let mut growth = [Growth::default(); 2];
    let (mut estimates, mut grads) = (Window::new(), Window::new());
    // The estimate is monitored only where ‖∇L‖ is not measured (see StopRule::divergence_growth):
    // on a problem without a reference, or after a row where the reference failed (an iterate
    // far from where the problem is well conditioned).
    let measures_grad = eval.measures_grad();
    let mut grad_measured = measures_grad;
    let factor = stop.divergence_growth.unwrap_or(f64::INFINITY);
    let mut draw = OutputDraw::new(alg.output());
    // x_k before step k + 1 (a copy into a buffer allocated once): what a step cut by the
    // watch leaves as the run's last point.
    let mut before = alg.iterates().clone();
    let mut cut = false;
    for iteration in 0..=stop.max_iters {
        if iteration > 0 {
            draw.offer(0, iteration - 1, alg.iterates());
            before.copy_from(alg.iterates());
            let deadline = stop.time_limit_s.and_then(|t| deadline_in(t - seconds));
            let t = Instant::now();
            let stepped = interrupt::with_deadline(deadline, || alg.step());
            seconds += t.elapsed().as_secs_f64();
            if let Some(cause) = stepped.as_ref().err().and_then(interrupt::cause_of) {
                reason = match cause {
                    Cause::Flag => StopReason::Observer,
                    Cause::Deadline => StopReason::TimeLimit,
                };
                cut = true;
                break;
            }
            let it = alg.iterates();
            let checked = stepped.map_err(|e| (StopReason::Failed, e.to_string())).and_then(|()| {
                check_iterate("outer iterate x (is the outer step too large?)", &it.x)
                    .and_then(|()| check_iterate("inner iterate y (is the inner step too large?)", &it.y))
                    .map_err(|e| (StopReason::Diverged, e.to_string()))
            });
            if let Err((r, message)) = checked {
                (reason, failure) = (r, Some(format!("step {iteration}: {message}")));
                break;
            }
            draw.offer(1, iteration, it);
            // Followed at every step (its first and best values are the run's), judged only
            // where ‖∇L‖ is not measured.
            let estimate_grew = growth[0].diverged(estimates.push(ops::norm2(&it.grad)), factor);
            if !grad_measured && estimate_grew {
                let message = format!("the hypergradient estimate grew past {factor}× its smallest value");
                (reason, failure) = (StopReason::Diverged, Some(format!("step {iteration}: {message}")));
            }
        }
        let counts = counts_now().since(&start);
        // A row the run stops at for a budget is evaluated before the observer sees it (so a
        // streamed trace has its metrics); only an observer's stop is evaluated afterwards.
        let budget_hit = stop.max_oracle_calls.is_some_and(|m| counts.total(CountingConvention::PairedGradF) >= m)
            || stop.time_limit_s.is_some_and(|t| seconds >= t);
        let evaluated =
            iteration % stop.eval_every == 0 || iteration == stop.max_iters || failure.is_some() || budget_hit;
        last_evaluated = evaluated;
        let mut row = if evaluated { eval.evaluate(alg.iterates())? } else { TraceRow::default() };
        if evaluated {
            grad_measured = measures_grad && row.grad_norm.is_some();
        }
        (row.iteration, row.seconds, row.counts) = (iteration, seconds, counts);
        if failure.is_none() && row.grad_norm.is_some_and(|v| growth[1].diverged(grads.push(v), factor)) {
            let message = format!("‖∇L‖ grew past {factor}× its smallest value, above its first");
            (reason, failure) = (StopReason::Diverged, Some(format!("step {iteration}: {message}")));
        }
        let observed = observer(&row);
        let hit = |target: Option<f64>, value: Option<f64>| matches!((target, value), (Some(t), Some(v)) if v <= t);
        let target = hit(stop.target_rel_error, row.rel_error) || hit(stop.target_grad_norm, row.grad_norm);
        let calls = row.total_calls();
        rows.push(row);
        if failure.is_some() {
        } else if target {
            reason = StopReason::Target;
        } else if stop.max_oracle_calls.is_some_and(|m| calls >= m) {
            reason = StopReason::OracleBudget;
        } else if stop.time_limit_s.is_some_and(|t| seconds >= t) {
            reason = StopReason::TimeLimit;
        } else if observed.is_break() {
            reason = StopReason::Observer;
        } else {
            continue;
        }
        break;
    }
    if cut && rows.len() == 1 && reason == StopReason::TimeLimit {
        failure = Some("step 1: the time limit passed inside it (no step was completed)".into());
    }
    // The last point: x_k before a step the watch cut (its iterates are mid-step).
    let last_point = if cut { &before } else { alg.iterates() };
    // The last row always carries metrics.
    if let Some(last) = rows.last_mut().filter(|_| !last_evaluated && failure.is_none()) {
        let (i, s, c) = (last.iteration, last.seconds, last.counts);
        *last = eval.evaluate(last_point)?;
        (last.iteration, last.seconds, last.counts) = (i, s, c);
    }
    // A run that used its budget with L(x) above where it started made no progress.
    let budget = matches!(reason, StopReason::MaxIters | StopReason::TimeLimit | StopReason::OracleBudget);
    if let (true, Some(first), Some(last)) = (budget, rows[0].value, rows.last().and_then(|r| r.value)) {
        if rows.len() > 1 && last > first + 1e-12 * first.abs().max(f64::MIN_POSITIVE) {
            reason = StopReason::NoProgress;
            failure = Some(format!("the outer objective L(x) ended at {last:.6e}, above its start {first:.6e}"));
        }
    }
    let output = draw.finish(last_point, &rows, &mut eval)?;
    Ok(Trace {
        algorithm: alg.name().to_string(),
        metric_names: eval.names.clone(),
        rows,
        stop: reason,
        failure,
        output,
    })
}

/// Stream number of the output draw (past every algorithm's batch streams).
const OUTPUT_STREAM: u64 = 16;

/// The output of a run as it goes: for [`Output::Uniform`], one iterate kept by reservoir
/// sampling (the t-th candidate replaces the kept one with probability 1/t, so the kept one is
/// uniform over all candidates whenever the run stops, without storing the trajectory; a copy
/// into a buffer allocated once).
struct OutputDraw {
    rule: Output,
    rng: Option<rand_xoshiro::Xoshiro256PlusPlus>,
    seen: usize,
    kept: Option<(usize, Iterates)>,
}

impl OutputDraw {
    fn new(rule: Output) -> Self {
        let rng = match rule {
            Output::Uniform { seed, .. } => Some(crate::sampling::stream_rng(seed, OUTPUT_STREAM)),
            _ => None,
        };
        Self { rule, rng, seen: 0, kept: None }
    }

    /// Offers x_`iteration` as a candidate of a uniform rule whose first candidate is `first`.
    fn offer(&mut self, first: usize, iteration: usize, it: &Iterates) {
        use rand::Rng;
        let (Output::Uniform { first: f, .. }, Some(rng)) = (self.rule, self.rng.as_mut()) else { return };
        if f != first {
            return;
        }
        self.seen += 1;
        if rng.random_range(0..self.seen) == 0 {
            match &mut self.kept {
                Some((i, kept)) => {
                    *i = iteration;
                    kept.clone_from(it);
                }
                None => self.kept = Some((iteration, it.clone())),
            }
        }
    }

    /// The output point of a run that ended at `last` with `rows`.
    fn finish(self, last: &Iterates, rows: &[TraceRow], eval: &mut Evaluator<'_>) -> Result<Option<OutputPoint>> {
        let end = rows.last().map_or(0, |r| r.iteration);
        let (iteration, chosen, candidates) = match (self.rule, &self.kept) {
            (Output::Uniform { .. }, None) => return Ok(None),
            (Output::Uniform { .. }, Some((i, kept))) => (*i, kept.clone(), self.seen),
            (Output::Averaged, _) => {
                let x = last.averaged.clone().unwrap_or_else(|| last.x.clone());
                (end, Iterates { x: x.clone(), x_at_y: x, ..last.clone() }, 1)
            }
            (Output::Last, _) => (end, last.clone(), 1),
        };
        // A run that stopped on a non-finite iterate has no last (or averaged) output.
        if chosen.x.iter().any(|v| !v.is_finite()) {
            return Ok(None);
        }
        let mut row = match (self.rule, rows.last()) {
            (Output::Last, Some(r)) => r.clone(),
            _ => eval.evaluate(&chosen)?,
        };
        if let Some(r) = rows.last() {
            (row.iteration, row.seconds, row.counts) = (r.iteration, r.seconds, r.counts);
        }
        // The candidates' rows, x_first..x_{K−1+first} (a uniform rule only): ‖∇L‖, or on a
        // fixed-point problem ‖G_α‖.
        let stationarity = |r: &TraceRow| {
            r.grad_norm.or_else(|| eval.stationarity.and_then(|i| r.metrics.get(i).copied()).filter(|v| v.is_finite()))
        };
        let norms: Vec<f64> = match self.rule {
            Output::Uniform { first, .. } => {
                let range = first..first + candidates;
                rows.iter().filter(|r| range.contains(&r.iteration)).filter_map(stationarity).collect()
            }
            _ => Vec::new(),
        };
        let n = norms.len();
        let mean = |f: fn(f64) -> f64| (n > 0).then(|| norms.iter().map(|&v| f(v)).sum::<f64>() / n as f64);
        Ok(Some(OutputPoint {
            rule: self.rule,
            iteration,
            x: chosen.x,
            row,
            candidates,
            mean_sq_grad_norm: mean(|v| v * v),
            mean_grad_norm: mean(|v| v),
            evaluated: n,
        }))
    }
}
