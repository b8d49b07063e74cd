//! One outer iteration (`Algorithm::step`) of every algorithm in `algorithms::NAMES`, after
//! `init` outside the timed loop, built as the solvers' tests build them:
//! `algorithms::needs` + `constants::resolve` + `algorithms::build` with
//! `StepRule::Default` and the default settings (T = N = 10).
//!
//! Problems:
//! - `quadratic_small`: the F.1 quadratic (data-gen `quadratic`, `small` preset: d_x = 200,
//!   d_y = 100, dense); its constants (µ_g, L_g, L_L) are prescribed, none is estimated. It is
//!   one sample (no finite sum), so it runs on full batches only.
//! - `logreg_text_small`: multinomial logistic HPO on the synthetic text data (data-gen
//!   `logreg_text`, `small` preset: 800 training and 600 validation documents, 5,000 words,
//!   5 classes, sparse; d_x = 5,000, d_y = 25,000). L_g is estimated by Lanczos at set-up; L_L
//!   would need the Newton reference in a Lanczos loop, so the outer step is set by hand
//!   (`Settings::outer_step = Some(OUTER_STEP)`, the CLI's `--outer-step`). Full batches, and
//!   mini-batches of `BATCH` samples for every oracle (`BatchSizes::all`) for the algorithms
//!   with a stochastic form.
//!
//! BSGM runs paper 001 §7.1's fixed schedule t_s = k_s = T (`Settings::fixed_steps`): under
//! Theorem 17's schedule t_s and k_s grow with s, so a step's cost would depend on how many
//! steps criterion happened to run (and its c₃ bound needs µ_g, which the logistic problem does
//! not know).
//!
//! Not run (each is printed on stderr when the bench starts, with the library's reason):
//! - `itd` with mini-batches: its stochastic form is not implemented (`build` refuses);
//! - `bsgm` with mini-batches on `logreg_text_small`: its stochastic schedule (Theorem 16)
//!   needs µ_g, which the problem does not know and which is not estimated above d_y =
//!   `spectrum::DENSE_MAX_DIM`;
//! - any other pair `needs`/`resolve`/`build`/`init` refuses (the stderr line says which).
//!
//! Step costs that depend on k (BO-REP's periodic inner re-solves, the drawn Neumann depths of
//! BSA/TTSA/SUSTAIN, BSA's growing horizon N_k) are averaged over the consecutive steps
//! criterion runs. Throughput: `Elements(1)`, i.e. outer iterations per second.
use bilevel_data::catalog::{build, BuildOptions};
use bilevel_kernels::BilevelProblem;
use bilevel_solvers::algorithms::{self, Algorithm, Settings};
use bilevel_solvers::{constants, BatchSizes, Context, Overrides, StepRule};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::time::Duration;

/// The outer step γ on the logistic problem (where L_L is not known).
const OUTER_STEP: f64 = 0.1;
/// The mini-batch size on the logistic problem.
const BATCH: usize = 64;

/// `name` built for `p` and initialised at (x0, y0), or the reason it cannot run.
fn ready(
    name: &str,
    p: &dyn BilevelProblem,
    x0: &[f64],
    y0: &[f64],
    settings: &Settings,
) -> Result<Box<dyn Algorithm>, String> {
    let rule = StepRule::Default;
    let need = algorithms::needs(name, rule, settings).map_err(|e| e.to_string())?;
    let c = constants::resolve(p, x0, y0, &need, &Overrides::default()).map_err(|e| e.to_string())?;
    let mut alg = algorithms::build(name, rule, &Context { problem: p, family: "", constants: &c, x0 }, settings)
        .map(|b| b.algorithm)
        .map_err(|e| e.to_string())?;
    alg.init(p, x0, y0).map_err(|e| e.to_string())?;
    Ok(alg)
}

fn group(c: &mut Criterion, problem: &str, preset: &str, runs: &[(&str, Settings)]) {
    let built = build(problem, &BuildOptions { preset: Some(preset.into()), seed: 1, ..Default::default() }).unwrap();
    let p = built.problem().as_bilevel().expect("a bilevel problem");
    let (x0, y0) = (built.x0(1), built.y0());
    let mut g = c.benchmark_group(format!("step_{problem}_{preset}"));
    g.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(2));
    g.throughput(Throughput::Elements(1));
    for (batch, settings) in runs {
        for &name in algorithms::NAMES {
            let fixed =
                Settings { fixed_steps: Some(settings.inner_steps.unwrap_or(algorithms::DEFAULT_STEPS)), ..*settings };
            let settings = if name == "bsgm" { &fixed } else { settings };
            match ready(name, p, &x0, &y0, settings) {
                Ok(mut alg) => {
                    g.bench_function(BenchmarkId::new(name, batch), |b| b.iter(|| alg.step(p).unwrap()));
                }
                Err(why) => eprintln!("not run: {name} on {problem} ({preset}), {batch}: {why}"),
            }
        }
    }
    g.finish();
}

fn bench(c: &mut Criterion) {
    group(c, "quadratic", "small", &[("full", Settings::default())]);
    let full = Settings { outer_step: Some(OUTER_STEP), ..Settings::default() };
    let mini = Settings { batches: BatchSizes::all(BATCH), seed: 3, ..full };
    group(c, "logreg_text", "small", &[("full", full), (&format!("batch{BATCH}"), mini)]);
}

criterion_group!(benches, bench);
criterion_main!(benches);
