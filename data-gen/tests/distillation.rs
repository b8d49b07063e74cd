//! Dataset distillation: every oracle against central finite differences (full and mini-batch),
//! seeding and config errors.

use bilevel_data::distillation::{generate, Config};
use bilevel_kernels::{Batch, BilevelProblem};
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;
mod common;
use common::{assert_seeded, close, dot, fd, rand_vec};

#[test]
fn oracles_match_finite_differences() {
    let p = generate(&Config::preset("tiny").unwrap(), 1).unwrap();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(2);
    let (dx, dy) = (p.dim_x(), p.dim_y());
    for (bf, bg) in [(Batch::Full, Batch::Full), (Batch::Rows(&[4, 9, 4, 17]), Batch::Rows(&[2, 0, 2]))] {
        let x: Vec<f64> = rand_vec(dx, &mut rng).iter().map(|v| 2.0 * v).collect();
        let y = rand_vec(dy, &mut rng);
        let (u, v, w) = (rand_vec(dx, &mut rng), rand_vec(dy, &mut rng), rand_vec(dy, &mut rng));
        let (mut fy, mut gy, mut fx) = (vec![0.0; dy], vec![0.0; dy], vec![1.0; dx]);
        p.grad_y_f(&x, &y, bf, &mut fy);
        p.grad_y_g(&x, &y, bg, &mut gy);
        p.grad_x_f(&x, &y, bf, &mut fx);
        assert!(fx.iter().all(|&v| v == 0.0));
        close(dot(&fy, &v), fd(|y| p.f(&x, y, bf), &y, &v));
        close(dot(&gy, &v), fd(|y| p.g(&x, y, bg), &y, &v));
        let grad_g_dot = |x: &[f64], y: &[f64], w: &[f64]| {
            let mut g = vec![0.0; dy];
            p.grad_y_g(x, y, bg, &mut g);
            dot(&g, w)
        };
        let (mut hv, mut cv) = (vec![0.0; dy], vec![0.0; dx]);
        p.hvp(&x, &y, &v, bg, &mut hv);
        p.cross(&x, &y, &v, bg, &mut cv);
        close(dot(&hv, &w), fd(|y| grad_g_dot(&x, y, &w), &y, &v));
        close(dot(&cv, &u), fd(|x| grad_g_dot(x, &y, &v), &x, &u));
    }
}

#[test]
fn seeds_presets_and_errors() {
    let c = Config::preset("tiny").unwrap();
    let a = assert_seeded(|seed| generate(&c, seed).unwrap(), 3);
    assert_eq!((a.dim_x(), a.dim_y()), (3 * 6 + 6, 6 * 3));
    assert!(Config::preset("huge").is_err());
    assert!(generate(&Config { n_classes: 1, ..c.clone() }, 0).is_err());
    assert!(generate(&Config { n_features: 0, ..c }, 0).is_err());
    // A NaN iterate gives NaN outputs (the driver's numerical-failure check), no panic.
    let mut out = vec![0.0; a.dim_y()];
    a.grad_y_g(a.x0(), &vec![f64::NAN; a.dim_y()], Batch::Rows(&[2]), &mut out);
    assert!(out.iter().all(|v| v.is_nan()));
}
