//! Tests of `bilevel_kernels::linsolve` against dense faer factorizations, closed forms and the
//! iteration bounds of the theory, on SPD matrices with a prescribed spectrum
//! (H = Q diag(λ) Qᵀ, Q orthogonal from the QR of a Gaussian matrix, λ log-spaced in [1/κ, 1]).

use bilevel_kernels::linop::{DenseGeneral, DenseSym, Diagonal, FaerOp, FnOp, Operator, SymmetricOperator};
use bilevel_kernels::linsolve::*;
use bilevel_kernels::KernelError;
use faer::linalg::solvers::Solve;
use faer::{Mat, MatRef, Par, Side};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use std::sync::atomic::{AtomicUsize, Ordering};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn rng(seed: u64) -> Xoshiro256PlusPlus {
    Xoshiro256PlusPlus::seed_from_u64(seed)
}

/// A standard normal draw (Box–Muller).
fn gaussian(rng: &mut impl Rng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>(); // (0, 1]
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

fn gaussian_vec(rng: &mut impl Rng, n: usize) -> Vec<f64> {
    (0..n).map(|_| gaussian(rng)).collect()
}

fn gaussian_mat(rng: &mut impl Rng, n: usize) -> Mat<f64> {
    let mut m = Mat::zeros(n, n);
    for j in 0..n {
        for i in 0..n {
            m[(i, j)] = gaussian(rng);
        }
    }
    m
}

/// Eigenvalues log-spaced from 1 down to 1/κ (n ≥ 2).
fn log_spaced(n: usize, kappa: f64) -> Vec<f64> {
    (0..n).map(|i| kappa.powf(-(i as f64) / (n - 1) as f64)).collect()
}

/// `Q diag(eigs) Qᵀ` for a random orthogonal Q, symmetrized exactly.
fn with_spectrum(rng: &mut impl Rng, eigs: &[f64]) -> (Mat<f64>, Mat<f64>) {
    let n = eigs.len();
    let q = gaussian_mat(rng, n).qr().compute_Q();
    let mut a = Mat::zeros(n, n);
    for j in 0..n {
        for i in 0..=j {
            let s: f64 = (0..n).map(|k| q[(i, k)] * eigs[k] * q[(j, k)]).sum();
            a[(i, j)] = s;
            a[(j, i)] = s;
        }
    }
    (a, q)
}

fn spd(seed: u64, n: usize, kappa: f64) -> DenseSym {
    DenseSym::new(with_spectrum(&mut rng(seed), &log_spaced(n, kappa)).0).unwrap()
}

fn col(v: &[f64]) -> Mat<f64> {
    Mat::from_fn(v.len(), 1, |i, _| v[i])
}

fn to_vec(m: &Mat<f64>) -> Vec<f64> {
    (0..m.nrows()).map(|i| m[(i, 0)]).collect()
}

fn cholesky_solve(a: MatRef<'_, f64>, b: &[f64]) -> Vec<f64> {
    to_vec(&a.llt(Side::Lower).expect("SPD").solve(&col(b)))
}

fn lu_solve(a: MatRef<'_, f64>, b: &[f64]) -> Vec<f64> {
    to_vec(&a.partial_piv_lu().solve(&col(b)))
}

/// Plain dense product (independent of the kernels under test).
fn matvec(a: MatRef<'_, f64>, x: &[f64]) -> Vec<f64> {
    (0..a.nrows()).map(|i| (0..a.ncols()).map(|j| a[(i, j)] * x[j]).sum()).collect()
}

fn norm(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

fn sub(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(x, y)| x - y).collect()
}

fn rel_err(x: &[f64], reference: &[f64]) -> f64 {
    norm(&sub(x, reference)) / norm(reference)
}

/// `‖v‖_H = sqrt(vᵀHv)`.
fn h_norm(a: MatRef<'_, f64>, v: &[f64]) -> f64 {
    matvec(a, v).iter().zip(v).map(|(x, y)| x * y).sum::<f64>().sqrt()
}

/// `‖b − Ax‖ / ‖b‖`.
fn rel_residual(a: MatRef<'_, f64>, x: &[f64], b: &[f64]) -> f64 {
    norm(&sub(b, &matvec(a, x))) / norm(b)
}

const KAPPAS: [f64; 5] = [10.0, 1e2, 1e3, 1e4, 1e6];

// ---------------------------------------------------------------------------------------------
// CG
// ---------------------------------------------------------------------------------------------

/// CG from a random warm start agrees with a dense Cholesky solve for every κ. The forward error
/// is checked against what the residual guarantees, `‖x − x*‖/‖x*‖ ≤ κ·‖b − Hx‖/‖b‖`, plus the
/// Cholesky solution's own error (≈ κ·1e-15), and the true residual must meet the tolerance
/// (twice it: the recursive residual drifts from the true one by rounding).
#[test]
fn cg_matches_cholesky_for_prescribed_spectra() {
    let n = 200;
    for (s, kappa) in KAPPAS.into_iter().enumerate() {
        let op = spd(10 + s as u64, n, kappa);
        let mut r = rng(100 + s as u64);
        let b = gaussian_vec(&mut r, n);
        let mut x = gaussian_vec(&mut r, n);
        let exact = cholesky_solve(op.matrix(), &b);
        let rel_tol = (1e-15 * kappa).max(1e-12);
        let report = Cg::new(op.dim(), Stopping::default().with_rel_tol(rel_tol).with_max_iters(20 * n))
            .solve(&op, &b, &mut x)
            .unwrap();
        assert!(report.converged, "κ={kappa}: {report:?}");
        let res = rel_residual(op.matrix(), &x, &b);
        assert!(res <= 2.0 * rel_tol, "κ={kappa}: true residual {res:e}");
        let err = rel_err(&x, &exact);
        assert!(err <= kappa * (res + 1e-14), "κ={kappa}: error {err:e} vs residual {res:e}");
    }
}

/// CG's rate: ‖x_k − x*‖_H ≤ 2((√κ−1)/(√κ+1))^k ‖x_0 − x*‖_H, so ε = 1e-6 is reached within
/// N = ⌈½√κ·ln(2/ε)⌉ iterations; we allow N + 2 (two iterations of slack for rounding).
/// CG stops early only on the certificate ‖x − x*‖_H ≤ ‖r‖/√λ_min ≤ ε‖x_0 − x*‖_H (abs_tol);
/// either way the H-norm error against Cholesky is checked at the end.
#[test]
fn cg_meets_the_sqrt_kappa_iteration_bound() {
    let n = 300;
    let eps: f64 = 1e-6;
    for (s, kappa) in KAPPAS.into_iter().enumerate() {
        let op = spd(20 + s as u64, n, kappa);
        let mut r = rng(200 + s as u64);
        let b = gaussian_vec(&mut r, n);
        let x0 = if s % 2 == 0 { vec![0.0; n] } else { gaussian_vec(&mut r, n) };
        let exact = cholesky_solve(op.matrix(), &b);
        let e0 = h_norm(op.matrix(), &sub(&x0, &exact));
        let bound = (0.5 * kappa.sqrt() * (2.0 / eps).ln()).ceil() as usize + 2;
        let params = Stopping::fixed_steps(bound).with_abs_tol(eps * e0 / kappa.sqrt());
        let mut x = x0.clone();
        let report = Cg::new(op.dim(), params).solve(&op, &b, &mut x).unwrap();
        let e = h_norm(op.matrix(), &sub(&x, &exact));
        assert!(report.iterations <= bound);
        assert!(
            e <= eps * e0,
            "κ={kappa}: H-norm error ratio {:e} after {} (bound {bound})",
            e / e0,
            report.iterations
        );
    }
}

/// Jacobi preconditioning on H = D A D (A with κ = 10, D log-spaced over three decades): the
/// preconditioned solve needs far fewer iterations, and both agree with Cholesky.
#[test]
fn jacobi_preconditioning_helps_on_a_badly_scaled_matrix() {
    let n = 100;
    let (a, _) = with_spectrum(&mut rng(30), &log_spaced(n, 10.0));
    let d: Vec<f64> = (0..n).map(|i| 1e3f64.powf(i as f64 / (n - 1) as f64)).collect();
    let h = Mat::from_fn(n, n, |i, j| d[i] * a[(i, j)] * d[j]);
    let op = DenseSym::new(h).unwrap();
    let b = gaussian_vec(&mut rng(31), n);
    let exact = cholesky_solve(op.matrix(), &b);
    let params = CgParams::new(Stopping::default().with_rel_tol(1e-10).with_max_iters(5000));

    let mut x_plain = vec![0.0; n];
    let plain = Cg::new(op.dim(), params.clone()).solve(&op, &b, &mut x_plain).unwrap();
    let mut x_pcg = vec![0.0; n];
    let pcg = Cg::new(op.dim(), params.clone().with_preconditioner(Preconditioner::Jacobi))
        .solve(&op, &b, &mut x_pcg)
        .unwrap();

    assert!(plain.converged && pcg.converged);
    assert!(3 * pcg.iterations < plain.iterations, "PCG {} vs CG {}", pcg.iterations, plain.iterations);
    // PCG's own rate: κ(D⁻¹ᐟ²HD⁻¹ᐟ²) is O(10), so it needs only a few dozen iterations.
    assert!(pcg.iterations <= 60, "PCG took {}", pcg.iterations);
    for x in [&x_plain, &x_pcg] {
        assert!(rel_residual(op.matrix(), x, &b) <= 2e-10);
        assert!(rel_err(x, &exact) <= 1e-4, "error {:e}", rel_err(x, &exact));
    }
}

#[test]
fn cg_detects_an_indefinite_operator() {
    let n = 40;
    let mut eigs = log_spaced(n, 100.0);
    eigs[n - 1] = -0.5;
    let (a, q) = with_spectrum(&mut rng(40), &eigs);
    let op = DenseSym::new(a).unwrap();
    // b along the negative eigenvector: the first direction already has pᵀHp = −0.5‖b‖² < 0.
    let b: Vec<f64> = (0..n).map(|i| q[(i, n - 1)]).collect();
    let err = Cg::new(op.dim(), Stopping::default()).solve(&op, &b, &mut vec![0.0; n]).unwrap_err();
    match err {
        KernelError::NotPositiveDefinite { iteration: 1, curvature } => assert!(curvature < 0.0),
        e => panic!("unexpected {e:?}"),
    }
    // With a random right-hand side CG either meets a non-positive direction or (if it never
    // does) converges; a "converged" answer must then be the true solution.
    let b = gaussian_vec(&mut rng(41), n);
    let mut x = vec![0.0; n];
    match Cg::new(op.dim(), Stopping::default().with_max_iters(10 * n)).solve(&op, &b, &mut x) {
        Err(KernelError::NotPositiveDefinite { curvature, .. }) => assert!(curvature <= 0.0),
        Ok(rep) if rep.converged => assert!(rel_err(&x, &lu_solve(op.matrix(), &b)) <= 1e-6),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn jacobi_needs_a_positive_diagonal() {
    let op = Diagonal::new(vec![1.0, -2.0, 3.0]).unwrap();
    let params = CgParams::default().with_preconditioner(Preconditioner::Jacobi);
    let err = Cg::new(op.dim(), params.clone()).solve(&op, &[1.0, 1.0, 1.0], &mut [0.0; 3]).unwrap_err();
    assert_eq!(err, KernelError::NotPositiveDefinite { iteration: 0, curvature: -2.0 });

    let no_diag = FnOp::symmetric(3, |v: &[f64], out: &mut [f64]| out.copy_from_slice(v));
    let err = Cg::new(no_diag.dim(), params).solve(&no_diag, &[1.0, 1.0, 1.0], &mut [0.0; 3]).unwrap_err();
    assert!(matches!(err, KernelError::InvalidParameter { name: "preconditioner", .. }), "{err:?}");
    // Without the preconditioner the same operator is fine: I x = b in one iteration.
    let mut x = [0.0; 3];
    let rep = Cg::new(no_diag.dim(), Stopping::default()).solve(&no_diag, &[1.0, 2.0, 3.0], &mut x).unwrap();
    assert!(rep.converged && rep.iterations == 1);
    assert_eq!(x, [1.0, 2.0, 3.0]);
}

/// faer's own CG (through `linop::FaerOp`, initial guess zeroed by hand and
/// `InitialGuessStatus::MaybeNonZero` kept, see DESIGN pitfalls) agrees with ours.
#[test]
fn faer_conjugate_gradient_agrees_with_ours() {
    use faer::dyn_stack::{MemBuffer, MemStack};
    use faer::matrix_free::conjugate_gradient::{conjugate_gradient, conjugate_gradient_scratch};
    use faer::matrix_free::{IdentityPrecond, InitialGuessStatus};

    let n = 120;
    let op = spd(50, n, 1e3);
    let b = gaussian_vec(&mut rng(51), n);

    let mut ours = vec![0.0; n];
    let report = Cg::new(op.dim(), Stopping::default().with_rel_tol(1e-12)).solve(&op, &b, &mut ours).unwrap();
    assert!(report.converged);

    let faer_op = FaerOp(&op);
    let precond = IdentityPrecond { dim: n };
    let mut params = faer::matrix_free::conjugate_gradient::CgParams::<f64>::default();
    assert_eq!(params.initial_guess, InitialGuessStatus::MaybeNonZero);
    params.rel_tolerance = 1e-12;
    params.max_iters = 1000;
    let mut out = Mat::<f64>::zeros(n, 1);
    let mut buf = MemBuffer::new(conjugate_gradient_scratch(precond, &faer_op, 1, Par::Seq));
    let info = conjugate_gradient(
        out.as_mut(),
        precond,
        &faer_op,
        col(&b).as_ref(),
        params,
        |_| {},
        Par::Seq,
        MemStack::new(&mut buf),
    )
    .expect("faer CG converges");
    let theirs = to_vec(&out);
    assert!(info.rel_residual <= 1e-12);
    // Both solutions have relative residual ≤ 1e-12, so they differ by at most ~2κ·1e-12.
    assert!(rel_err(&ours, &theirs) <= 1e-8, "{:e}", rel_err(&ours, &theirs));
    assert!(rel_err(&ours, &cholesky_solve(op.matrix(), &b)) <= 1e-8);
}

#[test]
fn cg_history_is_preallocated_and_consistent() {
    let n = 50;
    let op = spd(60, n, 100.0);
    let b = gaussian_vec(&mut rng(61), n);
    let x0 = gaussian_vec(&mut rng(62), n);
    let mut x = x0.clone();
    let params = Stopping::default().with_rel_tol(1e-10).with_max_iters(500).with_history(true);
    let report = Cg::new(op.dim(), params).solve(&op, &b, &mut x).unwrap();
    let h = report.history.as_ref().unwrap();
    assert!(h.capacity() >= 501, "history reserved up front");
    assert_eq!(h.len(), report.iterations + 1);
    let r0 = norm(&sub(&b, &matvec(op.matrix(), &x0)));
    assert!((h[0] - r0).abs() <= 1e-12 * r0);
    assert_eq!(*h.last().unwrap(), report.residual_norm);
    assert!(report.residual_norm <= 1e-10 * norm(&b));
    assert!(h[..h.len() - 1].iter().all(|&r| r > 1e-10 * norm(&b)), "stopped at the first iterate that met the test");
}

// ---------------------------------------------------------------------------------------------
// Warm start, bad input
// ---------------------------------------------------------------------------------------------

/// Starting at the dense solution: CG and GMRES do no iteration; Richardson and the fixed-point
/// iteration measure the residual in their first (fused) step, so they report one.
#[test]
fn warm_start_at_the_solution_converges_immediately() {
    let n = 60;
    let op = spd(70, n, 100.0);
    let b = gaussian_vec(&mut rng(71), n);
    let exact = cholesky_solve(op.matrix(), &b);

    let mut x = exact.clone();
    let rep = Cg::new(op.dim(), Stopping::default().with_rel_tol(1e-10)).solve(&op, &b, &mut x).unwrap();
    assert_eq!((rep.iterations, rep.converged), (0, true));
    assert_eq!(x, exact);

    let mut x = exact.clone();
    let rep = Gmres::new(op.dim(), 30, Stopping::default().with_rel_tol(1e-10)).solve(&op, &b, &mut x).unwrap();
    assert_eq!((rep.iterations, rep.converged), (0, true));
    assert_eq!(x, exact);

    let mut x = exact.clone();
    let rep =
        Richardson::new(op.dim(), 1.0, Stopping::fixed_steps(100).with_rel_tol(1e-10)).solve(&op, &b, &mut x).unwrap();
    assert_eq!((rep.iterations, rep.converged), (1, true));
    assert!(rel_err(&x, &exact) <= 1e-10);

    // Fixed point: (I − Jᵀ) v = b with Jᵀ = I − H (symmetric here), so v* = H⁻¹b again.
    let jt = DenseGeneral::new(Mat::from_fn(n, n, |i, j| f64::from(i == j) - op.matrix()[(i, j)]), Par::Seq).unwrap();
    let mut v = exact.clone();
    let rep = FixedPoint::new(jt.dim(), 1.0, Stopping::default().with_rel_tol(1e-10)).solve(&jt, &b, &mut v).unwrap();
    assert_eq!((rep.iterations, rep.converged), (1, true));
    assert!(rel_err(&v, &exact) <= 1e-10);
}

#[test]
fn bad_inputs_give_the_documented_errors() {
    let op = Diagonal::new(vec![1.0, 2.0, 3.0]).unwrap();
    let b = [1.0, 1.0, 1.0];
    let stop = Stopping::default();
    let mut cg = Cg::new(3, stop);
    let dim = |what| move |e: KernelError| matches!(e, KernelError::DimensionMismatch { what: w, .. } if w == what);

    assert!(dim("rhs")(cg.solve(&op, &[1.0, 1.0], &mut [0.0; 3]).unwrap_err()));
    assert!(dim("x0")(cg.solve(&op, &b, &mut [0.0; 4]).unwrap_err()));
    // A solver built for another dimension than the operator's.
    assert!(dim("operator")(Cg::new(2, stop).solve(&op, &b, &mut [0.0; 3]).unwrap_err()));
    assert_eq!(
        cg.solve(&op, &[1.0, f64::NAN, 1.0], &mut [0.0; 3]).unwrap_err(),
        KernelError::NonFinite { what: "rhs", index: 1 }
    );
    assert_eq!(
        cg.solve(&op, &b, &mut [0.0, 0.0, f64::INFINITY]).unwrap_err(),
        KernelError::NonFinite { what: "x0", index: 2 }
    );
    let neg = Cg::new(3, stop.with_rel_tol(-1.0)).solve(&op, &b, &mut [0.0; 3]).unwrap_err();
    assert!(matches!(neg, KernelError::InvalidParameter { name: "rel_tol", .. }));
    // The stopping rule can be changed between solves.
    cg.params_mut().stopping.abs_tol = f64::NAN;
    let nan = cg.solve(&op, &b, &mut [0.0; 3]).unwrap_err();
    assert!(matches!(nan, KernelError::InvalidParameter { name: "abs_tol", .. }));
    let huge = Cg::new(3, stop.with_max_iters(usize::MAX).with_history(true)).solve(&op, &b, &mut [0.0; 3]);
    assert!(matches!(huge.unwrap_err(), KernelError::InvalidParameter { name: "max_iters", .. }));

    // Richardson: a non-positive step, zero steps, and a step beyond 2/λ_max (divergence).
    let steps = Stopping::fixed_steps(100);
    for step in [0.0, -1.0, f64::NAN] {
        let e = Richardson::new(3, step, steps).solve(&op, &b, &mut [0.0; 3]).unwrap_err();
        assert!(matches!(e, KernelError::InvalidParameter { name: "step", .. }));
    }
    let e = Richardson::new(3, 0.1, Stopping::fixed_steps(0)).solve(&op, &b, &mut [0.0; 3]).unwrap_err();
    assert!(matches!(e, KernelError::InvalidParameter { name: "max_iters", .. }));
    assert!(dim("operator")(Richardson::new(4, 0.1, steps).solve(&op, &[1.0; 4], &mut [0.0; 4]).unwrap_err()));
    // β = 1 with λ_max = 3: |1 − 3| = 2 per step, past 1e12 after 40 steps.
    let e = Richardson::new(3, 1.0, Stopping::fixed_steps(200)).solve(&op, &b, &mut [0.0; 3]).unwrap_err();
    match e {
        KernelError::Diverged { iteration, residual } => assert!(iteration > 30 && residual > 1e12),
        e => panic!("{e:?}"),
    }

    // Neumann: a bad step, an operator list shorter than Q, and η too large.
    let q5 = Stopping::fixed_steps(5);
    let e = Neumann::new(3, 0.0, q5).solve(&op, &b, &mut [0.0; 3]).unwrap_err();
    assert!(matches!(e, KernelError::InvalidParameter { name: "step", .. }));
    let list = [op.clone(), op.clone()];
    let e = Neumann::new(3, 0.3, q5).solve(OperatorList(&list), &b, &mut [0.0; 3]).unwrap_err();
    assert!(matches!(e, KernelError::InvalidParameter { name: "terms", .. }));
    let e = Neumann::new(3, 1.0, Stopping::fixed_steps(200)).solve(&op, &b, &mut [0.0; 3]).unwrap_err();
    assert!(matches!(e, KernelError::Diverged { .. }));
    let wrong = [Diagonal::new(vec![1.0; 4]).unwrap()];
    assert!(dim("operator in the sequence")(
        Neumann::new(3, 0.3, Stopping::fixed_steps(1)).solve(OperatorList(&wrong), &b, &mut [0.0; 3]).unwrap_err()
    ));

    // GMRES: restart 0, NaN.
    let e = Gmres::new(3, 0, stop).solve(&op, &b, &mut [0.0; 3]).unwrap_err();
    assert!(matches!(e, KernelError::InvalidParameter { name: "restart", .. }));
    assert_eq!(
        Gmres::new(3, 30, stop).solve(&op, &[f64::NAN; 3], &mut [0.0; 3]).unwrap_err(),
        KernelError::NonFinite { what: "rhs", index: 0 }
    );

    // Truncation: K = 0, k ≥ K, L ≤ 0 (validated before any randomness is drawn).
    let e = RandomizedTruncation::new(3, 3.0, 4).solve(&op, &b, 4, &mut [0.0; 3]).unwrap_err();
    assert!(matches!(e, KernelError::InvalidParameter { name: "depth", .. }));
    let e = RandomizedTruncation::new(3, 3.0, 0).solve(&op, &b, 0, &mut [0.0; 3]).unwrap_err();
    assert!(matches!(e, KernelError::InvalidParameter { name: "horizon", .. }));
    let mut r = rng(1);
    let e = RandomizedTruncation::new(3, 0.0, 4).draw_depth(&mut r).unwrap_err();
    assert!(matches!(e, KernelError::InvalidParameter { name: "lipschitz", .. }));
    assert_eq!(r.random::<u64>(), rng(1).random::<u64>(), "no randomness consumed on error");
}

// ---------------------------------------------------------------------------------------------
// Richardson
// ---------------------------------------------------------------------------------------------

/// With β = 1/L (L = λ_max = 1), ‖z_N − z*‖ ≤ (1 − 1/κ)^N ‖z_0 − z*‖ ≤ ε‖z_0 − z*‖ for
/// N = ⌈κ·ln(1/ε)⌉ (slack: 1e-12 relative, for rounding). In tolerance mode from z_0 = 0 the
/// residual ‖r_N‖ ≤ (1 − 1/κ)^N‖b‖ ≤ ε‖b‖ is measured by step N + 1 (the fused step reports the
/// incoming iterate's residual), so it stops within N + 1 steps.
#[test]
fn richardson_meets_the_kappa_bound_and_matches_cholesky() {
    let n = 200;
    let eps: f64 = 1e-6;
    for (s, kappa) in [10.0, 1e2, 1e3].into_iter().enumerate() {
        let op = spd(80 + s as u64, n, kappa);
        let mut r = rng(300 + s as u64);
        let b = gaussian_vec(&mut r, n);
        let z0 = gaussian_vec(&mut r, n);
        let exact = cholesky_solve(op.matrix(), &b);
        let steps = (kappa * (1.0 / eps).ln()).ceil() as usize;

        let mut z = z0.clone();
        let rep = Richardson::new(op.dim(), 1.0, Stopping::fixed_steps(100).with_max_iters(steps))
            .solve(&op, &b, &mut z)
            .unwrap();
        assert_eq!(rep.iterations, steps);
        let ratio = norm(&sub(&z, &exact)) / norm(&sub(&z0, &exact));
        assert!(ratio <= eps * (1.0 + 1e-12), "κ={kappa}: {ratio:e}");

        let mut z = vec![0.0; n];
        let rep =
            Richardson::new(op.dim(), 1.0, Stopping::fixed_steps(100).with_rel_tol(eps).with_max_iters(10 * steps))
                .solve(&op, &b, &mut z)
                .unwrap();
        assert!(rep.converged && rep.iterations <= steps + 1, "κ={kappa}: {} > {}", rep.iterations, steps + 1);
        assert!(rel_residual(op.matrix(), &z, &b) <= eps);

        // Tight solve against Cholesky: error ≤ κ·residual.
        let mut z = z0.clone();
        let rep =
            Richardson::new(op.dim(), 1.0, Stopping::fixed_steps(100).with_rel_tol(1e-12).with_max_iters(100_000))
                .solve(&op, &b, &mut z)
                .unwrap();
        assert!(rep.converged);
        assert!(rel_err(&z, &exact) <= kappa * 1e-12 + 1e-13, "κ={kappa}: {:e}", rel_err(&z, &exact));
    }
}

/// The stochastic form applies H_k at step k: compared with the dense recursion
/// z ← z − β(H_k z − b) (AmIGO Alg. 3 with b = −v).
#[test]
fn stochastic_richardson_uses_one_operator_per_step() {
    let n = 20;
    let steps = 6;
    let hs: Vec<DenseSym> = (0..steps).map(|k| spd(90 + k as u64, n, 5.0)).collect();
    let b = gaussian_vec(&mut rng(91), n);
    let z0 = gaussian_vec(&mut rng(92), n);
    let beta = 0.7;

    let mut want = z0.clone();
    for h in &hs {
        let hz = matvec(h.matrix(), &want);
        want.iter_mut().zip(hz.iter().zip(&b)).for_each(|(z, (hz, b))| *z -= beta * (hz - b));
    }
    let mut z = z0.clone();
    let mut solver = Richardson::new(n, beta, Stopping::fixed_steps(steps));
    let rep = solver.solve(OperatorList(&hs), &b, &mut z).unwrap();
    assert_eq!(rep.iterations, steps);
    assert!(rel_err(&z, &want) <= 1e-13);

    // A sequence too short for the step budget is refused.
    let e = solver.solve(OperatorList(&hs[..3]), &b, &mut z).unwrap_err();
    assert!(matches!(e, KernelError::InvalidParameter { name: "max_iters", .. }));
}

// ---------------------------------------------------------------------------------------------
// Neumann
// ---------------------------------------------------------------------------------------------

/// `v_Q = η Σ_{k=0..Q} (I − ηH)^k b = H⁻¹(I − (I − ηH)^{Q+1}) b`: Q + 1 terms (this catches the
/// off-by-one of summing Q terms), checked against Cholesky for a small Q and η ≠ 1/L.
#[test]
fn neumann_series_matches_its_closed_form() {
    let n = 40;
    let op = spd(100, n, 20.0);
    let b = gaussian_vec(&mut rng(101), n);
    let (eta, q) = (0.8, 7);
    let mut m_b = b.clone(); // (I − ηH)^{Q+1} b
    for _ in 0..=q {
        let hm = matvec(op.matrix(), &m_b);
        m_b.iter_mut().zip(&hm).for_each(|(m, h)| *m -= eta * h);
    }
    let want = cholesky_solve(op.matrix(), &sub(&b, &m_b));
    let mut v = vec![f64::NAN; n]; // output only: the initial content is ignored
    let rep = Neumann::new(n, eta, Stopping::fixed_steps(q).with_history(true)).solve(&op, &b, &mut v).unwrap();
    assert_eq!(rep.iterations, q);
    assert!(rel_err(&v, &want) <= 1e-12, "{:e}", rel_err(&v, &want));
    // The reported term is the residual of v_{Q−1}, which bounds that of v_Q.
    let h = rep.history.unwrap();
    assert_eq!(h.len(), q + 1);
    assert!(rel_residual(op.matrix(), &v, &b) * norm(&b) <= rep.residual_norm * (1.0 + 1e-12));
}

/// With η = 1/L: ‖v_Q − H⁻¹b‖ ≤ (1 − 1/κ)^{Q+1}‖H⁻¹b‖ ≤ ε‖H⁻¹b‖ for Q = ⌈κ·ln(1/ε)⌉
/// (1e-12 relative slack for rounding); in tolerance mode the series stops within that Q.
#[test]
fn neumann_meets_the_kappa_bound() {
    let n = 200;
    let eps: f64 = 1e-6;
    for (s, kappa) in [10.0, 1e2, 1e3].into_iter().enumerate() {
        let op = spd(110 + s as u64, n, kappa);
        let b = gaussian_vec(&mut rng(400 + s as u64), n);
        let exact = cholesky_solve(op.matrix(), &b);
        let q = (kappa * (1.0 / eps).ln()).ceil() as usize;
        let mut v = vec![0.0; n];
        let rep = Neumann::new(n, 1.0, Stopping::fixed_steps(q)).solve(&op, &b, &mut v).unwrap();
        assert_eq!(rep.iterations, q);
        assert!(rel_err(&v, &exact) <= eps * (1.0 + 1e-12), "κ={kappa}: {:e}", rel_err(&v, &exact));

        let rep = Neumann::new(n, 1.0, Stopping::fixed_steps(10 * q).with_rel_tol(eps)).solve(&op, &b, &mut v).unwrap();
        assert!(rep.converged && rep.iterations <= q, "κ={kappa}: {} > {q}", rep.iterations);
        assert!(rel_residual(op.matrix(), &v, &b) <= eps);
    }
}

/// Alg. 3 with distinct Hessians H_{B_1..B_Q}: against eq. (5) evaluated densely,
/// v = η Σ_{q=−1}^{Q−1} ∏_{j=Q−q}^{Q} (I − ηH_{B_j}) b (H_{B_Q} applied first), and the calls come
/// in the order B_Q, …, B_1 (0-based labels Q−1, …, 0).
#[test]
fn stochastic_neumann_follows_algorithm_3() {
    let n = 15;
    let q = 4;
    let eta = 0.5;
    let hs: Vec<DenseSym> = (0..q).map(|j| spd(120 + j as u64, n, 4.0 + j as f64)).collect();
    let b = gaussian_vec(&mut rng(121), n);

    // Dense eq. (5): term(q) = (I − ηH_{Q−q}) … (I − ηH_Q) b; hs[j − 1] is H_{B_j}.
    let mut want = b.clone();
    for qq in 0..q {
        let mut t = b.clone();
        for j in (q - qq..=q).rev() {
            let ht = matvec(hs[j - 1].matrix(), &t);
            t.iter_mut().zip(&ht).for_each(|(t, h)| *t -= eta * h);
        }
        want.iter_mut().zip(&t).for_each(|(w, t)| *w += t);
    }
    want.iter_mut().for_each(|w| *w *= eta);

    let mut v = vec![0.0; n];
    let rep = Neumann::new(n, eta, Stopping::fixed_steps(q)).solve(OperatorList(&hs), &b, &mut v).unwrap();
    assert_eq!(rep.iterations, q);
    assert!(rel_err(&v, &want) <= 1e-13, "{:e}", rel_err(&v, &want));

    // The same through a closure, recording the labels it is called with.
    let mut calls = Vec::new();
    let mut via_closure = vec![0.0; n];
    let mut hvp = |j: usize, x: &[f64], out: &mut [f64]| {
        calls.push(j);
        hs[j].apply(x, out);
    };
    Neumann::new(n, eta, Stopping::fixed_steps(q)).solve(Sampled(&mut hvp), &b, &mut via_closure).unwrap();
    assert_eq!(calls, [3, 2, 1, 0]);
    assert_eq!(via_closure, v);

    // With one Hessian repeated, the stochastic form is the deterministic series.
    let (mut a, mut c) = (vec![0.0; n], vec![0.0; n]);
    Neumann::new(n, eta, Stopping::fixed_steps(q)).solve(&hs[0], &b, &mut a).unwrap();
    Neumann::new(n, eta, Stopping::fixed_steps(q)).solve(Repeated(&hs[0]), &b, &mut c).unwrap();
    assert_eq!(a, c);
}

/// Proposition 3: |B_{Q+1−j}| = ⌈B·Q·(1 − ημ)^{j−1}⌉, returned as sizes[i−1] = |B_i|.
#[test]
fn batch_sizes_follow_proposition_3() {
    // Q = 3, 1 − ημ = 1/2, B = 2: |B_3| = ⌈6⌉, |B_2| = ⌈3⌉, |B_1| = ⌈1.5⌉ (hand-computed).
    assert_eq!(stochastic_neumann_batch_sizes(2.0, 3, 0.5, 1.0).unwrap(), [2, 3, 6]);
    // B = 1 < 1/(Q(1 − ημ)^{Q−1}) = 4/3 would leave B_1 with 0.75 samples.
    let e = stochastic_neumann_batch_sizes(1.0, 3, 0.5, 1.0).unwrap_err();
    assert!(matches!(e, KernelError::InvalidParameter { name: "base batch size B", .. }), "{e:?}");
    // B exactly at the bound is accepted.
    let (q, eta, mu) = (20, 0.1, 0.5);
    let rho: f64 = 1.0 - eta * mu;
    let bound = 1.0 / (q as f64 * rho.powi(q as i32 - 1));
    let sizes = stochastic_neumann_batch_sizes(bound, q, eta, mu).unwrap();
    assert_eq!(sizes[0], 1);
    // A larger example: monotone, largest ⌈BQ⌉ for B_Q, total ≤ BQ/(ημ) + Q.
    let base = 37.5;
    let sizes = stochastic_neumann_batch_sizes(base, q, eta, mu).unwrap();
    assert_eq!(sizes.len(), q);
    assert_eq!(sizes[q - 1], (base * q as f64).ceil() as usize);
    assert!(sizes.windows(2).all(|w| w[0] <= w[1]));
    for (i, &s) in sizes.iter().enumerate() {
        let exact = base * q as f64 * rho.powi((q - 1 - i) as i32);
        assert!(s as f64 >= exact && (s as f64) < exact + 1.0);
    }
    assert!(sizes.iter().sum::<usize>() as f64 <= base * q as f64 / (eta * mu) + q as f64);
    // Invalid η·μ ≥ 1 and Q = 0.
    assert!(stochastic_neumann_batch_sizes(1.0, 3, 2.0, 1.0).is_err());
    assert!(stochastic_neumann_batch_sizes(1.0, 0, 0.5, 1.0).is_err());
}

// ---------------------------------------------------------------------------------------------
// Randomized truncation
// ---------------------------------------------------------------------------------------------

/// E_k[(K/L)(I − H/L)^k b] over k ~ U{0..K−1} equals H⁻¹(I − (I − H/L)^K) b exactly: enumerate k.
#[test]
fn truncation_expectation_is_exact() {
    let n = 30;
    let op = spd(130, n, 50.0);
    let b = gaussian_vec(&mut rng(131), n);
    let (l, k_max) = (1.5, 12);
    let mut estimator = RandomizedTruncation::new(n, l, k_max);

    let mut mean = vec![0.0; n];
    let mut out = vec![0.0; n];
    for k in 0..k_max {
        estimator.solve(&op, &b, k, &mut out).unwrap();
        mean.iter_mut().zip(&out).for_each(|(m, o)| *m += o / k_max as f64);
    }
    let mut m_b = b.clone(); // (I − H/L)^K b
    for _ in 0..k_max {
        let hm = matvec(op.matrix(), &m_b);
        m_b.iter_mut().zip(&hm).for_each(|(m, h)| *m -= h / l);
    }
    let want = cholesky_solve(op.matrix(), &sub(&b, &m_b));
    assert!(rel_err(&mean, &want) <= 1e-12, "{:e}", rel_err(&mean, &want));

    // k = 0 is (K/L)·b.
    estimator.solve(Repeated(&op), &b, 0, &mut out).unwrap();
    assert!(out.iter().zip(&b).all(|(o, b)| (o - k_max as f64 / l * b).abs() <= 1e-15 * b.abs().max(1.0)));
}

/// The depth comes from the caller's rng as U{0..K−1}, and the vector is the fixed-depth estimator
/// at that depth, with one Hessian per product (labels 0..k in order).
#[test]
fn randomized_truncation_draws_its_depth_from_the_rng() {
    let n = 10;
    let op = spd(140, n, 10.0);
    let b = gaussian_vec(&mut rng(141), n);
    let mut estimator = RandomizedTruncation::new(n, 1.0, 7);
    let mut seen = [false; 7];
    for seed in 0..60 {
        let mut calls = Vec::new();
        let mut hvp = |j: usize, x: &[f64], out: &mut [f64]| {
            calls.push(j);
            op.apply(x, out);
        };
        let mut out = vec![0.0; n];
        let k = estimator.draw_depth(&mut rng(seed)).unwrap();
        estimator.solve(Sampled(&mut hvp), &b, k, &mut out).unwrap();
        assert_eq!(k, rng(seed).random_range(0..7));
        assert_eq!(calls, (0..k).collect::<Vec<_>>());
        let mut fixed = vec![0.0; n];
        estimator.solve(&op, &b, k, &mut fixed).unwrap();
        assert_eq!(out, fixed);
        seen[k] = true;
    }
    assert!(seen.iter().all(|&s| s), "60 draws cover all 7 depths");
}

// ---------------------------------------------------------------------------------------------
// Non-symmetric systems (I − Jᵀ) v = b
// ---------------------------------------------------------------------------------------------

/// A random non-symmetric J with ‖J‖₂ ≤ ‖J‖_F = q, and Jᵀ as a dense matrix.
fn contraction(seed: u64, n: usize, q: f64) -> (Mat<f64>, Mat<f64>) {
    let g = gaussian_mat(&mut rng(seed), n);
    let fro = (0..n).flat_map(|j| (0..n).map(move |i| (i, j))).map(|(i, j)| g[(i, j)].powi(2)).sum::<f64>().sqrt();
    let jt = Mat::from_fn(n, n, |i, j| q * g[(j, i)] / fro);
    let a = Mat::from_fn(n, n, |i, j| f64::from(i == j) - jt[(i, j)]);
    (jt, a)
}

/// GMRES(m) for several m and the fixed-point iteration agree with a dense LU solve of I − Jᵀ
/// (cond(I − Jᵀ) ≤ (1 + q)/(1 − q) = 19, so a 1e-12 residual gives ~2e-11 error). The fixed point
/// contracts the residual by q per step: relative residual ε within ⌈ln(1/ε)/ln(1/q)⌉ + 1 steps
/// (+1: the fused step reports its incoming iterate).
#[test]
fn gmres_and_fixed_point_match_lu() {
    let n = 80;
    let q = 0.9;
    let (jt, a) = contraction(150, n, q);
    let b = gaussian_vec(&mut rng(151), n);
    let exact = lu_solve(a.as_ref(), &b);
    let jt_op = DenseGeneral::new(jt.clone(), Par::Seq).unwrap();
    let system = IdentityMinus(&jt_op);

    for m in [1, 5, 20, 100] {
        let mut v = gaussian_vec(&mut rng(152), n);
        let params = Stopping::default().with_rel_tol(1e-12).with_max_iters(5000).with_history(true);
        let rep = Gmres::new(n, m, params).solve(&system, &b, &mut v).unwrap();
        assert!(rep.converged, "m={m}: {rep:?}");
        assert!(rel_residual(a.as_ref(), &v, &b) <= 1e-12 * (1.0 + 1e-6));
        assert!(rel_err(&v, &exact) <= 1e-10, "m={m}: {:e}", rel_err(&v, &exact));
        let h = rep.history.unwrap();
        assert!(h.windows(2).all(|w| w[1] <= w[0] * (1.0 + 1e-10)), "m={m}: GMRES residuals are monotone");
        if m == 100 {
            // Full GMRES in dimension 80 cannot need more than 80 steps (plus rounding).
            assert!(rep.iterations <= n, "{}", rep.iterations);
        }
    }

    let eps: f64 = 1e-12;
    let mut v = vec![0.0; n];
    let rep =
        FixedPoint::new(jt_op.dim(), 1.0, Stopping::default().with_rel_tol(eps)).solve(&jt_op, &b, &mut v).unwrap();
    let bound = ((1.0 / eps).ln() / (1.0 / q).ln()).ceil() as usize + 1;
    assert!(rep.converged && rep.iterations <= bound, "{} > {bound}", rep.iterations);
    assert!(rel_err(&v, &exact) <= 1e-10);

    // The closure adapter gives the same operator.
    let closure = IdentityMinus::from_fn(n, |x: &[f64], out: &mut [f64]| out.copy_from_slice(&matvec(jt.as_ref(), x)));
    let mut w = vec![0.0; n];
    Gmres::new(closure.dim(), 30, Stopping::default().with_rel_tol(1e-12)).solve(&closure, &b, &mut w).unwrap();
    assert!(rel_err(&w, &exact) <= 1e-10);
}

/// Jᵀ = I makes I − Jᵀ = 0: GMRES reports a breakdown, the fixed-point iteration stalls (its
/// residual stays ‖b‖), and Jᵀ = 2I (not a contraction) diverges.
#[test]
fn singular_and_expanding_systems_are_reported() {
    let n = 5;
    let b = vec![1.0; n];
    let identity = Diagonal::new(vec![1.0; n]).unwrap();
    let e = Gmres::new(n, 30, Stopping::default()).solve(&IdentityMinus(&identity), &b, &mut vec![0.0; n]).unwrap_err();
    assert!(matches!(e, KernelError::Breakdown { iteration: 1, .. }), "{e:?}");

    let rep = FixedPoint::new(identity.dim(), 1.0, Stopping::default().with_max_iters(50))
        .solve(&identity, &b, &mut vec![0.0; n])
        .unwrap();
    assert!(!rep.converged);
    assert!((rep.residual_norm - norm(&b)).abs() <= 1e-12);

    let double = Diagonal::new(vec![2.0; n]).unwrap();
    let e = FixedPoint::new(double.dim(), 1.0, Stopping::default()).solve(&double, &b, &mut vec![0.0; n]).unwrap_err();
    assert!(matches!(e, KernelError::Diverged { .. }), "{e:?}");
}

/// GMRES on an SPD system gives the Cholesky solution too (it is a general solver).
#[test]
fn gmres_solves_spd_systems() {
    let n = 60;
    let op = spd(160, n, 1e3);
    let b = gaussian_vec(&mut rng(161), n);
    let mut x = vec![0.0; n];
    let rep = Gmres::new(op.dim(), n, Stopping::default().with_rel_tol(1e-12)).solve(&op, &b, &mut x).unwrap();
    assert!(rep.converged);
    assert!(rel_err(&x, &cholesky_solve(op.matrix(), &b)) <= 1e3 * 1e-12 * 2.0 + 1e-13);
}

// ---------------------------------------------------------------------------------------------
// Determinism
// ---------------------------------------------------------------------------------------------

/// Above par::PAR_MIN_LEN the vector kernels run on rayon; the fixed reduction tree makes the
/// solvers' results bitwise identical with 1 and 2 threads.
#[test]
fn solvers_are_bitwise_deterministic_across_thread_counts() {
    let n = 300_007;
    let d: Vec<f64> = (0..n).map(|i| 0.01 + (i % 997) as f64 / 997.0).collect();
    let op = Diagonal::new(d).unwrap();
    let b = gaussian_vec(&mut rng(170), n);
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| {
            let mut x = vec![0.0; n];
            let rep = Cg::new(op.dim(), Stopping::default().with_max_iters(30)).solve(&op, &b, &mut x).unwrap();
            let mut y = vec![0.0; n];
            Gmres::new(op.dim(), 5, Stopping::default().with_max_iters(12)).solve(&op, &b, &mut y).unwrap();
            (rep.residual_norm, x, y)
        })
    };
    let (r1, x1, y1) = run(1);
    let (r2, x2, y2) = run(2);
    assert_eq!(r1.to_bits(), r2.to_bits());
    assert!(x1.iter().zip(&x2).all(|(a, b)| a.to_bits() == b.to_bits()));
    assert!(y1.iter().zip(&y2).all(|(a, b)| a.to_bits() == b.to_bits()));
}

/// A fixed-step run (rel_tol = 0) far past convergence stops at the rounding floor as converged
/// instead of failing on a vanishing pᵀHp (seen with 100+ CG steps on a 20-dimensional system).
#[test]
fn cg_run_past_convergence_stops_at_the_rounding_floor() {
    let n = 20;
    let d: Vec<f64> = (0..n).map(|i| 1.0 + i as f64).collect();
    let op = Diagonal::new(d.clone()).unwrap();
    let b: Vec<f64> = (0..n).map(|i| (i as f64 * 0.7).sin()).collect();
    let mut x = vec![0.0; n];
    let report =
        Cg::new(op.dim(), Stopping::default().with_rel_tol(0.0).with_max_iters(500)).solve(&op, &b, &mut x).unwrap();
    assert!(report.converged && report.iterations <= n + 5, "{report:?}");
    for i in 0..n {
        assert!((x[i] - b[i] / d[i]).abs() < 1e-13);
    }
}

// ---------------------------------------------------------------------------------------------
// Operator-application counts (the unit the papers count)
// ---------------------------------------------------------------------------------------------

/// `H` behind a closure that counts its applications.
fn counting<'a>(h: &'a DenseSym, count: &'a AtomicUsize) -> impl SymmetricOperator + 'a {
    FnOp::symmetric(h.dim(), move |v: &[f64], out: &mut [f64]| {
        count.fetch_add(1, Ordering::Relaxed);
        h.apply(v, out)
    })
}

/// Runs `solve` on a fresh counter; returns the report and the applications the operator saw.
fn counted(solve: impl FnOnce(&AtomicUsize) -> SolveReport) -> (SolveReport, usize) {
    let count = AtomicUsize::new(0);
    let report = solve(&count);
    (report, count.load(Ordering::Relaxed))
}

/// CG with a fixed number of steps (rel_tol = 0): N products from x₀ = 0 (r₀ = b is taken
/// without one), N + 1 from a non-zero warm start; the report says the same.
#[test]
fn cg_costs_n_products_cold_and_n_plus_one_warm() {
    let n = 40;
    let h = spd(180, n, 100.0);
    let b = gaussian_vec(&mut rng(181), n);
    let warm = gaussian_vec(&mut rng(182), n);
    for steps in [1, 7, 15] {
        let mut cg = Cg::new(n, Stopping::fixed_steps(steps));
        for (x0, extra) in [(vec![0.0; n], 0), (vec![-0.0; n], 0), (warm.clone(), 1)] {
            let mut x = x0;
            let (rep, applied) = counted(|c| cg.solve(&counting(&h, c), &b, &mut x).unwrap());
            assert_eq!(rep.iterations, steps);
            assert_eq!(applied, steps + extra, "{steps} steps, warm start: {}", extra == 1);
            assert_eq!(rep.operator_applications, applied);
        }
        // The cold start is the same iterate as before the count fix (H·0 = 0 exactly).
        let mut cold = vec![0.0; n];
        cg.solve(&h, &b, &mut cold).unwrap();
        let mut x = vec![0.0; n];
        let mut reference = Cg::new(n, Stopping::fixed_steps(steps));
        reference.solve(&h, &b, &mut x).unwrap();
        assert_eq!(cold, x);
    }
}

/// Richardson, the fixed point (through any sequence) and Neumann: one product per step or term
/// beyond the first, whatever the warm start; the truncation estimator: k products for depth k.
#[test]
fn stationary_methods_and_series_cost_one_product_per_step() {
    let n = 30;
    let h = spd(190, n, 10.0);
    let b = gaussian_vec(&mut rng(191), n);
    let warm = gaussian_vec(&mut rng(192), n);
    let steps = 9;
    for x0 in [vec![0.0; n], warm.clone()] {
        let mut gd = Richardson::new(n, 1.0, Stopping::fixed_steps(steps));
        let mut x = x0.clone();
        let (rep, applied) = counted(|c| gd.solve(&counting(&h, c), &b, &mut x).unwrap());
        assert_eq!((rep.iterations, rep.operator_applications, applied), (steps, steps, steps));

        // Jᵀ = I − H (a contraction here: λ(H) ⊂ [0.1, 1]).
        let mut fp = FixedPoint::new(n, 1.0, Stopping::fixed_steps(steps));
        let mut x = x0.clone();
        let (rep, applied) = counted(|c| fp.solve(&IdentityMinus(counting(&h, c)), &b, &mut x).unwrap());
        assert_eq!((rep.iterations, rep.operator_applications, applied), (steps, steps, steps));

        // A sampled sequence is counted the same way.
        let mut calls = 0;
        let mut x = x0.clone();
        let rep = gd
            .solve(
                Sampled(|_: usize, v: &[f64], out: &mut [f64]| {
                    calls += 1;
                    h.apply(v, out)
                }),
                &b,
                &mut x,
            )
            .unwrap();
        assert_eq!((rep.operator_applications, calls), (steps, steps));
    }
    let mut neumann = Neumann::new(n, 1.0, Stopping::fixed_steps(steps));
    let mut v = vec![0.0; n];
    let (rep, applied) = counted(|c| neumann.solve(&counting(&h, c), &b, &mut v).unwrap());
    assert_eq!((rep.iterations, rep.operator_applications, applied), (steps, steps, steps));

    let mut truncation = RandomizedTruncation::new(n, 1.0, 12);
    for depth in [0, 1, 11] {
        let count = AtomicUsize::new(0);
        truncation.solve(&counting(&h, &count), &b, depth, &mut v).unwrap();
        assert_eq!(count.load(Ordering::Relaxed), depth);
    }
}

/// GMRES(m) with N Arnoldi steps: N products, plus one per cycle (its true residual), plus one
/// for a non-zero warm start.
#[test]
fn gmres_counts_arnoldi_steps_cycles_and_the_warm_start() {
    let n = 30;
    let h = spd(200, n, 100.0);
    let b = gaussian_vec(&mut rng(201), n);
    let warm = gaussian_vec(&mut rng(202), n);
    for (restart, steps) in [(3usize, 7usize), (5, 5), (30, 12)] {
        let cycles = steps.div_ceil(restart);
        let mut gmres = Gmres::new(n, restart, Stopping::fixed_steps(steps));
        for (x0, extra) in [(vec![0.0; n], 0), (warm.clone(), 1)] {
            let mut x = x0;
            let (rep, applied) = counted(|c| gmres.solve(&counting(&h, c), &b, &mut x).unwrap());
            assert_eq!(rep.iterations, steps);
            assert_eq!(applied, steps + cycles + extra, "m = {restart}, N = {steps}");
            assert_eq!(rep.operator_applications, applied);
        }
    }
}

/// Through `Box<dyn LinearSolver>` the solvers are interchangeable and report the same costs.
#[test]
fn boxed_solvers_solve_the_same_system() {
    let n = 25;
    let h = spd(210, n, 10.0);
    let b = gaussian_vec(&mut rng(211), n);
    let exact = cholesky_solve(h.matrix(), &b);
    let tight = Stopping::default().with_rel_tol(1e-12).with_max_iters(2000);
    let mut solvers: Vec<(&str, Box<dyn LinearSolver>)> = vec![
        ("cg", Box::new(Cg::new(n, tight))),
        ("gd", Box::new(Richardson::new(n, 1.0, tight))),
        ("fp", Box::new(FixedPoint::new(n, 1.0, tight))),
        ("neumann", Box::new(Neumann::new(n, 1.0, tight))),
        ("gmres", Box::new(Gmres::new(n, 10, tight))),
    ];
    for (name, solver) in &mut solvers {
        let mut x = vec![0.0; n];
        let (rep, applied) = counted(|c| solver.solve(&counting(&h, c), &b, &mut x).unwrap());
        assert!(rep.converged, "{name}: {rep:?}");
        assert_eq!(rep.operator_applications, applied, "{name}");
        assert!(rel_err(&x, &exact) <= 1e-9, "{name}: {:e}", rel_err(&x, &exact));
    }
}
