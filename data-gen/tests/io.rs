//! LIBSVM reader/writer, .npy files and problem directories: round trips and every documented
//! error, plus a deterministic fuzz loop (random and mutated inputs never make the reader panic).

use bilevel_data::catalog::{build_dataset, BuildOptions};
use bilevel_data::dataset::{Array, ArrayData};
use bilevel_data::export::{load_dir, write_dir, ExportError};
use bilevel_data::libsvm::{read, write, IndexBase, LibsvmData, LibsvmError, ReadOptions};
use bilevel_data::npy::{read_npy, write_npy};
use bilevel_data::quadratic::{self, QuadraticProblem};
use bilevel_kernels::{Batch, BilevelProblem, CsrMatrix};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

fn parse(text: &str, options: ReadOptions) -> Result<LibsvmData, LibsvmError> {
    read(text.as_bytes(), options)
}

fn line_of(e: LibsvmError) -> (usize, String) {
    match e {
        LibsvmError::Line { line, reason } => (line, reason),
        other => panic!("expected a line error, got {other}"),
    }
}

#[test]
fn libsvm_reads_the_format() {
    let text = "# a comment\n+1 3:0.5 1:2 qid:7\n\n-1 2:-1.25e-3 # trailing comment\n0\n3 5:1\n";
    let d = parse(text, ReadOptions::default()).unwrap_err();
    // qid must come right after the label:
    assert!(line_of(d).1.contains("qid"));
    let text = "# a comment\n+1 qid:7 3:0.5 1:2\n\n-1 2:-1.25e-3 # trailing\n0\n3 5:1\n";
    let d = parse(text, ReadOptions::default()).unwrap();
    assert_eq!(d.labels, vec![1.0, -1.0, 0.0, 3.0]);
    assert_eq!(d.x.nrows(), 4);
    assert_eq!(d.x.ncols(), 5);
    assert_eq!(d.x.row(0), (&[0u32, 2][..], &[2.0, 0.5][..]));
    assert_eq!(d.x.row(1), (&[1u32][..], &[-1.25e-3][..]));
    assert_eq!(d.x.row(2).0.len(), 0);
    let zero = parse("1 0:1 4:2\n", ReadOptions { index_base: IndexBase::Auto, n_features: None }).unwrap();
    assert_eq!((zero.x.ncols(), zero.x.row(0).0), (5, &[0u32, 4][..]));
    let declared = parse("1 2:1\n", ReadOptions { index_base: IndexBase::One, n_features: Some(10) }).unwrap();
    assert_eq!(declared.x.ncols(), 10);
}

#[test]
fn libsvm_round_trips_bit_for_bit() {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(5);
    let mut t = Vec::new();
    for i in 0..40 {
        for j in 0..30 {
            if rng.random::<f64>() < 0.2 {
                t.push((i, j, (rng.random::<f64>() - 0.5) * 10f64.powi(rng.random_range(-300..300))));
            }
        }
    }
    let x = CsrMatrix::from_triplets(40, 30, &t).unwrap();
    let labels: Vec<f64> = (0..40).map(|i| (i % 3) as f64 - 1.0).collect();
    let data = LibsvmData::new(x, labels);
    for zero_based in [false, true] {
        let mut buf = Vec::new();
        write(&data, &mut buf, zero_based).unwrap();
        let base = if zero_based { IndexBase::Zero } else { IndexBase::One };
        let back = read(&buf[..], ReadOptions { index_base: base, n_features: Some(30) }).unwrap();
        assert_eq!(back, data);
    }
}

