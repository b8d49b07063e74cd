//! Tests of the quadratic generators: spectra as asked, exact references against finite
//! differences and optimality conditions, seeding, the stochastic oracles against their means,
//! the two storage layouts, and loading a quadratic back from arrays.

use bilevel_data::quadratic::{
    self, gaussian_x0, haar_orthonormal, spectrum, Config, CrossLaw, QuadraticProblem, Spacing,
};
use bilevel_data::stochastic_quadratic::{self as sq, Layout, SampleHessian};
use bilevel_data::{Array, ArrayData, Dataset};
use bilevel_kernels::{Batch, BilevelProblem, KernelError, StepBatches};
use faer::{Mat, Side};
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use rand_xoshiro::Xoshiro256PlusPlus;

fn randn(n: usize, rng: &mut Xoshiro256PlusPlus) -> Vec<f64> {
    (0..n).map(|_| rng.sample(StandardNormal)).collect()
}
fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
fn norm(a: &[f64]) -> f64 {
    dot(a, a).sqrt()
}
fn add(a: &[f64], s: f64, b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(x, y)| x + s * y).collect()
}
fn rel_diff(a: &[f64], b: &[f64]) -> f64 {
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    norm(&d) / norm(b).max(1e-300)
}
fn mat_of(a: &Array) -> Mat<f64> {
    let ArrayData::F64(v) = &a.data else { panic!("f64 array expected") };
    let (r, c) = (a.shape[0], a.shape[1]);
    Mat::from_fn(r, c, |i, j| v[i * c + j])
}
fn array<'a>(arrays: &'a [Array], name: &str) -> &'a Array {
    arrays.iter().find(|a| a.name == name).unwrap_or_else(|| panic!("no array {name}"))
}
fn f64s(a: &Array) -> &[f64] {
    let ArrayData::F64(v) = &a.data else { panic!("f64 array expected") };
    v
}
/// Eigenvalues through faer's public solver (independent of the generator's own measurement).
fn eig(m: &Mat<f64>) -> Vec<f64> {
    m.self_adjoint_eigenvalues(Side::Lower).unwrap()
}
fn bits(arrays: &[Array]) -> Vec<(String, Vec<usize>, Vec<u64>)> {
    arrays.iter().map(|a| (a.name.clone(), a.shape.clone(), f64s(a).iter().map(|v| v.to_bits()).collect())).collect()
}

fn tiny(kappa_g: f64) -> Config {
    Config { kappa_g, ..Config::preset("tiny").unwrap() }
}

// ---------------------------------------------------------------- deterministic quadratic

#[test]
fn spectrum_law_has_exact_end_points_and_constant_ratio_or_step() {
    let s = spectrum(1e-3, 2.0, 7, Spacing::Log);
    assert_eq!((s[0], s[6]), (1e-3, 2.0));
    let r = s[1] / s[0];
    assert!(s.windows(2).all(|w| ((w[1] / w[0]) / r - 1.0).abs() < 1e-12), "{s:?}");
    assert!(((r.powi(6)) / 2000.0 - 1.0).abs() < 1e-12);
    let s = spectrum(0.5, 2.0, 4, Spacing::Linear);
    assert_eq!(s, vec![0.5, 1.0, 1.5, 2.0]);
    assert_eq!(spectrum(0.1, 1.0, 1, Spacing::Log), vec![1.0]);
}

#[test]
fn haar_matrices_have_orthonormal_columns() {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
    for (n, k) in [(12, 12), (40, 7), (1, 1)] {
        let q = haar_orthonormal(n, k, &mut rng).unwrap();
        let g = q.transpose() * &q;
        let err = (0..k)
            .flat_map(|i| (0..k).map(move |j| (i, j)))
            .map(|(i, j)| (g[(i, j)] - if i == j { 1.0 } else { 0.0 }).abs());
        assert!(err.fold(0.0, f64::max) < 1e-13);
    }
    assert!(haar_orthonormal(3, 4, &mut rng).is_err());
}

#[test]
fn generated_spectra_and_measured_condition_numbers_match_the_request() {
    for kappa_g in [1.0, 10.0, 1e3, 1e7] {
        let p = quadratic::generate(&tiny(kappa_g), 7).unwrap();
        let arrays = p.arrays();
        for (name, kappa, measured, dim) in [("A_g", kappa_g, p.measured_g(), 10), ("A_f", 10.0, p.measured_f(), 20)] {
            let want = spectrum(1.0 / kappa, 1.0, dim, Spacing::Log);
            let got = eig(&mat_of(array(&arrays, name)));
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() < 1e-13, "{name} κ={kappa}: eigenvalue {g} vs {w}");
            }
            for (g, w) in measured.eigenvalues.iter().zip(&want) {
                assert!((g - w).abs() < 1e-13, "{name} κ={kappa}: measured {g} vs {w}");
            }
            assert!((measured.kappa / kappa - 1.0).abs() < 1e-6, "{name}: κ measured {} vs {kappa}", measured.kappa);
            assert!((measured.l - 1.0).abs() < 1e-13);
        }
        let params = p.parameters();
        let kg = params["measured_g"]["kappa"].as_f64().unwrap();
        assert!((kg / kappa_g - 1.0).abs() < 1e-6);
    }
    // Linear spacing and other scales.
    let cfg = Config { spacing: Spacing::Linear, l_g: 2.0, kappa_g: 4.0, ..tiny(1.0) };
    let p = quadratic::generate(&cfg, 1).unwrap();
    let want = spectrum(0.5, 2.0, 10, Spacing::Linear);
    for (g, w) in p.measured_g().eigenvalues.iter().zip(&want) {
        assert!((g - w).abs() < 1e-13, "{g} vs {w}");
    }
}

