//! Problems on a user's own data: a LIBSVM file (multi-class labels) split into training,
//! validation and test rows by a seeded shuffle, then
//! - **logistic hyper-parameter optimization** with one regularization weight per class
//!   ([`logreg_per_class`], the `logreg_per_class` generator's problem, paper 002 §6 / paper
//!   000 F.2's form), or
//! - **data hyper-cleaning** ([`hyperclean()`], papers 002 and 004): a fraction of the training
//!   labels replaced by wrong classes, one weight per training sample.
//!
//! Labels must be integers; the distinct values, sorted, become classes 0..K. Features are
//! divided by the largest absolute value of their column over all rows (a column of zeros stays
//! zero), so the problems' constants do not depend on the file's units. Files with at most
//! [`DENSE_MAX_FEATURES`] features are held dense, larger ones as CSR. The width is the largest
//! feature index, so one stray index can ask for gigabytes: the problem's size is checked
//! against the memory available (and [`MAX_PROBLEM_BYTES`]) before anything is allocated from
//! it, and the error names the file's line and index that set the width.
//!
//! The repository ships one such file, data/optdigits/optdigits.libsvm (the UCI optical
//! digits, see data/optdigits/README.md).

use crate::hyperclean::{self, HyperCleaning};
use crate::libsvm::LibsvmData;
use crate::logreg_hpo::MultinomialHpo;
use bilevel_kernels::models::multinomial::Hyper;
use bilevel_kernels::models::{DenseRows, Design};
use bilevel_kernels::{CsrMatrix, KernelError, Result};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

/// Files with at most this many features are held as dense rows.
pub const DENSE_MAX_FEATURES: usize = 4096;

/// How a file becomes a problem.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct FileOptions {
    /// Fraction of the rows for validation (the upper level).
    pub val_fraction: f64,
    /// Fraction of the rows held out for testing (0: no test split).
    pub test_fraction: f64,
    /// Hyper-cleaning: probability that a training label is replaced by a wrong class.
    pub corruption: f64,
    /// Hyper-cleaning: the inner ridge c of c‖y‖².
    pub ridge: f64,
    /// Logistic HPO: the regularizer's constant (`½·scale·Σ exp(λ_k)‖θ_k‖²`).
    pub reg_scale: f64,
}

impl Default for FileOptions {
    /// Half the rows for training, a quarter each for validation and test; the hyper-cleaning
    /// and per-class generators' defaults for the rest.
    fn default() -> Self {
        Self { val_fraction: 0.25, test_fraction: 0.25, corruption: 0.3, ridge: 1e-3, reg_scale: 1.0 }
    }
}

fn invalid(name: &'static str, reason: String) -> KernelError {
    KernelError::InvalidParameter { name, reason }
}

/// The largest inner ridge (hyper-cleaning's own bound).
const MAX_RIDGE: f64 = 1e12;

impl FileOptions {
    /// Checks every option before any data is touched: fractions in [0, 1), a corruption
    /// probability in [0, 1], a ridge and a regularizer scale in [`f64::MIN_POSITIVE`], 1e12]
    /// (either at 0 leaves the lower level without strong convexity: the cross-entropy is flat
    /// along directions the data do not span). Values are quoted `{:?}`-style, so an extreme one
    /// prints in scientific notation, never as hundreds of digits.
    pub fn validate(&self) -> Result<()> {
        for (name, f) in [("val_fraction", self.val_fraction), ("test_fraction", self.test_fraction)] {
            if !(0.0..1.0).contains(&f) {
                return Err(invalid(name, format!("must be in [0, 1), got {f:?}")));
            }
        }
        if !(0.0..=1.0).contains(&self.corruption) {
            return Err(invalid("corruption", format!("must be a probability in [0, 1], got {:?}", self.corruption)));
        }
        let not_strongly_convex = |name: &'static str, what: &str, v: f64| {
            let mut reason = format!("must be in [{:.4e}, {MAX_RIDGE:.0e}], got {v:?}", f64::MIN_POSITIVE);
            if v < f64::MIN_POSITIVE {
                reason += &format!(
                    ": {what} 0 leaves the lower level not strongly convex (the cross-entropy is flat along \
                     directions the data do not span)"
                );
            }
            invalid(name, reason)
        };
        // The smallest normal f64 at least: hyper-cleaning's µ_g = 2c must not be subnormal.
        let valid = |v: f64| (f64::MIN_POSITIVE..=MAX_RIDGE).contains(&v);
        if !valid(self.ridge) {
            return Err(not_strongly_convex("ridge", "a ridge of", self.ridge));
        }
        if !valid(self.reg_scale) {
            return Err(not_strongly_convex("reg_scale", "a regularizer scale of", self.reg_scale));
        }
        Ok(())
    }
}