#[test]
fn libsvm_rejects_malformed_lines_with_their_number() {
    let cases = [
        ("1 1:1\nx 1:1\n", 2, "label"),
        ("1 1:1\n1 1:1 2\n", 2, "index:value"),
        ("1 a:1\n", 1, "index"),
        ("1 1:zz\n", 1, "value"),
        ("1 1:nan\n", 1, "not finite"),
        ("1 1:inf\n", 1, "not finite"),
        ("1 1:1 1:2\n", 1, "repeated"),
        ("1 0:1\n", 1, "index 0"),
        ("1 -3:1\n", 1, "index"),
        ("1 99999999999999999999999:1\n", 1, "index"),
        ("1 1:1\n\n# c\n1 :1\n", 4, "index"),
        ("inf 1:1\n", 1, "label"),
    ];
    for (text, line, word) in cases {
        let (got_line, reason) = line_of(parse(text, ReadOptions::default()).unwrap_err());
        assert_eq!(got_line, line, "{text:?}: {reason}");
        assert!(reason.contains(word), "{text:?}: `{reason}` should mention `{word}`");
    }
    let bytes = b"1 1:1\n1 2:\xff\n";
    let (line, reason) = line_of(read(&bytes[..], ReadOptions::default()).unwrap_err());
    assert_eq!((line, reason.as_str()), (2, "not valid UTF-8 (byte 0xff at column 5)"));
    assert!(matches!(
        parse("1 5:1\n", ReadOptions { index_base: IndexBase::One, n_features: Some(3) }),
        Err(LibsvmError::Data(_))
    ));
    assert!(matches!(parse("1 4294967297:1\n", ReadOptions::default()), Err(LibsvmError::Line { line: 1, .. })));
}

#[test]
fn libsvm_feature_index_at_the_top_of_u64_is_a_line_error() {
    // 2^64 − 1: `index + 1` overflowed (a panic with overflow checks, a misleading error without).
    for base in [IndexBase::One, IndexBase::Zero, IndexBase::Auto] {
        for text in ["1 18446744073709551615:1\n", "1 1:1\n-1 2:2 18446744073709551615:1\n"] {
            let line = text.lines().count();
            let (got, reason) = line_of(parse(text, ReadOptions { index_base: base, n_features: None }).unwrap_err());
            assert_eq!(got, line, "{base:?} {text:?}: {reason}");
            assert!(reason.contains("18446744073709551615") && reason.contains("features"), "{reason}");
        }
    }
    // The largest index that fits (2^32 − 1 features) is still read, 0-based.
    let d = parse("1 4294967294:1\n", ReadOptions { index_base: IndexBase::Zero, n_features: None }).unwrap();
    assert_eq!(d.x.ncols(), u32::MAX as usize);
}

#[test]
fn libsvm_reader_never_panics_on_random_or_mutated_input() {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(11);
    let seeds: [&[u8]; 4] = [b"+1 1:0.5 3:2\n-1 2:1e-3\n", b"0 qid:3 10:1 # c\n", b"2 1:1 1:1\n", b"\n\n#\n"];
    let alphabet = b"0123456789+-.:eE# \n\tqidnaINF\xff\x00";
    for round in 0..4000 {
        let mut input: Vec<u8> = if round % 2 == 0 {
            (0..rng.random_range(0..80)).map(|_| alphabet[rng.random_range(0..alphabet.len())]).collect()
        } else {
            seeds[round % seeds.len()].to_vec()
        };
        for _ in 0..rng.random_range(0..6) {
            if input.is_empty() {
                break;
            }
            let k = rng.random_range(0..input.len());
            match rng.random_range(0..3) {
                0 => input[k] = alphabet[rng.random_range(0..alphabet.len())],
                1 => {
                    input.remove(k);
                }
                _ => input.insert(k, alphabet[rng.random_range(0..alphabet.len())]),
            }
        }
        for base in [IndexBase::One, IndexBase::Zero, IndexBase::Auto] {
            // Either a dataset or an error; a panic fails the test.
            if let Ok(d) = read(&input[..], ReadOptions { index_base: base, n_features: None }) {
                assert_eq!(d.labels.len(), d.x.nrows());
            }
        }
    }
}