#[test]
fn hypergradient_equals_central_finite_differences_of_the_value_function() {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(11);
    for (kappa_g, cross) in [(1e3, CrossLaw::HessianTimesGaussian), (10.0, CrossLaw::Gaussian)] {
        let p = quadratic::generate(&Config { cross, ..tiny(kappa_g) }, 2).unwrap();
        let ex = p.exact().unwrap();
        let x = p.x0(5);
        let mut grad = vec![0.0; 20];
        ex.hypergradient(&x, &mut grad);
        for _ in 0..3 {
            let d = randn(20, &mut rng);
            let h = 1e-3;
            let fd = (ex.value(&add(&x, h, &d)) - ex.value(&add(&x, -h, &d))) / (2.0 * h);
            let an = dot(&grad, &d);
            assert!((fd - an).abs() <= 1e-7 * an.abs().max(norm(&grad) * norm(&d)), "fd {fd} vs {an}");
        }
    }
}

#[test]
fn y_star_zeroes_the_inner_gradient_and_v_star_solves_the_adjoint_system() {
    for kappa_g in [1.0, 1e3, 1e7] {
        let p = quadratic::generate(&tiny(kappa_g), 4).unwrap();
        let ex = p.exact().unwrap();
        let x = p.x0(1);
        let (mut y, mut v, mut r, mut bx) = (vec![0.0; 10], vec![0.0; 10], vec![0.0; 10], vec![0.0; 10]);
        ex.y_star(&x, &mut y);
        p.grad_y_g(&x, &y, Batch::Full, &mut r);
        p.grad_y_g(&x, &[0.0; 10], Batch::Full, &mut bx); // = B_g x
                                                          // Backward-error bound of a Cholesky solve (‖A_g‖ = 1): ‖A y − b‖ ≲ n·ε·(‖y‖ + ‖b‖).
        assert!(norm(&r) <= 1e-13 * (norm(&y) + norm(&bx)), "κ={kappa_g}: ‖∂y g(x, y*)‖ = {}", norm(&r));
        ex.v_star(&x, &mut v);
        p.hvp(&x, &y, &v, Batch::Full, &mut r); // A_g v*
        let mut gf = vec![0.0; 10];
        p.grad_y_f(&x, &y, Batch::Full, &mut gf); // = C_f
        let res: Vec<f64> = r.iter().zip(&gf).map(|(a, b)| a - b).collect();
        assert!(norm(&res) <= 1e-13 * (norm(&v) + norm(&gf)), "κ={kappa_g}: ‖A_g v* − ∂y f‖ = {}", norm(&res));
        assert_eq!(gf, p.c_f());
    }
}

#[test]
fn x_star_is_stationary_and_minimal() {
    for kappa_g in [1.0, 1e3] {
        let p = quadratic::generate(&tiny(kappa_g), 9).unwrap();
        let ex = p.exact().unwrap();
        let (x_star, l_star) = p.minimum();
        let mut g = vec![0.0; 20];
        let mut g0 = vec![0.0; 20];
        ex.hypergradient(x_star, &mut g);
        ex.hypergradient(&[0.0; 20], &mut g0);
        assert!(norm(&g) <= 1e-12 * norm(&g0), "‖∇L(x*)‖ = {}", norm(&g));
        assert!((ex.value(x_star) - l_star).abs() <= 1e-12 * l_star.abs());
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
        for _ in 0..3 {
            let d = randn(20, &mut rng);
            assert!(ex.value(&add(x_star, 1e-2, &d)) > l_star);
        }
    }
}

#[test]
fn default_cross_law_makes_the_outer_problem_independent_of_kappa_g() {
    // B_g = A_g G: y*(x) = −G x and x* = A_f⁻¹GᵀC_f, whatever κ_g (same seed, same G and C_f).
    let a = quadratic::generate(&tiny(10.0), 3).unwrap();
    let b = quadratic::generate(&tiny(1e6), 3).unwrap();
    assert!(rel_diff(a.minimum().0, b.minimum().0) < 1e-8);
    assert_eq!(a.c_f(), b.c_f());
}

#[test]
fn same_seed_gives_identical_bits_and_different_seeds_differ() {
    let cfg = tiny(100.0);
    let (a, b, c) = (
        quadratic::generate(&cfg, 5).unwrap(),
        quadratic::generate(&cfg, 5).unwrap(),
        quadratic::generate(&cfg, 6).unwrap(),
    );
    assert_eq!(bits(&a.arrays()), bits(&b.arrays()));
    for (x, y) in a.arrays().iter().zip(c.arrays()) {
        assert_ne!(f64s(x), f64s(&y), "{} equal across seeds", x.name);
    }
    assert_eq!(a.x0(3), b.x0(3));
    assert_ne!(a.x0(3), a.x0(4));
    assert_eq!(a.x0(3), gaussian_x0(20, 3));
}

