//! The solvers of `linsolve` do not allocate once built (`Cg::new` etc. allocate the workspace): a counting global
//! allocator records every allocation made by the current thread inside a marked region.
//!
//! Dimensions stay far below `par::PAR_MIN_LEN`, so no rayon task is spawned (rayon's first use
//! would allocate its pool), and the operators (`DenseSym`, `Diagonal`) do not allocate.

use bilevel_kernels::linop::{DenseGeneral, DenseSym, Diagonal};
use bilevel_kernels::linsolve::*;
use faer::{Mat, Par};
#[path = "support/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::count_allocations;

/// The Kac–Murdock–Szegő matrix ρ^|i−j| (SPD for |ρ| < 1, κ ≈ (1+ρ)/(1−ρ)).
fn kms(n: usize, rho: f64) -> DenseSym {
    DenseSym::new(Mat::from_fn(n, n, |i, j| rho.powi((i as i32 - j as i32).abs()))).unwrap()
}

fn rhs(n: usize) -> Vec<f64> {
    (0..n).map(|i| ((i * 7919) % 101) as f64 / 50.0 - 1.0).collect()
}

#[test]
fn counter_sees_allocations() {
    // The harness itself must work, or the zero counts below would prove nothing.
    let (v, count) = count_allocations(|| vec![1.0f64; 100]);
    assert_eq!(v.len(), 100);
    assert!(count >= 1);
}

/// CG built once: no allocation in a solve, whether it runs 1 or 50 iterations (rel_tol = 0 keeps
/// it running), plain and Jacobi-preconditioned, on a dense and a diagonal operator, cold and warm.
#[test]
fn cg_iterations_do_not_allocate() {
    let n = 64;
    let dense = kms(n, 0.99);
    let diag = Diagonal::new((0..n).map(|i| 1.0 + i as f64).collect()).unwrap();
    let b = rhs(n);
    for precond in [Preconditioner::None, Preconditioner::Jacobi] {
        let mut cg = Cg::new(n, CgParams::default().with_preconditioner(precond));
        for iters in [1, 50] {
            cg.params_mut().stopping = Stopping::fixed_steps(iters);
            let mut x = vec![0.0; n];
            let (rep, count) = count_allocations(|| cg.solve(&dense, &b, &mut x));
            assert_eq!(rep.unwrap().iterations, iters);
            assert_eq!(count, 0, "dense, {precond:?}, {iters} iterations");
            // Warm-started from the previous solution.
            let (rep, count) = count_allocations(|| cg.solve(&dense, &b, &mut x));
            rep.unwrap();
            assert_eq!(count, 0, "dense, warm, {precond:?}, {iters} iterations");
        }
        cg.params_mut().stopping = Stopping::default().with_rel_tol(1e-12);
        let mut x = vec![0.0; n];
        let (rep, count) = count_allocations(|| cg.solve(&diag, &b, &mut x));
        assert!(rep.unwrap().converged);
        assert_eq!(count, 0, "diagonal, {precond:?}");
    }
}

/// With a history, the only allocation is its buffer, reserved before iterating.
#[test]
fn cg_history_is_one_allocation_made_up_front() {
    let n = 64;
    let op = kms(n, 0.99);
    let b = rhs(n);
    for iters in [1, 50] {
        let mut cg = Cg::new(n, Stopping::fixed_steps(iters).with_history(true));
        let mut x = vec![0.0; n];
        let (rep, count) = count_allocations(|| cg.solve(&op, &b, &mut x));
        assert_eq!(rep.unwrap().history.unwrap().len(), iters + 1);
        assert_eq!(count, 1, "{iters} iterations");
    }
}

#[test]
fn other_solvers_do_not_allocate() {
    let n = 48;
    let op = kms(n, 0.8);
    let b = rhs(n);
    let l = 1.0 + 2.0 * 0.8 / 0.2; // ≥ λ_max of KMS(0.8): (1 + ρ)/(1 − ρ) = 9

    for iters in [1, 50] {
        let mut gd = Richardson::new(n, 1.0 / l, Stopping::fixed_steps(iters));
        let mut z = vec![0.0; n];
        let (rep, count) = count_allocations(|| gd.solve(&op, &b, &mut z));
        assert_eq!(rep.unwrap().iterations, iters);
        assert_eq!(count, 0, "Richardson, {iters} steps");
    }

    let list = [kms(n, 0.5), kms(n, 0.6), kms(n, 0.7)];
    for terms in [1, 50] {
        let mut neumann = Neumann::new(n, 1.0 / l, Stopping::fixed_steps(terms));
        let mut v = vec![0.0; n];
        let (rep, count) = count_allocations(|| neumann.solve(&op, &b, &mut v));
        assert_eq!(rep.unwrap().iterations, terms);
        assert_eq!(count, 0, "Neumann, {terms} terms");
    }
    let mut neumann = Neumann::new(n, 0.2, Stopping::fixed_steps(3));
    let mut v = vec![0.0; n];
    let (rep, count) = count_allocations(|| neumann.solve(OperatorList(&list), &b, &mut v));
    assert_eq!(rep.unwrap().iterations, 3);
    assert_eq!(count, 0, "stochastic Neumann");

    let mut truncation = RandomizedTruncation::new(n, l, 40);
    let mut out = vec![0.0; n];
    let (k, count) = count_allocations(|| truncation.solve(Repeated(&op), &b, 39, &mut out));
    k.unwrap();
    assert_eq!(count, 0, "truncation");

    // (I − Jᵀ) v = b with Jᵀ = 0.5·KMS(0.8)/‖·‖, a contraction.
    let jt = DenseGeneral::new(Mat::from_fn(n, n, |i, j| 0.5 * op.matrix()[(i, j)] / l), Par::Seq).unwrap();
    for iters in [1, 30] {
        let mut fp = FixedPoint::new(n, 1.0, Stopping::fixed_steps(iters));
        let mut v = vec![0.0; n];
        let (rep, count) = count_allocations(|| fp.solve(&jt, &b, &mut v));
        assert_eq!(rep.unwrap().iterations, iters);
        assert_eq!(count, 0, "fixed point, {iters} steps");

        // Restart 8 with up to 30 steps: several restarts.
        let mut gmres = Gmres::new(n, 8, Stopping::fixed_steps(iters));
        let mut v = vec![0.0; n];
        let system = IdentityMinus(&jt);
        let (rep, count) = count_allocations(|| gmres.solve(&system, &b, &mut v));
        rep.unwrap();
        assert_eq!(count, 0, "GMRES, {iters} steps");
    }

    // Through the object-safe trait: a boxed solver allocates nothing per solve either.
    let mut solvers: Vec<Box<dyn LinearSolver>> = vec![
        Box::new(Cg::new(n, Stopping::fixed_steps(10))),
        Box::new(Richardson::new(n, 1.0 / l, Stopping::fixed_steps(10))),
        Box::new(FixedPoint::new(n, 1.0 / l, Stopping::fixed_steps(10))),
        Box::new(Neumann::new(n, 1.0 / l, Stopping::fixed_steps(10))),
        Box::new(Gmres::new(n, 4, Stopping::fixed_steps(10))),
    ];
    for solver in &mut solvers {
        let mut x = vec![0.0; n];
        let (rep, count) = count_allocations(|| solver.solve(&op, &b, &mut x));
        rep.unwrap();
        assert_eq!(count, 0);
    }
}
