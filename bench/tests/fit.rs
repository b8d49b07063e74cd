//! The slope fit and the verdict on synthetic data with a known exponent.

use bilevel_bench::fit::{fit, judge, verdict, Bootstrap, FitError, FitOptions, Sample, Verdict};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

/// cost = C·x^a·(ln x)^b·(1 + noise·u), u uniform in [−1, 1], `seeds` replicates per x.
fn synthetic(xs: &[f64], seeds: u64, a: f64, b: f64, noise: f64, rng: &mut Xoshiro256PlusPlus) -> Vec<Sample> {
    let mut out = Vec::new();
    for &x in xs {
        for group in 0..seeds {
            let u: f64 = 2.0 * rng.random::<f64>() - 1.0;
            let log = if b == 0.0 { 1.0 } else { x.ln().powf(b) };
            out.push(Sample { x, cost: 3.0 * x.powf(a) * log * (1.0 + noise * u), group });
        }
    }
    out
}

fn decades(from: i32, to: i32) -> Vec<f64> {
    (from..=to).map(|e| 10f64.powi(e)).collect()
}

/// `levels` values of x log-spaced over 10..1e6.
fn log_spaced(levels: usize) -> Vec<f64> {
    (0..levels).map(|l| 10f64.powf(1.0 + 5.0 * l as f64 / (levels - 1) as f64)).collect()
}

/// The default (residual) percentile bootstrap at 95% covers the true exponent in ≥ 90% of
/// 200 synthetic repetitions per case, with ≥ 18 points (several seeds per x, or one seed and
/// 20 x-levels). With fewer points it undercovers (measured over 1000 repetitions: 87% at 6
/// points, 91% at 8, 93% at 12): the module doc says so.
#[test]
fn interval_covers_the_true_exponent_in_at_least_90_percent_of_repetitions() {
    let options = FitOptions::default().with_resamples(400);
    for (case, &(a, noise, levels, seeds)) in
        [(0.5, 0.05, 6, 5), (1.0, 0.2, 6, 3), (3.0, 0.3, 6, 5), (2.0, 0.1, 20, 1), (7.0, 0.4, 8, 4)].iter().enumerate()
    {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(100 + case as u64);
        let reps = 200;
        let mut covered = 0;
        for rep in 0..reps {
            let samples = synthetic(&log_spaced(levels), seeds, a, 0.0, noise, &mut rng);
            let f = fit(&samples, 0.0, &options.with_seed(rep)).unwrap();
            assert!(f.lower <= f.slope && f.slope <= f.upper, "{f:?}");
            if f.lower <= a && a <= f.upper {
                covered += 1;
            }
        }
        let rate = covered as f64 / reps as f64;
        eprintln!("a = {a}, noise = {noise}, {levels} levels x {seeds} seeds: coverage {rate}");
        assert!(rate >= 0.90, "a = {a}, noise = {noise}, {levels} levels x {seeds} seeds: coverage {rate}");
    }
}

#[test]
fn a_wrong_exponent_is_rejected_on_low_noise_data() {
    let options = FitOptions::default().with_resamples(500);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(7);
    for a in [0.5, 1.0, 3.5, 9.0] {
        let samples = synthetic(&decades(1, 5), 4, a, 0.0, 0.02, &mut rng);
        let f = fit(&samples, 0.0, &options).unwrap();
        assert!((f.slope - a).abs() < 0.02, "{f:?}");
        assert!(f.r_squared > 0.999);
        assert_eq!(verdict(&f, a, &options).0, Verdict::Agrees);
        let (v, reason) = verdict(&f, a + 0.5, &options);
        assert_eq!(v, Verdict::BetterThanClaimed, "{reason}");
        assert!(reason.contains("upper") || reason.contains("worst case"), "{reason}");
        assert_eq!(verdict(&f, a - 0.5, &options).0, Verdict::WorseThanClaimed);
    }
}

