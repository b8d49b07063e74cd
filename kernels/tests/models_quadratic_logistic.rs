//! Quadratic and logistic model kernels: every derivative against central finite differences,
//! the closed-form references of the quadratic bilevel problem against dense faer solves,
//! determinism across thread counts, and the typed errors on bad input.

use bilevel_kernels::linop::{DenseSym, Operator};
use bilevel_kernels::models::logistic::{Hyper, LogisticModel, LogisticWorkspace};
use bilevel_kernels::models::quadratic::{QuadraticBilevel, QuadraticForm};
use bilevel_kernels::models::{DenseRows, Design};
use bilevel_kernels::{ops, Batch, BilevelProblem, CsrMatrix, KernelError, StepBatches};
use faer::linalg::solvers::Solve;
use faer::{Mat, Par, Side};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

// ---------------------------------------------------------------- helpers

fn rng(seed: u64) -> Xoshiro256PlusPlus {
    Xoshiro256PlusPlus::seed_from_u64(seed)
}

fn rand_vec(r: &mut impl Rng, n: usize) -> Vec<f64> {
    (0..n).map(|_| r.random_range(-1.0..1.0)).collect()
}

fn rand_mat(r: &mut impl Rng, m: usize, n: usize) -> Mat<f64> {
    Mat::from_fn(m, n, |_, _| r.random_range(-1.0..1.0))
}

/// G Gᵀ / n + shift·I: symmetric, positive definite when shift > 0.
fn rand_spd(r: &mut impl Rng, n: usize, shift: f64) -> Mat<f64> {
    let g = rand_mat(r, n, n);
    let mut a = &g * g.transpose() * (1.0 / n as f64);
    for i in 0..n {
        a[(i, i)] += shift;
    }
    Mat::from_fn(n, n, |i, j| 0.5 * (a[(i, j)] + a[(j, i)]))
}

/// A symmetric matrix, indefinite in general.
fn rand_sym(r: &mut impl Rng, n: usize) -> Mat<f64> {
    let g = rand_mat(r, n, n);
    Mat::from_fn(n, n, |i, j| 0.5 * (g[(i, j)] + g[(j, i)]))
}

/// ‖a − b‖∞ ≤ tol · max(1, ‖b‖∞).
#[track_caller]
fn assert_close(a: &[f64], b: &[f64], tol: f64, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    let scale = b.iter().fold(1.0f64, |m, x| m.max(x.abs()));
    let err = a.iter().zip(b).fold(0.0f64, |m, (x, y)| m.max((x - y).abs()));
    assert!(err <= tol * scale, "{what}: max error {err:e} > {tol:e} · {scale}\n got  {a:?}\n want {b:?}");
}

#[track_caller]
fn assert_bits(a: &[f64], b: &[f64], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert_eq!(x.to_bits(), y.to_bits(), "{what}: entry {i}: {x} vs {y}");
    }
}

/// Central differences of a scalar function: ∂φ/∂z_k ≈ (φ(z + h e_k) − φ(z − h e_k)) / 2h.
fn fd_grad(z: &[f64], h: f64, mut phi: impl FnMut(&[f64]) -> f64) -> Vec<f64> {
    let mut zz = z.to_vec();
    (0..z.len())
        .map(|k| {
            zz[k] = z[k] + h;
            let up = phi(&zz);
            zz[k] = z[k] - h;
            let down = phi(&zz);
            zz[k] = z[k];
            (up - down) / (2.0 * h)
        })
        .collect()
}

/// Central difference of a vector function along a direction: (F(z + h v) − F(z − h v)) / 2h.
fn fd_dir(z: &[f64], v: &[f64], h: f64, mut vecf: impl FnMut(&[f64]) -> Vec<f64>) -> Vec<f64> {
    let zp: Vec<f64> = z.iter().zip(v).map(|(a, b)| a + h * b).collect();
    let zm: Vec<f64> = z.iter().zip(v).map(|(a, b)| a - h * b).collect();
    vecf(&zp).iter().zip(vecf(&zm)).map(|(p, m)| (p - m) / (2.0 * h)).collect()
}

fn dense_mv(a: &Mat<f64>, v: &[f64]) -> Vec<f64> {
    (0..a.nrows()).map(|i| (0..a.ncols()).map(|j| a[(i, j)] * v[j]).sum()).collect()
}

fn dense_tmv(a: &Mat<f64>, v: &[f64]) -> Vec<f64> {
    (0..a.ncols()).map(|j| (0..a.nrows()).map(|i| a[(i, j)] * v[i]).sum()).collect()
}

// ---------------------------------------------------------------- quadratic

/// A form with every term present: A, B, P as given, c and d drawn (in that order).
fn form_with(r: &mut impl Rng, a: Mat<f64>, b: Mat<f64>, p: Mat<f64>) -> QuadraticForm {
    let (dy, dx) = (b.nrows(), b.ncols());
    let q = QuadraticForm::new(dx, dy).with_a(a).unwrap().with_b(b).unwrap().with_p(p).unwrap();
    q.with_c(rand_vec(r, dy)).unwrap().with_d(rand_vec(r, dx)).unwrap()
}

