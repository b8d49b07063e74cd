//! The solvers of `linsolve` do not allocate once their workspace exists: a counting global
//! allocator records every allocation made by the current thread inside a marked region.
//!
//! Dimensions stay far below `par::PAR_MIN_LEN`, so no rayon task is spawned (rayon's first use
//! would allocate its pool), and the operators (`DenseSym`, `Diagonal`) do not allocate.

use bilevel_kernels::linop::{DenseGeneral, DenseSym, Diagonal};
use bilevel_kernels::linsolve::*;
use faer::{Mat, Par};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// Wraps the system allocator; counts allocations of the current thread while it is marked.
struct Counting;

thread_local! {
    static ACTIVE: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<usize> = const { Cell::new(0) };
}

fn note_allocation() {
    // `try_with`: never panic inside the allocator, even during thread teardown.
    if ACTIVE.try_with(Cell::get).unwrap_or(false) {
        let _ = COUNT.try_with(|c| c.set(c.get() + 1));
    }
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Runs `f` in a marked region; returns its result and the number of allocations it made.
fn count_allocations<R>(f: impl FnOnce() -> R) -> (R, usize) {
    COUNT.with(|c| c.set(0));
    ACTIVE.with(|a| a.set(true));
    let out = f();
    ACTIVE.with(|a| a.set(false));
    (out, COUNT.with(Cell::get))
}

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

/// CG with a workspace: no allocation, whether it runs 1 or 50 iterations (rel_tol = 0 keeps it
/// running), plain and Jacobi-preconditioned, on a dense and a diagonal operator.
#[test]
fn cg_iterations_do_not_allocate() {
    let n = 64;
    let dense = kms(n, 0.99);
    let diag = Diagonal::new((0..n).map(|i| 1.0 + i as f64).collect()).unwrap();
    let b = rhs(n);
    let mut ws = CgWorkspace::new(n);
    for precond in [Preconditioner::None, Preconditioner::Jacobi] {
        for iters in [1, 50] {
            let params = CgParams::default().with_rel_tol(0.0).with_max_iters(iters).with_preconditioner(precond);
            let mut x = vec![0.0; n];
            let (rep, count) = count_allocations(|| cg_solve_with_workspace(&dense, &b, &mut x, &params, &mut ws));
            assert_eq!(rep.unwrap().iterations, iters);
            assert_eq!(count, 0, "dense, {precond:?}, {iters} iterations");
        }
        let params = CgParams::default().with_rel_tol(1e-12).with_preconditioner(precond);
        let mut x = vec![0.0; n];
        let (rep, count) = count_allocations(|| cg_solve_with_workspace(&diag, &b, &mut x, &params, &mut ws));
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
    let mut ws = CgWorkspace::new(n);
    for iters in [1, 50] {
        let params = CgParams::default().with_rel_tol(0.0).with_max_iters(iters).with_history(true);
        let mut x = vec![0.0; n];
        let (rep, count) = count_allocations(|| cg_solve_with_workspace(&op, &b, &mut x, &params, &mut ws));
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

    let mut rws = RichardsonWorkspace::new(n);
    for iters in [1, 50] {
        let params = RichardsonParams::new(1.0 / l).with_max_iters(iters);
        let mut z = vec![0.0; n];
        let (rep, count) = count_allocations(|| richardson_solve_with_workspace(&op, &b, &mut z, &params, &mut rws));
        assert_eq!(rep.unwrap().iterations, iters);
        assert_eq!(count, 0, "Richardson, {iters} steps");
    }

    let mut nws = NeumannWorkspace::new(n);
    let list = [kms(n, 0.5), kms(n, 0.6), kms(n, 0.7)];
    for terms in [1, 50] {
        let params = NeumannParams::new(1.0 / l, terms);
        let mut v = vec![0.0; n];
        let (rep, count) = count_allocations(|| neumann_series_with_workspace(&op, &b, &mut v, &params, &mut nws));
        assert_eq!(rep.unwrap().iterations, terms);
        assert_eq!(count, 0, "Neumann, {terms} terms");
    }
    let params = NeumannParams::new(0.2, 3);
    let mut v = vec![0.0; n];
    let (rep, count) = count_allocations(|| {
        stochastic_neumann_with_workspace(&mut OperatorList(&list), &b, &mut v, &params, &mut nws)
    });
    assert_eq!(rep.unwrap().iterations, 3);
    assert_eq!(count, 0, "stochastic Neumann");

    let mut tws = TruncationWorkspace::new(n);
    let tparams = TruncationParams::new(l, 40);
    let mut out = vec![0.0; n];
    let (k, count) = count_allocations(|| {
        truncated_neumann_with_workspace(&mut Repeated(&op), &b, 39, &tparams, &mut out, &mut tws)
    });
    k.unwrap();
    assert_eq!(count, 0, "truncation");

    // (I − Jᵀ) v = b with Jᵀ = 0.5·KMS(0.8)/‖·‖, a contraction.
    let jt = DenseGeneral::new(Mat::from_fn(n, n, |i, j| 0.5 * op.matrix()[(i, j)] / l), Par::Seq).unwrap();
    let mut fws = FixedPointWorkspace::new(n);
    let mut gws = GmresWorkspace::new(n, 8);
    for iters in [1, 30] {
        let mut v = vec![0.0; n];
        let params = FixedPointParams::default().with_rel_tol(0.0).with_max_iters(iters);
        let (rep, count) = count_allocations(|| fixed_point_solve_with_workspace(&jt, &b, &mut v, &params, &mut fws));
        assert_eq!(rep.unwrap().iterations, iters);
        assert_eq!(count, 0, "fixed point, {iters} steps");

        // Restart 8 with up to 30 steps: several restarts.
        let mut v = vec![0.0; n];
        let params = GmresParams::default().with_restart(8).with_rel_tol(0.0).with_max_iters(iters);
        let system = IdentityMinus(&jt);
        let (rep, count) = count_allocations(|| gmres_solve_with_workspace(&system, &b, &mut v, &params, &mut gws));
        rep.unwrap();
        assert_eq!(count, 0, "GMRES, {iters} steps");
    }
}
