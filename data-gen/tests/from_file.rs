//! Problems on a user's LIBSVM file: classes, the seeded split, scaling, refusals.

use bilevel_data::from_file::{classes, hyperclean, logreg_per_class, split, FileOptions};
use bilevel_data::libsvm::LibsvmData;
use bilevel_kernels::{BilevelProblem, CsrMatrix};

fn data(labels: Vec<f64>) -> LibsvmData {
    let n = labels.len();
    // Row i: feature 0 = i, feature 2 = −2i (so column maxima are n−1 and 2(n−1)).
    let triplets: Vec<(usize, usize, f64)> =
        (0..n).flat_map(|i| [(i, 0, i as f64), (i, 2, -2.0 * i as f64)]).filter(|t| t.2 != 0.0).collect();
    LibsvmData::new(CsrMatrix::from_triplets(n, 3, &triplets).unwrap(), labels)
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

/// A scratch file with `text`, removed by the caller.
fn scratch_file(tag: &str, text: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("bilevel-from-file-{tag}-{}.libsvm", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path
}

/// Twelve valid rows of three classes (lines 2..=13, after a comment line).
fn valid_rows() -> String {
    let mut text = String::from("# three classes\n");
    for i in 0..12 {
        text += &format!("{} 1:{} 2:{}\n", i % 3, i + 1, 12 - i);
    }
    text
}

#[test]
fn a_stray_huge_feature_index_is_refused_naming_its_line_before_allocating() {
    // One row with index 2^32 − 1 sets 4.3e9 columns: the column scales alone were 34 GB (an
    // allocator abort), the K·d model buffers far more. Refused whatever the machine's memory
    // (past MAX_PROBLEM_BYTES), naming the file, the line (15: the comment, twelve rows, a
    // blank line, then it) and the index.
    let text = valid_rows() + "\n2 4294967295:1.0\n";
    let path = scratch_file("wide", &text);
    let d = bilevel_data::libsvm::read_path(&path, Default::default()).unwrap();
    assert_eq!(d.x.ncols(), u32::MAX as usize);
    for err in [
        hyperclean(&d, &FileOptions::default(), 0).err().unwrap(),
        logreg_per_class(&d, &FileOptions::default(), 0).err().unwrap(),
    ] {
        assert!(matches!(err, bilevel_kernels::KernelError::TooLarge { .. }), "{err}");
        let msg = err.to_string();
        let line = format!("line 15 of {}", path.display());
        assert!(msg.contains(&line) && msg.contains("feature index 4294967295"), "{msg}");
        assert!(msg.contains("sets 4294967295 feature columns") && msg.contains("bytes"), "{msg}");
    }
    // In a 0-based file the index is quoted as written.
    std::fs::write(&path, valid_rows() + "\n2 4294967294:1.0\n").unwrap();
    let zero =
        bilevel_data::libsvm::ReadOptions { index_base: bilevel_data::libsvm::IndexBase::Zero, n_features: None };
    let d = bilevel_data::libsvm::read_path(&path, zero).unwrap();
    let msg = hyperclean(&d, &FileOptions::default(), 0).err().unwrap().to_string();
    assert!(msg.contains("line 15 of") && msg.contains("feature index 4294967294 sets"), "{msg}");
    // Data built in memory name the row instead.
    let mut d = data((0..12).map(|i| (i % 3) as f64).collect());
    d.x = CsrMatrix::from_triplets(12, u32::MAX as usize, &[(7, u32::MAX as usize - 1, 1.0)]).unwrap();
    let msg = hyperclean(&d, &FileOptions::default(), 0).err().unwrap().to_string();
    assert!(msg.starts_with("data row 8: feature index 4294967294"), "{msg}");
    std::fs::remove_file(path).unwrap();
}

/// Whether `msg` holds a run of more than 20 digits (a float printed with `{}`).
fn has_long_number(msg: &str) -> bool {
    msg.split(|c: char| !c.is_ascii_digit()).any(|run| run.len() > 20)
}

#[test]
fn options_are_validated_first_and_extreme_numbers_print_in_scientific_notation() {
    let d = data((0..40).map(|i| (i % 4) as f64).collect());
    let o = FileOptions::default();
    // A ridge of 0 (or below the smallest normal f64): the lower level is not strongly convex.
    for ridge in [0.0, 1e-320, -1.0, f64::NAN, f64::INFINITY, 1e300] {
        let msg = hyperclean(&d, &FileOptions { ridge, ..o }, 0).err().unwrap().to_string();
        assert!(msg.contains("ridge") && msg.contains("must be in [2.2251e-308, 1e12]"), "{ridge:?}: {msg}");
        assert_eq!(msg.contains("strongly convex"), ridge < 1e-300, "{ridge:?}: {msg}");
        assert!(!has_long_number(&msg), "{ridge:?}: {msg}");
    }
    assert!(hyperclean(&d, &FileOptions { ridge: 1e-300, ..o }, 0).is_ok(), "a tiny positive ridge is a ridge");
    let msg = logreg_per_class(&d, &FileOptions { reg_scale: 0.0, ..o }, 0).err().unwrap().to_string();
    assert!(msg.contains("reg_scale") && msg.contains("strongly convex"), "{msg}");
    for (opts, name) in [
        (FileOptions { val_fraction: 1e-300, test_fraction: 1.0, ..o }, "test_fraction"),
        (FileOptions { val_fraction: -1e-300, ..o }, "val_fraction"),
        (FileOptions { corruption: 1e300, ..o }, "corruption"),
    ] {
        let msg = hyperclean(&d, &opts, 0).err().unwrap().to_string();
        assert!(msg.contains(name) && !has_long_number(&msg), "{msg}");
    }
    // A label that is not a class, tiny or huge.
    for label in [5e-301, 1.5e300 + 0.5, -2.5e-10] {
        let msg = classes(&[1.0, label]).err().map(|e| e.to_string()).unwrap_or_default();
        if label.fract() != 0.0 {
            assert!(msg.contains("not a class") && !has_long_number(&msg), "{msg}");
        }
    }
}

#[test]
fn the_hyperclean_builders_own_range_check_prints_its_bounds_briefly() {
    // from_splits checks the ridge itself (for callers that skip FileOptions): its bound
    // f64::MIN_POSITIVE printed with `{}` was 330 digits.
    let d = data((0..40).map(|i| (i % 4) as f64).collect());
    let splits = split(&d, &FileOptions::default(), 0).unwrap();
    let mut rng = <rand_xoshiro::Xoshiro256PlusPlus as rand::SeedableRng>::seed_from_u64(0);
    let err = bilevel_data::hyperclean::from_splits(splits, 0.3, 0.0, &mut rng).err().unwrap().to_string();
    assert!(err.contains("[2.2251e-308, 1e12], got 0"), "{err}");
    assert!(!has_long_number(&err), "{err}");
}
