//! The SVG figures of a scaling run (`plots/` next to `report.md`), drawn with plotters'
//! SVG backend:
//!
//! - one figure per slope claim: the claim's cost against its swept x on log-log axes, one
//!   colour per algorithm (each seed's point that reached the target a filled dot, the median
//!   over seeds at each x joined by a line, a point that did not reach it a hollow circle at the
//!   top edge, listed in the caption), and the claimed growth x^a (ln x)^b as a dashed line
//!   through the geometric mean of each algorithm's reached points; the legend gives each
//!   algorithm's fitted slope and bootstrap interval against the claimed exponent;
//! - one figure per comparison claim: both methods' cost against x, the title saying who is
//!   cheaper where;
//! - one figure per convergence figure of `curves.json` (`deterministic-kappa-1e3`: relative
//!   error against oracle calls, log y, paper 000's Fig. 1–2 style; `stochastic`: ‖∇L‖²
//!   against samples, log-log), one line per algorithm.
//!
//! [`figures`] renders them in memory (for `report.html`), [`write()`] writes them, and
//! [`write_all`] does both.

use super::measure::Curve;
use super::points::Point;
use super::report::{median, Comparison, Finding, Report};
use crate::claims::{Claim, Kind, Measure, Sweep, TargetMetric, Unit};
use plotters::coord::ranged1d::{AsRangedCoord, Ranged, ValueFormatter};
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::{Path, PathBuf};

/// The figure size, pixels (height grows with the caption's lines).
pub const WIDTH: u32 = 800;
/// See [`WIDTH`].
pub const HEIGHT: u32 = 500;

const FONT: &str = "sans-serif";
// plotters draws a font of size s at s/1.24 px: these give 17, 13 and 12 px.
const TITLE_SIZE: u32 = 21;
const TEXT_SIZE: u32 = 16;
const SMALL_SIZE: u32 = 15;
/// Axis descriptions (15 px).
const AXIS_SIZE: u32 = 19;
const LINE: u32 = 17;
/// Characters of [`TEXT_SIZE`] text that fit across a figure (an average glyph ≈ 0.55 em).
const CHARS_PER_LINE: usize = 105;
/// Characters of the bold title that fit on its line.
const TITLE_CHARS: usize = 70;
/// Caption lines at most (the rest is summarised as "…").
const MAX_CAPTION_LINES: usize = 4;

/// The tab10 palette.
const COLORS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// One rendered figure.
#[derive(Clone, Debug, PartialEq)]
pub struct Figure {
    /// The file name under `plots/` (safe characters only, `.svg`).
    pub file: String,
    /// The title, as drawn at the top of the figure.
    pub title: String,
    /// The SVG document.
    pub svg: String,
}

/// Renders every figure of a run and writes each to `dir/plots/<file>.svg`; returns the paths
/// written (none, and no `plots/` folder, when there is nothing to plot).
pub fn write_all(
    dir: &Path,
    table: &[Claim],
    points: &[Point],
    report: &Report,
    curves: &[Curve],
) -> std::io::Result<Vec<PathBuf>> {
    write(dir, &figures(table, points, report, curves)?)
}

/// Writes `figures` to `dir/plots/` (created when there is at least one); returns the paths.
/// Other `.svg` files already in `dir/plots/` are removed: they are figures of an earlier run
/// into the same directory whose points are gone, and would sit beside the new report as if
/// they belonged to it.
pub fn write(dir: &Path, figures: &[Figure]) -> std::io::Result<Vec<PathBuf>> {
    let plots = dir.join("plots");
    if plots.is_dir() {
        for entry in std::fs::read_dir(&plots)? {
            let path = entry?.path();
            let ours = path.extension().is_some_and(|e| e == "svg");
            let kept = figures.iter().any(|f| path.file_name().is_some_and(|n| n == f.file.as_str()));
            if ours && !kept && path.is_file() {
                std::fs::remove_file(&path)?;
            }
        }
    }
    if figures.is_empty() {
        return Ok(Vec::new());
    }
    std::fs::create_dir_all(&plots)?;
    figures
        .iter()
        .map(|f| {
            let path = plots.join(&f.file);
            super::points::replace(&path, f.svg.as_bytes())?;
            Ok(path)
        })
        .collect()
}

/// `(title, svg)` pairs for [`super::html::render`].
pub fn titled(figures: &[Figure]) -> Vec<(String, String)> {
    figures.iter().map(|f| (f.title.clone(), f.svg.clone())).collect()
}

