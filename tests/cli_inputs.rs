//! End-to-end tests of the `bilevel` binary on hostile inputs (issue 18): a LIBSVM file whose
//! one stray index asks for gigabytes, a problem directory whose manifest is a device, a BOM,
//! a ridge of 0, and `scaling --algos` names that would measure nothing.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bilevel(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bilevel")).args(args).output().expect("the binary runs")
}

/// Asserts a clean failure (exit status 1 or 2, no panic, no abort) whose stderr has every
/// `needle`; returns stderr.
fn fails_with(out: &Output, needles: &[&str]) -> String {
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(matches!(out.status.code(), Some(1) | Some(2)), "{:?}: {err}", out.status);
    assert!(!err.contains("panicked") && !err.contains("memory allocation"), "{err}");
    for needle in needles {
        assert!(err.contains(needle), "`{err}` lacks `{needle}`");
    }
    err
}

fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("bilevel-cli-inputs-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A valid three-class LIBSVM file (30 rows on lines 1..=30) followed by `tail`.
fn libsvm_file(dir: &Path, tail: &str) -> PathBuf {
    let mut text = String::new();
    for i in 0..30 {
        text += &format!("{} 1:{} 2:{} 3:{}\n", i % 3, (i * 7) % 11, (i * 5) % 13, i % 2);
    }
    let path = dir.join("data.libsvm");
    std::fs::write(&path, text + tail).unwrap();
    path
}

/// Whether `msg` holds a run of more than 20 digits (a float printed with `{}`).
fn has_long_number(msg: &str) -> bool {
    msg.split(|c: char| !c.is_ascii_digit()).any(|run| run.len() > 20)
}

#[test]
fn a_stray_huge_index_is_refused_with_its_line_not_an_allocator_abort() {
    let dir = scratch("wide");
    let file = libsvm_file(&dir, "2 4294967295:1.0\n");
    let f = file.to_str().unwrap();
    for problem in ["hyperclean", "logreg_per_class"] {
        let out = bilevel(&["solve", "--problem", problem, "--problem-file", f, "--max-iters", "1"]);
        let line = format!("line 31 of {f}");
        fails_with(&out, &[&line, "feature index 4294967295", "bytes"]);
    }
    // Index 1e8 under an 8 GB address-space limit (the issue's `ulimit -v 8000000`): the
    // limit counts as the memory available, so it is refused the same way.
    let file = libsvm_file(&dir, "2 100000000:1.0\n");
    let script = format!(
        "ulimit -v 8000000 && exec {} solve --problem hyperclean --problem-file {} --max-iters 1",
        env!("CARGO_BIN_EXE_bilevel"),
        file.display()
    );
    let out = Command::new("sh").arg("-c").arg(&script).output().unwrap();
    fails_with(&out, &["line 31", "feature index 100000000", "available"]);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_bom_opens_a_file_and_a_zero_ridge_is_refused_in_a_short_message() {
    let dir = scratch("bom");
    let file = libsvm_file(&dir, "");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, format!("\u{feff}{text}")).unwrap();
    let f = file.to_str().unwrap();
    let out = bilevel(&["solve", "--problem", "hyperclean", "--problem-file", f, "--max-iters", "1"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // --ridge 0 printed the bound f64::MIN_POSITIVE with 330 digits.
    let out = bilevel(&["solve", "--problem", "hyperclean", "--problem-file", f, "--ridge", "0"]);
    let err = fails_with(&out, &["ridge", "strongly convex"]);
    assert!(!has_long_number(&err), "{err}");
    // An invisible character elsewhere is shown escaped, with its line.
    std::fs::write(&file, format!("{text}1\u{a0}1:1\n")).unwrap();
    let out = bilevel(&["solve", "--problem", "hyperclean", "--problem-file", f]);
    fails_with(&out, &["line 31", "\\u{a0}"]);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_problem_directory_whose_manifest_is_a_device_is_refused_at_once() {
    let dir = scratch("zero");
    std::os::unix::fs::symlink("/dev/zero", dir.join("manifest.json")).unwrap();
    let start = std::time::Instant::now();
    let out = bilevel(&["hypergrad", "--problem-dir", dir.to_str().unwrap()]);
    fails_with(&out, &["manifest.json", "not a regular file"]);
    assert!(start.elapsed().as_secs() < 60, "refused without reading");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn scaling_refuses_algorithms_that_would_measure_nothing_before_writing() {
    let dir = scratch("scaling");
    let out_dir = dir.join("report");
    std::fs::create_dir_all(out_dir.join("plots")).unwrap();
    std::fs::write(out_dir.join("report.md"), "earlier").unwrap();
    std::fs::write(out_dir.join("plots/earlier.svg"), "<svg/>").unwrap();
    let o = out_dir.to_str().unwrap();
    let out = bilevel(&["scaling", "--test-size", "--algos", "nosuch", "--out", o]);
    fails_with(&out, &["unknown algorithm `nosuch`", "amigo-cg"]);
    let out = bilevel(&["scaling", "--test-size", "--only", "cg-sqrt-kappa", "--algos", "stocbio", "--out", o]);
    fails_with(&out, &["no selected claim", "stocbio-grad-g-eps"]);
    assert_eq!(std::fs::read_to_string(out_dir.join("report.md")).unwrap(), "earlier");
    assert!(out_dir.join("plots/earlier.svg").exists() && !out_dir.join("points.json").exists());
    std::fs::remove_dir_all(dir).unwrap();
}
