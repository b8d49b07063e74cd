//! Issue 17's matrix: every algorithm on every bilevel problem of the catalogue (tiny presets),
//! on full batches and on small and large mini-batches with and without replacement, with the
//! default rule and nothing else, makes progress: the run ends without a failure (no
//! divergence, no error, no `NoProgress`) and its outer objective L(x) — the closed form or the
//! Newton reference, else the problem's validation loss — ends below where it started.
//!
//! A refusal counts as a failure, except the ones the rules document (listed in `REFUSED`).

use bilevel_data::catalog::{build, BuildOptions};
use bilevel_kernels::{BilevelProblem, Counted};
use bilevel_solvers::algorithms::{self, Settings, NAMES};
use bilevel_solvers::{
    constants, run, BatchSizes, Constant, Constants, Context, Overrides, Sampling, StepRule, StopRule,
};
use std::ops::ControlFlow;

/// (generator, preset): the tiny presets, and benchopt's rank-one stochastic quadratic (its
/// samples singular, per-sample µ = 0; at its own dimensions, where the outer step 1/(2L_L)
/// diverged at b = 8 and smaller dimensions did not show it).
/// Ordered so that the two halves the test runs side by side take about the same time.
const PROBLEMS: &[(&str, &str)] = &[
    ("hyperclean", "tiny"),
    ("quadratic", "tiny"),
    ("stochastic_quadratic", "tiny"),
    ("stochastic_quadratic", "benchopt"),
    ("logreg_binary", "tiny"),
    ("logreg_text", "tiny"),
    ("logreg_per_class", "tiny"),
    ("meta_learning", "tiny"),
    ("distillation", "tiny"),
];

/// Outer iterations of each run ("a few hundred").
const ITERS: usize = 200;

fn batches() -> Vec<(&'static str, BatchSizes)> {
    let with = |b: usize, sampling: Sampling| BatchSizes { sampling, ..BatchSizes::all(b) };
    vec![
        ("full", BatchSizes::full()),
        ("8 with replacement", with(8, Sampling::Replacement)),
        ("8 without", with(8, Sampling::Epochs)),
        ("64 with replacement", with(64, Sampling::Replacement)),
        ("64 without", with(64, Sampling::Epochs)),
    ]
}

/// One problem of the catalogue at its tiny preset, its start and its constants (resolved once
/// for every algorithm: µ_g, L_g, L_L — the estimate of L_L at x_0 is what costs).
struct Case {
    name: &'static str,
    problem: Box<dyn BilevelProblem + Send>,
    x0: Vec<f64>,
    y0: Vec<f64>,
    constants: Constants,
}

fn case(name: &'static str, preset: &str) -> Case {
    let options = BuildOptions { preset: Some(preset.into()), seed: 0, ..Default::default() };
    let built = build(name, &options).unwrap();
    let (x0, y0) = (built.x0(1), built.y0());
    let problem = built.into_problem().into_bilevel().expect("a bilevel problem");
    let needs = [Constant::MuG, Constant::LG, Constant::LOuter];
    let constants = constants::resolve(&problem, &x0, &y0, &needs, &Overrides::default()).unwrap();
    Case { name, problem, x0, y0, constants }
}

/// One run's outcome: `Ok(())` for progress, else why not.
fn outcome(case: &Case, algo: &str, b: BatchSizes) -> Result<(), String> {
    let (x0, y0) = (&case.x0[..], &case.y0[..]);
    let settings = Settings { batches: b, seed: 3, ..Settings::default() };
    let ctx = Context { problem: &case.problem, family: case.name, constants: &case.constants, x0 };
    let built = algorithms::build(algo, StepRule::Default, &ctx, &settings).map_err(|e| format!("refused: {e}"))?;
    let mut alg = built.algorithm;
    let counted = Counted::new(&case.problem);
    let stop = StopRule { eval_every: ITERS, ..StopRule::iterations(ITERS) };
    let trace = run(alg.as_mut(), &counted, x0, y0, &stop, |_| ControlFlow::Continue(())).map_err(|e| e.to_string())?;
    if trace.stop.is_failure() {
        return Err(format!("{:?}: {}", trace.stop, trace.failure.unwrap_or_default()));
    }
    let (first, last) = (&trace.rows[0], trace.last());
    let measure = |r: &bilevel_solvers::TraceRow| {
        r.value.or_else(|| {
            let i = trace.metric_names.iter().position(|n| *n == "val_loss")?;
            r.metrics.get(i).copied()
        })
    };
    match (measure(first), measure(last)) {
        (Some(a), Some(z)) if z < a => Ok(()),
        (Some(a), Some(z)) => Err(format!("no progress: {a:e} → {z:e}")),
        _ => Err("nothing measured".into()),
    }
}

