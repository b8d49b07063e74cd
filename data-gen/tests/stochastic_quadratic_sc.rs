//! The stochastic quadratic's per-sample strongly convex form (`SampleHessian::StronglyConvex`,
//! the `tiny` and `small` presets): every sample Hessian h_i h_iᵀ + µI has its spectrum in
//! [µ, l_g_sample] with both ends attained, the mean problem is the prescribed one (the same
//! as the rank-one form's from the same seed), both layouts agree, small mini-batches are
//! positive definite where the rank-one form's are singular, and the new field travels through
//! the manifest.

use bilevel_data::stochastic_quadratic::{self as sq, Layout, SampleHessian};
use bilevel_data::{catalog, export, Dataset};
use bilevel_kernels::linsolve::{Cg, Stopping};
use bilevel_kernels::{Batch, BilevelProblem, HessianOp};
use faer::{Mat, Side};
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use rand_xoshiro::Xoshiro256PlusPlus;

fn randn(n: usize, rng: &mut Xoshiro256PlusPlus) -> Vec<f64> {
    (0..n).map(|_| rng.sample(StandardNormal)).collect()
}
fn norm(a: &[f64]) -> f64 {
    a.iter().map(|v| v * v).sum::<f64>().sqrt()
}
fn rel_diff(a: &[f64], b: &[f64]) -> f64 {
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    norm(&d) / norm(b).max(1e-300)
}

fn config(layout: Layout, form: SampleHessian) -> sq::Config {
    sq::Config { layout, sample_hessian: form, ..sq::Config::preset("tiny").unwrap() }
}

/// ∂yy g on `batch` as a dense matrix, column j = H e_j (by HVPs, whatever the layout).
fn hessian(p: &dyn BilevelProblem, batch: Batch<'_>) -> Mat<f64> {
    let n = p.dim_y();
    let (x, y) = (vec![0.3; p.dim_x()], vec![-0.2; n]);
    let (mut e, mut col) = (vec![0.0; n], vec![0.0; n]);
    let mut h = Mat::<f64>::zeros(n, n);
    for j in 0..n {
        e.fill(0.0);
        e[j] = 1.0;
        p.hvp(&x, &y, &e, batch, &mut col);
        (0..n).for_each(|i| h[(i, j)] = col[i]);
    }
    h
}

fn eig(h: &Mat<f64>) -> Vec<f64> {
    let sym = Mat::from_fn(h.nrows(), h.ncols(), |i, j| 0.5 * (h[(i, j)] + h[(j, i)]));
    sym.self_adjoint_eigenvalues(Side::Lower).unwrap()
}

fn max_abs_diff(a: &Mat<f64>, b: &Mat<f64>) -> f64 {
    let mut m = 0.0f64;
    for j in 0..a.ncols() {
        for i in 0..a.nrows() {
            m = m.max((a[(i, j)] - b[(i, j)]).abs());
        }
    }
    m
}

#[test]
fn presets_choose_the_form_and_the_shift_follows_mu() {
    for (preset, form) in [
        ("tiny", SampleHessian::StronglyConvex),
        ("small", SampleHessian::StronglyConvex),
        ("benchopt", SampleHessian::RankOne),
        ("benchopt-best", SampleHessian::RankOne),
    ] {
        let c = sq::Config::preset(preset).unwrap();
        assert_eq!(c.sample_hessian, form, "{preset}");
        let want = if form == SampleHessian::RankOne { 0.0 } else { c.mu };
        assert_eq!(c.sample_mu(), want, "{preset}");
    }
    assert_eq!(sq::Config::default().sample_hessian, SampleHessian::RankOne);
    // κ changes µ, and the shift with it (it is not a stale number).
    let c = sq::Config::preset("tiny").unwrap().with_kappa(250.0).unwrap();
    assert_eq!(c.sample_mu(), c.mu);
    assert!((c.mu - 1.0 / 250.0).abs() < 1e-15);
}

