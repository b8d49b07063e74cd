//! The equilibrium model's metrics (paper 001 §7.1): the exact hypergradient against central
//! finite differences of f(λ) = E(w(λ), λ); the gradient mapping G_α of Def. 11 against ∇f
//! inside Λ and with the θ box active; the test split and its loss and accuracy against a hand
//! computation; the NaN policy outside the contraction region.

use bilevel_data::equilibrium::{generate, Config, EquilibriumProblem, GRAD_MAPPING_STEP};
use bilevel_data::Dataset;
use bilevel_kernels::models::equilibrium::FixedPointParams;
use bilevel_kernels::models::Design;
use bilevel_kernels::{Batch, FixedPointProblem};
use faer::Mat;
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;
mod common;
use common::{dot, fd, rand_vec};

const NAMES: [&str; 6] =
    ["train_loss", "train_accuracy", "grad_mapping", "grad_norm_exact", "test_loss", "test_accuracy"];

fn tiny(seed: u64) -> EquilibriumProblem {
    generate(&Config::preset("tiny").unwrap(), seed).unwrap()
}

fn norm(x: &[f64]) -> f64 {
    dot(x, x).sqrt()
}

/// (K, h, p) and the offset of A in λ.
fn sizes(p: &EquilibriumProblem) -> (usize, usize, usize, usize) {
    let c = p.config();
    (c.n_classes, c.hidden, c.input_dim, c.n_classes * (c.hidden + 1))
}

fn spectral_norm(p: &EquilibriumProblem, lambda: &[f64]) -> f64 {
    let (_, h, _, off) = sizes(p);
    let a = Mat::from_fn(h, h, |i, j| lambda[off + i * h + j]);
    a.singular_values().unwrap().into_iter().fold(0.0, f64::max)
}

/// A random λ with ‖A‖₂ = `a_norm` and θ entries in (−θ_max, θ_max); b, B, a uniform in [−½, ½).
fn random_lambda(p: &EquilibriumProblem, a_norm: f64, theta_max: f64, seed: u64) -> Vec<f64> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let (k, h, _, off) = sizes(p);
    let mut lambda = rand_vec(p.dim_lambda(), &mut rng);
    lambda[..k * h].iter_mut().for_each(|t| *t *= 1.98 * theta_max); // |t| < 0.99 θ_max
    let scale = a_norm / spectral_norm(p, &lambda);
    lambda[off..off + h * h].iter_mut().for_each(|a| *a *= scale);
    assert!((spectral_norm(p, &lambda) - a_norm).abs() < 1e-12);
    lambda
}

/// f(λ) = E(w(λ), λ) with every training example's fixed point solved to 1e-15.
fn objective(p: &EquilibriumProblem, lambda: &[f64]) -> f64 {
    let mut w = vec![0.0; p.n_samples() * p.dim_state()];
    let info = p.solve_states(lambda, Batch::Full, &mut w, FixedPointParams { tol: 1e-15, max_iter: 10_000 }).unwrap();
    assert!(info.converged, "{info:?}");
    p.upper(lambda, &w, Batch::Full)
}

fn exact(p: &EquilibriumProblem, lambda: &[f64]) -> Vec<f64> {
    let mut grad = vec![0.0; p.dim_lambda()];
    let info = p.exact_hypergradient(lambda, &mut grad).unwrap();
    assert!(info.fixed_point.converged && info.adjoint_residual <= 1e-12, "{info:?}");
    grad
}

fn metrics(p: &EquilibriumProblem, lambda: &[f64]) -> Vec<f64> {
    let m = FixedPointProblem::metrics(p).unwrap();
    assert_eq!(m.names(), NAMES);
    let mut out = vec![f64::NAN; NAMES.len()];
    m.evaluate(lambda, &[], &mut out);
    out
}

#[test]
fn the_exact_hypergradient_matches_finite_differences_of_the_training_objective() {
    for (seed, preset) in [(1, "tiny"), (2, "tiny"), (3, "small")] {
        let mut config = Config::preset(preset).unwrap();
        if preset == "small" {
            // 100 examples keep the 3 × 2 solves of the differences quick; all of λ's blocks.
            config.n_samples = 100;
        }
        let p = generate(&config, seed).unwrap();
        let lambda = random_lambda(&p, 0.45, 0.9, 10 + seed);
        let grad = exact(&p, &lambda);
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(20 + seed);
        for _ in 0..3 {
            let d = rand_vec(p.dim_lambda(), &mut rng);
            let (got, want) = (dot(&grad, &d), fd(|l| objective(&p, l), &lambda, &d));
            assert!(want.abs() > 1e-4, "a direction with a measurable slope: {want}");
            assert!((got - want).abs() < 1e-6 * want.abs(), "{preset} seed {seed}: {got} vs {want}");
        }
        // The metric is its norm.
        let out = metrics(&p, &lambda);
        assert!((out[3] - norm(&grad)).abs() <= 1e-12 * norm(&grad), "{} vs {}", out[3], norm(&grad));
    }
}

