//! Random argument sets for `bilevel hypergrad` and `bilevel solve`: whatever a user types, the
//! binary exits 0, 1 (a typed error) or 2 (clap's usage error) within a time bound — never a
//! panic (101), an abort (134) or a signal, never a hang.
//!
//! `BILEVEL_CLI_CASES` sets the number of sets (default 300: the suite's share; the figure in
//! docs/reliability.md is a run with 10 000), `BILEVEL_CLI_SEED` the seed, `BILEVEL_CLI_SHOW=C`
//! prints the first stderr line of every set that exits with code C.

use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Longest a set may take (tiny presets, at most 60 outer iterations: far below it).
const TIME_BOUND: Duration = Duration::from_secs(60);

const PROBLEMS: &[&str] = &[
    "quadratic",
    "stochastic_quadratic",
    "text",
    "logreg_text",
    "logreg_binary",
    "logreg_per_class",
    "hyperclean",
    "meta_learning",
    "equilibrium",
    "distillation",
    "nope",
];
/// Values of each kind: (valid for the parser, invalid). A value is drawn from the invalid
/// pool with probability [`INVALID`], so most sets reach the library, not only the parser.
const NUMBERS: (&[&str], &[&str]) =
    (&["1", "2", "0.5", "1e-3", "1e3", "1e308", "1e-320"], &["0", "-1", "-0", "NaN", "inf", "-inf", "abc", ""]);
const COUNTS: (&[&str], &[&str]) =
    (&["0", "1", "3", "10", "18446744073709551615"], &["-1", "1.5", "x", "18446744073709551616"]);
const SIZES: (&[&str], &[&str]) =
    (&["1", "2", "7", "64", "10000000000", "4294967296"], &["0", "-3", "999999999999999999999"]);
const STEPS: (&[&str], &[&str]) = (&["1", "3", "10"], &["0", "-1", "x", "1e10", "4294967296", "2.5"]);
const KAPPA: (&[&str], &[&str]) = (&["1", "10", "1e3", "1e7", "1e12", "1e300"], &["0.5", "-1", "NaN", "x"]);
const GROWTH: (&[&str], &[&str]) = (&["2", "100", "1e300", "inf"], &["1", "0.5", "NaN"]);
const COUNTS_SMALL: (&[&str], &[&str]) = (&["0", "1", "3", "10"], &["-1", "x"]);
const BATCHES: (&[&str], &[&str]) = (&["1", "4", "16", "100000"], &["0", "-2", "x"]);
const INVALID: f64 = 0.05;

fn pick<'a>(r: &mut impl Rng, from: &[&'a str]) -> &'a str {
    from[r.random_range(0..from.len())]
}

