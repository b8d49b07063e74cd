//! Derivative checks of the multinomial logistic model and the tanh equilibrium map against
//! central finite differences, adjoint identities, fixed-point residuals, thread-count
//! determinism and input validation.

use bilevel_kernels::models::equilibrium::{EquilibriumMap, FixedPointParams};
use bilevel_kernels::models::multinomial::{Hyper, MultinomialLogistic};
use bilevel_kernels::models::{DenseRows, Design};
use bilevel_kernels::{Batch, CsrMatrix, KernelError};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

const EPS: f64 = 1e-5;
const RTOL: f64 = 1e-6;

fn rng(seed: u64) -> Xoshiro256PlusPlus {
    Xoshiro256PlusPlus::seed_from_u64(seed)
}

fn uniform(r: &mut Xoshiro256PlusPlus, n: usize, lo: f64, hi: f64) -> Vec<f64> {
    (0..n).map(|_| r.random_range(lo..hi)).collect()
}

/// A random n × d matrix with about 40% zeros, as a dense and as a sparse design.
fn designs(r: &mut Xoshiro256PlusPlus, n: usize, d: usize) -> (Design, Design) {
    let data: Vec<f64> = (0..n * d).map(|_| if r.random_bool(0.4) { 0.0 } else { r.random_range(-1.0..1.0) }).collect();
    let triplets: Vec<_> = (0..n * d).filter(|&q| data[q] != 0.0).map(|q| (q / d, q % d, data[q])).collect();
    let sparse = CsrMatrix::from_triplets(n, d, &triplets).unwrap();
    (Design::Dense(DenseRows::new(n, d, data).unwrap()), Design::Sparse(sparse))
}

/// max|a − b| / max|b| (b the reference).
fn rel_err(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    let diff = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
    let scale = b.iter().map(|y| y.abs()).fold(0.0, f64::max).max(1e-12);
    diff / scale
}

fn assert_close(what: &str, a: &[f64], b: &[f64], rtol: f64) {
    let e = rel_err(a, b);
    assert!(e <= rtol, "{what}: relative error {e:e} > {rtol:e}\n got {a:?}\n ref {b:?}");
}

fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

// ---------------------------------------------------------------- multinomial

struct Eval {
    value: f64,
    grad_theta: Vec<f64>,
    grad_lambda: Vec<f64>,
}

fn eval(m: &MultinomialLogistic, theta: &[f64], lambda: &[f64], batch: Batch<'_>) -> Eval {
    let mut ws = m.workspace(batch.len(m.n_samples()));
    let mut grad_theta = vec![0.0; m.dim_theta()];
    let mut grad_lambda = vec![0.0; m.dim_lambda()];
    let pt = m.point(theta, lambda, batch, &mut ws).unwrap();
    let value = pt.value();
    let mut pt = pt;
    pt.grad_theta(&mut grad_theta).unwrap();
    pt.grad_lambda(&mut grad_lambda).unwrap();
    Eval { value, grad_theta, grad_lambda }
}

fn shifted(x: &[f64], k: usize, h: f64) -> Vec<f64> {
    let mut y = x.to_vec();
    y[k] += h;
    y
}

fn along(x: &[f64], v: &[f64], h: f64) -> Vec<f64> {
    x.iter().zip(v).map(|(x, v)| x + h * v).collect()
}

fn hypers(d: usize, k: usize) -> [Hyper; 5] {
    [
        Hyper::Plain,
        Hyper::per_feature_paper(d, k),
        Hyper::per_class_benchopt(),
        Hyper::sample_weights_paper(),
        // A larger ridge so the ridge terms weigh as much as the data terms.
        Hyper::SampleWeights { ridge: 0.3 },
    ]
}

