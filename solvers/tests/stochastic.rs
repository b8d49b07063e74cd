//! The stochastic AID loop and stocBiO on the finite-sum quadratic: the Neumann estimator's
//! mean against its closed form, full and whole-epoch batches against the deterministic
//! iterates, per-iteration sample counts, seeds and threads, and convergence against a
//! deliberately broken variant.

use bilevel_data::stochastic_quadratic::{generate, Config, StochasticQuadratic};
use bilevel_kernels::{Batch, BilevelProblem, Counted};
use bilevel_solvers::algorithms::{self, aid, Settings};
use bilevel_solvers::estimators::{AdjointSolver, Aid, AidConfig, AidStreams};
use bilevel_solvers::{
    constants, run, BatchSizes, BatchStream, Context, Overrides, Sampling, StepRule, StopRule, Trace,
};
use std::ops::ControlFlow;

fn problem(seed: u64) -> StochasticQuadratic {
    generate(&Config::preset("tiny").unwrap(), seed).unwrap()
}

/// `name` on the problem of `seed` from its x0(1), y0 = 0, with the experiments' steps.
fn solve(seed: u64, name: &str, settings: &Settings, iters: usize) -> Trace {
    let p = problem(seed);
    let x0 = p.x0(1);
    run_on(p, x0, name, settings, iters)
}

