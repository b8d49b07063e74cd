//! `bilevel solve`: run an algorithm with the theory's step sizes and report its convergence.

use crate::cli::{Algo, SolveArgs};
use bilevel_kernels::linop::FnOp;
use bilevel_kernels::spectrum::extreme_eigenvalues;
use bilevel_kernels::{Batch, BilevelProblem, Counted};
use bilevel_solvers::{
    run as drive, AidBilevel, AidBilevelConfig, AidVariant, Algorithm, Bsgm, ItdBilevel, Projection, StepSizes,
    StopRule,
};
use clap::ValueEnum;
use serde_json::json;
use std::ops::ControlFlow;

type DynError = Box<dyn std::error::Error>;

/// Runs `bilevel solve`.
pub fn run(a: &SolveArgs) -> Result<(), DynError> {
    crate::problem_args::with_problem(&a.problem, Solve(a))
}

struct Solve<'a>(&'a SolveArgs);

impl crate::problem_args::ProblemVisitor for Solve<'_> {
    fn visit<P: BilevelProblem>(self, name: &str, problem: P, x0: Vec<f64>) -> Result<(), DynError> {
        solve(self.0, name, problem, x0)
    }
}

/// L_g = λ_max(∂yy g(x0, 0)) and L_L = λ_max(∇²L(x0)), the latter from differences of the exact
/// hypergradient (exact for the quadratics, where ∇L is affine; a local estimate otherwise).
fn constants(problem: &dyn BilevelProblem, x0: &[f64]) -> Result<(f64, f64), DynError> {
    let (dx, dy) = (problem.dim_x(), problem.dim_y());
    let zero = vec![0.0; dy];
    let hess = FnOp::symmetric(dy, |v: &[f64], out: &mut [f64]| problem.hvp(x0, &zero, v, Batch::Full, out));
    let (_, l_g) = extreme_eigenvalues(&hess, 1e-10)?;
    let exact = problem.exact().ok_or(
        "this command needs a problem with an exact hypergradient (quadratic, stochastic_quadratic, meta_learning)",
    )?;
    let mut g0 = vec![0.0; dx];
    exact.hypergradient(x0, &mut g0);
    let h = 1e-3;
    let hess_l = FnOp::symmetric(dx, |v: &[f64], out: &mut [f64]| {
        let xv: Vec<f64> = x0.iter().zip(v).map(|(x, v)| x + h * v).collect();
        exact.hypergradient(&xv, out);
        out.iter_mut().zip(&g0).for_each(|(o, g)| *o = (*o - g) / h);
    });
    let l_outer = extreme_eigenvalues(&hess_l, 1e-8).map(|(_, l)| l).unwrap_or(f64::NAN);
    if !(l_outer.is_finite() && l_outer > 0.0) {
        return Err("could not estimate L of the outer objective at x0 (not positive): pass --outer-step".into());
    }
    Ok((l_g, l_outer))
}

fn solve<P: BilevelProblem>(a: &SolveArgs, name: &str, problem: P, x0: Vec<f64>) -> Result<(), DynError> {
    let (l_g, l_outer) = constants(&problem, &x0)?;
    let mut steps = StepSizes::from_constants(l_g, l_outer)?;
    if let Some(g) = a.outer_step {
        if !(g.is_finite() && g > 0.0 && g < 2.0 / l_outer) {
            return Err(format!("--outer-step must be in (0, 2/L) = (0, {:.4e}), got {g}", 2.0 / l_outer).into());
        }
        steps.outer = g;
    }
    let (t, n) = (a.inner_steps as usize, a.lin_steps as usize);
    let y0 = vec![0.0; problem.dim_y()];
    let algo_name = a.algo.to_possible_value().map_or_else(|| "?".into(), |v| v.get_name().to_string());
    let mut alg: Box<dyn Algorithm> = match a.algo {
        Algo::Itd => Box::new(ItdBilevel::new(t, steps, &x0, &y0)?),
        Algo::Bsgm => Box::new(Bsgm::new(&x0, y0.len(), steps.outer, steps.inner, t as f64, Projection::None)?),
        other => {
            let v = match other {
                Algo::AmigoCg => AidVariant::AmigoCg,
                Algo::AmigoGd => AidVariant::AmigoGd,
                Algo::AidBio => AidVariant::AidBio,
                Algo::AidCg => AidVariant::AidCg,
                Algo::AidGd => AidVariant::AidGd,
                Algo::AidCgWs => AidVariant::AidCgWs,
                Algo::AidFp => AidVariant::AidFp,
                _ => AidVariant::AidNeumann,
            };
            Box::new(AidBilevel::new(&algo_name, AidBilevelConfig::variant(v, t, n, steps), &x0, &y0)?)
        }
    };
    let stop = StopRule {
        max_iters: a.max_iters,
        max_oracle_calls: a.max_oracle_calls,
        time_limit_s: a.time_limit,
        target_rel_error: a.target,
        target_grad_norm: None,
    };
    let counted = Counted::new(problem);
    // A progress bar on a terminal only: piped output stays one clean summary line.
    let bar = std::io::IsTerminal::is_terminal(&std::io::stderr()).then(|| {
        let bar = indicatif::ProgressBar::new(a.max_iters as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} iterations, rel_error {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    let trace = drive(alg.as_mut(), &counted, &stop, |row| {
        if let Some(bar) = &bar {
            bar.set_position(row.iteration as u64);
            bar.set_message(row.rel_error.map_or_else(|| "?".into(), |r| format!("{r:.3e}")));
        }
        ControlFlow::Continue(())
    })?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let last = trace.last();
    let c = last.counts;
    println!(
        "{name}: {algo_name}, {} iterations ({:?}), rel_error {:.3e}, ‖∇L‖ {:.3e}, oracle calls: grad_f {} grad_g {} hvp {} cross {}, {:.3e} s",
        last.iteration,
        trace.stop,
        last.rel_error.unwrap_or(f64::NAN),
        last.grad_norm.unwrap_or(f64::NAN),
        c.grad_f(),
        c.grad_y_g,
        c.hvp,
        c.cross,
        last.seconds
    );
    if let Some(path) = &a.trace {
        trace.write_csv(std::io::BufWriter::new(std::fs::File::create(path)?))?;
    }
    if let Some(path) = &a.json {
        let out = json!({
            "problem": name,
            "algo": algo_name,
            "rel_error": last.rel_error,
            "grad_norm": last.grad_norm,
            "oracle_calls": {"grad_f": c.grad_f(), "grad_g": c.grad_y_g, "hvp": c.hvp, "cross": c.cross},
            "seconds": last.seconds,
            "iterations": last.iteration,
            "stop": format!("{:?}", trace.stop),
            "inner_steps": t,
            "lin_steps": n,
            "outer_step": steps.outer,
            "inner_step": steps.inner,
            "seed": a.problem.generator.seed,
        });
        std::fs::write(path, serde_json::to_string_pretty(&out)? + "\n")?;
    }
    Ok(())
}