#[test]
fn from_arrays_round_trips() {
    let p = quadratic::generate(&tiny(1e3), 8).unwrap();
    let q = QuadraticProblem::from_arrays(p.parameters(), &p.arrays()).unwrap();
    assert_eq!(bits(&p.arrays()), bits(&q.arrays()));
    assert_eq!(p.measured_g(), q.measured_g());
    assert_eq!(q.parameters()["seed"], p.parameters()["seed"]);
    let x = p.x0(0);
    let (mut a, mut b) = (vec![0.0; 20], vec![0.0; 20]);
    p.exact().unwrap().hypergradient(&x, &mut a);
    q.exact().unwrap().hypergradient(&x, &mut b);
    assert_eq!(a, b);
    // C_f as a column and integer arrays are accepted.
    let mut arrays = p.arrays();
    let c = arrays.iter_mut().find(|a| a.name == "C_f").unwrap();
    c.shape = vec![10, 1];
    assert!(QuadraticProblem::from_arrays(Default::default(), &arrays).is_ok());
    let eye = |n: usize| Array::i64("A_f", vec![n, n], (0..n * n).map(|k| (k % (n + 1) == 0) as i64).collect());
    let mut arrays = p.arrays();
    arrays.retain(|a| a.name != "A_f");
    arrays.push(eye(20));
    let q = QuadraticProblem::from_arrays(Default::default(), &arrays).unwrap();
    assert_eq!(q.measured_f().kappa, 1.0);
}

fn expect_invalid_data(arrays: &[Array], needle: &str) {
    match QuadraticProblem::from_arrays(Default::default(), arrays) {
        Err(KernelError::InvalidData { reason, .. }) => assert!(reason.contains(needle), "`{reason}` lacks `{needle}`"),
        Err(e) => panic!("expected InvalidData mentioning `{needle}`, got {e}"),
        Ok(_) => panic!("accepted bad input (expected `{needle}`)"),
    }
}

#[test]
fn from_arrays_rejects_bad_input() {
    let p = quadratic::generate(&tiny(10.0), 1).unwrap();
    let base = p.arrays();
    let edit = |name: &str, f: &dyn Fn(&mut Array)| {
        let mut a = base.clone();
        f(a.iter_mut().find(|x| x.name == name).unwrap());
        a
    };
    // Missing arrays.
    for name in ["A_f", "C_f", "A_g", "B_g"] {
        let a: Vec<Array> = base.iter().filter(|x| x.name != name).cloned().collect();
        expect_invalid_data(&a, &format!("missing array `{name}`"));
    }
    // Wrong shapes.
    expect_invalid_data(&edit("B_g", &|a| a.shape = vec![20, 10]), "`B_g` has shape");
    expect_invalid_data(&edit("C_f", &|a| a.shape = vec![5, 2]), "`C_f` has shape");
    expect_invalid_data(&edit("A_f", &|a| a.shape = vec![400]), "`A_f` must be a 2-d array");
    expect_invalid_data(&edit("A_f", &|a| a.shape = vec![40, 10]), "`A_f` must be square");
    expect_invalid_data(
        &edit("A_g", &|a| {
            a.shape = vec![10, 10];
            a.data = ArrayData::F64(vec![1.0; 99]);
        }),
        "`A_g` holds 99 values",
    );
    // Non-symmetric, non-positive-definite, non-finite.
    expect_invalid_data(
        &edit("A_g", &|a| {
            let ArrayData::F64(v) = &mut a.data else { unreachable!() };
            v[1] += 1e-3;
        }),
        "`A_g` is not symmetric",
    );
    for name in ["A_g", "A_f"] {
        expect_invalid_data(
            &edit(name, &|a| {
                let n = a.shape[0];
                let ArrayData::F64(v) = &mut a.data else { unreachable!() };
                (0..n).for_each(|i| v[i * n + i] -= 0.5);
            }),
            &format!("`{name}` is not positive definite"),
        );
    }
    expect_invalid_data(
        &edit("B_g", &|a| {
            let ArrayData::F64(v) = &mut a.data else { unreachable!() };
            v[3] = f64::NAN;
        }),
        "`B_g` has a non-finite value at [0, 3]",
    );
}

#[test]
fn invalid_configs_are_rejected() {
    let bad = [
        Config { kappa_g: 0.5, ..tiny(1.0) },
        Config { kappa_g: f64::NAN, ..tiny(1.0) },
        Config { kappa_f: 1e13, ..tiny(1.0) },
        Config { dim_x: 0, ..tiny(1.0) },
        Config { l_g: -1.0, ..tiny(1.0) },
    ];
    for cfg in bad {
        assert!(matches!(quadratic::generate(&cfg, 0), Err(KernelError::InvalidParameter { .. })), "{cfg:?}");
    }
    assert!(Config::preset("huge").is_err());
    assert_eq!(Config::preset("paper").unwrap(), Config::default());
    assert!(Spacing::parse("cubic").is_err() && Spacing::parse("linear") == Ok(Spacing::Linear));
}

// ---------------------------------------------------------------- stochastic quadratic

/// The `tiny` preset (per-sample strongly convex) with `layout`.
fn sq_tiny(layout: Layout) -> sq::Config {
    sq::Config { layout, ..sq::Config::preset("tiny").unwrap() }
}

/// Both sample forms: the preset's h_i h_iᵀ + µI and benchopt's rank-one h_i h_iᵀ.
const FORMS: [SampleHessian; 2] = [SampleHessian::StronglyConvex, SampleHessian::RankOne];

/// [`sq_tiny`] with the sample form `form`.
fn sq_tiny_form(layout: Layout, form: SampleHessian) -> sq::Config {
    sq::Config { sample_hessian: form, ..sq_tiny(layout) }
}

