//! The figures and the HTML page of `bilevel scaling`, on synthetic points, findings and
//! curves (no harness run).

use bilevel_bench::claims::{self, Claim, Kind};
use bilevel_bench::fit::FitOptions;
use bilevel_bench::scaling::measure::Curve;
use bilevel_bench::scaling::report::{self, Report};
use bilevel_bench::scaling::{html, plots, Point, Task};
use std::path::PathBuf;

fn claim(id: &str) -> Claim {
    claims::by_id(id).unwrap_or_else(|| panic!("claim `{id}` in the table"))
}

fn point(claim: &str, algorithm: &str, x: f64, seed: u64, reached: bool, cost: f64) -> Point {
    Point {
        task: Task { claim: claim.into(), algorithm: algorithm.into(), x, seed, claim_version: 0 },
        reached,
        cost,
        iterations: cost as u64,
        grad_x_f: 0,
        grad_y_f: 0,
        grad_y_g: 0,
        hvp: cost as u64,
        cross: 0,
        samples: 0,
        seconds: 1e-3,
        inner_steps: None,
        adjoint_steps: None,
        batch: None,
    }
}

/// cost = c·x^a at the x of a κ sweep, all reached.
fn sweep(claim: &str, algorithm: &str, a: f64, c: f64) -> Vec<Point> {
    [10.0, 100.0, 1e3, 1e4].iter().map(|&x| point(claim, algorithm, x, 0, true, c * f64::powf(x, a))).collect()
}

fn curve(figure: &str, algorithm: &str, rate: f64) -> Curve {
    let relative = figure.starts_with("deterministic");
    Curve {
        figure: figure.into(),
        algorithm: algorithm.into(),
        x_label: if relative { "oracle calls (paper 000 eq. (8))" } else { "samples of f and g" }.into(),
        y_label: if relative { "relative error (L(x) − L*)/(L(x0) − L*)" } else { "‖∇L(x)‖²" }.into(),
        points: (0..30).map(|k| ((k * 50) as f64, f64::powf(rate, k as f64))).collect(),
    }
}

struct Fixture {
    table: Vec<Claim>,
    points: Vec<Point>,
    report: Report,
    curves: Vec<Curve>,
}

fn fixture() -> Fixture {
    let table = claims::table().expect("the table parses");
    let mut points = Vec::new();
    points.extend(sweep("cg-sqrt-kappa", "cg", 0.5, 7.0));
    points.extend(sweep("gd-kappa", "gd", 1.0, 3.0));
    points.extend(sweep("amigo-kappa", "amigo-gd", 1.0, 20.0));
    points.extend(sweep("amigo-kappa", "amigo-cg", 0.5, 60.0));
    // One that never reached its target.
    for &x in &[10.0, 100.0, 1e3] {
        points.push(point("neumann-kappa", "neumann", x, 0, false, 1e5));
    }
    // A comparison, the first method unreached at the largest κ.
    let aid: Vec<Point> = sweep("aid-cg-beats-amigo-cg-large-kappa", "aid-cg", 0.2, 900.0);
    let last = aid.len() - 1;
    points.extend(aid.into_iter().enumerate().map(|(i, mut p)| {
        p.reached = i != last;
        p
    }));
    points.extend(sweep("aid-cg-beats-amigo-cg-large-kappa", "amigo-cg", 0.1, 500.0));
    let report = report::analyze(&table, &points, &FitOptions::default().with_resamples(200));
    let curves = vec![
        curve("deterministic-kappa-1e3", "amigo-cg", 0.5),
        curve("deterministic-kappa-1e3", "aid-gd", 0.9),
        curve("stochastic", "stocbio", 0.8),
        curve("stochastic", "sustain", 0.95),
    ];
    Fixture { table, points, report, curves }
}

