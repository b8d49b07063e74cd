//! The embedded claims table parses, and its validation names row and column.

use bilevel_bench::claims::{
    by_id, parse, table, Claim, ClaimError, Convention, Kind, Measure, Sweep, TargetMetric, Unit, ALGORITHMS, CSV,
    SOLVERS,
};
use std::collections::HashSet;

const BRIEF_ALGORITHMS: &[&str] = &[
    "amigo-cg",
    "amigo-gd",
    "aid-bio",
    "aid-cg",
    "aid-gd",
    "aid-cg-ws",
    "aid-fp",
    "aid-n",
    "itd",
    "bsgm",
    "stocbio",
    "bsa",
    "ttsa",
    "sustain",
    "adam-sustain",
    "bo-rep",
];

fn claims() -> Vec<Claim> {
    table().expect("the embedded table is valid")
}

#[test]
fn the_table_parses_with_unique_ids_and_sources() {
    let claims = claims();
    assert!(claims.len() >= 30, "{}", claims.len());
    let ids: HashSet<&str> = claims.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids.len(), claims.len());
    for c in &claims {
        assert!(!c.source.trim().is_empty() && !c.authors.trim().is_empty(), "{}", c.id);
        assert!(["000", "001", "002", "003", "004"].contains(&c.paper.as_str()), "{}", c.id);
        assert!(c.exponent.is_finite() && c.log_power.is_finite() && c.log_power >= 0.0, "{}", c.id);
        assert!(!c.algorithms.is_empty(), "{}", c.id);
        for a in &c.algorithms {
            assert!(BRIEF_ALGORITHMS.contains(&a.as_str()) || SOLVERS.contains(&a.as_str()), "{}: {a}", c.id);
        }
        if c.derived {
            assert!(c.note.contains("[derived"), "{}: a derived row says so in its note", c.id);
        }
        // ε claims name the units of their ε; the swept ε appears in the target.
        if c.sweep == Sweep::Epsilon {
            assert_eq!(c.target.value, None, "{}", c.id);
            assert_ne!(c.target.metric, TargetMetric::None, "{}", c.id);
        }
        // Solver claims count solver steps; per-oracle claims are timings with no target.
        let solver_row = c.algorithms.iter().all(|a| SOLVERS.contains(&a.as_str()));
        assert_eq!(solver_row, c.measure == Measure::SolveSteps, "{}", c.id);
        assert_eq!(c.measure == Measure::SecondsPerOracle, c.target.metric == TargetMetric::None, "{}", c.id);
    }
    // Every paper has claims.
    for p in ["000", "001", "002", "003", "004"] {
        assert!(claims.iter().any(|c| c.paper == p), "{p}");
    }
}

#[test]
fn the_cli_list_is_the_briefs() {
    assert_eq!(ALGORITHMS, BRIEF_ALGORITHMS);
}

#[test]
fn the_doubtful_stocbio_hvp_claim_has_both_rows() {
    let paper = by_id("stocbio-hvp-kappa-paper").unwrap();
    let settings = by_id("stocbio-hvp-kappa-settings").unwrap();
    for c in [&paper, &settings] {
        assert_eq!((c.sweep, c.measure, c.unit), (Sweep::Kappa, Measure::Hvp, Unit::Samples));
        assert_eq!(c.algorithms, ["stocbio"]);
        assert_eq!(c.problem, paper.problem);
    }
    assert_eq!((paper.exponent, paper.log_power, paper.derived), (6.0, 0.0, false));
    assert_eq!((settings.exponent, settings.log_power, settings.derived), (7.0, 1.0, true));
    assert!(settings.note.contains("Q = kappa log(kappa^2/eps)"));
}

#[test]
fn key_exponents_match_the_notes() {
    let e = |id: &str| {
        let c = by_id(id).unwrap_or_else(|| panic!("{id}"));
        (c.exponent, c.log_power)
    };
    assert_eq!(e("cg-sqrt-kappa"), (0.5, 0.0));
    assert_eq!(e("gd-kappa"), (1.0, 0.0));
    assert_eq!(e("fixed-point-kappa"), (1.0, 0.0));
    assert_eq!(e("neumann-kappa"), (1.0, 0.0));
    assert_eq!(e("amigo-kappa"), (1.0, 0.0));
    assert_eq!(e("aid-bio-grad-g-kappa"), (4.0, 0.0));
    assert_eq!(e("aid-bio-hvp-kappa"), (3.5, 0.0));
    assert_eq!(e("itd-hvp-kappa"), (4.0, 0.0));
    assert_eq!(e("itd-eps"), (1.0, 1.0));
    assert_eq!(e("stocbio-grad-g-eps"), (2.0, 0.0));
    assert_eq!(e("stocbio-grad-g-kappa"), (9.0, 0.0));
    assert_eq!(e("bsgm-stochastic-eps"), (2.0, 0.0));
    assert_eq!(e("bsgm-stochastic-kappa"), (16.0, 0.0));
    assert_eq!(e("bsgm-deterministic-eps"), (1.0, 1.0));
    assert_eq!(e("bsgm-deterministic-kappa"), (5.0, 0.0));
    assert_eq!(e("sustain-eps"), (1.5, 1.5));
    assert_eq!(e("bo-rep-eps"), (4.0, 0.0));
    assert_eq!(e("oracle-seconds-nnz"), (1.0, 0.0));
    assert_eq!(e("oracle-seconds-dim"), (2.0, 0.0));
    assert_eq!(by_id("bo-rep-eps").unwrap().target.metric, TargetMetric::GradNorm);
    assert_eq!(by_id("sustain-eps").unwrap().target.metric, TargetMetric::GradNormSq);
    assert_eq!(by_id("aid-bio-grad-f-kappa").unwrap().convention, Convention::Separate);
    assert_eq!(by_id("amigo-kappa").unwrap().convention, Convention::Paired);
    assert_eq!(by_id("nonexistent"), None);
}