#[test]
fn stochastic_mean_spectra_are_exactly_the_prescribed_ones() {
    for (mu, form) in FORMS.iter().flat_map(|&f| [(0.1, f), (1e-3, f)]) {
        let cfg = sq::Config { mu, ..sq_tiny_form(Layout::RankOne, form) };
        let s = cfg.sample_mu();
        let p = sq::generate(&cfg, 3).unwrap();
        let (n, dx, dy) = (32, 4, 8);
        let arrays = p.arrays();
        // Mean of the stored rank-one factors, computed here from the exported arrays.
        let mean = |name: &str, d: usize| {
            let h = mat_of(array(&arrays, name));
            let n = if name.starts_with("f_") { 16 } else { n };
            assert_eq!((h.nrows(), h.ncols()), (n, d));
            h.transpose() * &h * (1.0 / n as f64)
        };
        // The rank-one parts average to A_g − sI: spectrum λ_y − s (one zero eigenvalue when
        // s = µ), so that the mean sample Hessian h_i h_iᵀ + sI has the prescribed λ_y.
        let want_y = spectrum(mu, 1.0, dy, Spacing::Log);
        for (g, w) in eig(&mean("g_hess_y_factors", dy)).iter().zip(&want_y) {
            assert!((g - (w - s)).abs() < 1e-13, "{form:?}: mean h hᵀ eigenvalue {g} vs {w} − {s}");
        }
        let a_g = p.reference().lower().a().unwrap().matrix().to_owned();
        for (g, w) in eig(&a_g).iter().zip(&want_y) {
            assert!((g - w).abs() < 1e-13, "{form:?}: mean ∂yy g eigenvalue {g} vs {w}");
        }
        // f's samples are never shifted.
        for (g, w) in eig(&mean("f_hess_y_factors", dy)).iter().zip(&want_y) {
            assert!((g - w).abs() < 1e-13, "{form:?}: mean f h hᵀ eigenvalue {g} vs {w}");
        }
        let mut want_x = vec![0.0];
        want_x.extend(spectrum(mu, 1.0, dx - 1, Spacing::Log));
        for (g, w) in eig(&mean("g_hess_x_factors", dx)).iter().zip(&want_x) {
            assert!((g - w).abs() < 1e-13, "mean p pᵀ eigenvalue {g} vs {w}");
        }
        // Cross: (1/n) Σ w_i u_iᵀ has singular values spectrum(µ, 0.1, min(d_x, d_y)).
        let (w, u) = (mat_of(array(&arrays, "g_cross_y_factors")), mat_of(array(&arrays, "g_cross_x_factors")));
        let c = w.transpose() * &u * (1.0 / n as f64);
        let mut sv = c.singular_values().unwrap();
        sv.reverse();
        for (g, w) in sv.iter().zip(spectrum(mu, 0.1, dx, Spacing::Log)) {
            assert!((g - w).abs() < 1e-13, "cross singular value {g} vs {w}");
        }
        assert!((p.measured_g().kappa / (1.0 / mu) - 1.0).abs() < 1e-9);
        assert!((p.measured_f().kappa / (1.0 / mu) - 1.0).abs() < 1e-9);
        assert!(p.measured_value().mu >= sq::MIN_VALUE_EIGENVALUE && p.tries() >= 1);
    }
}

fn batch_cases(p: &sq::StochasticQuadratic, rng: &mut Xoshiro256PlusPlus) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    (randn(p.dim_x(), rng), randn(p.dim_y(), rng), randn(p.dim_y(), rng))
}

/// Runs `check` on the tiny problem of each layout and sample form (seed `seed`) at a random (x, y, v) from
/// [`batch_cases`]; `check` may draw more from `rng`.
fn for_each_layout(
    seed: u64,
    rng: &mut Xoshiro256PlusPlus,
    mut check: impl FnMut(Layout, &sq::StochasticQuadratic, (Vec<f64>, Vec<f64>, Vec<f64>), &mut Xoshiro256PlusPlus),
) {
    for form in FORMS {
        for layout in [Layout::RankOne, Layout::Dense] {
            let p = sq::generate(&sq_tiny_form(layout, form), seed).unwrap();
            let case = batch_cases(&p, rng);
            check(layout, &p, case, rng);
        }
    }
}

/// All oracles of `p` on `batch`: (f, g, ∂x f, ∂y f, ∂y g, hvp, cross).
fn oracles(p: &dyn BilevelProblem, x: &[f64], y: &[f64], v: &[f64], bf: Batch, bg: Batch) -> Vec<Vec<f64>> {
    let (dx, dy) = (p.dim_x(), p.dim_y());
    let (mut gxf, mut gyf, mut gyg, mut hv, mut cr) =
        (vec![0.0; dx], vec![0.0; dy], vec![0.0; dy], vec![0.0; dy], vec![0.0; dx]);
    p.grad_x_f(x, y, bf, &mut gxf);
    p.grad_y_f(x, y, bf, &mut gyf);
    p.grad_y_g(x, y, bg, &mut gyg);
    p.hvp(x, y, v, bg, &mut hv);
    p.cross(x, y, v, bg, &mut cr);
    vec![vec![p.f(x, y, bf)], vec![p.g(x, y, bg)], gxf, gyf, gyg, hv, cr]
}

