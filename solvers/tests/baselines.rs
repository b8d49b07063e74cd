//! BSA and TTSA (paper 001 Table 1's configurations): the Ghadimi–Wang estimator's mean against
//! its closed form, bitwise reproducibility across thread counts, convergence on the stochastic
//! quadratic against deliberately broken variants, and the per-step oracle counts.

use bilevel_data::stochastic_quadratic::{generate, Config, StochasticQuadratic};
use bilevel_kernels::{ops, Batch, BilevelProblem, Counted};
use bilevel_solvers::algorithms::bsa::{self, Bsa, BsaConfig, Horizon};
use bilevel_solvers::algorithms::ttsa::{self, Ttsa, TtsaConfig};
use bilevel_solvers::algorithms::Settings;
use bilevel_solvers::estimators::TruncatedHypergradient;
use bilevel_solvers::{run, Algorithm, BatchSizes, Constants, Context, StepRule, StopRule, Trace};
use std::ops::ControlFlow;

fn tiny(seed: u64) -> StochasticQuadratic {
    generate(&Config::preset("tiny").unwrap(), seed).unwrap()
}

fn settings(batch: usize, seed: u64) -> Settings {
    Settings { batches: BatchSizes::all(batch), seed, ..Settings::default() }
}

fn go(alg: &mut dyn Algorithm, p: &Counted<StochasticQuadratic>, iters: usize, every: usize) -> Trace {
    let x0 = p.inner().x0(1);
    let y0 = vec![0.0; p.dim_y()];
    let stop = StopRule { eval_every: every, divergence_growth: None, ..StopRule::iterations(iters) };
    run(alg, p, &x0, &y0, &stop, |_| ControlFlow::Continue(())).unwrap()
}

/// (a) With mini-batches of one sample for ξ, every ζ_i and ζ_0, the estimate's mean over
/// samples and depths is ∂x f̄ − C̄·(1/L) Σ_{j<N} (I − H̄/L)^j ∂y f̄ (independent draws; the
/// means of the finite sum). Checked per coordinate within 5 standard errors, with the
/// estimator at its own horizon and at a larger cap (the rescaled path).
#[test]
fn ghadimi_wang_mean_matches_its_closed_form() {
    let p = tiny(3);
    let (dx, dy) = (p.dim_x(), p.dim_y());
    let x: Vec<f64> = p.x0(7);
    let y: Vec<f64> = (0..dy).map(|i| 0.3 - 0.1 * i as f64).collect();
    let l = p.constants().l_g_sample.unwrap();
    let n = 6;
    // Closed form on the full batch (the means).
    let mut b = vec![0.0; dy];
    p.grad_y_f(&x, &y, Batch::Full, &mut b);
    let (mut term, mut sum, mut hv) = (b.clone(), vec![0.0; dy], vec![0.0; dy]);
    for _ in 0..n {
        ops::axpy(1.0 / l, &term, &mut sum);
        p.hvp(&x, &y, &term, Batch::Full, &mut hv);
        ops::axpy(-1.0 / l, &hv, &mut term);
    }
    let (mut expected, mut cross) = (vec![0.0; dx], vec![0.0; dx]);
    p.grad_x_f(&x, &y, Batch::Full, &mut expected);
    p.cross(&x, &y, &sum, Batch::Full, &mut cross);
    ops::axpy(-1.0, &cross, &mut expected);
    for cap in [n, 64] {
        let mut est = TruncatedHypergradient::new(&p, l, cap, &BatchSizes::all(1), 11).unwrap();
        let m = 40_000;
        let (mut mean, mut sq, mut out) = (vec![0.0; dx], vec![0.0; dx], vec![0.0; dx]);
        let mut depths = 0usize;
        for _ in 0..m {
            depths += est.estimate(&p, &x, &y, n, &mut out).unwrap();
            for i in 0..dx {
                mean[i] += out[i] / m as f64;
                sq[i] += out[i] * out[i] / m as f64;
            }
        }
        for i in 0..dx {
            let se = ((sq[i] - mean[i] * mean[i]) / (m - 1) as f64).sqrt();
            assert!(
                (mean[i] - expected[i]).abs() <= 5.0 * se + 1e-12,
                "cap {cap}, coordinate {i}: mean {} vs closed form {} (se {se})",
                mean[i],
                expected[i]
            );
        }
        // The depth is uniform on 0..N: mean (N − 1)/2 = 2.5, sd ≈ 1.7/√m.
        let mean_depth = depths as f64 / m as f64;
        assert!((mean_depth - 2.5).abs() < 5.0 * 1.71 / (m as f64).sqrt(), "mean depth {mean_depth}");
    }
}

/// (b) The same seed gives the same trace, bit for bit, with 1 and 2 threads; another seed
/// gives another.
#[test]
fn same_seed_same_bits_with_one_and_two_threads() {
    let p = Counted::new(tiny(5));
    let c = Constants::new(p.constants());
    let x0 = p.inner().x0(1);
    let ctx = Context { problem: &p, family: "", constants: &c, x0: &x0 };
    let trace = |name: &str, seed: u64, threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| {
            p.reset();
            let s = settings(1, seed);
            let mut alg = if name == "bsa" {
                bsa::build(StepRule::Default, &ctx, &s)
            } else {
                ttsa::build(StepRule::Default, &ctx, &s)
            }
            .unwrap()
            .0;
            let t = go(alg.as_mut(), &p, 150, 1);
            let rows: Vec<_> = t
                .rows
                .iter()
                .map(|r| (r.counts, r.rel_error.map(f64::to_bits), r.grad_norm.map(f64::to_bits)))
                .collect();
            let x: Vec<u64> = alg.iterates().x.iter().map(|v| v.to_bits()).collect();
            (rows, x)
        })
    };
    for name in ["bsa", "ttsa"] {
        let one = trace(name, 9, 1);
        assert_eq!(one, trace(name, 9, 2), "{name}");
        assert_eq!(one, trace(name, 9, 1), "{name}");
        assert_ne!(one.1, trace(name, 10, 1).1, "{name}: the seed matters");
    }
}