#[test]
fn every_sample_hessian_lies_in_mu_to_l_g_sample_with_both_ends_attained() {
    for layout in [Layout::RankOne, Layout::Dense] {
        for form in [SampleHessian::StronglyConvex, SampleHessian::RankOne] {
            let cfg = config(layout, form);
            let p = sq::generate(&cfg, 7).unwrap();
            let s = cfg.sample_mu();
            let k = p.constants();
            assert_eq!(k.mu_g_sample, Some(s), "{layout:?} {form:?}");
            let l_sample = k.l_g_sample.unwrap();
            let (mut lowest_min, mut closest_min, mut highest_max) = (f64::INFINITY, f64::INFINITY, 0.0f64);
            for i in 0..p.n_samples_g() {
                let e = eig(&hessian(&p, Batch::Rows(&[i])));
                let (lo, hi) = (e[0], e[e.len() - 1]);
                assert!(lo >= s - 1e-10, "{layout:?} {form:?} sample {i}: λ_min {lo} < s = {s}");
                assert!(hi <= l_sample + 1e-10, "{layout:?} {form:?} sample {i}: λ_max {hi} > {l_sample}");
                lowest_min = lowest_min.min(lo);
                closest_min = closest_min.min((lo - s).abs());
                highest_max = highest_max.max(hi);
                // h_i h_iᵀ + sI: d_y − 1 eigenvalues equal s.
                assert!(e[e.len() - 2] - s < 1e-10, "{layout:?} {form:?} sample {i}: {e:?}");
            }
            assert!(closest_min < 1e-8, "{layout:?} {form:?}: µ_g_sample = {s} not attained ({lowest_min})");
            assert!((highest_max - l_sample).abs() < 1e-10 * l_sample, "{highest_max} vs {l_sample}");
        }
    }
    // The strongly convex form really is shifted (the bound is not vacuous).
    assert!(sq::Config::preset("tiny").unwrap().sample_mu() > 0.0);
}

#[test]
fn the_mean_hessian_is_the_prescribed_one_in_both_forms() {
    for seed in [1, 5] {
        let (sc, r1) = (
            sq::generate(&config(Layout::RankOne, SampleHessian::StronglyConvex), seed).unwrap(),
            sq::generate(&config(Layout::RankOne, SampleHessian::RankOne), seed).unwrap(),
        );
        assert_eq!(sc.tries(), r1.tries());
        let (h_sc, h_r1) = (hessian(&sc, Batch::Full), hessian(&r1, Batch::Full));
        assert!(max_abs_diff(&h_sc, &h_r1) < 1e-12, "full-batch means differ by {}", max_abs_diff(&h_sc, &h_r1));
        // The mean over all samples of the mini-batch oracle is the same matrix.
        let all: Vec<usize> = (0..sc.n_samples_g()).collect();
        assert!(max_abs_diff(&hessian(&sc, Batch::Rows(&all)), &h_r1) < 1e-12);
        let (a_sc, a_r1) = (sc.reference().lower().a().unwrap().matrix(), r1.reference().lower().a().unwrap().matrix());
        let (a_sc, a_r1) = (a_sc.to_owned(), a_r1.to_owned());
        assert!(max_abs_diff(&a_sc, &a_r1) < 1e-12);
        let cfg = sc.config();
        let want = bilevel_data::random_matrix::spectrum(cfg.mu, cfg.g.l_yy, cfg.dim_y, cfg.spacing);
        for (got, want) in eig(&h_sc).iter().zip(&want) {
            assert!((got - want).abs() < 1e-12, "mean eigenvalue {got} vs prescribed {want}");
        }
        let k = sc.constants();
        assert_eq!((k.mu_g, k.l_g), (Some(cfg.mu), Some(cfg.g.l_yy)));
        // Same mean problem, so the same references: x*, L*, and the value function's spectrum.
        let ((x_sc, l_sc), (x_r1, l_r1)) =
            (sc.exact().unwrap().minimum().unwrap(), r1.exact().unwrap().minimum().unwrap());
        assert!(rel_diff(x_sc, x_r1) < 1e-9 && (l_sc - l_r1).abs() < 1e-9 * (1.0 + l_r1.abs()));
        assert!((sc.measured_value().mu - r1.measured_value().mu).abs() < 1e-10);
        // The samples differ: the rank-one parts of the SC form carry λ_y − µ.
        let (h0_sc, h0_r1) = (hessian(&sc, Batch::Rows(&[0])), hessian(&r1, Batch::Rows(&[0])));
        assert!(max_abs_diff(&h0_sc, &h0_r1) > 1e-3);
    }
}