/// Every derivative of one (model, batch) against central finite differences.
fn check_all_derivatives(m: &MultinomialLogistic, batch: Batch<'_>, seed: u64, label: &str) {
    let mut r = rng(seed);
    let theta = uniform(&mut r, m.dim_theta(), -1.0, 1.0);
    let lambda = uniform(&mut r, m.dim_lambda(), -1.5, 1.5);
    let v = uniform(&mut r, m.dim_theta(), -1.0, 1.0);
    let base = eval(m, &theta, &lambda, batch);

    // ∂Θ against FD of the value, coordinate by coordinate.
    let fd_theta: Vec<f64> = (0..m.dim_theta())
        .map(|q| {
            let (p, n) =
                (eval(m, &shifted(&theta, q, EPS), &lambda, batch), eval(m, &shifted(&theta, q, -EPS), &lambda, batch));
            (p.value - n.value) / (2.0 * EPS)
        })
        .collect();
    assert_close(&format!("{label}: grad_theta"), &base.grad_theta, &fd_theta, RTOL);

    // ∂λ against FD of the value.
    let fd_lambda: Vec<f64> = (0..m.dim_lambda())
        .map(|q| {
            let (p, n) =
                (eval(m, &theta, &shifted(&lambda, q, EPS), batch), eval(m, &theta, &shifted(&lambda, q, -EPS), batch));
            (p.value - n.value) / (2.0 * EPS)
        })
        .collect();
    if m.dim_lambda() > 0 {
        assert_close(&format!("{label}: grad_lambda"), &base.grad_lambda, &fd_lambda, RTOL);
    }

    // The fused value-and-gradient sweep gives the same bits as the two-step path.
    let mut ws = m.workspace(batch.len(m.n_samples()));
    let mut fused = vec![0.0; m.dim_theta()];
    let pt = m.point_with_grad(&theta, &lambda, batch, &mut ws, &mut fused).unwrap();
    assert_eq!(pt.value().to_bits(), base.value.to_bits(), "{label}: fused value");
    assert_eq!(fused, base.grad_theta, "{label}: fused gradient");

    // HVP against FD of the gradient along V.
    let mut pt = pt;
    let mut hv = vec![0.0; m.dim_theta()];
    pt.hvp(&v, &mut hv).unwrap();
    let (gp, gn) =
        (eval(m, &along(&theta, &v, EPS), &lambda, batch), eval(m, &along(&theta, &v, -EPS), &lambda, batch));
    let fd_hv: Vec<f64> = gp.grad_theta.iter().zip(&gn.grad_theta).map(|(p, n)| (p - n) / (2.0 * EPS)).collect();
    assert_close(&format!("{label}: hvp"), &hv, &fd_hv, RTOL);

    // Cross product against FD of ⟨∂Θ, V⟩ along each λ coordinate.
    let mut cross = vec![0.0; m.dim_lambda()];
    pt.cross(&v, &mut cross).unwrap();
    let fd_cross: Vec<f64> = (0..m.dim_lambda())
        .map(|q| {
            let p = eval(m, &theta, &shifted(&lambda, q, EPS), batch);
            let n = eval(m, &theta, &shifted(&lambda, q, -EPS), batch);
            (dot(&p.grad_theta, &v) - dot(&n.grad_theta, &v)) / (2.0 * EPS)
        })
        .collect();
    if m.dim_lambda() > 0 {
        assert_close(&format!("{label}: cross"), &cross, &fd_cross, RTOL);
    }

    // Per-sample weights: entries of samples outside the batch are exactly zero.
    if let (Hyper::SampleWeights { .. }, Batch::Rows(rows)) = (m.hyper(), batch) {
        for i in (0..m.n_samples()).filter(|i| !rows.contains(i)) {
            assert_eq!(cross[i], 0.0, "{label}: cross outside the batch");
            assert_eq!(base.grad_lambda[i], 0.0, "{label}: grad_lambda outside the batch");
        }
        assert!(rows.iter().all(|&i| cross[i] != 0.0 && base.grad_lambda[i] != 0.0));
    }
}

#[test]
fn multinomial_derivatives_match_finite_differences() {
    let (n, d, k) = (10, 4, 3);
    let mut r = rng(1);
    let (dense, sparse) = designs(&mut r, n, d);
    let labels: Vec<usize> = (0..n).map(|_| r.random_range(0..k)).collect();
    let rows = [3usize, 1, 3, 7, 0]; // sample 3 twice
    for (dname, design) in [("dense", &dense), ("sparse", &sparse)] {
        for hyper in hypers(d, k) {
            let m = MultinomialLogistic::new(design.clone(), labels.clone(), k, hyper).unwrap();
            for (bname, batch) in [("full", Batch::Full), ("rows", Batch::Rows(&rows))] {
                check_all_derivatives(&m, batch, 7, &format!("{dname}/{hyper:?}/{bname}"));
            }
        }
    }
}

#[test]
fn multinomial_dense_and_sparse_agree() {
    let (n, d, k) = (12, 6, 4);
    let mut r = rng(2);
    let (dense, sparse) = designs(&mut r, n, d);
    let labels: Vec<usize> = (0..n).map(|_| r.random_range(0..k)).collect();
    let theta = uniform(&mut r, d * k, -1.0, 1.0);
    for hyper in hypers(d, k) {
        let md = MultinomialLogistic::new(dense.clone(), labels.clone(), k, hyper).unwrap();
        let ms = MultinomialLogistic::new(sparse.clone(), labels.clone(), k, hyper).unwrap();
        let lambda = uniform(&mut r, md.dim_lambda(), -1.0, 1.0);
        let (a, b) = (eval(&md, &theta, &lambda, Batch::Full), eval(&ms, &theta, &lambda, Batch::Full));
        assert!((a.value - b.value).abs() <= 1e-13 * a.value.abs());
        assert_close("dense vs sparse grad", &a.grad_theta, &b.grad_theta, 1e-13);
    }
}