fn run_on<P: BilevelProblem>(p: P, x0: Vec<f64>, name: &str, settings: &Settings, iters: usize) -> Trace {
    let y0 = vec![0.0; p.dim_y()];
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

/// A trace without its wall times.
fn strip(rows: &[bilevel_solvers::TraceRow]) -> Vec<(usize, bilevel_kernels::OracleCounts, [Option<f64>; 3])> {
    rows.iter().map(|r| (r.iteration, r.counts, [r.rel_error, r.grad_norm, r.y_error])).collect()
}

fn mini(b: usize, seed: u64) -> Settings {
    Settings { batches: BatchSizes::all(b), seed, ..Settings::default() }
}

#[test]
fn the_neumann_estimators_mean_is_its_closed_form() {
    // Hessian batches only (∂y f and the cross product on full batches): E v_Q =
    // η Σ_{k=0..Q} (I − ηH̄)^k ∂y f, since the per-term batches are independent.
    let p = problem(3);
    let (dx, dy) = (p.dim_x(), p.dim_y());
    let (x, y): (Vec<f64>, Vec<f64>) = (p.x0(2), (0..dy).map(|i| (i as f64).cos()).collect());
    let (q, eta) = (6, 1.0 / p.constants().l_g_sample.unwrap());
    let config = AidConfig { solver: AdjointSolver::Neumann { step: eta }, steps: q, warm_start: false };
    let mut fy = vec![0.0; dy];
    p.grad_y_f(&x, &y, Batch::Full, &mut fy);
    let (mut want, mut term, mut hv) = (fy.clone(), fy.clone(), vec![0.0; dy]);
    for _ in 0..q {
        p.hvp(&x, &y, &term, Batch::Full, &mut hv);
        term.iter_mut().zip(&hv).for_each(|(t, h)| *t -= eta * h);
        want.iter_mut().zip(&term).for_each(|(w, t)| *w += t);
    }
    want.iter_mut().for_each(|w| *w *= eta);
    let n_g = p.n_samples_g();
    let mut streams = AidStreams {
        hvp: BatchStream::new(n_g, Some(2), Sampling::Replacement, 9, 2, 2).unwrap(),
        ..AidStreams::full()
    };
    let mut aid = Aid::new(config, dx, dy).unwrap();
    let (m, mut g) = (4000, vec![0.0; dx]);
    let (mut sum, mut sq) = (vec![0.0; dy], vec![0.0; dy]);
    for _ in 0..m {
        aid.estimate_sampled(&p, &x, &y, &mut streams, &mut g).unwrap();
        for ((s, s2), v) in sum.iter_mut().zip(&mut sq).zip(aid.adjoint()) {
            *s += v;
            *s2 += v * v;
        }
    }
    let mut worst: f64 = 0.0;
    for i in 0..dy {
        let mean = sum[i] / m as f64;
        let se = ((sq[i] / m as f64 - mean * mean).max(0.0) / m as f64).sqrt();
        assert!(se > 0.0, "the estimate is random");
        worst = worst.max((mean - want[i]).abs() / se);
    }
    assert!(worst < 5.0, "largest deviation {worst:.2} standard errors");
}

#[test]
fn full_and_whole_epoch_batches_give_the_deterministic_iterates() {
    let p = problem(4);
    // The sampler is what is tested: the steps are set by hand, the same on full batches and on
    // batches of every sample (the default rule's mini-batch steps differ from its full-batch
    // ones).
    let k = p.constants();
    let fixed = Settings {
        inner_steps: Some(10),
        adjoint_steps: Some(10),
        inner_step: Some(1.0 / k.l_g.unwrap()),
        adjoint_step: Some(1.0 / k.l_g_sample.unwrap()),
        outer_step: Some(1.0 / k.l_outer.unwrap()),
        explicit_batches: [true; 4],
        ..Settings::default()
    };
    for name in ["amigo-gd", "amigo-cg", "aid-n", "stocbio"] {
        let det = solve(4, name, &fixed, 30);
        // Full-batch streams: the same code path as the deterministic run, the same bits.
        let full = solve(4, name, &Settings { seed: 77, ..fixed }, 30);
        assert_eq!(strip(&det.rows), strip(&full.rows), "{name}");
        // Epoch batches of every sample: each batch is a permutation of all samples, so every
        // oracle is the full-batch one up to the order of summation (rounding).
        let (n_f, n_g) = (p.n_samples_f(), p.n_samples_g());
        let batches = BatchSizes {
            inner: Some(n_g),
            outer: Some(n_f),
            hvp: Some(n_g),
            cross: Some(n_g),
            sampling: Sampling::Epochs,
        };
        let epochs = solve(4, name, &Settings { batches, seed: 5, ..fixed }, 30);
        let (a, b) = (det.last().rel_error.unwrap(), epochs.last().rel_error.unwrap());
        assert!((a - b).abs() <= 1e-9 * a.abs().max(1e-12), "{name}: {a} vs {b}");
    }
}

#[test]
fn samples_per_iteration_follow_the_papers_formulas() {
    let p = problem(5);
    let (t, q, s, d_f, b, d_g) = (4, 5, 3, 2, 6, 7);
    let batches = BatchSizes { inner: Some(s), outer: Some(d_f), hvp: Some(b), cross: Some(d_g), ..BatchSizes::full() };
    // Per-oracle batches set by hand (`--batch-size-hvp` ...): no rule raises them.
    let settings = Settings {
        inner_steps: Some(t),
        adjoint_steps: Some(q),
        batches,
        explicit_batches: [true; 4],
        ..Settings::default()
    };
    let k = 9;
    let last = solve(5, "stocbio", &settings, k).last().counts;
    // Paper 002 Alg. 2: T·S samples of ∇G, D_F for ∇x F and ∇y F (the same batch), Q Hessian
    // batches of B, one D_G; per outer iteration.
    let per = |c: u64| c as usize / k;
    assert_eq!(
        (per(last.grad_y_g), per(last.hvp), per(last.cross), per(last.grad_x_f), per(last.grad_y_f)),
        (t, q, 1, 1, 1)
    );
    assert_eq!(last.samples_g as usize, k * (t * s + q * b + d_g));
    // ∂x F reads ∂y F's D_F at the same point: its samples count once (Gc(F) = K·D_f).
    assert_eq!(last.samples_f as usize, k * d_f);
    // AmIGO-GD (paper 000 Alg. 1–3): T batches D_g, D_f for both partials of f, a fresh D_gyy
    // per adjoint step (N of them), D_gxy; AmIGO-CG: one Hessian batch per CG call (N HVPs,
    // N + 1 once v is warm).
    let amigo = solve(5, "amigo-gd", &settings, k).last().counts;
    assert_eq!(amigo.samples_g as usize, k * (t * s + q * b + d_g));
    assert_eq!((amigo.samples_f as usize, amigo.hvp as usize), (k * d_f, k * q));
    let cg = solve(5, "amigo-cg", &settings, k);
    let (iters, c) = (cg.last().iteration, cg.last().counts);
    assert!(c.hvp as usize <= iters * (q + 1), "{:?} {c:?}", cg.stop);
    assert_eq!(c.samples_g as usize, iters * (t * s + d_g) + c.hvp as usize * b, "{:?} {:?}", cg.stop, cg.failure);
    // Prop. 3's sizes by the Neumann solver's labels: |B_i| = ⌈B·Q·(1−ημ)^(Q−i)⌉, B_Q the largest.
    let sizes = aid::neumann_batch_sizes(b, q, 0.5, 0.4).unwrap();
    assert_eq!(sizes[q - 1], b * q);
    assert!(sizes.windows(2).all(|w| w[0] <= w[1]) && sizes[0] == (30.0 * 0.8f64.powi(4)).ceil() as usize);
    let decayed = solve(5, "stocbio", &Settings { neumann_decay: true, ..settings }, k).last().counts;
    let c =
        constants::resolve(&p, &p.x0(1), &[0.0; 8], &[bilevel_solvers::Constant::MuG], &Overrides::default()).unwrap();
    // The default rule's Neumann step on mini-batches: η = 1/L_max.
    let eta = 1.0 / c.known.l_g_sample.unwrap();
    let hvp_samples: usize = aid::neumann_batch_sizes(b, q, eta, c.mu_g().unwrap()).unwrap().iter().sum();
    assert_eq!(decayed.samples_g as usize, k * (t * s + hvp_samples + d_g));
}

#[test]
fn the_same_seed_gives_the_same_trace_with_one_or_two_threads() {
    let traces: Vec<Vec<_>> = [1, 2, 1]
        .iter()
        .map(|&threads| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| solve(6, "stocbio", &mini(4, 11), 40).rows)
        })
        .collect();
    assert_eq!(strip(&traces[0]), strip(&traces[1]));
    assert_eq!(strip(&traces[0]), strip(&traces[2]));
    let other = solve(6, "stocbio", &mini(4, 12), 40);
    assert_ne!(strip(&traces[0]), strip(&other.rows), "another seed draws other batches");
}

