//! `bilevel solve`: run an algorithm with the step sizes of its paper's experiments or of its
//! theorem, and report its convergence.

use crate::cli::{Algo, SolveArgs};
use crate::output::OutFile;
use crate::problem_args::{LoadedFixedPoint, Runnable};
use bilevel_kernels::interrupt;
use bilevel_kernels::{BilevelProblem, Counted, CountingConvention, FixedPointProblem};
use bilevel_solvers::algorithms::{self, bsgm};
use bilevel_solvers::{
    run as drive, run_fixed_point, Constant, Context, Params, Settings, Source, StepRule, StopReason, StopRule, Trace,
    TraceRow,
};
use serde_json::json;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};

type DynError = Box<dyn std::error::Error>;

/// Runs `bilevel solve`. Ctrl-C, SIGTERM and SIGHUP stop it from here on, inside any loop
/// (the L_L estimate, a step's inner loops: [`bilevel_kernels::interrupt`]), keeping what was
/// measured; a second one exits at once.
pub fn run(a: &SolveArgs) -> Result<(), DynError> {
    let _ = ctrlc::set_handler(|| {
        if INTERRUPTED.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
    });
    check_flags(a)?;
    let watch = interrupt::Watch { flag: Some(&INTERRUPTED), deadline: None };
    interrupt::watching(watch, || {
        let outcome = match crate::problem_args::load_runnable(&a.problem)? {
            Runnable::Bilevel(p) => solve(a, &p.name, p.problem, p.x0),
            Runnable::FixedPoint(p) => solve_fixed_point(a, p),
        };
        // Cut before the run began (loading, the constants' estimates): say so plainly.
        match outcome {
            Err(e) if e.downcast_ref::<bilevel_kernels::KernelError>().and_then(interrupt::cause_of).is_some() => {
                Err("interrupted before the first step (loading the problem or estimating its constants); \
                     no output was written"
                    .into())
            }
            other => other,
        }
    })
}

/// Refuses flags that would change nothing (the algorithm's own flags are checked by the
/// library, [`bilevel_solvers::algorithms::check_used`]) and outputs that would overwrite each
/// other or an input.
fn check_flags(a: &SolveArgs) -> Result<(), DynError> {
    let b = &a.batches;
    let batched = [b.batch_size, b.batch_size_inner, b.batch_size_outer, b.batch_size_hvp, b.batch_size_cross]
        .iter()
        .any(Option::is_some);
    if b.sampling.is_some() && !batched {
        return Err("--sampling: every oracle runs on the full batch (set --batch-size to draw mini-batches)".into());
    }
    if a.sustain.adam_option.is_some() && a.algo != Algo::AdamSustain {
        return Err(format!("--adam-option is not used by `{}`; it is read by adam-sustain", a.algo.name()).into());
    }
    crate::problem_args::check_file_flags(&a.problem)?;
    let inputs = [a.problem.problem_file.as_deref(), a.problem.problem_dir.as_deref()];
    crate::output::check_distinct(&[("--json", a.json.as_deref()), ("--trace", a.trace.as_deref())], &inputs)?;
    Ok(())
}

/// BSGM's outer step on a fixed-point problem without `--outer-step`: paper 001 §7.1's α = 0.5.
const FIXED_POINT_ALPHA: f64 = 0.5;
/// The contraction factor Λ guarantees the equilibrium model (‖A‖₂ ≤ 0.5, paper 001 §7.1): the
/// theory rule's default c₃ is Theorem 17's bound 1/log(1/q) for it.
const FIXED_POINT_Q: f64 = 0.5;
/// Paper 001 §7.1's t_s = k_s: the experiments rule's schedule on a fixed-point problem.
const FIXED_POINT_STEPS: usize = 2;