/// A form with every term present, all drawn.
fn full_form(r: &mut impl Rng, dx: usize, dy: usize) -> QuadraticForm {
    let (a, b, p) = (rand_sym(r, dy), rand_mat(r, dy, dx), rand_sym(r, dx));
    form_with(r, a, b, p)
}

#[test]
fn quadratic_form_derivatives_match_finite_differences() {
    let mut r = rng(1);
    let (dx, dy) = (7, 5);
    let q = full_form(&mut r, dx, dy);
    let (x, y, vy) = (rand_vec(&mut r, dx), rand_vec(&mut r, dy), rand_vec(&mut r, dy));
    let h = 1e-5;

    let grad_y = |x: &[f64], y: &[f64]| {
        let mut g = vec![0.0; dy];
        q.grad_y(x, y, &mut g);
        g
    };
    let mut gx = vec![0.0; dx];
    q.grad_x(&x, &y, &mut gx);
    assert_close(&gx, &fd_grad(&x, h, |x| q.value(x, &y)), 1e-8, "∂x q");
    assert_close(&grad_y(&x, &y), &fd_grad(&y, h, |y| q.value(&x, y)), 1e-8, "∂y q");

    let mut hv = vec![0.0; dy];
    q.hvp_yy(&vy, &mut hv);
    assert_close(&hv, &fd_dir(&y, &vy, h, |y| grad_y(&x, y)), 1e-8, "∂yy q · v");

    // ∂x∂y q · v = ∂x ⟨∂y q(x, y), v⟩.
    let mut cr = vec![0.0; dx];
    q.cross_xy(&vy, &mut cr);
    let fd = fd_grad(&x, h, |x| ops::dot(&grad_y(x, &y), &vy));
    assert_close(&cr, &fd, 1e-8, "∂x∂y q · v");

    // Closed forms against plain dense loops.
    let (a, b, p) = (q.a().unwrap().matrix().to_owned(), q.b().unwrap().to_owned(), q.p().unwrap().matrix().to_owned());
    let want_gy: Vec<f64> = (0..dy).map(|i| dense_mv(&a, &y)[i] + dense_mv(&b, &x)[i] + q.c().unwrap()[i]).collect();
    assert_close(&grad_y(&x, &y), &want_gy, 1e-13, "A y + B x + c");
    let want_gx: Vec<f64> = (0..dx).map(|j| dense_tmv(&b, &y)[j] + dense_mv(&p, &x)[j] + q.d().unwrap()[j]).collect();
    assert_close(&gx, &want_gx, 1e-13, "Bᵀy + P x + d");

    // The hoisting pair has the bits of grad_y.
    let mut bx_c = vec![0.0; dy];
    q.linear_term_y(&x, &mut bx_c);
    let mut hoisted = vec![0.0; dy];
    q.grad_y_with_linear_term(&y, &bx_c, &mut hoisted);
    assert_bits(&hoisted, &grad_y(&x, &y), "hoisted ∂y q");
}

#[test]
fn quadratic_form_with_absent_terms_is_zero_there() {
    let mut r = rng(2);
    let (dx, dy) = (3, 4);
    let q = QuadraticForm::new(dx, dy).with_c(rand_vec(&mut r, dy)).unwrap();
    let (x, y) = (rand_vec(&mut r, dx), rand_vec(&mut r, dy));
    assert_eq!(q.value(&x, &y), ops::dot(q.c().unwrap(), &y));
    let (mut gy, mut gx, mut hv, mut cr) = (vec![9.0; dy], vec![9.0; dx], vec![9.0; dy], vec![9.0; dx]);
    q.grad_y(&x, &y, &mut gy);
    q.grad_x(&x, &y, &mut gx);
    q.hvp_yy(&y, &mut hv);
    q.cross_xy(&y, &mut cr);
    assert_eq!(gy, q.c().unwrap());
    assert!(gx.iter().chain(&hv).chain(&cr).all(|&v| v == 0.0));
}