/// The stochastic quadratic whose batches can only reach its first `n_g` lower-level samples: a
/// biased sampler (the exact references stay the true problem's).
struct Biased {
    p: StochasticQuadratic,
    n_g: usize,
}

impl BilevelProblem for Biased {
    fn dim_x(&self) -> usize {
        self.p.dim_x()
    }
    fn dim_y(&self) -> usize {
        self.p.dim_y()
    }
    fn n_samples_f(&self) -> usize {
        self.p.n_samples_f()
    }
    fn n_samples_g(&self) -> usize {
        self.n_g
    }
    bilevel_kernels::forward_derivatives!(p);
    fn exact(&self) -> Option<&dyn bilevel_kernels::ExactReference> {
        self.p.exact()
    }
}

#[test]
fn stocbio_and_stochastic_amigo_converge_to_a_floor_set_by_the_batch_and_a_biased_sampler_does_not() {
    // Constant steps (paper 000 §5.1's 1/L) on mini-batches converge to a noise floor that
    // shrinks with the batch size. Mean over three problem seeds of the relative error after
    // 400 iterations, from x0(1).
    let error = |t: Trace| t.last().rel_error.unwrap();
    let mean = |f: &dyn Fn(u64) -> f64| (0..3u64).map(f).sum::<f64>() / 3.0;
    let start = |s: u64| problem(20 + s).x0(1);
    // One outer step, 1/(2L_L), at both batch sizes (the default's 1/(2ℒ_L(b)) is smaller at
    // B = 8): the floors are compared at the same step.
    let pinned = |b: usize, s: u64| {
        let l = problem(20 + s).constants().l_outer.unwrap();
        Settings { outer_step: Some(0.5 / l), ..mini(b, s) }
    };
    let at =
        |name: &'static str, b: usize| mean(&|s| error(run_on(problem(20 + s), start(s), name, &pinned(b, s), 400)));
    let (stocbio8, stocbio32, amigo8, amigo32) =
        (at("stocbio", 8), at("stocbio", 32), at("amigo-gd", 8), at("amigo-gd", 32));
    // Broken: every lower-level batch drawn from the first 8 of the 32 samples.
    let biased =
        mean(&|s| error(run_on(Biased { p: problem(20 + s), n_g: 8 }, start(s), "stocbio", &mini(32, s), 400)));
    eprintln!(
        "mean rel_error after 400 iterations: stocBiO B=8 {stocbio8:.3e}, B=32 {stocbio32:.3e}; \
         AmIGO-GD B=8 {amigo8:.3e}, B=32 {amigo32:.3e}; biased {biased:.3e}"
    );
    assert!(stocbio32 < 0.1 && amigo32 < 0.1, "stocBiO {stocbio32:.3e}, AmIGO {amigo32:.3e}");
    assert!(stocbio32 < 0.5 * stocbio8 && amigo32 < 0.5 * amigo8, "the floor falls with the batch");
    // Measured 15× with the per-sample strongly convex samples (their + µI makes the first 8
    // samples' mean closer to the full one than rank-one samples): 10× stated.
    assert!(biased > 10.0 * stocbio32, "biased {biased:.3e} vs stocBiO {stocbio32:.3e}");
}

