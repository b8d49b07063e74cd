//! BO-REP (paper 003, Alg. 1–3): the normalized step at ‖m‖ = 0, the projection and the
//! schedule of periodic updates (oracle counts per iteration, Epoch-SGD's (28)–(30) and
//! Lemma 3.2), reproducibility across thread counts, and convergence on the stochastic
//! quadratic against a variant without the periodic lower-level updates.

use bilevel_data::stochastic_quadratic::{self, StochasticQuadratic};
use bilevel_kernels::{ops, Batch, BilevelProblem, Counted};
use bilevel_solvers::algorithms::bo_rep::{
    build, normalized_step, project_ball, BoRep, BoRepConfig, BoRepParams, InitRefinement, TheoryConstants,
};
use bilevel_solvers::algorithms::Settings;
use bilevel_solvers::{run, Algorithm, BatchSizes, Constants, Context, StepRule, StopRule, Trace};

fn tiny(seed: u64) -> StochasticQuadratic {
    stochastic_quadratic::generate(&stochastic_quadratic::Config::preset("tiny").unwrap(), seed).unwrap()
}

/// A trace row without its wall time: (iteration, calls, rel_error, ‖∇L‖, inner error).
type RowKey = (usize, u64, Option<f64>, Option<f64>, Option<f64>);

fn rows_key(t: &Trace) -> Vec<RowKey> {
    t.rows.iter().map(|r| (r.iteration, r.total_calls(), r.rel_error, r.grad_norm, r.y_error)).collect()
}

fn run_bo_rep(problem: u64, cfg: BoRepConfig, iters: usize, eval_every: usize) -> (Trace, Vec<f64>) {
    let counted = Counted::new(tiny(problem));
    let p = counted.inner();
    let mut alg = BoRep::new(cfg).unwrap();
    let x0 = p.x0(1);
    let y0 = vec![0.0; p.dim_y()];
    let stop = StopRule { eval_every, ..StopRule::iterations(iters) };
    let trace = run(&mut alg, &counted, &x0, &y0, &stop, |_| std::ops::ControlFlow::Continue(())).unwrap();
    (trace, alg.iterates().x.clone())
}

/// f = ½‖y‖², g = ½‖y − x‖²: at x = y = 0 (and z_0 = 0) every estimate is exactly 0.
struct Flat;

impl BilevelProblem for Flat {
    fn dim_x(&self) -> usize {
        2
    }
    fn dim_y(&self) -> usize {
        2
    }
    fn f(&self, _: &[f64], y: &[f64], _: Batch<'_>) -> f64 {
        0.5 * ops::norm_sq(y)
    }
    fn g(&self, x: &[f64], y: &[f64], _: Batch<'_>) -> f64 {
        0.5 * y.iter().zip(x).map(|(a, b)| (a - b) * (a - b)).sum::<f64>()
    }
    fn grad_x_f(&self, _: &[f64], _: &[f64], _: Batch<'_>, out: &mut [f64]) {
        out.fill(0.0);
    }
    fn grad_y_f(&self, _: &[f64], y: &[f64], _: Batch<'_>, out: &mut [f64]) {
        out.copy_from_slice(y);
    }
    fn grad_y_g(&self, x: &[f64], y: &[f64], _: Batch<'_>, out: &mut [f64]) {
        out.iter_mut().zip(y.iter().zip(x)).for_each(|(o, (a, b))| *o = a - b);
    }
    fn hvp(&self, _: &[f64], _: &[f64], v: &[f64], _: Batch<'_>, out: &mut [f64]) {
        out.copy_from_slice(v);
    }
    fn cross(&self, _: &[f64], _: &[f64], v: &[f64], _: Batch<'_>, out: &mut [f64]) {
        out.iter_mut().zip(v).for_each(|(o, v)| *o = -v);
    }
}