#[test]
fn quadratic_b_products_are_bitwise_identical_for_par_and_thread_counts() {
    let mut r = rng(3);
    // 600 × 700 = 420 000 entries: several B_BLOCK blocks, above the parallel threshold.
    let (dx, dy) = (700, 600);
    let b = rand_mat(&mut r, dy, dx);
    let c = rand_vec(&mut r, dy);
    let seq = QuadraticForm::new(dx, dy).with_b(b.clone()).unwrap().with_c(c.clone()).unwrap().with_par(Par::Seq);
    let par = QuadraticForm::new(dx, dy).with_b(b.clone()).unwrap().with_c(c).unwrap();
    assert!(matches!(par.par(), Par::Rayon(_)), "default parallelism above the threshold");
    let (x, y) = (rand_vec(&mut r, dx), rand_vec(&mut r, dy));
    let run = |q: &QuadraticForm, threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| {
            let (mut gy, mut gx, mut cr) = (vec![0.0; dy], vec![0.0; dx], vec![0.0; dx]);
            q.grad_y(&x, &y, &mut gy);
            q.grad_x(&x, &y, &mut gx);
            q.cross_xy(&y, &mut cr);
            (gy, gx, cr)
        })
    };
    let reference = run(&seq, 1);
    assert_close(
        &reference.0,
        &dense_mv(&b, &x).iter().zip(seq.c().unwrap()).map(|(a, b)| a + b).collect::<Vec<_>>(),
        1e-12,
        "B x + c",
    );
    assert_close(&reference.2, &dense_tmv(&b, &y), 1e-12, "Bᵀ y");
    for (q, threads) in [(&seq, 2), (&par, 1), (&par, 2)] {
        let got = run(q, threads);
        assert_bits(&got.0, &reference.0, "∂y q");
        assert_bits(&got.1, &reference.1, "∂x q");
        assert_bits(&got.2, &reference.2, "cross");
    }
}

/// A general quadratic bilevel problem (every term of f and g present) whose L is strongly
/// convex: P_f dominates the other terms of H_L.
fn general_bilevel(r: &mut impl Rng, dx: usize, dy: usize) -> QuadraticBilevel {
    let (a, b, p) = (rand_spd(r, dy, 0.1), rand_mat(r, dy, dx) * 0.1, rand_spd(r, dx, 2.0));
    let f = form_with(r, a, b, p);
    let (a, b, p) = (rand_spd(r, dy, 0.5), rand_mat(r, dy, dx), rand_sym(r, dx));
    let g = form_with(r, a, b, p);
    QuadraticBilevel::new(f, g).unwrap()
}

#[test]
fn quadratic_bilevel_oracles_are_the_forms_derivatives() {
    let mut r = rng(4);
    let (dx, dy) = (6, 4);
    let pb = general_bilevel(&mut r, dx, dy);
    let (x, y, v) = (rand_vec(&mut r, dx), rand_vec(&mut r, dy), rand_vec(&mut r, dy));
    let h = 1e-5;
    let full = Batch::Full;
    let (mut gxf, mut gyf, mut gyg, mut hv, mut cr) =
        (vec![0.0; dx], vec![0.0; dy], vec![0.0; dy], vec![0.0; dy], vec![0.0; dx]);
    pb.grad_x_f(&x, &y, full, &mut gxf);
    pb.grad_y_f(&x, &y, full, &mut gyf);
    pb.grad_y_g(&x, &y, full, &mut gyg);
    pb.hvp(&x, &y, &v, full, &mut hv);
    pb.cross(&x, &y, &v, full, &mut cr);
    assert_close(&gxf, &fd_grad(&x, h, |x| pb.f(x, &y, full)), 1e-8, "∂x f");
    assert_close(&gyf, &fd_grad(&y, h, |y| pb.f(&x, y, full)), 1e-8, "∂y f");
    assert_close(&gyg, &fd_grad(&y, h, |y| pb.g(&x, y, full)), 1e-8, "∂y g");
    let grad_y_g = |x: &[f64], y: &[f64]| {
        let mut o = vec![0.0; dy];
        pb.grad_y_g(x, y, full, &mut o);
        o
    };
    assert_close(&hv, &fd_dir(&y, &v, h, |y| grad_y_g(&x, y)), 1e-8, "∂yy g · v");
    assert_close(&cr, &fd_grad(&x, h, |x| ops::dot(&grad_y_g(x, &y), &v)), 1e-8, "∂x∂y g · v");
}

