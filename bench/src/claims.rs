//! The complexity claims of papers 000–004 as data: one row of `bench/claims.csv` per claim
//! (embedded with `include_str!`, so the binary needs no file at run time), parsed and
//! validated by [`table`].
//!
//! A **slope** claim says cost ∝ x^a (ln x)^b as x grows, with x one of κ, d, nnz, 1/ε or the
//! thread count ([`Sweep`]), the cost one of the counts of [`Measure`], and a = `exponent`,
//! b = `log_power`. The runner measures the cost of each algorithm named in `algorithms` on
//! `problem` to `target`, and [`crate::fit`] fits the log-log slope and gives a verdict. A
//! **comparison** claim ([`Kind::Comparison`]) names exactly two algorithms `A;B` and says
//! that cost(A) < cost(B) at the largest x of the sweep; its exponent is unused (0).
//!
//! Columns of the CSV (all required, in any order):
//!
//! | column | meaning |
//! |---|---|
//! | `id` | stable kebab-case identifier |
//! | `kind` | `slope` or `comparison` |
//! | `paper` | `000`..`004` (see `docs/complexity.md`) |
//! | `authors` | the paper's authors, short |
//! | `source` | theorem / corollary / table / equation as the paper numbers it |
//! | `algorithms` | `;`-separated CLI names ([`ALGORITHMS`]) or linear-solver names ([`SOLVERS`]) |
//! | `sweep` | [`Sweep`] |
//! | `measure` | [`Measure`] |
//! | `unit` | [`Unit`]: calls, or samples (a batch of b counts b) |
//! | `convention` | [`Convention`]: how (∂x f, ∂y f) is counted |
//! | `exponent` | a in cost ∝ x^a (ln x)^b |
//! | `log_power` | b (0 if none) |
//! | `problem` | the generator family (a `bilevel problems` name) the claim is measured on |
//! | `target` | [`Target`]: `metric=value`, `metric=eps` (the swept ε) or `none` |
//! | `derived` | `yes` where the exponent or log power is our derivation (explained in `note`), else `no` |
//! | `note` | how the exponent was derived, units, what is held fixed, what to expect |

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;

/// The embedded table.
pub const CSV: &str = include_str!("../claims.csv");

/// Algorithm names a claim may list: the CLI's (`bilevel_solvers::algorithms::NAMES`).
pub const ALGORITHMS: &[&str] = bilevel_solvers::algorithms::NAMES;

/// Linear-solver names a per-solve claim may list.
pub const SOLVERS: &[&str] = &["cg", "gd", "fixed-point", "neumann"];

/// Paper numbers a claim may cite.
pub const PAPERS: &[&str] = &["000", "001", "002", "003", "004"];

/// The columns the CSV must have.
pub const COLUMNS: &[&str] = &[
    "id",
    "kind",
    "paper",
    "authors",
    "source",
    "algorithms",
    "sweep",
    "measure",
    "unit",
    "convention",
    "exponent",
    "log_power",
    "problem",
    "target",
    "derived",
    "note",
];