/// The labels as classes 0..K (the distinct values, sorted) and K. Errors: a label that is not
/// an integer, fewer than two classes.
pub fn classes(labels: &[f64]) -> Result<(Vec<usize>, usize)> {
    if let Some((i, v)) = labels.iter().enumerate().find(|(_, v)| !(v.is_finite() && v.fract() == 0.0)) {
        return Err(KernelError::InvalidData {
            what: "labels",
            reason: format!("row {i} has label {v:?}, not a class"),
        });
    }
    let mut distinct: Vec<i64> = labels.iter().map(|&v| v as i64).collect();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() < 2 {
        return Err(KernelError::InvalidData {
            what: "labels",
            reason: format!("{} distinct label(s): a classification problem needs at least 2", distinct.len()),
        });
    }
    let map = |v: f64| distinct.binary_search(&(v as i64)).expect("every label is among the distinct ones");
    Ok((labels.iter().map(|&v| map(v)).collect(), distinct.len()))
}

/// The rows scaled by their columns' largest absolute value over all rows.
fn scaled(x: &CsrMatrix) -> Result<CsrMatrix> {
    let mut scale = vec![0.0f64; x.ncols()];
    for (&j, &v) in x.indices().iter().zip(x.values()) {
        scale[j as usize] = scale[j as usize].max(v.abs());
    }
    let values: Vec<f64> =
        x.indices().iter().zip(x.values()).map(|(&j, &v)| if v == 0.0 { 0.0 } else { v / scale[j as usize] }).collect();
    CsrMatrix::new(x.nrows(), x.ncols(), x.indptr().to_vec(), x.indices().to_vec(), values)
}

/// The most a problem built from a file may hold, whatever memory the system reports: a cap
/// for systems where the available memory is not known (the check then trusts the address
/// space), and against widths no LIBSVM data set has (the largest public ones have ~10⁸
/// features, a few GiB of weights).
pub const MAX_PROBLEM_BYTES: u128 = 1 << 40;

/// How many d·K-sized buffers a problem built from a file holds, bounded (weights, gradients,
/// the solvers' iterates and work vectors): what [`check_size`] counts.
const MODEL_COPIES: usize = 16;

/// The bytes a problem on `data` (K classes) will allocate from its width d and its n rows:
/// the column scales (d), the dense designs up to [`DENSE_MAX_FEATURES`] columns (n·d stored,
/// plus the largest split's faer copy while converting, ≤ n·d), a sparse design's densified
/// copy for the Gram bound (when n·d is at most `DENSIFY_MAX`), the model's K·d buffers
/// ([`MODEL_COPIES`]) and the per-sample workspace (n·(2K + 5)).
fn problem_bytes(n: usize, d: usize, k: usize) -> u128 {
    use crate::logreg_hpo::bounds::DENSIFY_MAX;
    use bilevel_kernels::memory::f64_bytes;
    let design = if d <= DENSE_MAX_FEATURES {
        f64_bytes(&[2, n, d])
    } else if n.saturating_mul(d) <= DENSIFY_MAX {
        f64_bytes(&[n, d])
    } else {
        0
    };
    [f64_bytes(&[d]), design, f64_bytes(&[d, k.max(1), MODEL_COPIES]), f64_bytes(&[n, 2 * k + 5])]
        .into_iter()
        .fold(0u128, u128::saturating_add)
}

