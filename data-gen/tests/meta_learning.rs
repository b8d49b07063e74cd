//! Few-shot meta-learning: every oracle against central finite differences (full batch and a
//! mini-batch of tasks with a repeat), the exact references, seeding and config errors.

use bilevel_data::meta_learning::{generate, Config};
use bilevel_kernels::{Batch, BilevelProblem};
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;
mod common;
use common::{assert_seeded, dot, fd, rand_vec};

fn close(a: f64, b: f64, scale: f64) {
    assert!((a - b).abs() <= 1e-6 * scale.max(1.0), "{a} vs {b}");
}

#[test]
fn oracles_match_finite_differences() {
    let p = generate(&Config::preset("tiny").unwrap(), 3).unwrap();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
    let (dx, dy) = (p.dim_x(), p.dim_y());
    for batch in [Batch::Full, Batch::Rows(&[2, 0, 2])] {
        let (x, y) = (rand_vec(dx, &mut rng), rand_vec(dy, &mut rng));
        let (u, v) = (rand_vec(dx, &mut rng), rand_vec(dy, &mut rng));
        let (mut gx, mut gy, mut gg) = (vec![0.0; dx], vec![0.0; dy], vec![0.0; dy]);
        p.grad_x_f(&x, &y, batch, &mut gx);
        p.grad_y_f(&x, &y, batch, &mut gy);
        p.grad_y_g(&x, &y, batch, &mut gg);
        close(dot(&gx, &u), fd(|x| p.f(x, &y, batch), &x, &u), 1.0);
        close(dot(&gy, &v), fd(|y| p.f(&x, y, batch), &y, &v), 1.0);
        close(dot(&gg, &v), fd(|y| p.g(&x, y, batch), &y, &v), 1.0);
        // HVP: derivative of ⟨∂y g, w⟩ along v; cross: derivative of ⟨∂y g, v⟩ along x.
        let w = rand_vec(dy, &mut rng);
        let (mut hv, mut cv) = (vec![0.0; dy], vec![0.0; dx]);
        p.hvp(&x, &y, &v, batch, &mut hv);
        p.cross(&x, &y, &v, batch, &mut cv);
        let grad_g_dot = |x: &[f64], y: &[f64], w: &[f64]| {
            let mut g = vec![0.0; dy];
            p.grad_y_g(x, y, batch, &mut g);
            dot(&g, w)
        };
        close(dot(&hv, &w), fd(|y| grad_g_dot(&x, y, &w), &y, &v), 1.0);
        close(dot(&cv, &u), fd(|x| grad_g_dot(x, &y, &v), &x, &u), 1.0);
        if let Batch::Rows(_) = batch {
            // Tasks 1 and 3 are outside the batch: their heads get nothing.
            let k = p.config().dim_embed;
            for t in [1, 3] {
                assert!(gg[t * k..(t + 1) * k].iter().all(|&g| g == 0.0));
                assert!(hv[t * k..(t + 1) * k].iter().all(|&g| g == 0.0));
            }
        }
    }
}

#[test]
fn exact_references_are_consistent() {
    let p = generate(&Config::preset("small").unwrap(), 8).unwrap();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(2);
    let x = p.x0(4);
    let exact = p.exact().unwrap();
    let mut w = vec![0.0; p.dim_y()];
    exact.y_star(&x, &mut w);
    let mut g = vec![0.0; p.dim_y()];
    p.grad_y_g(&x, &w, Batch::Full, &mut g);
    assert!(g.iter().all(|v| v.abs() < 1e-12), "∂y g(x, y*) = 0");
    let mut v = vec![0.0; p.dim_y()];
    exact.v_star(&x, &mut v);
    let (mut hv, mut fy) = (vec![0.0; p.dim_y()], vec![0.0; p.dim_y()]);
    p.hvp(&x, &w, &v, Batch::Full, &mut hv);
    p.grad_y_f(&x, &w, Batch::Full, &mut fy);
    hv.iter().zip(&fy).for_each(|(a, b)| assert!((a - b).abs() < 1e-12, "H v* = ∂y f"));
    let mut hg = vec![0.0; p.dim_x()];
    exact.hypergradient(&x, &mut hg);
    for _ in 0..3 {
        let u = rand_vec(p.dim_x(), &mut rng);
        let want = fd(|x| exact.value(x), &x, &u);
        assert!((dot(&hg, &u) - want).abs() <= 1e-6 * want.abs().max(1e-3), "{} vs {want}", dot(&hg, &u));
    }
    assert!((exact.value(&x) - p.f(&x, &w, Batch::Full)).abs() < 1e-15);
}

#[test]
fn the_true_embedding_beats_a_random_one() {
    let p = generate(&Config::preset("small").unwrap(), 5).unwrap();
    let e_star: Vec<f64> = (0..p.dim_x()).map(|i| p.e_star()[(i / 3, i % 3)]).collect();
    let exact = p.exact().unwrap();
    assert!(exact.value(&e_star) < 0.5 * exact.value(&p.x0(1)));
    // On the held-out tasks too (the meta-test metric).
    assert!(p.test_loss_at_optimum(&e_star) < 0.5 * p.test_loss_at_optimum(&p.x0(1)));
    // Without test tasks the metric is not reported, and the training tasks do not change.
    let c = Config { n_test_tasks: 0, ..Config::preset("small").unwrap() };
    let q = generate(&c, 5).unwrap();
    assert_eq!(q.metrics().unwrap().names(), ["val_loss", "val_loss_at_optimum"]);
    let train = |p: &bilevel_data::meta_learning::MetaLearning| {
        use bilevel_data::Dataset;
        p.arrays().into_iter().filter(|a| !a.name.contains("test")).collect::<Vec<_>>()
    };
    assert!(train(&p) == train(&q));
}

#[test]
fn seeds_and_config_errors() {
    let c = Config::preset("tiny").unwrap();
    let a = assert_seeded(|seed| generate(&c, seed).unwrap(), 1);
    for bad in [
        Config { n_tasks: 0, ..c.clone() },
        Config { dim_embed: 7, ..c.clone() },
        Config { ridge: 0.0, ..c.clone() },
        Config { noise: f64::NAN, ..c.clone() },
    ] {
        assert!(generate(&bad, 0).is_err(), "{bad:?}");
    }
    assert!(Config::preset("huge").is_err());
    // A non-finite embedding makes the per-task Cholesky fail: NaN references, no panic.
    let nan_x = vec![f64::NAN; a.dim_x()];
    let mut out = vec![0.0; a.dim_y()];
    a.exact().unwrap().y_star(&nan_x, &mut out);
    assert!(out.iter().all(|v| v.is_nan()));
    assert!(a.exact().unwrap().value(&nan_x).is_nan());
    let mut g = vec![0.0; a.dim_x()];
    a.exact().unwrap().hypergradient(&nan_x, &mut g);
    assert!(g.iter().all(|v| !v.is_finite()));
}