#[test]
fn tolerance_accepts_a_small_discretization_offset() {
    // Deterministic, one point per x, integer-rounded counts of 2·√x·ln(1e6): the slope is
    // close to but not exactly 0.5, and the interval is narrow.
    let samples: Vec<Sample> =
        decades(1, 6).iter().map(|&x| Sample { x, cost: (2.0 * x.sqrt() * 13.8).ceil() + 3.0, group: 0 }).collect();
    let options = FitOptions::default().with_resamples(500);
    let f = fit(&samples, 0.0, &options).unwrap();
    assert_eq!(f.groups, 1);
    assert!(f.width() < 0.1, "{f:?}");
    assert_eq!(verdict(&f, 0.5, &options).0, Verdict::Agrees);
    assert_eq!(verdict(&f, 0.5, &options.with_band(0.0, 1.0)).0, Verdict::BetterThanClaimed);
}

#[test]
fn two_levels_or_huge_noise_are_inconclusive() {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
    let two = synthetic(&[10.0, 100.0], 5, 1.0, 0.0, 0.01, &mut rng);
    let options = FitOptions::default().with_resamples(200);
    assert_eq!(fit(&two, 0.0, &options), Err(FitError::TooFewLevels { levels: 2, needed: 3 }));
    let j = judge(&two, 1.0, 0.0, &options).unwrap();
    assert_eq!(j.verdict, Verdict::Inconclusive);
    assert!(j.fit.is_none());
    // With min_levels = 2 the fit runs, but the verdict stays inconclusive.
    let f = fit(&two, 0.0, &options.with_min_levels(2)).unwrap();
    assert_eq!(f.levels, 2);
    assert_eq!(verdict(&f, 1.0, &options).0, Verdict::Inconclusive);

    // Log-normal noise of spread e^±2 over a factor 4 in x, two seeds each.
    let mut noisy = Vec::new();
    for x in [10.0, 20.0, 40.0] {
        for group in 0..2 {
            let u: f64 = 2.0 * rng.random::<f64>() - 1.0;
            noisy.push(Sample { x, cost: x * (2.0 * u).exp(), group });
        }
    }
    let f = fit(&noisy, 0.0, &options).unwrap();
    assert!(f.width() > 1.0, "{f:?}");
    let (v, reason) = verdict(&f, 1.0, &options);
    assert_eq!(v, Verdict::Inconclusive, "{reason}");
    assert!(reason.contains("wider"), "{reason}");
}

#[test]
fn log_power_is_divided_out() {
    // cost = x ln x: slope 1 with b = 1, above 1 with b = 0.
    let xs: Vec<f64> = (2..=12).map(|e| (e as f64).exp()).collect();
    let samples: Vec<Sample> = xs.iter().map(|&x| Sample { x, cost: x * x.ln(), group: 0 }).collect();
    let options = FitOptions::default().with_resamples(300);
    let with = fit(&samples, 1.0, &options).unwrap();
    assert!((with.slope - 1.0).abs() < 1e-12, "{with:?}");
    assert!(with.r_squared > 1.0 - 1e-12);
    assert!(with.width() < 1e-9);
    assert_eq!(verdict(&with, 1.0, &options).0, Verdict::Agrees);
    let without = fit(&samples, 0.0, &options).unwrap();
    assert!(without.slope > 1.1, "{without:?}");
    assert!(without.r_squared < 1.0);
    assert_eq!(verdict(&without, 1.0, &options).0, Verdict::WorseThanClaimed);

    // A pure logarithm (the linear solvers' ε claims): exponent 0 with b = 1.
    let eps: Vec<Sample> = xs.iter().map(|&x| Sample { x, cost: 5.0 * x.ln(), group: 0 }).collect();
    let f = fit(&eps, 1.0, &options).unwrap();
    assert!(f.slope.abs() < 1e-12);

    // Noisy data with a log factor: the interval covers the true exponent.
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(11);
    let samples = synthetic(&decades(1, 6), 4, 1.5, 2.5, 0.1, &mut rng);
    let f = fit(&samples, 2.5, &options).unwrap();
    assert!(f.lower <= 1.5 && 1.5 <= f.upper, "{f:?}");
}

