//! The catalogue (`catalog::build`): every entry builds and answers the same questions the same
//! way; the constants the generators know agree with a dense eigen-decomposition; the metrics
//! of the data problems are what they say.

use bilevel_data::catalog::{build, catalog, BuildOptions, Problem};
use bilevel_data::random_matrix::symmetric_eigenvalues;
use bilevel_data::{hyperclean, meta_learning, quadratic, stochastic_quadratic as sq};
use bilevel_kernels::{Batch, BilevelProblem};
use faer::Mat;

fn tiny(seed: u64) -> BuildOptions {
    BuildOptions { preset: Some("tiny".into()), seed, ..Default::default() }
}

/// The dense ∂yy g(x, y) on `batch`, column by column from HVPs, and its eigenvalues.
fn hessian_eigenvalues(p: &dyn BilevelProblem, x: &[f64], y: &[f64], batch: Batch<'_>) -> Vec<f64> {
    let n = p.dim_y();
    let mut h = Mat::<f64>::zeros(n, n);
    let (mut e, mut col) = (vec![0.0; n], vec![0.0; n]);
    for j in 0..n {
        e.fill(0.0);
        e[j] = 1.0;
        p.hvp(x, y, &e, batch, &mut col);
        (0..n).for_each(|i| h[(i, j)] = col[i]);
    }
    let h = Mat::from_fn(n, n, |i, j| 0.5 * (h[(i, j)] + h[(j, i)]));
    symmetric_eigenvalues(h.as_ref()).unwrap()
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(f64::MIN_POSITIVE)
}

#[test]
fn every_entry_builds_with_its_starting_point_and_export() {
    for info in catalog() {
        let built = build(info.name, &tiny(3)).unwrap_or_else(|e| panic!("{}: {e}", info.name));
        assert_eq!(built.name(), info.name);
        assert_eq!(built.dataset().generator(), info.name);
        let (x0, y0) = (built.x0(5), built.y0());
        assert_eq!(x0.len(), built.problem().dim_outer(), "{}", info.name);
        assert_eq!(y0.len(), built.problem().dim_inner(), "{}", info.name);
        assert!(x0.iter().chain(&y0).all(|v| v.is_finite()));
        assert_eq!(build(info.name, &tiny(3)).unwrap().x0(5), x0, "{}: x0 is seeded", info.name);
        match built.problem() {
            Problem::Bilevel(p) => {
                let (dx, dy) = (p.dim_x(), p.dim_y());
                assert_eq!((dx, dy), (x0.len(), y0.len()));
                let mut out = vec![0.0; dy];
                p.grad_y_g(&x0, &y0, Batch::Full, &mut out);
                assert!(out.iter().all(|v| v.is_finite()), "{}", info.name);
                if let Some(m) = p.metrics() {
                    let mut values = vec![f64::NAN; m.names().len()];
                    m.evaluate(&x0, &y0, &mut values);
                    for (name, v) in m.names().iter().zip(&values) {
                        assert!(v.is_finite(), "{}: {name} = {v}", info.name);
                        if name.ends_with("accuracy") || name.ends_with("detection") || name.ends_with("rejection") {
                            assert!((0.0..=1.0).contains(v), "{}: {name} = {v}", info.name);
                        }
                    }
                    let val = m.names().iter().position(|&n| n == "val_loss").expect("every metric set has val_loss");
                    assert!(rel(values[val], p.f(&x0, &y0, Batch::Full)) < 1e-12, "{}: val_loss is f", info.name);
                }
            }
            Problem::FixedPoint(p) => assert_eq!(p.dim_lambda(), x0.len()),
            Problem::Data(_) => assert_eq!(info.name, "text"),
        }
    }
    let err = build("quadratic", &BuildOptions { kappa: Some(0.5), ..tiny(0) }).unwrap_err();
    assert!(err.to_string().contains("kappa"), "{err}");
    let err = build("stochastic_quadratic", &BuildOptions { kappa: Some(0.5), ..tiny(0) }).unwrap_err();
    assert!(err.to_string().contains("kappa"), "{err}");
}