/// Renders the figures: the slope claims of `table` that have points (in table order), then
/// the comparisons, then the convergence figures (in the order of their first curve).
pub fn figures(table: &[Claim], points: &[Point], report: &Report, curves: &[Curve]) -> std::io::Result<Vec<Figure>> {
    let mut out = Vec::new();
    for kind in [Kind::Slope, Kind::Comparison] {
        for claim in table.iter().filter(|c| c.kind == kind) {
            let of_claim: Vec<&Point> = points.iter().filter(|p| p.task.claim == claim.id).collect();
            if of_claim.is_empty() {
                continue;
            }
            out.push(match kind {
                Kind::Slope => slope_figure(claim, &of_claim, &report.findings)?,
                Kind::Comparison => {
                    comparison_figure(claim, &of_claim, report.comparisons.iter().find(|c| c.claim.id == claim.id))?
                }
            });
        }
    }
    let mut ids: Vec<&str> = Vec::new();
    for c in curves {
        if !ids.contains(&c.figure.as_str()) {
            ids.push(&c.figure);
        }
    }
    for id in ids {
        let of_figure: Vec<&Curve> = curves.iter().filter(|c| c.figure == id).collect();
        if let Some(f) = curve_figure(id, &of_figure)? {
            out.push(f);
        }
    }
    Ok(out)
}

/// A file name from an id: ASCII letters, digits, `-` and `_` kept, anything else `_`.
pub fn file_name(id: &str) -> String {
    let stem: String =
        id.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
    format!("{}.svg", if stem.is_empty() { "figure" } else { &stem })
}

/// The x-axis label of a claim's sweep.
pub fn x_label(claim: &Claim) -> String {
    match claim.sweep {
        Sweep::Kappa if claim.measure == Measure::SolveSteps => {
            "κ (condition number of the SPD system, eigenvalues in [1/κ, 1])".into()
        }
        Sweep::Kappa if claim.problem == "stochastic_quadratic" => "κ_g = 1/µ_g (condition number of ∂yy g)".into(),
        Sweep::Kappa => "κ_g (condition number of ∂yy g)".into(),
        Sweep::Dim => "d (dimension of y; d_x = 2 d_y)".into(),
        Sweep::Nnz => "nnz (non-zeros of the sparse data)".into(),
        Sweep::Threads => "threads".into(),
        Sweep::Epsilon => {
            let metric = match claim.target.metric {
                TargetMetric::RelError => "relative error ≤ ε",
                TargetMetric::GradNorm => "‖∇L‖ ≤ ε",
                TargetMetric::GradNormSq => "‖∇L‖² ≤ ε",
                TargetMetric::RelResidual => "relative residual ≤ ε",
                TargetMetric::None => "ε",
            };
            format!("1/ε (target {metric})")
        }
    }
}

/// The y-axis label of a claim's cost.
pub fn y_label(claim: &Claim) -> String {
    let samples = claim.unit == Unit::Samples;
    let what = match claim.measure {
        Measure::TotalCalls if samples => return "samples of f and g".into(),
        Measure::TotalCalls => "oracle calls (paper 000 eq. (8))",
        Measure::Hvp => "Hessian-vector products ∂yy g·v",
        Measure::GradF => "gradients of f",
        Measure::GradG => "gradients ∂y g",
        Measure::Cross => "cross products ∂x∂y g·v",
        Measure::SolveSteps => {
            return match claim.target.value {
                Some(v) => format!("linear-solver steps to rel. residual {v:e}"),
                None => "linear-solver steps to rel. residual ε".into(),
            }
        }
        Measure::SecondsPerOracle => return "seconds per HVP".into(),
    };
    if samples {
        format!("{what} (samples)")
    } else {
        what.into()
    }
}

/// The short name of a sweep variable, for legends and captions.
fn sweep_symbol(sweep: Sweep) -> &'static str {
    match sweep {
        Sweep::Kappa => "κ",
        Sweep::Dim => "d",
        Sweep::Nnz => "nnz",
        Sweep::Epsilon => "1/ε",
        Sweep::Threads => "threads",
    }
}

fn claimed_growth(claim: &Claim) -> String {
    let x = sweep_symbol(claim.sweep);
    let x = if x.len() > 2 { format!("({x})") } else { x.to_string() };
    if claim.log_power != 0.0 {
        format!("{x}^{} (ln {x})^{}", claim.exponent, claim.log_power)
    } else {
        format!("{x}^{}", claim.exponent)
    }
}

/// A number as printed on the figures: 3 significant digits, exponent notation outside
/// [1e-2, 1e4).
fn number(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 1e4 || v.abs() < 1e-2 {
        let s = format!("{v:.2e}");
        // 1.00e3 → 1e3
        match s.split_once('e') {
            Some((m, e)) => format!("{}e{e}", m.trim_end_matches('0').trim_end_matches('.')),
            None => s,
        }
    } else {
        let s = format!("{v:.3}");
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        }
    }
}