/// The runs of one problem, in order: "problem / algorithm / batches: why" for each failure.
fn failures_on(&(name, preset): &(&'static str, &str)) -> (usize, Vec<String>) {
    let start = std::time::Instant::now();
    let case = case(name, preset);
    let mut failures = Vec::new();
    let mut runs = 0;
    for algo in NAMES {
        for (label, b) in batches() {
            runs += 1;
            if let Err(why) = outcome(&case, algo, b) {
                failures.push(format!("{name} {preset} / {algo} / {label}: {why}"));
            }
        }
    }
    eprintln!("{name} {preset}: {runs} runs in {:.1} s", start.elapsed().as_secs_f64());
    (runs, failures)
}

#[test]
fn every_default_makes_progress_on_every_problem() {
    // Two problems at a time (the machine's two cores; each run is sequential inside).
    let results: Vec<(usize, Vec<String>)> = std::thread::scope(|s| {
        let handles: Vec<_> = PROBLEMS
            .chunks(PROBLEMS.len().div_ceil(2))
            .map(|chunk| s.spawn(move || chunk.iter().map(failures_on).collect::<Vec<_>>()))
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("no panic")).collect()
    });
    let runs: usize = results.iter().map(|r| r.0).sum();
    let failures: Vec<String> = results.into_iter().flat_map(|r| r.1).collect();
    assert!(failures.is_empty(), "{} of {runs} runs failed:\n{}", failures.len(), failures.join("\n"));
}

/// The matrix sees what it tests: a default that diverges is reported, not passed (a step 100
/// times the default's on the quadratic diverges and fails the same check).
#[test]
fn the_check_fails_a_diverging_step() {
    let built =
        build("quadratic", &BuildOptions { preset: Some("tiny".into()), seed: 0, ..Default::default() }).unwrap();
    let (x0, y0) = (built.x0(1), built.y0());
    let p = built.into_problem().into_bilevel().unwrap();
    let gamma = 1.0 / p.constants().l_outer.unwrap();
    let settings = Settings { outer_step: Some(100.0 * gamma), ..Settings::default() };
    let (built, _) = algorithms::configure(
        "amigo-gd",
        StepRule::Default,
        &p,
        "quadratic",
        &x0,
        &y0,
        &Overrides::default(),
        &settings,
    )
    .unwrap();
    let mut alg = built.algorithm;
    let trace =
        run(alg.as_mut(), &Counted::new(p), &x0, &y0, &StopRule::iterations(ITERS), |_| ControlFlow::Continue(()))
            .unwrap();
    assert!(trace.stop.is_failure(), "{:?}", trace.stop);
}

/// A problem that reports L_g but no per-sample bound (a user's own finite sum).
struct NoSampleBound(Box<dyn BilevelProblem + Send>);

impl BilevelProblem for NoSampleBound {
    bilevel_kernels::forward_oracles!(0);
    fn constants(&self) -> bilevel_kernels::ProblemConstants {
        bilevel_kernels::ProblemConstants { l_g_sample: None, mu_g_sample: None, ..self.0.constants() }
    }
}

/// On mini-batches of a problem without a per-sample bound, L_max is estimated over batches at
/// x_0 (the largest batch λ_max, above L_g), said in the notes, and the SGD step uses it.
#[test]
fn a_missing_per_sample_bound_is_estimated_over_batches_and_said() {
    let built =
        build("stochastic_quadratic", &BuildOptions { preset: Some("tiny".into()), seed: 0, ..Default::default() })
            .unwrap();
    let (x0, y0) = (built.x0(1), built.y0());
    let p = NoSampleBound(built.into_problem().into_bilevel().unwrap());
    let l_g = p.constants().l_g.unwrap();
    let settings = Settings { batches: BatchSizes::all(4), ..Settings::default() };
    let (built, c) =
        algorithms::configure("amigo-gd", StepRule::Default, &p, "", &x0, &y0, &Overrides::default(), &settings)
            .unwrap();
    let l_max = c.known.l_g_sample.unwrap();
    assert!(l_max > l_g, "a 4-sample batch is less smooth than the mean: {l_max} vs {l_g}");
    assert!(built.params.notes.iter().any(|n| n.contains("an estimate, not a bound")), "{:?}", built.params.notes);
    let alpha = built.params.real("inner_step").unwrap();
    let want =
        1.0 / (2.0 * bilevel_solvers::algorithms::lower::expected_smoothness(l_g, l_max, 32, 4, Sampling::Replacement));
    assert!((alpha - want).abs() < 1e-12 * want, "{alpha} vs {want}");
}

/// Our stochastic CG needs a positive definite batch Hessian: on singular (rank-one) samples
/// the default takes the full batch for it and says why; a Hessian batch the user set is
/// refused, naming the reason.
#[test]
fn stochastic_cg_on_singular_samples_takes_the_full_hessian() {
    let case = case("stochastic_quadratic", "benchopt");
    assert_eq!(case.problem.constants().mu_g_sample, Some(0.0));
    let ctx = Context { problem: &case.problem, family: case.name, constants: &case.constants, x0: &case.x0 };
    let settings = Settings { batches: BatchSizes::all(8), ..Settings::default() };
    let built = algorithms::build("amigo-cg", StepRule::Default, &ctx, &settings).unwrap();
    let hvp = built.params.get("batch_hvp").unwrap();
    assert_eq!(hvp.value, bilevel_solvers::params::Value::Text("full".into()));
    assert!(hvp.source.text().contains("positive definite"), "{:?}", hvp.source);
    let explicit = Settings { explicit_batches: [false, false, true, false], ..settings };
    let err = algorithms::build("amigo-cg", StepRule::Default, &ctx, &explicit).err().unwrap().to_string();
    assert!(err.contains("positive definite"), "{err}");
}
