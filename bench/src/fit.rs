//! The log-log slope of a measured cost, with a bootstrap confidence interval, and a verdict
//! against a claimed exponent.
//!
//! # The fit
//!
//! For a claim cost ∝ x^a (ln x)^b ([`crate::claims::Claim`]'s `exponent` a and `log_power` b),
//! [`fit`] regresses by ordinary least squares
//!
//! ```text
//! u_i = ln x_i,   v_i = ln cost_i − b · ln ln x_i,   v ≈ intercept + slope · u
//! ```
//!
//! so the slope estimates a once the claimed log factor is divided out. It reports the slope,
//! the intercept, R², and a percentile bootstrap interval for the slope at `options.level`.
//!
//! # The bootstrap ([`Bootstrap`])
//!
//! The default, [`Bootstrap::Residuals`], is model-based resampling for a linear regression
//! (Davison & Hinkley 1997, *Bootstrap Methods and their Application*, Algorithm 6.1): the
//! design (the x values) is kept, the OLS residuals are rescaled by their leverage,
//! r_i = e_i/√(1 − h_i), centred, and drawn with replacement onto the fitted values; each
//! resample is refitted and the slopes' (1 − level)/2 and (1 + level)/2 quantiles (linear
//! interpolation) bound the interval. It keeps every x-level in every resample (never
//! degenerate), and works with one point per x (a deterministic method: the scatter around the
//! line — discretization, unmodelled logs — is then the only noise) as with several seeds per x.
//! It assumes the scatter in log cost is about the same at every x (multiplicative noise).
//!
//! Percentile intervals undercover with few points (they use normal-like tails where a
//! t-distribution with n − 2 degrees of freedom applies): measured over 1000 synthetic
//! repetitions at nominal 95%, the residual scheme covers 87% with 6 points, 91% with 8, 93%
//! with 12 or more (or with 3 or more seeds per x-level). Give a deterministic sweep at least
//! 8 x-levels; the verdict's tolerance band absorbs part of the gap.
//!
//! The alternatives: [`Bootstrap::WithinLevels`] resamples the points within each x-level
//! (stratified cases: needs several seeds per x, and with one point per x gives a zero-width
//! interval); [`Bootstrap::Groups`] resamples whole groups ([`Sample::group`], e.g. the seed
//! that generated a problem instance used at every x) with replacement, keeping the
//! correlation inside a group (it needs many groups: 84% coverage with 5, 92% with 10, in the
//! same experiment; within-levels with 5 seeds per x: 90%).
//!
//! Resampling uses a `Xoshiro256PlusPlus` seeded with `options.seed`: the same samples and
//! options give the same interval, bit for bit.
//!
//! # The verdict ([`verdict`])
//!
//! With [lo, hi] the interval and τ = `options.tolerance`:
//! - [`Verdict::Inconclusive`] if fewer than 3 x-levels, or hi − lo > `options.max_width`;
//! - [`Verdict::Agrees`] if lo − τ ≤ a ≤ hi + τ (τ absorbs discretization: iteration counts are
//!   integers, and a deterministic fit's interval can be very narrow);
//! - [`Verdict::BetterThanClaimed`] if hi + τ < a: the cost grows more slowly than the claim.
//!   The bounds are upper bounds, worst cases over a class; an instance that does not attain
//!   the worst case is expected to do better;
//! - [`Verdict::WorseThanClaimed`] if lo − τ > a: the cost grows faster than the bound allows
//!   (a wrong claim, a wrong setting, or an implementation problem).
//!
//! Samples that did not reach the target are the runner's business: pass only reached ones.

use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use serde::{Deserialize, Serialize};

/// One measurement: the cost at x for one replicate.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// The swept quantity (κ, d, nnz, 1/ε, threads).
    pub x: f64,
    /// The measured cost (> 0).
    pub cost: f64,
    /// The replicate: the seed, or 0 for a deterministic method. Used by [`Bootstrap::Groups`]
    /// and counted in [`SlopeFit::groups`].
    pub group: u64,
}