#[test]
fn npy_round_trips_and_rejects_corrupt_files() {
    let arrays = [
        Array::f64("a", vec![2, 3], vec![1.0, -2.5, f64::MIN_POSITIVE, 1e300, 0.0, -0.0]),
        Array::f64("v", vec![4], vec![0.1, 0.2, 0.3, 0.4]),
        Array::i64("idx", vec![3], vec![0, -7, i64::MAX]),
        Array::f64("s", vec![], vec![42.0]),
    ];
    for a in &arrays {
        let mut buf = Vec::new();
        write_npy(a, &mut buf).unwrap();
        assert_eq!((buf.len() - a.shape.iter().product::<usize>() * 8) % 64, 0, "header is 64-byte aligned");
        assert_eq!(&read_npy(&a.name, &buf[..]).unwrap(), a);
    }
    let mut good = Vec::new();
    write_npy(&arrays[0], &mut good).unwrap();
    let mut bad_magic = good.clone();
    bad_magic[1] = b'X';
    assert!(read_npy("a", &bad_magic[..]).unwrap_err().to_string().contains("magic"));
    let truncated = &good[..good.len() - 3];
    assert!(read_npy("a", truncated).unwrap_err().to_string().contains("data bytes"));
    let patch = |from: &[u8], to: &[u8]| {
        let mut b = good.clone();
        let k = b.windows(from.len()).position(|w| w == from).expect("pattern in header");
        b[k..k + to.len()].copy_from_slice(to);
        b
    };
    let fortran = patch(b"'fortran_order': False", b"'fortran_order': True ");
    assert!(read_npy("a", &fortran[..]).unwrap_err().to_string().contains("Fortran"));
    let c8 = patch(b"<f8", b"<c8");
    assert!(read_npy("a", &c8[..]).unwrap_err().to_string().contains("dtype <c8"));
    assert!(
        write_npy(&Array { name: "x".into(), shape: vec![3], data: ArrayData::F64(vec![1.0]) }, Vec::new()).is_err()
    );
}