#[test]
fn kappa_sets_the_condition_number_of_both_quadratics() {
    for name in ["quadratic", "stochastic_quadratic"] {
        let built = build(name, &BuildOptions { kappa: Some(250.0), ..tiny(1) }).unwrap();
        let c = built.problem().as_bilevel().unwrap().constants();
        assert!(rel(c.l_g.unwrap() / c.mu_g.unwrap(), 250.0) < 1e-12, "{name}");
    }
}

#[test]
fn quadratic_constants_match_a_dense_eigendecomposition() {
    let c = quadratic::Config { kappa_g: 1e3, kappa_f: 20.0, l_g: 2.0, ..quadratic::Config::preset("tiny").unwrap() };
    let p = quadratic::generate(&c, 4).unwrap();
    let k = p.constants();
    let g = symmetric_eigenvalues(p.a_g()).unwrap();
    let f = symmetric_eigenvalues(p.a_f()).unwrap(); // ∇²L = A_f
    assert!(rel(k.mu_g.unwrap(), g[0]) < 1e-10 && rel(k.l_g.unwrap(), g[g.len() - 1]) < 1e-12);
    assert!(rel(k.mu_outer.unwrap(), f[0]) < 1e-10 && rel(k.l_outer.unwrap(), f[f.len() - 1]) < 1e-12);
    assert_eq!(k.l_g_sample, k.l_g, "one sample");
    // A loaded quadratic reports no spectrum of A_g (µ_g, L_g: the driver estimates them), but
    // the theorems' other constants, computed from its arrays, agree with the generated one's.
    use bilevel_data::Dataset;
    let back = quadratic::QuadraticProblem::from_arrays(Default::default(), &p.arrays()).unwrap().constants();
    assert_eq!((back.mu_g, back.l_g, back.mu_outer, back.l_outer), (None, None, None, None));
    assert!(rel(back.cross_bound.unwrap(), k.cross_bound.unwrap()) < 1e-9);
    assert!(rel(back.l_f.unwrap(), k.l_f.unwrap()) < 1e-9);
    assert_eq!(back.grad_y_f_bound, k.grad_y_f_bound);
    let btb = p.b_g().transpose() * p.b_g();
    let sv = symmetric_eigenvalues(btb.as_ref()).unwrap();
    assert!(rel(k.cross_bound.unwrap(), sv[sv.len() - 1].sqrt()) < 1e-9, "‖B_g‖₂");
}

#[test]
fn quadratic_constants_come_without_an_eigen_solve_at_large_kappa() {
    let c = quadratic::Config { dim_x: 5, dim_y: 1000, kappa_g: 1e5, ..Default::default() };
    let p = quadratic::generate(&c, 0).unwrap();
    let k = p.constants();
    assert_eq!((k.mu_g, k.l_g), (Some(1e-5), Some(1.0)));
    assert!(k.mu_outer.is_some() && k.l_outer.is_some());
}

#[test]
fn stochastic_quadratic_constants_match_dense_eigendecompositions() {
    let p = sq::generate(&sq::Config::preset("tiny").unwrap(), 2).unwrap();
    let k = p.constants();
    let x = vec![0.0; p.dim_x()];
    let y = vec![0.0; p.dim_y()];
    let mean = hessian_eigenvalues(&p, &x, &y, Batch::Full);
    assert!(rel(k.mu_g.unwrap(), mean[0]) < 1e-9 && rel(k.l_g.unwrap(), mean[mean.len() - 1]) < 1e-9);
    let l_sample = (0..p.n_samples_g())
        .map(|i| *hessian_eigenvalues(&p, &x, &y, Batch::Rows(&[i])).last().unwrap())
        .fold(0.0, f64::max);
    assert!(rel(k.l_g_sample.unwrap(), l_sample) < 1e-9, "{:?} vs {l_sample}", k.l_g_sample);
    assert!(k.l_g_sample.unwrap() >= k.l_g.unwrap());
    let v = p.measured_value();
    assert_eq!((k.mu_outer, k.l_outer), (Some(v.mu), Some(v.l)));
}