/// How the bootstrap resamples (see the module doc).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Bootstrap {
    /// Leverage-adjusted residuals onto the fitted values, the design kept (the default).
    #[default]
    Residuals,
    /// Points resampled within each x-level.
    WithinLevels,
    /// Whole groups resampled with replacement.
    Groups,
}

/// Options of [`fit`] and [`verdict`].
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct FitOptions {
    /// Confidence level of the interval, in (0, 1). Default 0.95.
    pub level: f64,
    /// Bootstrap resamples (≥ 10). Default 2000.
    pub resamples: usize,
    /// Seed of the resampling generator. Default 0.
    pub seed: u64,
    /// The resampling scheme. Default [`Bootstrap::Residuals`].
    pub bootstrap: Bootstrap,
    /// Band around the claimed exponent within which it still agrees (≥ 0). Default 0.1.
    pub tolerance: f64,
    /// Widest interval that decides anything (> 0). Default 1.0.
    pub max_width: f64,
    /// Fewest distinct x that [`fit`] accepts (≥ 2). Default 3; with 2 the fit runs but the
    /// verdict is inconclusive.
    pub min_levels: usize,
}

impl Default for FitOptions {
    fn default() -> Self {
        FitOptions {
            level: 0.95,
            resamples: 2000,
            seed: 0,
            bootstrap: Bootstrap::Residuals,
            tolerance: 0.1,
            max_width: 1.0,
            min_levels: 3,
        }
    }
}

impl FitOptions {
    /// These options with `resamples` resamples.
    pub fn with_resamples(self, resamples: usize) -> Self {
        FitOptions { resamples, ..self }
    }

    /// These options with the confidence `level`.
    pub fn with_level(self, level: f64) -> Self {
        FitOptions { level, ..self }
    }

    /// These options with `seed`.
    pub fn with_seed(self, seed: u64) -> Self {
        FitOptions { seed, ..self }
    }

    /// These options with the resampling scheme `bootstrap`.
    pub fn with_bootstrap(self, bootstrap: Bootstrap) -> Self {
        FitOptions { bootstrap, ..self }
    }

    /// These options with `min_levels`.
    pub fn with_min_levels(self, min_levels: usize) -> Self {
        FitOptions { min_levels, ..self }
    }

    /// These options with `tolerance` and `max_width`.
    pub fn with_band(self, tolerance: f64, max_width: f64) -> Self {
        FitOptions { tolerance, max_width, ..self }
    }

    fn check(&self) -> Result<(), FitError> {
        let bad = |name: &'static str, reason: String| Err(FitError::InvalidOption { name, reason });
        if !(self.level > 0.0 && self.level < 1.0) {
            return bad("level", format!("must be in (0, 1), got {}", self.level));
        }
        if self.resamples < 10 {
            return bad("resamples", format!("must be at least 10, got {}", self.resamples));
        }
        if !(self.tolerance.is_finite() && self.tolerance >= 0.0) {
            return bad("tolerance", format!("must be finite and >= 0, got {}", self.tolerance));
        }
        if !(self.max_width.is_finite() && self.max_width > 0.0) {
            return bad("max_width", format!("must be finite and > 0, got {}", self.max_width));
        }
        if self.min_levels < 2 {
            return bad("min_levels", format!("a slope needs at least 2 x-levels, got {}", self.min_levels));
        }
        Ok(())
    }
}

/// The result of [`fit`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SlopeFit {
    /// OLS slope of ln(cost/(ln x)^b) on ln x.
    pub slope: f64,
    /// OLS intercept.
    pub intercept: f64,
    /// Coefficient of determination (1 when the points lie on the line).
    pub r_squared: f64,
    /// Lower end of the bootstrap interval for the slope.
    pub lower: f64,
    /// Upper end of the bootstrap interval for the slope.
    pub upper: f64,
    /// The interval's confidence level.
    pub level: f64,
    /// The log power b divided out.
    pub log_power: f64,
    /// Number of samples.
    pub points: usize,
    /// Number of distinct x.
    pub levels: usize,
    /// Number of distinct groups.
    pub groups: usize,
    /// The resampling scheme.
    pub bootstrap: Bootstrap,
    /// Bootstrap resamples used.
    pub resamples: usize,
}

