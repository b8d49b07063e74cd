//! Tests of the text generator, the logistic-regression HPO problems and data hyper-cleaning:
//! determinism, shapes and statistics of the generated data, every oracle against central
//! finite differences (full batch and mini-batches with repeats), the regularizer constants,
//! the Newton/CG references against finite differences of L, and config validation.

use bilevel_data::dataset::{ArrayData, Dataset};
use bilevel_data::hyperclean::{self, HyperCleanConfig};
use bilevel_data::logreg_hpo::{
    binary_problem, newton_y_star, per_class_problem, reference_at, text_problem, BinaryConfig, NewtonParams,
    PerClassConfig, Split,
};
use bilevel_data::text::{self, TextConfig};
use bilevel_kernels::{Batch, BilevelProblem, KernelError, StepBatches};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

// ---------------------------------------------------------------------------------------------
// helpers

fn random_vec(rng: &mut Xoshiro256PlusPlus, n: usize, scale: f64) -> Vec<f64> {
    (0..n).map(|_| scale * (2.0 * rng.random::<f64>() - 1.0)).collect()
}

fn rel_err(a: &[f64], b: &[f64]) -> f64 {
    let diff: f64 = a.iter().zip(b).map(|(a, b)| (a - b) * (a - b)).sum::<f64>().sqrt();
    let norm: f64 = b.iter().map(|b| b * b).sum::<f64>().sqrt();
    diff / norm.max(1e-3)
}

/// Central differences of a scalar function along each coordinate of `z`.
fn fd_gradient(z: &[f64], h: f64, mut fun: impl FnMut(&[f64]) -> f64) -> Vec<f64> {
    let mut zz = z.to_vec();
    (0..z.len())
        .map(|j| {
            zz[j] = z[j] + h;
            let up = fun(&zz);
            zz[j] = z[j] - h;
            let down = fun(&zz);
            zz[j] = z[j];
            (up - down) / (2.0 * h)
        })
        .collect()
}

/// Every oracle of `p` at a random point against central finite differences, with batch `bf`
/// for f and `bg` for g.
fn check_oracles<P: BilevelProblem>(p: &P, seed: u64, bf: Batch<'_>, bg: Batch<'_>, label: &str) {
    let (dx, dy) = (p.dim_x(), p.dim_y());
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let x = random_vec(&mut rng, dx, 1.0);
    let y = random_vec(&mut rng, dy, 0.7);
    let v = random_vec(&mut rng, dy, 1.0);
    let h = 1e-5;
    let tol = 1e-6;

    let mut gx = vec![f64::NAN; dx];
    p.grad_x_f(&x, &y, bf, &mut gx);
    let fd = fd_gradient(&x, h, |xx| p.f(xx, &y, bf));
    assert!(rel_err(&gx, &fd) < tol, "{label}: grad_x_f {gx:?} vs {fd:?}");

    let mut gy = vec![f64::NAN; dy];
    p.grad_y_f(&x, &y, bf, &mut gy);
    let fd = fd_gradient(&y, h, |yy| p.f(&x, yy, bf));
    assert!(rel_err(&gy, &fd) < tol, "{label}: grad_y_f err {}", rel_err(&gy, &fd));

    let mut gg = vec![f64::NAN; dy];
    p.grad_y_g(&x, &y, bg, &mut gg);
    let fd = fd_gradient(&y, h, |yy| p.g(&x, yy, bg));
    assert!(rel_err(&gg, &fd) < tol, "{label}: grad_y_g err {}", rel_err(&gg, &fd));

    // HVP: directional difference of ∂y g along v.
    let mut hv = vec![f64::NAN; dy];
    p.hvp(&x, &y, &v, bg, &mut hv);
    let (mut up, mut down) = (vec![0.0; dy], vec![0.0; dy]);
    let shift = |s: f64| y.iter().zip(&v).map(|(y, v)| y + s * v).collect::<Vec<_>>();
    p.grad_y_g(&x, &shift(h), bg, &mut up);
    p.grad_y_g(&x, &shift(-h), bg, &mut down);
    let fd: Vec<f64> = up.iter().zip(&down).map(|(u, d)| (u - d) / (2.0 * h)).collect();
    assert!(rel_err(&hv, &fd) < tol, "{label}: hvp err {}", rel_err(&hv, &fd));

    // Cross: ∇x ⟨∂y g(x, y), v⟩.
    let mut cr = vec![f64::NAN; dx];
    p.cross(&x, &y, &v, bg, &mut cr);
    let mut buf = vec![0.0; dy];
    let fd = fd_gradient(&x, h, |xx| {
        p.grad_y_g(xx, &y, bg, &mut buf);
        buf.iter().zip(&v).map(|(a, b)| a * b).sum()
    });
    assert!(rel_err(&cr, &fd) < tol, "{label}: cross err {}", rel_err(&cr, &fd));
}