#[test]
fn multinomial_value_is_stable_for_huge_logits() {
    // Logits of order 1e4 overflow a naive exp; the shifted log-sum-exp stays exact:
    // with z = (t, 0) for one sample with label 1, CE = t + log(1 + e^{-t}) ≈ t.
    let x = Design::Dense(DenseRows::new(1, 1, vec![1.0]).unwrap());
    let m = MultinomialLogistic::new(x, vec![1], 2, Hyper::Plain).unwrap();
    let theta = [1e4, 0.0];
    let e = eval(&m, &theta, &[], Batch::Full);
    assert_eq!(e.value, 1e4);
    assert_eq!(e.grad_theta, vec![1.0, -1.0]);
}

#[test]
fn multinomial_plain_value_is_the_mean_cross_entropy() {
    // Closed form on a batch with a repeated index: mean of −log softmax(z_i)_{y_i}.
    let (n, d, k) = (5, 3, 4);
    let mut r = rng(3);
    let (dense, _) = designs(&mut r, n, d);
    let labels: Vec<usize> = (0..n).map(|_| r.random_range(0..k)).collect();
    let theta = uniform(&mut r, d * k, -2.0, 2.0);
    let m = MultinomialLogistic::new(dense.clone(), labels.clone(), k, Hyper::Plain).unwrap();
    let rows = [4usize, 0, 4];
    let Design::Dense(xd) = &dense else { unreachable!() };
    let ce = |i: usize| {
        let z: Vec<f64> = (0..k).map(|c| (0..d).map(|j| xd.row(i)[j] * theta[j * k + c]).sum()).collect();
        -(z[labels[i]].exp() / z.iter().map(|z| z.exp()).sum::<f64>()).ln()
    };
    let expected = rows.iter().map(|&i| ce(i)).sum::<f64>() / 3.0;
    let got = eval(&m, &theta, &[], Batch::Rows(&rows)).value;
    assert!((got - expected).abs() <= 1e-13 * expected.abs(), "{got} vs {expected}");
}

/// All outputs of one evaluation, for bitwise comparisons.
fn all_outputs(m: &MultinomialLogistic, theta: &[f64], lambda: &[f64], v: &[f64], batch: Batch<'_>) -> Vec<f64> {
    let mut ws = m.workspace(m.n_samples());
    let mut out = vec![0.0; m.dim_theta()];
    let mut pt = m.point_with_grad(theta, lambda, batch, &mut ws, &mut out).unwrap();
    let mut res = vec![pt.value()];
    res.extend_from_slice(&out);
    pt.grad_theta(&mut out).unwrap();
    res.extend_from_slice(&out);
    pt.hvp(v, &mut out).unwrap();
    res.extend_from_slice(&out);
    let mut lam = vec![0.0; m.dim_lambda()];
    pt.cross(v, &mut lam).unwrap();
    res.extend_from_slice(&lam);
    pt.grad_lambda(&mut lam).unwrap();
    res.extend_from_slice(&lam);
    res
}

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap()
}

#[test]
fn multinomial_one_and_two_threads_give_identical_bits() {
    let (n, d, k) = (3000, 30, 5);
    let mut r = rng(4);
    let (dense, sparse) = designs(&mut r, n, d);
    let labels: Vec<usize> = (0..n).map(|_| r.random_range(0..k)).collect();
    let theta = uniform(&mut r, d * k, -0.5, 0.5);
    let v = uniform(&mut r, d * k, -1.0, 1.0);
    let rows: Vec<usize> = (0..2500).map(|_| r.random_range(0..n)).collect();
    for design in [dense, sparse] {
        for hyper in [Hyper::per_feature_paper(d, k), Hyper::sample_weights_paper()] {
            let m = MultinomialLogistic::new(design.clone(), labels.clone(), k, hyper).unwrap();
            assert!(m.workspace(n).blocks() > 1, "the test must exercise the block-parallel path");
            let lambda = uniform(&mut r, m.dim_lambda(), -1.0, 1.0);
            for batch in [Batch::Full, Batch::Rows(&rows)] {
                let one = pool(1).install(|| all_outputs(&m, &theta, &lambda, &v, batch));
                let two = pool(2).install(|| all_outputs(&m, &theta, &lambda, &v, batch));
                let bits = |x: &[f64]| x.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&one), bits(&two));
            }
        }
    }
}