impl SlopeFit {
    /// upper − lower.
    pub fn width(&self) -> f64 {
        self.upper - self.lower
    }
}

/// Why [`fit`] refused its input.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FitError {
    /// A sample's x or cost is NaN or infinite.
    #[error("sample {index}: {field} = {value} is not finite")]
    NonFinite { index: usize, field: &'static str, value: f64 },
    /// A sample's x or cost is ≤ 0 (no logarithm).
    #[error("sample {index}: {field} = {value} must be > 0")]
    NonPositive { index: usize, field: &'static str, value: f64 },
    /// x ≤ 1 with a non-zero log power (ln x ≤ 0 has no power to divide by).
    #[error("sample {index}: x = {x} must be > 1 with log_power {log_power}")]
    LogDomain { index: usize, x: f64, log_power: f64 },
    /// The log power is NaN or infinite.
    #[error("log_power = {0} is not finite")]
    LogPower(f64),
    /// Fewer distinct x than `options.min_levels`.
    #[error("{levels} distinct x-levels, at least {needed} needed")]
    TooFewLevels { levels: usize, needed: usize },
    /// [`Bootstrap::Groups`] with a group whose points do not span two x-levels, so that
    /// resamples of it have no slope.
    #[error("bootstrap over groups: group {group} spans fewer than 2 x-levels")]
    DegenerateGroup { group: u64 },
    /// An option out of range.
    #[error("option {name}: {reason}")]
    InvalidOption { name: &'static str, reason: String },
}

/// Fits the log-log slope of `samples` with the log factor (ln x)^`log_power` divided out, and
/// bootstraps an interval for it (see the module doc).
pub fn fit(samples: &[Sample], log_power: f64, options: &FitOptions) -> Result<SlopeFit, FitError> {
    options.check()?;
    if !log_power.is_finite() {
        return Err(FitError::LogPower(log_power));
    }
    for (index, s) in samples.iter().enumerate() {
        for (field, value) in [("x", s.x), ("cost", s.cost)] {
            if !value.is_finite() {
                return Err(FitError::NonFinite { index, field, value });
            }
            if value <= 0.0 {
                return Err(FitError::NonPositive { index, field, value });
            }
        }
        if log_power != 0.0 && s.x <= 1.0 {
            return Err(FitError::LogDomain { index, x: s.x, log_power });
        }
    }
    let mut xs: Vec<f64> = samples.iter().map(|s| s.x).collect();
    xs.sort_by(f64::total_cmp);
    xs.dedup();
    let levels = xs.len();
    if levels < options.min_levels {
        return Err(FitError::TooFewLevels { levels, needed: options.min_levels });
    }
    let mut groups: Vec<u64> = samples.iter().map(|s| s.group).collect();
    groups.sort_unstable();
    groups.dedup();

    let u: Vec<f64> = samples.iter().map(|s| s.x.ln()).collect();
    let v: Vec<f64> = samples
        .iter()
        .map(|s| if log_power == 0.0 { s.cost.ln() } else { s.cost.ln() - log_power * s.x.ln().ln() })
        .collect();
    let line = ols(&u, &v).expect("at least two distinct x");
    let ss_res: f64 = u.iter().zip(&v).map(|(a, b)| (b - line.at(*a)).powi(2)).sum();
    let mean_v = v.iter().sum::<f64>() / v.len() as f64;
    let ss_tot: f64 = v.iter().map(|b| (b - mean_v).powi(2)).sum();
    let r_squared = if ss_tot > 0.0 { 1.0 - ss_res / ss_tot } else { 1.0 };

    let mut rng = Xoshiro256PlusPlus::seed_from_u64(options.seed);
    let mut slopes = Vec::with_capacity(options.resamples);
    let (mut bu, mut bv) = (Vec::with_capacity(u.len()), Vec::with_capacity(u.len()));
    match options.bootstrap {
        Bootstrap::Residuals => {
            let n = u.len() as f64;
            let mean_u = u.iter().sum::<f64>() / n;
            let sxx: f64 = u.iter().map(|a| (a - mean_u).powi(2)).sum();
            let mut r: Vec<f64> = u
                .iter()
                .zip(&v)
                .map(|(a, b)| {
                    let h = 1.0 / n + (a - mean_u).powi(2) / sxx;
                    let e = b - line.at(*a);
                    if h < 1.0 - 1e-12 {
                        e / (1.0 - h).sqrt()
                    } else {
                        e
                    }
                })
                .collect();
            let mean_r = r.iter().sum::<f64>() / n;
            r.iter_mut().for_each(|e| *e -= mean_r);
            for _ in 0..options.resamples {
                bv.clear();
                bv.extend(u.iter().map(|a| line.at(*a) + r[rng.random_range(0..r.len())]));
                slopes.push(ols(&u, &bv).expect("design kept").slope);
            }
        }
        Bootstrap::WithinLevels => {
            let by_level: Vec<Vec<usize>> =
                xs.iter().map(|x| (0..samples.len()).filter(|&i| samples[i].x == *x).collect()).collect();
            for _ in 0..options.resamples {
                bu.clear();
                bv.clear();
                for members in &by_level {
                    for _ in 0..members.len() {
                        let i = members[rng.random_range(0..members.len())];
                        bu.push(u[i]);
                        bv.push(v[i]);
                    }
                }
                slopes.push(ols(&bu, &bv).expect("every level kept").slope);
            }
        }
        Bootstrap::Groups => {
            let by_group: Vec<Vec<usize>> =
                groups.iter().map(|g| (0..samples.len()).filter(|&i| samples[i].group == *g).collect()).collect();
            for (g, members) in groups.iter().zip(&by_group) {
                let first = samples[members[0]].x;
                if members.iter().all(|&i| samples[i].x == first) {
                    return Err(FitError::DegenerateGroup { group: *g });
                }
            }
            for _ in 0..options.resamples {
                bu.clear();
                bv.clear();
                for _ in 0..by_group.len() {
                    for &i in &by_group[rng.random_range(0..by_group.len())] {
                        bu.push(u[i]);
                        bv.push(v[i]);
                    }
                }
                slopes.push(ols(&bu, &bv).expect("every group spans two levels").slope);
            }
        }
    }
    slopes.sort_by(f64::total_cmp);
    let alpha = (1.0 - options.level) / 2.0;
    Ok(SlopeFit {
        slope: line.slope,
        intercept: line.intercept,
        r_squared,
        lower: quantile(&slopes, alpha),
        upper: quantile(&slopes, 1.0 - alpha),
        level: options.level,
        log_power,
        points: samples.len(),
        levels,
        groups: groups.len(),
        bootstrap: options.bootstrap,
        resamples: options.resamples,
    })
}

/// A verdict on a claimed exponent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The claimed exponent lies in the interval (widened by the tolerance).
    Agrees,
    /// The interval lies below the claimed exponent: the cost grows more slowly.
    BetterThanClaimed,
    /// The interval lies above the claimed exponent: the cost grows faster.
    WorseThanClaimed,
    /// Too few x-levels, or an interval too wide to decide.
    Inconclusive,
}

impl Verdict {
    /// The name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Agrees => "agrees",
            Verdict::BetterThanClaimed => "better_than_claimed",
            Verdict::WorseThanClaimed => "worse_than_claimed",
            Verdict::Inconclusive => "inconclusive",
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Holds `fit` against `claim_exponent` (rules in the module doc); returns the verdict and a
/// one-sentence reason with the numbers.
pub fn verdict(fit: &SlopeFit, claim_exponent: f64, options: &FitOptions) -> (Verdict, String) {
    let (lo, hi, tol, a) = (fit.lower, fit.upper, options.tolerance, claim_exponent);
    let pct = fit.level * 100.0;
    let measured = format!("slope {:.3}, {pct:.0}% interval [{lo:.3}, {hi:.3}]", fit.slope);
    if fit.levels < 3 {
        return (Verdict::Inconclusive, format!("only {} x-levels (3 needed to test a slope); {measured}", fit.levels));
    }
    if !(claim_exponent.is_finite() && lo.is_finite() && hi.is_finite()) {
        return (Verdict::Inconclusive, format!("non-finite exponent {a} or interval; {measured}"));
    }
    if hi - lo > options.max_width {
        return (
            Verdict::Inconclusive,
            format!("{measured} is wider than {} (more levels, seeds or a wider sweep needed)", options.max_width),
        );
    }
    if lo - tol <= a && a <= hi + tol {
        (Verdict::Agrees, format!("{measured} contains the claimed exponent {a} (tolerance {tol})"))
    } else if hi + tol < a {
        (
            Verdict::BetterThanClaimed,
            format!(
                "{measured} lies below the claimed exponent {a} (tolerance {tol}): cost grows more slowly than the \
                 bound; expected where the bound is a worst case this instance does not attain"
            ),
        )
    } else {
        (
            Verdict::WorseThanClaimed,
            format!(
                "{measured} lies above the claimed exponent {a} (tolerance {tol}): cost grows faster than the bound \
                 allows (a wrong claim, settings outside the theorem's, or an implementation problem)"
            ),
        )
    }
}

/// A fit and its verdict, or an inconclusive verdict where there are too few x-levels to fit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Judgement {
    /// The verdict.
    pub verdict: Verdict,
    /// Why.
    pub reason: String,
    /// The fit, when there was one.
    pub fit: Option<SlopeFit>,
}

/// [`fit`] then [`verdict`]; [`FitError::TooFewLevels`] becomes [`Verdict::Inconclusive`],
/// any other error is returned.
pub fn judge(
    samples: &[Sample],
    claim_exponent: f64,
    log_power: f64,
    options: &FitOptions,
) -> Result<Judgement, FitError> {
    match fit(samples, log_power, options) {
        Ok(f) => {
            let (verdict, reason) = verdict(&f, claim_exponent, options);
            Ok(Judgement { verdict, reason, fit: Some(f) })
        }
        Err(FitError::TooFewLevels { levels, needed }) => Ok(Judgement {
            verdict: Verdict::Inconclusive,
            reason: format!("only {levels} x-levels ({needed} needed)"),
            fit: None,
        }),
        Err(e) => Err(e),
    }
}

#[derive(Clone, Copy)]
struct Line {
    slope: f64,
    intercept: f64,
}

impl Line {
    fn at(&self, u: f64) -> f64 {
        self.intercept + self.slope * u
    }
}

/// OLS of v on u; `None` when u is constant.
fn ols(u: &[f64], v: &[f64]) -> Option<Line> {
    let n = u.len() as f64;
    let mean_u = u.iter().sum::<f64>() / n;
    let mean_v = v.iter().sum::<f64>() / n;
    let (mut sxx, mut sxy) = (0.0, 0.0);
    for (a, b) in u.iter().zip(v) {
        sxx += (a - mean_u) * (a - mean_u);
        sxy += (a - mean_u) * (b - mean_v);
    }
    if sxx <= 0.0 {
        return None;
    }
    let slope = sxy / sxx;
    Some(Line { slope, intercept: mean_v - slope * mean_u })
}

/// The q-quantile of sorted `values`, interpolating linearly between order statistics.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let (i, frac) = (pos.floor() as usize, pos - pos.floor());
    if i + 1 < sorted.len() {
        sorted[i] + frac * (sorted[i + 1] - sorted[i])
    } else {
        sorted[sorted.len() - 1]
    }
}