#[test]
fn minibatch_oracles_over_all_samples_equal_the_full_batch_oracles() {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(2);
    for_each_layout(1, &mut rng, |layout, p, (x, y, v), _| {
        let (all_f, all_g): (Vec<usize>, Vec<usize>) = ((0..16).collect(), (0..32).collect());
        let full = oracles(p, &x, &y, &v, Batch::Full, Batch::Full);
        let rows = oracles(p, &x, &y, &v, Batch::Rows(&all_f), Batch::Rows(&all_g));
        for (k, (a, b)) in rows.iter().zip(&full).enumerate() {
            assert!(rel_diff(a, b) < 1e-12, "{layout:?} oracle {k}: {a:?} vs {b:?}");
        }
        // The mean of single-sample oracles is the full-batch oracle too (unbiasedness).
        let mut mean_hvp = vec![0.0; 8];
        let mut out = vec![0.0; 8];
        for i in 0..32 {
            p.hvp(&x, &y, &v, Batch::Rows(&[i]), &mut out);
            mean_hvp = add(&mean_hvp, 1.0 / 32.0, &out);
        }
        assert!(rel_diff(&mean_hvp, &full[5]) < 1e-12);
    });
}

#[test]
fn full_batch_hvp_equals_the_dense_mean_matrix_product() {
    for form in FORMS {
        let cfg = sq_tiny_form(Layout::RankOne, form);
        let p = sq::generate(&cfg, 4).unwrap();
        let arrays = p.arrays();
        let h = mat_of(array(&arrays, "g_hess_y_factors"));
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(9);
        let v = randn(8, &mut rng);
        // (1/n) Σ_i (h_i (h_iᵀ v) + s v), by a plain loop over the exported factors.
        let mut want = vec![0.0; 8];
        for i in 0..32 {
            let hi: Vec<f64> = (0..8).map(|j| h[(i, j)]).collect();
            want = add(&want, dot(&hi, &v) / 32.0, &hi);
            want = add(&want, cfg.sample_mu() / 32.0, &v);
        }
        let mut got = vec![0.0; 8];
        p.hvp(&[0.0; 4], &[0.0; 8], &v, Batch::Full, &mut got);
        assert!(rel_diff(&got, &want) < 1e-13, "{form:?}");
        let a = p.reference().lower().a().unwrap().matrix();
        let av: Vec<f64> = (0..8).map(|i| (0..8).map(|j| a[(i, j)] * v[j]).sum()).collect();
        assert!(rel_diff(&av, &want) < 1e-13, "{form:?}");
    }
}

#[test]
fn dense_and_rank_one_layouts_agree() {
    for form in FORMS {
        let (r, d) = (
            sq::generate(&sq_tiny_form(Layout::RankOne, form), 6).unwrap(),
            sq::generate(&sq_tiny_form(Layout::Dense, form), 6).unwrap(),
        );
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(4);
        let (x, y, v) = batch_cases(&r, &mut rng);
        let (bf, bg) = (vec![3, 0, 15, 3], vec![31, 7, 8, 2, 2]);
        let a = oracles(&r, &x, &y, &v, Batch::Rows(&bf), Batch::Rows(&bg));
        let b = oracles(&d, &x, &y, &v, Batch::Rows(&bf), Batch::Rows(&bg));
        for (k, (a, b)) in a.iter().zip(&b).enumerate() {
            assert!(rel_diff(a, b) < 1e-13, "{form:?} oracle {k}");
        }
        // The dense arrays are the outer products of the rank-one factors (+ sI for g's y-Hessians).
        let (ra, da) = (r.arrays(), d.arrays());
        let (h, a_i) = (mat_of(array(&ra, "f_hess_y_factors")), f64s(array(&da, "f_hess_y")));
        assert_eq!(array(&da, "f_hess_y").shape, vec![16, 8, 8]);
        assert_eq!(a_i[(5 * 8 + 2) * 8 + 6], h[(5, 2)] * h[(5, 6)]);
        assert_eq!(a_i[(5 * 8 + 2) * 8 + 2], h[(5, 2)] * h[(5, 2)]);
        let (h, a_i) = (mat_of(array(&ra, "g_hess_y_factors")), f64s(array(&da, "g_hess_y")));
        assert_eq!(a_i[(5 * 8 + 2) * 8 + 6], h[(5, 2)] * h[(5, 6)]);
        assert_eq!(a_i[(5 * 8 + 2) * 8 + 2], h[(5, 2)] * h[(5, 2)] + r.config().sample_mu());
        // Same means, same references, bit for bit.
        assert_eq!(f64s(array(&ra, "x_star")), f64s(array(&da, "x_star")));
    }
}