/// A tick label of a log axis: 10 with a superscript exponent at powers of ten.
fn log_tick(v: &f64) -> String {
    let e = v.log10().round();
    if (v.log10() - e).abs() < 1e-9 && e.abs() < 100.0 {
        const SUP: [char; 10] = ['⁰', '¹', '²', '³', '⁴', '⁵', '⁶', '⁷', '⁸', '⁹'];
        let e = e as i32;
        let digits: String = e.unsigned_abs().to_string().chars().map(|d| SUP[d as usize - '0' as usize]).collect();
        format!("10{}{digits}", if e < 0 { "⁻" } else { "" })
    } else {
        number(*v)
    }
}

/// `[10^floor(log10 lo), 10^ceil(log10 hi)]`, at least one decade, over the finite positive
/// values (`[1, 10]` when there are none).
fn decades(values: impl IntoIterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.into_iter().filter(|v| v.is_finite() && *v > 0.0) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return (1.0, 10.0);
    }
    let (a, mut b) = (lo.log10().floor(), hi.log10().ceil());
    if b <= a {
        b = a + 1.0;
    }
    (10f64.powf(a), 10f64.powf(b))
}

/// Number of tick labels that puts one at every power of ten of a decade range.
fn ticks(range: (f64, f64)) -> usize {
    ((range.1 / range.0).log10().round() as usize + 1).max(2)
}

/// Greedy word wrap to `width` characters.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        let (n, w) = (line.chars().count(), word.chars().count());
        if n > 0 && n + 1 + w > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

fn plot_error(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(format!("plot: {e}"))
}

/// One algorithm's points of a claim, as drawn.
struct Series {
    name: String,
    /// Every reached point (x, cost), one per seed.
    reached: Vec<(f64, f64)>,
    /// The medians over reached seeds, by x.
    medians: Vec<(f64, f64)>,
    /// The x (and seed) of every point that did not reach the target.
    unreached: Vec<(f64, u64)>,
    /// Points in all.
    total: usize,
}

fn series(claim: &Claim, points: &[&Point]) -> Vec<Series> {
    let mut names: Vec<&str> = claim.algorithms.iter().map(String::as_str).collect();
    for p in points {
        if !names.contains(&p.task.algorithm.as_str()) {
            names.push(&p.task.algorithm);
        }
    }
    names
        .into_iter()
        .filter_map(|name| {
            let pts: Vec<&&Point> = points.iter().filter(|p| p.task.algorithm == name).collect();
            if pts.is_empty() {
                return None;
            }
            let ok = |p: &Point| p.reached && p.cost.is_finite() && p.cost > 0.0 && p.task.x > 0.0;
            let reached: Vec<(f64, f64)> = pts.iter().filter(|p| ok(p)).map(|p| (p.task.x, p.cost)).collect();
            let unreached: Vec<(f64, u64)> =
                pts.iter().filter(|p| !ok(p) && p.task.x > 0.0).map(|p| (p.task.x, p.task.seed)).collect();
            let mut xs: Vec<f64> = reached.iter().map(|r| r.0).collect();
            xs.sort_by(f64::total_cmp);
            xs.dedup();
            let medians = xs
                .iter()
                .filter_map(|&x| median(reached.iter().filter(|r| r.0 == x).map(|r| r.1).collect()).map(|m| (x, m)))
                .collect();
            Some(Series { name: name.to_string(), reached, medians, unreached, total: pts.len() })
        })
        .collect()
}

/// "cg at κ = 1e4 (seeds 0, 1), 1e5; gd at …" for the caption.
fn unreached_caption(claim: &Claim, series: &[Series]) -> Option<String> {
    let sym = sweep_symbol(claim.sweep);
    let parts: Vec<String> = series
        .iter()
        .filter(|s| !s.unreached.is_empty())
        .map(|s| {
            if s.reached.is_empty() {
                return format!("no point of {} reached the target ({} measured)", s.name, s.total);
            }
            let mut xs: Vec<f64> = s.unreached.iter().map(|u| u.0).collect();
            xs.sort_by(f64::total_cmp);
            xs.dedup();
            let at: Vec<String> = xs
                .iter()
                .map(|&x| {
                    let seeds: Vec<String> = s.unreached.iter().filter(|u| u.0 == x).map(|u| u.1.to_string()).collect();
                    if seeds.len() > 1 || s.total > s.medians.len() + xs.len() {
                        format!("{} (seed {})", number(x), seeds.join(", "))
                    } else {
                        number(x)
                    }
                })
                .collect();
            format!("{} at {sym} = {}", s.name, at.join(", "))
        })
        .collect();
    (!parts.is_empty())
        .then(|| format!("Not reached (hollow circles at the top edge, left out of the fits): {}.", parts.join("; ")))
}