#[test]
fn quadratic_bilevel_exact_references_are_consistent() {
    let mut r = rng(5);
    let (dx, dy) = (6, 4);
    let pb = general_bilevel(&mut r, dx, dy);
    let ex = pb.exact().expect("the quadratic knows its references");
    let x = rand_vec(&mut r, dx);
    let full = Batch::Full;

    // y* is stationary for g.
    let mut ys = vec![0.0; dy];
    ex.y_star(&x, &mut ys);
    let mut gy = vec![0.0; dy];
    pb.grad_y_g(&x, &ys, full, &mut gy);
    assert!(ops::norm_inf(&gy) < 1e-12, "∂y g(x, y*) = {gy:?}");

    // v* solves ∂yy g · v = ∂y f(x, y*).
    let mut vs = vec![0.0; dy];
    ex.v_star(&x, &mut vs);
    let (mut hv, mut rhs) = (vec![0.0; dy], vec![0.0; dy]);
    pb.hvp(&x, &ys, &vs, full, &mut hv);
    pb.grad_y_f(&x, &ys, full, &mut rhs);
    assert_close(&hv, &rhs, 1e-12, "A_g v* = ∂y f");

    // L(x) = f(x, y*) and ∇L against finite differences of L.
    assert!((ex.value(&x) - pb.f(&x, &ys, full)).abs() < 1e-12);
    let mut hg = vec![0.0; dx];
    ex.hypergradient(&x, &mut hg);
    assert_close(&hg, &fd_grad(&x, 1e-5, |x| ex.value(x)), 1e-7, "∇L");
    // And by the formula ∂x f − ∂x∂y g · v*.
    let (mut dxf, mut cr) = (vec![0.0; dx], vec![0.0; dx]);
    pb.grad_x_f(&x, &ys, full, &mut dxf);
    pb.cross(&x, &ys, &vs, full, &mut cr);
    let want: Vec<f64> = dxf.iter().zip(&cr).map(|(a, b)| a - b).collect();
    assert_close(&hg, &want, 1e-12, "∇L formula");

    // The minimum: ∇L(x*) = 0 and L grows around x*.
    let (xs, ls) = ex.minimum().expect("L is strongly convex here");
    let mut g_at = vec![0.0; dx];
    ex.hypergradient(xs, &mut g_at);
    assert!(ops::norm_inf(&g_at) < 1e-10, "∇L(x*) = {g_at:?}");
    assert!((ex.value(xs) - ls).abs() < 1e-12);
    for _ in 0..5 {
        let dir = rand_vec(&mut r, dx);
        let xp: Vec<f64> = xs.iter().zip(&dir).map(|(a, b)| a + 1e-3 * b).collect();
        assert!(ex.value(&xp) > ls, "L(x* + δ) > L*");
    }
}

#[test]
fn amigo_f1_matches_its_closed_form() {
    let mut r = rng(6);
    let (dx, dy) = (5, 3);
    let (a_f, a_g) = (rand_spd(&mut r, dx, 0.5), rand_spd(&mut r, dy, 0.5));
    let (b_g, c_f) = (rand_mat(&mut r, dy, dx), rand_vec(&mut r, dy));
    let pb = QuadraticBilevel::amigo_f1(a_f.clone(), c_f.clone(), a_g.clone(), b_g.clone()).unwrap();
    // ∇L(x) = A_f x − B_gᵀ A_g⁻¹ C_f, so x* = A_f⁻¹ B_gᵀ A_g⁻¹ C_f (dense faer solves).
    let cf = Mat::from_fn(dy, 1, |i, _| c_f[i]);
    let z = a_g.llt(Side::Lower).unwrap().solve(&cf);
    let want = a_f.llt(Side::Lower).unwrap().solve(b_g.transpose() * &z);
    let want: Vec<f64> = (0..dx).map(|i| want[(i, 0)]).collect();
    let (xs, ls) = pb.exact().unwrap().minimum().unwrap();
    assert_close(xs, &want, 1e-10, "x*");
    // L(x*) = ½ x*ᵀA_f x* + C_fᵀ y*(x*), y* = −A_g⁻¹B_g x*.
    let bx = Mat::from_fn(dy, 1, |i, _| dense_mv(&b_g, xs)[i]);
    let ystar = a_g.llt(Side::Lower).unwrap().solve(&bx);
    let l = 0.5 * ops::dot(xs, &dense_mv(&a_f, xs)) - (0..dy).map(|i| c_f[i] * ystar[(i, 0)]).sum::<f64>();
    assert!((ls - l).abs() < 1e-10 * l.abs().max(1.0), "L* = {ls}, closed form {l}");
}

#[test]
fn quadratic_minimum_is_none_when_l_is_not_convex() {
    let mut r = rng(7);
    let (dx, dy) = (3, 2);
    let mut neg = Mat::<f64>::zeros(dx, dx);
    (0..dx).for_each(|i| neg[(i, i)] = -1.0);
    let f = QuadraticForm::new(dx, dy).with_p(neg).unwrap();
    let g =
        QuadraticForm::new(dx, dy).with_a(rand_spd(&mut r, dy, 1.0)).unwrap().with_b(rand_mat(&mut r, dy, dx)).unwrap();
    let pb = QuadraticBilevel::new(f, g).unwrap();
    assert!(pb.exact().unwrap().minimum().is_none());
}

#[test]
fn inner_gradient_steps_equal_the_per_step_loop() {
    let mut r = rng(8);
    let (dx, dy) = (9, 7);
    let pb = general_bilevel(&mut r, dx, dy);
    let (x, y0) = (rand_vec(&mut r, dx), rand_vec(&mut r, dy));
    let (alpha, steps) = (0.3, 25);
    let mut y_fast = y0.clone();
    let mut work = vec![0.0; dy];
    pb.inner_gradient_steps(&x, &mut y_fast, alpha, StepBatches::full(steps), &mut work);
    let mut y_naive = y0.clone();
    for _ in 0..steps {
        pb.grad_y_g(&x, &y_naive, Batch::Full, &mut work);
        ops::axpy(-alpha, &work, &mut y_naive);
    }
    assert_bits(&y_fast, &y_naive, "hoisted vs per-step");
    assert_ne!(y_fast, y0, "the steps moved y");
    // Through the counting wrapper: same result, `steps` gradient calls.
    let counted = bilevel_kernels::Counted::new(pb);
    let mut y_c = y0.clone();
    counted.inner_gradient_steps(&x, &mut y_c, alpha, StepBatches::full(steps), &mut work);
    assert_bits(&y_c, &y_naive, "counted");
    assert_eq!(counted.counts().grad_y_g, steps as u64);
}