#[test]
fn inner_steps_take_a_fresh_batch_per_step_and_count_its_samples() {
    let p = bilevel_kernels::Counted::new(sq::generate(&sq_tiny(Layout::RankOne), 3).unwrap());
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(5);
    let (x, y0, _) = batch_cases(p.inner(), &mut rng);
    let rows = [3, 30, 7, 7, 0, 12];
    let (alpha, mut work) = (0.3, vec![0.0; 8]);
    // Three steps of two samples each, by hand: step t on rows[2t..2t+2].
    let mut want = y0.clone();
    for t in 0..3 {
        p.inner().grad_y_g(&x, &want, Batch::Rows(&rows[2 * t..2 * t + 2]), &mut work);
        want = add(&want, -alpha, &work);
    }
    let mut got = y0.clone();
    p.inner_gradient_steps(&x, &mut got, alpha, StepBatches::Chunks { rows: &rows, size: 2 }, &mut work);
    assert!(rel_diff(&got, &want) < 1e-14, "{got:?} vs {want:?}");
    let c = p.counts();
    assert_eq!((c.grad_y_g, c.samples_g), (3, 6));
    // The same batch for every step is a different loop: the chunks are really used.
    let mut same = y0.clone();
    p.inner_gradient_steps(
        &x,
        &mut same,
        alpha,
        StepBatches::Same { batch: Batch::Rows(&rows[..2]), steps: 3 },
        &mut work,
    );
    assert!(rel_diff(&same, &got) > 1e-6);
    // The full-batch loop hoists B x + c and equals the per-step full-batch loop to rounding.
    let (mut hoisted, mut looped) = (y0.clone(), y0.clone());
    p.inner_gradient_steps(&x, &mut hoisted, alpha, StepBatches::full(4), &mut work);
    for _ in 0..4 {
        p.inner().grad_y_g(&x, &looped, Batch::Full, &mut work);
        looped = add(&looped, -alpha, &work);
    }
    assert!(rel_diff(&hoisted, &looped) < 1e-13);
}

#[test]
fn minibatch_derivatives_match_finite_differences() {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(8);
    for_each_layout(2, &mut rng, |_, p, (x, y, v), rng| {
        let (dx_dir, dy_dir) = (randn(4, rng), randn(8, rng));
        let (bf, bg) = (vec![1, 4, 9], vec![0, 5, 5, 30]);
        let (bf, bg) = (Batch::Rows(&bf), Batch::Rows(&bg));
        let h = 1e-4;
        let fd = |fun: &dyn Fn(f64) -> f64| (fun(h) - fun(-h)) / (2.0 * h);
        let check =
            |name: &str, fd: f64, an: f64| assert!((fd - an).abs() <= 1e-7 * (1.0 + an.abs()), "{name}: {fd} vs {an}");
        let (mut gx, mut gy, mut gg, mut hv, mut cr) =
            (vec![0.0; 4], vec![0.0; 8], vec![0.0; 8], vec![0.0; 8], vec![0.0; 4]);
        p.grad_x_f(&x, &y, bf, &mut gx);
        p.grad_y_f(&x, &y, bf, &mut gy);
        p.grad_y_g(&x, &y, bg, &mut gg);
        p.hvp(&x, &y, &v, bg, &mut hv);
        p.cross(&x, &y, &v, bg, &mut cr);
        check("∂x f", fd(&|t| p.f(&add(&x, t, &dx_dir), &y, bf)), dot(&gx, &dx_dir));
        check("∂y f", fd(&|t| p.f(&x, &add(&y, t, &dy_dir), bf)), dot(&gy, &dy_dir));
        check("∂y g", fd(&|t| p.g(&x, &add(&y, t, &dy_dir), bg)), dot(&gg, &dy_dir));
        let inner = |x: &[f64], y: &[f64]| {
            let mut o = vec![0.0; 8];
            p.grad_y_g(x, y, bg, &mut o);
            dot(&o, &v)
        };
        // ⟨∂yy g · v, dy⟩ = d/dt ⟨∂y g(x, y + t dy), v⟩ and ⟨∂x∂y g · v, dx⟩ = d/dt ⟨∂y g(x + t dx, y), v⟩.
        check("hvp", fd(&|t| inner(&x, &add(&y, t, &dy_dir))), dot(&hv, &dy_dir));
        check("cross", fd(&|t| inner(&add(&x, t, &dx_dir), &y)), dot(&cr, &dx_dir));
        // Empty batch: zeros, not NaN.
        p.hvp(&x, &y, &v, Batch::Rows(&[]), &mut hv);
        assert!(hv.iter().all(|&z| z == 0.0) && p.g(&x, &y, Batch::Rows(&[])) == 0.0);
    });
}

#[test]
fn stochastic_exact_references_are_right() {
    for form in FORMS {
        stochastic_exact_references_are_right_for(form);
    }
}

fn stochastic_exact_references_are_right_for(form: SampleHessian) {
    let p = sq::generate(&sq::Config { mu: 1e-2, ..sq_tiny_form(Layout::RankOne, form) }, 5).unwrap();
    let ex = p.exact().unwrap();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(12);
    let x = p.x0(2);
    let (mut y, mut r, mut grad) = (vec![0.0; 8], vec![0.0; 8], vec![0.0; 4]);
    ex.y_star(&x, &mut y);
    // ∂y g(x, y*) = 0 on the full batch, and as the mean of all samples.
    let all: Vec<usize> = (0..32).collect();
    p.grad_y_g(&x, &y, Batch::Rows(&all), &mut r);
    assert!(norm(&r) < 1e-11 * norm(&y), "{form:?}: ‖∂y g(x, y*)‖ = {}", norm(&r));
    // v* solves ∂yy g · v* = ∂y f at (x, y*), with the mean of the sample HVPs.
    let (mut v, mut hv, mut gyf) = (vec![0.0; 8], vec![0.0; 8], vec![0.0; 8]);
    ex.v_star(&x, &mut v);
    p.hvp(&x, &y, &v, Batch::Rows(&all), &mut hv);
    p.grad_y_f(&x, &y, Batch::Full, &mut gyf);
    assert!(rel_diff(&hv, &gyf) < 1e-11, "{form:?}: ‖H v* − ∂y f‖ / ‖∂y f‖ = {}", rel_diff(&hv, &gyf));
    ex.hypergradient(&x, &mut grad);
    for _ in 0..3 {
        let d = randn(4, &mut rng);
        let h = 1e-3;
        let fd = (ex.value(&add(&x, h, &d)) - ex.value(&add(&x, -h, &d))) / (2.0 * h);
        assert!((fd - dot(&grad, &d)).abs() <= 1e-7 * norm(&grad) * norm(&d), "{fd} vs {}", dot(&grad, &d));
    }
    let (x_star, l_star) = ex.minimum().unwrap();
    ex.hypergradient(x_star, &mut grad);
    let mut g0 = vec![0.0; 4];
    ex.hypergradient(&[0.0; 4], &mut g0);
    assert!(norm(&grad) < 1e-11 * norm(&g0));
    assert!(ex.value(&add(x_star, 0.1, &randn(4, &mut rng))) > l_star);
}