#[test]
fn stochastic_bsgm_follows_theorem_16s_schedule_and_converges() {
    // Single-sample lower-level and linear-system steps (the paper's form), J_s = t_s.
    let single = |seed: u64, horizon: Option<usize>| Settings {
        batches: BatchSizes { inner: Some(1), hvp: Some(1), ..BatchSizes::full() },
        c3: Some(2.0),
        seed,
        horizon,
        ..Settings::default()
    };
    // Not full batches in name only: a BatchSizes with every entry None is the deterministic
    // BSGM, so give the schedule's batches through `inner`/`hvp` as above.
    let k = 6;
    let last = solve(7, "bsgm", &single(1, None), k).last().counts;
    // The default rule floors t_s = k_s (not J_s) at the cold start's time constant m.
    let m = {
        let p = problem(7);
        let (x0, y0) = (p.x0(1), vec![0.0; p.dim_y()]);
        let settings = single(1, None);
        let need = algorithms::needs("bsgm", StepRule::Default, &settings).unwrap();
        let c = constants::resolve(&p, &x0, &y0, &need, &Overrides::default()).unwrap();
        let ctx = Context { problem: &p, family: "", constants: &c, x0: &x0 };
        algorithms::build("bsgm", StepRule::Default, &ctx, &settings).unwrap().params.count("min_steps").unwrap()
    };
    assert!(m > 1);
    // Iteration s: J_s = ⌈2(s+1)⌉ = 2(s+1), t_s = k_s = max(J_s, m); ζ samples: t_s (map) + k_s
    // (VJPs in w) + J_s (∂λΦ); ξ samples: J_s, read by ∇wE and ∇λE at one point (counted once,
    // paper 001's proof of Thm 16).
    let j: usize = (0..k).map(|s| 2 * (s + 1)).sum();
    let t: usize = (0..k).map(|s| (2 * (s + 1)).max(m)).sum();
    assert_eq!(last.samples_g as usize, 2 * t + j);
    assert_eq!(last.samples_f as usize, j);
    assert_eq!((last.grad_y_g as usize, last.hvp as usize, last.cross as usize), (t, t, k));
    // The finite horizon: ⌈c₃S⌉ every iteration (floored at m).
    let fixed = solve(7, "bsgm", &single(1, Some(10)), k).last().counts;
    assert_eq!(fixed.grad_y_g as usize, k * 20usize.max(m));
    // Convergence over three seeds, against the biased sampler.
    let x0 = |s: u64| problem(30 + s).x0(1);
    let mean = |f: &dyn Fn(u64) -> f64| (0..3u64).map(f).sum::<f64>() / 3.0;
    let ok = mean(&|s| run_on(problem(30 + s), x0(s), "bsgm", &single(s, None), 150).last().rel_error.unwrap());
    let biased = mean(&|s| {
        run_on(Biased { p: problem(30 + s), n_g: 8 }, x0(s), "bsgm", &single(s, None), 150).last().rel_error.unwrap()
    });
    eprintln!("stochastic BSGM after 150 iterations: rel_error {ok:.3e}, biased sampler {biased:.3e}");
    assert!(ok < 0.1, "{ok}");
    assert!(biased > 4.0 * ok, "biased {biased:.3e} vs {ok:.3e}");
}

