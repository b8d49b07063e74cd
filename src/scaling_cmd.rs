//! `bilevel scaling`: runs the complexity harness (`bilevel_bench::scaling`) with a progress
//! bar, then writes and prints the report.

use crate::cli::ScalingArgs;
use bilevel_bench::scaling::{self, report, Mode, Options, Progress};
use bilevel_bench::{claims, fit::FitOptions};
use std::time::Instant;

type DynError = Box<dyn std::error::Error>;

/// Runs `bilevel scaling`.
pub fn run(a: &ScalingArgs) -> Result<(), DynError> {
    let mode = match (a.quick, a.test_size) {
        (_, true) => Mode::Test,
        (true, _) => Mode::Quick,
        _ => Mode::Full,
    };
    let options = Options {
        mode,
        only: a.only.clone(),
        algos: a.algos.clone(),
        out: a.out.clone(),
        resume: a.resume,
        max_new_points: a.max_new_points,
    };
    let start = Instant::now();
    let bar = std::io::IsTerminal::is_terminal(&std::io::stderr()).then(|| {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} points, {elapsed} elapsed, {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    let mut progress = |p: &Progress<'_>| {
        let what =
            format!("{} {} at x = {:e} (seed {})", p.current.claim, p.current.algorithm, p.current.x, p.current.seed);
        match &bar {
            Some(bar) => {
                bar.set_length(p.total as u64);
                bar.set_position(p.done as u64);
                bar.set_message(what);
            }
            None => eprintln!("[{}/{}, {:.0} s] {what}", p.done + 1, p.total, p.elapsed),
        }
    };
    let outcome = scaling::run(&options, &mut progress)?;
    let store = &outcome.store;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let duplicates = (store.duplicates_dropped > 0).then(|| {
        format!(
            "{} duplicate points (same claim, algorithm, x and seed as an earlier one) dropped from {}, the first of \
             each kept",
            store.duplicates_dropped,
            a.out.join("points.json").display()
        )
    });
    if let Some(d) = &duplicates {
        eprintln!("warning: {d}");
    }
    let table = claims::table()?;
    let report = report::analyze(&table, &store.points, &FitOptions::default());
    let mut header = header(mode, start.elapsed().as_secs_f64(), store.points.len());
    if !outcome.complete {
        header += "- **incomplete**: stopped before every point was measured; `--resume` continues\n";
    }
    if let Some(d) = &duplicates {
        header += &format!("- warning: {d}\n");
    }
    let md = report::markdown(&report, &header) + &report::threads_markdown(&outcome.threads);
    let write = |name: &str, bytes: &[u8]| {
        scaling::points::replace(&a.out.join(name), bytes).map_err(|e| format!("{}: {e}", a.out.join(name).display()))
    };
    write("report.md", md.as_bytes())?;
    write("report.json", serde_json::to_string_pretty(&report)?.as_bytes())?;
    let figures = scaling::plots::figures(&table, &store.points, &report, &outcome.curves)?;
    let svgs = scaling::plots::write(&a.out, &figures)?;
    write("report.html", scaling::html::render(&md, &scaling::plots::titled(&figures)).as_bytes())?;
    println!("{md}");
    eprintln!("report, points, report.html and {} plots (plots/*.svg) in {}", svgs.len(), a.out.display());
    Ok(())
}

/// The report's header: what ran, when, where, and how long.
fn header(mode: Mode, seconds: f64, points: usize) -> String {
    let command: Vec<String> = std::env::args().collect();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!(
        "# bilevel scaling report\n\n- date (UTC): {}\n- machine: {cpu}, {} threads (rayon)\n- command: `{}`\n- mode: {mode:?}, {points} points, {seconds:.1} s (this invocation)\n",
        utc_now(),
        rayon::current_num_threads(),
        command.join(" "),
    )
}

/// The current UTC time as `YYYY-MM-DD HH:MM` (civil-from-days, no date crate).
fn utc_now() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}", rem / 3600, rem % 3600 / 60)
}