/// (a) x ← x − η m/‖m‖ moves by exactly η for m ≠ 0 and not at all for m = 0 (finite, no NaN);
/// a run started where every estimate is 0 stays put with finite iterates.
#[test]
fn normalized_step_is_defined_at_zero_momentum() {
    let mut x = vec![1.0, -2.0];
    assert_eq!(normalized_step(0.3, &[0.0, 0.0], &mut x), 0.0);
    assert_eq!(x, vec![1.0, -2.0]);
    assert_eq!(normalized_step(0.3, &[3.0, 4.0], &mut x), 0.3);
    assert!((x[0] - (1.0 - 0.18)).abs() < 1e-15 && (x[1] - (-2.0 - 0.24)).abs() < 1e-15, "{x:?}");
    let cfg = BoRepConfig { params: BoRepParams::structural(1.0 / 1.0, 5), batches: BatchSizes::full(), seed: 0 };
    let mut alg = BoRep::new(cfg).unwrap();
    alg.init(&Flat, &[0.0, 0.0], &[0.0, 0.0]).unwrap();
    for _ in 0..10 {
        alg.step(&Flat).unwrap();
        let it = alg.iterates();
        assert_eq!((&it.x[..], &it.y[..], &it.grad[..]), (&[0.0, 0.0][..], &[0.0, 0.0][..], &[0.0, 0.0][..]));
        assert_eq!(alg.momentum(), &[0.0, 0.0]);
    }
    // Away from the stationary point every step has length η exactly.
    alg.init(&Flat, &[1.0, 0.5], &[0.0, 0.0]).unwrap();
    for _ in 0..10 {
        let before = alg.iterates().x.clone();
        alg.step(&Flat).unwrap();
        let moved: f64 = before.iter().zip(&alg.iterates().x).map(|(a, b)| (a - b).powi(2)).sum::<f64>().sqrt();
        assert!(moved == 0.0 || (moved - 0.01).abs() < 1e-15, "{moved}");
    }
}

/// (b) The projection onto B(c, R); every refresh stays in B(y_k, R) (an average of points of
/// the ball); the oracle calls per iteration are Algorithm 1's: one (∂x f, ∂y f) pair on one
/// ζ_k, one HVP and one cross product on one ξ_k, and N ∂y g exactly when k > 0, k ≡ 0 (mod I);
/// iteration 0 adds the initialization refinement's T_0 steps.
#[test]
fn projection_and_periodic_update_schedule() {
    let c = [1.0, 1.0];
    let mut y = vec![4.0, 5.0];
    project_ball(&mut y, &c, 2.5);
    assert!((y[0] - 2.5).abs() < 1e-15 && (y[1] - 3.0).abs() < 1e-15, "{y:?}");
    let mut inside = vec![1.5, 0.5];
    project_ball(&mut inside, &c, 2.5);
    assert_eq!(inside, vec![1.5, 0.5]);

    let (bi, bo, bh) = (3usize, 5usize, 2usize);
    let batches = BatchSizes { inner: Some(bi), outer: Some(bo), hvp: Some(bh), cross: Some(7), ..BatchSizes::full() };
    let (period, n, r, t0) = (3usize, 4usize, 0.05, 6usize);
    let p = tiny(0);
    let mut params = BoRepParams::structural(1.0 / p.constants().l_g.unwrap(), t0);
    (params.period, params.lower_steps, params.radius) = (period, n, r);
    let counted = Counted::new(tiny(0));
    let mut alg = BoRep::new(BoRepConfig { params, batches, seed: 3 }).unwrap();
    alg.init(&counted, &p.x0(1), &vec![0.0; p.dim_y()]).unwrap();
    let mut at_boundary = 0;
    for k in 0..40 {
        let (x_before, y_before) = (alg.iterates().x.clone(), alg.iterates().y.clone());
        let before = counted.counts();
        alg.step(&counted).unwrap();
        let d = counted.counts().since(&before);
        let refresh = k > 0 && k % period == 0;
        let lower = if refresh { n as u64 } else { 0 } + if k == 0 { t0 as u64 } else { 0 };
        assert_eq!((d.grad_x_f, d.grad_y_f, d.hvp, d.cross, d.grad_y_g), (1, 1, 1, 1, lower), "k = {k}");
        // ζ_k feeds ∇x F and ∇y F, ξ_k the HVP and the cross product: each batch counted once.
        assert_eq!((d.samples_f, d.samples_g), (bo as u64, bh as u64 + lower * bi as u64), "k = {k}");
        assert_eq!(alg.refreshes(), k / period, "k = {k}");
        let y = &alg.iterates().y;
        let moved: f64 = y.iter().zip(&y_before).map(|(a, b)| (a - b).powi(2)).sum::<f64>().sqrt();
        if k > 0 && !refresh {
            assert_eq!(y, &y_before, "y frozen between updates (k = {k})");
        }
        if refresh {
            assert!(moved <= r * (1.0 + 1e-12), "k = {k}: moved {moved} > R = {r}");
            at_boundary += usize::from(moved > 0.5 * r);
            assert_eq!(alg.iterates().x_at_y, x_before, "y_{{k+1}} was computed at x_k (k = {k})");
        }
    }
    assert!(at_boundary > 0, "R = {r} never binds: the test cannot see the projection");
}

