//! End-to-end tests of the `bilevel` binary.

use std::process::Command;

fn bilevel(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_bilevel")).args(args).output().expect("the binary runs")
}

#[test]
fn problems_lists_every_generator_with_presets() {
    let out = bilevel(&["problems"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for info in bilevel::data::catalog::catalog() {
        assert!(text.contains(info.name), "{} missing", info.name);
        assert!(text.contains(&info.presets.join(", ")));
    }
}

#[test]
fn export_writes_a_loadable_problem_directory() {
    let dir = std::env::temp_dir().join(format!("bilevel-cli-export-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = bilevel(&[
        "export",
        "--problem",
        "quadratic",
        "--preset",
        "tiny",
        "--kappa",
        "1e3",
        "--dx",
        "12",
        "--dy",
        "7",
        "--seed",
        "4",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let loaded = bilevel::data::export::load_dir(&dir).unwrap();
    let a_g = loaded.arrays.iter().find(|a| a.name == "A_g").unwrap();
    assert_eq!(a_g.shape, vec![7, 7]);
    assert_eq!(loaded.arrays.iter().find(|a| a.name == "B_g").unwrap().shape, vec![7, 12]);
    assert_eq!(loaded.parameters.get("seed").and_then(|s| s.as_u64()), Some(4));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_input_fails_cleanly_with_a_message() {
    for (args, needle) in [
        (&["export", "--problem", "nope", "--out", "/tmp/unused-bilevel"][..], "unknown problem"),
        (&["export", "--problem", "quadratic", "--kappa", "0.5", "--out", "/tmp/unused-bilevel"][..], "≥ 1"),
        (&["export", "--problem", "quadratic", "--dx", "0", "--out", "/tmp/unused-bilevel"][..], "--dx"),
        (&["export", "--problem", "quadratic", "--dx", "-3", "--out", "/tmp/unused-bilevel"][..], "-3"),
        (&["export", "--problem", "hyperclean", "--kappa", "10", "--out", "/tmp/unused-bilevel"][..], "kappa"),
        (&["export", "--problem", "quadratic", "--preset", "huge", "--out", "/tmp/unused-bilevel"][..], "huge"),
        (&["frobnicate"][..], "unrecognized subcommand"),
    ] {
        let out = bilevel(args);
        assert!(!out.status.success(), "{args:?} should fail");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: stderr `{err}` lacks `{needle}`");
        assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    }
}
