//! End-to-end tests of the `bilevel` binary.

use std::process::Command;

fn bilevel(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_bilevel")).args(args).output().expect("the binary runs")
}

/// Runs `bilevel` with the words of `line` followed by `tail` (paths, kept whole), and asserts
/// it succeeded.
fn bilevel_ok(line: &str, tail: &[&str]) -> std::process::Output {
    let mut args: Vec<&str> = line.split_whitespace().collect();
    args.extend_from_slice(tail);
    let out = bilevel(&args);
    assert!(out.status.success(), "{line}: {}", String::from_utf8_lossy(&out.stderr));
    out
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
    bilevel_ok(
        "export --problem quadratic --preset tiny --kappa 1e3 --dx 12 --dy 7 --seed 4 --out",
        &[dir.to_str().unwrap()],
    );
    let loaded = bilevel::data::export::load_dir(&dir).unwrap();
    let a_g = loaded.arrays.iter().find(|a| a.name == "A_g").unwrap();
    assert_eq!(a_g.shape, vec![7, 7]);
    assert_eq!(loaded.arrays.iter().find(|a| a.name == "B_g").unwrap().shape, vec![7, 12]);
    assert_eq!(loaded.parameters.get("seed").and_then(|s| s.as_u64()), Some(4));
    std::fs::remove_dir_all(&dir).unwrap();
    // The stochastic quadratic in benchopt's dense layout: one d_y×d_y matrix per sample.
    bilevel_ok("export --problem stochastic_quadratic --preset tiny --layout dense --out", &[dir.to_str().unwrap()]);
    let loaded = bilevel::data::export::load_dir(&dir).unwrap();
    assert_eq!(loaded.arrays.iter().find(|a| a.name == "g_hess_y").unwrap().shape, vec![32, 8, 8]);
    assert_eq!(loaded.parameters.get("layout").and_then(|s| s.as_str()), Some("dense"));
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
        (&["export", "--problem", "quadratic", "--layout", "dense", "--out", "/tmp/unused-bilevel"][..], "layout"),
        (&["export", "--problem", "hyperclean", "--layout", "dense", "--out", "/tmp/unused-bilevel"][..], "layout"),
        (&["frobnicate"][..], "unrecognized subcommand"),
    ] {
        let out = bilevel(args);
        assert!(!out.status.success(), "{args:?} should fail");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: stderr `{err}` lacks `{needle}`");
        assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    }
}