/// (b) Epoch-SGD with (28)–(30) on full batches (σ = 0: T_s = ⌈16L/µ⌉, α_s = 1/(2L)) makes
/// 1 + k†·T_s ∂y g calls with k† = ⌈log2(128K0²V_0/(µε²))⌉, V_0 = ‖∇y g(x_0, y'_0)‖²/(2µ), and
/// reaches Lemma 3.2's ‖y_0 − y*(x_0)‖ ≤ ε/(8K0).
#[test]
fn epoch_sgd_follows_its_schedule_and_lemma_3_2() {
    let p = tiny(2);
    let k = p.constants();
    // Constants a caller supplies (the stochastic quadratic does not bound C_gxy and M): the
    // schedule's algebra is what is checked.
    let theory =
        TheoryConstants::new(k.mu_g.unwrap(), k.l_g.unwrap(), k.l_outer.unwrap(), 1.0, 1.0, 0.0, 0.0, [0.0; 3]);
    let params = theory.theorem_3_1(bilevel_solvers::algorithms::bo_rep::DEFAULT_EPSILON, 0.1, None).unwrap();
    let InitRefinement::Epochs(e) = params.init else { panic!("{:?}", params.init) };
    let (x0, y0) = (p.x0(1), vec![0.0; p.dim_y()]);
    let mut gy = vec![0.0; p.dim_y()];
    p.grad_y_g(&x0, &y0, Batch::Full, &mut gy);
    let v0 = ops::norm_sq(&gy) / (2.0 * e.mu);
    let epochs = (128.0 * e.k0 * e.k0 * v0 / (e.mu * e.epsilon * e.epsilon)).log2().ceil() as usize;
    let t_s = (16.0 * e.l / e.mu).ceil() as u64;
    assert!(epochs > 3, "{epochs}");
    assert_eq!(e.epochs(v0), epochs);
    assert_eq!(e.epoch(v0, epochs, 2).steps as u64, t_s);
    assert_eq!(e.epoch(v0, epochs, 2).step, 1.0 / (2.0 * e.l));
    assert!((e.epoch(v0, epochs, 2).radius - (2.0 * v0 / (4.0 * e.mu)).sqrt()).abs() < 1e-12);
    let counted = Counted::new(tiny(2));
    let mut alg = BoRep::new(BoRepConfig { params, batches: BatchSizes::full(), seed: 0 }).unwrap();
    alg.init(&counted, &x0, &y0).unwrap();
    alg.step(&counted).unwrap();
    assert_eq!(counted.counts().grad_y_g, 1 + epochs as u64 * t_s);
    // y after step 0 is y_0 (the refinement; the first refresh is at k = I > 0 only if I > 1).
    if params.period > 1 {
        let mut ys = vec![0.0; p.dim_y()];
        p.exact().unwrap().y_star(&x0, &mut ys);
        let err: f64 = ys.iter().zip(&alg.iterates().y).map(|(a, b)| (a - b).powi(2)).sum::<f64>().sqrt();
        assert!(err <= e.epsilon / (8.0 * e.k0), "‖y_0 − y*(x_0)‖ = {err:e} > ε/(8K0)");
    } else {
        // Theory on full batches: I = 1; run the refinement alone to check Lemma 3.2.
        let init_only = BoRepParams { period: usize::MAX, ..params };
        let mut alg = BoRep::new(BoRepConfig { params: init_only, batches: BatchSizes::full(), seed: 0 }).unwrap();
        alg.init(&p, &x0, &y0).unwrap();
        alg.step(&p).unwrap();
        let mut ys = vec![0.0; p.dim_y()];
        p.exact().unwrap().y_star(&x0, &mut ys);
        let err: f64 = ys.iter().zip(&alg.iterates().y).map(|(a, b)| (a - b).powi(2)).sum::<f64>().sqrt();
        assert!(
            err <= e.epsilon / (8.0 * e.k0),
            "‖y_0 − y*(x_0)‖ = {err:e} > ε/(8K0) = {:e}",
            e.epsilon / (8.0 * e.k0)
        );
    }
}