#[test]
fn quadratic_bad_inputs_are_typed_errors() {
    let mut r = rng(9);
    let (dx, dy) = (3, 2);
    let mut nonsym = rand_sym(&mut r, dy);
    nonsym[(0, 1)] += 0.5;
    assert!(matches!(QuadraticForm::new(dx, dy).with_a(nonsym), Err(KernelError::NotSymmetric { .. })));
    assert!(matches!(
        QuadraticForm::new(dx, dy).with_a(rand_sym(&mut r, dy + 1)),
        Err(KernelError::DimensionMismatch { .. })
    ));
    assert!(matches!(
        QuadraticForm::new(dx, dy).with_b(rand_mat(&mut r, dx, dy)),
        Err(KernelError::DimensionMismatch { .. })
    ));
    assert!(matches!(
        QuadraticForm::new(dx, dy).with_p(rand_mat(&mut r, dx, dx + 1)),
        Err(KernelError::DimensionMismatch { .. })
    ));
    assert!(matches!(QuadraticForm::new(dx, dy).with_c(vec![0.0; dy + 1]), Err(KernelError::DimensionMismatch { .. })));
    assert!(matches!(QuadraticForm::new(dx, dy).with_d(vec![f64::NAN; dx]), Err(KernelError::NonFinite { .. })));
    let mut bnan = rand_mat(&mut r, dy, dx);
    bnan[(1, 2)] = f64::INFINITY;
    assert!(matches!(QuadraticForm::new(dx, dy).with_b(bnan), Err(KernelError::NonFinite { .. })));
    let mut anan = rand_sym(&mut r, dy);
    anan[(1, 1)] = f64::NAN;
    assert!(QuadraticForm::new(dx, dy).with_a(anan).is_err());

    // Bilevel: mismatched spaces, A_g missing or not positive definite.
    let g_ok = QuadraticForm::new(dx, dy).with_a(rand_spd(&mut r, dy, 1.0)).unwrap();
    assert!(matches!(
        QuadraticBilevel::new(QuadraticForm::new(dx + 1, dy), g_ok.clone()),
        Err(KernelError::DimensionMismatch { .. })
    ));
    assert!(matches!(
        QuadraticBilevel::new(QuadraticForm::new(dx, dy), QuadraticForm::new(dx, dy)),
        Err(KernelError::InvalidParameter { .. })
    ));
    let mut indefinite = rand_spd(&mut r, dy, 1.0);
    indefinite[(0, 0)] = -5.0;
    let g_bad = QuadraticForm::new(dx, dy).with_a(indefinite).unwrap();
    assert!(matches!(
        QuadraticBilevel::new(QuadraticForm::new(dx, dy), g_bad),
        Err(KernelError::InvalidParameter { .. })
    ));
    assert!(QuadraticBilevel::new(QuadraticForm::new(dx, dy), g_ok).is_ok());
}

// ---------------------------------------------------------------- logistic

/// n × d rows with about a third of the entries zero, labels ±1.
fn logistic_data(r: &mut impl Rng, n: usize, d: usize) -> (Mat<f64>, Vec<f64>) {
    let x = Mat::from_fn(n, d, |_, _| if r.random_bool(0.35) { 0.0 } else { r.random_range(-1.0..1.0) });
    let b = (0..n).map(|_| if r.random_bool(0.5) { 1.0 } else { -1.0 }).collect();
    (x, b)
}

fn designs(x: &Mat<f64>) -> [(&'static str, Design); 2] {
    [
        ("dense", Design::Dense(DenseRows::from_faer(x.as_ref()).unwrap())),
        ("sparse", Design::Sparse(CsrMatrix::from_dense(x.as_ref()).unwrap())),
    ]
}

const HYPERS: [Hyper; 3] = [Hyper::None, Hyper::PerFeature { scale: 0.7 }, Hyper::PerSample { ridge: 0.01 }];

/// Value, ∂θ, ∂λ at (θ, λ) through the public API.
struct Eval<'m> {
    m: &'m LogisticModel,
    ws: std::cell::RefCell<LogisticWorkspace>,
}

impl Eval<'_> {
    fn value(&self, th: &[f64], la: &[f64], b: Batch<'_>) -> f64 {
        let mut ws = self.ws.borrow_mut();
        self.m.point(th, la, b, &mut ws).unwrap().value()
    }
    fn grad(&self, th: &[f64], la: &[f64], b: Batch<'_>) -> Vec<f64> {
        let mut ws = self.ws.borrow_mut();
        let mut g = vec![0.0; self.m.dim()];
        self.m.point(th, la, b, &mut ws).unwrap().grad_theta(&mut g).unwrap();
        g
    }
}