fn tmp_dir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("bilevel-io-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn quadratic_export_loads_back_as_the_same_problem() {
    let options = BuildOptions { preset: Some("tiny".into()), kappa: Some(1e3), seed: 9, ..Default::default() };
    let dataset = build_dataset("quadratic", &options).unwrap();
    let dir = tmp_dir("quadratic");
    write_dir(dataset.as_ref(), &dir, false).unwrap();
    let loaded = load_dir(&dir).unwrap();
    assert_eq!(loaded.generator, "quadratic");
    assert_eq!(loaded.parameters.get("seed").and_then(|s| s.as_u64()), Some(9));
    assert_eq!(loaded.arrays, dataset.arrays());
    // The loaded arrays make the same problem: same oracles, same exact hypergradient.
    let original =
        quadratic::generate(&quadratic::Config { kappa_g: 1e3, ..quadratic::Config::preset("tiny").unwrap() }, 9)
            .unwrap();
    let back = QuadraticProblem::from_arrays(loaded.parameters.clone(), &loaded.arrays).unwrap();
    let x = original.x0(1);
    let (mut g1, mut g2) = (vec![0.0; original.dim_x()], vec![0.0; back.dim_x()]);
    original.exact().unwrap().hypergradient(&x, &mut g1);
    back.exact().unwrap().hypergradient(&x, &mut g2);
    assert_eq!(g1, g2);
    let y = vec![0.5; original.dim_y()];
    let (mut h1, mut h2) = (vec![0.0; original.dim_y()], vec![0.0; back.dim_y()]);
    original.hvp(&x, &y, &y, Batch::Full, &mut h1);
    back.hvp(&x, &y, &y, Batch::Full, &mut h2);
    assert_eq!(h1, h2);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn every_catalogued_generator_exports_its_tiny_preset() {
    for info in bilevel_data::catalog::catalog() {
        let options = BuildOptions { preset: Some("tiny".into()), seed: 1, ..Default::default() };
        let dataset = build_dataset(info.name, &options).unwrap_or_else(|e| panic!("{}: {e}", info.name));
        let dir = tmp_dir(info.name);
        write_dir(dataset.as_ref(), &dir, false).unwrap();
        let loaded = load_dir(&dir).unwrap();
        assert_eq!(loaded.generator, info.name);
        assert_eq!(loaded.arrays, dataset.arrays(), "{}", info.name);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn problem_directories_report_missing_or_inconsistent_files() {
    let dataset =
        build_dataset("quadratic", &BuildOptions { preset: Some("tiny".into()), ..Default::default() }).unwrap();
    let dir = tmp_dir("errors");
    write_dir(dataset.as_ref(), &dir, false).unwrap();
    std::fs::remove_file(dir.join("B_g.npy")).unwrap();
    assert!(matches!(load_dir(&dir), Err(ExportError::Io { path, .. }) if path.ends_with("B_g.npy")));
    write_dir(dataset.as_ref(), &dir, true).unwrap();
    let manifest = std::fs::read_to_string(dir.join("manifest.json")).unwrap();
    std::fs::write(dir.join("manifest.json"), manifest.replacen("10,", "11,", 1)).unwrap();
    assert!(load_dir(&dir).unwrap_err().to_string().contains("shape"));
    std::fs::write(dir.join("manifest.json"), "{not json").unwrap();
    assert!(matches!(load_dir(&dir), Err(ExportError::Manifest(_))));
    std::fs::write(
        dir.join("manifest.json"),
        r#"{"generator": "quadratic", "arrays": [{"name": "A", "file": "../A.npy", "shape": [1]}]}"#,
    )
    .unwrap();
    assert!(load_dir(&dir).unwrap_err().to_string().contains("plain name"));
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(matches!(load_dir(&dir), Err(ExportError::Io { .. })));
    let unknown = build_dataset("nope", &BuildOptions::default()).err().unwrap();
    assert!(unknown.to_string().contains("known: quadratic"));
    let bad = BuildOptions { kappa: Some(10.0), ..Default::default() };
    assert!(build_dataset("hyperclean", &bad).err().unwrap().to_string().contains("kappa"));
}

/// NumPy reads what we write (only where python3 with numpy is installed; otherwise the test
/// says so and checks nothing else — the Rust round trip above is the portable check).
#[test]
fn numpy_reads_exported_arrays_when_available() {
    let has_numpy = std::process::Command::new("python3")
        .args(["-c", "import numpy"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !has_numpy {
        eprintln!("python3 with numpy not found: skipping the NumPy cross-check");
        return;
    }
    let options = BuildOptions { preset: Some("tiny".into()), kappa: Some(250.0), seed: 2, ..Default::default() };
    let dataset = build_dataset("quadratic", &options).unwrap();
    let dir = tmp_dir("numpy");
    write_dir(dataset.as_ref(), &dir, false).unwrap();
    let script = format!(
        "import json, numpy as np\nd = '{}'\nm = json.load(open(d + '/manifest.json'))\n\
         for a in m['arrays']:\n    x = np.load(d + '/' + a['file'])\n    assert list(x.shape) == a['shape'], a\n\
         A = np.load(d + '/A_g.npy')\nprint(np.linalg.cond(A))\n",
        dir.display()
    );
    let out = std::process::Command::new("python3").args(["-c", &script]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let cond: f64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    assert!((cond - 250.0).abs() < 1e-6 * 250.0, "numpy measures κ = {cond}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A hand-written `.npy` (format 1.0) with the given dtype descriptor, shape (Python tuple text)
/// and raw data bytes, header padded to 64 bytes as NumPy does.
fn npy_bytes(descr: &str, shape: &str, data: &[u8]) -> Vec<u8> {
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

#[test]
fn npy_converts_f4_and_i4_and_names_other_dtypes() {
    let f4: Vec<u8> = [1.5f32, -0.25, 3e38].iter().flat_map(|v| v.to_le_bytes()).collect();
    let a = read_npy("w", &npy_bytes("<f4", "(3,)", &f4)[..]).unwrap();
    assert_eq!(a, Array::f64("w", vec![3], vec![1.5, -0.25, 3e38f32 as f64]));
    let i4: Vec<u8> = [7i32, -2, i32::MIN, i32::MAX].iter().flat_map(|v| v.to_le_bytes()).collect();
    let a = read_npy("idx", &npy_bytes("<i4", "(2, 2)", &i4)[..]).unwrap();
    assert_eq!(a, Array::i64("idx", vec![2, 2], vec![7, -2, i32::MIN as i64, i32::MAX as i64]));
    // A truncated <f4 file says how many values it holds.
    let err = read_npy("w", &npy_bytes("<f4", "(3,)", &f4[..10])[..]).unwrap_err().to_string();
    assert!(err.contains("2 of 3 values"), "{err}");
    // Other dtypes are named (not reported as a byte-count mismatch).
    for (descr, bytes) in [(">f8", 8), ("<c16", 16), ("<u8", 8), ("|u1", 1), (">i4", 4), ("<f2", 2)] {
        let file = npy_bytes(descr, "(2,)", &vec![0u8; 2 * bytes]);
        let err = read_npy("z", &file[..]).unwrap_err().to_string();
        assert!(err.contains(descr) && err.contains("not supported") && err.contains("`z`"), "{descr}: {err}");
    }
}

#[test]
fn problem_directories_load_f4_files_and_name_the_file_of_a_bad_dtype() {
    let dir = tmp_dir("dtypes");
    std::fs::create_dir_all(&dir).unwrap();
    let f4: Vec<u8> = [0.5f32, 2.0].iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(dir.join("v.npy"), npy_bytes("<f4", "(2,)", &f4)).unwrap();
    std::fs::write(dir.join("c.npy"), npy_bytes("<c16", "(1,)", &[0u8; 16])).unwrap();
    let manifest = |entries: &str| {
        std::fs::write(dir.join("manifest.json"), format!(r#"{{"generator": "quadratic", "arrays": [{entries}]}}"#))
            .unwrap()
    };
    manifest(r#"{"name": "v", "file": "v.npy", "dtype": "<f4", "shape": [2]}"#);
    let loaded = load_dir(&dir).unwrap();
    assert_eq!(loaded.arrays, vec![Array::f64("v", vec![2], vec![0.5, 2.0])]);
    manifest(r#"{"name": "v", "file": "v.npy", "dtype": "<f8", "shape": [2]}"#);
    let err = load_dir(&dir).unwrap_err().to_string();
    assert!(err.contains("<f8") && err.contains("<f4") && err.contains("v.npy"), "{err}");
    manifest(r#"{"name": "c", "file": "c.npy", "shape": [1]}"#);
    let err = load_dir(&dir).unwrap_err().to_string();
    assert!(err.contains("c.npy") && err.contains("<c16"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_directory_exported_by_another_generator_is_not_loaded_as_a_quadratic() {
    let options = BuildOptions { preset: Some("tiny".into()), seed: 1, ..Default::default() };
    let dir = tmp_dir("other-generator");
    write_dir(build_dataset("hyperclean", &options).unwrap().as_ref(), &dir, false).unwrap();
    let err = QuadraticProblem::from_loaded(&load_dir(&dir).unwrap()).unwrap_err().to_string();
    assert!(err.contains("`hyperclean`") && err.contains("`quadratic`"), "{err}");
    // The arrays of a quadratic under another generator's name are refused too.
    std::fs::remove_dir_all(&dir).unwrap();
    write_dir(build_dataset("quadratic", &options).unwrap().as_ref(), &dir, false).unwrap();
    let mut loaded = load_dir(&dir).unwrap();
    assert!(QuadraticProblem::from_loaded(&loaded).is_ok());
    loaded.generator = "stochastic_quadratic".into();
    let err = QuadraticProblem::from_loaded(&loaded).unwrap_err().to_string();
    assert!(err.contains("`stochastic_quadratic`") && err.contains("`quadratic`"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The entries of `dir`'s parent whose names start with `.NAME.` (the export's temporary and
/// old directories).
fn leftovers(dir: &std::path::Path) -> Vec<String> {
    let prefix = format!(".{}.", dir.file_name().unwrap().to_str().unwrap());
    std::fs::read_dir(dir.parent().unwrap())
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(&prefix))
        .collect()
}

#[test]
fn export_refuses_a_non_empty_directory_and_replaces_it_whole_with_force() {
    let tiny = |seed| BuildOptions { preset: Some("tiny".into()), seed, ..Default::default() };
    let (a, b) = (build_dataset("quadratic", &tiny(1)).unwrap(), build_dataset("hyperclean", &tiny(2)).unwrap());
    let dir = tmp_dir("replace");
    // A fresh directory and an existing empty one are written; nothing is left beside them.
    write_dir(a.as_ref(), &dir, false).unwrap();
    assert_eq!(load_dir(&dir).unwrap().generator, "quadratic");
    assert!(leftovers(&dir).is_empty(), "{:?}", leftovers(&dir));
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::create_dir(&dir).unwrap();
    write_dir(a.as_ref(), &dir, false).unwrap();
    // A non-empty directory is refused, naming it, and left as it was.
    std::fs::write(dir.join("stale.npy"), b"old").unwrap();
    let err = write_dir(b.as_ref(), &dir, false).unwrap_err();
    assert!(matches!(&err, ExportError::TargetExists { path, .. } if path == &dir), "{err}");
    assert!(err.to_string().contains("not empty") && err.to_string().contains("force"), "{err}");
    assert_eq!(load_dir(&dir).unwrap().generator, "quadratic");
    assert!(dir.join("stale.npy").exists() && leftovers(&dir).is_empty());
    // With force the old directory is replaced whole: no stale file beside the new ones.
    write_dir(b.as_ref(), &dir, true).unwrap();
    assert_eq!(load_dir(&dir).unwrap().generator, "hyperclean");
    assert!(!dir.join("stale.npy").exists() && !dir.join("A_f.npy").exists());
    assert!(leftovers(&dir).is_empty(), "{:?}", leftovers(&dir));
    std::fs::remove_dir_all(&dir).unwrap();
    // A file in the way is not a directory, force or not.
    std::fs::write(&dir, b"file").unwrap();
    for force in [false, true] {
        let err = write_dir(a.as_ref(), &dir, force).unwrap_err();
        assert!(matches!(&err, ExportError::TargetExists { path, .. } if path == &dir), "{err}");
    }
    // An I/O error names the path: the parent is that file.
    let below = dir.join("sub");
    let err = write_dir(a.as_ref(), &below, false).unwrap_err();
    assert!(matches!(&err, ExportError::Io { path, .. } if path.starts_with(&dir)), "{err}");
    assert!(err.to_string().contains(&*dir.to_string_lossy()), "{err}");
    std::fs::remove_file(&dir).unwrap();
}

#[test]
fn libsvm_skips_a_utf8_bom_and_escapes_invisible_characters_in_errors() {
    // Windows editors open a UTF-8 file with a byte-order mark: it is not part of the label.
    let d = parse("\u{feff}0 1:1\n1 2:1\n", ReadOptions::default()).unwrap();
    assert_eq!(d.labels, vec![0.0, 1.0]);
    let d = parse("\u{feff}# a comment first\n2 1:1\n", ReadOptions::default()).unwrap();
    assert_eq!(d.labels, vec![2.0]);
    // Anywhere else it is data, and every invisible character is shown escaped.
    for (text, line, shown) in [
        ("1 1:1\n\u{feff}0 1:1\n", 2, "\\u{feff}"),
        ("1\u{a0}1:1\n", 1, "\\u{a0}"),
        ("\u{200b}1 1:1\n", 1, "\\u{200b}"),
        ("1 1:1\u{7}\n", 1, "\\u{7}"),
        ("1 x\u{1b}[31m:1\n", 1, "\\u{1b}"),
    ] {
        let (got, reason) = line_of(parse(text, ReadOptions::default()).unwrap_err());
        assert_eq!(got, line, "{text:?}: {reason}");
        assert!(reason.contains(shown), "{text:?}: {reason}");
        assert!(reason.chars().all(|c| !c.is_control() && c != '\u{feff}' && c != '\u{a0}' && c != '\u{200b}'));
    }
    // A UTF-16 file is named as such.
    let (_, reason) = line_of(read(&b"\xff\xfe1\x00 \x001\x00"[..], ReadOptions::default()).unwrap_err());
    assert!(reason.contains("UTF-16"), "{reason}");
}

#[test]
fn libsvm_data_remember_their_file_and_lines() {
    let path = std::env::temp_dir().join(format!("bilevel-io-origin-{}.libsvm", std::process::id()));
    std::fs::write(&path, "# c\n1 1:1\n\n-1 3:2\n").unwrap();
    let d = bilevel_data::libsvm::read_path(&path, ReadOptions::default()).unwrap();
    assert_eq!((d.origin.path.as_deref(), d.origin.lines.as_slice()), (Some(path.as_path()), &[2, 4][..]));
    assert_eq!(d.origin.first_index, 1);
    assert_eq!(d.origin.describe_row(1), format!("line 4 of {}", path.display()));
    // Equal data wherever they come from.
    assert_eq!(d, LibsvmData::new(d.x.clone(), d.labels.clone()));
    std::fs::remove_file(path).unwrap();
}

/// Runs `f` on a thread and waits at most 20 s for it: a read that blocks (a FIFO) fails the
/// test instead of hanging it.
fn within_seconds<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(f()));
    rx.recv_timeout(std::time::Duration::from_secs(20)).expect("finished in time, without blocking or reading forever")
}

#[test]
fn problem_directories_refuse_devices_fifos_and_oversized_manifests() {
    let dir = tmp_dir("devices");
    std::fs::create_dir_all(&dir).unwrap();
    let manifest = dir.join("manifest.json");
    // manifest.json a link to /dev/zero: read until memory ran out.
    std::os::unix::fs::symlink("/dev/zero", &manifest).unwrap();
    let d = dir.clone();
    let err = within_seconds(move || load_dir(&d).unwrap_err());
    assert!(matches!(&err, ExportError::Io { path, .. } if path == &manifest), "{err}");
    assert!(err.to_string().contains("not a regular file"), "{err}");
    std::fs::remove_file(&manifest).unwrap();
    // A FIFO: opening it blocked until a writer came.
    let made = std::process::Command::new("mkfifo").arg(&manifest).status().is_ok_and(|s| s.success());
    if made {
        let d = dir.clone();
        let err = within_seconds(move || load_dir(&d).unwrap_err());
        assert!(err.to_string().contains("not a regular file"), "{err}");
        std::fs::remove_file(&manifest).unwrap();
    }
    // Larger than any manifest (a sparse file): refused by its length, unread.
    let f = std::fs::File::create(&manifest).unwrap();
    f.set_len(bilevel_data::export::MAX_MANIFEST_BYTES + 1).unwrap();
    let err = load_dir(&dir).unwrap_err();
    assert!(matches!(&err, ExportError::TooLarge { path, .. } if path == &manifest), "{err}");
    // An array file that is a device.
    std::fs::write(
        &manifest,
        r#"{"generator": "quadratic", "arrays": [{"name": "A", "file": "A.npy", "shape": [1]}]}"#,
    )
    .unwrap();
    std::os::unix::fs::symlink("/dev/zero", dir.join("A.npy")).unwrap();
    let d = dir.clone();
    let err = within_seconds(move || load_dir(&d).unwrap_err());
    assert!(matches!(&err, ExportError::Io { path, .. } if path.ends_with("A.npy")), "{err}");
    let err = bilevel_data::export::read_array("A", &dir.join("A.npy")).unwrap_err();
    assert!(err.to_string().contains("not a regular file"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A `.npy` with a raw header text and format version (1: u16 length, 2: u32).
fn npy_raw(version: u8, header: &str, data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x93, b'N', b'U', b'M', b'P', b'Y', version, 0];
    if version == 1 {
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    }
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

#[test]
fn npy_headers_and_payloads_are_checked_before_allocating() {
    use bilevel_data::npy::{read_npy_sized, NpyError};
    let format_err = |bytes: &[u8], size: Option<u64>| match read_npy_sized("a", bytes, size) {
        Err(NpyError::Format(m)) => m,
        other => panic!("expected a format error, got {other:?}"),
    };
    // A format-2 header length of 4 GiB (npyz allocated it before reading a byte of it).
    let mut huge = b"\x93NUMPY\x02\x00".to_vec();
    huge.extend_from_slice(&u32::MAX.to_le_bytes());
    let msg = format_err(&huge, None);
    assert!(msg.contains("header declares 4294967295 bytes"), "{msg}");
    // A header longer than the file.
    let good = npy_bytes("<f8", "(2,)", &[0u8; 16]);
    let msg = format_err(&good[..40], Some(40));
    assert!(msg.contains("the file holds 40 bytes"), "{msg}");
    // Shapes whose product (or a stride's) overflows u64: npyz multiplied them unchecked.
    for shape in ["(4294967296, 4294967296)", "(0, 4294967296, 4294967296)", "[65536, 65536, 65536, 65536, 2]"] {
        let msg = format_err(&npy_bytes("<f8", shape, &[]), None);
        assert!(msg.contains("more than 2^64 values"), "{shape}: {msg}");
    }
    // Brackets nested deeper than any header's (the parser recursed once per level).
    let deep =
        format!("{{'descr': '<f8', 'fortran_order': False, 'shape': {}1{}, }}", "(".repeat(20000), ")".repeat(20000));
    let msg = format_err(&npy_raw(1, &deep, &[]), None);
    assert!(msg.contains("nests brackets"), "{msg}");
    // Data declared beyond the file's length: refused with both sizes, before reading them.
    let short = npy_bytes("<f8", "(1000000,)", &[0u8; 16]);
    let msg = format_err(&short, Some(short.len() as u64));
    assert!(msg.contains("8000000 bytes of data") && msg.contains("holds 16 bytes after its header"), "{msg}");
    // Declared data that cannot fit in memory (8 TiB): a typed error, whatever the stream holds.
    let big = npy_bytes("<f8", "(1099511627776,)", &[]);
    assert!(matches!(read_npy_sized("a", &big[..], None), Err(NpyError::TooLarge(_))));
    // Invisible characters in a dtype are shown escaped.
    let msg = format_err(&npy_bytes("<c8\u{200b}", "(1,)", &[0u8; 8]), None);
    assert!(!msg.contains('\u{200b}') && (msg.contains("\\u{200b}") || msg.contains("not an .npy file")), "{msg}");
    // Files written by numpy (and by us) still read, sized or not.
    let a = Array { name: "v".into(), shape: vec![2, 3], data: ArrayData::F64((0..6).map(f64::from).collect()) };
    let mut buf = Vec::new();
    write_npy(&a, &mut buf).unwrap();
    assert_eq!(read_npy_sized("v", &buf[..], Some(buf.len() as u64)).unwrap().0, a);
    // And through a directory, where the sizes come from the files.
    let dir = tmp_dir("short-npy");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("A.npy"), &short).unwrap();
    let err = bilevel_data::export::read_array("A", &dir.join("A.npy")).unwrap_err().to_string();
    assert!(err.contains("A.npy") && err.contains("after its header"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