/// How a legend entry is drawn.
#[derive(Clone, Copy)]
enum Swatch {
    /// A line with the series' marker.
    Line(usize),
    /// A dashed line (the claimed growth).
    Dashed,
    /// A hollow circle (a point that did not reach the target).
    Hollow,
}

/// One entry of a figure's legend.
struct Entry {
    label: String,
    color: RGBColor,
    swatch: Swatch,
}

/// Draws the marker of series `shape` at each of `at`, through `draw` (a chart's
/// `draw_series` or a drawing area's `draw`): filled circle, triangle, square, then a cross
/// and a plus, cycling. (One macro for both: plotters' dynamic elements need a `'static`
/// backend, and an SVG backend borrows its string.)
macro_rules! draw_marker {
    ($shape:expr, $color:expr, $at:expr, $draw:expr) => {{
        let color: RGBColor = $color;
        let (fill, stroke) = (color.filled(), color.stroke_width(2));
        match $shape % 5 {
            0 => $draw($at.map(|p| EmptyElement::at(p) + Circle::new((0, 0), 4, fill))),
            1 => $draw($at.map(|p| EmptyElement::at(p) + TriangleMarker::new((0, 0), 5, fill))),
            2 => $draw($at.map(|p| EmptyElement::at(p) + Rectangle::new([(-4, -4), (4, 4)], fill))),
            3 => $draw($at.map(|p| EmptyElement::at(p) + Cross::new((0, 0), 4, stroke))),
            _ => $draw($at.map(|p| {
                EmptyElement::at(p)
                    + PathElement::new(vec![(-5, 0), (5, 0)], stroke)
                    + PathElement::new(vec![(0, -5), (0, 5)], stroke)
            })),
        }
    }};
}

/// Pixels across one character of [`SMALL_SIZE`] legend text (an estimate: SVG text is laid
/// out by the viewer).
const LEGEND_CHAR: f64 = 7.4;
/// Pixels of a legend entry besides its text (swatch and gaps).
const LEGEND_SWATCH: u32 = 34;
/// Pixels between legend columns.
const LEGEND_GAP: u32 = 16;

/// The text bands of a figure: title and subtitle at the top, the chart, then the legend (in
/// columns, outside the plotting area so it never hides a point) and the caption.
struct Layout {
    title: String,
    subtitle: Vec<String>,
    legend: Vec<Entry>,
    caption: Vec<String>,
}

impl Layout {
    fn new(title: String, subtitle: &str, legend: Vec<Entry>, caption: &[String]) -> Self {
        // A title too long for one bold line continues at the head of the subtitle.
        let mut head = wrap(&title, TITLE_CHARS).into_iter();
        let first = head.next().unwrap_or_default();
        let rest: Vec<String> = head.collect();
        let subtitle = if rest.is_empty() { subtitle.to_string() } else { format!("{} {subtitle}", rest.join(" ")) };
        let subtitle = wrap(&subtitle, CHARS_PER_LINE);
        let title = first;
        let mut lines: Vec<String> = caption.iter().flat_map(|c| wrap(c, CHARS_PER_LINE)).collect();
        if lines.len() > MAX_CAPTION_LINES {
            lines.truncate(MAX_CAPTION_LINES);
            if let Some(last) = lines.last_mut() {
                last.push_str(" …");
            }
        }
        Self { title, subtitle, legend, caption: lines }
    }

    fn top(&self) -> u32 {
        10 + LINE + 8 + LINE * self.subtitle.len() as u32 + 4
    }

    /// Legend columns and their width, pixels.
    fn columns(&self) -> (usize, u32) {
        let widest = self.legend.iter().map(|e| e.label.chars().count()).max().unwrap_or(0);
        let width = (widest as f64 * LEGEND_CHAR).ceil() as u32 + LEGEND_SWATCH + LEGEND_GAP;
        let cols = ((WIDTH - 24) / width.max(1)).max(1) as usize;
        (cols.min(self.legend.len().max(1)), width)
    }

    fn legend_rows(&self) -> u32 {
        let (cols, _) = self.columns();
        self.legend.len().div_ceil(cols) as u32
    }

    fn bottom(&self) -> u32 {
        let legend = if self.legend.is_empty() { 0 } else { self.legend_rows() * LINE + 6 };
        let caption = if self.caption.is_empty() { 0 } else { LINE * self.caption.len() as u32 + 4 };
        legend + caption + 8
    }

    fn height(&self) -> u32 {
        let extra = self.subtitle.len().saturating_sub(1) as u32 * LINE + self.bottom();
        HEIGHT + extra.saturating_sub(2 * LINE)
    }