#[test]
fn logistic_derivatives_match_finite_differences() {
    let mut r = rng(10);
    let (n, d) = (40, 6);
    let (x, labels) = logistic_data(&mut r, n, d);
    let rows = [3usize, 7, 7, 12, 0, 39, 21];
    let h = 1e-5;
    for (name, design) in designs(&x) {
        for hyper in HYPERS {
            let m = LogisticModel::new(design.clone(), labels.clone(), hyper).unwrap();
            let ev = Eval { m: &m, ws: m.workspace().into() };
            let theta: Vec<f64> = rand_vec(&mut r, d).iter().map(|t| 2.0 * t).collect();
            let lambda = rand_vec(&mut r, m.dim_lambda());
            let v = rand_vec(&mut r, d);
            for batch in [Batch::Full, Batch::Rows(&rows)] {
                let ctx = format!("{name}, {hyper:?}, {batch:?}");
                let mut ws = m.workspace();
                let (mut g, mut g2, mut hv) = (vec![0.0; d], vec![0.0; d], vec![0.0; d]);
                let (mut gl, mut cr) = (vec![0.0; m.dim_lambda()], vec![0.0; m.dim_lambda()]);
                let (mut pt, value) = m.point_with_grad(&theta, &lambda, batch, &mut ws, &mut g).unwrap();
                pt.grad_theta(&mut g2).unwrap();
                pt.hvp(&v, &mut hv).unwrap();
                pt.grad_lambda(&mut gl).unwrap();
                pt.cross(&v, &mut cr).unwrap();
                assert_eq!(value.to_bits(), pt.value().to_bits(), "{ctx}: fused value");
                assert_bits(&g, &g2, &format!("{ctx}: fused vs separate ∂θ"));

                assert_close(&g, &fd_grad(&theta, h, |t| ev.value(t, &lambda, batch)), 1e-6, &format!("{ctx}: ∂θ"));
                assert_close(&gl, &fd_grad(&lambda, h, |l| ev.value(&theta, l, batch)), 1e-6, &format!("{ctx}: ∂λ"));
                let fd_hv = fd_dir(&theta, &v, h, |t| ev.grad(t, &lambda, batch));
                assert_close(&hv, &fd_hv, 1e-6, &format!("{ctx}: ∂θθ·v"));
                let fd_cr = fd_grad(&lambda, h, |l| ops::dot(&ev.grad(&theta, l, batch), &v));
                assert_close(&cr, &fd_cr, 1e-6, &format!("{ctx}: ∂λ∂θ·v"));

                if let (Hyper::PerSample { .. }, Batch::Rows(rows)) = (hyper, batch) {
                    for i in (0..n).filter(|i| !rows.contains(i)) {
                        assert_eq!((gl[i], cr[i]), (0.0, 0.0), "{ctx}: rows outside the batch are zero");
                    }
                    assert!(gl[7] != 0.0 && cr[7] != 0.0, "{ctx}: the repeated row contributes");
                }
            }
        }
    }
}

#[test]
fn logistic_dense_and_sparse_agree_and_mean_is_over_batch_positions() {
    let mut r = rng(11);
    let (n, d) = (30, 5);
    let (x, labels) = logistic_data(&mut r, n, d);
    let [(_, dense), (_, sparse)] = designs(&x);
    let hyper = Hyper::PerSample { ridge: 0.0 };
    let (md, ms) = (
        LogisticModel::new(dense, labels.clone(), hyper).unwrap(),
        LogisticModel::new(sparse, labels.clone(), hyper).unwrap(),
    );
    let (theta, lambda, v) = (rand_vec(&mut r, d), rand_vec(&mut r, n), rand_vec(&mut r, d));
    let rows = [4usize, 4, 9];
    let (mut wd, mut wsp) = (md.workspace(), ms.workspace());
    let (mut gd, mut gs, mut hd, mut hs) = (vec![0.0; d], vec![0.0; d], vec![0.0; d], vec![0.0; d]);
    let (mut pd, vd) = md.point_with_grad(&theta, &lambda, Batch::Rows(&rows), &mut wd, &mut gd).unwrap();
    let (mut ps, vs) = ms.point_with_grad(&theta, &lambda, Batch::Rows(&rows), &mut wsp, &mut gs).unwrap();
    pd.hvp(&v, &mut hd).unwrap();
    ps.hvp(&v, &mut hs).unwrap();
    assert!((vd - vs).abs() < 1e-14);
    assert_close(&gd, &gs, 1e-14, "∂θ dense vs sparse");
    assert_close(&hd, &hs, 1e-14, "hvp dense vs sparse");
    // The value by hand: (1/3)(2 w_4 ℓ_4 + w_9 ℓ_9).
    let loss = |i: usize| {
        let z: f64 = (0..d).map(|j| x[(i, j)] * theta[j]).sum();
        let s = 1.0 / (1.0 + (-lambda[i]).exp());
        s * (1.0 + (-labels[i] * z).exp()).ln()
    };
    assert!((vd - (2.0 * loss(4) + loss(9)) / 3.0).abs() < 1e-14);
}