fn value<'a>(r: &mut impl Rng, (valid, invalid): (&[&'a str], &[&'a str])) -> &'a str {
    if r.random_bool(INVALID) {
        pick(r, invalid)
    } else {
        pick(r, valid)
    }
}

/// One random argument list (the budget flags keep every run short).
fn arguments(r: &mut impl Rng) -> Vec<String> {
    let solve = r.random_bool(0.6);
    let mut args: Vec<String> = vec![if solve { "solve" } else { "hypergrad" }.into()];
    let push = |a: &mut Vec<String>, flag: &str, value: &str| {
        a.push(flag.into());
        a.push(value.into());
    };
    push(&mut args, "--problem", if r.random_bool(0.95) { pick(r, &PROBLEMS[..10]) } else { "nope" });
    // Tiny presets only (a bounded time per set): a larger preset under a theory rule is a
    // legitimately long run (BSGM's c₃ = 1/log(1/q) ≈ κ at κ = 1e7), not a hang.
    push(&mut args, "--preset", if r.random_bool(0.95) { "tiny" } else { "huge" });
    let itd = !solve && r.random_bool(0.3);
    if solve {
        push(&mut args, "--algo", pick(r, bilevel::solvers::algorithms::NAMES));
        push(&mut args, "--max-iters", pick(r, &["0", "1", "5", "60"]));
        push(&mut args, "--steps", value(r, (&["theory", "experiments"], &["magic"])));
    } else {
        let methods = ["aid-cg", "aid-gd", "aid-fp", "aid-n", "exact", "magic"];
        push(&mut args, "--method", if itd { "itd" } else { value(r, (&methods[..5], &methods[5..])) });
    }
    // Inner steps: huge values only where they are refused (ITD's trajectory memory), so that
    // a legitimately long run is not taken for a hang.
    // (hypergrad's AID takes 0 inner steps: y = 0.)
    let inner = if itd {
        value(r, COUNTS)
    } else if solve {
        value(r, STEPS)
    } else {
        value(r, COUNTS_SMALL)
    };
    push(&mut args, "--inner-steps", inner);
    // (flag, values, probability of appearing, solve only)
    for (flag, pool, p, solve_only) in [
        ("--lin-steps", STEPS, 0.5, false),
        ("--kappa", KAPPA, 0.3, false),
        ("--dx", SIZES, 0.2, false),
        ("--dy", SIZES, 0.2, false),
        ("--seed", COUNTS, 0.3, false),
        ("--l-g", NUMBERS, 0.15, false),
        ("--mu-g", NUMBERS, 0.15, false),
        ("--l-outer", NUMBERS, 0.15, false),
        ("--outer-step", NUMBERS, 0.3, true),
        ("--target", NUMBERS, 0.3, true),
        ("--time-limit", NUMBERS, 0.2, true),
        ("--max-oracle-calls", COUNTS, 0.2, true),
        ("--c3", NUMBERS, 0.2, true),
        ("--divergence-growth", GROWTH, 0.2, true),
        ("--batch-size", BATCHES, 0.3, true),
        ("--batch-size-hvp", BATCHES, 0.1, true),
        ("--sampling", (&["replacement", "epochs"][..], &["magic"][..]), 0.2, true),
        ("--sample-seed", COUNTS, 0.2, true),
        ("--horizon", BATCHES, 0.1, true),
        ("--eval-every", BATCHES, 0.1, true),
        // Flags of one algorithm only (refused on the others), and step counts.
        ("--fixed-steps", STEPS, 0.05, true),
        ("--period", STEPS, 0.05, true),
        ("--lower-steps", STEPS, 0.05, true),
        ("--init-steps", STEPS, 0.05, true),
        ("--momentum-w", NUMBERS, 0.05, true),
        ("--adam-option", (&["1", "2"][..], &["3"][..]), 0.05, true),
        ("--epsilon", NUMBERS, 0.05, true),
    ] {
        if (solve || !solve_only) && r.random_bool(p) {
            push(&mut args, flag, value(r, pool));
        }
    }
    for flag in ["--average", "--neumann-decay", "--upper-momentum-only"] {
        if solve && r.random_bool(0.03) {
            args.push(flag.into());
        }
    }
    if r.random_bool(0.05) {
        args.push(pick(r, &["--frobnicate", "extra", "--problem-dir"]).into());
    }
    args
}

/// With probability [`SIGNAL`], a signal (SIGTERM, SIGHUP or SIGINT) sent after a random delay:
/// the run must stop cleanly (exit 0–2) like any other.
const SIGNAL: f64 = 0.05;

/// Runs one set: `Ok(exit code)`, or `Err` describing a panic, an abort, a signal or a hang.
fn check(args: &[String], signal: Option<(&str, Duration)>) -> Result<i32, String> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_bilevel"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let start = Instant::now();
    let mut signal = signal;
    loop {
        if let Some((name, _)) = signal.filter(|(_, after)| start.elapsed() >= *after) {
            let _ = Command::new("kill").args([name, &child.id().to_string()]).status();
            signal = None;
        }
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            let mut err = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).ok();
            return match status.code() {
                Some(code @ 0..=2) if !err.contains("panicked") => {
                    if std::env::var("BILEVEL_CLI_SHOW").is_ok_and(|c| c == code.to_string()) {
                        eprintln!("exit {code}: {}", err.lines().next().unwrap_or(""));
                    }
                    Ok(code)
                }
                code => Err(format!("{args:?} (signal {signal:?}): exit {code:?} ({status}): {err}")),
            };
        }
        if start.elapsed() > TIME_BOUND {
            let _ = child.kill();
            return Err(format!("{args:?}: no exit after {TIME_BOUND:?}"));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn random_argument_sets_never_panic_abort_or_hang() {
    let env = |k: &str, d: u64| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d);
    let (cases, seed) = (env("BILEVEL_CLI_CASES", 300), env("BILEVEL_CLI_SEED", 1));
    let mut r = Xoshiro256PlusPlus::seed_from_u64(seed);
    let start = Instant::now();
    let (mut exits, mut failures) = ([0usize; 3], Vec::new());
    for _ in 0..cases {
        let args = arguments(&mut r);
        // The handlers are installed a few milliseconds after start: signals come later.
        // (`solve` handles them; `hypergrad` is short and keeps the default action.)
        let signal = (args[0] == "solve" && r.random_bool(SIGNAL)).then(|| {
            (["-TERM", "-HUP", "-INT"][r.random_range(0..3)], Duration::from_millis(r.random_range(100..400)))
        });
        match check(&args, signal) {
            Ok(code) => exits[code as usize] += 1,
            Err(e) => failures.push(e),
        }
    }
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "{cases} argument sets (seed {seed}) in {secs:.1} s: exit 0 {}, 1 {}, 2 {}",
        exits[0], exits[1], exits[2]
    );
    assert!(failures.is_empty(), "{} of {cases} sets failed:\n{}", failures.len(), failures.join("\n"));
}
