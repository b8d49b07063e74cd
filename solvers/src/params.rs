//! Parameters as data: every number an algorithm runs with, resolved once before the run, with
//! where it comes from ([`Source`]): a theorem (and equation), a paper's experiment (and
//! section), our default (and why), the step-size search, or a user flag. The CLI prints the
//! list and writes it to the JSON output; the harness reads it; an algorithm's `step` never
//! recomputes a parameter.

use serde::Serialize;
use std::borrow::Cow;

/// Where a resolved number comes from.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", content = "cite", rename_all = "snake_case")]
pub enum Source {
    /// A theorem's prescription: "paper 002 Thm 3, eq. (10)".
    Theorem(Cow<'static, str>),
    /// A paper's experiment: "paper 000 §5.1".
    Experiments(Cow<'static, str>),
    /// Our default, and why: "1/L_g: the gradient step of an L_g-smooth function".
    Default(Cow<'static, str>),
    /// The seeded step-size search (`--steps search`): what it tried.
    Search(Cow<'static, str>),
    /// A user flag: "--outer-step".
    User(Cow<'static, str>),
    /// A constant of the problem (exact, a bound, or an estimate, as the text says).
    Problem(Cow<'static, str>),
}

impl Source {
    /// A theorem, by citation.
    pub fn theorem(cite: impl Into<Cow<'static, str>>) -> Self {
        Source::Theorem(cite.into())
    }
    /// A paper's experiment, by section.
    pub fn experiments(cite: impl Into<Cow<'static, str>>) -> Self {
        Source::Experiments(cite.into())
    }
    /// Our default, with its reason.
    pub fn default_because(why: impl Into<Cow<'static, str>>) -> Self {
        Source::Default(why.into())
    }
    /// A user flag.
    pub fn user(flag: impl Into<Cow<'static, str>>) -> Self {
        Source::User(flag.into())
    }
    /// The search.
    pub fn search(what: impl Into<Cow<'static, str>>) -> Self {
        Source::Search(what.into())
    }
    /// A problem constant.
    pub fn problem(what: impl Into<Cow<'static, str>>) -> Self {
        Source::Problem(what.into())
    }
    /// One word for the kind (the printed summary's column).
    pub fn kind(&self) -> &'static str {
        match self {
            Source::Theorem(_) => "theorem",
            Source::Experiments(_) => "experiments",
            Source::Default(_) => "default",
            Source::Search(_) => "search",
            Source::User(_) => "user",
            Source::Problem(_) => "problem",
        }
    }
    /// The citation or reason.
    pub fn text(&self) -> &str {
        match self {
            Source::Theorem(s)
            | Source::Experiments(s)
            | Source::Default(s)
            | Source::Search(s)
            | Source::User(s)
            | Source::Problem(s) => s,
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind(), self.text())
    }
}

/// A resolved value.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Value {
    /// A real number (a step size, a constant).
    Real(f64),
    /// A count (steps, a batch size).
    Count(usize),
    /// Counts in order (per-term Neumann batch sizes in application order).
    Counts(Vec<usize>),
    /// A rule in words (a schedule: "α_t = a/(w + t)^(1/3)").
    Text(String),
    /// On or off.
    Flag(bool),
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Real(v) => write!(f, "{v:.4e}"),
            Value::Count(n) => write!(f, "{n}"),
            Value::Counts(v) if v.len() > 8 => {
                let head: Vec<String> = v[..4].iter().map(usize::to_string).collect();
                write!(f, "[{}, …, {}] ({} terms)", head.join(", "), v[v.len() - 1], v.len())
            }
            Value::Counts(v) => {
                write!(f, "[{}]", v.iter().map(usize::to_string).collect::<Vec<_>>().join(", "))
            }
            Value::Text(s) => f.write_str(s),
            Value::Flag(b) => write!(f, "{b}"),
        }
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Real(v)
    }
}
impl From<usize> for Value {
    fn from(v: usize) -> Self {
        Value::Count(v)
    }
}
impl From<Vec<usize>> for Value {
    fn from(v: Vec<usize>) -> Self {
        Value::Counts(v)
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Flag(v)
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_string())
    }
}

/// One resolved parameter.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Param {
    /// The JSON key (`inner_step`, `neumann_batches`, ...).
    pub name: &'static str,
    /// What it is, with the paper's symbol: "α, the inner GD step".
    pub meaning: &'static str,
    /// The value.
    pub value: Value,
    /// Where it comes from.
    pub source: Source,
}

/// The resolved parameters of a run, in the order the algorithm uses them, and notes on what
/// the resolution assumed (a constant estimated at x_0, a bound that holds only along the run).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Params {
    /// The rule that resolved them (`default`, `experiments`, `theory`, `search`).
    pub rule: &'static str,
    /// The parameters.
    pub params: Vec<Param>,
    /// Notes (one sentence each).
    pub notes: Vec<String>,
}

impl Params {
    /// An empty list for `rule`.
    pub fn new(rule: &'static str) -> Self {
        Self { rule, params: Vec::new(), notes: Vec::new() }
    }
    /// Adds a parameter (replacing one of the same name: a user flag over a rule's value).
    pub fn set(&mut self, name: &'static str, meaning: &'static str, value: impl Into<Value>, source: Source) {
        let p = Param { name, meaning, value: value.into(), source };
        match self.params.iter_mut().find(|q| q.name == name) {
            Some(q) => *q = p,
            None => self.params.push(p),
        }
    }
    /// Adds a note.
    pub fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }
    /// The parameter named `name`.
    pub fn get(&self, name: &str) -> Option<&Param> {
        self.params.iter().find(|p| p.name == name)
    }
    /// The real value of `name` (None if absent or not a real).
    pub fn real(&self, name: &str) -> Option<f64> {
        match self.get(name)?.value {
            Value::Real(v) => Some(v),
            _ => None,
        }
    }
    /// The count `name` (None if absent or not a count).
    pub fn count(&self, name: &str) -> Option<usize> {
        match self.get(name)?.value {
            Value::Count(v) => Some(v),
            _ => None,
        }
    }
    /// The list as the CLI prints it: one line per parameter, then the notes.
    pub fn render(&self) -> String {
        let width = self.params.iter().map(|p| p.meaning.chars().count()).max().unwrap_or(0);
        let mut s = String::new();
        for p in &self.params {
            let pad = width - p.meaning.chars().count();
            s += &format!("  {}{} = {}   [{}]\n", p.meaning, " ".repeat(pad), p.value, p.source);
        }
        for n in &self.notes {
            s += &format!("  note: {n}\n");
        }
        s
    }
}