#[test]
fn multinomial_parallel_gradient_matches_a_naive_sum() {
    // The block-parallel scatter against a straightforward per-sample loop.
    let (n, d, k) = (3000, 30, 5);
    let mut r = rng(5);
    let (dense, _) = designs(&mut r, n, d);
    let labels: Vec<usize> = (0..n).map(|_| r.random_range(0..k)).collect();
    let theta = uniform(&mut r, d * k, -0.5, 0.5);
    let m = MultinomialLogistic::new(dense.clone(), labels.clone(), k, Hyper::Plain).unwrap();
    let got = pool(2).install(|| eval(&m, &theta, &[], Batch::Full).grad_theta);
    let Design::Dense(xd) = &dense else { unreachable!() };
    let mut naive = vec![0.0; d * k];
    for (i, &y) in labels.iter().enumerate() {
        let x = xd.row(i);
        let z: Vec<f64> = (0..k).map(|c| (0..d).map(|j| x[j] * theta[j * k + c]).sum()).collect();
        let mx = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = z.iter().map(|z| (z - mx).exp()).collect();
        let s: f64 = e.iter().sum();
        for c in 0..k {
            let g = (e[c] / s - if c == y { 1.0 } else { 0.0 }) / n as f64;
            for j in 0..d {
                naive[j * k + c] += x[j] * g;
            }
        }
    }
    assert_close("parallel grad vs naive", &got, &naive, 1e-12);
}

#[test]
fn multinomial_rejects_bad_input() {
    let (n, d, k) = (6, 3, 3);
    let mut r = rng(6);
    let (dense, _) = designs(&mut r, n, d);
    let labels = vec![0, 1, 2, 0, 1, 2];
    let bad_label = vec![0, 1, 3, 0, 1, 2];
    assert!(matches!(
        MultinomialLogistic::new(dense.clone(), bad_label, k, Hyper::Plain),
        Err(KernelError::InvalidData { what: "labels", .. })
    ));
    assert!(matches!(
        MultinomialLogistic::new(dense.clone(), vec![0; 5], k, Hyper::Plain),
        Err(KernelError::DimensionMismatch { what: "labels", expected: 6, got: 5 })
    ));
    assert!(matches!(
        MultinomialLogistic::new(dense.clone(), labels.clone(), 1, Hyper::Plain),
        Err(KernelError::InvalidParameter { name: "n_classes", .. })
    ));
    assert!(matches!(
        MultinomialLogistic::new(dense.clone(), labels.clone(), k, Hyper::PerFeature { scale: -1.0 }),
        Err(KernelError::InvalidParameter { name: "scale", .. })
    ));
    assert!(matches!(
        MultinomialLogistic::new(dense.clone(), labels.clone(), k, Hyper::SampleWeights { ridge: f64::NAN }),
        Err(KernelError::InvalidParameter { name: "ridge", .. })
    ));

    let m = MultinomialLogistic::new(dense, labels, k, Hyper::per_feature_paper(d, k)).unwrap();
    let theta = vec![0.1; d * k];
    let lambda = vec![0.0; d];
    let mut ws = m.workspace(n);
    let err = |res: Result<bilevel_kernels::models::multinomial::MultinomialPoint<'_>, KernelError>| res.err();
    assert!(matches!(
        err(m.point(&theta[1..], &lambda, Batch::Full, &mut ws)),
        Some(KernelError::DimensionMismatch { what: "theta", .. })
    ));
    assert!(matches!(
        err(m.point(&theta, &lambda[1..], Batch::Full, &mut ws)),
        Some(KernelError::DimensionMismatch { what: "lambda", .. })
    ));
    let mut nan_theta = theta.clone();
    nan_theta[4] = f64::NAN;
    assert!(matches!(
        err(m.point(&nan_theta, &lambda, Batch::Full, &mut ws)),
        Some(KernelError::NonFinite { what: "theta", index: 4 })
    ));
    let inf_lambda = vec![0.0, f64::INFINITY, 0.0];
    assert!(matches!(
        err(m.point(&theta, &inf_lambda, Batch::Full, &mut ws)),
        Some(KernelError::NonFinite { what: "lambda", index: 1 })
    ));
    assert!(matches!(
        err(m.point(&theta, &[0.0, 800.0, 0.0], Batch::Full, &mut ws)),
        Some(KernelError::NonFinite { what: "scale·exp(lambda)", index: 1 })
    ));
    assert!(matches!(
        err(m.point(&theta, &lambda, Batch::Rows(&[0, 6]), &mut ws)),
        Some(KernelError::InvalidData { what: "batch", .. })
    ));
    assert!(matches!(err(m.point(&theta, &lambda, Batch::Rows(&[]), &mut ws)), Some(KernelError::InvalidData { .. })));
    let mut small = m.workspace(2);
    assert!(matches!(
        err(m.point(&theta, &lambda, Batch::Rows(&[0, 1, 2]), &mut small)),
        Some(KernelError::InvalidParameter { name: "batch", .. })
    ));
    let mut other = MultinomialLogistic::new(
        Design::Dense(DenseRows::new(1, 2, vec![1.0, 2.0]).unwrap()),
        vec![0],
        k,
        Hyper::Plain,
    )
    .unwrap()
    .workspace(n);
    assert!(matches!(
        err(m.point(&theta, &lambda, Batch::Full, &mut other)),
        Some(KernelError::DimensionMismatch { what: "workspace features", .. })
    ));
    let mut pt = m.point(&theta, &lambda, Batch::Full, &mut ws).unwrap();
    let mut out = vec![0.0; d * k];
    assert!(matches!(pt.hvp(&theta[1..], &mut out), Err(KernelError::DimensionMismatch { what: "v", .. })));
    assert!(matches!(pt.hvp(&nan_theta, &mut out), Err(KernelError::NonFinite { what: "v", .. })));
    assert!(matches!(pt.grad_theta(&mut out[1..]), Err(KernelError::DimensionMismatch { .. })));
    assert!(matches!(pt.cross(&theta, &mut out), Err(KernelError::DimensionMismatch { what: "cross out", .. })));
}