/// The oracles on the full batch and on mini-batches with repeated rows.
fn check_all_batches<P: BilevelProblem>(p: &P, label: &str) {
    check_oracles(p, 11, Batch::Full, Batch::Full, &format!("{label} full"));
    let rows_f = [1usize, 3, 1, 0];
    let rows_g = [2usize, 0, 2, 5, 7];
    assert!(p.n_samples_f() > 3 && p.n_samples_g() > 7);
    check_oracles(p, 12, Batch::Rows(&rows_f), Batch::Rows(&rows_g), &format!("{label} mini-batch"));
    check_oracles(p, 13, Batch::Rows(&[2]), Batch::Rows(&[4]), &format!("{label} single row"));
}

fn arrays_bits(d: &dyn Dataset) -> Vec<(String, Vec<usize>, Vec<u64>)> {
    d.arrays()
        .into_iter()
        .map(|a| {
            let bits = match a.data {
                ArrayData::F64(v) => v.iter().map(|x| x.to_bits()).collect(),
                ArrayData::I64(v) => v.iter().map(|&x| x as u64).collect(),
            };
            (a.name, a.shape, bits)
        })
        .collect()
}

/// `result` is an `InvalidParameter` error naming the parameter `name`.
fn assert_invalid<T: std::fmt::Debug>(name: &str, result: bilevel_kernels::Result<T>) {
    match result {
        Err(KernelError::InvalidParameter { name: got, .. }) => assert_eq!(got, name),
        other => panic!("{name}: expected InvalidParameter, got {other:?}"),
    }
}

fn tiny_text() -> TextConfig {
    TextConfig::preset("tiny").unwrap()
}

// ---------------------------------------------------------------------------------------------
// text data

#[test]
fn text_same_seed_is_bitwise_identical_and_seeds_differ() {
    let c = tiny_text();
    let a = text::generate(&c, 7).unwrap();
    let b = text::generate(&c, 7).unwrap();
    assert_eq!(arrays_bits(&a), arrays_bits(&b));
    let other = text::generate(&c, 8).unwrap();
    assert_ne!(arrays_bits(&a), arrays_bits(&other));
}

#[test]
fn text_shapes_positive_values_and_unit_rows() {
    for name in ["tiny", "small"] {
        let c = TextConfig::preset(name).unwrap();
        let data = text::generate(&c, 3).unwrap();
        for (split, n) in [(&data.train, c.n_train), (&data.val, c.n_val), (&data.test, c.n_test)] {
            assert_eq!(split.x.nrows(), n);
            assert_eq!(split.x.ncols(), c.n_features);
            assert_eq!(split.labels.len(), n);
            assert!(split.labels.iter().all(|&l| l < c.n_classes));
            for i in 0..n {
                let (cols, vals) = split.x.row(i);
                assert!(!cols.is_empty(), "{name}: empty document {i}");
                assert!(vals.iter().all(|&v| v > 0.0 && v.is_finite()));
                let norm: f64 = vals.iter().map(|v| v * v).sum::<f64>().sqrt();
                assert!((norm - 1.0).abs() < 1e-12, "{name}: row {i} has norm {norm}");
            }
        }
        // Every class occurs (uniform classes, ≥ 24 documents per split in these presets).
        for k in 0..c.n_classes {
            assert!(data.train.labels.contains(&k), "{name}: class {k} missing from train");
        }
        let total_tokens: u64 = data.token_counts.iter().sum();
        assert!(total_tokens as usize >= data.nnz());
        // Mean tokens per document within 20% of the requested mean (log-normal lengths).
        let mean = total_tokens as f64 / c.n_docs() as f64;
        assert!((mean / c.mean_tokens - 1.0).abs() < 0.2, "{name}: mean tokens {mean} vs {}", c.mean_tokens);
        assert_eq!(data.topics.len(), c.n_classes);
        for t in &data.topics {
            assert_eq!(t.len(), c.topic_words);
            assert!(t.iter().all(|&w| (w as usize) >= c.topic_min_rank && (w as usize) < c.n_features));
        }
    }
}

/// ln(token count) against ln(rank) over the stop-word ranks (below topic_min_rank, where only
/// the background Zipf law contributes) has slope ≈ −s.
#[test]
fn text_word_frequencies_follow_the_zipf_law() {
    for s in [0.8, 1.1] {
        let c = TextConfig {
            n_train: 2000,
            n_val: 500,
            n_test: 500,
            n_features: 2000,
            n_classes: 4,
            mean_tokens: 50.0,
            zipf_exponent: s,
            topic_min_rank: 100,
            topic_words: 50,
            ..TextConfig::default()
        };
        let data = text::generate(&c, 5).unwrap();
        let pts: Vec<(f64, f64)> =
            (0..100).map(|j| (((j + 1) as f64).ln(), (data.token_counts[j] as f64).max(1.0).ln())).collect();
        let n = pts.len() as f64;
        let (mx, my) = (pts.iter().map(|p| p.0).sum::<f64>() / n, pts.iter().map(|p| p.1).sum::<f64>() / n);
        let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
        let sxx: f64 = pts.iter().map(|p| (p.0 - mx) * (p.0 - mx)).sum();
        let slope = sxy / sxx;
        assert!((slope + s).abs() < 0.15, "exponent {s}: fitted slope {slope}");
        // The counts decrease overall: the first 10 words outnumber the next 90.
        let head: u64 = data.token_counts[..10].iter().sum();
        let tail: u64 = data.token_counts[10..100].iter().sum();
        assert!(head > tail / 2, "head {head}, tail {tail}");
    }
}

