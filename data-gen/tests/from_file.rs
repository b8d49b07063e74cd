//! Problems on a user's LIBSVM file: classes, the seeded split, scaling, refusals.

use bilevel_data::from_file::{classes, hyperclean, logreg_per_class, split, FileOptions};
use bilevel_data::libsvm::LibsvmData;
use bilevel_kernels::{BilevelProblem, CsrMatrix};

fn data(labels: Vec<f64>) -> LibsvmData {
    let n = labels.len();
    // Row i: feature 0 = i, feature 2 = −2i (so column maxima are n−1 and 2(n−1)).
    let triplets: Vec<(usize, usize, f64)> =
        (0..n).flat_map(|i| [(i, 0, i as f64), (i, 2, -2.0 * i as f64)]).filter(|t| t.2 != 0.0).collect();
    LibsvmData { x: CsrMatrix::from_triplets(n, 3, &triplets).unwrap(), labels }
}

#[test]
fn labels_become_sorted_classes_and_bad_labels_are_refused() {
    assert_eq!(classes(&[7.0, -1.0, 7.0, 3.0]).unwrap(), (vec![2, 0, 2, 1], 3));
    assert!(classes(&[1.0, 1.5]).is_err());
    assert!(classes(&[2.0, 2.0]).is_err());
    assert!(classes(&[f64::NAN, 1.0]).is_err());
}

#[test]
fn the_split_is_seeded_disjoint_complete_and_scaled() {
    let labels: Vec<f64> = (0..40).map(|i| (i % 4) as f64).collect();
    let d = data(labels);
    let opts = FileOptions::default();
    let (train, val, test, k) = split(&d, &opts, 3).unwrap();
    let test = test.unwrap();
    assert_eq!((train.1.len(), val.1.len(), test.1.len(), k), (20, 10, 10, 4));
    // Scaled by column maxima: every value in [−1, 1], feature 0 of row i is i/39; recover
    // the row ids to check the three splits partition the rows.
    let ids = |s: &(bilevel_kernels::models::Design, Vec<usize>)| -> Vec<usize> {
        match &s.0 {
            bilevel_kernels::models::Design::Dense(rows) => {
                (0..rows.nrows()).map(|r| (rows.row(r)[0] * 39.0).round() as usize).collect()
            }
            _ => panic!("3 features are held dense"),
        }
    };
    let mut all: Vec<usize> = [ids(&train), ids(&val), ids(&test)].concat();
    all.sort_unstable();
    assert_eq!(all, (0..40).collect::<Vec<_>>());
    if let bilevel_kernels::models::Design::Dense(rows) = &train.0 {
        assert!(rows.data().iter().all(|v| v.abs() <= 1.0));
    }
    // Same seed, same split; another seed, another one.
    assert_eq!(ids(&split(&d, &opts, 3).unwrap().1), ids(&val));
    assert_ne!(ids(&split(&d, &opts, 4).unwrap().1), ids(&val));
    // Nothing left to train on, or no validation: refused.
    assert!(split(&d, &FileOptions { val_fraction: 0.6, test_fraction: 0.4, ..opts }, 0).is_err());
    assert!(split(&d, &FileOptions { val_fraction: 0.0, ..opts }, 0).is_err());
}

#[test]
fn both_problems_build_on_the_shipped_digits_file() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../data/optdigits/optdigits.libsvm");
    let d = bilevel_data::libsvm::read_path(path, Default::default()).unwrap();
    assert_eq!((d.labels.len(), d.x.ncols()), (1797, 64));
    let opts = FileOptions::default();
    let h = hyperclean(&d, &opts, 0).unwrap();
    // x: one weight per training row (half the rows), y: 64 features × 10 classes.
    assert_eq!((h.dim_x(), h.dim_y()), (1797 - 449 - 449, 640));
    let corrupted = h.n_corrupted() as f64 / h.dim_x() as f64;
    assert!((corrupted - 0.3).abs() < 0.05, "{corrupted}");
    let l = logreg_per_class(&d, &opts, 0).unwrap();
    assert_eq!((l.dim_x(), l.dim_y()), (10, 640));
}
