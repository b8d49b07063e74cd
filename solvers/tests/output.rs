//! The points the theorems report (`Algorithm::output`, `Trace::output`): AmIGO's averaged
//! iterate (paper 000 Corollary 2), stocBiO's and BO-REP's x̄ uniform over x_0..x_{K−1} and
//! SUSTAIN's a(T) ~ U{1..T}, drawn by the driver.

use bilevel_data::stochastic_quadratic::{generate, Config, StochasticQuadratic};
use bilevel_kernels::{BilevelProblem, Counted};
use bilevel_solvers::algorithms::{self, Settings};
use bilevel_solvers::{
    constants, run, AidBilevel, AidBilevelConfig, AidVariant, Algorithm, BatchSizes, Context, Output, Overrides,
    StepRule, StopRule, Trace,
};
use std::ops::ControlFlow;

fn problem(seed: u64) -> StochasticQuadratic {
    generate(&Config::preset("tiny").unwrap(), seed).unwrap()
}

fn mini(b: usize, seed: u64) -> Settings {
    Settings { batches: BatchSizes::all(b), seed, ..Settings::default() }
}

fn solve(problem_seed: u64, name: &str, settings: &Settings, iters: usize) -> Trace {
    let p = problem(problem_seed);
    let (x0, y0) = (p.x0(1), vec![0.0; p.dim_y()]);
    let need = algorithms::needs(name, StepRule::Default, settings).unwrap();
    let c = constants::resolve(&p, &x0, &y0, &need, &Overrides::default()).unwrap();
    let mut alg = algorithms::build(
        name,
        StepRule::Default,
        &Context { problem: &p, family: "", constants: &c, x0: &x0 },
        settings,
    )
    .map(|b| b.algorithm)
    .unwrap();
    let counted = Counted::new(p);
    run(alg.as_mut(), &counted, &x0, &y0, &StopRule::iterations(iters), |_| ControlFlow::Continue(())).unwrap()
}

#[test]
fn the_uniform_output_is_uniform_over_the_papers_range() {
    // K = 4 steps: stocBiO and BO-REP choose among x_0..x_3, SUSTAIN among x_1..x_4. Over 400
    // seeds each count is Binomial(400, 1/4): mean 100, sd 8.7; 5 sd is 43.
    let k = 4;
    for (name, first) in [("stocbio", 0), ("sustain", 1)] {
        let mut counts = [0usize; 5];
        for seed in 0..400 {
            let t = solve(1, name, &mini(4, seed), k);
            let o = t.output.as_ref().unwrap();
            assert_eq!(o.rule, Output::Uniform { first, seed });
            assert_eq!(o.candidates, k);
            assert!((first..first + k).contains(&o.iteration), "{name}: {}", o.iteration);
            counts[o.iteration] += 1;
            // The point measured is that iterate: its ‖∇L‖ is its row's.
            assert_eq!(o.row.grad_norm, t.rows[o.iteration].grad_norm, "{name}");
            // The reported expectation over the draw is the mean over the candidates' rows.
            let sq: f64 = t.rows[first..first + k].iter().map(|r| r.grad_norm.unwrap().powi(2)).sum();
            assert!((o.mean_sq_grad_norm.unwrap() - sq / k as f64).abs() <= 1e-14 * sq);
            assert_eq!(o.evaluated, k);
        }
        for (i, &c) in counts.iter().enumerate() {
            if (first..first + k).contains(&i) {
                assert!(c.abs_diff(100) < 43, "{name}: iteration {i} drawn {c} times of 400: {counts:?}");
            } else {
                assert_eq!(c, 0, "{name}: iteration {i} is not a candidate");
            }
        }
    }
}

#[test]
fn the_draw_is_seeded() {
    let a = solve(2, "stocbio", &mini(4, 7), 30);
    let b = solve(2, "stocbio", &mini(4, 7), 30);
    assert_eq!(a.output.as_ref().map(|o| o.iteration), b.output.as_ref().map(|o| o.iteration));
    // The same seed, the same rows; and the draw varies with the seed.
    let strip = |t: &Trace| t.rows.iter().map(|r| (r.counts, r.grad_norm)).collect::<Vec<_>>();
    assert_eq!(strip(&a), strip(&b));
    let draws: std::collections::BTreeSet<usize> =
        (0..20).map(|s| solve(2, "stocbio", &mini(4, s), 30).output.unwrap().iteration).collect();
    assert!(draws.len() > 5, "20 seeds drew only {draws:?}");
}