/// The 20news preset generates in well under a second (≈ 0.2 s in the dev profile), so it is
/// built here: 18,846 documents, 101,631 features, 20 classes, density ≈ 0.1%.
#[test]
fn text_20news_preset_has_the_requested_shape_and_density() {
    let c = TextConfig::preset("20news").unwrap();
    assert_eq!(c, TextConfig::default());
    let data = text::generate(&c, 0).unwrap();
    assert_eq!(c.n_docs(), 18_846);
    assert_eq!((data.train.x.nrows(), data.val.x.nrows(), data.test.x.nrows()), (5_657, 5_657, 7_532));
    assert_eq!(data.train.x.ncols(), 101_631);
    let density = data.density();
    assert!((0.0007..0.0013).contains(&density), "density {density}");
}

#[test]
fn text_bad_configs_are_rejected() {
    let ok = tiny_text();
    let cases: Vec<(&str, TextConfig)> = vec![
        ("n_classes", TextConfig { n_classes: 1, ..ok.clone() }),
        ("n_train/n_val", TextConfig { n_train: 0, ..ok.clone() }),
        ("n_features", TextConfig { n_features: 0, ..ok.clone() }),
        ("mean_tokens", TextConfig { mean_tokens: 0.5, ..ok.clone() }),
        ("mean_tokens", TextConfig { mean_tokens: f64::NAN, ..ok.clone() }),
        ("zipf_exponent", TextConfig { zipf_exponent: -1.0, ..ok.clone() }),
        ("topic_fraction", TextConfig { topic_fraction: 1.5, ..ok.clone() }),
        ("topic_min_rank", TextConfig { topic_min_rank: 50, ..ok.clone() }),
        ("topic_words", TextConfig { topic_words: 46, ..ok.clone() }),
        ("topic_words", TextConfig { topic_words: 0, ..ok.clone() }),
        ("length_sigma", TextConfig { length_sigma: -0.1, ..ok.clone() }),
    ];
    for (name, c) in cases {
        assert_invalid(name, text::generate(&c, 1));
    }
    assert_invalid("preset", TextConfig::preset("huge"));
    assert!(text::generate(&TextConfig { topic_words: 45, ..ok }, 1).is_ok());
}

// ---------------------------------------------------------------------------------------------
// problems: determinism, presets, regularizer constants, oracles

#[test]
fn problems_same_seed_is_bitwise_identical_and_seeds_differ() {
    let t = |s| text_problem(&tiny_text(), s).unwrap();
    assert_eq!(arrays_bits(&t(1)), arrays_bits(&t(1)));
    assert_ne!(arrays_bits(&t(1)), arrays_bits(&t(2)));
    let b = |s| binary_problem(&BinaryConfig::preset("tiny").unwrap(), s).unwrap();
    assert_eq!(arrays_bits(&b(1)), arrays_bits(&b(1)));
    assert_ne!(arrays_bits(&b(1)), arrays_bits(&b(2)));
    let c = |s| per_class_problem(&PerClassConfig::preset("tiny").unwrap(), s).unwrap();
    assert_eq!(arrays_bits(&c(1)), arrays_bits(&c(1)));
    assert_ne!(arrays_bits(&c(1)), arrays_bits(&c(2)));
    let h = |s| hyperclean::generate(&HyperCleanConfig::preset("tiny").unwrap(), s).unwrap();
    assert_eq!(arrays_bits(&h(1)), arrays_bits(&h(1)));
    assert_ne!(arrays_bits(&h(1)), arrays_bits(&h(2)));
    assert_eq!(h(4).corrupted(), h(4).corrupted());
    // Same data ⇒ same oracle values, bit for bit.
    let (p, q) = (t(3), t(3));
    let x = vec![0.1; p.dim_x()];
    let y = vec![0.2; p.dim_y()];
    let (mut a, mut b2) = (vec![0.0; p.dim_y()], vec![0.0; p.dim_y()]);
    p.grad_y_g(&x, &y, Batch::Full, &mut a);
    q.grad_y_g(&x, &y, Batch::Full, &mut b2);
    assert_eq!(a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), b2.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
}