#[test]
fn logistic_is_stable_for_huge_margins() {
    let (n, d) = (4, 2);
    // Rows ±e_1; θ = (1e3, 0): margins ±1e3, half the samples right, half wrong.
    let x = Mat::from_fn(n, d, |i, j| {
        if j == 0 {
            if i % 2 == 0 {
                1.0
            } else {
                -1.0
            }
        } else {
            0.5
        }
    });
    let labels = vec![1.0, 1.0, -1.0, -1.0];
    for (name, design) in designs(&x) {
        for hyper in HYPERS {
            let m = LogisticModel::new(design.clone(), labels.clone(), hyper).unwrap();
            let theta = [1e3, 0.0];
            let lambda = vec![0.0; m.dim_lambda()];
            let mut ws = m.workspace();
            let mut g = vec![0.0; d];
            let (mut pt, value) = m.point_with_grad(&theta, &lambda, Batch::Full, &mut ws, &mut g).unwrap();
            let (mut hv, mut cr, mut gl) = (vec![0.0; d], vec![0.0; m.dim_lambda()], vec![0.0; m.dim_lambda()]);
            pt.hvp(&[1.0, 1.0], &mut hv).unwrap();
            pt.cross(&[1.0, 1.0], &mut cr).unwrap();
            pt.grad_lambda(&mut gl).unwrap();
            let all = g.iter().chain(&hv).chain(&cr).chain(&gl);
            assert!(value.is_finite() && all.clone().all(|v| v.is_finite()), "{name} {hyper:?}");
            // Samples 1 and 2 have margin −1e3 (loss 1e3), 0 and 3 margin +1e3 (loss 0).
            let (w, reg) = match hyper {
                Hyper::None => (1.0, 0.0),
                Hyper::PerFeature { scale } => (1.0, 0.5 * scale * 1e6),
                Hyper::PerSample { ridge } => (0.5, ridge * 1e6),
            };
            let want = w * 2.0 * 1e3 / 4.0 + reg;
            assert!((value - want).abs() <= 1e-12 * want, "{name} {hyper:?}: {value} vs {want}");
        }
    }
}

#[test]
fn logistic_parallel_passes_are_bitwise_identical_with_1_and_2_threads() {
    let mut r = rng(12);
    let (n, d) = (2500, 64); // dense nnz 160 000 ≥ PAR_MIN_NNZ
    let (x, labels) = logistic_data(&mut r, n, d);
    let batch_rows: Vec<usize> = (0..2200).map(|k| (k * 7 + k / 3) % n).collect();
    for (name, design) in designs(&x) {
        for hyper in HYPERS {
            // The sparse copy has fewer stored entries: force its threshold low enough.
            let m = LogisticModel::new(design.clone(), labels.clone(), hyper).unwrap().with_par_min_nnz(50_000);
            let seq = m.clone().with_par_min_nnz(usize::MAX);
            let theta: Vec<f64> = rand_vec(&mut r, d).iter().map(|t| 0.3 * t).collect();
            let lambda = rand_vec(&mut r, m.dim_lambda());
            let v = rand_vec(&mut r, d);
            for batch in [Batch::Full, Batch::Rows(&batch_rows)] {
                let run = |model: &LogisticModel, threads: usize| {
                    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                    pool.install(|| {
                        let mut ws = model.workspace();
                        let (mut g, mut g2, mut hv) = (vec![0.0; d], vec![0.0; d], vec![0.0; d]);
                        let (mut gl, mut cr) = (vec![0.0; model.dim_lambda()], vec![0.0; model.dim_lambda()]);
                        let (mut pt, value) = model.point_with_grad(&theta, &lambda, batch, &mut ws, &mut g).unwrap();
                        pt.grad_theta(&mut g2).unwrap();
                        pt.hvp(&v, &mut hv).unwrap();
                        pt.grad_lambda(&mut gl).unwrap();
                        pt.cross(&v, &mut cr).unwrap();
                        (pt.is_parallel(), vec![vec![value], g, g2, hv, gl, cr])
                    })
                };
                let ctx = format!("{name}, {hyper:?}, {batch:?}");
                let (p1, one) = run(&m, 1);
                let (p2, two) = run(&m, 2);
                assert!(p1 && p2, "{ctx}: the parallel path runs");
                for (a, b) in one.iter().zip(&two) {
                    assert_bits(a, b, &ctx);
                }
                let (ps, sequential) = run(&seq, 2);
                assert!(!ps);
                for (a, b) in one.iter().zip(&sequential) {
                    assert_close(a, b, 1e-12, &format!("{ctx}: parallel vs sequential"));
                }
            }
        }
    }
}