// ---------------------------------------------------------------- equilibrium

/// λ = (A, B, a) with A scaled to ‖A‖_F = `a_norm`.
fn random_lambda(map: &EquilibriumMap, r: &mut Xoshiro256PlusPlus, a_norm: f64) -> Vec<f64> {
    let h = map.hidden();
    let mut lambda = uniform(r, map.dim_lambda(), -1.0, 1.0);
    let f = lambda[..h * h].iter().map(|x| x * x).sum::<f64>().sqrt();
    lambda[..h * h].iter_mut().for_each(|x| *x *= a_norm / f);
    lambda
}

fn phi(map: &EquilibriumMap, lambda: &[f64], w: &[f64], batch: Batch<'_>) -> Vec<f64> {
    let mut out = vec![0.0; w.len()];
    map.map(lambda, w, batch, &mut out).unwrap();
    out
}

fn check_equilibrium_derivatives(map: &EquilibriumMap, batch: Batch<'_>, label: &str) {
    let mut r = rng(11);
    let h = map.hidden();
    let len = batch.len(map.n_samples());
    let lambda = random_lambda(map, &mut r, 0.5);
    let w = uniform(&mut r, len * h, -1.0, 1.0);
    let v = uniform(&mut r, len * h, -1.0, 1.0);
    let u = uniform(&mut r, len * h, -1.0, 1.0);
    let dl = uniform(&mut r, map.dim_lambda(), -1.0, 1.0);
    let mut ws = map.workspace(len);
    let mut pt = map.point(&lambda, &w, batch, &mut ws).unwrap();
    assert_eq!(pt.phi(), &phi(map, &lambda, &w, batch)[..], "{label}: cached Φ");
    let d_ok = pt.jacobian_diag().iter().zip(pt.phi()).all(|(d, t)| (d - (1.0 - t * t)).abs() < 1e-15);
    assert!(d_ok, "{label}: D = 1 − Φ²");

    // ∂wΦ·V against FD of Φ along V.
    let mut jv = vec![0.0; len * h];
    pt.jvp_w(&v, &mut jv).unwrap();
    let (p, n) = (phi(map, &lambda, &along(&w, &v, EPS), batch), phi(map, &lambda, &along(&w, &v, -EPS), batch));
    let fd: Vec<f64> = p.iter().zip(&n).map(|(p, n)| (p - n) / (2.0 * EPS)).collect();
    assert_close(&format!("{label}: jvp_w"), &jv, &fd, RTOL);

    // ∂wΦᵀ·U: adjoint of the JVP, and FD of ⟨U, Φ⟩ coordinate by coordinate.
    let mut jtu = vec![0.0; len * h];
    pt.vjp_w(&u, &mut jtu).unwrap();
    let (lhs, rhs) = (dot(&u, &jv), dot(&jtu, &v));
    assert!((lhs - rhs).abs() <= 1e-13 * lhs.abs().max(rhs.abs()), "{label}: <u, Jv> = {lhs} vs <J'u, v> = {rhs}");
    let fd: Vec<f64> = (0..len * h)
        .map(|q| {
            let p = dot(&u, &phi(map, &lambda, &shifted(&w, q, EPS), batch));
            let n = dot(&u, &phi(map, &lambda, &shifted(&w, q, -EPS), batch));
            (p - n) / (2.0 * EPS)
        })
        .collect();
    assert_close(&format!("{label}: vjp_w"), &jtu, &fd, RTOL);

    // ∂λΦ·dλ against FD along dλ.
    let mut jl = vec![0.0; len * h];
    pt.jvp_lambda(&dl, &mut jl).unwrap();
    let (p, n) = (phi(map, &along(&lambda, &dl, EPS), &w, batch), phi(map, &along(&lambda, &dl, -EPS), &w, batch));
    let fd: Vec<f64> = p.iter().zip(&n).map(|(p, n)| (p - n) / (2.0 * EPS)).collect();
    assert_close(&format!("{label}: jvp_lambda"), &jl, &fd, RTOL);

    // ∂λΦᵀ·U: adjoint of the λ-JVP, and FD of ⟨U, Φ⟩ along every λ coordinate.
    let mut jlt = vec![0.0; map.dim_lambda()];
    pt.vjp_lambda(&u, &mut jlt).unwrap();
    let (lhs, rhs) = (dot(&u, &jl), dot(&jlt, &dl));
    assert!((lhs - rhs).abs() <= 1e-13 * lhs.abs().max(rhs.abs()), "{label}: λ adjoint {lhs} vs {rhs}");
    let fd: Vec<f64> = (0..map.dim_lambda())
        .map(|q| {
            let p = dot(&u, &phi(map, &shifted(&lambda, q, EPS), &w, batch));
            let n = dot(&u, &phi(map, &shifted(&lambda, q, -EPS), &w, batch));
            (p - n) / (2.0 * EPS)
        })
        .collect();
    assert_close(&format!("{label}: vjp_lambda"), &jlt, &fd, RTOL);
}