#[test]
fn the_gradient_mapping_is_the_gradient_inside_lambda_and_smaller_on_the_active_theta_box() {
    let p = tiny(4);
    let (k, h, _, _) = sizes(&p);
    // Strictly inside: ‖A‖₂ = 0.2, |θ| < 0.5, and α‖∇f‖₂ = 0.2 keeps λ − α∇f inside
    // (‖A − α∇_A f‖₂ ≤ 0.4, |θ − α∇_θ f| < 0.7).
    let lambda = random_lambda(&p, 0.2, 0.5, 7);
    let grad = exact(&p, &lambda);
    let alpha = 0.2 / norm(&grad);
    let mut g = vec![0.0; p.dim_lambda()];
    p.gradient_mapping(&lambda, &grad, alpha, &mut g).unwrap();
    let diff: Vec<f64> = g.iter().zip(&grad).map(|(a, b)| a - b).collect();
    assert!(norm(&diff) < 1e-9 * norm(&grad), "‖G − ∇f‖ = {} (‖∇f‖ = {})", norm(&diff), norm(&grad));
    // The metric at that α: ‖G_α‖ = ‖∇f‖; at the default α = 1 the step leaves Λ here.
    let q = tiny(4).with_grad_mapping_step(alpha).unwrap();
    assert_eq!(p.grad_mapping_step(), GRAD_MAPPING_STEP);
    let out = metrics(&q, &lambda);
    assert!((out[2] - out[3]).abs() < 1e-9 * out[3] && (out[3] - norm(&grad)).abs() < 1e-12 * norm(&grad));

    // On the boundary: every θ entry at +1. Where ∂θf < 0 the step pushes θ beyond 1 and P_Λ
    // clamps it back (G = 0 there); where ∂θf > 0 it moves inward (G = ∇f there); A, b, B and a
    // are free (‖A‖₂ = 0.2).
    let mut edge = lambda.clone();
    edge[..k * h].fill(1.0);
    let grad = exact(&p, &edge);
    let alpha = 0.5;
    assert!(grad[..k * h].iter().all(|g| alpha * g.abs() < 2.0), "the inward steps stay in the box");
    let outward = grad[..k * h].iter().filter(|g| **g < 0.0).count();
    assert!(outward > 0 && outward < k * h, "{outward} of {} θ entries pushed outward", k * h);
    p.gradient_mapping(&edge, &grad, alpha, &mut g).unwrap();
    let scale = norm(&grad);
    for (j, (gj, dj)) in g.iter().zip(&grad).enumerate() {
        let want = if j < k * h && *dj < 0.0 { 0.0 } else { *dj };
        assert!((gj - want).abs() <= 1e-12 * scale, "entry {j}: G = {gj}, want {want} (∇f = {dj})");
    }
    let clipped: f64 = grad[..k * h].iter().filter(|g| **g < 0.0).map(|g| g * g).sum();
    assert!(norm(&g) < norm(&grad) && ((norm(&g).powi(2) + clipped) / scale.powi(2) - 1.0).abs() < 1e-12);
    let out = metrics(&tiny(4).with_grad_mapping_step(alpha).unwrap(), &edge);
    assert!((out[2] - norm(&g)).abs() <= 1e-12 * scale && out[2] < out[3], "{out:?}");
    // A step that is not finite and > 0 is refused.
    assert!(
        tiny(4).with_grad_mapping_step(0.0).is_err() && p.gradient_mapping(&edge, &grad, f64::NAN, &mut g).is_err()
    );
}

/// Every test example's fixed point by plain loops (λ split by hand), then the read-out:
/// (mean cross-entropy, accuracy).
fn by_hand(p: &EquilibriumProblem, lambda: &[f64]) -> (f64, f64) {
    let (k, h, dim_u, off) = sizes(p);
    let (theta, b) = (&lambda[..k * h], &lambda[k * h..off]);
    let (a_mat, rest) = lambda[off..].split_at(h * h);
    let (b_mat, a_vec) = rest.split_at(h * dim_u);
    let Some(Design::Dense(u)) = p.test_inputs() else { panic!("a dense test split") };
    let labels = p.test_labels();
    let (mut loss, mut correct) = (0.0, 0);
    for (i, &label) in labels.iter().enumerate() {
        let ui = &u.data()[i * dim_u..(i + 1) * dim_u];
        let mut w = vec![0.0; h];
        for _ in 0..200 {
            w = (0..h)
                .map(|r| {
                    (dot(&a_mat[r * h..(r + 1) * h], &w) + dot(&b_mat[r * dim_u..(r + 1) * dim_u], ui) + a_vec[r])
                        .tanh()
                })
                .collect();
        }
        let logits: Vec<f64> = (0..k).map(|c| b[c] + dot(&theta[c * h..(c + 1) * h], &w)).collect();
        let lse = logits.iter().map(|z| z.exp()).sum::<f64>().ln();
        loss += lse - logits[label];
        let best = (0..k).fold(0, |m, c| if logits[c] > logits[m] { c } else { m });
        correct += usize::from(best == label);
    }
    (loss / labels.len() as f64, correct as f64 / labels.len() as f64)
}