#[test]
fn hyperclean_constants_bound_the_hessian_everywhere() {
    let h = hyperclean::generate(&hyperclean::HyperCleanConfig::preset("tiny").unwrap(), 3).unwrap();
    let k = h.constants();
    let (mu, l, l_sample) = (k.mu_g.unwrap(), k.l_g.unwrap(), k.l_g_sample.unwrap());
    assert!(k.l_outer.is_none() && k.mu_outer.is_none());
    for (scale, seed) in [(0.0, 1u64), (3.0, 2), (10.0, 3)] {
        let mut rng = <rand_xoshiro::Xoshiro256PlusPlus as rand::SeedableRng>::seed_from_u64(seed);
        let mut draw =
            |n: usize| (0..n).map(|_| scale * (rand::Rng::random::<f64>(&mut rng) * 2.0 - 1.0)).collect::<Vec<_>>();
        let (x, y) = (draw(h.dim_x()), draw(h.dim_y()));
        let e = hessian_eigenvalues(&h, &x, &y, Batch::Full);
        assert!(mu <= e[0] * (1.0 + 1e-12) && e[e.len() - 1] <= l, "[{mu}, {l}] vs [{}, {}]", e[0], e[e.len() - 1]);
        for i in [0, 7, h.n_samples_g() - 1] {
            let e = hessian_eigenvalues(&h, &x, &y, Batch::Rows(&[i]));
            assert!(e[e.len() - 1] <= l_sample);
        }
    }
}

#[test]
fn meta_learning_knows_its_strong_convexity_and_measures_the_query_loss() {
    let p = meta_learning::generate(&meta_learning::Config::preset("tiny").unwrap(), 1).unwrap();
    let x = p.x0(2);
    let y = vec![0.3; p.dim_y()];
    let e = hessian_eigenvalues(&p, &x, &y, Batch::Full);
    assert!(p.constants().mu_g.unwrap() <= e[0]);
    let m = p.metrics().unwrap();
    assert_eq!(m.names(), ["val_loss", "val_loss_at_optimum", "test_loss_at_optimum"]);
    let mut out = vec![0.0; 3];
    m.evaluate(&x, &y, &mut out);
    assert_eq!(out[0], p.f(&x, &y, Batch::Full));
    assert_eq!(out[1], p.exact().unwrap().value(&x));
    assert_eq!(out[2], p.test_loss_at_optimum(&x));
    assert!(out[2].is_finite() && out[2] > 0.0);
}

#[test]
fn logistic_metrics_are_the_validation_and_test_evaluations() {
    use bilevel_data::logreg_hpo::{self, Split};
    let p = logreg_hpo::per_class_problem(&logreg_hpo::PerClassConfig::preset("tiny").unwrap(), 2).unwrap();
    let x = vec![0.1; p.dim_x()];
    let y: Vec<f64> = (0..p.dim_y()).map(|i| (i as f64).sin()).collect();
    let m = p.metrics().unwrap();
    assert_eq!(m.names(), ["val_loss", "val_accuracy", "test_loss", "test_accuracy"]);
    let mut out = vec![0.0; 4];
    m.evaluate(&x, &y, &mut out);
    let (val, test) = (p.evaluate(Split::Validation, &y).unwrap(), p.evaluate(Split::Test, &y).unwrap());
    assert_eq!(out, [val.loss, val.accuracy, test.loss, test.accuracy]);
    assert!(rel(out[0], p.f(&x, &y, Batch::Full)) < 1e-12);
    // A NaN iterate gives NaN metrics, not a panic.
    let mut nan_y = y.clone();
    nan_y[0] = f64::NAN;
    m.evaluate(&x, &nan_y, &mut out);
    assert!(out.iter().all(|v| v.is_nan()));
    let b = logreg_hpo::binary_problem(&logreg_hpo::BinaryConfig::preset("tiny").unwrap(), 2).unwrap();
    let mut out = vec![0.0; b.metrics().unwrap().names().len()];
    b.metrics().unwrap().evaluate(&vec![0.0; b.dim_x()], &vec![0.2; b.dim_y()], &mut out);
    assert!(out.iter().all(|v| v.is_finite()));
}