#[test]
fn deterministic_algorithms_output_their_last_iterate() {
    let t = solve(1, "amigo-cg", &Settings::default(), 20);
    let o = t.output.as_ref().unwrap();
    assert_eq!((o.rule, o.iteration, o.candidates), (Output::Last, 20, 1));
    assert_eq!(&o.row, t.last());
    assert_eq!((o.mean_sq_grad_norm, o.evaluated), (None, 0));
}

/// AmIGO-GD with the averaged output of weight δ on mini-batches of `b`.
fn averaged_amigo(p: &StochasticQuadratic, delta: f64, b: usize, seed: u64) -> AidBilevel {
    let l_g = p.constants().l_g.unwrap();
    let steps = bilevel_solvers::StepSizes { inner: 1.0 / l_g, adjoint: 1.0 / l_g, outer: 0.5 };
    let mut config =
        AidBilevelConfig::variant(AidVariant::AmigoGd, 10, 10, steps).with_batches(BatchSizes::all(b), seed);
    config.average = Some(delta);
    AidBilevel::new("amigo-gd", config).unwrap()
}

#[test]
fn the_averaged_iterate_follows_the_corollarys_recursion() {
    // x̂_0 = x_0, x̂_k = (1 − δ)x̂_{k−1} + δx_k, recomputed from the iterates.
    let p = problem(4);
    let (x0, y0) = (p.x0(1), vec![0.0; p.dim_y()]);
    let delta = 0.3;
    let mut alg = averaged_amigo(&p, delta, 4, 1);
    alg.init(&p, &x0, &y0).unwrap();
    assert_eq!(alg.output(), Output::Averaged);
    let mut want = x0.clone();
    for _ in 0..25 {
        alg.step(&p).unwrap();
        let it = alg.iterates();
        want.iter_mut().zip(&it.x).for_each(|(w, x)| *w = (1.0 - delta) * *w + delta * x);
        let got = it.averaged.as_ref().unwrap();
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() <= 1e-13 * (1.0 + w.abs()), "{g} vs {w}");
        }
    }
}

#[test]
fn averaging_reduces_the_noise_of_constant_step_sgd() {
    // Corollary 2's point: with constant steps the last iterate stops at a batch-dependent
    // noise floor; the average of the iterates is closer to x*. Mean over 8 seeds after 300
    // steps: the averaged relative error at least 3× below the last iterate's.
    let (mut last, mut avg) = (0.0, 0.0);
    for seed in 0..8 {
        let mut settings = mini(8, seed);
        settings.average = true;
        let t = solve(5, "amigo-gd", &settings, 300);
        let o = t.output.as_ref().unwrap();
        assert_eq!(o.rule, Output::Averaged);
        let i = t.metric_names.iter().position(|n| *n == "avg_rel_error").unwrap();
        assert_eq!(Some(t.last().metrics[i]), o.row.rel_error);
        last += t.last().rel_error.unwrap();
        avg += o.row.rel_error.unwrap();
    }
    assert!(avg * 3.0 < last, "averaged {avg} vs last {last} (sums over 8 seeds)");
}

#[test]
fn averaging_is_refused_where_it_is_not_defined() {
    let p = problem(1);
    let (x0, y0) = (p.x0(1), vec![0.0; p.dim_y()]);
    let settings = Settings { average: true, ..mini(4, 0) };
    let need = algorithms::needs("stocbio", StepRule::Default, &settings).unwrap();
    let c = constants::resolve(&p, &x0, &y0, &need, &Overrides::default()).unwrap();
    let err = algorithms::build(
        "stocbio",
        StepRule::Default,
        &Context { problem: &p, family: "", constants: &c, x0: &x0 },
        &settings,
    )
    .map(|b| b.algorithm)
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("AmIGO"), "{err}");
    // µ_L unknown (a problem that does not report it): a typed error naming --mu-outer.
    let mut c2 = c;
    c2.known.mu_outer = None;
    let err = algorithms::build(
        "amigo-gd",
        StepRule::Default,
        &Context { problem: &p, family: "", constants: &c2, x0: &x0 },
        &settings,
    )
    .map(|b| b.algorithm)
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("--mu-outer"), "{err}");
    for delta in [0.0, -0.5, 1.5, f64::NAN] {
        let mut config = AidBilevelConfig::variant(
            AidVariant::AmigoGd,
            1,
            1,
            bilevel_solvers::StepSizes { inner: 0.1, adjoint: 0.1, outer: 0.1 },
        );
        config.average = Some(delta);
        assert!(AidBilevel::new("amigo-gd", config).is_err(), "δ = {delta}");
    }
}