    /// Draws the text bands on `root` and returns the chart's area.
    fn draw<'a>(
        &self,
        root: &DrawingArea<SVGBackend<'a>, plotters::coord::Shift>,
    ) -> std::io::Result<DrawingArea<SVGBackend<'a>, plotters::coord::Shift>> {
        root.fill(&WHITE).map_err(plot_error)?;
        let title = (FONT, TITLE_SIZE).into_font().style(FontStyle::Bold).color(&BLACK);
        root.draw(&Text::new(self.title.clone(), (12, 8), title)).map_err(plot_error)?;
        let text = (FONT, TEXT_SIZE).into_font().color(&RGBColor(60, 60, 60));
        for (i, line) in self.subtitle.iter().enumerate() {
            let y = 10 + LINE as i32 + 8 + (i as u32 * LINE) as i32;
            root.draw(&Text::new(line.clone(), (12, y), text.clone())).map_err(plot_error)?;
        }
        let h = self.height();
        let mut y = (h - self.bottom()) as i32 + 4;
        let (cols, width) = self.columns();
        let small = (FONT, SMALL_SIZE).into_font().color(&BLACK);
        for (i, e) in self.legend.iter().enumerate() {
            let (col, row) = (i % cols, i / cols);
            let x = 14 + col as i32 * width as i32;
            let cy = y + row as i32 * LINE as i32 + (LINE as i32) / 2;
            match e.swatch {
                Swatch::Line(shape) => {
                    root.draw(&PathElement::new(vec![(x, cy), (x + 24, cy)], e.color.stroke_width(2)))
                        .map_err(plot_error)?;
                    draw_marker!(shape, e.color, Some((x + 12, cy)), |e: Option<_>| e
                        .map_or(Ok(()), |e| root.draw(&e)))
                    .map_err(plot_error)?;
                }
                Swatch::Dashed => {
                    root.draw(&DashedPathElement::new(vec![(x, cy), (x + 24, cy)], 6, 4, e.color.stroke_width(1)))
                        .map_err(plot_error)?;
                }
                Swatch::Hollow => {
                    root.draw(&Circle::new((x + 12, cy), 5, e.color.stroke_width(2))).map_err(plot_error)?;
                }
            }
            let style = small.clone().pos(Pos::new(HPos::Left, VPos::Center));
            root.draw(&Text::new(e.label.clone(), (x + LEGEND_SWATCH as i32 - 4, cy), style)).map_err(plot_error)?;
        }
        if !self.legend.is_empty() {
            y += (self.legend_rows() * LINE) as i32 + 6;
        }
        for (i, line) in self.caption.iter().enumerate() {
            let yy = y + (i as u32 * LINE) as i32;
            root.draw(&Text::new(line.clone(), (12, yy), text.clone())).map_err(plot_error)?;
        }
        let (_, rest) = root.split_vertically(self.top());
        let (chart, _) = rest.split_vertically(h - self.top() - self.bottom());
        Ok(chart)
    }
}

/// A chart on an SVG string.
type Chart<'b, 'a, X, Y> = ChartContext<'b, SVGBackend<'a>, Cartesian2d<X, Y>>;

/// A tick label of a linear axis.
fn linear_tick(v: &f64) -> String {
    number(*v)
}

/// A chart on `area` with the given axes, its mesh drawn (with a log axis's formatter, labels
/// at every power of ten).
fn chart<'a, 'b, X, Y>(
    area: &'b DrawingArea<SVGBackend<'a>, plotters::coord::Shift>,
    x: X,
    y: Y,
    labels: (&str, &str),
    counts: (usize, usize),
    x_format: &dyn Fn(&f64) -> String,
) -> std::io::Result<Chart<'b, 'a, X::CoordDescType, Y::CoordDescType>>
where
    X: AsRangedCoord<Value = f64>,
    Y: AsRangedCoord<Value = f64>,
    X::CoordDescType: Ranged<ValueType = f64> + ValueFormatter<f64>,
    Y::CoordDescType: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let mut chart = ChartBuilder::on(area)
        .margin_left(12)
        .margin_right(24)
        .margin_top(8)
        .margin_bottom(4)
        .x_label_area_size(48)
        .y_label_area_size(80)
        .build_cartesian_2d(x, y)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc(labels.0)
        .y_desc(labels.1)
        .x_labels(counts.0)
        .y_labels(counts.1)
        .x_label_formatter(x_format)
        .y_label_formatter(&log_tick)
        .axis_desc_style((FONT, AXIS_SIZE))
        .label_style((FONT, TEXT_SIZE))
        .light_line_style(RGBColor(238, 238, 238))
        .bold_line_style(RGBColor(212, 212, 212))
        .draw()
        .map_err(plot_error)?;
    Ok(chart)
}