#[test]
fn stochastic_seeding_is_bitwise_reproducible() {
    let cfg = sq_tiny(Layout::RankOne);
    let (a, b, c) = (sq::generate(&cfg, 1).unwrap(), sq::generate(&cfg, 1).unwrap(), sq::generate(&cfg, 2).unwrap());
    assert_eq!(bits(&a.arrays()), bits(&b.arrays()));
    for (x, y) in a.arrays().iter().zip(c.arrays()) {
        assert_ne!(f64s(x), f64s(&y), "{} equal across seeds", x.name);
    }
    assert_eq!(a.parameters(), b.parameters());
}

#[test]
fn stochastic_invalid_configs_are_rejected() {
    let base = sq_tiny(Layout::RankOne);
    let bad = [
        sq::Config { n_samples_g: 7, ..base.clone() },
        sq::Config { n_samples_f: 3, ..base.clone() },
        sq::Config { mu: 0.0, ..base.clone() },
        sq::Config { mu: 2.0, ..base.clone() },
        sq::Config { dim_y: 0, ..base.clone() },
        sq::Config { f: sq::LevelScales { l_xy: f64::NAN, ..Default::default() }, ..base.clone() },
    ];
    for cfg in bad {
        assert!(matches!(sq::generate(&cfg, 0), Err(KernelError::InvalidParameter { .. })), "{cfg:?}");
    }
    assert!(sq::Config::preset("nope").is_err());
    assert_eq!(sq::Config::preset("benchopt").unwrap(), sq::Config::default());
}

/// A tiny quadratic's arrays with `name` replaced by the row-major `n × n` matrix `m(i, j)` (and
/// B_g/C_f resized when A_g changes size).
fn with_matrix(base: &[Array], name: &str, n: usize, m: impl Fn(usize, usize) -> f64) -> Vec<Array> {
    let mut arrays: Vec<Array> = base.iter().filter(|a| a.name != name).cloned().collect();
    arrays.push(Array::f64(name, vec![n, n], (0..n * n).map(|k| m(k / n, k % n)).collect()));
    if name == "A_g" {
        let dx = base.iter().find(|a| a.name == "A_f").unwrap().shape[0];
        arrays.retain(|a| a.name != "B_g" && a.name != "C_f");
        arrays.push(Array::f64("B_g", vec![n, dx], (0..n * dx).map(|k| ((k % 7) as f64 - 3.0) / 7.0).collect()));
        arrays.push(Array::f64("C_f", vec![n], (0..n).map(|k| ((k % 5) as f64 - 2.0) / 5.0).collect()));
    }
    arrays
}

fn diag(values: &[f64]) -> impl Fn(usize, usize) -> f64 + '_ {
    move |i, j| if i == j { values[i] } else { 0.0 }
}

#[test]
fn from_arrays_refuses_zero_size_arrays_naming_them() {
    let empty = |name: &str, shape: Vec<usize>| Array::f64(name, shape, vec![]);
    let all_empty =
        [empty("A_f", vec![0, 0]), empty("C_f", vec![0]), empty("A_g", vec![0, 0]), empty("B_g", vec![0, 0])];
    expect_invalid_data(&all_empty, "`A_f` is empty");
    let p = quadratic::generate(&tiny(10.0), 1).unwrap();
    let mut arrays: Vec<Array> =
        p.arrays().into_iter().filter(|a| !["A_g", "B_g", "C_f"].contains(&&*a.name)).collect();
    arrays.extend([empty("A_g", vec![0, 0]), empty("B_g", vec![0, 20]), empty("C_f", vec![0])]);
    expect_invalid_data(&arrays, "`A_g` is empty");
    // The measurement itself refuses an empty matrix instead of indexing eigenvalues[0].
    assert!(quadratic::Measured::of(Mat::<f64>::zeros(0, 0).as_ref()).is_err());
}

#[test]
fn from_arrays_refuses_singular_indefinite_or_ill_conditioned_hessians_with_the_figures() {
    let base = quadratic::generate(&tiny(10.0), 1).unwrap().arrays();
    for (name, n) in [("A_f", 20), ("A_g", 10)] {
        let mut singular = vec![1.0; n];
        singular[3] = 1e-17;
        let a = with_matrix(&base, name, n, diag(&singular));
        expect_invalid_data(&a, &format!("`{name}` is too ill-conditioned"));
        expect_invalid_data(&a, "λ_min = 1.000e-17");
        expect_invalid_data(&a, "κ = 1.000e17");
        let mut indefinite = vec![1.0; n];
        indefinite[0] = -1e-3;
        let a = with_matrix(&base, name, n, diag(&indefinite));
        expect_invalid_data(&a, &format!("`{name}` is not positive definite"));
        expect_invalid_data(&a, "λ_min = -1.000e-3");
        // A positive semi-definite (exactly singular) matrix.
        let mut zero = vec![2.0; n];
        zero[n - 1] = 0.0;
        expect_invalid_data(&with_matrix(&base, name, n, diag(&zero)), &format!("`{name}` is not positive definite"));
    }
}