/// All mini-batch oracles: (f, g, ∂x f, ∂y f, ∂y g, hvp, cross).
fn oracles(p: &dyn BilevelProblem, x: &[f64], y: &[f64], v: &[f64], bf: &[usize], bg: &[usize]) -> Vec<Vec<f64>> {
    let (dx, dy) = (p.dim_x(), p.dim_y());
    let (bf, bg) = (Batch::Rows(bf), Batch::Rows(bg));
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
fn both_layouts_give_the_same_oracles_on_the_same_minibatch() {
    let form = SampleHessian::StronglyConvex;
    let (r, d) = (
        sq::generate(&config(Layout::RankOne, form), 6).unwrap(),
        sq::generate(&config(Layout::Dense, form), 6).unwrap(),
    );
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(11);
    for (bf, bg) in [(vec![3, 0, 15, 3], vec![31, 7, 8, 2, 2]), (vec![9], vec![4]), (vec![], vec![])] {
        let (x, y, v) = (randn(4, &mut rng), randn(8, &mut rng), randn(8, &mut rng));
        let (a, b) = (oracles(&r, &x, &y, &v, &bf, &bg), oracles(&d, &x, &y, &v, &bf, &bg));
        for (k, (a, b)) in a.iter().zip(&b).enumerate() {
            assert!(rel_diff(a, b) < 1e-12 || norm(a) + norm(b) == 0.0, "oracle {k} on {bg:?}: {a:?} vs {b:?}");
        }
        if bg.is_empty() {
            assert!(a.iter().flatten().all(|&z| z == 0.0), "an empty batch gives 0: {a:?}");
        }
    }
    // A single sample's g, ∂y g and HVP carry the ½ s‖y‖², s y and s v terms of h_i h_iᵀ + sI:
    // checked against the exported factors of the rank-one layout.
    let s = r.config().sample_mu();
    let arrays = r.arrays();
    let h = arrays.iter().find(|a| a.name == "g_hess_y_factors").unwrap();
    let bilevel_data::ArrayData::F64(h) = &h.data else { panic!() };
    let h4 = &h[4 * 8..5 * 8];
    let v = randn(8, &mut rng);
    let hv: f64 = h4.iter().zip(&v).map(|(a, b)| a * b).sum();
    let want: Vec<f64> = (0..8).map(|j| h4[j] * hv + s * v[j]).collect();
    for p in [&r as &dyn BilevelProblem, &d] {
        let mut got = vec![0.0; 8];
        p.hvp(&[0.0; 4], &[0.0; 8], &v, Batch::Rows(&[4]), &mut got);
        assert!(rel_diff(&got, &want) < 1e-13, "{got:?} vs {want:?}");
    }
    // The dense layout stores h_i h_iᵀ + sI.
    let da = d.arrays();
    let a = da.iter().find(|a| a.name == "g_hess_y").unwrap();
    let bilevel_data::ArrayData::F64(a) = &a.data else { panic!() };
    assert_eq!(a[(4 * 8 + 2) * 8 + 2], h4[2] * h4[2] + s);
    assert_eq!(a[(4 * 8 + 2) * 8 + 5], h4[2] * h4[5]);
}

#[test]
fn a_two_sample_batch_is_positive_definite_only_in_the_strongly_convex_form() {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
    for layout in [Layout::RankOne, Layout::Dense] {
        for form in [SampleHessian::StronglyConvex, SampleHessian::RankOne] {
            let cfg = config(layout, form);
            assert_eq!(cfg.dim_y, 8);
            let p = sq::generate(&cfg, 2).unwrap();
            let batch = [5, 17];
            let e = eig(&hessian(&p, Batch::Rows(&batch)));
            let (x, y, b) = (randn(4, &mut rng), randn(8, &mut rng), randn(8, &mut rng));
            let op = HessianOp::new(&p, &x, &y, Batch::Rows(&batch));
            let mut cg = Cg::new(8, Stopping::default().with_rel_tol(1e-10).with_max_iters(200));
            let mut sol = vec![0.0; 8];
            let report = cg.solve(&op, &b, &mut sol);
            match form {
                SampleHessian::StronglyConvex => {
                    let s = cfg.sample_mu();
                    assert!(e[0] >= s - 1e-12 && s > 0.0, "{layout:?}: λ_min {} < µ = {s}", e[0]);
                    let report = report.expect("CG on a positive definite batch Hessian");
                    assert!(report.converged, "{layout:?}: {report:?}");
                    let mut hx = vec![0.0; 8];
                    p.hvp(&x, &y, &sol, Batch::Rows(&batch), &mut hx);
                    assert!(rel_diff(&hx, &b) < 1e-8, "{layout:?}: residual {}", rel_diff(&hx, &b));
                }
                SampleHessian::RankOne => {
                    // Rank 2 of 8: six zero eigenvalues, and b has a part CG cannot reach.
                    assert!(e[5].abs() < 1e-12 && e[6] > 1e-6, "{layout:?}: {e:?}");
                    assert!(report.map_or(true, |r| !r.converged), "{layout:?}: CG converged on a singular batch");
                }
            }
        }
    }
}

#[test]
fn the_form_travels_through_the_manifest() {
    let dir = std::env::temp_dir().join(format!("bilevel-sq-sc-{}", std::process::id()));
    for (preset, name, s_is_mu) in [("tiny", "strongly_convex", true), ("benchopt", "rank_one", false)] {
        let options = catalog::BuildOptions {
            preset: Some(preset.into()),
            dim_x: Some(4),
            dim_y: Some(8),
            seed: 4,
            ..Default::default()
        };
        let built = catalog::build_dataset("stochastic_quadratic", &options).unwrap();
        let params = built.parameters();
        assert_eq!(params["sample_hessian"], name, "{preset}");
        let mu = params["mu"].as_f64().unwrap();
        assert_eq!(params["sample_mu"].as_f64().unwrap(), if s_is_mu { mu } else { 0.0 }, "{preset}");
        export::write_dir(built.as_ref(), &dir, true).unwrap();
        let loaded = export::load_dir(&dir).unwrap();
        assert_eq!(loaded.generator, "stochastic_quadratic");
        // (serde_json reads some floats back one ulp off: the measured figures are compared
        // loosely, the config and the new fields exactly.)
        let keys = |m: &serde_json::Map<String, serde_json::Value>| m.keys().cloned().collect::<Vec<_>>();
        assert_eq!(keys(&loaded.parameters), keys(&params), "{preset}");
        for (k, v) in &params {
            if !k.starts_with("measured_") && k != "l_star" {
                assert_eq!(&loaded.parameters[k], v, "{preset}: {k}");
            }
        }
        assert_eq!(loaded.arrays.len(), built.arrays().len());
        // The config reads back from the manifest, and one without the field (written before it
        // existed) means the rank-one form it was generated with.
        let mut config: serde_json::Map<_, _> = loaded.parameters.clone();
        for extra in ["seed", "sample_mu", "tries", "measured_g", "measured_f", "measured_value", "l_star"] {
            config.remove(extra);
        }
        let back: sq::Config = serde_json::from_value(config.clone().into()).unwrap();
        assert_eq!(back.sample_mu(), params["sample_mu"].as_f64().unwrap());
        config.remove("sample_hessian");
        let old: sq::Config = serde_json::from_value(config.into()).unwrap();
        assert_eq!(old.sample_hessian, SampleHessian::RankOne);
    }
    std::fs::remove_dir_all(&dir).ok();
}
