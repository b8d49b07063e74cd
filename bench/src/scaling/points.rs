//! The measured points of a scaling run and their store on disk (`points.json`, `points.csv`),
//! rewritten after every point so an interrupted run loses nothing and `--resume` continues.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// What identifies a point: the same task measured twice is the same point.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Task {
    /// The claim's id (the theory table's `id`).
    pub claim: String,
    /// The algorithm or linear solver.
    pub algorithm: String,
    /// The sweep variable's value: κ, d, nnz, 1/ε or the thread count.
    pub x: f64,
    /// The seed (stochastic methods run several).
    pub seed: u64,
    /// A fingerprint of the claim's row ([`claim_version`]): a point measured for another
    /// version of the row (another target, measure or problem) is not this task's, and a
    /// resumed run measures it again.
    #[serde(default)]
    pub claim_version: u64,
}

impl Task {
    /// A key equal for equal tasks (x by its bits).
    pub fn key(&self) -> (String, String, u64, u64, u64) {
        (self.claim.clone(), self.algorithm.clone(), self.x.to_bits(), self.seed, self.claim_version)
    }
}

/// FNV-1a of the claim's row as the table parses it (stable across builds and platforms).
pub fn claim_version(claim: &crate::claims::Claim) -> u64 {
    let text = serde_json::to_string(claim).unwrap_or_default();
    text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// One measured point.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// What was measured.
    #[serde(flatten)]
    pub task: Task,
    /// Whether the target was reached within the budget (unreached points are kept, and left
    /// out of the fits).
    pub reached: bool,
    /// The claim's cost measure (oracle calls in its convention, steps, samples or seconds).
    pub cost: f64,
    /// Outer iterations (solver steps for the per-solve claims).
    pub iterations: u64,
    /// ∂x f, ∂y f, ∂y g, HVP and cross-product calls, and samples of f and g.
    pub grad_x_f: u64,
    /// ∂y f calls.
    pub grad_y_f: u64,
    /// ∂y g calls.
    pub grad_y_g: u64,
    /// HVPs.
    pub hvp: u64,
    /// Cross products.
    pub cross: u64,
    /// Samples of f and of g touched.
    pub samples: u64,
    /// Wall time of the measured work, seconds.
    pub seconds: f64,
    /// The inner and linear step counts of the best run of the grid, where one was searched.
    pub inner_steps: Option<usize>,
    /// See `inner_steps`.
    pub adjoint_steps: Option<usize>,
    /// The batch size of the best run, for stochastic methods.
    pub batch: Option<usize>,
}

/// The points of a run, kept in `dir`.
pub struct Store {
    dir: PathBuf,
    /// Every point so far, in measurement order.
    pub points: Vec<Point>,
    /// Points dropped when the store was opened because an earlier one had the same
    /// [`Task::key`] (a resumed run over a hand-edited or merged points.json): a point kept
    /// twice would count twice in its fit. The CLI warns with this count.
    pub duplicates_dropped: usize,
}

/// The largest points.json read back (a full run's is a few MiB): a guard against a file that
/// is not one (a link to a device, a huge stray file), refused before it is read.
pub const MAX_POINTS_BYTES: u64 = 1 << 30;

/// The text of `path`, a regular file of at most [`MAX_POINTS_BYTES`] (checked before
/// reading, and bounded while reading).
fn read_bounded(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let refuse =
        |why: String| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{}: {why}", path.display()));
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        return Err(refuse("not a regular file (a device, FIFO or directory)".into()));
    }
    if meta.len() > MAX_POINTS_BYTES {
        return Err(refuse(format!("{} bytes, more than the {MAX_POINTS_BYTES} a points file may have", meta.len())));
    }
    let mut text = String::new();
    std::fs::File::open(path)?.take(MAX_POINTS_BYTES + 1).read_to_string(&mut text)?;
    if text.len() as u64 > MAX_POINTS_BYTES {
        return Err(refuse(format!("more than the {MAX_POINTS_BYTES} bytes a points file may have")));
    }
    Ok(text)
}

impl Store {
    /// A store in `dir` (created); with `resume`, the points of an earlier run there, each
    /// task once (the first of duplicates kept, the rest counted in
    /// [`duplicates_dropped`](Self::duplicates_dropped)).
    pub fn open(dir: &Path, resume: bool) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("points.json");
        let mut points: Vec<Point> = if resume && path.exists() {
            serde_json::from_str(&read_bounded(&path)?)
                .map_err(|e| std::io::Error::other(format!("{}: {e}", path.display())))?
        } else {
            Vec::new()
        };
        let before = points.len();
        let mut seen = std::collections::HashSet::new();
        points.retain(|p| seen.insert(p.task.key()));
        let duplicates_dropped = before - points.len();
        let store = Self { dir: dir.to_path_buf(), points, duplicates_dropped };
        if store.duplicates_dropped > 0 {
            // The files say what the run holds, even if it measures nothing new.
            store.write()?;
        }
        Ok(store)
    }

    /// Whether `task` was measured.
    pub fn has(&self, task: &Task) -> bool {
        let key = task.key();
        self.points.iter().any(|p| p.task.key() == key)
    }

    /// Adds a point and rewrites both files (a temporary sibling renamed over each, so a
    /// crash mid-write leaves the previous version).
    pub fn push(&mut self, point: Point) -> std::io::Result<()> {
        self.points.push(point);
        self.write()
    }

    /// Keeps the points `keep` accepts and rewrites both files.
    pub fn retain(&mut self, keep: impl Fn(&Point) -> bool) -> std::io::Result<()> {
        self.points.retain(|p| keep(p));
        self.write()
    }

    fn write(&self) -> std::io::Result<()> {
        let json = serde_json::to_string_pretty(&self.points).map_err(std::io::Error::other)?;
        replace(&self.dir.join("points.json"), json.as_bytes())?;
        let mut w = csv::Writer::from_writer(Vec::new());
        for p in &self.points {
            w.serialize(CsvPoint::from(p)).map_err(std::io::Error::other)?;
        }
        let bytes = w.into_inner().map_err(|e| std::io::Error::other(e.to_string()))?;
        replace(&self.dir.join("points.csv"), &bytes)
    }
}

/// The CSV row of a point (the csv crate does not flatten).
#[derive(Serialize)]
struct CsvPoint<'a> {
    claim: &'a str,
    algorithm: &'a str,
    x: f64,
    seed: u64,
    reached: bool,
    cost: f64,
    iterations: u64,
    grad_x_f: u64,
    grad_y_f: u64,
    grad_y_g: u64,
    hvp: u64,
    cross: u64,
    samples: u64,
    seconds: f64,
    inner_steps: Option<usize>,
    adjoint_steps: Option<usize>,
    batch: Option<usize>,
}

impl<'a> From<&'a Point> for CsvPoint<'a> {
    fn from(p: &'a Point) -> Self {
        Self {
            claim: &p.task.claim,
            algorithm: &p.task.algorithm,
            x: p.task.x,
            seed: p.task.seed,
            reached: p.reached,
            cost: p.cost,
            iterations: p.iterations,
            grad_x_f: p.grad_x_f,
            grad_y_f: p.grad_y_f,
            grad_y_g: p.grad_y_g,
            hvp: p.hvp,
            cross: p.cross,
            samples: p.samples,
            seconds: p.seconds,
            inner_steps: p.inner_steps,
            adjoint_steps: p.adjoint_steps,
            batch: p.batch,
        }
    }
}

/// Writes `bytes` to `path` through a temporary sibling renamed over it.
pub fn replace(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}