#[test]
fn problem_dimensions_and_presets() {
    let c = tiny_text();
    let p = text_problem(&c, 1).unwrap();
    assert_eq!((p.dim_x(), p.dim_y()), (c.n_features, c.n_features * c.n_classes));
    assert_eq!((p.n_samples_f(), p.n_samples_g()), (c.n_val, c.n_train));
    assert_eq!(p.generator(), "logreg_text");
    assert_eq!(p.parameters()["seed"], 1);
    let small = text_problem(&TextConfig::preset("small").unwrap(), 1).unwrap();
    assert_eq!(small.dim_x(), 5_000);

    let b = binary_problem(&BinaryConfig::preset("tiny").unwrap(), 1).unwrap();
    assert_eq!((b.dim_x(), b.dim_y(), b.n_samples_g(), b.n_samples_f()), (6, 6, 40, 30));
    let ij = binary_problem(&BinaryConfig::preset("ijcnn1").unwrap(), 1).unwrap();
    assert_eq!((ij.dim_x(), ij.n_samples_g(), ij.n_samples_f()), (22, 49_990, 91_701));
    assert_eq!(ij.generator(), "logreg_binary");

    let pc = per_class_problem(&PerClassConfig::preset("tiny").unwrap(), 1).unwrap();
    assert_eq!((pc.dim_x(), pc.dim_y()), (3, 15));
    // covtype (≈ 250 MB dense) and mnist (≈ 220 MB) are left to the CLI; check their shapes only.
    let cov = PerClassConfig::preset("covtype").unwrap();
    assert_eq!((cov.n_train + cov.n_val + cov.n_test, cov.n_features, cov.n_classes), (581_012, 54, 7));
    cov.validate().unwrap();
    let mnist = HyperCleanConfig::preset("mnist").unwrap();
    assert_eq!(mnist, HyperCleanConfig::default());
    assert_eq!(
        (mnist.n_train, mnist.n_val, mnist.n_test, mnist.n_features, mnist.n_classes),
        (20_000, 5_000, 10_000, 784, 10)
    );
    assert_eq!((mnist.ridge, mnist.corruption), (1e-3, 0.3));
    mnist.validate().unwrap();

    let h = hyperclean::generate(&HyperCleanConfig::preset("tiny").unwrap(), 1).unwrap();
    assert_eq!((h.dim_x(), h.dim_y()), (40, 24));
    let names: Vec<String> = h.arrays().into_iter().map(|a| a.name).collect();
    for want in ["X_train", "y_train", "y_train_clean", "corrupted", "X_val", "y_val", "X_test", "y_test"] {
        assert!(names.iter().any(|n| n == want), "hyperclean arrays lack {want}: {names:?}");
    }
    let names: Vec<String> = p.arrays().into_iter().map(|a| a.name).collect();
    for want in ["X_train_indptr", "X_train_indices", "X_train_data", "y_train", "X_test_data"] {
        assert!(names.iter().any(|n| n == want), "text arrays lack {want}");
    }
}

/// The regularizer constants: R(x, y) = g(x + ln 2, y) − g(x, y) for the exp(x) forms.
#[test]
fn regularizer_constants_are_the_papers() {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(9);
    // Text: (1/(K d)) Σ_j exp(x_j)‖Θ[j,·]‖².
    let c = tiny_text();
    let (d, k) = (c.n_features, c.n_classes);
    let p = text_problem(&c, 1).unwrap();
    let x = random_vec(&mut rng, d, 1.0);
    let y = random_vec(&mut rng, d * k, 1.0);
    let x2: Vec<f64> = x.iter().map(|v| v + 2f64.ln()).collect();
    let reg = p.g(&x2, &y, Batch::Full) - p.g(&x, &y, Batch::Full);
    let want: f64 = (0..d).map(|j| x[j].exp() * y[j * k..(j + 1) * k].iter().map(|t| t * t).sum::<f64>()).sum::<f64>()
        / (k * d) as f64;
    assert!((reg - want).abs() < 1e-12 * want.abs().max(1.0), "text: {reg} vs {want}");

    // Binary: ½ Σ_j exp(x_j) θ_j².
    let b = binary_problem(&BinaryConfig::preset("tiny").unwrap(), 1).unwrap();
    let x = random_vec(&mut rng, 6, 1.0);
    let y = random_vec(&mut rng, 6, 1.0);
    let x2: Vec<f64> = x.iter().map(|v| v + 2f64.ln()).collect();
    let reg = b.g(&x2, &y, Batch::Full) - b.g(&x, &y, Batch::Full);
    let want: f64 = 0.5 * x.iter().zip(&y).map(|(l, t)| l.exp() * t * t).sum::<f64>();
    assert!((reg - want).abs() < 1e-12, "binary: {reg} vs {want}");

    // Per class: ½ Σ_c exp(x_c)‖Θ[·,c]‖².
    let pc = per_class_problem(&PerClassConfig::preset("tiny").unwrap(), 1).unwrap();
    let (d, k) = (5, 3);
    let x = random_vec(&mut rng, k, 1.0);
    let y = random_vec(&mut rng, d * k, 1.0);
    let x2: Vec<f64> = x.iter().map(|v| v + 2f64.ln()).collect();
    let reg = pc.g(&x2, &y, Batch::Full) - pc.g(&x, &y, Batch::Full);
    let want: f64 = 0.5 * (0..d * k).map(|i| x[i % k].exp() * y[i] * y[i]).sum::<f64>();
    assert!((reg - want).abs() < 1e-12, "per class: {reg} vs {want}");

    // Hyper-cleaning: weights σ(−40) ≈ 4e-18 leave g ≈ c‖Θ‖², c = 0.001.
    let h = hyperclean::generate(&HyperCleanConfig::preset("tiny").unwrap(), 1).unwrap();
    let y = random_vec(&mut rng, h.dim_y(), 1.0);
    let g = h.g(&vec![-40.0; h.dim_x()], &y, Batch::Full);
    let want = 1e-3 * y.iter().map(|t| t * t).sum::<f64>();
    assert!((g - want).abs() < 1e-12, "hyperclean: {g} vs {want}");
}

