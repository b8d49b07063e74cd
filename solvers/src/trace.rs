//! The trace of a run: one row per outer iteration (row 0 is the starting point), with exact
//! oracle counts and the metrics the problem can measure; serialisable as JSON (serde) and CSV
//! (the `csv` crate).

use crate::driver::StopReason;
use crate::Output;
use bilevel_kernels::{CountingConvention, OracleCounts};

/// One row of the trace.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct TraceRow {
    /// Outer iteration k (0: the starting point).
    pub iteration: usize,
    /// Wall time of the steps so far (metrics excluded), seconds.
    pub seconds: f64,
    /// Oracle calls so far.
    pub counts: OracleCounts,
    /// (L(x_k) − L*)/(L(x_0) − L*), where L* is known.
    pub rel_error: Option<f64>,
    /// ‖∇L(x_k)‖, from the closed form or the Newton reference.
    pub grad_norm: Option<f64>,
    /// ‖y_k − y*(x)‖ at the outer point x where y_k was computed.
    pub y_error: Option<f64>,
    /// The outer objective L(x_k) = f(x_k, y*(x_k)), from the closed form or the Newton
    /// reference.
    pub value: Option<f64>,
    /// The problem's own metrics, in the order of [`Trace::metric_names`] (empty on rows
    /// that were not evaluated).
    pub metrics: Vec<f64>,
}

impl TraceRow {
    /// Total oracle calls in paper 000's convention (eq. (8)): grad f pairs + ∂y g + HVP + cross.
    pub fn total_calls(&self) -> u64 {
        self.counts.total(CountingConvention::PairedGradF)
    }
}

/// The trace of a run.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Trace {
    /// The algorithm's name.
    pub algorithm: String,
    /// Names of the problem's metrics (CSV columns after the fixed ones).
    pub metric_names: Vec<&'static str>,
    /// Rows, starting with the starting point.
    pub rows: Vec<TraceRow>,
    /// Why the run stopped.
    pub stop: StopReason,
    /// The error or divergence that ended the run ([`StopReason::is_failure`]), as a message.
    pub failure: Option<String>,
    /// The point the algorithm's theorem reports ([`crate::Algorithm::output`]), measured;
    /// `None` when the run took no step the rule could draw from.
    pub output: Option<OutputPoint>,
}

/// The output of a run ([`Output`]) and what was measured there.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct OutputPoint {
    /// Which rule chose it.
    pub rule: Output,
    /// The iteration of the chosen iterate (for [`Output::Averaged`], the last one: x̂_K).
    pub iteration: usize,
    /// The point.
    pub x: Vec<f64>,
    /// Its measurements (relative error, ‖∇L‖, metrics; `iteration`, `seconds` and `counts`
    /// are those of the run's last row, what it cost to produce).
    pub row: TraceRow,
    /// How many iterates the rule chose among (1 for the last and averaged ones).
    pub candidates: usize,
    /// For [`Output::Uniform`], the mean over the candidate iterates that have ‖∇L‖ of
    /// ‖∇L(x_t)‖²: the expectation over the draw that the theorems bound (exact when every row
    /// is evaluated, `eval_every = 1`); on a fixed-point problem with a `grad_mapping` metric,
    /// the mean of ‖G_α(λ_t)‖² (paper 001 Thm 16/17); `None` for the other rules.
    pub mean_sq_grad_norm: Option<f64>,
    /// The same mean of ‖∇L(x_t)‖ (BO-REP's Theorem 3.1 bounds this one).
    pub mean_grad_norm: Option<f64>,
    /// How many candidates those means are over (0 for the other rules).
    pub evaluated: usize,
}

/// The fixed CSV columns.
pub const CSV_COLUMNS: [&str; 12] = [
    "iteration",
    "seconds",
    "grad_f",
    "grad_x_f",
    "grad_y_f",
    "grad_g",
    "hvp",
    "cross",
    "rel_error",
    "grad_norm",
    "y_error",
    "value",
];

impl Trace {
    /// The last row (a trace always has its starting row).
    pub fn last(&self) -> &TraceRow {
        self.rows.last().expect("a trace has its starting row")
    }

    /// CSV with a header ([`CsvRows`]), all rows.
    pub fn write_csv(&self, w: impl std::io::Write) -> csv::Result<()> {
        let mut out = CsvRows::new(w, &self.metric_names)?;
        self.rows.iter().try_for_each(|r| out.write(r))
    }
}

/// The CSV form of a trace, written a row at a time (so a run that fails or is interrupted
/// keeps the rows it made): the fixed columns ([`CSV_COLUMNS`]; `grad_f` in paper 000's paired
/// convention, `grad_x_f` and `grad_y_f` separately as paper 002 counts them), then one column
/// per problem metric; empty cells where a value is unknown. Each row is flushed.
pub struct CsvRows<W: std::io::Write> {
    out: csv::Writer<W>,
    n_metrics: usize,
}

impl<W: std::io::Write> CsvRows<W> {
    /// Writes the header.
    pub fn new(w: W, metric_names: &[&str]) -> csv::Result<Self> {
        let mut out = csv::Writer::from_writer(w);
        out.write_record(CSV_COLUMNS.iter().copied().chain(metric_names.iter().copied()))?;
        out.flush()?;
        Ok(Self { out, n_metrics: metric_names.len() })
    }

    /// Writes and flushes one row.
    pub fn write(&mut self, r: &TraceRow) -> csv::Result<()> {
        let opt = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:e}"));
        let c = &r.counts;
        let mut record = vec![
            r.iteration.to_string(),
            format!("{:e}", r.seconds),
            c.grad_f(CountingConvention::PairedGradF).to_string(),
            c.grad_x_f.to_string(),
            c.grad_y_f.to_string(),
            c.grad_y_g.to_string(),
            c.hvp.to_string(),
            c.cross.to_string(),
            opt(r.rel_error),
            opt(r.grad_norm),
            opt(r.y_error),
            opt(r.value),
        ];
        record.extend((0..self.n_metrics).map(|i| opt(r.metrics.get(i).copied())));
        self.out.write_record(&record)?;
        Ok(self.out.flush()?)
    }
}
