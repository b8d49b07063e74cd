//! From points to findings: the slope of each (claim, algorithm) with its bootstrap interval
//! and verdict, the comparisons (which method wins where), and `report.md`.

use super::points::Point;
use crate::claims::{Claim, Kind};
use crate::fit::{self, FitOptions, Sample, SlopeFit};
use serde::Serialize;

/// The measured verdict of one (claim, algorithm).
#[derive(Clone, Debug, Serialize)]
pub struct Finding {
    /// The claim.
    pub claim: Claim,
    /// The algorithm or solver.
    pub algorithm: String,
    /// Points measured.
    pub points: usize,
    /// Points that reached the target (the fit's).
    pub reached: usize,
    /// The fit, where one could be made.
    pub fit: Option<SlopeFit>,
    /// `agrees`, `better than claimed`, `worse than claimed` or `inconclusive`.
    pub verdict: String,
    /// Why.
    pub reason: String,
}

/// A comparison claim's outcome: the cost of each method at each x and who wins where.
#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    /// The claim (its first algorithm is claimed cheaper at large x).
    pub claim: Claim,
    /// Per x: each algorithm's median cost over the reached seeds (`None`: never reached).
    pub rows: Vec<(f64, Vec<Option<f64>>)>,
    /// `agrees`, `does not hold` or `inconclusive`.
    pub verdict: String,
    /// Which method wins where.
    pub reason: String,
}

/// Everything a report says.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Slope claims.
    pub findings: Vec<Finding>,
    /// Comparison claims.
    pub comparisons: Vec<Comparison>,
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 { v[n / 2] } else { 0.5 * (v[n / 2 - 1] + v[n / 2]) })
}

/// The findings of `points` against `table`.
pub fn analyze(table: &[Claim], points: &[Point], options: &FitOptions) -> Report {
    let mut findings = Vec::new();
    let mut comparisons = Vec::new();
    for claim in table {
        let of_claim: Vec<&Point> = points.iter().filter(|p| p.task.claim == claim.id).collect();
        if of_claim.is_empty() {
            continue;
        }
        match claim.kind {
            Kind::Slope => {
                for algorithm in &claim.algorithms {
                    let pts: Vec<&&Point> = of_claim.iter().filter(|p| &p.task.algorithm == algorithm).collect();
                    if pts.is_empty() {
                        continue;
                    }
                    findings.push(finding(claim, algorithm, &pts, options));
                }
            }
            Kind::Comparison => comparisons.push(comparison(claim, &of_claim)),
        }
    }
    Report { findings, comparisons }
}

fn finding(claim: &Claim, algorithm: &str, pts: &[&&Point], options: &FitOptions) -> Finding {
    let samples: Vec<Sample> =
        pts.iter().filter(|p| p.reached).map(|p| Sample { x: p.task.x, cost: p.cost, group: p.task.seed }).collect();
    let reached = samples.len();
    let (fit, verdict, reason) = match fit::fit(&samples, claim.log_power, options) {
        Ok(f) => {
            let (v, why) = fit::verdict(&f, claim.exponent, options);
            (Some(f), v.as_str().to_string(), why)
        }
        Err(e) => {
            (None, "inconclusive".to_string(), format!("{reached} of {} points reached the target: {e}", pts.len()))
        }
    };
    Finding { claim: claim.clone(), algorithm: algorithm.to_string(), points: pts.len(), reached, fit, verdict, reason }
}

fn comparison(claim: &Claim, pts: &[&Point]) -> Comparison {
    let mut xs: Vec<f64> = pts.iter().map(|p| p.task.x).collect();
    xs.sort_by(f64::total_cmp);
    xs.dedup();
    let rows: Vec<(f64, Vec<Option<f64>>)> = xs
        .iter()
        .map(|&x| {
            let costs = claim
                .algorithms
                .iter()
                .map(|a| {
                    median(
                        pts.iter()
                            .filter(|p| p.task.x == x && &p.task.algorithm == a && p.reached)
                            .map(|p| p.cost)
                            .collect(),
                    )
                })
                .collect();
            (x, costs)
        })
        .collect();
    let names = &claim.algorithms;
    let winner = |costs: &[Option<f64>]| -> Option<usize> {
        match (costs.first().copied().flatten(), costs.get(1).copied().flatten()) {
            (Some(a), Some(b)) => Some(if a < b { 0 } else { 1 }),
            (Some(_), None) => Some(0),
            (None, Some(_)) => Some(1),
            (None, None) => None,
        }
    };
    let wins: Vec<String> = rows
        .iter()
        .map(|(x, c)| match winner(c) {
            Some(w) => format!("{} at {x:e}", names[w]),
            None => format!("neither reached the target at {x:e}"),
        })
        .collect();
    let last = rows.iter().rev().find_map(|(_, c)| winner(c));
    let verdict = match last {
        Some(0) => "agrees",
        Some(_) => "does not hold",
        None => "inconclusive",
    };
    let reason = format!("cheaper (median {}): {}", claim.measure.as_str(), wins.join("; "));
    Comparison { claim: claim.clone(), rows, verdict: verdict.to_string(), reason }
}