#[test]
fn text_oracles_match_finite_differences() {
    check_all_batches(&text_problem(&tiny_text(), 2).unwrap(), "text");
}

#[test]
fn binary_oracles_match_finite_differences() {
    check_all_batches(&binary_problem(&BinaryConfig::preset("tiny").unwrap(), 2).unwrap(), "binary sparse");
    let dense = BinaryConfig { density: 1.0, ..BinaryConfig::preset("tiny").unwrap() };
    check_all_batches(&binary_problem(&dense, 2).unwrap(), "binary dense");
}

#[test]
fn per_class_oracles_match_finite_differences() {
    check_all_batches(&per_class_problem(&PerClassConfig::preset("tiny").unwrap(), 2).unwrap(), "per class");
}

#[test]
fn hyperclean_oracles_match_finite_differences() {
    let h = hyperclean::generate(&HyperCleanConfig::preset("tiny").unwrap(), 2).unwrap();
    check_all_batches(&h, "hyperclean");
    // Per-sample ∂x∂y g · v is zero outside the batch.
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(14);
    let x = random_vec(&mut rng, h.dim_x(), 1.0);
    let y = random_vec(&mut rng, h.dim_y(), 1.0);
    let v = random_vec(&mut rng, h.dim_y(), 1.0);
    let mut out = vec![f64::NAN; h.dim_x()];
    h.cross(&x, &y, &v, Batch::Rows(&[2, 5, 2]), &mut out);
    assert!(out.iter().enumerate().all(|(i, &o)| (i == 2 || i == 5) || o == 0.0));
    assert!(out[2] != 0.0 && out[5] != 0.0);
}

#[test]
fn non_finite_iterates_give_non_finite_outputs_and_bad_batches_are_a_callers_bug() {
    let p = text_problem(&tiny_text(), 1).unwrap();
    let x = vec![0.0; p.dim_x()];
    let y = vec![0.0; p.dim_y()];
    // Numerical failure (a NaN iterate): non-finite outputs for the driver to see, no panic.
    let mut nan_y = y.clone();
    nan_y[3] = f64::NAN;
    let mut out = vec![0.0; p.dim_y()];
    p.grad_y_g(&x, &nan_y, Batch::Full, &mut out);
    assert!(out.iter().all(|v| v.is_nan()));
    assert!(p.g(&x, &nan_y, Batch::Full).is_nan());
    let mut cross = vec![0.0; p.dim_x()];
    p.cross(&x, &nan_y, &y, Batch::Full, &mut cross);
    assert!(cross.iter().any(|v| !v.is_finite()));
    let b = binary_problem(&BinaryConfig::preset("tiny").unwrap(), 1).unwrap();
    let mut hv = vec![0.0; 6];
    b.hvp(&[f64::INFINITY; 6], &[0.0; 6], &[1.0; 6], Batch::Full, &mut hv);
    assert!(hv.iter().any(|v| !v.is_finite()));
    // A batch index out of range or a batch beyond the capacity is a violated precondition.
    let bad_rows = [p.n_samples_g()];
    let caught = std::panic::catch_unwind(|| p.g(&x, &y, Batch::Rows(&bad_rows)));
    assert!(caught.is_err(), "an index out of range panics (a caller's bug)");
    let long: Vec<usize> = (0..2 * p.n_samples_g()).map(|i| i % p.n_samples_g()).collect();
    let p = p.with_batch_capacity(long.len());
    assert!(p.g(&x, &y, Batch::Rows(&long)).is_finite());
}