/// `solve` on a fixed-point problem: BSGM on the map itself (paper 001 Alg. 2), deterministic
/// (Theorem 17, or §7.1's "Det") or with `--batch-size J` examples per outer step (§7.1's
/// batched runs), projected onto the problem's Λ unless `--no-projection`; counted by
/// `Counted`, measured by the problem's own metrics.
fn solve_fixed_point(a: &SolveArgs, p: LoadedFixedPoint) -> Result<(), DynError> {
    let (name, algo) = (p.name.as_str(), a.algo.name());
    if a.algo != Algo::Bsgm {
        return Err(format!(
            "`{name}` is a fixed-point problem: `solve` runs it with --algo bsgm only (BSGM on the map itself), not `{algo}`"
        )
        .into());
    }
    let unused: Vec<&str> = [
        (a.inner_steps.is_some(), "--inner-steps"),
        (a.lin_steps.is_some(), "--lin-steps"),
        (a.inner_step.is_some(), "--inner-step"),
        (a.adjoint_step.is_some(), "--adjoint-step"),
        (a.epsilon.is_some(), "--epsilon"),
        (a.average, "--average"),
        (a.constants.l_g.is_some() || a.constants.mu_g.is_some(), "--l-g/--mu-g"),
        (a.constants.l_outer.is_some() || a.constants.mu_outer.is_some(), "--l-outer/--mu-outer"),
        (
            a.sustain.momentum_w.is_some()
                || a.sustain.momentum_c_eta.is_some()
                || a.sustain.momentum_c_beta.is_some()
                || a.sustain.upper_momentum_only,
            "--momentum-*/--upper-momentum-only",
        ),
        (a.bo_rep.options().map(|o| o != Default::default()).unwrap_or(true), "BO-REP's flags"),
    ]
    .into_iter()
    .filter_map(|(given, flag)| given.then_some(flag))
    .collect();
    if !unused.is_empty() {
        return Err(format!(
            "{}: not used by BSGM on the fixed-point problem `{name}` (it takes --outer-step, --fixed-steps, --c3, \
             --batch-size, --sampling, --no-projection and the stop flags)",
            unused.join(", ")
        )
        .into());
    }
    let b = &a.batches;
    if b.batch_size_inner.is_some()
        || b.batch_size_outer.is_some()
        || b.batch_size_hvp.is_some()
        || b.batch_size_cross.is_some()
    {
        return Err(format!(
            "on the fixed-point problem `{name}` BSGM draws one batch of examples for every oracle (paper 001 §7.1): \
             set --batch-size only, not the per-oracle --batch-size-*"
        )
        .into());
    }
    if b.horizon.is_some() || b.neumann_decay {
        return Err(format!(
            "--horizon/--neumann-decay: on the fixed-point problem `{name}` BSGM's batches are fixed (--batch-size, paper 001 §7.1), \
             with the fixed (--fixed-steps) or Theorem 17 (--c3) schedule"
        )
        .into());
    }
    if a.target.is_some() {
        return Err(format!("--target needs the minimum L* of the outer problem, which `{name}` does not know").into());
    }
    let json = OutFile::maybe("--json", a.json.as_ref())?;
    let trace_out = OutFile::maybe("--trace", a.trace.as_ref())?;
    let rule = a.steps.rule();
    let bound = 1.0 / (1.0 / FIXED_POINT_Q).ln();
    // Default and experiments: §7.1's fixed t_s = k_s = 2 unless --c3 asks for Theorem 17's
    // schedule; theory: Theorem 17's schedule, c₃ ≥ its bound.
    let fixed = match (a.fixed_steps, a.c3, rule) {
        (Some(_), _, StepRule::Theory) => {
            return Err("--fixed-steps is paper 001 §7.1's experiments schedule; --steps theory runs Theorem 17's \
                        (t_s = k_s = ⌈c₃ log(s+1)⌉, --c3)"
                .into())
        }
        (Some(t), _, _) => Some((t as usize, Source::user("--fixed-steps"))),
        (None, None, StepRule::Experiments | StepRule::Default) => {
            Some((FIXED_POINT_STEPS, Source::experiments("paper 001 §7.1: t_s = k_s = 2")))
        }
        (None, _, _) => None,
    };
    let c3 = a.c3.unwrap_or(bound);
    if fixed.is_none() && c3 < bound {
        let message = format!("--c3 {c3} is below Theorem 17's bound 1/log(1/q) = {bound:.4e} (q = {FIXED_POINT_Q})");
        if rule == StepRule::Theory {
            return Err(message.into());
        }
        eprintln!("warning: {message}");
    }
    let alpha = a.outer_step.unwrap_or(FIXED_POINT_ALPHA);
    let mut alg = bsgm::Bsgm::new(alpha, 1.0, c3, bsgm::Projection::None)?
        .with_problem_projection(!a.no_projection)
        .with_output_seed(b.sample_seed);
    let mut params = Params::new(rule.name());
    let alpha_source = if a.outer_step.is_some() {
        Source::user("--outer-step")
    } else {
        Source::experiments("paper 001 §7.1: α = 0.5 (L_f of the equilibrium model is not known)")
    };
    params.set("outer_step", "α, the outer step (paper 001's α)", alpha, alpha_source);
    params.set(
        "lower_step",
        "the map's step (LL and LS steps)",
        1.0,
        Source::experiments("paper 001 §7.1: the map itself, step 1, from w = 0"),
    );
    if let Some((t, source)) = fixed.clone() {
        alg = alg.with_fixed_steps(t)?;
        params.set("fixed_steps", "t_s = k_s", t, source);
    } else {
        let source = match a.c3 {
            Some(_) => Source::user("--c3"),
            None => Source::theorem("paper 001 Thm 17: c₃ ≥ 1/log(1/q), q = 0.5 on Λ (‖A‖₂ ≤ 0.5)"),
        };
        params.set("c3", "c₃ of t_s = k_s = max(1, ⌈c₃ log(s+1)⌉)", c3, source);
    }
    let sampling = b.sizes().sampling;
    if let Some(j) = b.batch_size {
        alg = alg.batched(bsgm::Batched { size: Some(j as usize), sampling, seed: b.sample_seed })?;
        params.set("batch", "J, examples per outer step", j as usize, Source::user("--batch-size"));
    } else {
        params.set("batch", "J, examples per outer step", "all (Det)", Source::experiments("paper 001 §7.1's Det"));
    }
    let constraint = if a.no_projection { None } else { p.problem.constraint_set().map(str::to_string) };
    params.set(
        "constraint_set",
        "Λ, the projection",
        constraint.as_deref().unwrap_or("R^m (no projection)"),
        if a.no_projection { Source::user("--no-projection") } else { Source::experiments("paper 001 §7.1") },
    );
    params.set(
        "schedule",
        "t_s = k_s",
        alg.schedule().to_string(),
        Source::default_because("the schedule the rule runs"),
    );
    params.set(
        "output",
        "the reported point",
        "λ_a, a uniform over λ_0..λ_{S−1}, with the mean of ‖G_α(λ_s)‖² over them",
        Source::theorem("paper 001 Thm 16/17 bound (1/S)Σ_s ‖G_α(λ_s)‖²"),
    );
    params.note(
        "counts of the fixed-point oracles: map → grad_g, ∂wΦᵀv → hvp, ∂λΦᵀv → cross, ∇wE → ∂y f, ∇λE → ∂x f \
         (∇λE reads ∇wE's examples: counted once)",
    );
    eprint!("parameters ({} rule):\n{}", rule.name(), params.render());
    let counted = Counted::new(p.problem);
    let metric_names = counted.inner().metrics().map_or_else(Vec::new, |m| m.names().to_vec());
    let extra = json!({
        "parameters": params.params,
        "notes": params.notes,
        "schedule": alg.schedule(),
        "batch_size": b.batch_size,
        "sampling": sampling,
        "sample_seed": b.sample_seed,
        "constraint_set": constraint,
        "counts_mapping": {"grad_g": "map", "hvp": "vjp_w", "cross": "vjp_lambda", "grad_y_f": "upper_grad_w", "grad_x_f": "upper_grad_lambda"},
        "seed": a.problem.generator.seed,
    });
    let (lambda0, w0) = (p.lambda0, p.w0);
    let out = Outputs { json, trace: trace_out, metric_names, extra };
    execute(a, name, algo, rule, out, |stop, observer| {
        run_fixed_point(&mut alg, &counted, &lambda0, &w0, stop, observer)
    })
}

