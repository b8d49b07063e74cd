//! Finite-difference checks of the embedding-ridge and linear-softmax model functions
//! (`models::embedding_ridge`, `models::softmax_linear`): every gradient, HVP and cross product
//! against central differences of the value (or of the gradient).

use bilevel_kernels::models::embedding_ridge::EmbeddedRidge;
use bilevel_kernels::models::softmax_linear::{FeatureRidge, SoftmaxLinear};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

fn random(rng: &mut Xoshiro256PlusPlus, n: usize) -> Vec<f64> {
    (0..n).map(|_| rng.random::<f64>() * 2.0 - 1.0).collect()
}

/// Central difference of `f` at `x` along `d`.
fn fd(f: impl Fn(&[f64]) -> f64, x: &[f64], d: &[f64]) -> f64 {
    let h = 1e-6;
    let at = |t: f64| f(&x.iter().zip(d).map(|(x, d)| x + t * d).collect::<Vec<_>>());
    (at(h) - at(-h)) / (2.0 * h)
}

/// Central difference of a vector function along `d`.
fn fd_vec(f: impl Fn(&[f64], &mut [f64]), x: &[f64], d: &[f64], n: usize) -> Vec<f64> {
    let h = 1e-6;
    let at = |t: f64| {
        let mut out = vec![0.0; n];
        f(&x.iter().zip(d).map(|(x, d)| x + t * d).collect::<Vec<_>>(), &mut out);
        out
    };
    at(h).iter().zip(at(-h)).map(|(a, b)| (a - b) / (2.0 * h)).collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn close(a: f64, b: f64, what: &str) {
    assert!((a - b).abs() <= 1e-6 * (1.0 + a.abs().max(b.abs())), "{what}: {a} vs {b}");
}

fn close_vec(a: &[f64], b: &[f64], what: &str) {
    a.iter().zip(b).enumerate().for_each(|(i, (a, b))| close(*a, *b, &format!("{what}[{i}]")));
}

#[test]
fn embedding_ridge_derivatives_match_finite_differences() {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
    let (n, p, k) = (7, 5, 3);
    let (x, y) = (random(&mut rng, n * p), random(&mut rng, n));
    let m = EmbeddedRidge { x: &x, y: &y, p, k, ridge: 0.3 };
    let (e, w, v) = (random(&mut rng, p * k), random(&mut rng, k), random(&mut rng, k));
    let (de, dw) = (random(&mut rng, p * k), random(&mut rng, k));
    let scale = 0.5;
    // ∂w ℓ and ∂E ℓ (accumulated with a scale onto a non-zero output).
    let mut gw = vec![1.0; k];
    m.grad_w(&e, &w, scale, &mut gw);
    let gw: Vec<f64> = gw.iter().map(|g| (g - 1.0) / scale).collect();
    close(dot(&gw, &dw), fd(|w| m.value(&e, w), &w, &dw), "grad_w");
    let mut ge = vec![0.0; p * k];
    m.grad_e(&e, &w, 1.0, &mut ge);
    close(dot(&ge, &de), fd(|e| m.value(e, &w), &e, &de), "grad_e");
    // ∂ww ℓ · v and ∂E∂w ℓ · v from differences of the gradient in w.
    let grad_w = |e: &[f64], w: &[f64], out: &mut [f64]| {
        out.fill(0.0);
        m.grad_w(e, w, 1.0, out)
    };
    let mut hv = vec![0.0; k];
    m.hvp_w(&e, &v, 1.0, &mut hv);
    close_vec(&hv, &fd_vec(|w, o| grad_w(&e, w, o), &w, &v, k), "hvp_w");
    let mut cr = vec![0.0; p * k];
    m.cross_ew(&e, &w, &v, 1.0, &mut cr);
    let want = fd(
        |e| {
            let mut g = vec![0.0; k];
            grad_w(e, &w, &mut g);
            dot(&g, &v)
        },
        &e,
        &de,
    );
    close(dot(&cr, &de), want, "cross_ew");
    // The normal equations: H w* = b is where ∂w ℓ = 0, and H is the Hessian.
    let (mut h, mut b) = (vec![0.0; k * k], vec![0.0; k]);
    m.normal_equations(&e, &mut h, &mut b);
    let hw: Vec<f64> = (0..k).map(|a| (0..k).map(|c| h[c * k + a] * w[c]).sum::<f64>()).collect();
    let mut g = vec![0.0; k];
    grad_w(&e, &w, &mut g);
    close_vec(&g, &hw.iter().zip(&b).map(|(hw, b)| hw - b).collect::<Vec<_>>(), "normal equations");
}

#[test]
fn softmax_linear_derivatives_match_finite_differences() {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(2);
    let (d, k, label) = (4, 3, 1);
    let m = SoftmaxLinear { d, k };
    let (w, xi, v) = (random(&mut rng, d * k), random(&mut rng, d), random(&mut rng, d * k));
    let (dw, dxi) = (random(&mut rng, d * k), random(&mut rng, d));
    let mut s = vec![0.0; k];
    m.probabilities(&w, &xi, &mut s);
    close(s.iter().sum::<f64>(), 1.0, "probabilities sum to 1");
    let mut g = vec![0.0; d * k];
    let loss = m.add_grad_w(&w, &xi, label, 1.0, &mut g);
    close(loss, m.loss(&w, &xi, label), "loss returned by add_grad_w");
    close(dot(&g, &dw), fd(|w| m.loss(w, &xi, label), &w, &dw), "grad_w");
    let grad = |w: &[f64], xi: &[f64], out: &mut [f64]| {
        out.fill(0.0);
        m.add_grad_w(w, xi, label, 1.0, out);
    };
    let mut hv = vec![0.0; d * k];
    m.add_hvp_w(&w, &xi, &v, 1.0, &mut hv);
    close_vec(&hv, &fd_vec(|w, o| grad(w, &xi, o), &w, &v, d * k), "hvp_w");
    let mut cp = vec![0.0; d];
    m.add_cross_point(&w, &xi, label, &v, 1.0, &mut cp);
    let want = fd(
        |xi| {
            let mut g = vec![0.0; d * k];
            grad(&w, xi, &mut g);
            dot(&g, &v)
        },
        &xi,
        &dxi,
    );
    close(dot(&cp, &dxi), want, "cross through the point");
}

#[test]
fn feature_ridge_derivatives_match_finite_differences() {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
    let (d, k) = (4, 3);
    let r = FeatureRidge { k, c: 0.2 };
    let (lambda, w, v) = (random(&mut rng, d), random(&mut rng, d * k), random(&mut rng, d * k));
    let dl = random(&mut rng, d);
    let grad = |lambda: &[f64], w: &[f64], out: &mut [f64]| {
        out.fill(0.0);
        r.add_hvp(lambda, w, out); // ∂W R = ∂WW R · W (R is quadratic in W)
    };
    let mut g = vec![0.0; d * k];
    grad(&lambda, &w, &mut g);
    close(dot(&g, &v), fd(|w| r.value(&lambda, w), &w, &v), "grad_w");
    let mut hv = vec![0.0; d * k];
    r.add_hvp(&lambda, &v, &mut hv);
    close_vec(&hv, &fd_vec(|w, o| grad(&lambda, w, o), &w, &v, d * k), "hvp");
    let mut cl = vec![0.0; d];
    r.cross_lambda(&lambda, &w, &v, &mut cl);
    let want = fd(
        |l| {
            let mut g = vec![0.0; d * k];
            grad(l, &w, &mut g);
            dot(&g, &v)
        },
        &lambda,
        &dl,
    );
    close(dot(&cl, &dl), want, "cross_lambda");
}