/// Refuses data whose width (set by the largest feature index) or size makes a problem that
/// cannot fit, before anything of that size is allocated: [`problem_bytes`] against the memory
/// available ([`bilevel_kernels::memory::check_fits`]) and [`MAX_PROBLEM_BYTES`]. The
/// [`KernelError::TooLarge`] names the file, the line and the index that set the width, and
/// the bytes the problem would need.
fn check_size(data: &LibsvmData, k: usize) -> Result<()> {
    let x = &data.x;
    let (n, d) = (x.nrows(), x.ncols());
    let needed = problem_bytes(n, d, k);
    let what = || {
        // The first row holding the largest index.
        let widest = (0..n).filter_map(|r| x.row(r).0.iter().max().map(|&j| (j, std::cmp::Reverse(r)))).max();
        let width = match widest {
            Some((j, std::cmp::Reverse(r))) if j as usize + 1 == d => format!(
                "{}: feature index {} sets {d} feature columns",
                data.origin.describe_row(r),
                j as u64 + data.origin.first_index
            ),
            _ => {
                let source = data.origin.path.as_ref().map_or_else(String::new, |p| format!("{}: ", p.display()));
                format!("{source}{d} feature columns (declared)")
            }
        };
        let held = if d <= DENSE_MAX_FEATURES { "dense" } else { "sparse" };
        format!("{width}; the problem on its {n} rows ({held}) and {k} classes (design, weights and work buffers)")
    };
    if needed > MAX_PROBLEM_BYTES {
        let available = bilevel_kernels::memory::available_bytes()
            .map_or(MAX_PROBLEM_BYTES, |a| (a as u128).min(MAX_PROBLEM_BYTES));
        let what = format!(
            "{} (over the {} cap on a problem built from a file)",
            what(),
            bilevel_kernels::memory::format_bytes(MAX_PROBLEM_BYTES)
        );
        return Err(KernelError::TooLarge { what, needed, available: available as u64 });
    }
    bilevel_kernels::memory::check_fits(what, needed)
}

/// Rows as a design: dense up to [`DENSE_MAX_FEATURES`] features, else CSR.
fn design_of(x: CsrMatrix) -> Result<Design> {
    if x.ncols() <= DENSE_MAX_FEATURES {
        Ok(Design::Dense(DenseRows::from_faer(x.to_dense().as_ref())?))
    } else {
        Ok(Design::Sparse(x))
    }
}

type Split = (Design, Vec<usize>);

/// The seeded split of the rows (a shuffled permutation: validation first, then test, then
/// training) and K. Errors: invalid options ([`FileOptions::validate`]), labels that are not
/// classes ([`classes`]), splits left empty, and data too large for memory
/// ([`KernelError::TooLarge`], naming the line whose index set the width), each before the
/// data are copied.
pub fn split(data: &LibsvmData, options: &FileOptions, seed: u64) -> Result<hyperclean::Splits> {
    options.validate()?;
    let (labels, k) = classes(&data.labels)?;
    let n = labels.len();
    let n_val = (options.val_fraction * n as f64).round() as usize;
    let n_test = (options.test_fraction * n as f64).round() as usize;
    if n_val == 0 || n_val + n_test >= n {
        return Err(invalid(
            "val_fraction",
            format!(
                "{n} rows give {n_val} validation and {n_test} test rows: nothing left to train on, or no validation"
            ),
        ));
    }
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    for i in (1..n).rev() {
        order.swap(i, rng.random_range(0..=i));
    }
    check_size(data, k)?;
    let x = scaled(&data.x)?;
    let design = |rows: &[usize]| -> Result<Split> {
        Ok((design_of(x.select_rows(rows)?)?, rows.iter().map(|&r| labels[r]).collect()))
    };
    let (val, rest) = order.split_at(n_val);
    let (test, train) = rest.split_at(n_test);
    let test = if test.is_empty() { None } else { Some(design(test)?) };
    Ok((design(train)?, design(val)?, test, k))
}

/// Logistic hyper-parameter optimization with one regularization weight per class on the rows
/// of `data` (see the module doc).
pub fn logreg_per_class(data: &LibsvmData, options: &FileOptions, seed: u64) -> Result<MultinomialHpo> {
    let (train, val, test, k) = split(data, options, seed)?;
    MultinomialHpo::new(train, val, test, k, Hyper::PerClass { scale: options.reg_scale })
}

/// Data hyper-cleaning on the rows of `data` (see the module doc); the corruption draws follow
/// the split's from the same seed.
pub fn hyperclean(data: &LibsvmData, options: &FileOptions, seed: u64) -> Result<HyperCleaning> {
    let splits = split(data, options, seed)?;
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed ^ 0x6879_7065_7263_6c6e); // "hyperclean"
    hyperclean::from_splits(splits, options.corruption, options.ridge, &mut rng)
}