fn json_of(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn hypergrad_reports_a_converged_estimate_as_json() {
    let json = std::env::temp_dir().join(format!("bilevel-cli-hg-{}.json", std::process::id()));
    bilevel_ok("hypergrad --problem quadratic --preset tiny --kappa 100 --method aid-cg --inner-steps 5000 --lin-steps 40 --seed 1 --json", &[json.to_str().unwrap()]);
    let v = json_of(&json);
    assert_eq!(v["problem"], "quadratic");
    assert_eq!(v["method"], "aid-cg");
    assert!(v["rel_error"].as_f64().unwrap() < 1e-10, "{v}");
    assert_eq!(v["oracle_calls"]["grad_g"], 5000);
    // CG from v = 0: one HVP per iteration and none for the initial residual (r₀ = b); at most the
    // 40 asked for (it stops earlier once the residual reaches the rounding floor).
    let iterations = v["iterations"].as_u64().unwrap();
    assert!(iterations <= 40);
    assert_eq!(v["oracle_calls"]["hvp"].as_u64(), Some(iterations));
    assert_eq!(v["oracle_calls"]["cross"], 1);
    assert!(v["seconds"].as_f64().unwrap() >= 0.0);
    // Few steps give a visibly worse estimate: the error is measured, not assumed.
    bilevel_ok(
        "hypergrad --preset tiny --kappa 100 --method aid-gd --inner-steps 3 --lin-steps 3 --json",
        &[json.to_str().unwrap()],
    );
    assert!(json_of(&json)["rel_error"].as_f64().unwrap() > 1e-3);
    std::fs::remove_file(&json).unwrap();
}

#[test]
fn hypergrad_loads_a_problem_directory() {
    let dir = std::env::temp_dir().join(format!("bilevel-cli-pd-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let d = dir.to_str().unwrap();
    assert!(bilevel(&["export", "--problem", "quadratic", "--preset", "tiny", "--out", d]).status.success());
    let json = dir.join("result.json");
    let out = bilevel(&["hypergrad", "--problem-dir", d, "--method", "exact", "--json", json.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(json_of(&json)["rel_error"].as_f64(), Some(0.0));
    // An x0.npy in the directory is the starting point; a wrong length is refused.
    let x0 = bilevel::data::Array::f64("x0", vec![20], (0..20).map(|i| i as f64 / 10.0).collect());
    let write_x0 = |a: &bilevel::data::Array| {
        bilevel::data::npy::write_npy(a, std::fs::File::create(dir.join("x0.npy")).unwrap()).unwrap()
    };
    write_x0(&x0);
    let out = bilevel(&["hypergrad", "--problem-dir", d, "--method", "exact", "--json", json.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    write_x0(&bilevel::data::Array::f64("x0", vec![3], vec![0.0; 3]));
    let out = bilevel(&["hypergrad", "--problem-dir", d]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("x0"));
    std::fs::remove_file(dir.join("A_g.npy")).unwrap();
    let out = bilevel(&["hypergrad", "--problem-dir", d]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("A_g.npy"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn hypergrad_rejects_bad_flags() {
    for (args, needle) in [
        (&["hypergrad", "--method", "magic"][..], "magic"),
        (&["hypergrad", "--lin-steps", "0"][..], "--lin-steps"),
        (&["hypergrad", "--problem", "hyperclean"][..], "dense Newton reference is for d_y <= 1000"),
        (&["hypergrad", "--problem", "equilibrium", "--preset", "tiny"][..], "fixed-point"),
        (&["solve", "--problem", "text", "--preset", "tiny"][..], "data set"),
        (&["hypergrad", "--kappa", "0.5"][..], "≥ 1"),
    ] {
        let out = bilevel(args);
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: `{err}` lacks `{needle}`");
        assert!(!err.contains("panicked"));
    }
}

#[test]
fn solve_reaches_the_target_and_writes_json_and_trace() {
    let dir = std::env::temp_dir().join(format!("bilevel-cli-solve-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (json, trace) = (dir.join("s.json"), dir.join("t.csv"));
    let solve = "solve --problem quadratic --preset tiny --kappa 100 --algo amigo-cg --max-iters 2000 --target 1e-6";
    bilevel_ok(solve, &["--trace", trace.to_str().unwrap(), "--json", json.to_str().unwrap()]);
    let v = json_of(&json);
    assert_eq!(
        (v["problem"].as_str(), v["algo"].as_str(), v["stop"].as_str()),
        (Some("quadratic"), Some("amigo-cg"), Some("Target"))
    );
    assert!(v["rel_error"].as_f64().unwrap() <= 1e-6);
    let iters = v["iterations"].as_u64().unwrap();
    assert_eq!(v["oracle_calls"]["cross"].as_u64(), Some(iters));
    let csv = std::fs::read_to_string(&trace).unwrap();
    assert_eq!(csv.lines().count() as u64, iters + 2, "header + row 0 + one row per iteration");
    // A too-large outer step is refused before anything runs.
    let out = bilevel(&["solve", "--preset", "tiny", "--outer-step", "100", "--max-iters", "3"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--outer-step must be in (0, 2/L_L)"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn solve_runs_on_every_bilevel_problem_of_the_catalogue_with_its_metrics() {
    // The quadratics with the experiments' steps from their exact constants; the data problems
    // (no closed form, curvature changing with x) with an outer step set by hand, measured
    // against the Newton reference and by their own metrics.
    for (problem, extra, metric) in [
        ("quadratic", &[][..], "rel_error"),
        ("stochastic_quadratic", &[][..], "rel_error"),
        ("meta_learning", &[][..], "val_loss"),
        ("logreg_text", &["--outer-step", "1"][..], "val_accuracy"),
        ("logreg_binary", &["--outer-step", "1"][..], "val_accuracy"),
        ("logreg_per_class", &["--l-outer", "10"][..], "val_accuracy"),
        ("hyperclean", &[][..], "corrupted_detection"),
        ("distillation", &["--outer-step", "1"][..], "val_accuracy"),
    ] {
        let mut args = vec!["solve", "--problem", problem, "--preset", "tiny", "--max-iters", "50"];
        args.extend_from_slice(extra);
        let out = bilevel(&args);
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "{problem}: {stderr}");
        assert!(stdout.contains(metric) && stdout.contains("‖∇L‖"), "{problem}: {stdout}");
        assert!(stderr.contains("parameters (default rule)"), "{problem}: the rule that ran is named: {stderr}");
    }
    // hypergrad on a problem without a closed form measures against the Newton reference.
    let out = bilevel_ok("hypergrad --problem logreg_binary --preset tiny --inner-steps 2000 --lin-steps 200", &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("against the newton hypergradient"), "{stdout}");
    // A data set is refused with the reason; the fixed-point problem runs with BSGM only.
    let out = bilevel(&["solve", "--problem", "text", "--preset", "tiny"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("data set"));
    let out = bilevel(&["solve", "--problem", "equilibrium", "--preset", "tiny"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("fixed-point problem") && err.contains("--algo bsgm"), "{err}");
}

#[test]
fn solve_runs_bsgm_on_the_equilibrium_model_with_its_metrics_json_and_trace() {
    let (dir, json, trace) = scratch("equilibrium");
    let line = "solve --problem equilibrium --preset tiny --algo bsgm --max-iters 20";
    let out = bilevel_ok(line, &["--json", json.to_str().unwrap(), "--trace", trace.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("equilibrium: bsgm, 20 iterations (MaxIters)") && stdout.contains("train_loss"),
        "{stdout}"
    );
    let v = json_of(&json);
    assert_eq!(
        (v["problem"].as_str(), v["algo"].as_str(), v["iterations"].as_u64()),
        (Some("equilibrium"), Some("bsgm"), Some(20))
    );
    // One ∂λΦᵀ product and one (∇wE, ∇λE) pair per iteration; t_s maps and as many ∂wΦᵀ products.
    let calls = &v["oracle_calls"];
    assert_eq!(
        (calls["cross"].as_u64(), calls["grad_x_f"].as_u64(), calls["grad_y_f"].as_u64()),
        (Some(20), Some(20), Some(20))
    );
    assert_eq!(calls["grad_g"], calls["hvp"]);
    let csv = std::fs::read_to_string(&trace).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 22, "header + row 0 + one row per iteration");
    assert!(
        lines[0].ends_with("value,train_loss,train_accuracy,grad_mapping,grad_norm_exact,test_loss,test_accuracy"),
        "{}",
        lines[0]
    );
    let loss = |line: &str| line.split(',').nth(12).unwrap().parse::<f64>().unwrap();
    assert!(loss(lines[21]) < loss(lines[1]), "the training loss falls: {} -> {}", lines[1], lines[21]);
    assert!(v["metrics"]["train_loss"].as_f64().unwrap() < loss(lines[1]));
    // The default rule's schedule is §7.1's fixed t_s = k_s = 2, projected onto Λ.
    assert_eq!(v["schedule"]["kind"].as_str(), Some("fixed_paper001_sec7_1"), "{v}");
    assert_eq!(v["schedule"]["steps"].as_u64(), Some(2));
    assert!(v["constraint_set"].as_str().is_some_and(|c| c.contains("|A|_2 <= 0.5")), "{v}");
    assert_eq!(calls["grad_g"].as_u64(), Some(40));
    // Another algorithm, per-oracle mini-batches, or a target are refused, naming what runs.
    fails_with(&["solve", "--problem", "equilibrium", "--preset", "tiny", "--algo", "amigo-cg"], "--algo bsgm");
    fails_with(
        &["solve", "--problem", "equilibrium", "--preset", "tiny", "--algo", "bsgm", "--batch-size-hvp", "2"],
        "--batch-size only",
    );
    fails_with(
        &["solve", "--problem", "equilibrium", "--preset", "tiny", "--algo", "bsgm", "--target", "1e-3"],
        "--target",
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn solve_runs_batched_bsgm_on_the_equilibrium_model_with_fixed_steps() {
    let (dir, json, trace) = scratch("equilibrium-batched");
    let line = "solve --problem equilibrium --preset tiny --algo bsgm --batch-size 4 --fixed-steps 2 --max-iters 30 --sample-seed 5";
    let out = bilevel_ok(line, &["--json", json.to_str().unwrap(), "--trace", trace.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("t_s = k_s = 2 (fixed, paper 001 §7.1")
            && stderr.contains("J, examples per outer step")
            && stderr.contains("= 4   [user: --batch-size]"),
        "{stderr}"
    );
    let v = json_of(&json);
    assert_eq!((v["iterations"].as_u64(), v["batch_size"].as_u64()), (Some(30), Some(4)), "{v}");
    assert_eq!(v["schedule"]["kind"].as_str(), Some("fixed_paper001_sec7_1"));
    // Per step: 2 maps and 2 ∂wΦᵀ products, one ∂λΦᵀ product, one (∇wE, ∇λE) pair.
    let calls = &v["oracle_calls"];
    assert_eq!(
        (calls["grad_g"].as_u64(), calls["hvp"].as_u64(), calls["cross"].as_u64(), calls["grad_x_f"].as_u64()),
        (Some(60), Some(60), Some(30), Some(30))
    );
    let csv = std::fs::read_to_string(&trace).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 32, "header + row 0 + one row per iteration");
    let loss = |line: &str| line.split(',').nth(12).unwrap().parse::<f64>().unwrap();
    assert!(loss(lines[31]) < 0.5 * loss(lines[1]), "the training loss falls: {} -> {}", lines[1], lines[31]);
    // Theorem 17's schedule by --c3, without projection: named in the JSON.
    let line =
        "solve --problem equilibrium --preset tiny --algo bsgm --batch-size 4 --c3 2 --no-projection --max-iters 3";
    bilevel_ok(line, &["--json", json.to_str().unwrap()]);
    let v = json_of(&json);
    assert_eq!((v["schedule"]["kind"].as_str(), v["constraint_set"].as_str()), (Some("theorem17_log"), None), "{v}");
    // Invalid combinations are typed errors: --fixed-steps with --c3 or --horizon (a usage error,
    // exit 2), under --steps theory, a batch larger than the data, --no-projection on a problem
    // without a constraint set.
    let eq = ["solve", "--problem", "equilibrium", "--preset", "tiny", "--algo", "bsgm"];
    for (extra, needle) in [
        (&["--fixed-steps", "2", "--c3", "1"][..], "cannot be used with"),
        (&["--fixed-steps", "2", "--horizon", "5"][..], "cannot be used with"),
    ] {
        let args: Vec<&str> = eq.iter().chain(extra).copied().collect();
        let out = bilevel(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        fails_with(&args, needle);
    }
    for (extra, needle) in
        [(&["--fixed-steps", "2", "--steps", "theory"][..], "Theorem 17"), (&["--fixed-steps", "0"][..], "0")]
    {
        let args: Vec<&str> = eq.iter().chain(extra).copied().collect();
        fails_with(&args, needle);
    }
    fails_with(
        &["solve", "--problem", "quadratic", "--preset", "tiny", "--algo", "bsgm", "--no-projection"],
        "constraint set",
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A fresh temporary directory for one test, and the `--json` and `--trace` paths in it.
fn scratch(name: &str) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("bilevel-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (json, trace) = (dir.join("s.json"), dir.join("t.csv"));
    (dir, json, trace)
}

/// Runs `bilevel` and asserts it fails cleanly (exit 1 or clap's 2, no panic) with `needle` in
/// its stderr; returns stderr.
fn fails_with(args: &[&str], needle: &str) -> String {
    let out = bilevel(args);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(matches!(out.status.code(), Some(1) | Some(2)), "{args:?}: {:?} {err}", out.status);
    assert!(err.contains(needle), "{args:?}: `{err}` lacks `{needle}`");
    assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    err
}

#[test]
fn flag_values_that_mean_nothing_are_refused() {
    for (args, needle) in [
        (&["solve", "--preset", "tiny", "--target", "NaN"][..], "--target"),
        (&["solve", "--preset", "tiny", "--target", "inf"][..], "--target"),
        (&["solve", "--preset", "tiny", "--target", "-1"][..], "--target"),
        (&["solve", "--preset", "tiny", "--time-limit", "NaN"][..], "--time-limit"),
        (&["solve", "--preset", "tiny", "--time-limit", "-5"][..], "--time-limit"),
        (&["solve", "--preset", "tiny", "--outer-step", "0"][..], "--outer-step"),
        (&["solve", "--preset", "tiny", "--l-g", "nan"][..], "--l-g"),
        (&["solve", "--preset", "tiny", "--divergence-growth", "1"][..], "--divergence-growth"),
        (&["solve", "--kappa", "-1"][..], "κ must be a finite number ≥ 1, got -1"),
        (&["hypergrad", "--problem-dir", "/tmp", "--problem", "logreg_binary"][..], "cannot be used with"),
        (&["hypergrad", "--preset", "tiny", "--method", "itd", "--inner-steps", "0"][..], "--inner-steps must be >= 1"),
        (&["solve", "--problem", "meta_learning", "--preset", "tiny", "--target", "1e-3"][..], "L*"),
    ] {
        fails_with(args, needle);
    }
}

#[test]
fn impossible_sizes_are_refused_with_the_bytes_before_allocating() {
    // ITD's trajectory of T = 10^8 steps of d_y = 10^3 (800 GB).
    let args = ["hypergrad", "--dy", "1000", "--method", "itd", "--inner-steps", "100000000"];
    let err = fails_with(&args, "ITD's trajectory");
    assert!(err.contains("bytes") && err.contains("available"), "{err}");
    // Step counts past 10^8 are refused as counts, with the figure.
    for steps in ["1844674407370955162", "100000000000"] {
        let args = ["hypergrad", "--preset", "tiny", "--method", "itd", "--inner-steps", steps];
        fails_with(&args, "cannot finish in any reasonable time");
    }
    // Matrices that cannot fit are refused before generating (this was an abort inside faer).
    for args in [
        &["export", "--problem", "quadratic", "--dx", "10000000000", "--out", "/tmp/unused-bilevel"][..],
        &["solve", "--dy", "4294967296"],
    ] {
        let err = fails_with(args, "needs");
        assert!(err.contains("available") && err.contains("--dx/--dy"), "{err}");
    }
}

#[test]
fn hypergrad_json_leaves_out_the_steps_a_method_does_not_use() {
    let json = std::env::temp_dir().join(format!("bilevel-cli-itd-{}.json", std::process::id()));
    bilevel_ok("hypergrad --preset tiny --method itd --inner-steps 5 --json", &[json.to_str().unwrap()]);
    let v = json_of(&json);
    assert_eq!((v["inner_steps"].as_u64(), v["lin_steps"].is_null()), (Some(5), true), "{v}");
    // Every parameter used, with its source; none the method does not use.
    let params = v["parameters"].as_array().unwrap();
    let names: Vec<&str> = params.iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["l_g", "inner_steps", "inner_step"], "{v}");
    assert!(params[1]["source"].to_string().contains("--inner-steps"), "{v}");
    bilevel_ok("hypergrad --preset tiny --method aid-gd --json", &[json.to_str().unwrap()]);
    let v = json_of(&json);
    let params = v["parameters"].as_array().unwrap();
    let find = |n: &str| params.iter().find(|p| p["name"] == n).unwrap_or_else(|| panic!("{n}: {v}")).clone();
    assert!(find("adjoint_steps")["source"].to_string().contains("default"), "{v}");
    assert!(find("adjoint_step")["value"].as_f64().unwrap() > 0.0, "{v}");
    std::fs::remove_file(&json).unwrap();
}

#[test]
fn a_diverging_run_fails_and_keeps_its_trace_and_summary() {
    // The meta-learning instance with an outer step far beyond 1/L_L (an L_L 10⁷ times too
    // small by hand) diverges; such a run used to exit 0 (and a few steps more gave NaN or a
    // panic at a Cholesky `expect`).
    let (dir, json, trace) = scratch("div");
    for algo in ["amigo-cg", "amigo-gd"] {
        let args = vec![
            "solve",
            "--problem",
            "meta_learning",
            "--preset",
            "tiny",
            "--algo",
            algo,
            "--max-iters",
            "2000",
            "--l-outer",
            "1e-7",
        ];
        let tail = ["--json", json.to_str().unwrap(), "--trace", trace.to_str().unwrap()];
        // The first steps throw x far (the validation loss at the inner iterate reaches 1e53)
        // into a flat region where ‖∇L‖ ~ 1e-31 with L(x) above its start: either the growth
        // test sees it (Diverged) or the run ends as NoProgress — both exit 1, never MaxIters.
        let err = fails_with(&[&args[..], &tail[..]].concat(), "the run stopped");
        assert!(err.contains("written"), "{err}");
        let v = json_of(&json);
        let stop = v["stop"].as_str().unwrap();
        assert!(stop == "Diverged" || stop == "NoProgress", "{algo}: {v}");
        assert!(v["failure"].as_str().is_some_and(|f| f.contains("step") || f.contains("above its start")), "{v}");
        let iters = v["iterations"].as_u64().unwrap();
        assert!(iters <= 2000, "{algo}: {iters}");
        let csv = std::fs::read_to_string(&trace).unwrap();
        assert_eq!(csv.lines().count() as u64, iters + 2, "{algo}: header + rows 0..=k");
        // No NaN among the driver's measurements (a problem metric that cannot be measured far
        // from the optimum, as meta-learning's val_loss_at_optimum, may be NaN).
        let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
        let core: Vec<usize> = ["rel_error", "grad_norm", "y_error", "value"]
            .iter()
            .filter_map(|c| header.iter().position(|h| h == c))
            .collect();
        for line in csv.lines().skip(1) {
            let cells: Vec<&str> = line.split(',').collect();
            assert!(core.iter().all(|&i| cells[i] != "NaN"), "{algo}: NaN in {line}");
        }
    }
    // amigo-gd with --outer-step 0.7 used to panic at a Cholesky `expect`: now a clean exit.
    let out = bilevel(&[
        "solve",
        "--problem",
        "meta_learning",
        "--preset",
        "tiny",
        "--algo",
        "amigo-gd",
        "--outer-step",
        "0.7",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(matches!(out.status.code(), Some(0) | Some(1)) && !err.contains("panicked"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn outputs_that_cannot_be_written_fail_before_the_run_and_independently() {
    let dir = std::env::temp_dir().join(format!("bilevel-cli-out-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let missing = dir.join("no/such/dir/s.json");
    let long = ["solve", "--preset", "tiny", "--max-iters", "100000000"];
    // Fails at once (a run of 10^8 iterations would take minutes), naming the flag and the path.
    let t = std::time::Instant::now();
    let err = fails_with(&[&long[..], &["--json", missing.to_str().unwrap()]].concat(), "--json");
    assert!(err.contains(missing.to_str().unwrap()) && t.elapsed().as_secs() < 30, "{err}");
    fails_with(&[&long[..], &["--trace", dir.to_str().unwrap()]].concat(), "--trace");
    // A full disk (/dev/full) is found when the trace's header is written, before the run; the
    // JSON file created a moment before is not left behind empty.
    if std::path::Path::new("/dev/full").exists() {
        let json = dir.join("s.json");
        let args = ["solve", "--preset", "tiny", "--max-iters", "20", "--trace", "/dev/full"];
        fails_with(&[&args[..], &["--json", json.to_str().unwrap()]].concat(), "--trace /dev/full");
        assert!(!json.exists());
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn ctrl_c_stops_the_run_and_keeps_its_trace_and_summary() {
    let (dir, json, trace) = scratch("int");
    let child = Command::new(env!("CARGO_BIN_EXE_bilevel"))
        .args([
            "solve",
            "--preset",
            "tiny",
            "--algo",
            "aid-gd",
            "--max-iters",
            "100000000",
            "--divergence-growth",
            "inf",
        ])
        .args(["--json", json.to_str().unwrap(), "--trace", trace.to_str().unwrap()])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for rows, then interrupt.
    let start = std::time::Instant::now();
    while std::fs::read_to_string(&trace).map_or(0, |s| s.lines().count()) < 50 {
        assert!(start.elapsed().as_secs() < 60, "no rows after 60 s");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let kill = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("interrupted") && !err.contains("panicked"), "{err}");
    let v = json_of(&json);
    assert_eq!(v["stop"], "Interrupted");
    let csv = std::fs::read_to_string(&trace).unwrap();
    assert_eq!(csv.lines().count() as u64, v["iterations"].as_u64().unwrap() + 2);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_outer_step_by_hand_skips_the_outer_constant() {
    let out = bilevel_ok("solve --problem meta_learning --preset tiny --max-iters 5 --outer-step 0.1", &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("[user: --outer-step]") && !err.contains("estimating L_L"), "{err}");
    let out = bilevel_ok("solve --problem meta_learning --preset tiny --max-iters 5", &[]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("estimating L_L"));
}

#[test]
fn export_refuses_a_non_empty_directory_unless_forced_and_loads_check_what_they_load() {
    let dir = std::env::temp_dir().join(format!("bilevel-cli-force-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let d = dir.to_str().unwrap();
    bilevel_ok("export --problem quadratic --preset tiny --out", &[d]);
    std::fs::write(dir.join("stale.npy"), b"old").unwrap();
    fails_with(&["export", "--problem", "quadratic", "--preset", "tiny", "--out", d], "--force");
    bilevel_ok("export --problem quadratic --preset tiny --force --out", &[d]);
    assert!(!dir.join("stale.npy").exists(), "replaced whole: no stale file beside the new ones");
    // A numerically singular A_f is refused with its figure, not run against a meaningless L*.
    let a_f = bilevel::data::export::load_dir(&dir).unwrap().arrays.into_iter().find(|a| a.name == "A_f").unwrap();
    let n = a_f.shape[0];
    let singular =
        bilevel::data::Array::f64("A_f", vec![n, n], (0..n * n).map(|k| if k == 0 { 1.0 } else { 0.0 }).collect());
    bilevel::data::npy::write_npy(&singular, std::fs::File::create(dir.join("A_f.npy")).unwrap()).unwrap();
    fails_with(&["solve", "--problem-dir", d, "--max-iters", "3"], "A_f");
    // A directory exported by another generator is not read as a quadratic.
    bilevel_ok("export --problem logreg_binary --preset tiny --force --out", &[d]);
    fails_with(&["hypergrad", "--problem-dir", d], "logreg_binary");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_users_libsvm_file_runs_hyper_cleaning_and_logistic_hpo() {
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/data/optdigits/optdigits.libsvm");
    for (problem, step, metric) in
        [("hyperclean", "10", "corrupted_detection"), ("logreg_per_class", "1", "val_accuracy")]
    {
        let (dir, json, _) = scratch(problem);
        let line = format!("solve --problem {problem} --max-iters 20 --outer-step {step} --problem-file");
        bilevel_ok(&line, &[file, "--json", json.to_str().unwrap()]);
        let v = json_of(&json);
        let accuracy = v["metrics"]["test_accuracy"].as_f64().unwrap();
        assert!(accuracy > 0.5 && v["metrics"][metric].is_number(), "{problem}: {v}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
    fails_with(&["solve", "--problem", "quadratic", "--problem-file", file], "--problem-file runs");
    fails_with(&["solve", "--problem", "hyperclean", "--problem-file", "/nonexistent.libsvm"], "/nonexistent.libsvm");
}

#[test]
fn eval_every_leaves_rows_unmeasured_but_not_the_last_one_of_a_budget_stop() {
    let (dir, json, trace) = scratch("eval");
    let line = "solve --preset tiny --kappa 100 --max-iters 1000 --max-oracle-calls 500 --eval-every 7";
    bilevel_ok(line, &["--trace", trace.to_str().unwrap(), "--json", json.to_str().unwrap()]);
    let csv = std::fs::read_to_string(&trace).unwrap();
    let rows: Vec<Vec<&str>> = csv.lines().skip(1).map(|l| l.split(',').collect()).collect();
    let rel = |r: &Vec<&str>| r[8].to_string();
    assert!(rows.len() > 8 && rows.len() < 1000, "{} rows", rows.len());
    for (k, r) in rows.iter().enumerate().take(rows.len() - 1) {
        assert_eq!(rel(r).is_empty(), k % 7 != 0, "row {k}: {r:?}");
    }
    // The budget stop's row is measured in the streamed trace too, and equals the summary.
    let last = rows.last().unwrap();
    assert!(!rel(last).is_empty());
    assert_eq!(json_of(&json)["stop"], "OracleBudget");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn solve_reports_the_point_each_theorem_bounds() {
    let (dir, json, trace) = scratch("output");
    let base = "solve --problem stochastic_quadratic --preset tiny --batch-size 8 --max-iters 60 --json";
    // AmIGO's averaged iterate: its columns in the trace and the JSON output.
    let out = bilevel_ok(
        base,
        &[json.to_str().unwrap(), "--algo", "amigo-gd", "--average", "--trace", trace.to_str().unwrap()],
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("output (the averaged iterate x̂_K)"), "{text}");
    let header = std::fs::read_to_string(&trace).unwrap();
    assert!(header.lines().next().unwrap().ends_with("avg_rel_error,avg_grad_norm"), "{header}");
    let v = json_of(&json);
    assert_eq!(v["output"]["rule"]["kind"], "averaged");
    assert_eq!(v["output"]["rel_error"], v["metrics"]["avg_rel_error"]);
    // SUSTAIN's a(T) ~ U{1..T}: an iteration in 1..=60 and the mean over the candidates.
    bilevel_ok(base, &[json.to_str().unwrap(), "--algo", "sustain"]);
    let v = json_of(&json);
    assert_eq!(v["output"]["rule"]["kind"], "uniform");
    let i = v["output"]["iteration"].as_u64().unwrap();
    assert!((1..=60).contains(&i) && v["output"]["candidates"] == 60, "{}", v["output"]);
    assert!(v["output"]["mean_sq_grad_norm"].as_f64().unwrap() > 0.0);
    // Averaging is AmIGO's only.
    fails_with(
        &["solve", "--problem", "stochastic_quadratic", "--preset", "tiny", "--algo", "stocbio", "--average"],
        "AmIGO",
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn problem_file_options_reach_the_problem() {
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/data/optdigits/optdigits.libsvm");
    let (dir, json, _) = scratch("file-options");
    // No corrupted label: nothing to detect (the metric is 1 by definition); a clean-label
    // problem keeps every sample (clean_rejection 0 at x0 = 0, weights σ(0) = ½ not below ½).
    let line = "solve --problem hyperclean --max-iters 0 --outer-step 10 --corruption 0 --val-fraction 0.2 --test-fraction 0.1 --json";
    bilevel_ok(line, &[json.to_str().unwrap(), "--problem-file", file]);
    let v = json_of(&json);
    assert_eq!(v["metrics"]["corrupted_detection"], 1.0, "{v}");
    // 1797 rows: 20% validation and 10% test leave 1258 training rows, one weight each.
    bilevel_ok(
        "solve --problem hyperclean --max-iters 0 --outer-step 10 --val-fraction 0.2 --test-fraction 0.1 --json",
        &[json.to_str().unwrap(), "--problem-file", file],
    );
    let full = json_of(&json);
    assert_ne!(full["metrics"]["corrupted_detection"], 1.0, "{full}");
    fails_with(&["solve", "--problem", "hyperclean", "--problem-file", file, "--corruption", "1.5"], "corruption");
    fails_with(&["solve", "--problem", "hyperclean", "--problem-file", file, "--val-fraction", "nan"], "val_fraction");
    fails_with(&["solve", "--problem", "hyperclean", "--corruption", "0.5"], "--problem-file");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A stochastic run on a data problem with `--eval-every 5`: every metric column (the
/// validation and test metrics as well as ‖∇L‖) is filled on rows 0, 5, 10, … and on the last
/// row, and empty on every other row; the counters are filled on all rows.
#[test]
fn eval_every_fills_the_data_metrics_of_a_stochastic_run_every_kth_row() {
    for (problem, algo) in [("hyperclean", "stocbio"), ("logreg_text", "sustain"), ("meta_learning", "bsgm")] {
        let (dir, _, trace) = scratch(&format!("eval-data-{problem}"));
        let line = format!(
            "solve --problem {problem} --preset tiny --algo {algo} --batch-size 3 --max-iters 23 --eval-every 5 \
             --outer-step 0.01 --divergence-growth inf --trace"
        );
        bilevel_ok(&line, &[trace.to_str().unwrap()]);
        let csv = std::fs::read_to_string(&trace).unwrap();
        let mut lines = csv.lines();
        let header: Vec<&str> = lines.next().unwrap().split(',').collect();
        let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
        assert_eq!(rows.len(), 24, "{problem}: {} rows", rows.len());
        let col = |name: &str| header.iter().position(|h| *h == name).unwrap_or_else(|| panic!("{name}: {header:?}"));
        let mut metrics = vec![col("grad_norm"), col("val_loss")];
        if problem != "meta_learning" {
            metrics.extend([col("val_accuracy"), col("test_loss"), col("test_accuracy")]);
        }
        for (k, r) in rows.iter().enumerate() {
            let measured = k % 5 == 0 || k == rows.len() - 1;
            for &c in &metrics {
                assert_eq!(!r[c].is_empty(), measured, "{problem} row {k}, column {}: {r:?}", header[c]);
                if measured {
                    assert!(r[c].parse::<f64>().unwrap().is_finite(), "{problem} row {k}: {r:?}");
                }
            }
            assert!(!r[col("hvp")].is_empty() && !r[col("seconds")].is_empty(), "{problem} row {k}: {r:?}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn scaling_writes_its_report_and_the_cg_claim_agrees() {
    let (dir, _, _) = scratch("scaling");
    let out = bilevel_ok(
        "scaling --test-size --only cg-sqrt-kappa,gd-kappa,amigo-kappa,aid-cg-beats-amigo-cg-large-kappa --out",
        &[dir.to_str().unwrap()],
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("# bilevel scaling report"), "{text}");
    let row = text.lines().find(|l| l.starts_with("| `cg-sqrt-kappa`")).unwrap();
    assert!(row.contains("**agrees**"), "{row}");
    for file in ["report.md", "report.html", "report.json", "points.json", "points.csv", "curves.json", "threads.json"]
    {
        assert!(dir.join(file).is_file(), "{file} missing");
    }
    // One SVG per claim run (three slopes, one comparison) and per convergence figure, all
    // inlined in the HTML report.
    let svgs: Vec<String> = std::fs::read_dir(dir.join("plots"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".svg"))
        .collect();
    for want in [
        "cg-sqrt-kappa",
        "gd-kappa",
        "amigo-kappa",
        "aid-cg-beats-amigo-cg-large-kappa",
        "deterministic-kappa-1e3",
        "stochastic",
    ] {
        assert!(svgs.iter().any(|n| n == &format!("{want}.svg")), "{want}.svg missing: {svgs:?}");
    }
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert_eq!(html.matches("<svg").count(), svgs.len());
    let points: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("points.json")).unwrap()).unwrap();
    assert!(points.as_array().unwrap().len() >= 14, "{points}");
    // A bad claim id is a clean error naming the known ones.
    fails_with(&["scaling", "--test-size", "--only", "nope", "--out", dir.to_str().unwrap()], "cg-sqrt-kappa");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn mini_batch_steps_respect_the_batches_curvature() {
    // Meta-learning on batches of 16 of 200 tasks: a head's Hessian block is 200/16 times the
    // full batch's, so 1/L_g of the full batch diverges; the step is 1/(2ℒ(16)) from the
    // problem's per-task bound L_max (its bound at x0, followed along the run) and converges.
    let line = "solve --problem meta_learning --algo amigo-gd --batch-size 16 --max-iters 200 --eval-every 50";
    let out = bilevel_ok(line, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("1/(2ℒ(b)), b = 16") && err.contains("lower-level steps at x_k"), "{err}");
}