/// The error policy (kernels' `BilevelProblem` doc): oracles are infallible and never panic; at
/// a non-finite or huge point they answer with non-finite values (the driver checks iterates
/// and stops with a typed error). Every catalogue entry, every oracle, at NaN, ±inf and ±1e300.
#[test]
fn oracles_never_panic_at_non_finite_or_huge_points() {
    let points = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 1e300, -1e300, 1e150];
    for info in catalog() {
        let built = build(info.name, &tiny(3)).unwrap();
        let x0 = built.x0(0);
        let name = info.name;
        match built.into_problem() {
            Problem::Bilevel(p) => {
                let (dx, dy) = (p.dim_x(), p.dim_y());
                let (mut ox, mut oy) = (vec![0.0; dx], vec![0.0; dy]);
                for &bad in &points {
                    for (x, y) in
                        [(vec![bad; dx], vec![0.0; dy]), (x0.clone(), vec![bad; dy]), (vec![bad; dx], vec![bad; dy])]
                    {
                        for batch in [Batch::Full, Batch::Rows(&[0])] {
                            let _ = (p.f(&x, &y, batch), p.g(&x, &y, batch));
                            p.grad_x_f(&x, &y, batch, &mut ox);
                            p.grad_y_f(&x, &y, batch, &mut oy);
                            p.grad_y_g(&x, &y, batch, &mut oy);
                            p.hvp(&x, &y, &y, batch, &mut oy);
                            p.cross(&x, &y, &y, batch, &mut ox);
                        }
                        if let Some(e) = p.exact() {
                            e.y_star(&x, &mut oy);
                            e.v_star(&x, &mut oy);
                            e.hypergradient(&x, &mut ox);
                            let _ = e.value(&x);
                        }
                        if let Some(m) = p.metrics() {
                            let mut out = vec![0.0; m.names().len()];
                            m.evaluate(&x, &y, &mut out);
                        }
                    }
                    if let (Some(e), true) = (p.exact(), bad.is_nan()) {
                        e.y_star(&vec![bad; dx], &mut oy);
                        assert!(oy.iter().any(|v| !v.is_finite()), "{name}: y*(NaN) looks finite: {oy:?}");
                    }
                }
            }
            Problem::FixedPoint(p) => {
                let (dl, ds) = (p.dim_lambda(), p.n_samples() * p.dim_state());
                let (mut ol, mut os) = (vec![0.0; dl], vec![0.0; ds]);
                for &bad in &points {
                    for (l, w) in [(vec![bad; dl], vec![0.0; ds]), (x0.clone(), vec![bad; ds])] {
                        p.map(&l, &w, Batch::Full, &mut os);
                        p.jvp_w(&l, &w, &w, Batch::Full, &mut os);
                        p.vjp_w(&l, &w, &w, Batch::Full, &mut os);
                        p.vjp_lambda(&l, &w, &w, Batch::Full, &mut ol);
                        let _ = p.upper(&l, &w, Batch::Full);
                        p.upper_grad_w(&l, &w, Batch::Full, &mut os);
                        p.upper_grad_lambda(&l, &w, Batch::Full, &mut ol);
                    }
                }
            }
            Problem::Data(_) => {}
        }
    }
}
