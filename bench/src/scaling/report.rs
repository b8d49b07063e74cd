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
    /// Per x: the median, smallest and largest cost over the seeds that reached the target,
    /// how many reached it and how many ran.
    pub per_x: Vec<Spread>,
}

/// The spread of one x over the seeds.
#[derive(Clone, Debug, Serialize)]
pub struct Spread {
    /// The swept value.
    pub x: f64,
    /// Median cost of the reached seeds (`None`: none reached).
    pub median: Option<f64>,
    /// Smallest cost of the reached seeds.
    pub min: Option<f64>,
    /// Largest cost of the reached seeds.
    pub max: Option<f64>,
    /// Seeds that reached the target.
    pub reached: usize,
    /// Seeds run.
    pub runs: usize,
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

/// The median of `v` (the mean of the middle two for an even count; `None` when empty).
pub fn median(mut v: Vec<f64>) -> Option<f64> {
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
    let mut xs: Vec<f64> = pts.iter().map(|p| p.task.x).collect();
    xs.sort_by(f64::total_cmp);
    xs.dedup();
    let per_x = xs
        .into_iter()
        .map(|x| {
            let at: Vec<&&&Point> = pts.iter().filter(|p| p.task.x == x).collect();
            let costs: Vec<f64> = at.iter().filter(|p| p.reached).map(|p| p.cost).collect();
            Spread {
                x,
                median: median(costs.clone()),
                min: costs.iter().copied().reduce(f64::min),
                max: costs.iter().copied().reduce(f64::max),
                reached: costs.len(),
                runs: at.len(),
            }
        })
        .collect();
    Finding {
        claim: claim.clone(),
        algorithm: algorithm.to_string(),
        points: pts.len(),
        reached,
        fit,
        verdict,
        reason,
        per_x,
    }
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
    if v.fract() == 0.0 && v.abs() < 1e4 {
        format!("{v}")
    } else if v.abs() >= 1e4 || (v != 0.0 && v.abs() < 1e-2) {
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
          (cost ∝ x^a (ln x)^b with the claim's b), the interval a 95% residual bootstrap \
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
    let seeded: Vec<&Finding> = report.findings.iter().filter(|f| f.per_x.iter().any(|p| p.runs > 1)).collect();
    if !seeded.is_empty() {
        s += "\n## Seeds\n\nFor the stochastic methods, per swept value: the median cost over the seeds that \
              reached the target, [smallest, largest], and how many of the seeds reached it.\n\n";
        s += "| claim | method | per x: median [min, max] (reached/runs) |\n|---|---|---|\n";
        for f in seeded {
            let cells: Vec<String> = f
                .per_x
                .iter()
                .map(|p| match (p.median, p.min, p.max) {
                    (Some(m), Some(lo), Some(hi)) => {
                        format!(
                            "x = {}: {} [{}, {}] ({}/{})",
                            number(p.x),
                            number(m),
                            number(lo),
                            number(hi),
                            p.reached,
                            p.runs
                        )
                    }
                    _ => format!("x = {}: — (0/{})", number(p.x), p.runs),
                })
                .collect();
            s += &format!("| `{}` | {} | {} |\n", f.claim.id, f.algorithm, cells.join("; "));
        }
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