#[test]
fn equilibrium_jacobian_products_match_finite_differences_and_are_adjoint() {
    let (n, p, h) = (9, 4, 5);
    let mut r = rng(10);
    let (dense, sparse) = designs(&mut r, n, p);
    let rows = [2usize, 5, 2, 8];
    for (dname, design) in [("dense", dense), ("sparse", sparse)] {
        let map = EquilibriumMap::new(design, h).unwrap();
        for (bname, batch) in [("full", Batch::Full), ("rows", Batch::Rows(&rows))] {
            check_equilibrium_derivatives(&map, batch, &format!("{dname}/{bname}"));
        }
    }
}

#[test]
fn equilibrium_fixed_point_satisfies_w_equals_phi() {
    let (n, p, h) = (9, 4, 6);
    let mut r = rng(12);
    let (dense, sparse) = designs(&mut r, n, p);
    let rows = [3usize, 0, 3];
    for design in [dense, sparse] {
        let map = EquilibriumMap::new(design, h).unwrap();
        let lambda = random_lambda(&map, &mut r, 0.9);
        for batch in [Batch::Full, Batch::Rows(&rows)] {
            let len = batch.len(n);
            let mut ws = map.workspace(len);
            let mut w = vec![0.0; len * h];
            let info = map.fixed_point(&lambda, batch, &mut w, FixedPointParams::default(), &mut ws).unwrap();
            assert!(info.converged && info.contraction.certified && info.iterations > 1, "{info:?}");
            let res = max_abs_diff(&phi(&map, &lambda, &w, batch), &w);
            assert!(res <= 1e-12, "max |Φ(w) − w| = {res:e}");
            if let Batch::Rows(_) = batch {
                assert_eq!(w[..h], w[2 * h..], "repeated sample, same fixed point");
            }
        }
    }
}

/// 0.9·(I − 2vvᵀ/‖v‖²): spectral norm 0.9 with Frobenius and √(‖·‖₁‖·‖∞) bounds above 1.
fn scaled_reflector(h: usize, scale: f64, r: &mut Xoshiro256PlusPlus) -> Vec<f64> {
    let v = uniform(r, h, 0.5, 1.0);
    let nv = dot(&v, &v);
    (0..h * h)
        .map(|q| {
            let (k, l) = (q / h, q % h);
            scale * (if k == l { 1.0 } else { 0.0 } - 2.0 * v[k] * v[l] / nv)
        })
        .collect()
}