/// (c) The same seed gives the same trace, bit for bit, with 1 and 2 rayon threads (mini-batches
/// and full batches); another seed gives other iterates.
#[test]
fn same_seed_same_trace_with_one_or_two_threads() {
    let p = tiny(1);
    let base = BoRepParams::structural(1.0 / p.constants().l_g.unwrap(), 10);
    let run_with = |threads: usize, cfg: BoRepConfig| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| {
            let (t, x) = run_bo_rep(1, cfg, 300, 1);
            (rows_key(&t), x)
        })
    };
    for batches in [BatchSizes::all(2), BatchSizes::full()] {
        let cfg = BoRepConfig { params: base, batches, seed: 9 };
        assert_eq!(run_with(1, cfg), run_with(2, cfg), "{batches:?}");
    }
    let cfg = BoRepConfig { params: base, batches: BatchSizes::all(2), seed: 9 };
    assert_ne!(run_with(1, cfg).1, run_with(1, BoRepConfig { seed: 10, ..cfg }).1);
}

/// Mean over `seeds` of the final (relative error, ‖∇L‖).
fn mean_final(cfg: BoRepConfig, iters: usize, seeds: u64) -> (f64, f64) {
    let (mut rel, mut grad) = (0.0, 0.0);
    for s in 0..seeds {
        let (t, _) = run_bo_rep(0, BoRepConfig { seed: s, ..cfg }, iters, iters);
        // A run that ends above its start (the broken variant) is NoProgress, still measured.
        let ok = matches!(t.stop, bilevel_solvers::StopReason::MaxIters | bilevel_solvers::StopReason::NoProgress);
        assert!(ok, "seed {s}: {:?}", t.failure);
        let r = t.rows.last().unwrap();
        rel += r.rel_error.unwrap() / seeds as f64;
        grad += r.grad_norm.unwrap() / seeds as f64;
    }
    (rel, grad)
}

/// (d) On the stochastic quadratic (tiny preset: d_x = 4, d_y = 8, n_g = 32, κ_g = 10, L_g = 1,
/// per-sample L = 8.71, L_L = 1.08), batches of 16, the experiments' I = 2, N = 3, R = 0.5 with
/// β = 0.99, η = 0.001, γ = ν = 0.1 (≈ 1/L per-sample) and 10 plain SGD initialization steps:
/// after 5000 iterations the mean over 4 sample seeds of the relative error is below 2e-2 and of
/// ‖∇L‖ below 0.15 (‖∇L(x_0)‖ = 1.26), and the same run without the periodic lower-level updates
/// (I = ∞: y stays at the initialization) is at least 10 times worse in relative error.
#[test]
fn periodic_updates_make_it_converge_on_the_stochastic_quadratic() {
    let mut params = BoRepParams::structural(1.0 / 1.0, 10);
    (params.beta, params.eta, params.gamma, params.nu) = (0.99, 1e-3, 0.1, 0.1);
    let cfg = BoRepConfig { params, batches: BatchSizes::all(16), seed: 0 };
    let (rel, grad) = mean_final(cfg, 5000, 4);
    let broken = BoRepConfig { params: BoRepParams { period: usize::MAX, ..params }, ..cfg };
    let (rel_broken, grad_broken) = mean_final(broken, 5000, 4);
    eprintln!("BO-REP: rel {rel:e}, ‖∇L‖ {grad:e}; without updates: rel {rel_broken:e}, ‖∇L‖ {grad_broken:e}");
    assert!(rel < 2e-2 && grad < 0.15, "BO-REP: rel {rel:e}, ‖∇L‖ {grad:e}");
    assert!(rel_broken > 10.0 * rel, "without updates {rel_broken:e} vs BO-REP {rel:e}");
}

