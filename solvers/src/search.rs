//! `--steps search`: a short, seeded search over an algorithm's lower-level and outer steps
//! around its default rule's, the way benchopt's benchmark_bilevel picks each solver's best
//! parameters (a grid of step sizes and outer ratios, kept by the value they reach).
//!
//! - **Grid**: the default rule's outer step (γ, or SUSTAIN's scale a, or BSA's and TTSA's
//!   γ_0/α_0) times [`OUTER_FACTORS`] and its lower-level step (α, BSGM's η, BO-REP's γ,
//!   SUSTAIN's β_0, BSA's and TTSA's η_0/β_0) times [`INNER_FACTORS`]: 15 trials. A step the
//!   user set is not searched. Adam-SUSTAIN's α and BO-REP's η are lengths: searched the same way.
//! - **Trials**: each runs [`SearchConfig::iterations`] steps from x_0 with the batches of seed
//!   `seed + 1` (the run itself keeps its own seed: it is not scored on the batches it was tuned
//!   on), on the uncounted problem.
//! - **Score**: the outer objective L(x) at the trial's last iterate where the problem has a
//!   closed form or a Newton reference; else its first metric (`val_loss` on the data
//!   problems). A trial that fails, diverges or ends without a measurement scores worst; ties go
//!   to the factors nearest 1.
//! - **Output**: the settings with the chosen steps (their source says "search") and every
//!   trial's steps and score, which the CLI prints and writes to the JSON: the run can be
//!   repeated without searching (`--inner-step`, `--outer-step`).

use crate::algorithms::{self, Context, Settings, StepRule};
use crate::driver::{run, StopRule};
use bilevel_kernels::{Counted, KernelError, Result};
use std::ops::ControlFlow;

/// The outer step's factors.
pub const OUTER_FACTORS: [f64; 5] = [0.1, 0.3, 1.0, 3.0, 10.0];
/// The lower-level step's factors.
pub const INNER_FACTORS: [f64; 3] = [0.3, 1.0, 3.0];

/// How long and on which batches the trials run.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct SearchConfig {
    /// Outer iterations of each trial.
    pub iterations: usize,
}

/// One trial.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Trial {
    /// The lower-level step tried (`None`: the user's, not searched).
    pub inner_step: Option<f64>,
    /// The outer step tried (`None`: the user's).
    pub outer_step: Option<f64>,
    /// What it reached ([`SearchReport::measure`]; `None`: failed, diverged or not measured).
    pub score: Option<f64>,
    /// How the trial stopped.
    pub stop: String,
}

/// What the search tried and chose.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct SearchReport {
    /// What the trials are scored by (`L(x)`, or the problem's first metric).
    pub measure: String,
    /// Outer iterations per trial.
    pub iterations: usize,
    /// The default rule's steps the factors multiply (`None`: set by the user).
    pub base: (Option<f64>, Option<f64>),
    /// Every trial.
    pub trials: Vec<Trial>,
    /// The chosen (lower-level, outer) steps.
    pub chosen: (Option<f64>, Option<f64>),
}

/// The first of `names` that the default rule's parameters hold as a number.
fn base_of(params: &crate::params::Params, names: &[&str]) -> Option<f64> {
    names.iter().find_map(|n| params.real(n))
}

/// Searches algorithm `name`'s steps on `ctx.problem` from (x_0, `y0`) (see the module doc);
/// returns `settings` with the chosen steps and the report.
pub fn search(
    name: &str,
    ctx: &Context<'_>,
    y0: &[f64],
    settings: &Settings,
    config: SearchConfig,
) -> Result<(Settings, SearchReport)> {
    if config.iterations == 0 {
        return Err(KernelError::InvalidParameter { name: "iterations", reason: "must be >= 1".into() });
    }
    let base_params = algorithms::build(name, StepRule::Default, ctx, settings)?.params;
    let inner = settings.inner_step.is_none().then(|| base_of(&base_params, &["inner_step", "inner_step0"])).flatten();
    let outer = settings
        .outer_step
        .is_none()
        .then(|| base_of(&base_params, &["outer_step", "outer_scale", "outer_step0"]))
        .flatten();
    let inner_factors: &[f64] = if inner.is_some() { &INNER_FACTORS } else { &[1.0] };
    let outer_factors: &[f64] = if outer.is_some() { &OUTER_FACTORS } else { &[1.0] };
    let measure =
        if ctx.problem.exact().is_some() || ctx.problem.dim_y() <= crate::driver::REFERENCE_MAX_DIM {
            "L(x), the outer objective".to_string()
        } else {
            match ctx.problem.metrics().and_then(|m| m.names().first().copied()) {
                Some(m) => m.to_string(),
                None => return Err(KernelError::InvalidParameter {
                    name: "steps",
                    reason:
                        "the search needs L(x) or a problem metric to score its trials, and this problem has neither"
                            .into(),
                }),
            }
        };
    let stop = StopRule { eval_every: config.iterations.max(1), ..StopRule::iterations(config.iterations) };
    let mut trials = Vec::new();
    let mut best: Option<(f64, f64, usize)> = None;
    for &fi in inner_factors {
        for &fo in outer_factors {
            let tried = Settings {
                inner_step: inner.map(|v| v * fi).or(settings.inner_step),
                outer_step: outer.map(|v| v * fo).or(settings.outer_step),
                seed: settings.seed.wrapping_add(1),
                searched: [inner.is_some(), outer.is_some()],
                ..*settings
            };
            let (score, stop_name) = match algorithms::build(name, StepRule::Default, ctx, &tried) {
                Err(e) => (None, format!("refused: {e}")),
                Ok(built) => {
                    let mut alg = built.algorithm;
                    let counted = Counted::new(ctx.problem);
                    match run(alg.as_mut(), &counted, ctx.x0, y0, &stop, |_| ControlFlow::Continue(())) {
                        Err(e) => (None, format!("refused: {e}")),
                        Ok(trace) => {
                            let last = trace.last();
                            let score = if trace.stop.is_failure() {
                                None
                            } else if measure.starts_with("L(x)") {
                                last.value
                            } else {
                                last.metrics.first().copied()
                            };
                            (score.filter(|s| s.is_finite()), format!("{:?}", trace.stop))
                        }
                    }
                }
            };
            trials.push(Trial {
                inner_step: tried.inner_step.filter(|_| inner.is_some()),
                outer_step: tried.outer_step.filter(|_| outer.is_some()),
                score,
                stop: stop_name,
            });
            if let Some(s) = score {
                // Ties go to the factors nearest 1 (|log f| smallest).
                let dist = fi.ln().abs() + fo.ln().abs();
                let better = match best {
                    None => true,
                    Some((bs, bd, _)) => s < bs || (s == bs && dist < bd),
                };
                if better {
                    best = Some((s, dist, trials.len() - 1));
                }
            }
        }
    }
    let Some((_, _, i)) = best else {
        return Err(KernelError::InvalidParameter {
            name: "steps",
            reason: format!(
                "every trial of the search failed or diverged: {:?}",
                trials.iter().map(|t| &t.stop).collect::<Vec<_>>()
            ),
        });
    };
    let chosen = (trials[i].inner_step, trials[i].outer_step);
    let out = Settings {
        inner_step: chosen.0.or(settings.inner_step),
        outer_step: chosen.1.or(settings.outer_step),
        searched: [inner.is_some(), outer.is_some()],
        ..*settings
    };
    Ok((out, SearchReport { measure, iterations: config.iterations, base: (inner, outer), trials, chosen }))
}
