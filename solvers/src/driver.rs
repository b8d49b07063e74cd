//! One driver for every algorithm: runs steps until a budget or a target is met and records a
//! trace (iteration, wall time, exact oracle counts, and the metrics the problem can compute
//! exactly). Metric evaluation is excluded from the wall time and from the oracle counts (it
//! goes to the uncounted problem).

use crate::algorithms::Algorithm;
use bilevel_kernels::{ops, BilevelProblem, Counted, OracleCounts, Result};
use std::io::Write;
use std::ops::ControlFlow;
use std::time::Instant;

/// When to stop; the first rule met ends the run. `max_iters` always applies.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StopRule {
    pub max_iters: usize,
    /// Total oracle calls (grad f pairs + grad g + HVP + cross).
    pub max_oracle_calls: Option<u64>,
    pub time_limit_s: Option<f64>,
    /// Relative error (L(x_k) − L*)/(L(x_0) − L*) (needs the problem's minimum).
    pub target_rel_error: Option<f64>,
    /// ‖∇L(x_k)‖ (needs the exact hypergradient).
    pub target_grad_norm: Option<f64>,
}

impl StopRule {
    pub fn iterations(max_iters: usize) -> Self {
        Self { max_iters, max_oracle_calls: None, time_limit_s: None, target_rel_error: None, target_grad_norm: None }
    }
}

/// Why the run stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    MaxIters,
    OracleBudget,
    TimeLimit,
    Target,
    Observer,
}

/// One row of the trace (row 0 is the starting point).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TraceRow {
    pub iteration: usize,
    pub seconds: f64,
    pub counts: OracleCounts,
    pub rel_error: Option<f64>,
    pub grad_norm: Option<f64>,
    pub y_error: Option<f64>,
}

impl TraceRow {
    /// grad f + grad g + HVP + cross.
    pub fn total_calls(&self) -> u64 {
        self.counts.grad_f() + self.counts.grad_y_g + self.counts.hvp + self.counts.cross
    }
}

/// The trace of a run.
#[derive(Clone, Debug, PartialEq)]
pub struct Trace {
    pub algorithm: String,
    pub rows: Vec<TraceRow>,
    pub stop: StopReason,
}

impl Trace {
    pub fn last(&self) -> &TraceRow {
        self.rows.last().expect("a trace has its starting row")
    }
    /// CSV with a header; empty cells where a metric is unknown.
    pub fn write_csv(&self, mut w: impl Write) -> std::io::Result<()> {
        writeln!(w, "iteration,seconds,grad_f,grad_g,hvp,cross,rel_error,grad_norm,y_error")?;
        let opt = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:e}"));
        for r in &self.rows {
            let c = &r.counts;
            writeln!(
                w,
                "{},{:e},{},{},{},{},{},{},{}",
                r.iteration,
                r.seconds,
                c.grad_f(),
                c.grad_y_g,
                c.hvp,
                c.cross,
                opt(r.rel_error),
                opt(r.grad_norm),
                opt(r.y_error)
            )?;
        }
        Ok(())
    }
}

/// Exact metrics at (x, y) where the problem knows them.
fn metrics(
    problem: &dyn BilevelProblem,
    x: &[f64],
    y: &[f64],
    l0: Option<f64>,
) -> (Option<f64>, Option<f64>, Option<f64>) {
    let Some(exact) = problem.exact() else { return (None, None, None) };
    let mut g = vec![0.0; x.len()];
    exact.hypergradient(x, &mut g);
    let mut ys = vec![0.0; y.len()];
    exact.y_star(x, &mut ys);
    ys.iter_mut().zip(y).for_each(|(a, b)| *a -= b);
    let rel = exact.minimum().zip(l0).map(|((_, l_star), l0)| (exact.value(x) - l_star) / (l0 - l_star));
    (rel, Some(ops::norm2(&g)), Some(ops::norm2(&ys)))
}

/// Runs `alg` on `problem` until `stop`; `observer` sees every row and may stop the run.
pub fn run<P: BilevelProblem>(
    alg: &mut dyn Algorithm,
    problem: &Counted<P>,
    stop: &StopRule,
    mut observer: impl FnMut(&TraceRow) -> ControlFlow<()>,
) -> Result<Trace> {
    let plain = problem.inner();
    let l0 = plain.exact().map(|e| e.value(alg.x()));
    let start_counts = problem.counts();
    let counts_since = |c: OracleCounts| OracleCounts {
        f: c.f - start_counts.f,
        g: c.g - start_counts.g,
        grad_x_f: c.grad_x_f - start_counts.grad_x_f,
        grad_y_f: c.grad_y_f - start_counts.grad_y_f,
        grad_y_g: c.grad_y_g - start_counts.grad_y_g,
        hvp: c.hvp - start_counts.hvp,
        cross: c.cross - start_counts.cross,
        samples_f: c.samples_f - start_counts.samples_f,
        samples_g: c.samples_g - start_counts.samples_g,
    };
    let mut rows = Vec::with_capacity(stop.max_iters.min(1 << 20) + 1);
    let mut seconds = 0.0;
    let mut reason = StopReason::MaxIters;
    for iteration in 0..=stop.max_iters {
        if iteration > 0 {
            let t = Instant::now();
            alg.step(problem)?;
            seconds += t.elapsed().as_secs_f64();
        }
        let (rel_error, grad_norm, y_error) = metrics(plain, alg.x(), alg.y(), l0);
        let row =
            TraceRow { iteration, seconds, counts: counts_since(problem.counts()), rel_error, grad_norm, y_error };
        rows.push(row);
        let observed = observer(&row);
        let hit = |target: Option<f64>, value: Option<f64>| matches!((target, value), (Some(t), Some(v)) if v <= t);
        if hit(stop.target_rel_error, rel_error) || hit(stop.target_grad_norm, grad_norm) {
            reason = StopReason::Target;
        } else if stop.max_oracle_calls.is_some_and(|m| row.total_calls() >= m) {
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
    Ok(Trace { algorithm: alg.name().to_string(), rows, stop: reason })
}