#[test]
fn problem_bad_configs_are_rejected() {
    let tiny_b = BinaryConfig::preset("tiny").unwrap();
    for (name, c) in [
        ("n_informative", BinaryConfig { n_informative: 7, ..tiny_b.clone() }),
        ("density", BinaryConfig { density: 0.0, ..tiny_b.clone() }),
        ("n_train", BinaryConfig { n_train: 0, ..tiny_b.clone() }),
        ("reg_scale", BinaryConfig { reg_scale: -1.0, ..tiny_b.clone() }),
    ] {
        assert_invalid(name, binary_problem(&c, 1));
    }
    let tiny_c = PerClassConfig::preset("tiny").unwrap();
    for (name, c) in [
        ("n_classes", PerClassConfig { n_classes: 1, ..tiny_c.clone() }),
        ("n_val", PerClassConfig { n_val: 0, ..tiny_c.clone() }),
        ("signal", PerClassConfig { signal: f64::INFINITY, ..tiny_c.clone() }),
    ] {
        assert_invalid(name, per_class_problem(&c, 1));
    }
    let tiny_h = HyperCleanConfig::preset("tiny").unwrap();
    for (name, c) in [
        ("corruption", HyperCleanConfig { corruption: 1.5, ..tiny_h.clone() }),
        ("corruption", HyperCleanConfig { corruption: f64::NAN, ..tiny_h.clone() }),
        ("ridge", HyperCleanConfig { ridge: 0.0, ..tiny_h.clone() }),
        ("n_classes", HyperCleanConfig { n_classes: 1, ..tiny_h.clone() }),
        ("feature_scale", HyperCleanConfig { feature_scale: 0.0, ..tiny_h.clone() }),
    ] {
        assert_invalid(name, hyperclean::generate(&c, 1));
    }
    assert_invalid("preset", BinaryConfig::preset("x"));
    assert_invalid("preset", PerClassConfig::preset("x"));
    assert_invalid("preset", HyperCleanConfig::preset("x"));
}

// ---------------------------------------------------------------------------------------------
// hyper-cleaning statistics and metric

#[test]
fn corruption_rate_is_close_to_p_and_corrupted_labels_are_wrong() {
    for p in [0.1, 0.3, 0.6] {
        let c = HyperCleanConfig {
            n_train: 4000,
            n_val: 10,
            n_test: 0,
            n_features: 4,
            n_classes: 5,
            corruption: p,
            ..HyperCleanConfig::default()
        };
        let h = hyperclean::generate(&c, 21).unwrap();
        let rate = h.n_corrupted() as f64 / c.n_train as f64;
        // 4σ of a binomial proportion on 4000 draws is ≤ 0.031.
        assert!((rate - p).abs() < 0.031, "p = {p}: rate {rate}");
        let noisy = h.problem().inner_model().labels();
        for ((&n, &t), &flag) in noisy.iter().zip(h.clean_labels()).zip(h.corrupted()) {
            assert_eq!(flag, n != t, "corrupted flag must mean a wrong label");
            assert!(n < c.n_classes);
        }
    }
    let none = HyperCleanConfig { corruption: 0.0, ..HyperCleanConfig::preset("tiny").unwrap() };
    let h = hyperclean::generate(&none, 1).unwrap();
    assert_eq!(h.n_corrupted(), 0);
    assert_eq!(h.corrupted_detection(&vec![-1.0; h.dim_x()]), 1.0);
}

#[test]
fn corrupted_detection_counts_low_weights_on_corrupted_samples() {
    let h = hyperclean::generate(&HyperCleanConfig::preset("tiny").unwrap(), 3).unwrap();
    assert!(h.n_corrupted() > 0 && h.n_corrupted() < h.dim_x());
    let perfect: Vec<f64> = h.corrupted().iter().map(|&c| if c { -2.0 } else { 2.0 }).collect();
    assert_eq!(h.corrupted_detection(&perfect), 1.0);
    assert_eq!(h.clean_rejection(&perfect), 0.0);
    assert_eq!(h.corrupted_detection(&vec![1.0; h.dim_x()]), 0.0);
    assert_eq!(h.clean_rejection(&vec![-1.0; h.dim_x()]), 1.0);
    // Flag exactly the first corrupted sample.
    let first = h.corrupted().iter().position(|&c| c).unwrap();
    let mut x = vec![1.0; h.dim_x()];
    x[first] = -0.5;
    assert!((h.corrupted_detection(&x) - 1.0 / h.n_corrupted() as f64).abs() < 1e-15);
    assert!(h.corrupted_detection(&x[1..]).is_nan());
}