fn out_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("bilevel-plots-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn well_formed(svg: &str) {
    assert!(svg.starts_with("<svg"), "starts with <svg: {}", &svg[..svg.len().min(80)]);
    assert!(svg.trim_end().ends_with("</svg>"), "ends with </svg>");
}

#[test]
fn one_svg_per_slope_claim_comparison_and_curve_figure() {
    let f = fixture();
    let dir = out_dir("all");
    let paths = plots::write_all(&dir, &f.table, &f.points, &f.report, &f.curves).expect("written");
    let names: Vec<String> = paths.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
    let expected = [
        "cg-sqrt-kappa.svg",
        "gd-kappa.svg",
        "amigo-kappa.svg",
        "neumann-kappa.svg",
        "aid-cg-beats-amigo-cg-large-kappa.svg",
        "deterministic-kappa-1e3.svg",
        "stochastic.svg",
    ];
    let mut sorted = names.clone();
    sorted.sort();
    let mut want: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(sorted, want);
    for p in &paths {
        assert_eq!(p.parent().unwrap(), dir.join("plots"));
        well_formed(&std::fs::read_to_string(p).unwrap());
    }
    let read = |name: &str| std::fs::read_to_string(dir.join("plots").join(name)).unwrap();
    for id in ["cg-sqrt-kappa", "gd-kappa", "amigo-kappa", "neumann-kappa", "aid-cg-beats-amigo-cg-large-kappa"] {
        let c = claim(id);
        let svg = read(&format!("{id}.svg"));
        assert_eq!(c.kind == Kind::Comparison, id.contains("beats"));
        assert!(svg.contains(&plots::x_label(&c)), "{id}: x label {}", plots::x_label(&c));
        assert!(svg.contains(&plots::y_label(&c)), "{id}: y label {}", plots::y_label(&c));
        assert!(svg.contains(id), "{id}: title");
        for a in f.points.iter().filter(|p| p.task.claim == id).map(|p| &p.task.algorithm) {
            assert!(svg.contains(a.as_str()), "{id}: algorithm {a}");
        }
    }
    // Units on the axes.
    assert!(read("cg-sqrt-kappa.svg").contains("linear-solver steps to rel. residual 1e-6"));
    assert!(read("amigo-kappa.svg").contains("oracle calls (paper 000 eq. (8))"));
    assert!(read("amigo-kappa.svg").contains("κ_g (condition number of ∂yy g)"));
    // The legend gives the measured slope against the claimed exponent.
    let cg = f.report.findings.iter().find(|x| x.claim.id == "cg-sqrt-kappa").unwrap();
    let slope = cg.fit.as_ref().expect("a fit on 4 exact points").slope;
    assert!((slope - 0.5).abs() < 1e-6);
    assert!(read("cg-sqrt-kappa.svg").contains("slope 0.5 [") && read("cg-sqrt-kappa.svg").contains("vs claimed 0.5"));
    // The comparison's title says who wins where; the unreached point is drawn and listed.
    let cmp = read("aid-cg-beats-amigo-cg-large-kappa.svg");
    assert!(cmp.contains("cheaper: amigo-cg at κ"), "who wins where");
    assert!(cmp.contains("Not reached") && cmp.contains("aid-cg at κ = 1e4"));
    // Convergence figures: labels and one line per algorithm.
    let det = read("deterministic-kappa-1e3.svg");
    assert!(det.contains("oracle calls (paper 000 eq. (8))") && det.contains("relative error"));
    assert!(det.contains("amigo-cg") && det.contains("aid-gd"));
    let sto = read("stochastic.svg");
    assert!(sto.contains("samples of f and g") && sto.contains("stocbio") && sto.contains("sustain"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_claim_that_never_reached_its_target_gets_a_plot_that_says_so() {
    let f = fixture();
    let figures = plots::figures(&f.table, &f.points, &f.report, &f.curves).unwrap();
    let neumann = figures.iter().find(|x| x.file == "neumann-kappa.svg").expect("a figure");
    well_formed(&neumann.svg);
    assert!(neumann.svg.contains("never reached the target"), "legend");
    assert!(neumann.svg.contains("No point reached the target"), "caption");
    assert!(neumann.svg.contains("neumann"));
    assert!(neumann.title.contains("neumann-kappa"));
}

#[test]
fn empty_inputs_give_no_files() {
    let dir = out_dir("empty");
    let table = claims::table().unwrap();
    let empty = Report { findings: Vec::new(), comparisons: Vec::new() };
    assert!(plots::write_all(&dir, &table, &[], &empty, &[]).unwrap().is_empty());
    assert!(plots::write_all(&dir, &[], &[], &empty, &[]).unwrap().is_empty());
    assert!(!dir.join("plots").exists());
    // A curve without a drawable point, points of claims not in the table: no panic.
    let stray = vec![point("no-such-claim", "cg", 10.0, 0, true, 5.0)];
    let flat = Curve { points: Vec::new(), ..curve("stochastic", "bsa", 0.5) };
    let paths = plots::write_all(&dir, &table, &stray, &empty, &[flat]).unwrap();
    assert_eq!(paths.len(), 1);
    let svg = std::fs::read_to_string(&paths[0]).unwrap();
    well_formed(&svg);
    assert!(svg.contains("No evaluated point to draw for: bsa"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn file_names_are_safe() {
    assert_eq!(plots::file_name("cg-sqrt-kappa"), "cg-sqrt-kappa.svg");
    assert_eq!(plots::file_name("../a b/ç"), "___a_b__.svg");
    assert_eq!(plots::file_name(""), "figure.svg");
}

#[test]
fn html_has_a_table_per_markdown_table_escapes_and_inlines_every_svg() {
    let f = fixture();
    let header = "# bilevel scaling report\n\n- date (UTC): today\n- command: `bilevel scaling --test-size`\n";
    let mut md = report::markdown(&f.report, header);
    md += "\n## Extra\n\nA paragraph with a <script>alert(1)</script> & more.\n\n| a | b |\n|---|---|\n| x<y | **bold** |\n";
    let tables = md.lines().filter(|l| l.trim_start().starts_with("|---")).count();
    assert!(tables >= 3, "the slope table, a comparison's and the extra one: {tables}");
    let figures = plots::figures(&f.table, &f.points, &f.report, &f.curves).unwrap();
    let page = html::render(&md, &plots::titled(&figures));
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert_eq!(page.matches("<table>").count(), tables);
    assert_eq!(page.matches("</table>").count(), tables);
    assert!(page.contains("<td>x&lt;y</td>"), "a cell's < escaped");
    assert!(page.contains("<strong>bold</strong>"));
    assert!(!page.contains("<script>"), "text escaped");
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; more"));
    assert!(page.contains("<h1>bilevel scaling report</h1>"));
    assert!(page.contains("<li>command: <code>bilevel scaling --test-size</code></li>"));
    assert!(page.contains("<h3><code>aid-cg-beats-amigo-cg-large-kappa</code>"));
    // Every SVG inline, under its title, after the tables.
    assert_eq!(page.matches("<svg").count(), figures.len());
    for fig in &figures {
        assert!(page.contains(&format!("<figcaption>{}</figcaption>", html::escape(&fig.title))));
    }
    let last_table = page.rfind("</table>").unwrap();
    assert!(page.find("<svg").unwrap() > last_table, "plots after the tables");
    // One file: nothing linked.
    assert!(!page.contains("src=") && !page.contains("href="), "self-contained");
    assert!(page.contains("<style>"));
    assert!(page.trim_end().ends_with("</html>"));
}

#[test]
fn html_of_an_empty_report() {
    let page = html::render("", &[]);
    assert!(page.contains("<title>bilevel scaling report</title>"));
    assert_eq!(page.matches("<svg").count(), 0);
    assert!(!page.contains("<h2>Plots</h2>"));
}