#[test]
fn equilibrium_contraction_check() {
    let (n, p, h) = (4, 3, 6);
    let mut r = rng(13);
    let (dense, _) = designs(&mut r, n, p);
    let map = EquilibriumMap::new(dense, h).unwrap();
    let mut ws = map.workspace(n);
    let mut lambda = random_lambda(&map, &mut r, 0.5);

    // Uncertified but contractive: power iteration finds ‖A‖₂ = 0.9.
    lambda[..h * h].copy_from_slice(&scaled_reflector(h, 0.9, &mut r));
    let check = map.check_contraction(&lambda, &mut ws).unwrap();
    assert!(!check.certified && (check.q - 0.9).abs() < 1e-9, "{check:?}");
    let mut w = vec![0.0; n * h];
    let info = map.fixed_point(&lambda, Batch::Full, &mut w, FixedPointParams::default(), &mut ws).unwrap();
    assert!(info.converged);
    let res = max_abs_diff(&phi(&map, &lambda, &w, Batch::Full), &w);
    assert!(res <= 1e-12);

    // Not a contraction: ‖A‖₂ = 1.1, and 1.5·I.
    lambda[..h * h].copy_from_slice(&scaled_reflector(h, 1.1, &mut r));
    assert!(matches!(map.check_contraction(&lambda, &mut ws), Err(KernelError::InvalidParameter { name: "A", .. })));
    lambda[..h * h].iter_mut().enumerate().for_each(|(q, a)| *a = if q % (h + 1) == 0 { 1.5 } else { 0.0 });
    let mut w = vec![0.0; n * h];
    assert!(matches!(
        map.fixed_point(&lambda, Batch::Full, &mut w, FixedPointParams::default(), &mut ws),
        Err(KernelError::InvalidParameter { name: "A", .. })
    ));

    // A fixed number of steps (tol = 0) reports non-convergence rather than failing.
    let lambda = random_lambda(&map, &mut r, 0.5);
    let params = FixedPointParams { tol: 0.0, max_iter: 2 };
    let info = map.fixed_point(&lambda, Batch::Full, &mut w, params, &mut ws).unwrap();
    assert!(!info.converged && info.iterations == 2 && info.residual > 0.0);
}

fn equilibrium_outputs(map: &EquilibriumMap, lambda: &[f64], u: &[f64]) -> Vec<f64> {
    let n = map.n_samples();
    let h = map.hidden();
    let mut ws = map.workspace(n);
    let mut w = vec![0.0; n * h];
    map.fixed_point(lambda, Batch::Full, &mut w, FixedPointParams::default(), &mut ws).unwrap();
    let mut pt = map.point(lambda, &w, Batch::Full, &mut ws).unwrap();
    let mut res = w.clone();
    let mut out = vec![0.0; n * h];
    pt.vjp_w(u, &mut out).unwrap();
    res.extend_from_slice(&out);
    let mut lam = vec![0.0; map.dim_lambda()];
    pt.vjp_lambda(u, &mut lam).unwrap();
    res.extend_from_slice(&lam);
    res
}

#[test]
fn equilibrium_one_and_two_threads_give_identical_bits() {
    let (n, p, h) = (2000, 10, 16);
    let mut r = rng(14);
    let (dense, sparse) = designs(&mut r, n, p);
    for design in [dense, sparse] {
        let map = EquilibriumMap::new(design, h).unwrap();
        assert!(map.workspace(n).blocks() > 1);
        let lambda = random_lambda(&map, &mut r, 0.5);
        let u = uniform(&mut r, n * h, -1.0, 1.0);
        let one = pool(1).install(|| equilibrium_outputs(&map, &lambda, &u));
        let two = pool(2).install(|| equilibrium_outputs(&map, &lambda, &u));
        let bits = |x: &[f64]| x.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&one), bits(&two));
        // And the block-parallel λ-adjoint is the sum of the per-sample adjoints.
        let mut seq = vec![0.0; map.dim_lambda()];
        let w = &one[..n * h];
        let mut ws = map.workspace(1);
        for i in 0..n {
            let mut part = vec![0.0; map.dim_lambda()];
            let rows = [i];
            let mut pt = map.point(&lambda, &w[i * h..(i + 1) * h], Batch::Rows(&rows), &mut ws).unwrap();
            pt.vjp_lambda(&u[i * h..(i + 1) * h], &mut part).unwrap();
            seq.iter_mut().zip(&part).for_each(|(s, p)| *s += p);
        }
        assert_close("blocked vs per-sample vjp_lambda", &one[2 * n * h..], &seq, 1e-12);
    }
}