#[test]
fn from_arrays_checks_conditioning_above_the_dense_size_too() {
    // d_y = 1001 > DENSE_MAX_DIM: Cholesky, Lanczos for λ_max and Lanczos on A_g⁻¹ for λ_min.
    let n = bilevel_kernels::spectrum::DENSE_MAX_DIM + 1;
    let base = quadratic::generate(&tiny(10.0), 1).unwrap().arrays();
    let spread = |lo: f64| (0..n).map(|i| lo.powf(1.0 - i as f64 / (n - 1) as f64)).collect::<Vec<f64>>();
    let ok = with_matrix(&base, "A_g", n, diag(&spread(1e-3)));
    let q = QuadraticProblem::from_arrays(Default::default(), &ok).unwrap();
    assert_eq!(q.dim_y(), n);
    let bad = with_matrix(&base, "A_g", n, diag(&spread(1e-14)));
    expect_invalid_data(&bad, "`A_g` is too ill-conditioned");
    expect_invalid_data(&bad, "κ = 1.0");
    let mut indefinite = spread(1e-3);
    indefinite[0] = -1.0;
    expect_invalid_data(&with_matrix(&base, "A_g", n, diag(&indefinite)), "`A_g` is not positive definite");
}

#[test]
fn generated_problems_at_the_kappa_cap_load_back() {
    for preset in ["tiny", "small"] {
        let c =
            Config { kappa_g: quadratic::MAX_KAPPA, kappa_f: quadratic::MAX_KAPPA, ..Config::preset(preset).unwrap() };
        let p = quadratic::generate(&c, 3).unwrap();
        let q = QuadraticProblem::from_arrays(p.parameters(), &p.arrays());
        assert!(q.is_ok(), "{preset}: {}", q.err().unwrap());
    }
}

#[test]
fn from_arrays_refuses_an_outer_minimum_that_is_not_finite() {
    // Well-conditioned Hessians, but C_f = 1e200 makes z*, x* ~ 1e200 and L* = ½B_gᵀz*·x*
    // overflow: L* would be infinite or NaN.
    let mut arrays = quadratic::generate(&tiny(10.0), 1).unwrap().arrays();
    arrays.retain(|a| a.name != "C_f");
    arrays.push(Array::f64("C_f", vec![10], vec![1e200; 10]));
    expect_invalid_data(&arrays, "x*");
}

fn expect_too_large<T>(r: Result<T, KernelError>, needle: &str) {
    match r {
        Err(KernelError::TooLarge { what, needed, available }) => {
            assert!(needed > available as u128 && what.contains(needle), "`{what}` lacks `{needle}`")
        }
        Err(e) => panic!("expected TooLarge, got {e}"),
        Ok(_) => panic!("generated an impossible size"),
    }
}

#[test]
fn impossible_sizes_are_refused_before_allocating() {
    // `--dx 10000000000`: a fast typed error naming the sizes, not an abort inside faer.
    let t = std::time::Instant::now();
    expect_too_large(quadratic::generate(&Config { dim_x: 10_000_000_000, ..tiny(10.0) }, 0), "d_x = 10000000000");
    expect_too_large(quadratic::generate(&Config { dim_y: 10_000_000_000, ..tiny(10.0) }, 0), "d_y = 10000000000");
    expect_too_large(quadratic::generate(&Config { dim_x: usize::MAX, dim_y: usize::MAX, ..tiny(10.0) }, 0), "d_x");
    let huge = sq::Config {
        dim_x: 1 << 20,
        dim_y: 1 << 20,
        n_samples_f: 1 << 20,
        n_samples_g: 1 << 20,
        ..sq::Config::preset("tiny").unwrap()
    };
    expect_too_large(sq::generate(&huge, 0), "d_x = 1048576");
    // The dense layout stores n·(d_y² + d_x² + d_x d_y) numbers per level.
    let dense = sq::Config {
        dim_x: 4096,
        dim_y: 4096,
        n_samples_f: 4096,
        n_samples_g: 4096,
        layout: Layout::Dense,
        ..sq::Config::preset("tiny").unwrap()
    };
    expect_too_large(sq::generate(&dense, 0), "dense");
    assert!(t.elapsed().as_secs() < 5, "the checks allocate nothing, so they are fast");
    // The counts are what the docs say, and the presets fit.
    let c = tiny(10.0);
    assert_eq!(c.memory_bytes(), 8 * (6 * 20 * 20 + 4 * 10 * 10 + 3 * 20 * 10));
    assert!(quadratic::generate(&c, 0).is_ok());
}

#[test]
fn too_few_samples_says_which_preset_or_flag_to_change() {
    // n_samples_f/n_samples_g are not flags: only the presets set them.
    let options =
        bilevel_data::catalog::BuildOptions { preset: Some("tiny".into()), dim_x: Some(100), ..Default::default() };
    let err = bilevel_data::catalog::build("stochastic_quadratic", &options).unwrap_err().to_string();
    for needle in ["set by the preset", "benchopt-best", "--dx", "100"] {
        assert!(err.contains(needle), "`{err}` lacks `{needle}`");
    }
}