fn mean_rel_error(
    mut make: impl FnMut(u64) -> Box<dyn Algorithm>,
    p: &Counted<StochasticQuadratic>,
    iters: usize,
) -> f64 {
    let seeds = 0..4u64;
    let n = seeds.clone().count() as f64;
    seeds.map(|s| go(make(s).as_mut(), p, iters, iters).last().rel_error.unwrap()).sum::<f64>() / n
}

/// (c) On the tiny stochastic quadratic (κ_g = 10), batches of 4, default rule: BSA reaches a mean relative error (L(x_K) − L*)/(L(x_0) − L*) below 0.1 in 2000
/// steps, TTSA below 0.5 (it is the slow one: outer steps ∝ k^{−3/5}); both beat a broken
/// variant by a factor of 2: BSA with N = 1 (the Hessian inverse replaced by I/L), TTSA with
/// its inner step removed (β_0 = the smallest positive f64: y stays at y_0).
#[test]
fn both_converge_on_the_stochastic_quadratic_and_beat_broken_variants() {
    let p = Counted::new(tiny(5));
    let c = Constants::new(p.constants());
    let x0 = p.inner().x0(1);
    let ctx = Context { problem: &p, family: "", constants: &c, x0: &x0 };
    let iters = 2000;
    let bsa_config = |s: u64| bsa::schedule(StepRule::Default, &ctx, &settings(4, s)).unwrap().0;
    let good = mean_rel_error(|s| Box::new(Bsa::new(bsa_config(s)).unwrap()), &p, iters);
    let broken = mean_rel_error(
        |s| Box::new(Bsa::new(BsaConfig { horizon: Horizon::Fixed(1), ..bsa_config(s) }).unwrap()),
        &p,
        iters,
    );
    eprintln!("bsa: mean relative error {good:.4} (broken N = 1: {broken:.4})");
    assert!(good < 0.1 && broken > 2.0 * good, "bsa {good} vs broken {broken}");

    let ttsa_config = |s: u64| ttsa::schedule(StepRule::Default, &ctx, &settings(4, s)).unwrap().0;
    let good = mean_rel_error(|s| Box::new(Ttsa::new(ttsa_config(s)).unwrap()), &p, iters);
    let broken = mean_rel_error(
        |s| Box::new(Ttsa::new(TtsaConfig { inner0: f64::MIN_POSITIVE, ..ttsa_config(s) }).unwrap()),
        &p,
        iters,
    );
    eprintln!("ttsa: mean relative error {good:.4} (broken, no inner step: {broken:.4})");
    assert!(good < 0.5 && broken > 2.0 * good, "ttsa {good} vs broken {broken}");
}

/// (d) Per step k: BSA spends t_k = ⌈√(k+1)⌉ ∂y g, TTSA one; both one ∂x f, one ∂y f, q HVPs
/// (the drawn depth) and one cross product; samples: t_k·|S| + q·|ζ_i| + |ζ_0| of g and |ξ| of
/// f (∂x f and ∂y f read one ξ at one point: counted once, as paper 002's Gc(F) = K·D_f);
/// distinct batch sizes, so a stream read at the wrong size shows.
#[test]
fn oracle_counts_per_step_match_the_formula() {
    let p = Counted::new(tiny(5));
    let c = Constants::new(p.constants());
    let batches = BatchSizes { inner: Some(2), outer: Some(3), hvp: Some(5), cross: Some(7), ..BatchSizes::full() };
    let s = Settings { batches, seed: 4, ..Settings::default() };
    let (x0, y0) = (p.inner().x0(1), vec![0.0; p.dim_y()]);
    let ctx = Context { problem: &p, family: "", constants: &c, x0: &x0 };
    let mut b = Bsa::new(bsa::schedule(StepRule::Default, &ctx, &s).unwrap().0).unwrap();
    check_counts(&p, &mut b, &x0, &y0, Bsa::last_depth, BsaConfig::inner_steps);
    let mut t = Ttsa::new(ttsa::schedule(StepRule::Default, &ctx, &s).unwrap().0).unwrap();
    check_counts(&p, &mut t, &x0, &y0, Ttsa::last_depth, |_| 1);
}

fn check_counts<A: Algorithm>(
    p: &Counted<StochasticQuadratic>,
    alg: &mut A,
    x0: &[f64],
    y0: &[f64],
    depth: fn(&A) -> usize,
    inner_steps: fn(usize) -> usize,
) {
    alg.init(p, x0, y0).unwrap();
    let mut total_depth = 0;
    for k in 0..60usize {
        let before = p.counts();
        alg.step(p).unwrap();
        let d = p.counts().since(&before);
        let (q, inner) = (depth(alg), inner_steps(k));
        total_depth += q;
        assert_eq!((d.grad_y_g, d.grad_x_f, d.grad_y_f, d.hvp, d.cross), (inner as u64, 1, 1, q as u64, 1), "k {k}");
        assert_eq!(d.samples_g, (inner * 2 + q * 5 + 7) as u64, "k {k}");
        assert_eq!((d.samples_f, d.f, d.g), (3, 0, 0), "k {k}");
    }
    assert!(total_depth > 0, "{}: some step drew a positive depth", alg.name());
}