#[test]
fn logistic_bad_inputs_are_typed_errors() {
    let mut r = rng(13);
    let (n, d) = (10, 3);
    let (x, labels) = logistic_data(&mut r, n, d);
    let design = Design::Dense(DenseRows::from_faer(x.as_ref()).unwrap());
    let mut bad = labels.clone();
    bad[4] = 0.0;
    assert!(matches!(LogisticModel::new(design.clone(), bad, Hyper::None), Err(KernelError::InvalidData { .. })));
    let mut bad = labels.clone();
    bad[0] = 2.0;
    assert!(matches!(LogisticModel::new(design.clone(), bad, Hyper::None), Err(KernelError::InvalidData { .. })));
    assert!(matches!(
        LogisticModel::new(design.clone(), labels[..n - 1].to_vec(), Hyper::None),
        Err(KernelError::DimensionMismatch { .. })
    ));
    assert!(LogisticModel::new(design.clone(), labels.clone(), Hyper::PerFeature { scale: 0.0 }).is_err());
    assert!(LogisticModel::new(design.clone(), labels.clone(), Hyper::PerSample { ridge: -1.0 }).is_err());
    assert!(LogisticModel::new(design.clone(), labels.clone(), Hyper::PerSample { ridge: f64::NAN }).is_err());

    let m = LogisticModel::new(design.clone(), labels.clone(), Hyper::PerSample { ridge: 1e-3 }).unwrap();
    let (theta, lambda) = (vec![0.1; d], vec![0.0; n]);
    let mut ws = m.workspace();
    let dim = |e: Result<_, KernelError>| matches!(e, Err(KernelError::DimensionMismatch { .. }));
    assert!(dim(m.point(&theta[..d - 1], &lambda, Batch::Full, &mut ws).map(|_| ())));
    assert!(dim(m.point(&theta, &lambda[..n - 1], Batch::Full, &mut ws).map(|_| ())));
    let nan = [0.1, f64::NAN, 0.1];
    assert!(matches!(m.point(&nan, &lambda, Batch::Full, &mut ws).map(|_| ()), Err(KernelError::NonFinite { .. })));
    assert!(matches!(
        m.point(&theta, &lambda, Batch::Rows(&[1, n]), &mut ws).map(|_| ()),
        Err(KernelError::InvalidData { .. })
    ));
    assert!(matches!(
        m.point(&theta, &lambda, Batch::Rows(&[]), &mut ws).map(|_| ()),
        Err(KernelError::InvalidParameter { .. })
    ));
    let long = vec![0usize; n + 1];
    assert!(matches!(
        m.point(&theta, &lambda, Batch::Rows(&long), &mut ws).map(|_| ()),
        Err(KernelError::InvalidParameter { .. })
    ));
    let mut big = LogisticWorkspace::with_capacity(&m, n + 1);
    assert!(m.point(&theta, &lambda, Batch::Rows(&long), &mut big).is_ok());
    {
        let mut pt = m.point(&theta, &lambda, Batch::Full, &mut ws).unwrap();
        assert!(dim(pt.hvp(&[1.0; 2], &mut [0.0; 3])));
        assert!(dim(pt.hvp(&[1.0; 3], &mut [0.0; 4])));
        assert!(dim(pt.cross(&[1.0; 3], &mut [0.0; 3])));
        assert!(dim(pt.grad_lambda(&mut [0.0; 3])));
        assert!(dim(pt.grad_theta(&mut [0.0; 2])));
    }
    let mut g = [0.0; 2];
    assert!(dim(m.point_with_grad(&theta, &lambda, Batch::Full, &mut ws, &mut g).map(|_| ())));
    // A workspace of another model's dimension.
    let other = LogisticModel::new(
        Design::Dense(DenseRows::new(n, d + 1, vec![0.5; n * (d + 1)]).unwrap()),
        labels.clone(),
        Hyper::None,
    )
    .unwrap();
    let mut ws_other = other.workspace();
    assert!(dim(m.point(&theta, &lambda, Batch::Full, &mut ws_other).map(|_| ())));
    // exp(λ) overflow in the per-feature form.
    let pf = LogisticModel::new(design, labels, Hyper::per_feature_benchopt()).unwrap();
    let mut ws = pf.workspace();
    assert!(matches!(
        pf.point(&theta, &[0.0, 800.0, 0.0], Batch::Full, &mut ws).map(|_| ()),
        Err(KernelError::InvalidParameter { .. })
    ));
}

#[test]
fn dense_sym_is_what_quadratic_forms_apply() {
    // Sanity link between the form and the operator it stores.
    let mut r = rng(14);
    let a = rand_sym(&mut r, 5);
    let q = QuadraticForm::new(1, 5).with_a(a.clone()).unwrap();
    let v = rand_vec(&mut r, 5);
    let (mut o1, mut o2) = (vec![0.0; 5], vec![0.0; 5]);
    q.hvp_yy(&v, &mut o1);
    DenseSym::new(a).unwrap().apply(&v, &mut o2);
    assert_bits(&o1, &o2, "hvp_yy = DenseSym::apply");
}
