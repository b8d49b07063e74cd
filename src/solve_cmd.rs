//! `bilevel solve`: run an algorithm with the step sizes of its paper's experiments or of its
//! theorem, and report its convergence.

use crate::cli::{Algo, SolveArgs};
use bilevel_kernels::{BilevelProblem, Counted, CountingConvention};
use bilevel_solvers::algorithms::{self, bsgm, Settings};
use bilevel_solvers::{constants, run as drive, StepRule, StopRule};
use serde_json::json;
use std::ops::ControlFlow;

type DynError = Box<dyn std::error::Error>;

/// Runs `bilevel solve`.
pub fn run(a: &SolveArgs) -> Result<(), DynError> {
    let p = crate::problem_args::load(&a.problem)?;
    solve(a, &p.name, p.problem, p.x0)
}

fn solve<P: BilevelProblem>(a: &SolveArgs, name: &str, problem: P, x0: Vec<f64>) -> Result<(), DynError> {
    let algo = a.algo.name();
    let rule = StepRule::from(a.steps);
    let y0 = vec![0.0; problem.dim_y()];
    if a.target.is_some() && problem.exact().and_then(|e| e.minimum()).is_none() {
        return Err(format!("--target needs the minimum L* of the outer problem, which `{name}` does not know").into());
    }
    let c = constants::resolve(&problem, &x0, &y0, algorithms::needs(algo, rule)?, &a.constants.overrides())?;
    if let (Some(g), Some(l)) = (a.outer_step, c.known.l_outer) {
        if !(g.is_finite() && g > 0.0 && g < 2.0 / l) {
            return Err(format!("--outer-step must be in (0, 2/L_L) = (0, {:.4e}), got {g}", 2.0 / l).into());
        }
    }
    if a.algo == Algo::Bsgm {
        if let Some(bound) = a.c3.and_then(|c3| bsgm::c3_below_theorem(c3, &c)) {
            eprintln!("warning: --c3 {} is below Theorem 17's bound 1/log(1/q) = {bound:.4e}", a.c3.unwrap_or(0.0));
        }
    }
    let settings = Settings {
        inner_steps: a.inner_steps as usize,
        adjoint_steps: a.lin_steps as usize,
        c3: a.c3,
        projection: bsgm::Projection::None,
        outer_step: a.outer_step,
    };
    let mut steps = algorithms::step_sizes(algo, rule, &c)?;
    if let Some(g) = a.outer_step {
        steps.outer = g;
    }
    let mut alg = algorithms::build(algo, rule, &c, &settings)?;
    let estimated: Vec<&str> =
        [bilevel_solvers::Constant::MuG, bilevel_solvers::Constant::LG, bilevel_solvers::Constant::LOuter]
            .into_iter()
            .filter(|k| c.is_estimated(*k))
            .map(|k| k.name())
            .collect();
    eprintln!(
        "steps: {rule:?} (α = {:.4e}, β = {:.4e}, γ = {:.4e}{}){}",
        steps.inner,
        steps.adjoint,
        steps.outer,
        if a.outer_step.is_some() { ", γ from --outer-step" } else { "" },
        if estimated.is_empty() { String::new() } else { format!("; estimated at x0: {}", estimated.join(", ")) }
    );
    let stop = StopRule {
        max_oracle_calls: a.max_oracle_calls,
        time_limit_s: a.time_limit,
        target_rel_error: a.target,
        ..StopRule::iterations(a.max_iters)
    };
    let counted = Counted::new(problem);
    // A progress bar on a terminal only: piped output stays one clean summary line.
    let bar = std::io::IsTerminal::is_terminal(&std::io::stderr()).then(|| {
        let bar = indicatif::ProgressBar::new(a.max_iters as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} iterations, ‖∇L‖ {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    let trace = drive(alg.as_mut(), &counted, &x0, &y0, &stop, |row| {
        if let Some(bar) = &bar {
            bar.set_position(row.iteration as u64);
            bar.set_message(row.grad_norm.map_or_else(|| "?".into(), |r| format!("{r:.3e}")));
        }
        ControlFlow::Continue(())
    })?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let last = trace.last();
    let cnt = last.counts;
    let paired = CountingConvention::PairedGradF;
    let metrics: String = trace.metric_names.iter().zip(&last.metrics).map(|(n, v)| format!(", {n} {v:.4e}")).collect();
    println!(
        "{name}: {algo}, {} iterations ({:?}), rel_error {}, ‖∇L‖ {}{metrics}, oracle calls: grad_f {} (∂x f {}, ∂y f {}) grad_g {} hvp {} cross {}, {:.3e} s",
        last.iteration,
        trace.stop,
        last.rel_error.map_or("n/a".into(), |v| format!("{v:.3e}")),
        last.grad_norm.map_or("n/a".into(), |v| format!("{v:.3e}")),
        cnt.grad_f(paired),
        cnt.grad_x_f,
        cnt.grad_y_f,
        cnt.grad_y_g,
        cnt.hvp,
        cnt.cross,
        last.seconds
    );
    if let Some(path) = &a.trace {
        let file = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
        trace.write_csv(std::io::BufWriter::new(file))?;
    }
    if let Some(path) = &a.json {
        let out = json!({
            "problem": name,
            "algo": algo,
            "steps": rule,
            "rel_error": last.rel_error,
            "grad_norm": last.grad_norm,
            "metrics": trace.metric_names.iter().zip(&last.metrics).map(|(n, v)| (n.to_string(), *v)).collect::<std::collections::BTreeMap<_, _>>(),
            "oracle_calls": crate::cli::oracle_calls_json(&cnt),
            "seconds": last.seconds,
            "iterations": last.iteration,
            "stop": trace.stop,
            "inner_steps": settings.inner_steps,
            "lin_steps": settings.adjoint_steps,
            "outer_step": steps.outer,
            "inner_step": steps.inner,
            "adjoint_step": steps.adjoint,
            "constants": {"mu_g": c.known.mu_g, "l_g": c.known.l_g, "l_outer": c.known.l_outer, "estimated": estimated},
            "seed": a.problem.generator.seed,
        });
        std::fs::write(path, serde_json::to_string_pretty(&out)? + "\n")
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}