fn finding<'r>(findings: &'r [Finding], claim: &str, algorithm: &str) -> Option<&'r Finding> {
    findings.iter().find(|f| f.claim.id == claim && f.algorithm == algorithm)
}

fn title_of(claim: &Claim) -> String {
    format!("{} — paper {} ({})", claim.id, claim.paper, claim.authors)
}

/// The legend entries of a cost plot: one per series, then the dashed reference and the
/// hollow markers where drawn.
fn cost_legend(claim: &Claim, series: &[Series], labels: Vec<String>, dashed: bool) -> Vec<Entry> {
    let mut legend: Vec<Entry> = labels
        .into_iter()
        .enumerate()
        .map(|(i, label)| Entry { label, color: COLORS[i % COLORS.len()], swatch: Swatch::Line(i) })
        .collect();
    if dashed {
        legend.push(Entry {
            label: format!("claimed ∝ {} through each method's geometric mean", claimed_growth(claim)),
            color: RGBColor(90, 90, 90),
            swatch: Swatch::Dashed,
        });
    }
    if series.iter().any(|s| !s.unreached.is_empty()) {
        legend.push(Entry {
            label: "did not reach the target (drawn at the top edge)".into(),
            color: RGBColor(90, 90, 90),
            swatch: Swatch::Hollow,
        });
    }
    legend
}

fn slope_figure(claim: &Claim, points: &[&Point], findings: &[Finding]) -> std::io::Result<Figure> {
    let series = series(claim, points);
    let label = |s: &Series| -> String {
        match finding(findings, &claim.id, &s.name).and_then(|f| f.fit.as_ref().map(|fit| (f, fit))) {
            Some((f, fit)) => format!(
                "{}: slope {} [{}, {}] vs claimed {}, {}",
                s.name,
                number(fit.slope),
                number(fit.lower),
                number(fit.upper),
                claim.exponent,
                f.verdict.replace('_', " ")
            ),
            None if s.reached.is_empty() => format!("{}: never reached the target (0/{}), no fit", s.name, s.total),
            None => format!("{}: no fit ({}/{} reached)", s.name, s.reached.len(), s.total),
        }
    };
    let mut caption = Vec::new();
    caption.extend(unreached_caption(claim, &series));
    if series.iter().all(|s| s.reached.is_empty()) {
        caption.push("No point reached the target: nothing to fit, no median line; the cost axis is nominal.".into());
    }
    let subtitle = format!(
        "{}. Claimed: cost ∝ {}. Medians over seeds joined; measure {} ({}).",
        claim.source,
        claimed_growth(claim),
        claim.measure.as_str(),
        claim.unit.as_str()
    );
    let refs: Vec<Vec<(f64, f64)>> = series.iter().map(|s| reference_line(claim, s)).collect();
    let dashed = refs.iter().any(|r| r.len() >= 2);
    let labels = series.iter().map(label).collect();
    let title = title_of(claim);
    let layout = Layout::new(title.clone(), &subtitle, cost_legend(claim, &series, labels, dashed), &caption);
    let svg = draw_cost_plot(claim, &layout, &series, &refs)?;
    Ok(Figure { file: file_name(&claim.id), title, svg })
}

/// The claimed growth c·x^a (ln x)^b through the geometric mean of the series' reached points,
/// at the x of its medians (x with ln x ≤ 0 left out where b ≠ 0).
fn reference_line(claim: &Claim, s: &Series) -> Vec<(f64, f64)> {
    let (a, b) = (claim.exponent, claim.log_power);
    let shape = |x: f64| -> Option<f64> {
        let l = x.ln();
        if b != 0.0 && l <= 0.0 {
            return None;
        }
        Some(a * l + if b != 0.0 { b * l.ln() } else { 0.0 })
    };
    let logs: Vec<f64> = s.reached.iter().filter_map(|&(x, c)| shape(x).map(|v| c.ln() - v)).collect();
    if logs.is_empty() || s.medians.len() < 2 {
        return Vec::new();
    }
    let offset = logs.iter().sum::<f64>() / logs.len() as f64;
    s.medians.iter().filter_map(|&(x, _)| shape(x).map(|v| (x, (offset + v).exp()))).collect()
}