#[test]
fn comparisons_name_two_algorithms() {
    let comparisons: Vec<Claim> = claims().into_iter().filter(|c| c.kind == Kind::Comparison).collect();
    assert_eq!(comparisons.len(), 2);
    for c in &comparisons {
        assert_eq!(c.algorithms.len(), 2);
        assert_eq!((c.sweep, c.measure), (Sweep::Kappa, Measure::TotalCalls));
        assert_eq!(c.algorithms[0], "aid-cg");
    }
}

#[test]
fn enum_names_round_trip() {
    for s in Sweep::ALL {
        assert_eq!(Sweep::parse(s.as_str()), Some(*s));
    }
    for m in Measure::ALL {
        assert_eq!(Measure::parse(m.as_str()), Some(*m));
    }
    assert_eq!(Convention::Paired.as_str(), "paired");
    assert_eq!(Kind::Comparison.to_string(), "comparison");
    let c = by_id("amigo-kappa").unwrap();
    assert_eq!(c.target.to_string(), "rel_error=1e-6");
}

/// The embedded table with one cell of one data row replaced.
fn edited(row: usize, column: &str, value: &str) -> String {
    let mut reader = csv::Reader::from_reader(CSV.as_bytes());
    let headers = reader.headers().unwrap().clone();
    let col = headers.iter().position(|h| h == column).unwrap();
    let mut out = csv::Writer::from_writer(Vec::new());
    out.write_record(&headers).unwrap();
    for (i, r) in reader.records().enumerate() {
        let r = r.unwrap();
        let fields: Vec<&str> =
            r.iter().enumerate().map(|(j, f)| if i == row && j == col { value } else { f }).collect();
        out.write_record(&fields).unwrap();
    }
    String::from_utf8(out.into_inner().unwrap()).unwrap()
}

#[test]
fn validation_names_line_and_column() {
    // Data row 2 sits on line 4 (the header is line 1).
    let err = |column: &str, value: &str| parse(&edited(2, column, value)).unwrap_err();
    assert!(matches!(err("sweep", "time"), ClaimError::Unknown { line: 4, column: "sweep", .. }));
    assert!(matches!(err("measure", "flops"), ClaimError::Unknown { line: 4, column: "measure", .. }));
    assert!(matches!(err("convention", "both"), ClaimError::Unknown { line: 4, column: "convention", .. }));
    assert!(matches!(err("kind", "table"), ClaimError::Unknown { line: 4, column: "kind", .. }));
    assert!(matches!(err("unit", "bytes"), ClaimError::Unknown { line: 4, column: "unit", .. }));
    assert!(matches!(err("paper", "005"), ClaimError::Unknown { line: 4, column: "paper", .. }));
    assert!(matches!(err("target", "loss=1"), ClaimError::Unknown { line: 4, column: "target", .. }));
    assert!(matches!(err("algorithms", "amigo-cg;adam"), ClaimError::Unknown { line: 4, column: "algorithms", .. }));
    assert!(matches!(err("exponent", "inf"), ClaimError::NotFinite { line: 4, column: "exponent", .. }));
    assert!(matches!(err("log_power", "one"), ClaimError::NotFinite { line: 4, column: "log_power", .. }));
    assert_eq!(err("source", " "), ClaimError::Empty { line: 4, column: "source" });
    assert_eq!(err("algorithms", ";"), ClaimError::Empty { line: 4, column: "algorithms" });
    assert!(matches!(err("id", "Bad_Id"), ClaimError::BadId { line: 4, .. }));
    let first = claims()[0].id.clone();
    assert_eq!(err("id", &first), ClaimError::DuplicateId { line: 4, id: first, first: 2 });
    assert_eq!(err("kind", "comparison"), ClaimError::ComparisonArity { line: 4, count: 1 });
    let message = err("sweep", "time").to_string();
    assert!(message.contains("line 4") && message.contains("`sweep`") && message.contains("`kappa`"), "{message}");

    let no_note = CSV.replacen(",note\n", ",remark\n", 1);
    assert_eq!(parse(&no_note).unwrap_err(), ClaimError::MissingColumn { column: "note" });
    assert!(matches!(
        parse("id,kind\n\"a,b\n").unwrap_err(),
        ClaimError::MissingColumn { .. } | ClaimError::Csv { .. }
    ));
}