/// The registry builds `bo-rep` under the default rule (its parameters with their sources; every
/// outer step of length η = 0.01) and under the experiments rule on the
/// paper's problems only; the theory rule refuses, naming the noise levels it needs bounded.
#[test]
fn registry_builds_each_rule() {
    let p = tiny(0);
    let c = Constants::new(p.constants());
    let x0 = p.x0(1);
    let ctx = Context { problem: &p, family: "stochastic_quadratic", constants: &c, x0: &x0 };
    let settings = Settings::default();
    let (mut alg, params) = build(StepRule::Default, &ctx, &settings).unwrap();
    assert_eq!(alg.name(), "bo-rep");
    assert!(params.get("outer_step").is_some() && params.real("momentum") == Some(0.9));
    alg.init(&p, &x0, &vec![0.0; p.dim_y()]).unwrap();
    let x_before = alg.iterates().x.clone();
    alg.step(&p).unwrap();
    // The first step has the length η.
    let moved: Vec<f64> = alg.iterates().x.iter().zip(&x_before).map(|(a, b)| a - b).collect();
    assert!((bilevel_kernels::ops::norm2(&moved) - 0.01).abs() < 1e-12, "{moved:?}");
    let theory = build(StepRule::Theory, &ctx, &settings).err().unwrap().to_string();
    assert!(theory.contains("σ_{f,1}"), "{theory}");
    assert!(build(StepRule::Experiments, &ctx, &settings).is_err());
    let meta = Context { family: "meta_learning", ..ctx };
    let (_, params) = build(StepRule::Experiments, &meta, &settings).unwrap();
    assert_eq!(
        (params.real("inner_step"), params.real("adjoint_step"), params.real("outer_step")),
        (Some(0.001), Some(0.01), Some(0.01))
    );
}

/// Π onto the ball B(c, r), written out here.
fn ball(y: &mut [f64], c: &[f64], r: f64) {
    let d: f64 = y.iter().zip(c).map(|(a, b)| (a - b).powi(2)).sum::<f64>().sqrt();
    if d > r {
        y.iter_mut().zip(c).for_each(|(a, b)| *a = b + (*a - b) * r / d);
    }
}

/// `steps` projected full-batch gradient steps of size `step` on B(y, radius) from y: the
/// iterates y^1..y^steps.
fn projected_gd(p: &dyn BilevelProblem, x: &[f64], y: &[f64], steps: usize, step: f64, radius: f64) -> Vec<Vec<f64>> {
    let (mut cur, mut g, mut out) = (y.to_vec(), vec![0.0; y.len()], Vec::new());
    for _ in 0..steps {
        p.grad_y_g(x, &cur, Batch::Full, &mut g);
        cur.iter_mut().zip(&g).for_each(|(a, b)| *a -= step * b);
        ball(&mut cur, y, radius);
        out.push(cur.clone());
    }
    out
}

fn mean(v: &[Vec<f64>]) -> Vec<f64> {
    (0..v[0].len()).map(|i| v.iter().map(|y| y[i]).sum::<f64>() / v.len() as f64).collect()
}

fn dist(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(a, b)| (a - b).powi(2)).sum::<f64>().sqrt()
}

/// Algorithm 2 (UpdateLower) returns ȳ = (1/N) Σ_{t=1..N} y^t of its projected steps at x_k, not
/// the last iterate y^N (which this test tells apart from ȳ).
#[test]
fn update_lower_returns_the_average_of_its_iterates() {
    let p = tiny(5);
    let (n, r) = (6usize, 0.2);
    let gamma = 1.0 / p.constants().l_g.unwrap();
    let mut params = BoRepParams::structural(gamma, 0);
    (params.period, params.lower_steps, params.radius, params.init) = (1, n, r, InitRefinement::None);
    let mut alg = BoRep::new(BoRepConfig { params, batches: BatchSizes::full(), seed: 0 }).unwrap();
    alg.init(&p, &p.x0(1), &vec![0.0; p.dim_y()]).unwrap();
    alg.step(&p).unwrap(); // k = 0: no update
    for k in 1..4 {
        let (x, y) = (alg.iterates().x.clone(), alg.iterates().y.clone());
        alg.step(&p).unwrap();
        let iterates = projected_gd(&p, &x, &y, n, gamma, r);
        let (avg, last) = (mean(&iterates), iterates.last().unwrap().clone());
        let got = &alg.iterates().y;
        assert!(dist(got, &avg) <= 1e-13 * ops::norm2(&avg).max(1.0), "k = {k}: {got:?} vs ȳ {avg:?}");
        assert!(dist(&avg, &last) > 1e-3 * ops::norm2(&avg), "k = {k}: ȳ and y^N too close to tell apart");
    }
}