#[test]
fn equilibrium_rejects_bad_input() {
    let (n, p, h) = (5, 3, 4);
    let mut r = rng(15);
    let (dense, _) = designs(&mut r, n, p);
    assert!(matches!(EquilibriumMap::new(dense.clone(), 0), Err(KernelError::InvalidParameter { name: "hidden", .. })));
    let map = EquilibriumMap::new(dense, h).unwrap();
    let lambda = random_lambda(&map, &mut r, 0.5);
    let w = vec![0.0; n * h];
    let mut out = vec![0.0; n * h];
    assert!(matches!(
        map.map(&lambda[1..], &w, Batch::Full, &mut out),
        Err(KernelError::DimensionMismatch { what: "lambda", .. })
    ));
    assert!(matches!(
        map.map(&lambda, &w[1..], Batch::Full, &mut out),
        Err(KernelError::DimensionMismatch { what: "w", .. })
    ));
    assert!(matches!(
        map.map(&lambda, &w, Batch::Full, &mut out[1..]),
        Err(KernelError::DimensionMismatch { what: "out", .. })
    ));
    let mut nan_w = w.clone();
    nan_w[3] = f64::NAN;
    assert!(matches!(
        map.map(&lambda, &nan_w, Batch::Full, &mut out),
        Err(KernelError::NonFinite { what: "w", index: 3 })
    ));
    assert!(matches!(
        map.map(&lambda, &w[..2 * h], Batch::Rows(&[1, 5]), &mut out[..2 * h]),
        Err(KernelError::InvalidData { what: "batch", .. })
    ));
    let mut ws = map.workspace(2);
    let mut w3 = vec![0.0; 3 * h];
    assert!(matches!(
        map.fixed_point(&lambda, Batch::Rows(&[0, 1, 2]), &mut w3, FixedPointParams::default(), &mut ws),
        Err(KernelError::InvalidParameter { name: "batch", .. })
    ));
    let bad = FixedPointParams { tol: -1.0, max_iter: 10 };
    assert!(matches!(
        map.fixed_point(&lambda, Batch::Rows(&[0, 1]), &mut w3[..2 * h], bad, &mut ws),
        Err(KernelError::InvalidParameter { name: "tol", .. })
    ));
    let pt = map.point(&lambda, &w[..2 * h], Batch::Rows(&[0, 1]), &mut ws).unwrap();
    let mut o = vec![0.0; 2 * h];
    assert!(matches!(pt.jvp_w(&w[..h], &mut o), Err(KernelError::DimensionMismatch { what: "v", .. })));
    assert!(matches!(pt.vjp_w(&nan_w[..2 * h], &mut o), Err(KernelError::NonFinite { what: "v", .. })));
    assert!(matches!(pt.jvp_lambda(&lambda[1..], &mut o), Err(KernelError::DimensionMismatch { what: "dlambda", .. })));
}

#[test]
fn multinomial_gathered_full_batch_hvp_equals_the_scattered_one() {
    // A sparse design's full-batch HVP gathers from Xᵀ (no accumulators); the same rows as an
    // explicit batch go through the block scatter, and the dense design through its own path:
    // all three agree to rounding, in the parallel regime.
    let (n, d, k) = (3000, 30, 5);
    let mut r = rng(6);
    let (dense, sparse) = designs(&mut r, n, d);
    let labels: Vec<usize> = (0..n).map(|_| r.random_range(0..k)).collect();
    let theta = uniform(&mut r, d * k, -0.5, 0.5);
    let v = uniform(&mut r, d * k, -1.0, 1.0);
    let all: Vec<usize> = (0..n).collect();
    for hyper in [Hyper::per_feature_paper(d, k), Hyper::sample_weights_paper(), Hyper::Plain] {
        let ms = MultinomialLogistic::new(sparse.clone(), labels.clone(), k, hyper).unwrap();
        let md = MultinomialLogistic::new(dense.clone(), labels.clone(), k, hyper).unwrap();
        let lambda = uniform(&mut r, ms.dim_lambda(), -1.0, 1.0);
        let hvp = |m: &MultinomialLogistic, batch: Batch<'_>| {
            let mut ws = m.workspace(n);
            let mut pt = m.point(&theta, &lambda, batch, &mut ws).unwrap();
            let mut out = vec![f64::NAN; d * k];
            pool(2).install(|| pt.hvp(&v, &mut out)).unwrap();
            out
        };
        let gathered = hvp(&ms, Batch::Full);
        assert_close("gathered vs scattered (same rows)", &gathered, &hvp(&ms, Batch::Rows(&all)), 1e-12);
        assert_close("gathered vs dense", &gathered, &hvp(&md, Batch::Full), 1e-12);
    }
}