/// The problem is informative: at x = 0 the exact hypergradient pushes corrupted samples'
/// weights down (∂L/∂x_i > 0 on average) and clean samples' up.
#[test]
fn hyperclean_hypergradient_separates_corrupted_samples() {
    let c = HyperCleanConfig {
        n_train: 300,
        n_val: 300,
        n_test: 0,
        n_features: 20,
        n_classes: 3,
        ..HyperCleanConfig::default()
    };
    let h = hyperclean::generate(&c, 4).unwrap();
    let r = reference_at(&h, &vec![0.0; c.n_train], None, &NewtonParams::default()).unwrap();
    let mean = |want: bool| {
        let v: Vec<f64> =
            r.hypergradient.iter().zip(h.corrupted()).filter(|(_, &f)| f == want).map(|(g, _)| *g).collect();
        v.iter().sum::<f64>() / v.len() as f64
    };
    let (bad, good) = (mean(true), mean(false));
    assert!(bad > 0.0 && good < 0.0, "mean ∂L/∂x: corrupted {bad}, clean {good}");
    // One gradient step in −∇L direction already flags most corrupted samples.
    let x: Vec<f64> = r.hypergradient.iter().map(|g| -g).collect();
    assert!(h.corrupted_detection(&x) > 0.7, "detection {}", h.corrupted_detection(&x));
    assert!(h.clean_rejection(&x) < 0.3, "false alarms {}", h.clean_rejection(&x));
    // The classifier at y*(0) beats chance on the test-like validation data.
    assert!(h.evaluate(Split::Validation, &r.y_star).unwrap().accuracy > 0.6);
}

// ---------------------------------------------------------------------------------------------
// references

/// ∇L from the Newton/CG reference equals central differences of L(x) = f(x, y*(x)).
fn check_reference<P: BilevelProblem>(p: &P, seed: u64, label: &str) {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let x = random_vec(&mut rng, p.dim_x(), 0.5);
    let params = NewtonParams::default().with_grad_tol(1e-11);
    let r = reference_at(p, &x, None, &params).unwrap();
    assert!(r.newton.converged && r.newton.grad_norm <= 1e-11, "{label}: {:?}", r.newton);
    let mut g = vec![0.0; p.dim_y()];
    p.grad_y_g(&x, &r.y_star, Batch::Full, &mut g);
    assert!(g.iter().map(|v| v * v).sum::<f64>().sqrt() <= 1e-11);
    let h = 1e-4;
    let fd = fd_gradient(&x, h, |xx| {
        let mut y = r.y_star.clone();
        let rep = newton_y_star(p, xx, &mut y, &params).unwrap();
        assert!(rep.converged);
        p.f(xx, &y, Batch::Full)
    });
    let err = rel_err(&r.hypergradient, &fd);
    assert!(err < 1e-5, "{label}: reference hypergradient rel. error {err}");
    assert!(r.hypergradient.iter().any(|v| v.abs() > 1e-8), "{label}: trivial hypergradient");
}

#[test]
fn references_match_finite_differences_of_the_value_function() {
    check_reference(&text_problem(&tiny_text(), 5).unwrap(), 1, "text");
    check_reference(&binary_problem(&BinaryConfig::preset("tiny").unwrap(), 5).unwrap(), 2, "binary");
    check_reference(&per_class_problem(&PerClassConfig::preset("tiny").unwrap(), 5).unwrap(), 3, "per class");
    check_reference(&hyperclean::generate(&HyperCleanConfig::preset("tiny").unwrap(), 5).unwrap(), 4, "hyperclean");
}

/// The class topics make the text problem learnable: the reference model at a moderate
/// regularization classifies the test split far above chance (1/K = 0.2).
#[test]
fn text_small_is_learnable() {
    let c = TextConfig::preset("small").unwrap();
    let p = text_problem(&c, 6).unwrap();
    // exp(x_j)/(K d) = 1e-3: every feature gets the same moderate L2 weight.
    let x = vec![(1e-3 * (c.n_classes * c.n_features) as f64).ln(); c.n_features];
    let r = reference_at(&p, &x, None, &NewtonParams::default().with_grad_tol(1e-8)).unwrap();
    let test = p.evaluate(Split::Test, &r.y_star).unwrap();
    assert!(test.accuracy > 0.6, "test accuracy {}", test.accuracy);
    let train = p.evaluate(Split::Train, &r.y_star).unwrap();
    assert!(train.accuracy >= test.accuracy - 0.05);
    // The binary and per-class teachers are learnable too (tiny sizes: loose bounds).
    let b =
        binary_problem(&BinaryConfig { n_train: 2000, n_val: 500, n_test: 500, ..BinaryConfig::default() }, 6).unwrap();
    let rb = reference_at(&b, &[-3.0; 22], None, &NewtonParams::default()).unwrap();
    assert!(b.evaluate(Split::Test, &rb.y_star).unwrap().accuracy > 0.75);
    let pc = PerClassConfig { n_train: 2000, n_val: 500, n_test: 500, ..PerClassConfig::default() };
    let pcp = per_class_problem(&pc, 6).unwrap();
    let rc = reference_at(&pcp, &[-3.0; 7], None, &NewtonParams::default()).unwrap();
    assert!(pcp.evaluate(Split::Test, &rc.y_star).unwrap().accuracy > 0.5);
}