#[test]
fn the_test_split_and_its_metrics_against_a_hand_computation() {
    let p = tiny(5);
    assert_eq!((p.n_samples(), p.test_labels().len()), (12, 3));
    assert_eq!(Config::preset("small").unwrap().n_test, 250);
    assert_eq!((Config::preset("mnist").unwrap().n_samples, Config::preset("mnist").unwrap().n_test), (60_000, 10_000));
    // The training examples and λ_0 are those of the generator without a test split.
    let none = generate(&Config { n_test: 0, ..Config::preset("tiny").unwrap() }, 5).unwrap();
    let (with, without) = (p.arrays(), none.arrays());
    assert_eq!(with[..3], without[..3]);
    assert_eq!(
        with.iter().map(|a| a.name.as_str()).collect::<Vec<_>>(),
        ["U", "labels", "lambda0", "U_test", "labels_test"]
    );
    assert_eq!(without.len(), 3);
    let out = metrics(&none, p.lambda0());
    assert!(out[4].is_nan() && out[5].is_nan() && out[..4].iter().all(|v| v.is_finite()), "{out:?}");

    // At P_Λ(λ_0), at a random λ, and after 40 projected gradient steps λ ← P_Λ(λ − 0.5∇f)
    // (§7.1's α) from P_Λ(λ_0): the metrics' test loss and accuracy are the hand computation's.
    let mut lambda = p.lambda0().to_vec();
    p.project(&mut lambda).unwrap();
    let mut accuracies = Vec::new();
    let mut grad_maps = Vec::new();
    for round in 0..3 {
        if round == 1 {
            // A random λ (‖A‖₂ = 0.45): some held-out examples right, some wrong (measured 2/3).
            lambda = random_lambda(&p, 0.45, 0.9, 9);
        }
        if round == 2 {
            lambda = p.lambda0().to_vec();
            p.project(&mut lambda).unwrap();
            for _ in 0..40 {
                let grad = exact(&p, &lambda);
                lambda.iter_mut().zip(&grad).for_each(|(l, g)| *l -= 0.5 * g);
                p.project(&mut lambda).unwrap();
            }
        }
        let out = metrics(&p, &lambda);
        let (loss, accuracy) = by_hand(&p, &lambda);
        assert!((0.0..=1.0).contains(&out[5]) && (0.0..=1.0).contains(&out[1]), "{out:?}");
        assert!((out[4] - loss).abs() <= 1e-12 * loss.max(1.0), "test loss {} vs {loss}", out[4]);
        assert_eq!(out[5], accuracy, "test accuracy");
        accuracies.push(accuracy);
        grad_maps.push(out[2]);
    }
    eprintln!("test accuracy {accuracies:?}, ‖G_1‖ {grad_maps:?}");
    assert!(grad_maps[2] < 0.5 * grad_maps[0], "training lowers ‖G‖: {grad_maps:?}");
    assert!(accuracies[1] > 0.0 && accuracies[1] < 1.0, "a non-trivial accuracy checked: {accuracies:?}");
    assert_eq!(accuracies[2], 1.0, "the trained read-out classifies the 3 held-out examples");
}

#[test]
fn outside_the_contraction_region_the_exact_metrics_are_nan_and_inside_a_weaker_one_they_are_not() {
    let p = tiny(6);
    // ‖A‖₂ = 0.8: outside Λ, still a contraction: the exact metrics exist, and G_1 also measures
    // the projection back to Λ (so it differs from ∇f).
    let lambda = random_lambda(&p, 0.8, 0.9, 3);
    let out = metrics(&p, &lambda);
    assert!(out.iter().all(|v| v.is_finite()), "{out:?}");
    assert!((out[2] - out[3]).abs() > 1e-3 * out[3], "{out:?}");
    // ‖A‖₂ = 1.5: the kernels refuse the solve; the 20-step train metrics remain.
    let lambda = random_lambda(&p, 1.5, 0.9, 3);
    let out = metrics(&p, &lambda);
    assert!(out[0].is_finite() && out[1].is_finite() && out[2..].iter().all(|v| v.is_nan()), "{out:?}");
    let mut grad = vec![0.0; p.dim_lambda()];
    assert!(p.exact_hypergradient(&lambda, &mut grad).is_err());
    assert!(p.exact_hypergradient(&lambda[1..], &mut grad[1..]).is_err());
}
