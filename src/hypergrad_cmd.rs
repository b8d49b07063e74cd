//! `bilevel hypergrad`: one hypergradient at a seeded x, its relative error against the exact
//! one, its oracle counts and its time.

use crate::cli::{HypergradArgs, Method};
use crate::output::OutFile;
use bilevel_kernels::{ops, BilevelProblem, Counted, CountingConvention, KernelError, StepBatches};
use bilevel_solvers::reference::reference_hypergradient;
use bilevel_solvers::{constants, AdjointSolver, Aid, AidConfig, Constant, Itd, Params, Source};
use clap::ValueEnum;
use serde_json::json;
use std::time::Instant;

type DynError = Box<dyn std::error::Error>;

/// T and N when not given (ours, as `solve`'s AID family).
const DEFAULT_STEPS: usize = 10;

/// Runs `bilevel hypergrad`.
pub fn run(a: &HypergradArgs) -> Result<(), DynError> {
    crate::problem_args::check_file_flags(&a.problem)?;
    let inputs = [a.problem.problem_file.as_deref(), a.problem.problem_dir.as_deref()];
    crate::output::check_distinct(&[("--json", a.json.as_deref())], &inputs)?;
    let p = crate::problem_args::load(&a.problem)?;
    report(a, &p.name, p.problem, p.x0)
}

fn report<P: BilevelProblem>(a: &HypergradArgs, name: &str, problem: P, x: Vec<f64>) -> Result<(), DynError> {
    let steps = |v: Option<usize>, flag: &'static str| match v {
        Some(v) => (v, Source::user(flag)),
        None => (DEFAULT_STEPS, Source::default_because("10 (ours)")),
    };
    let (inner_steps, inner_src) = steps(a.inner_steps.map(|v| v as usize), "--inner-steps");
    let (n, lin_src) = steps(a.lin_steps.map(|v| v as usize), "--lin-steps");
    if a.method == Method::Itd && inner_steps == 0 {
        return Err("--inner-steps must be >= 1 for ITD (it differentiates through the inner steps)".into());
    }
    let json = OutFile::maybe("--json", a.json.as_ref())?;
    // Oracle calls are counted through `counted`; the reference and the step-size estimate go
    // to the uncounted problem.
    let counted = Counted::new(problem);
    let problem = counted.inner();
    let (dx, dy) = (problem.dim_x(), problem.dim_y());
    let mut want = vec![0.0; dx];
    let zero = vec![0.0; dy];
    let reference = match problem.exact() {
        Some(exact) => {
            exact.hypergradient(&x, &mut want);
            "exact"
        }
        None => {
            want = reference_hypergradient(problem, &x, &zero)?.hypergradient;
            "newton"
        }
    };
    // The inner/adjoint step 1/L_g; κ_g for the report when µ_g is free to know.
    let c = constants::resolve(problem, &x, &zero, &[Constant::LG], &a.constants.overrides())?;
    let l = c.l_g()?;
    let step = 1.0 / l;
    let l_src = if c.is_estimated(Constant::LG) {
        Source::problem("L_g estimated at x (Lanczos), not a bound")
    } else if a.constants.overrides().l_g.is_some() {
        Source::user(Constant::LG.flag())
    } else {
        Source::problem("the problem's L_g")
    };
    let mut got = vec![0.0; dx];
    let mut y = vec![0.0; dy];
    let start = Instant::now();
    let iterations = match a.method {
        Method::Exact => {
            got.copy_from_slice(&want);
            0
        }
        Method::Itd => {
            Itd::new(inner_steps, step, dx, dy)?.estimate(&counted, &x, &mut y, &mut got)?;
            inner_steps
        }
        method => {
            let mut work = vec![0.0; dy];
            counted.inner_gradient_steps(&x, &mut y, step, StepBatches::full(inner_steps), &mut work);
            let solver = match method {
                Method::AidCg => AdjointSolver::Cg,
                Method::AidGd => AdjointSolver::Gd { step },
                Method::AidFp => AdjointSolver::FixedPoint { step },
                _ => AdjointSolver::Neumann { step },
            };
            let mut aid = Aid::new(AidConfig { solver, steps: n, warm_start: false }, dx, dy)?;
            aid.estimate(&counted, &x, &y, &mut got)?.iterations
        }
    };
    let seconds = start.elapsed().as_secs_f64();
    let diff: Vec<f64> = got.iter().zip(&want).map(|(g, w)| g - w).collect();
    let rel_error = ops::norm2(&diff) / ops::norm2(&want).max(f64::MIN_POSITIVE);
    if !rel_error.is_finite() {
        return Err(KernelError::NonFinite { what: "hypergradient", index: 0 }.into());
    }
    let cnt = counted.counts();
    let paired = CountingConvention::PairedGradF;
    let kappa = c.kappa_g();
    let method = a.method.to_possible_value().map_or_else(|| "?".to_string(), |v| v.get_name().to_string());
    println!(
        "{name}: method {method}, L_g {l:.3e}{}, rel_error {rel_error:.3e} (against the {reference} hypergradient), oracle calls: grad_f {} (∂x f {}, ∂y f {}) grad_g {} hvp {} cross {}, {seconds:.3e} s",
        kappa.map_or(String::new(), |k| format!(" (κ_g {k:.3e})")),
        cnt.grad_f(paired),
        cnt.grad_x_f,
        cnt.grad_y_f,
        cnt.grad_y_g,
        cnt.hvp,
        cnt.cross
    );
    // Every parameter the method used, with its source (the same record as `solve`'s).
    let mut params = Params::new("default");
    if a.method != Method::Exact {
        params.set("l_g", "L_g, the steps' scale", l, l_src);
        params.set("inner_steps", "T, inner gradient steps from y = 0", inner_steps, inner_src);
        params.set("inner_step", "the inner step 1/L_g", step, Source::default_because("1/L_g"));
    }
    if !matches!(a.method, Method::Exact | Method::Itd) {
        params.set("adjoint_steps", "N, CG iterations, GD/FP steps or Neumann terms", n, lin_src);
        if a.method != Method::AidCg {
            params.set("adjoint_step", "the adjoint step 1/L_g", step, Source::default_because("1/L_g"));
        }
    }
    if let Some(file) = json {
        let out = json!({
            "problem": name,
            "method": method,
            "rel_error": rel_error,
            "reference": reference,
            "oracle_calls": crate::cli::oracle_calls_json(&cnt),
            "seconds": seconds,
            "iterations": iterations,
            // Only what the method used: no steps for the closed form, no adjoint steps for ITD.
            "parameters": params.params,
            "inner_steps": (a.method != Method::Exact).then_some(inner_steps),
            "lin_steps": (!matches!(a.method, Method::Exact | Method::Itd)).then_some(n),
            "kappa_g": kappa,
            "l_g": l,
            "seed": a.problem.generator.seed,
        });
        file.write_json(&out)?;
    }
    Ok(())
}
