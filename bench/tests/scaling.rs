//! The harness: an interrupted run resumed gives the points of an uninterrupted one, and the
//! per-solve claims come out as the theory says on the reduced sweeps.

use bilevel_bench::claims;
use bilevel_bench::fit::FitOptions;
use bilevel_bench::scaling::{self, report, Mode, Options, Point};

fn options(out: &std::path::Path, only: &[&str]) -> Options {
    Options {
        mode: Mode::Test,
        only: only.iter().map(|s| s.to_string()).collect(),
        algos: Vec::new(),
        out: out.to_path_buf(),
        resume: false,
        max_new_points: None,
    }
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("bilevel-scaling-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A point without its wall time (the only part of a point that is not reproducible).
fn strip(p: &Point) -> Point {
    Point { seconds: 0.0, ..p.clone() }
}

#[test]
fn an_interrupted_run_resumed_gives_the_same_points() {
    let only = ["cg-sqrt-kappa", "amigo-kappa", "stocbio-grad-g-eps"];
    let (whole, parts) = (scratch("whole"), scratch("parts"));
    let all = scaling::run(&options(&whole, &only), &mut |_| {}).unwrap();
    assert!(all.complete && !all.curves.is_empty());
    // Three points, then the rest in two resumed runs.
    let mut o = options(&parts, &only);
    o.max_new_points = Some(3);
    let first = scaling::run(&o, &mut |_| {}).unwrap();
    assert!(!first.complete);
    assert_eq!(first.store.points.len(), 3);
    o.resume = true;
    o.max_new_points = Some(4);
    let mut seen = 0;
    let second = scaling::run(&o, &mut |_| seen += 1).unwrap();
    assert_eq!((second.store.points.len(), seen), (7, 4), "the resumed run measures only missing points");
    o.max_new_points = None;
    let last = scaling::run(&o, &mut |_| {}).unwrap();
    assert!(last.complete);
    let a: Vec<Point> = all.store.points.iter().map(strip).collect();
    let b: Vec<Point> = last.store.points.iter().map(strip).collect();
    assert_eq!(a, b);
    // What is on disk is what was returned.
    let on_disk: Vec<Point> =
        serde_json::from_str(&std::fs::read_to_string(parts.join("points.json")).unwrap()).unwrap();
    assert_eq!(on_disk.iter().map(strip).collect::<Vec<_>>(), b);
    let csv = std::fs::read_to_string(parts.join("points.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + b.len());
    for d in [whole, parts] {
        std::fs::remove_dir_all(d).unwrap();
    }
}

#[test]
fn the_linear_solver_claims_agree_on_the_reduced_sweeps() {
    let out = scratch("solvers");
    let only = ["cg-sqrt-kappa", "gd-kappa", "neumann-kappa"];
    let outcome = scaling::run(&options(&out, &only), &mut |_| {}).unwrap();
    let table = claims::table().unwrap();
    let r = report::analyze(&table, &outcome.store.points, &FitOptions::default());
    assert_eq!(r.findings.len(), 3);
    for f in &r.findings {
        assert_eq!(f.verdict, "agrees", "{}: {} ({:?})", f.claim.id, f.reason, f.fit);
    }
    // CG's slope is well below GD's: the test sees the difference of √κ and κ.
    let slope = |id: &str| r.findings.iter().find(|f| f.claim.id == id).unwrap().fit.as_ref().unwrap().slope;
    assert!(slope("cg-sqrt-kappa") < 0.7 && slope("gd-kappa") > 0.85);
    std::fs::remove_dir_all(out).unwrap();
}

#[test]
fn unknown_claims_are_refused_with_the_list() {
    let out = scratch("unknown");
    let err = scaling::run(&options(&out, &["no-such-claim"]), &mut |_| {}).err().unwrap().to_string();
    assert!(err.contains("no-such-claim") && err.contains("cg-sqrt-kappa"), "{err}");
    let _ = std::fs::remove_dir_all(out);
}

#[test]
fn a_resumed_run_remeasures_the_points_of_a_changed_claim() {
    // Points stored under another version of a claim's row (here: version 0, as written by
    // an older build) are dropped on resume and measured again.
    let out = scratch("stale");
    let only = ["gd-kappa"];
    let first = scaling::run(&options(&out, &only), &mut |_| {}).unwrap();
    let n = first.store.points.len();
    let mut stale: Vec<Point> = first.store.points.clone();
    stale.iter_mut().for_each(|p| p.task.claim_version = 0);
    std::fs::write(out.join("points.json"), serde_json::to_string(&stale).unwrap()).unwrap();
    let mut o = options(&out, &only);
    o.resume = true;
    let mut measured = 0;
    let again = scaling::run(&o, &mut |_| measured += 1).unwrap();
    assert_eq!((measured, again.store.points.len()), (n, n));
    assert!(again.store.points.iter().all(|p| p.task.claim_version != 0));
    std::fs::remove_dir_all(out).unwrap();
}

#[test]
fn algorithms_no_selected_claim_measures_are_refused_before_writing() {
    let out = scratch("algos");
    let table = claims::table().unwrap();
    let mut o = options(&out, &["cg-sqrt-kappa"]);
    // Unknown: the table's algorithms are listed.
    o.algos = vec!["nosuch".into()];
    let err = scaling::run(&o, &mut |_| {}).err().unwrap().to_string();
    assert!(err.contains("unknown algorithm `nosuch`") && err.contains("amigo-cg, amigo-gd"), "{err}");
    // A real algorithm that no claim measures.
    let unused = claims::ALGORITHMS.iter().find(|a| !table.iter().any(|c| c.algorithms.iter().any(|b| b == *a)));
    if let Some(algo) = unused {
        o.algos = vec![algo.to_string()];
        let err = scaling::run(&o, &mut |_| {}).err().unwrap().to_string();
        assert!(err.contains(&format!("no claim of bench/claims.csv measures `{algo}`")), "{err}");
    }
    // One that the selected claim does not measure: the claims that do are named.
    o.algos = vec!["stocbio".into()];
    let err = scaling::run(&o, &mut |_| {}).err().unwrap().to_string();
    assert!(err.contains("no selected claim (--only cg-sqrt-kappa) measures `stocbio`"), "{err}");
    assert!(err.contains("stocbio-grad-g-eps"), "{err}");
    // Also without --only, and with one good name among bad ones.
    o.only.clear();
    o.algos = vec!["cg".into(), "nosuch".into()];
    assert!(scaling::run(&o, &mut |_| {}).is_err());
    assert!(!out.exists(), "nothing written");
    // An earlier report in --out is left as it was.
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("report.md"), "earlier").unwrap();
    assert!(scaling::run(&o, &mut |_| {}).is_err());
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 1);
    assert_eq!(std::fs::read_to_string(out.join("report.md")).unwrap(), "earlier");
    std::fs::remove_dir_all(out).unwrap();
}

#[test]
fn duplicate_points_are_read_once_and_counted() {
    // A points.json holding every point twice (a hand-merged file): resumed, nothing is
    // measured again, each point is kept once (the first), and the file is rewritten so.
    let out = scratch("dup");
    let only = ["gd-kappa"];
    let first = scaling::run(&options(&out, &only), &mut |_| {}).unwrap();
    let n = first.store.points.len();
    assert_eq!(first.store.duplicates_dropped, 0);
    // The second copy differs in what was measured (its cost): the first is the one kept.
    let second: Vec<Point> = first.store.points.iter().map(|p| Point { cost: -1.0, ..p.clone() }).collect();
    let doubled: Vec<Point> = first.store.points.iter().chain(&second).cloned().collect();
    std::fs::write(out.join("points.json"), serde_json::to_string(&doubled).unwrap()).unwrap();
    let mut o = options(&out, &only);
    o.resume = true;
    let mut measured = 0;
    let again = scaling::run(&o, &mut |_| measured += 1).unwrap();
    assert_eq!((measured, again.store.points.len(), again.store.duplicates_dropped), (0, n, n));
    assert!(again.store.points.iter().all(|p| p.cost >= 0.0), "the first of each kept");
    let on_disk: Vec<Point> = serde_json::from_str(&std::fs::read_to_string(out.join("points.json")).unwrap()).unwrap();
    assert_eq!(on_disk.len(), n);
    // The report fits each point once.
    let table = claims::table().unwrap();
    let once = report::analyze(&table, &again.store.points, &FitOptions::default());
    let f = once.findings.iter().find(|f| f.claim.id == "gd-kappa").unwrap();
    assert_eq!(f.points, n);
    std::fs::remove_dir_all(out).unwrap();
}

#[test]
fn plots_of_an_earlier_run_are_removed_when_the_report_is_rewritten() {
    let dir = scratch("stale-plots");
    let plots = dir.join("plots");
    std::fs::create_dir_all(&plots).unwrap();
    std::fs::write(plots.join("old-claim.svg"), "<svg/>").unwrap();
    std::fs::write(plots.join("notes.txt"), "mine").unwrap();
    let figure =
        scaling::plots::Figure { file: "new-claim.svg".into(), title: "new".into(), svg: "<svg></svg>".into() };
    scaling::plots::write(&dir, &[figure]).unwrap();
    assert!(!plots.join("old-claim.svg").exists() && plots.join("new-claim.svg").exists());
    assert!(plots.join("notes.txt").exists(), "only figures are removed");
    scaling::plots::write(&dir, &[]).unwrap();
    assert!(!plots.join("new-claim.svg").exists());
    std::fs::remove_dir_all(dir).unwrap();
}