fn number(v: f64) -> String {
    if v.abs() >= 1e4 || (v != 0.0 && v.abs() < 1e-2) {
        format!("{v:.2e}")
    } else {
        format!("{v:.3}")
    }
}

/// `report.md`: a header the caller writes (date, machine, command, time), then the slope
/// table and the comparisons.
pub fn markdown(report: &Report, header: &str) -> String {
    let mut s = String::from(header);
    s += "\n## Slopes\n\nThe cost of each method against the swept quantity, fitted on log-log axes \
          (cost ∝ x^a (ln x)^b with the claim's b), the interval a percentile bootstrap \
          (see docs/complexity.md). \"better than claimed\" means the cost grows more slowly \
          than the theorem's bound, which a worst-case bound allows.\n\n";
    s +=
        "| claim | paper, source | method | sweep | cost | claimed | measured | interval | reached | verdict | why |\n";
    s += "|---|---|---|---|---|---|---|---|---|---|---|\n";
    for f in &report.findings {
        let c = &f.claim;
        let claimed = if c.log_power != 0.0 {
            format!("x^{} (ln x)^{}", c.exponent, c.log_power)
        } else {
            format!("x^{}", c.exponent)
        };
        let (slope, interval) = match &f.fit {
            Some(fit) => (number(fit.slope), format!("[{}, {}]", number(fit.lower), number(fit.upper))),
            None => ("—".into(), "—".into()),
        };
        s += &format!(
            "| `{}` | {} ({}), {} | {} | {} | {} ({}) | {} | {} | {} | {}/{} | **{}** | {} |\n",
            c.id,
            c.paper,
            c.authors,
            c.source.replace('|', "/"),
            f.algorithm,
            c.sweep.as_str(),
            c.measure.as_str(),
            c.unit.as_str(),
            claimed,
            slope,
            interval,
            f.reached,
            f.points,
            f.verdict,
            f.reason.replace('|', "/")
        );
    }
    if !report.comparisons.is_empty() {
        s += "\n## Comparisons\n\n";
        for c in &report.comparisons {
            let cl = &c.claim;
            s += &format!(
                "### `{}` — {} ({}), {}\n\nClaimed: {} is cheaper than {} at large {}. **{}**: {}.\n\n",
                cl.id,
                cl.paper,
                cl.authors,
                cl.source,
                cl.algorithms[0],
                cl.algorithms.get(1).map_or("?", |s| s.as_str()),
                cl.sweep.as_str(),
                c.verdict,
                c.reason
            );
            s += &format!(
                "| {} | {} |\n|---|{}\n",
                cl.sweep.as_str(),
                cl.algorithms.join(" | "),
                "---|".repeat(cl.algorithms.len())
            );
            for (x, costs) in &c.rows {
                let cells: Vec<String> = costs.iter().map(|v| v.map_or("not reached".into(), number)).collect();
                s += &format!("| {} | {} |\n", number(*x), cells.join(" | "));
            }
            s += "\n";
        }
    }
    s
}

/// The per-oracle cost by thread count, as a Markdown section.
pub fn threads_markdown(rows: &[(String, usize, f64)]) -> String {
    if rows.is_empty() {
        return String::new();
    }
    let mut s = String::from("\n## Per-oracle cost by thread count\n\nMedian wall time of one product; speed-up over one thread.\n\n| product | threads | seconds | speed-up |\n|---|---|---|---|\n");
    for (what, threads, secs) in rows {
        let one = rows.iter().find(|(w, t, _)| w == what && *t == 1).map_or(*secs, |r| r.2);
        s += &format!("| {what} | {threads} | {secs:.3e} | {:.2} |\n", one / secs);
    }
    s
}
