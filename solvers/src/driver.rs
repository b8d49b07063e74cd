//! One driver for every algorithm (argmin's `Executor` in spirit): initialises the algorithm,
//! runs steps until a budget or a target is met, checks the iterates once per step (the error
//! policy of [`BilevelProblem`]), and records a [`Trace`].
//!
//! Metrics are evaluated on the uncounted problem, outside the timed work: the exact ones from
//! the problem's closed form, or from the Newton reference ([`crate::reference`]) for problems
//! without one up to [`REFERENCE_MAX_DIM`]; and whatever the problem itself can measure
//! ([`BilevelProblem::metrics`]: validation loss, accuracy, ...).

use crate::reference::reference_hypergradient;
use crate::trace::{Trace, TraceRow};
use crate::{Algorithm, Iterates};
use bilevel_kernels::{ops, BilevelProblem, Counted, KernelError, Result};
use std::ops::ControlFlow;
use std::time::Instant;

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
    /// Wall time of the steps (metrics excluded), seconds.
    pub time_limit_s: Option<f64>,
    /// Relative error (L(x_k) − L*)/(L(x_0) − L*) (needs the problem's minimum).
    pub target_rel_error: Option<f64>,
    /// ‖∇L(x_k)‖ (needs the exact hypergradient or the reference).
    pub target_grad_norm: Option<f64>,
    /// Evaluate the metrics (and the targets) every this many iterations (≥ 1; the first and
    /// last rows always are).
    pub eval_every: usize,
}

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
    /// The observer asked to stop.
    Observer,
}

/// What the driver can measure on a problem.
struct Evaluator<'a> {
    problem: &'a dyn BilevelProblem,
    l0: Option<f64>,
    reference: bool,
    names: Vec<&'static str>,
    scratch: (Vec<f64>, Vec<f64>),
}

impl<'a> Evaluator<'a> {
    fn new(problem: &'a dyn BilevelProblem, x0: &[f64]) -> Self {
        let l0 = problem.exact().map(|e| e.value(x0));
        let reference = problem.exact().is_none() && problem.dim_y() <= REFERENCE_MAX_DIM;
        let names = problem.metrics().map_or_else(Vec::new, |m| m.names().to_vec());
        Self { problem, l0, reference, names, scratch: (vec![0.0; x0.len()], vec![0.0; problem.dim_y()]) }
    }

    /// (rel_error, ‖∇L(x)‖, ‖y − y*(x_at_y)‖, problem metrics).
    fn evaluate(&mut self, it: &Iterates) -> Result<TraceRow> {
        let (x, x_at_y, y) = (&it.x[..], &it.x_at_y[..], &it.y[..]);
        let mut row = TraceRow::default();
        let (g, ys) = &mut self.scratch;
        if let Some(exact) = self.problem.exact() {
            exact.hypergradient(x, g);
            exact.y_star(x_at_y, ys);
            ys.iter_mut().zip(y).for_each(|(a, b)| *a -= b);
            row.rel_error =
                exact.minimum().zip(self.l0).map(|((_, l_star), l0)| (exact.value(x) - l_star) / (l0 - l_star));
            (row.grad_norm, row.y_error) = (Some(ops::norm2(g)), Some(ops::norm2(ys)));
        } else if self.reference {
            // The reference is a measurement, not part of the run: where Newton fails (an
            // iterate far from where the problem is well conditioned) the row has no value.
            let at_x = reference_hypergradient(self.problem, x, y);
            let at_y = reference_hypergradient(self.problem, x_at_y, y);
            if let (Ok(at_x), Ok(at_y)) = (at_x, at_y) {
                ys.iter_mut().zip(&at_y.y_star).zip(y).for_each(|((a, s), b)| *a = s - b);
                (row.grad_norm, row.y_error) = (Some(ops::norm2(&at_x.hypergradient)), Some(ops::norm2(ys)));
            }
        }
        if let Some(m) = self.problem.metrics() {
            row.metrics = vec![0.0; self.names.len()];
            m.evaluate(x, y, &mut row.metrics);
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

/// Initialises `alg` at (x0, y0) and runs it on `problem` until `stop`; `observer` sees every
/// row and may stop the run.
pub fn run<P: BilevelProblem>(
    alg: &mut dyn Algorithm,
    problem: &Counted<P>,
    x0: &[f64],
    y0: &[f64],
    stop: &StopRule,
    mut observer: impl FnMut(&TraceRow) -> ControlFlow<()>,
) -> Result<Trace> {
    if stop.eval_every == 0 {
        return Err(KernelError::InvalidParameter { name: "eval_every", reason: "must be >= 1".into() });
    }
    let plain = problem.inner();
    alg.init(problem, x0, y0)?;
    let mut eval = Evaluator::new(plain, x0);
    let start = problem.counts();
    let mut rows = Vec::with_capacity(stop.max_iters.min(1 << 20) + 1);
    let mut seconds = 0.0;
    let mut reason = StopReason::MaxIters;
    let mut last_evaluated = true;
    for iteration in 0..=stop.max_iters {
        if iteration > 0 {
            let t = Instant::now();
            alg.step(problem)?;
            seconds += t.elapsed().as_secs_f64();
            check_iterate("outer iterate x (is the outer step too large?)", &alg.iterates().x)?;
            check_iterate("inner iterate y (is the inner step too large?)", &alg.iterates().y)?;
        }
        let counts = problem.counts().since(&start);
        let evaluated = iteration % stop.eval_every == 0 || iteration == stop.max_iters;
        last_evaluated = evaluated;
        let mut row = if evaluated { eval.evaluate(alg.iterates())? } else { TraceRow::default() };
        (row.iteration, row.seconds, row.counts) = (iteration, seconds, counts);
        let observed = observer(&row);
        let hit = |target: Option<f64>, value: Option<f64>| matches!((target, value), (Some(t), Some(v)) if v <= t);
        let target = hit(stop.target_rel_error, row.rel_error) || hit(stop.target_grad_norm, row.grad_norm);
        let calls = row.total_calls();
        rows.push(row);
        if target {
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
    // The last row always carries metrics.
    if let Some(last) = rows.last_mut().filter(|_| !last_evaluated) {
        {
            let (i, s, c) = (last.iteration, last.seconds, last.counts);
            *last = eval.evaluate(alg.iterates())?;
            (last.iteration, last.seconds, last.counts) = (i, s, c);
        }
    }
    Ok(Trace { algorithm: alg.name().to_string(), metric_names: eval.names.clone(), rows, stop: reason })
}