/// Algorithm 3 (Epoch-SGD) with σ > 0: T_s and α_s of (29)–(30) with their noise terms, balls of
/// (28) around each epoch's start, and each epoch's start the mean of the previous epoch's
/// iterates (line 6) — replayed here with full-batch gradients (σ enters the schedule only), so
/// the iterates are deterministic; 1 + Σ_s T_s ∂y g calls. The last iterate in place of the mean
/// fails.
#[test]
fn epoch_sgd_with_noise_follows_its_schedule_and_returns_the_mean() {
    let p = tiny(6);
    let k = p.constants();
    let (mu, l) = (k.mu_g.unwrap(), k.l_g.unwrap());
    let (x0, y0) = (p.x0(1), vec![0.0; p.dim_y()]);
    let mut g = vec![0.0; p.dim_y()];
    p.grad_y_g(&x0, &y0, Batch::Full, &mut g);
    let v0 = ops::norm_sq(&g) / (2.0 * mu);
    // k† = 2 epochs (so the last one does not wash out how the first ended), and σ such that
    // (29)'s noise term is 3 × 16L/µ in epoch 1.
    let (k0, delta) = (1.0, 0.1);
    let epsilon = (128.0 * k0 * k0 * v0 / (mu * 3.0)).sqrt();
    let epochs = ((128.0 * k0 * k0 * v0 / (mu * epsilon * epsilon)).log2().ceil() as usize).max(1);
    assert_eq!(epochs, 2);
    let lam = |a: f64| (3.0 * a.ln()).sqrt().max(a.ln());
    let sigma = (3.0 * 16.0 * l * v0 / (128.0 * 4.0 * lam(2.0 * 2.0 / delta).powi(2) * 2.0)).sqrt();
    let e = bilevel_solvers::algorithms::bo_rep::EpochSchedule { mu, l, sigma, k0, epsilon, delta };
    assert_eq!(e.epochs(v0), epochs);
    let a = 2.0 * epochs as f64 / delta;
    let lambda = (3.0 * a.ln()).sqrt().max(a.ln());
    let (mut y, mut total, mut noisy) = (y0.clone(), 0u64, false);
    let mut last = y0.clone();
    for s in 0..epochs {
        let scale = 0.5f64.powi(s as i32);
        let noise = 32.0 * (sigma * sigma).max(4.0 * lambda * lambda * sigma * sigma) / (mu * v0 * scale / 4.0);
        let t_s = (16.0 * l / mu).max(noise).ceil() as usize;
        noisy |= noise > 16.0 * l / mu;
        let alpha = (1.0 / (2.0 * l)).min((v0 * scale / (2.0 * mu * t_s as f64)).sqrt() / sigma);
        let radius = (2.0 * v0 * scale / mu).sqrt();
        let ep = e.epoch(v0, epochs, s);
        assert_eq!(ep.steps, t_s, "T_{s}");
        assert!((ep.step - alpha).abs() <= 1e-14 * alpha && (ep.radius - radius).abs() <= 1e-14 * radius, "s = {s}");
        let iterates = projected_gd(&p, &x0, &y, t_s, alpha, radius);
        last = iterates.last().unwrap().clone();
        y = mean(&iterates);
        total += t_s as u64;
    }
    assert!(noisy && total < 100_000, "the noise term must bind: Σ T_s = {total}");
    let mut params = BoRepParams::structural(1.0 / l, 0);
    params.init = InitRefinement::Epochs(e);
    let counted = Counted::new(tiny(6));
    let mut alg = BoRep::new(BoRepConfig { params, batches: BatchSizes::full(), seed: 0 }).unwrap();
    alg.init(&counted, &x0, &y0).unwrap();
    alg.step(&counted).unwrap();
    assert_eq!(counted.counts().grad_y_g, 1 + total);
    // y_0 after the refinement (step 0 does not update y, k = 0). The solver keeps a running
    // mean, this test sums: rounding differs over Σ T_s steps, far below the mean–last gap.
    let got = &alg.iterates().y;
    assert!(dist(got, &y) <= 1e-9 * ops::norm2(&y), "{got:?} vs {y:?}");
    assert!(dist(&last, &y) > 1e-4 * ops::norm2(&y), "the mean and the last iterate coincide: {}", dist(&last, &y));
}