/// The log-log cost chart shared by slope and comparison figures.
fn draw_cost_plot(
    claim: &Claim,
    layout: &Layout,
    series: &[Series],
    refs: &[Vec<(f64, f64)>],
) -> std::io::Result<String> {
    let xr = decades(series.iter().flat_map(|s| s.reached.iter().map(|r| r.0).chain(s.unreached.iter().map(|u| u.0))));
    let mut ys: Vec<f64> = series.iter().flat_map(|s| s.reached.iter().map(|r| r.1)).collect();
    ys.extend(refs.iter().flatten().map(|r| r.1));
    let yr = decades(ys);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, layout.height())).into_drawing_area();
        let area = layout.draw(&root)?;
        let (x_axis, y_axis) = (x_label(claim), y_label(claim));
        let padded = pad(xr);
        let mut chart = chart(
            &area,
            (padded.0..padded.1).log_scale(),
            (yr.0..yr.1).log_scale(),
            (&x_axis, &y_axis),
            (ticks(xr), ticks(yr)),
            &log_tick,
        )?;
        for (i, r) in refs.iter().enumerate() {
            if r.len() >= 2 {
                let color = COLORS[i % COLORS.len()].mix(0.75);
                chart
                    .draw_series(DashedLineSeries::new(r.iter().copied(), 7, 5, color.stroke_width(1)))
                    .map_err(plot_error)?;
            }
        }
        for (i, s) in series.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            chart.draw_series(LineSeries::new(s.medians.iter().copied(), color.stroke_width(2))).map_err(plot_error)?;
            draw_marker!(i, color, s.reached.iter().copied(), |e| chart.draw_series(e).map(|_| ()))
                .map_err(plot_error)?;
            chart
                .draw_series(s.unreached.iter().map(|&(x, _)| Circle::new((x, yr.1), 5, color.stroke_width(2))))
                .map_err(plot_error)?;
        }
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

/// A log range widened by a quarter decade on each side, so end markers are not cut.
fn pad(r: (f64, f64)) -> (f64, f64) {
    (r.0 / 10f64.powf(0.25), r.1 * 10f64.powf(0.25))
}

fn comparison_figure(claim: &Claim, points: &[&Point], comparison: Option<&Comparison>) -> std::io::Result<Figure> {
    let series = series(claim, points);
    let sym = sweep_symbol(claim.sweep);
    let first = claim.algorithms[0].as_str();
    let second = claim.algorithms.get(1).map_or("?", String::as_str);
    // Who wins where, from the medians at each x (the report's rows where given).
    let rows: Vec<(f64, Vec<Option<f64>>)> = match comparison {
        Some(c) => c.rows.clone(),
        None => {
            let mut xs: Vec<f64> = points.iter().map(|p| p.task.x).collect();
            xs.sort_by(f64::total_cmp);
            xs.dedup();
            let at = |a: &str, x: f64| {
                series.iter().find(|s| s.name == a).and_then(|s| s.medians.iter().find(|m| m.0 == x).map(|m| m.1))
            };
            xs.iter().map(|&x| (x, claim.algorithms.iter().map(|a| at(a, x)).collect())).collect()
        }
    };
    let mut wins: Vec<(String, Vec<String>)> = Vec::new();
    for (x, costs) in &rows {
        let w = match (costs.first().copied().flatten(), costs.get(1).copied().flatten()) {
            (Some(a), Some(b)) if a < b => first.to_string(),
            (Some(_), Some(_)) | (None, Some(_)) => second.to_string(),
            (Some(_), None) => first.to_string(),
            (None, None) => "neither reached the target".to_string(),
        };
        match wins.last_mut() {
            Some((who, at)) if *who == w => at.push(number(*x)),
            _ => wins.push((w, vec![number(*x)])),
        }
    }
    let wins: Vec<String> = wins.iter().map(|(w, at)| format!("{w} at {sym} = {}", at.join(", "))).collect();
    let verdict = comparison.map_or("not analysed", |c| c.verdict.as_str());
    let title = format!(
        "{}: {}",
        claim.id,
        if wins.is_empty() {
            "no point reached the target".to_string()
        } else {
            format!("cheaper: {}", wins.join("; "))
        }
    );
    let subtitle = format!(
        "Paper {} ({}), {}. Claimed: {first} cheaper than {second} at large {sym}: {verdict}. Median {} ({}) over seeds.",
        claim.paper,
        claim.authors,
        claim.source,
        claim.measure.as_str(),
        claim.unit.as_str()
    );
    let mut caption = Vec::new();
    caption.extend(unreached_caption(claim, &series));
    let labels = series
        .iter()
        .map(|s| {
            let role = if s.name == first { format!(" (claimed cheaper at large {sym})") } else { String::new() };
            format!("{}{role}: {}/{} points reached the target", s.name, s.reached.len(), s.total)
        })
        .collect();
    let layout = Layout::new(title.clone(), &subtitle, cost_legend(claim, &series, labels, false), &caption);
    let svg = draw_cost_plot(claim, &layout, &series, &[])?;
    Ok(Figure { file: file_name(&claim.id), title, svg })
}