#[test]
fn bad_input_gives_typed_errors() {
    let ok = |x: f64, cost: f64| Sample { x, cost, group: 0 };
    let base = vec![ok(10.0, 1.0), ok(100.0, 2.0), ok(1000.0, 3.0)];
    let o = FitOptions::default().with_resamples(50);
    let with = |i: usize, s: Sample| {
        let mut v = base.clone();
        v[i] = s;
        v
    };
    assert!(matches!(fit(&with(1, ok(f64::NAN, 1.0)), 0.0, &o), Err(FitError::NonFinite { index: 1, field: "x", .. })));
    assert!(matches!(
        fit(&with(2, ok(5.0, f64::INFINITY)), 0.0, &o),
        Err(FitError::NonFinite { index: 2, field: "cost", .. })
    ));
    assert_eq!(fit(&with(0, ok(-1.0, 1.0)), 0.0, &o), Err(FitError::NonPositive { index: 0, field: "x", value: -1.0 }));
    assert_eq!(
        fit(&with(0, ok(10.0, 0.0)), 0.0, &o),
        Err(FitError::NonPositive { index: 0, field: "cost", value: 0.0 })
    );
    // x ≤ 1 is fine without a log power, refused with one.
    assert!(fit(&with(0, ok(1.0, 1.0)), 0.0, &o).is_ok());
    assert_eq!(fit(&with(0, ok(1.0, 1.0)), 1.0, &o), Err(FitError::LogDomain { index: 0, x: 1.0, log_power: 1.0 }));
    assert_eq!(fit(&base, f64::NAN, &o).map(|_| ()).unwrap_err().to_string(), "log_power = NaN is not finite");
    assert_eq!(fit(&[], 0.0, &o), Err(FitError::TooFewLevels { levels: 0, needed: 3 }));
    let same_x = vec![ok(10.0, 1.0), ok(10.0, 2.0), ok(10.0, 3.0)];
    assert_eq!(fit(&same_x, 0.0, &o), Err(FitError::TooFewLevels { levels: 1, needed: 3 }));
    for (bad, name) in [
        (o.with_level(1.0), "level"),
        (o.with_resamples(3), "resamples"),
        (o.with_band(-0.1, 1.0), "tolerance"),
        (o.with_band(0.1, 0.0), "max_width"),
        (o.with_min_levels(1), "min_levels"),
    ] {
        assert!(matches!(fit(&base, 0.0, &bad), Err(FitError::InvalidOption { name: n, .. }) if n == name), "{name}");
    }
    // Bootstrap over groups needs every group to span two x-levels.
    let split = vec![Sample { x: 10.0, cost: 1.0, group: 0 }, ok(100.0, 2.0), ok(1000.0, 3.0)];
    let mut split = split;
    split[0].group = 9;
    assert_eq!(fit(&split, 0.0, &o.with_bootstrap(Bootstrap::Groups)), Err(FitError::DegenerateGroup { group: 9 }));
}

#[test]
fn deterministic_given_the_seed_and_every_scheme_brackets_the_slope() {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(5);
    let samples = synthetic(&decades(1, 5), 4, 2.0, 0.0, 0.2, &mut rng);
    for scheme in [Bootstrap::Residuals, Bootstrap::WithinLevels, Bootstrap::Groups] {
        let o = FitOptions::default().with_resamples(300).with_bootstrap(scheme);
        let a = fit(&samples, 0.0, &o).unwrap();
        let b = fit(&samples, 0.0, &o).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.bootstrap, scheme);
        assert_eq!((a.points, a.levels, a.groups), (20, 5, 4));
        assert!(a.lower < a.slope && a.slope < a.upper, "{scheme:?}: {a:?}");
        assert!(a.width() < 0.2, "{scheme:?}: {a:?}");
        let c = fit(&samples, 0.0, &o.with_seed(1)).unwrap();
        assert_eq!(a.slope, c.slope);
        assert_ne!((a.lower, a.upper), (c.lower, c.upper));
    }
    // One point per x: resampling within levels has nothing to draw from.
    let single = synthetic(&decades(1, 5), 1, 2.0, 0.0, 0.2, &mut rng);
    let o = FitOptions::default().with_resamples(100).with_bootstrap(Bootstrap::WithinLevels);
    let f = fit(&single, 0.0, &o).unwrap();
    assert_eq!(f.width(), 0.0);
}
