//! Faults and bad input (issue 18): runs that must stop when asked, outputs that must not be
//! lost or faked, flags that must not be silently ignored. Each test runs the binary.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn bilevel(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bilevel")).args(args).output().expect("the binary runs")
}

fn words(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

/// Runs `line` + `tail` and asserts a clean failure (exit 1 or 2, no panic) whose stderr holds
/// `needle`.
fn fails_with(line: &str, tail: &[&str], needle: &str) -> String {
    let args = [words(line), tail.to_vec()].concat();
    let out = bilevel(&args);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(matches!(out.status.code(), Some(1) | Some(2)), "{line}: {:?} {err}", out.status);
    assert!(err.contains(needle), "{line}: `{err}` lacks `{needle}`");
    assert!(!err.contains("panicked"), "{line} panicked: {err}");
    err
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("bilevel-faults-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn json_of(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Runs `args` to completion within `limit`, killing it past that (the test then fails).
fn run_within(args: &[&str], limit: Duration) -> (Output, Duration) {
    let start = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_bilevel"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            child.kill().unwrap();
            panic!("{args:?} still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    (child.wait_with_output().unwrap(), start.elapsed())
}

#[test]
fn the_time_limit_cuts_a_long_initialisation_and_a_long_step() {
    let dir = scratch("time");
    let json = dir.join("j.json");
    let j = json.to_str().unwrap();
    // BO-REP's refinement of 10^8 SGD steps (in its first step): cut at 1 s, the JSON written.
    let line = "solve --problem stochastic_quadratic --preset small --algo bo-rep --batch-size 4 --init-steps 100000000 --time-limit 1 --json";
    let (out, took) = run_within(&[words(line), vec![j]].concat(), Duration::from_secs(30));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(took < Duration::from_secs(15), "took {took:?}");
    let v = json_of(&json);
    assert_eq!(v["stop"], "TimeLimit", "{v}");
    assert!(v["failure"].as_str().unwrap().contains("step 1"), "{v}");
    // 10^8 inner steps in the first step (AID-GD), and SUSTAIN's 10^8-term truncation: the same.
    for line in [
        "solve --problem quadratic --preset small --algo aid-gd --inner-steps 100000000 --time-limit 1 --json",
        "solve --problem quadratic --preset small --algo sustain --lin-steps 100000000 --time-limit 1 --json",
    ] {
        let (out, took) = run_within(&[words(line), vec![j]].concat(), Duration::from_secs(30));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(took < Duration::from_secs(15), "{line}: took {took:?}");
        let v = json_of(&json);
        assert_eq!(v["stop"], "TimeLimit", "{line}: {v}");
        // A run cut inside its first step completed nothing: not a success.
        if v["iterations"] == 0 {
            assert_eq!(out.status.code(), Some(1), "{line}: {err}");
            assert!(v["failure"].as_str().unwrap().contains("step 1"), "{v}");
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn step_counts_that_cannot_finish_are_refused_with_the_figure_on_every_flag() {
    for flag in
        ["--inner-steps", "--lin-steps", "--fixed-steps", "--horizon", "--period", "--lower-steps", "--init-steps"]
    {
        for v in ["1e10", "10000000000", "4294967296"] {
            fails_with("solve --preset tiny", &[flag, v], "cannot finish in any reasonable time");
        }
        fails_with("solve --preset tiny", &[flag, "2.5"], "whole number");
    }
    fails_with("hypergrad --preset tiny --inner-steps 1e10", &[], "cannot finish");
    fails_with("hypergrad --preset tiny --lin-steps 1e10", &[], "cannot finish");
}

#[test]
fn sigterm_stops_the_run_and_writes_its_json_and_trace() {
    for signal in ["-TERM", "-HUP", "-INT"] {
        let dir = scratch(&format!("sig{signal}"));
        let (json, trace) = (dir.join("j.json"), dir.join("t.csv"));
        let child = Command::new(env!("CARGO_BIN_EXE_bilevel"))
            .args(words("solve --problem quadratic --preset small --max-iters 100000000 --divergence-growth inf"))
            .args(["--json", json.to_str().unwrap(), "--trace", trace.to_str().unwrap()])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let start = Instant::now();
        while std::fs::read_to_string(&trace).map_or(0, |s| s.lines().count()) < 20 {
            assert!(start.elapsed().as_secs() < 60, "no rows after 60 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(Command::new("kill").args([signal, &child.id().to_string()]).status().unwrap().success());
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{signal}: {err}");
        let v = json_of(&json);
        assert_eq!(v["stop"], "Interrupted", "{signal}: {v}");
        let rows = std::fs::read_to_string(&trace).unwrap().lines().count() as u64;
        assert_eq!(rows, v["iterations"].as_u64().unwrap() + 2, "{signal}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn a_single_sample_run_is_not_called_diverged_by_its_noise() {
    // BO-REP on one sample per oracle: its estimate is heavy-tailed, its iterates are not.
    for seed in 0..6 {
        let s = seed.to_string();
        let line = "solve --problem stochastic_quadratic --preset tiny --algo bo-rep --batch-size 1 --max-iters 2000 --eval-every 10 --sample-seed";
        let out = bilevel(&[words(line), vec![&s]].concat());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("Diverged"), "seed {seed}: {err}");
    }
    // A real divergence is still seen: the outer step far past 2/L_L.
    fails_with("solve --problem quadratic --preset tiny --algo aid-gd --max-iters 5000 --outer-step 1e3", &[], "");
}

#[test]
fn a_run_whose_loss_grew_is_not_a_success() {
    // BSGM on the equilibrium model with an outer step far too large: its training loss grows
    // while ‖G_α‖ stays bounded (the projection): exit 1 as NoProgress, not MaxIters.
    for line in [
        "solve --problem equilibrium --preset tiny --algo bsgm --outer-step 1e6 --max-iters 30",
        "solve --problem equilibrium --preset tiny --algo bsgm --outer-step 1e300 --no-projection --max-iters 30",
    ] {
        let out = bilevel(&words(line));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{line}: {err}");
        assert!(err.contains("NoProgress") || err.contains("Diverged"), "{line}: {err}");
    }
}

#[test]
fn targets_met_before_any_work_are_refused() {
    for t in ["1e308", "1", "2"] {
        fails_with("solve --preset tiny --target", &[t], "before any work");
    }
}

#[test]
fn two_outputs_on_one_file_or_an_output_on_an_input_are_refused() {
    let dir = scratch("same");
    let (a, link) = (dir.join("a.json"), dir.join("link.csv"));
    std::fs::write(&a, "keep me").unwrap();
    std::os::unix::fs::symlink(&a, &link).unwrap();
    let (a_s, link_s) = (a.to_str().unwrap(), link.to_str().unwrap());
    fails_with("solve --preset tiny --max-iters 2 --json", &[a_s, "--trace", a_s], "same file");
    fails_with("solve --preset tiny --max-iters 2 --json", &[a_s, "--trace", link_s], "same file");
    assert_eq!(std::fs::read_to_string(&a).unwrap(), "keep me", "nothing was truncated");
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/data/optdigits/optdigits.libsvm");
    fails_with("solve --problem hyperclean --max-iters 2 --problem-file", &[file, "--json", file], "input");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn flags_the_algorithm_does_not_read_are_refused_naming_who_reads_them() {
    let cases = [
        ("--algo ttsa --fixed-steps 3", "bsgm"),
        ("--algo bsa --average", "amigo-gd"),
        ("--algo sustain --horizon 5 --batch-size 4", "bsgm"),
        ("--algo adam-sustain --c3 2", "bsgm"),
        ("--algo bo-rep --neumann-decay --batch-size 4", "stocbio"),
        ("--algo ttsa --momentum-w 2", "sustain"),
        ("--algo sustain --adam-option 1", "adam-sustain"),
        ("--algo bsgm --horizon 5", "mini-batches"),
        ("--algo aid-gd --epsilon 0.1", "theory"),
        ("--algo itd --lin-steps 5", "--lin-steps"),
        ("--algo bsgm --inner-steps 5", "--inner-steps"),
        ("--algo sustain --adjoint-step 0.1", "--adjoint-step"),
        ("--algo amigo-cg --period 3", "bo-rep"),
        ("--sampling epochs", "--batch-size"),
    ];
    for (flags, who) in cases {
        let line = format!("solve --problem stochastic_quadratic --preset tiny --max-iters 2 {flags}");
        fails_with(&line, &[], who);
    }
    // The fixed-point problem: the bilevel algorithms' flags.
    fails_with("solve --problem equilibrium --preset tiny --algo bsgm --inner-steps 3", &[], "--inner-steps");
    // The file problems' own options.
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/data/optdigits/optdigits.libsvm");
    fails_with("solve --problem logreg_per_class --corruption 0.2 --problem-file", &[file], "hyperclean");
    fails_with("solve --problem logreg_per_class --ridge 0.1 --problem-file", &[file], "hyperclean");
    fails_with("solve --problem hyperclean --reg-scale 2 --problem-file", &[file], "logreg_per_class");
}

#[test]
fn a_strong_convexity_above_the_smoothness_is_refused_for_every_algorithm() {
    for algo in ["stocbio", "sustain", "bsa", "amigo-cg", "bsgm"] {
        fails_with("solve --preset tiny --mu-g 100 --l-g 1 --algo", &[algo], "exceeds L_g");
    }
}

#[test]
fn a_batch_beyond_the_memory_limit_is_refused_before_allocating() {
    // Under an address-space limit of 1.5 GB (as `ulimit -v` sets it): a batch of 10^8 indices
    // per oracle needs more, counted over every buffer of the run.
    for algo in ["stocbio", "amigo-gd", "sustain", "bsa", "ttsa", "adam-sustain"] {
        let bin = env!("CARGO_BIN_EXE_bilevel");
        let cmd = format!(
            "ulimit -v 1500000; exec {bin} solve --problem stochastic_quadratic --preset tiny --algo {algo} --batch-size 100000000 --max-iters 2"
        );
        let out = Command::new("sh").args(["-c", &cmd]).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{algo}: {:?} {err}", out.status);
        assert!(err.contains("available"), "{algo}: {err}");
    }
}

#[test]
fn ctrl_c_during_the_constants_estimate_leaves_no_empty_outputs() {
    // meta_learning's default preset estimates L_L at x0 before the run (d_y = 1000): a
    // signal then stops the estimate itself, and the outputs created for the run are removed.
    let dir = scratch("estimate");
    let (json, trace) = (dir.join("j.json"), dir.join("t.csv"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_bilevel"))
        .args(words("solve --problem meta_learning --algo amigo-gd --max-iters 5"))
        .args(["--json", json.to_str().unwrap(), "--trace", trace.to_str().unwrap()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the estimate's announcement on stderr, then interrupt.
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut first = String::new();
    std::io::BufRead::read_line(&mut stderr, &mut first).unwrap();
    assert!(first.contains("estimating L_L"), "{first}");
    assert!(Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap().success());
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(1), "{rest}");
    // Interrupted inside the estimate (before the run) or, on a fast machine, in the run.
    if rest.contains("before the first step") {
        assert!(!json.exists() && !trace.exists(), "empty outputs left behind: {rest}");
    } else {
        assert!(rest.contains("interrupted") && json_of(&json)["stop"] == "Interrupted", "{rest}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