// ---------------------------------------------------------------------------------------------
// no allocation in the oracles

/// Wraps the system allocator; counts allocations of the current thread while it is marked
/// (as in kernels/tests/no_alloc.rs). The tiny problems stay below the kernels' parallel
/// thresholds, so everything runs on this thread.
struct Counting;

thread_local! {
    static ACTIVE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    static COUNT: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

fn note_allocation() {
    if ACTIVE.try_with(std::cell::Cell::get).unwrap_or(false) {
        let _ = COUNT.try_with(|c| c.set(c.get() + 1));
    }
}

unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        note_allocation();
        unsafe { std::alloc::System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        note_allocation();
        unsafe { std::alloc::System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        unsafe { std::alloc::System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn count_allocations(f: impl FnOnce()) -> usize {
    COUNT.with(|c| c.set(0));
    ACTIVE.with(|a| a.set(true));
    f();
    ACTIVE.with(|a| a.set(false));
    COUNT.with(std::cell::Cell::get)
}

fn assert_oracles_do_not_allocate<P: BilevelProblem>(p: &P, label: &str) {
    let (dx, dy) = (p.dim_x(), p.dim_y());
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
    let x = random_vec(&mut rng, dx, 1.0);
    let y = random_vec(&mut rng, dy, 1.0);
    let v = random_vec(&mut rng, dy, 1.0);
    let (mut ox, mut oy, mut work) = (vec![0.0; dx], vec![0.0; dy], vec![0.0; dy]);
    let mut yy = y.clone();
    let rows = [1usize, 0, 1];
    let mut sink = 0.0;
    let count = count_allocations(|| {
        for b in [Batch::Full, Batch::Rows(&rows)] {
            sink += p.f(&x, &y, b) + p.g(&x, &y, b);
            p.grad_x_f(&x, &y, b, &mut ox);
            p.grad_y_f(&x, &y, b, &mut oy);
            p.grad_y_g(&x, &y, b, &mut oy);
            p.hvp(&x, &y, &v, b, &mut oy);
            p.cross(&x, &y, &v, b, &mut ox);
            p.inner_gradient_steps(&x, &mut yy, 0.1, StepBatches::Same { batch: b, steps: 3 }, &mut work);
        }
    });
    assert!(sink.is_finite() && ox.iter().chain(&oy).all(|v| v.is_finite()), "{label}: non-finite output");
    assert_eq!(count, 0, "{label}: the oracles allocated {count} times");
}

#[test]
fn oracles_do_not_allocate() {
    // The harness must see allocations, or the zero counts would prove nothing.
    assert!(count_allocations(|| drop(std::hint::black_box(vec![1.0f64; 10]))) >= 1);
    assert_oracles_do_not_allocate(&text_problem(&tiny_text(), 1).unwrap(), "text");
    assert_oracles_do_not_allocate(&binary_problem(&BinaryConfig::preset("tiny").unwrap(), 1).unwrap(), "binary");
    assert_oracles_do_not_allocate(
        &per_class_problem(&PerClassConfig::preset("tiny").unwrap(), 1).unwrap(),
        "per class",
    );
    assert_oracles_do_not_allocate(
        &hyperclean::generate(&HyperCleanConfig::preset("tiny").unwrap(), 1).unwrap(),
        "hyperclean",
    );
}

#[test]
fn batches_larger_than_the_samples_grow_the_workspace_instead_of_panicking() {
    // Every training sample three times (a with-replacement batch larger than the data): the
    // mean over the batch is the full-batch mean, to rounding.
    let b = binary_problem(&BinaryConfig::preset("tiny").unwrap(), 2).unwrap();
    let c = per_class_problem(&PerClassConfig::preset("tiny").unwrap(), 2).unwrap();
    let problems: [&dyn BilevelProblem; 2] = [&b, &c];
    for p in problems {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
        let (x, y) = (random_vec(&mut rng, p.dim_x(), 0.1), random_vec(&mut rng, p.dim_y(), 0.1));
        let rows: Vec<usize> = (0..3 * p.n_samples_g()).map(|i| i % p.n_samples_g()).collect();
        let (mut full, mut tripled) = (vec![0.0; p.dim_y()], vec![0.0; p.dim_y()]);
        p.grad_y_g(&x, &y, Batch::Full, &mut full);
        p.grad_y_g(&x, &y, Batch::Rows(&rows), &mut tripled);
        assert!(rel_err(&tripled, &full) < 1e-12, "{}", rel_err(&tripled, &full));
        p.hvp(&x, &y, &y, Batch::Rows(&rows), &mut tripled);
        p.hvp(&x, &y, &y, Batch::Full, &mut full);
        assert!(rel_err(&tripled, &full) < 1e-12);
    }
}