/// What a run writes besides the summary: the `--json` and `--trace` files (opened before the
/// run), the metric names (the trace's columns), and the run's own JSON fields.
struct Outputs {
    json: Option<OutFile>,
    trace: Option<OutFile>,
    metric_names: Vec<&'static str>,
    extra: serde_json::Value,
}

/// Set by the Ctrl-C handler; the observer stops the run at the next row.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

fn solve<P: BilevelProblem>(a: &SolveArgs, name: &str, problem: P, x0: Vec<f64>) -> Result<(), DynError> {
    let algo = a.algo.name();
    let rule = a.steps.rule();
    let y0 = vec![0.0; problem.dim_y()];
    if a.no_projection {
        return Err(format!("--no-projection: `{name}` has no constraint set of its own (Λ = R^m)").into());
    }
    if a.target.is_some() && problem.exact().and_then(|e| e.minimum()).is_none() {
        return Err(format!("--target needs the minimum L* of the outer problem, which `{name}` does not know").into());
    }
    // The outputs exist before the run: a path that cannot be written fails now.
    let json = OutFile::maybe("--json", a.json.as_ref())?;
    let trace_out = OutFile::maybe("--trace", a.trace.as_ref())?;
    let settings = settings(a)?;
    algorithms::check_used(algo, rule, &settings)?;
    let needs = algorithms::needs(algo, rule, &settings)?;
    if needs.contains(&Constant::LOuter) && problem.constants().l_outer.is_none() && a.constants.l_outer.is_none() {
        eprintln!(
            "estimating L_L at x0 (Lanczos on finite differences of the reference hypergradient, d_y = {}); \
             set --outer-step or --l-outer to skip it",
            problem.dim_y()
        );
    }
    let overrides = a.constants.overrides();
    let (c, notes) = algorithms::constants_for(algo, rule, &problem, &x0, &y0, &overrides, &settings)?;
    if let (Some(g), Some(l)) = (a.outer_step, c.known.l_outer) {
        if g >= 2.0 / l && a.algo != Algo::BoRep && a.algo != Algo::Sustain && a.algo != Algo::AdamSustain {
            return Err(format!("--outer-step must be in (0, 2/L_L) = (0, {:.4e}), got {g}", 2.0 / l).into());
        }
    }
    if a.algo == Algo::Bsgm {
        if let Some(bound) = a.c3.and_then(|c3| bsgm::c3_below_theorem(c3, &c)) {
            eprintln!("warning: --c3 {} is below Theorem 17's bound 1/log(1/q) = {bound:.4e}", a.c3.unwrap_or(0.0));
        }
    }
    let family = name.split(' ').next().unwrap_or(name);
    let ctx = Context { problem: &problem, family, constants: &c, x0: &x0 };
    let (settings, search) = if a.steps == crate::cli::Steps::Search {
        let iterations = (a.max_iters / 10).clamp(10, 200);
        eprintln!(
            "searching the steps: {} trials of {iterations} iterations (docs/cli.md, `--steps search`)",
            bilevel_solvers::search::OUTER_FACTORS.len() * bilevel_solvers::search::INNER_FACTORS.len()
        );
        let (chosen, report) = bilevel_solvers::search::search(
            algo,
            &ctx,
            &y0,
            &settings,
            bilevel_solvers::search::SearchConfig { iterations },
        )?;
        for t in &report.trials {
            eprintln!(
                "  trial: inner {} outer {} → {} ({})",
                t.inner_step.map_or("user's".into(), |v| format!("{v:.3e}")),
                t.outer_step.map_or("user's".into(), |v| format!("{v:.3e}")),
                t.score.map_or("failed".into(), |v| format!("{v:.6e}")),
                t.stop
            );
        }
        (chosen, Some(report))
    } else {
        (settings, None)
    };
    let built = algorithms::build(algo, rule, &ctx, &settings)?;
    let (mut alg, mut params) = (built.algorithm, built.params);
    params.notes.extend(notes);
    let estimated: Vec<&str> = [Constant::MuG, Constant::LG, Constant::LOuter]
        .into_iter()
        .filter(|k| c.is_estimated(*k))
        .map(|k| k.name())
        .collect();
    eprint!("parameters ({} rule):\n{}", rule.name(), params.render());
    let counted = Counted::new(problem);
    let metric_names = bilevel_solvers::driver::metric_names(counted.inner(), alg.as_ref());
    let extra = json!({
        "parameters": params.params,
        "notes": params.notes,
        "search": search,
        "constants": {
            "mu_g": c.known.mu_g, "l_g": c.known.l_g, "l_outer": c.known.l_outer, "mu_outer": c.known.mu_outer,
            "l_g_sample": c.known.l_g_sample, "mu_g_sample": c.known.mu_g_sample,
            "estimated": estimated, "at_x0": c.at_x0,
        },
        "seed": a.problem.generator.seed,
        "batches": settings.batches,
        "sample_seed": settings.seed,
    });
    let out = Outputs { json, trace: trace_out, metric_names, extra };
    execute(a, name, algo, rule, out, |stop, observer| drive(alg.as_mut(), &counted, &x0, &y0, stop, observer))
}

