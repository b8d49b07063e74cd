//! Every algorithm drives the quadratic's relative error below 1e-6 with the theory's step sizes
//! (paper 000 §5.1's target), warm starting the adjoint saves HVPs (AmIGO-CG vs AID-CG), and the
//! driver honours each budget, the observer and the CSV format.

use bilevel_data::quadratic::{generate, Config, QuadraticProblem};
use bilevel_kernels::{BilevelProblem, Counted, CountingConvention};
use bilevel_solvers::{
    run, AidBilevel, AidBilevelConfig, AidVariant, Algorithm, ItdBilevel, StepSizes, StopReason, StopRule,
};
use std::ops::ControlFlow;

fn problem(kappa: f64) -> Counted<QuadraticProblem> {
    Counted::new(
        generate(&Config { dim_x: 30, dim_y: 20, kappa_g: kappa, ..Config::preset("tiny").unwrap() }, 11).unwrap(),
    )
}

fn steps(p: &QuadraticProblem) -> StepSizes {
    // L_L = λ_max(A_f) for this quadratic (∇²L = A_f); L_g = λ_max(A_g).
    let (l_g, l) = (p.measured_g().l, p.measured_f().l);
    StepSizes { inner: 1.0 / l_g, adjoint: 1.0 / l_g, outer: 1.0 / l }
}

/// The test instance at κ_g = `kappa`, its step sizes, x0 of `seed` and y0 = 0.
fn setup(kappa: f64, seed: u64) -> (Counted<QuadraticProblem>, StepSizes, Vec<f64>, Vec<f64>) {
    let p = problem(kappa);
    let (s, x0) = (steps(p.inner()), p.inner().x0(seed));
    let y0 = vec![0.0; p.dim_y()];
    (p, s, x0, y0)
}

fn target(max_iters: usize) -> StopRule {
    StopRule { target_rel_error: Some(1e-6), ..StopRule::iterations(max_iters) }
}

const VARIANTS: [AidVariant; 8] = [
    AidVariant::AidBio,
    AidVariant::AmigoGd,
    AidVariant::AmigoCg,
    AidVariant::AidGd,
    AidVariant::AidCg,
    AidVariant::AidCgWs,
    AidVariant::AidFp,
    AidVariant::AidNeumann,
];

#[test]
fn every_algorithm_reaches_relative_error_1e_minus_6() {
    let (p, s, x0, y0) = setup(10.0, 1);
    for v in VARIANTS {
        // Without a warm start, a GD-type adjoint must be accurate on its own at every step:
        // (1 − 1/κ)^N small, N = 200 for κ = 10 (with N = 20 AID-GD stalls near 5e-4: the bias
        // of a truncated adjoint, as paper 000 §5.1 shows).
        let n = if matches!(v, AidVariant::AidGd | AidVariant::AidFp | AidVariant::AidNeumann) { 200 } else { 20 };
        let mut alg = AidBilevel::new(&format!("{v:?}"), AidBilevelConfig::variant(v, 20, n, s)).unwrap();
        let trace = run(&mut alg, &p, &x0, &y0, &target(3000), |_| ControlFlow::Continue(())).unwrap();
        assert_eq!(trace.stop, StopReason::Target, "{v:?}: {:?}", trace.last());
        assert!(trace.last().rel_error.unwrap() <= 1e-6);
    }
    // ITD differentiates through T steps: its bias is ~(1 − 1/κ)^T, so T = 200 for κ = 10.
    let mut itd = ItdBilevel::new(200, s).unwrap();
    let trace = run(&mut itd, &p, &x0, &y0, &target(3000), |_| ControlFlow::Continue(())).unwrap();
    assert_eq!(trace.stop, StopReason::Target, "ITD: {:?}", trace.last());
}