/// A problem that records the batch size of every HVP, in call order.
struct RecordingHvp {
    p: StochasticQuadratic,
    sizes: std::sync::Mutex<Vec<usize>>,
}

impl BilevelProblem for RecordingHvp {
    fn dim_x(&self) -> usize {
        self.p.dim_x()
    }
    fn dim_y(&self) -> usize {
        self.p.dim_y()
    }
    fn n_samples_f(&self) -> usize {
        self.p.n_samples_f()
    }
    fn n_samples_g(&self) -> usize {
        self.p.n_samples_g()
    }
    fn f(&self, x: &[f64], y: &[f64], batch: bilevel_kernels::Batch<'_>) -> f64 {
        self.p.f(x, y, batch)
    }
    fn g(&self, x: &[f64], y: &[f64], batch: bilevel_kernels::Batch<'_>) -> f64 {
        self.p.g(x, y, batch)
    }
    fn grad_x_f(&self, x: &[f64], y: &[f64], batch: bilevel_kernels::Batch<'_>, out: &mut [f64]) {
        self.p.grad_x_f(x, y, batch, out)
    }
    fn grad_y_f(&self, x: &[f64], y: &[f64], batch: bilevel_kernels::Batch<'_>, out: &mut [f64]) {
        self.p.grad_y_f(x, y, batch, out)
    }
    fn grad_y_g(&self, x: &[f64], y: &[f64], batch: bilevel_kernels::Batch<'_>, out: &mut [f64]) {
        self.p.grad_y_g(x, y, batch, out)
    }
    fn cross(&self, x: &[f64], y: &[f64], v: &[f64], batch: bilevel_kernels::Batch<'_>, out: &mut [f64]) {
        self.p.cross(x, y, v, batch, out)
    }
    fn hvp(&self, x: &[f64], y: &[f64], v: &[f64], batch: bilevel_kernels::Batch<'_>, out: &mut [f64]) {
        self.sizes.lock().unwrap().push(batch.len(self.p.n_samples_g()));
        self.p.hvp(x, y, v, batch, out)
    }
    fn constants(&self) -> bilevel_kernels::ProblemConstants {
        self.p.constants()
    }
}

/// Paper 002 Prop. 3: |B_{Q+1−j}| = ⌈B·Q·(1−ημ)^{j−1}⌉ and B_Q — the largest, present in Q of
/// the Q + 1 terms — is applied first. A recording problem sees the Hessian batches of one
/// outer step in application order: exactly the sizes the parameters report, decreasing from
/// B·Q (the reversed order, smallest first, fails).
#[test]
fn the_neumann_batches_reach_the_oracles_in_prop_3s_order() {
    let (b, q) = (3, 6);
    let p = RecordingHvp { p: problem(5), sizes: std::sync::Mutex::new(Vec::new()) };
    let x0 = p.p.x0(1);
    let y0 = vec![0.0; p.dim_y()];
    let batches = BatchSizes { hvp: Some(b), ..BatchSizes::all(4) };
    let settings = Settings { adjoint_steps: Some(q), batches, neumann_decay: true, ..Settings::default() };
    let need = algorithms::needs("stocbio", StepRule::Default, &settings).unwrap();
    let c = constants::resolve(&p, &x0, &y0, &need, &Overrides::default()).unwrap();
    let ctx = Context { problem: &p, family: "", constants: &c, x0: &x0 };
    let built = algorithms::build("stocbio", StepRule::Default, &ctx, &settings).unwrap();
    let bilevel_solvers::params::Value::Counts(reported) = built.params.get("neumann_batches").unwrap().value.clone()
    else {
        panic!("the parameters report the Neumann batches")
    };
    let mut alg = built.algorithm;
    alg.init(&p, &x0, &y0).unwrap();
    alg.step(&p).unwrap();
    let seen = p.sizes.lock().unwrap().clone();
    assert_eq!(seen, reported, "application order");
    assert_eq!(seen[0], b * q, "B_Q = B·Q is applied first");
    assert!(seen.windows(2).all(|w| w[0] >= w[1]) && seen[q - 1] < seen[0], "{seen:?}");
}