/// An error in the claims table, naming the CSV line (the header is line 1) and the column.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ClaimError {
    /// The CSV itself could not be read (quoting, ragged rows).
    #[error("claims table, line {line:?}: {message}")]
    Csv { line: Option<u64>, message: String },
    /// A required column is absent from the header.
    #[error("claims table: missing column `{column}`")]
    MissingColumn { column: &'static str },
    /// A required cell is empty.
    #[error("claims table, line {line}, column `{column}`: empty")]
    Empty { line: u64, column: &'static str },
    /// A cell holds a value outside its column's vocabulary.
    #[error("claims table, line {line}, column `{column}`: unknown value `{value}` (expected {expected})")]
    Unknown { line: u64, column: &'static str, value: String, expected: String },
    /// A numeric cell is not a finite number.
    #[error("claims table, line {line}, column `{column}`: `{value}` is not a finite number")]
    NotFinite { line: u64, column: &'static str, value: String },
    /// An id that is not kebab-case (lowercase ASCII letters and digits joined by single `-`).
    #[error("claims table, line {line}, column `id`: `{id}` is not kebab-case")]
    BadId { line: u64, id: String },
    /// An id used twice.
    #[error("claims table, line {line}, column `id`: duplicate `{id}` (first on line {first})")]
    DuplicateId { line: u64, id: String, first: u64 },
    /// A comparison row that does not name exactly two algorithms.
    #[error("claims table, line {line}, column `algorithms`: a comparison names exactly two, got {count}")]
    ComparisonArity { line: u64, count: usize },
}

macro_rules! vocabulary {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// Every value, in table order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The name used in the CSV.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            /// The value named `text` in the CSV.
            pub fn parse(text: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|v| v.as_str() == text)
            }

            fn expected() -> String {
                Self::ALL.iter().map(|v| format!("`{}`", v.as_str())).collect::<Vec<_>>().join(", ")
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

vocabulary! {
    /// What the claim sweeps (x in cost ∝ x^a (ln x)^b).
    Sweep {
        /// The condition number (κ_g, or κ = (1 − q)⁻¹ for a contraction).
        Kappa => "kappa",
        /// The dimension d.
        Dim => "dim",
        /// The number of non-zeros of the sparse data.
        Nnz => "nnz",
        /// The target accuracy: x = 1/ε, in the units the claim's `target` names.
        Epsilon => "epsilon",
        /// The thread count.
        Threads => "threads",
    }
}

vocabulary! {
    /// What cost is counted.
    Measure {
        /// Paper 000's eq. (8): gradients of f (per the convention) + ∂y g + HVPs + cross products.
        TotalCalls => "total_calls",
        /// Hessian-vector products ∂yy g·v.
        Hvp => "hvp",
        /// Gradients of f (per the convention).
        GradF => "grad_f",
        /// Gradients ∂y g.
        GradG => "grad_g",
        /// Cross products ∂x∂y g·v (paper 002's JV).
        Cross => "cross",
        /// Linear-solver iterations to a relative residual.
        SolveSteps => "solve_steps",
        /// Wall seconds per oracle call.
        SecondsPerOracle => "seconds_per_oracle",
    }
}

vocabulary! {
    /// Whether a count is of oracle calls or of the samples they touched.
    Unit {
        /// Oracle calls (a full-batch call counts 1).
        Calls => "calls",
        /// Samples (a call on a batch of b counts b): the stochastic papers' sample complexity.
        Samples => "samples",
    }
}

vocabulary! {
    /// How the upper-level gradients are counted.
    Convention {
        /// Paper 000's: a (∂x f, ∂y f) pair at one point is one call.
        Paired => "paired",
        /// Paper 002's Gc(f): ∂x f and ∂y f count separately.
        Separate => "separate",
    }
}

vocabulary! {
    /// What the runner does with the row.
    Kind {
        /// Fit one method's log-log slope and hold it against `exponent`.
        Slope => "slope",
        /// Compare two methods: cost(first) < cost(second) at the largest x.
        Comparison => "comparison",
    }
}

vocabulary! {
    /// The accuracy metric a cost is measured to.
    TargetMetric {
        /// (L(x_k) − L*)/(L(x_0) − L*).
        RelError => "rel_error",
        /// ‖∇L(x_k)‖ (norm units, paper 003).
        GradNorm => "grad_norm",
        /// ‖∇L(x_k)‖² (squared-norm units, papers 001, 002, 004).
        GradNormSq => "grad_norm_sq",
        /// ‖b − A v‖/‖b‖ of a linear solve.
        RelResidual => "rel_residual",
        /// No accuracy (per-oracle timings).
        None => "none",
    }
}

/// The accuracy a cost is measured to: a metric and its threshold, `None` for the swept ε (the
/// CSV's `metric=eps`) or where the metric is [`TargetMetric::None`].
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Target {
    /// The metric.
    pub metric: TargetMetric,
    /// The threshold; `None`: the swept ε (or no threshold).
    pub value: Option<f64>,
}

impl Target {
    fn parse(text: &str) -> Option<Target> {
        if text == "none" {
            return Some(Target { metric: TargetMetric::None, value: None });
        }
        let (metric, value) = text.split_once('=')?;
        let metric = TargetMetric::parse(metric).filter(|m| *m != TargetMetric::None)?;
        let value = match value {
            "eps" => None,
            v => Some(v.parse::<f64>().ok().filter(|v| v.is_finite() && *v > 0.0)?),
        };
        Some(Target { metric, value })
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.metric, self.value) {
            (TargetMetric::None, _) => f.write_str("none"),
            (m, None) => write!(f, "{m}=eps"),
            (m, Some(v)) => write!(f, "{m}={v:e}"),
        }
    }
}

/// One claim (one row of the table).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Claim {
    /// Stable kebab-case identifier.
    pub id: String,
    /// Slope or comparison.
    pub kind: Kind,
    /// `000`..`004`.
    pub paper: String,
    /// The paper's authors, short.
    pub authors: String,
    /// Theorem / corollary / table / equation, as the paper numbers it.
    pub source: String,
    /// CLI algorithm names or linear-solver names (in order: a comparison's first is claimed cheaper).
    pub algorithms: Vec<String>,
    /// What is swept.
    pub sweep: Sweep,
    /// What is counted.
    pub measure: Measure,
    /// Calls or samples.
    pub unit: Unit,
    /// How (∂x f, ∂y f) is counted.
    pub convention: Convention,
    /// a in cost ∝ x^a (ln x)^b.
    pub exponent: f64,
    /// b in cost ∝ x^a (ln x)^b.
    pub log_power: f64,
    /// The generator family.
    pub problem: String,
    /// The accuracy the cost is measured to.
    pub target: Target,
    /// Whether the exponent or log power is our derivation rather than the paper's statement.
    pub derived: bool,
    /// Derivation, units, what is held fixed.
    pub note: String,
}

/// The embedded table, parsed and validated.
pub fn table() -> Result<Vec<Claim>, ClaimError> {
    parse(CSV)
}

/// The claim with id `id` in the embedded table (`None` if absent or the table is invalid).
pub fn by_id(id: &str) -> Option<Claim> {
    table().ok()?.into_iter().find(|c| c.id == id)
}

/// Parses and validates a claims table in the format of `bench/claims.csv`: every column
/// present, unique kebab-case ids, a known paper and a non-empty source and authors, known
/// kind / sweep / measure / unit / convention / target, finite exponent and log power,
/// algorithms non-empty and each in [`ALGORITHMS`] or [`SOLVERS`], two of them on a comparison.
pub fn parse(text: &str) -> Result<Vec<Claim>, ClaimError> {
    let csv_error = |e: csv::Error| ClaimError::Csv { line: e.position().map(|p| p.line()), message: e.to_string() };
    let mut reader = csv::ReaderBuilder::new().has_headers(true).from_reader(text.as_bytes());
    let headers = reader.headers().map_err(csv_error)?.clone();
    let mut index = HashMap::new();
    for &column in COLUMNS {
        let i = headers.iter().position(|h| h.trim() == column).ok_or(ClaimError::MissingColumn { column })?;
        index.insert(column, i);
    }
    let mut claims = Vec::new();
    let mut first_line: HashMap<String, u64> = HashMap::new();
    for record in reader.records() {
        let record = record.map_err(csv_error)?;
        let line = record.position().map_or(0, |p| p.line());
        let cell = |column: &'static str| -> Result<&str, ClaimError> {
            let value = record.get(index[column]).unwrap_or("").trim();
            if value.is_empty() {
                Err(ClaimError::Empty { line, column })
            } else {
                Ok(value)
            }
        };
        let unknown = |column: &'static str, value: &str, expected: String| ClaimError::Unknown {
            line,
            column,
            value: value.to_string(),
            expected,
        };
        macro_rules! word {
            ($column:literal, $ty:ty) => {{
                let v = cell($column)?;
                <$ty>::parse(v).ok_or_else(|| unknown($column, v, <$ty>::expected()))?
            }};
        }
        let number = |column: &'static str| -> Result<f64, ClaimError> {
            let v = cell(column)?;
            v.parse::<f64>().ok().filter(|x| x.is_finite()).ok_or_else(|| ClaimError::NotFinite {
                line,
                column,
                value: v.to_string(),
            })
        };

        let id = cell("id")?.to_string();
        if !is_kebab(&id) {
            return Err(ClaimError::BadId { line, id });
        }
        if let Some(&first) = first_line.get(&id) {
            return Err(ClaimError::DuplicateId { line, id, first });
        }
        first_line.insert(id.clone(), line);
        let kind = word!("kind", Kind);
        let paper = cell("paper")?;
        if !PAPERS.contains(&paper) {
            return Err(unknown("paper", paper, PAPERS.join(", ")));
        }
        let algorithms: Vec<String> =
            cell("algorithms")?.split(';').map(|a| a.trim().to_string()).filter(|a| !a.is_empty()).collect();
        if algorithms.is_empty() {
            return Err(ClaimError::Empty { line, column: "algorithms" });
        }
        for a in &algorithms {
            if !ALGORITHMS.contains(&a.as_str()) && !SOLVERS.contains(&a.as_str()) {
                let expected = format!("one of {}; or a solver: {}", ALGORITHMS.join(", "), SOLVERS.join(", "));
                return Err(unknown("algorithms", a, expected));
            }
        }
        if kind == Kind::Comparison && algorithms.len() != 2 {
            return Err(ClaimError::ComparisonArity { line, count: algorithms.len() });
        }
        let target_text = cell("target")?;
        let target = Target::parse(target_text).ok_or_else(|| {
            unknown(
                "target",
                target_text,
                format!("`none` or `metric=value|eps` with metric {}", TargetMetric::expected()),
            )
        })?;
        let derived = match cell("derived")? {
            "yes" => true,
            "no" => false,
            v => return Err(unknown("derived", v, "`yes`, `no`".into())),
        };
        claims.push(Claim {
            id,
            kind,
            paper: paper.to_string(),
            authors: cell("authors")?.to_string(),
            source: cell("source")?.to_string(),
            algorithms,
            sweep: word!("sweep", Sweep),
            measure: word!("measure", Measure),
            unit: word!("unit", Unit),
            convention: word!("convention", Convention),
            exponent: number("exponent")?,
            log_power: number("log_power")?,
            problem: cell("problem")?.to_string(),
            target,
            derived,
            note: cell("note")?.to_string(),
        });
    }
    Ok(claims)
}

fn is_kebab(id: &str) -> bool {
    !id.is_empty()
        && id
            .split('-')
            .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
}