#[test]
fn warm_start_of_the_adjoint_saves_hvps() {
    // Paper 000 §5.1: with few adjoint steps per outer step, AmIGO-CG (warm-started z) needs
    // fewer HVPs than AID-CG (z from 0 every time). Compared at an accuracy both reach (AID-CG
    // with N = 8 CG steps stalls above 1e-6: the bias of a truncated cold adjoint), and AID-CG's
    // stall is checked too.
    let (p, s, x0, y0) = setup(1e3, 2);
    const N: usize = 20;
    let hvps_to = |v: AidVariant, tol: f64| {
        p.reset();
        let mut alg = AidBilevel::new("x", AidBilevelConfig::variant(v, 10, N, s)).unwrap();
        let stop = StopRule { target_rel_error: Some(tol), ..StopRule::iterations(3000) };
        let trace = run(&mut alg, &p, &x0, &y0, &stop, |_| ControlFlow::Continue(())).unwrap();
        (trace.stop == StopReason::Target).then(|| trace.last().counts.hvp)
    };
    let warm = hvps_to(AidVariant::AmigoCg, 1e-2).expect("AmIGO-CG reaches 1e-2");
    let cold = hvps_to(AidVariant::AidCg, 1e-2).expect("AID-CG reaches 1e-2");
    assert!(warm < cold, "warm {warm} HVPs vs cold {cold}");
    assert!(hvps_to(AidVariant::AmigoCg, 1e-6).is_some(), "AmIGO-CG reaches 1e-6");
    assert!(hvps_to(AidVariant::AidCg, 1e-3).is_none(), "AID-CG stalls above 1e-3");
}

