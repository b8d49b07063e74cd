//! The equilibrium-model problem: oracles against central finite differences, the fixed point,
//! and the implicit hypergradient ∇λE + ∂λΦᵀv, (I − ∂wΦᵀ)v = ∇wE, against a finite difference of
//! λ ↦ E(w(λ), λ).

use bilevel_data::equilibrium::{generate, Config};
use bilevel_kernels::models::equilibrium::FixedPointParams;
use bilevel_kernels::{Batch, FixedPointProblem};
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;
mod common;
use common::{assert_seeded, close, dot, fd, rand_vec};

#[test]
fn oracles_match_finite_differences() {
    let p = generate(&Config::preset("tiny").unwrap(), 1).unwrap();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
    let (h, m) = (p.dim_state(), p.dim_lambda());
    for batch in [Batch::Full, Batch::Rows(&[5, 0, 5, 11])] {
        let len = batch.len(p.n_samples());
        let lambda = p.lambda0().to_vec();
        let w = rand_vec(len * h, &mut rng);
        let (dw, dl, v) = (rand_vec(len * h, &mut rng), rand_vec(m, &mut rng), rand_vec(len * h, &mut rng));
        // Upper objective.
        let (mut gw, mut gl) = (vec![0.0; len * h], vec![0.0; m]);
        p.upper_grad_w(&lambda, &w, batch, &mut gw);
        p.upper_grad_lambda(&lambda, &w, batch, &mut gl);
        close(dot(&gw, &dw), fd(|w| p.upper(&lambda, w, batch), &w, &dw));
        close(dot(&gl, &dl), fd(|l| p.upper(l, &w, batch), &lambda, &dl));
        // The map: ⟨v, Φ⟩ differentiated along w and λ gives the VJPs; the JVP along w directly.
        let phi_dot = |l: &[f64], w: &[f64]| {
            let mut out = vec![0.0; len * h];
            p.map(l, w, batch, &mut out);
            dot(&out, &v)
        };
        let (mut jv, mut vw, mut vl) = (vec![0.0; len * h], vec![0.0; len * h], vec![0.0; m]);
        p.jvp_w(&lambda, &w, &dw, batch, &mut jv);
        p.vjp_w(&lambda, &w, &v, batch, &mut vw);
        p.vjp_lambda(&lambda, &w, &v, batch, &mut vl);
        close(dot(&jv, &v), fd(|w| phi_dot(&lambda, w), &w, &dw));
        close(dot(&vw, &dw), fd(|w| phi_dot(&lambda, w), &w, &dw));
        close(dot(&vl, &dl), fd(|l| phi_dot(l, &w), &lambda, &dl));
    }
}

/// w(λ) by the fixed-point solver; the implicit hypergradient by iterating v ← ∂wΦᵀv + ∇wE.
fn solve_and_hypergradient(p: &bilevel_data::equilibrium::EquilibriumProblem, lambda: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let (n, h, m) = (p.n_samples(), p.dim_state(), p.dim_lambda());
    let mut w = vec![0.0; n * h];
    let info = p.solve_states(lambda, Batch::Full, &mut w, FixedPointParams { tol: 1e-15, max_iter: 10_000 }).unwrap();
    assert!(info.converged, "{info:?}");
    let mut gw = vec![0.0; n * h];
    p.upper_grad_w(lambda, &w, Batch::Full, &mut gw);
    let (mut v, mut t) = (vec![0.0; n * h], vec![0.0; n * h]);
    for _ in 0..500 {
        p.vjp_w(lambda, &w, &v, Batch::Full, &mut t);
        v.iter_mut().zip(t.iter().zip(&gw)).for_each(|(v, (t, g))| *v = t + g);
    }
    let (mut grad, mut phi_t) = (vec![0.0; m], vec![0.0; m]);
    p.upper_grad_lambda(lambda, &w, Batch::Full, &mut grad);
    p.vjp_lambda(lambda, &w, &v, Batch::Full, &mut phi_t);
    grad.iter_mut().zip(&phi_t).for_each(|(g, a)| *g += a);
    (w, grad)
}

#[test]
fn fixed_point_and_implicit_hypergradient() {
    let p = generate(&Config::preset("tiny").unwrap(), 2).unwrap();
    let lambda = p.lambda0().to_vec();
    let (w, grad) = solve_and_hypergradient(&p, &lambda);
    let mut phi = vec![0.0; w.len()];
    p.map(&lambda, &w, Batch::Full, &mut phi);
    assert!(phi.iter().zip(&w).all(|(a, b)| (a - b).abs() <= 1e-12), "w = Φ(w)");
    let value = |l: &[f64]| {
        let mut w = vec![0.0; w.len()];
        p.solve_states(l, Batch::Full, &mut w, FixedPointParams { tol: 1e-15, max_iter: 10_000 }).unwrap();
        p.upper(l, &w, Batch::Full)
    };
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(9);
    for _ in 0..3 {
        let d = rand_vec(p.dim_lambda(), &mut rng);
        let want = fd(value, &lambda, &d);
        assert!((dot(&grad, &d) - want).abs() <= 1e-6 * want.abs().max(1e-3), "{} vs {want}", dot(&grad, &d));
    }
}

#[test]
fn seeds_presets_and_errors() {
    let c = Config::preset("tiny").unwrap();
    let a = assert_seeded(|seed| generate(&c, seed).unwrap(), 4);
    let small = generate(&Config { n_samples: 50, ..Config::preset("small").unwrap() }, 0).unwrap();
    assert_eq!(small.dim_lambda(), 10 * 50 + 10 + 50 * 50 + 50 * 784 + 50);
    assert!(Config::preset("huge").is_err());
    for bad in [Config { hidden: 0, ..c.clone() }, Config { n_classes: 1, ..c.clone() }, Config { init_std: -1.0, ..c }]
    {
        assert!(generate(&bad, 0).is_err(), "{bad:?}");
    }
    // A non-contractive A is refused by the solver; an out-of-range batch poisons the output.
    let mut lambda = a.lambda0().to_vec();
    let r = 3 * 4 + 3; // θ and b of the tiny preset
    for i in 0..4 {
        lambda[r + i * 4 + i] = 3.0;
    }
    let mut w = vec![0.0; a.n_samples() * 4];
    assert!(a.solve_states(&lambda, Batch::Full, &mut w, FixedPointParams::default()).is_err());
    let mut out = vec![0.0; 4];
    a.upper_grad_w(a.lambda0(), &[0.0; 4], Batch::Rows(&[99]), &mut out);
    assert!(out.iter().all(|v| v.is_nan()));
}