/// The title, subtitle and whether the x axis is logarithmic, by figure id (`x` and `y`: the
/// curves' axis labels).
fn curve_title(id: &str, x: &str, y: &str) -> (String, String, bool) {
    match id {
        "deterministic-kappa-1e3" => (
            "Convergence on the F.1 quadratic, κ_g = 1e3".into(),
            format!(
                "{y} against {x}, log y, in the style of paper 000 (Arbel & Mairal) Fig. 1–2; \
                 experiments step rule, one run per method."
            ),
            false,
        ),
        "stochastic" => (
            "Stochastic methods on the stochastic quadratic".into(),
            format!("{y} against {x}, log-log; batches of 16, seed 0, experiments step rule."),
            true,
        ),
        other => (format!("Convergence: {other}"), format!("{y} against {x}."), !other.starts_with("deterministic")),
    }
}

/// At most `n` indices of `len`, evenly spaced, shifted by `phase` ∈ [0, 1) of a step.
fn spaced(len: usize, n: usize, phase: f64) -> Vec<usize> {
    if len == 0 {
        return Vec::new();
    }
    let step = (len as f64 / n as f64).max(1.0);
    let mut out: Vec<usize> = (0..).map(|k| ((k as f64 + phase) * step) as usize).take_while(|&i| i < len).collect();
    out.dedup();
    out
}

fn curve_figure(id: &str, curves: &[&Curve]) -> std::io::Result<Option<Figure>> {
    let Some(first) = curves.first() else { return Ok(None) };
    let (title, subtitle, log_x) = curve_title(id, &first.x_label, &first.y_label);
    let mut chars = subtitle.chars();
    let subtitle: String = chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default();
    let lines: Vec<(&str, Vec<(f64, f64)>)> = curves
        .iter()
        .map(|c| {
            let keep = |&(x, y): &(f64, f64)| {
                x.is_finite() && y.is_finite() && y > 0.0 && if log_x { x > 0.0 } else { x >= 0.0 }
            };
            (c.algorithm.as_str(), c.points.iter().copied().filter(keep).collect())
        })
        .collect();
    let empty: Vec<&str> = lines.iter().filter(|l| l.1.is_empty()).map(|l| l.0).collect();
    let mut caption = Vec::new();
    if !empty.is_empty() {
        caption.push(format!("No evaluated point to draw for: {}.", empty.join(", ")));
    }
    let legend = lines
        .iter()
        .enumerate()
        .map(|(i, l)| Entry { label: l.0.to_string(), color: COLORS[i % COLORS.len()], swatch: Swatch::Line(i) })
        .collect();
    let layout = Layout::new(title.clone(), &subtitle, legend, &caption);
    let xs = lines.iter().flat_map(|l| l.1.iter().map(|p| p.0));
    let yr = decades(lines.iter().flat_map(|l| l.1.iter().map(|p| p.1)));
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, layout.height())).into_drawing_area();
        let area = layout.draw(&root)?;
        let labels = (first.x_label.as_str(), first.y_label.as_str());
        if log_x {
            let xr = decades(xs);
            let (x, y) = ((xr.0..xr.1).log_scale(), (yr.0..yr.1).log_scale());
            let mut chart = chart(&area, x, y, labels, (ticks(xr), ticks(yr)), &log_tick)?;
            draw_lines(&mut chart, &lines)?;
        } else {
            let hi = xs.fold(0.0f64, f64::max);
            let hi = if hi > 0.0 { hi * 1.02 } else { 1.0 };
            let mut chart = chart(&area, 0.0..hi, (yr.0..yr.1).log_scale(), labels, (8, ticks(yr)), &linear_tick)?;
            draw_lines(&mut chart, &lines)?;
        }
        root.present().map_err(plot_error)?;
    }
    Ok(Some(Figure { file: file_name(id), title, svg }))
}

/// One line per algorithm, with its marker at up to 16 of its points (staggered between
/// algorithms, so lines drawn on top of each other stay visible).
fn draw_lines<'a, 'b: 'a, X, Y>(
    chart: &mut Chart<'a, 'b, X, Y>,
    lines: &[(&str, Vec<(f64, f64)>)],
) -> std::io::Result<()>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    let n = lines.len().max(1);
    for (i, (_, pts)) in lines.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        chart.draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2))).map_err(plot_error)?;
        let at = spaced(pts.len(), 16, i as f64 / n as f64);
        draw_marker!(i, color, at.iter().map(|&k| pts[k]), |e| chart.draw_series(e).map(|_| ())).map_err(plot_error)?;
    }
    Ok(())
}