/// The library's settings from the command line (`None` where the flag is not given: the
/// rule's value).
fn settings(a: &SolveArgs) -> Result<Settings, DynError> {
    Ok(Settings {
        inner_steps: a.inner_steps.map(|t| t as usize),
        adjoint_steps: a.lin_steps.map(|n| n as usize),
        inner_step: a.inner_step,
        adjoint_step: a.adjoint_step,
        outer_step: a.outer_step,
        c3: a.c3,
        projection: bsgm::Projection::None,
        batches: a.batches.sizes(),
        explicit_batches: {
            let b = &a.batches;
            [b.batch_size_inner, b.batch_size_outer, b.batch_size_hvp, b.batch_size_cross].map(|v| v.is_some())
        },
        seed: a.batches.sample_seed,
        neumann_decay: a.batches.neumann_decay,
        horizon: a.batches.horizon.map(|h| h as usize),
        fixed_steps: a.fixed_steps.map(|t| t as usize),
        sustain: a.sustain.options()?,
        bo_rep: a.bo_rep.options()?,
        average: a.average,
        epsilon: a.epsilon,
        iterations: Some(a.max_iters),
        searched: [false; 2],
    })
}

/// The part of `solve` both problem kinds share: the stop rule, Ctrl-C, the progress bar, the
/// run (`go`), the summary line, `--json` (the common fields and `out.extra`) and `--trace`.
fn execute(
    a: &SolveArgs,
    name: &str,
    algo: &str,
    rule: StepRule,
    out: Outputs,
    go: impl FnOnce(&StopRule, &mut dyn FnMut(&TraceRow) -> ControlFlow<()>) -> bilevel_kernels::Result<Trace>,
) -> Result<(), DynError> {
    let stop = StopRule {
        max_oracle_calls: a.max_oracle_calls,
        time_limit_s: a.time_limit,
        target_rel_error: a.target,
        divergence_growth: Some(a.divergence_growth).filter(|g| g.is_finite()),
        eval_every: a.eval_every as usize,
        ..StopRule::iterations(a.max_iters)
    };
    let mut trace_file = out.trace.map(|t| t.into_trace(&out.metric_names)).transpose()?;
    // Ctrl-C (the handler of `run`) stops the run inside its step, keeping the trace and the
    // summary.
    // A progress bar on a terminal only: piped output stays one clean summary line.
    let bar = std::io::IsTerminal::is_terminal(&std::io::stderr()).then(|| {
        let bar = indicatif::ProgressBar::new(a.max_iters as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} iterations, ‖∇L‖ {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    let trace = go(&stop, &mut |row| {
        if let Some(t) = trace_file.as_mut() {
            t.write(row);
        }
        if let Some(bar) = &bar {
            bar.set_position(row.iteration as u64);
            bar.set_message(row.grad_norm.map_or_else(|| "?".into(), |r| format!("{r:.3e}")));
        }
        if INTERRUPTED.load(Ordering::SeqCst) {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let interrupted = trace.stop == StopReason::Observer && INTERRUPTED.load(Ordering::SeqCst);
    let stop_name = if interrupted { "Interrupted".to_string() } else { format!("{:?}", trace.stop) };
    let last = trace.last();
    let cnt = last.counts;
    let paired = CountingConvention::PairedGradF;
    let metrics: String = trace.metric_names.iter().zip(&last.metrics).map(|(n, v)| format!(", {n} {v:.4e}")).collect();
    println!(
        "{name}: {algo}, {} iterations ({stop_name}), rel_error {}, ‖∇L‖ {}{metrics}, oracle calls: grad_f {} (∂x f {}, ∂y f {}) grad_g {} hvp {} cross {}, {:.3e} s",
        last.iteration,
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
    if let Some(o) = trace.output.as_ref().filter(|o| o.rule != bilevel_solvers::Output::Last) {
        println!("output ({}): {}", output_rule(o), output_summary(o, &trace.metric_names));
    }
    // Each output on its own: a failing trace does not lose the summary.
    let trace_written = trace_file.map_or(Ok(()), |t| t.finish());
    let json_written = out.json.map_or(Ok(()), |file| {
        let mut value = json!({
            "problem": name,
            "algo": algo,
            "steps": rule.name(),
            "rel_error": last.rel_error,
            "grad_norm": last.grad_norm,
            "metrics": trace.metric_names.iter().zip(&last.metrics).map(|(n, v)| (n.to_string(), *v)).collect::<std::collections::BTreeMap<_, _>>(),
            "oracle_calls": crate::cli::oracle_calls_json(&cnt),
            "seconds": last.seconds,
            "iterations": last.iteration,
            "stop": stop_name,
            "failure": trace.failure,
            "output": trace.output.as_ref().map(|o| json!({
                "rule": o.rule,
                "iteration": o.iteration,
                "candidates": o.candidates,
                "rel_error": o.row.rel_error,
                "grad_norm": o.row.grad_norm,
                "metrics": trace.metric_names.iter().zip(&o.row.metrics).map(|(n, v)| (n.to_string(), *v)).collect::<std::collections::BTreeMap<_, _>>(),
                "mean_sq_grad_norm": o.mean_sq_grad_norm,
                "mean_grad_norm": o.mean_grad_norm,
                "evaluated": o.evaluated,
            })),
        });
        if let (Some(v), serde_json::Value::Object(extra)) = (value.as_object_mut(), out.extra) {
            v.extend(extra);
        }
        file.write_json(&value)
    });
    trace_written?;
    json_written?;
    if let Some(failure) = &trace.failure {
        return Err(
            format!("the run stopped ({stop_name}) at {failure}; the trace and summary so far were written").into()
        );
    }
    if interrupted {
        return Err(format!(
            "interrupted after {} iterations; the trace and summary so far were written",
            last.iteration
        )
        .into());
    }
    Ok(())
}

/// How the output was chosen, in words.
fn output_rule(o: &bilevel_solvers::OutputPoint) -> String {
    match o.rule {
        bilevel_solvers::Output::Last => "the last iterate".into(),
        bilevel_solvers::Output::Averaged => "the averaged iterate x̂_K".into(),
        bilevel_solvers::Output::Uniform { first, .. } => {
            format!("x_a, a drawn uniformly from {first}..{}", first + o.candidates - 1)
        }
    }
}

/// The output's measurements, in words.
fn output_summary(o: &bilevel_solvers::OutputPoint, names: &[&str]) -> String {
    let opt = |v: Option<f64>| v.map_or("n/a".into(), |v| format!("{v:.3e}"));
    let mut s = format!("iteration {}, rel_error {}, ‖∇L‖ {}", o.iteration, opt(o.row.rel_error), opt(o.row.grad_norm));
    s.extend(names.iter().zip(&o.row.metrics).map(|(n, v)| format!(", {n} {v:.4e}")));
    if matches!(o.rule, bilevel_solvers::Output::Uniform { .. }) && o.evaluated > 0 {
        // On a fixed-point problem the means are of ‖G_α‖ (no ‖∇L‖ is measured there).
        let m = if o.row.grad_norm.is_none() && names.contains(&"grad_mapping") { "‖G_α‖" } else { "‖∇L‖" };
        s += &format!(
            "; over the {} candidates with {m} measured: mean {m}² {}, mean {m} {}",
            o.evaluated,
            opt(o.mean_sq_grad_norm),
            opt(o.mean_grad_norm)
        );
    }
    s
}