#[test]
fn driver_budgets_observer_and_csv() {
    let (p, s, x0, y0) = setup(10.0, 3);
    let new = || AidBilevel::new("aid-cg", AidBilevelConfig::variant(AidVariant::AidCg, 5, 5, s)).unwrap();
    let t = run(&mut new(), &p, &x0, &y0, &StopRule::iterations(7), |_| ControlFlow::Continue(())).unwrap();
    assert_eq!((t.stop, t.rows.len()), (StopReason::MaxIters, 8));
    // Per iteration: 5 inner gradients, 5 HVPs (CG from 0 needs no H·x₀), 1 cross, 1 ∂x f, 1 ∂y f.
    let last = t.last();
    let c = last.counts;
    assert_eq!((c.grad_y_g, c.hvp, c.cross, c.grad_x_f, c.grad_y_f), (35, 35, 7, 7, 7));
    assert_eq!(c.grad_f(CountingConvention::PairedGradF), 7);
    assert_eq!(c.grad_f(CountingConvention::SeparateGradF), 14);
    assert!(t.rows.windows(2).all(|w| w[1].seconds >= w[0].seconds));
    let t =
        run(&mut new(), &p, &x0, &y0, &StopRule { max_oracle_calls: Some(50), ..StopRule::iterations(100) }, |_| {
            ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!(t.stop, StopReason::OracleBudget);
    assert!(t.last().total_calls() >= 50 && t.rows[t.rows.len() - 2].total_calls() < 50);
    let t = run(&mut new(), &p, &x0, &y0, &StopRule { time_limit_s: Some(0.0), ..StopRule::iterations(100) }, |_| {
        ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!((t.stop, t.rows.len()), (StopReason::TimeLimit, 1), "a zero time budget runs no step");
    let t = run(&mut new(), &p, &x0, &y0, &StopRule::iterations(100), |r| {
        if r.iteration == 3 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })
    .unwrap();
    assert_eq!((t.stop, t.rows.len()), (StopReason::Observer, 4));
    let mut csv = Vec::new();
    t.write_csv(&mut csv).unwrap();
    let csv = String::from_utf8(csv).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "iteration,seconds,grad_f,grad_x_f,grad_y_f,grad_g,hvp,cross,rel_error,grad_norm,y_error,value"
    );
    assert_eq!(lines.len(), 5);
    assert!(lines[1].starts_with("0,") && lines[1].split(',').count() == 12);
    // The relative error starts at 1 by definition and falls.
    let r0 = t.rows[0].rel_error.unwrap();
    assert!((r0 - 1.0).abs() < 1e-12 && t.last().rel_error.unwrap() < r0);
}

/// AmIGO-CG whose step `fail_at` returns an error (as a linear solver's breakdown would).
struct FailingAt {
    inner: AidBilevel,
    fail_at: usize,
    steps: usize,
}

impl Algorithm for FailingAt {
    fn name(&self) -> &str {
        "failing"
    }
    fn init(&mut self, p: &dyn BilevelProblem, x0: &[f64], y0: &[f64]) -> bilevel_kernels::Result<()> {
        self.inner.init(p, x0, y0)
    }
    fn step(&mut self, p: &dyn BilevelProblem) -> bilevel_kernels::Result<()> {
        self.steps += 1;
        if self.steps == self.fail_at {
            return Err(bilevel_kernels::KernelError::Breakdown { iteration: 0, reason: "test breakdown" });
        }
        self.inner.step(p)
    }
    fn iterates(&self) -> &bilevel_solvers::Iterates {
        self.inner.iterates()
    }
}

#[test]
fn a_run_that_diverges_or_fails_keeps_its_rows_and_says_why() {
    let (p, s, x0, y0) = setup(10.0, 4);
    let amigo =
        |s: StepSizes| AidBilevel::new("amigo-cg", AidBilevelConfig::variant(AidVariant::AmigoCg, 10, 10, s)).unwrap();
    // γ = 3/L_L on the quadratic (∇²L = A_f): the outer iteration expands by |1 − 3λ/L| up to 2
    // per step. The growth test stops it long before the iterates overflow, with every row kept.
    let big = StepSizes { outer: 3.0 * s.outer, ..s };
    let t = run(&mut amigo(big), &p, &x0, &y0, &StopRule::iterations(5000), |_| ControlFlow::Continue(())).unwrap();
    assert_eq!(t.stop, StopReason::Diverged, "{:?}", t.failure);
    assert!(t.failure.as_deref().is_some_and(|f| f.contains("grew past 100")), "{:?}", t.failure);
    let k = t.last().iteration;
    assert!(k < 100 && t.rows.len() == k + 1, "stopped at {k}");
    assert!(t.rows.iter().all(|r| r.grad_norm.is_some_and(f64::is_finite)));
    // With the test off, the same run goes on until its iterates are not finite: Diverged, the
    // rows up to the last finite iterate kept, no error returned.
    let off = StopRule { divergence_growth: None, ..StopRule::iterations(5000) };
    let t = run(&mut amigo(big), &p, &x0, &y0, &off, |_| ControlFlow::Continue(())).unwrap();
    assert_eq!(t.stop, StopReason::Diverged);
    assert!(
        t.failure.as_deref().is_some_and(|f| f.contains("not finite") || f.contains("non-finite")),
        "{:?}",
        t.failure
    );
    assert!(t.last().iteration > k, "ran past the growth test's stop");
    // The step sizes that converge are not stopped by the test (the other tests of this file run
    // with it on).
    let t = run(&mut amigo(s), &p, &x0, &y0, &target(2000), |_| ControlFlow::Continue(())).unwrap();
    assert_eq!(t.stop, StopReason::Target);
    // A step that fails: Failed, the message kept, the rows before it kept.
    let mut failing = FailingAt { inner: amigo(s), fail_at: 4, steps: 0 };
    let t = run(&mut failing, &p, &x0, &y0, &StopRule::iterations(100), |_| ControlFlow::Continue(())).unwrap();
    assert_eq!((t.stop, t.rows.len()), (StopReason::Failed, 4));
    assert!(t.failure.as_deref().is_some_and(|f| f.contains("step 4") && f.contains("test breakdown")));
    assert!(StopReason::Failed.is_failure() && !StopReason::Target.is_failure());
    // A growth factor that cannot work is refused before anything runs.
    let bad = StopRule { divergence_growth: Some(0.5), ..StopRule::iterations(10) };
    assert!(run(&mut amigo(s), &p, &x0, &y0, &bad, |_| ControlFlow::Continue(())).is_err());
}

#[test]
fn bad_configurations_are_typed_errors() {
    assert!(StepSizes { inner: 0.0, adjoint: 1.0, outer: 1.0 }.checked().is_err());
    assert!(StepSizes { inner: 1.0, adjoint: 1.0, outer: f64::INFINITY }.checked().is_err());
    let s = StepSizes { inner: 1.0, adjoint: 1.0, outer: 1.0 };
    let x0 = vec![0.0; 3];
    let y0 = vec![0.0; 2];
    assert!(AidBilevel::new("x", AidBilevelConfig::variant(AidVariant::AidCg, 0, 5, s)).is_err());
    assert!(AidBilevel::new("x", AidBilevelConfig::variant(AidVariant::AidCg, 5, 0, s)).is_err());
    assert!(ItdBilevel::new(0, s).is_err());
    // A starting point that does not match the problem is reported by init; a step before
    // init is an error, not a panic.
    let p = problem(10.0);
    let mut alg = AidBilevel::new("x", AidBilevelConfig::variant(AidVariant::AidCg, 5, 5, s)).unwrap();
    assert!(alg.step(&p).is_err());
    assert!(alg.init(&p, &x0, &y0).is_err());
    // A Neumann adjoint cannot be warm-started.
    let mut cfg = AidBilevelConfig::variant(AidVariant::AidNeumann, 5, 5, s);
    cfg.warm_start_v = true;
    assert!(AidBilevel::new("x", cfg).is_err());
}
