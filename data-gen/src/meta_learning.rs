//! Few-shot meta-learning with a shared linear representation (the "hyper-representation"
//! problems of Grazzi, Pontil & Salzo, *Bilevel Optimization with a Lower-level Contraction*,
//! §7.2, and Ji, Yang & Liang, *Provably Faster Algorithms for Bilevel Optimization*, §5), in
//! the linear form where everything is exact:
//!
//! ```text
//! tasks t = 1..T share an embedding E ∈ R^{p×k} (the outer variable x = E, row-major);
//! each task has a head w_t ∈ R^k (the inner variable y = (w_1, …, w_T)), support data
//! (X_t ∈ R^{n_s×p}, y_t) and query data (X'_t ∈ R^{n_q×p}, y'_t). With z_i = Eᵀx_i, r_i = z_iᵀw_t − y_i:
//! g(E, w) = (1/|B|) Σ_{t∈B} [ (1/(2n_s)) Σ_{i∈support(t)} r_i² + (µ/2)‖w_t‖² ]   (ridge: µ-strongly convex in w)
//! f(E, w) = (1/|B|) Σ_{t∈B}   (1/(2n_q)) Σ_{i∈query(t)} r_i²
//! ∂w_t g = (1/|B|)[(1/n_s) Σ r_i z_i + µ w_t]           ∂E g = (1/|B|) Σ_t (1/n_s) Σ r_i x_i w_tᵀ
//! (∂ww g·v)_t = (1/|B|)[(1/n_s) Σ (z_iᵀv_t) z_i + µ v_t]   (block-diagonal over tasks)
//! ∂E∂w g·v = (1/|B|) Σ_t (1/n_s) Σ x_i (r_i v_t + (z_iᵀv_t) w_t)ᵀ
//! ```
//!
//! Mini-batches are sets of tasks (`Batch::Rows` holds task indices; f and g share them).
//! Heads of tasks outside the batch get zero gradient. Exact references (per task, a k×k
//! solve): w_t*(E) = (Z_tᵀZ_t/n_s + µI)⁻¹ Z_tᵀy_t/n_s, v*, L(E) and ∇L(E).
//!
//! # Generation (seeded `Xoshiro256PlusPlus`, in this order)
//! E* ∈ R^{p×k} with orthonormal columns (Haar), heads w_t* ~ N(0, I_k), inputs x ~ N(0, I_p),
//! targets y = x·E* w_t* + σ·ε with ε ~ N(0, 1): the tasks share the k-dimensional subspace
//! spanned by E*, which the outer problem has to find. Support rows of every task, then query
//! rows; then the held-out (meta-test) tasks, drawn last so that they do not change the
//! training tasks: their heads, support rows, query rows.
//!
//! # Metrics (outside the counted work)
//! `val_loss` = f(E, w) on every training task, `val_loss_at_optimum` = L(E), and
//! `test_loss_at_optimum`: the meta-test loss — on `n_test_tasks` held-out tasks, heads fitted
//! exactly to E on their support rows (the k×k ridge solve), loss on their query rows (the
//! regression counterpart of paper 001 §7.2's meta-test accuracy after the lower-level fit).
//!
//! The derivatives are the kernels' (`bilevel_kernels::models::embedding_ridge`, one task's
//! loss, a k ≤ [`MAX_K`] stack buffer per row). Batch indices are the caller's precondition
//! (an index ≥ n_tasks panics).
//!
//! # Parallelism (deterministic: the same bits with 1 or N threads)
//! - The heads' outputs (∂w f, ∂w g, the HVP) are disjoint per task: the head space is cut
//!   into fixed task ranges, and each range walks the batch in order and adds the
//!   contributions of its own tasks (a task repeated in a batch adds up in batch order). Every
//!   head slot therefore gets the same additions in the same order as the sequential loop:
//!   the bits do not depend on the cut, the thread count, or whether it ran in parallel.
//! - The sums over tasks (f, g, ∂E f, the cross product) cut the batch's positions into
//!   `blocks(|B|)` contiguous blocks ([`par::row_blocks`], at most [`BLOCKS`], a number that
//!   depends on |B| only; batches of fewer than 2·[`MIN_BLOCK_TASKS`] tasks are one block);
//!   block 0 accumulates into the output, block b ≥ 1 into its slot of a workspace sized at
//!   construction ((BLOCKS − 1)·p·k values behind a `Mutex`; scalars in a stack array), and the
//!   slots are added in block order. Blocks run in parallel (rayon, on the current pool) when
//!   the batch's work, |B|·rows·p·k, reaches [`MetaLearning::par_min_work`] (default
//!   [`PAR_MIN_WORK`], measured in docs/generators.md); the block structure is the same either
//!   way, so the threshold changes speed, never bits.
//! - No allocation per oracle call, except when two oracle calls on one problem overlap (from
//!   two threads, or a rayon job that runs an oracle while waiting inside another): the second
//!   one does not wait for the workspace (which could deadlock inside rayon) but allocates its
//!   own for that call.
//!
//! Error policy (the kernels' `BilevelProblem` doc): nothing here panics on the values of a
//! point. The oracles are sums of products, so a non-finite or overflowing E or w gives
//! non-finite outputs; the exact references solve a k×k Cholesky per task, and where it fails
//! (E non-finite, or so large that H_t overflows) the task's head is NaN, so y*, v*, L and ∇L
//! are NaN and the driver stops the run with a typed error (e.g. `amigo-gd` on the tiny preset
//! with 2000 iterations stops as Diverged; tests/catalog.rs calls every oracle at NaN, ±inf and
//! ±1e300).

use crate::dataset::{Array, Dataset, GeneratorInfo};
use crate::logreg_hpo::bounds::dense_gram_bound;
use crate::random_matrix::{gaussian_mat, haar_orthonormal};
use bilevel_kernels::models::embedding_ridge::EmbeddedRidge;
use bilevel_kernels::par;
use bilevel_kernels::{Batch, BilevelProblem, ExactReference, KernelError, ProblemConstants, ProblemMetrics, Result};
use faer::linalg::solvers::Solve;
use faer::{Mat, MatMut, MatRef};
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use rand_xoshiro::Xoshiro256PlusPlus;
use rayon::prelude::*;
use serde_json::{Map, Value};
use std::sync::{Mutex, TryLockError};

/// Catalogue entry.
pub const INFO: GeneratorInfo = GeneratorInfo {
    name: "meta_learning",
    summary: "few-shot meta-learning: shared linear embedding E (outer), per-task ridge heads (inner), exact",
    presets: &["tiny", "small", "default"],
};

/// Largest embedding dimension k (the per-row scratch lives on the stack).
pub const MAX_K: usize = bilevel_kernels::models::embedding_ridge::MAX_EMBED;

/// Most blocks a batch's sum over tasks is cut into (a constant, never the thread count).
pub const BLOCKS: usize = 8;

/// Fewest tasks per block: a batch of |B| tasks has clamp(|B| / MIN_BLOCK_TASKS, 1, BLOCKS) blocks.
pub const MIN_BLOCK_TASKS: usize = 4;

/// Default work (|B| × rows per task × p × k multiply-adds of one pass) from which an oracle's
/// blocks run in parallel: below it rayon's wake-up costs more than the second core saves
/// (measured on the 2-core machine, docs/generators.md).
pub const PAR_MIN_WORK: usize = 1 << 17;

/// Number of blocks of a batch of `len` tasks (depends on `len` only).
fn blocks(len: usize) -> usize {
    (len / MIN_BLOCK_TASKS).clamp(1, BLOCKS)
}

/// The workspace of the sums over tasks: (BLOCKS − 1) partial sums of length p·k. Cloning gives
/// a fresh one of the same size (without taking the lock).
#[derive(Debug)]
struct Workspace {
    len: usize,
    buf: Mutex<Vec<f64>>,
}

impl Workspace {
    fn new(len: usize) -> Self {
        Self { len, buf: Mutex::new(vec![0.0; len]) }
    }
}

impl Clone for Workspace {
    fn clone(&self) -> Self {
        Self::new(self.len)
    }
}

/// Parameters of the generator. `Default` = the `"default"` preset.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Config {
    /// Number of tasks T.
    pub n_tasks: usize,
    /// Input dimension p.
    pub dim_input: usize,
    /// Embedding dimension k (≤ [`MAX_K`]).
    pub dim_embed: usize,
    /// Support (training) samples per task.
    pub n_support: usize,
    /// Query (validation) samples per task.
    pub n_query: usize,
    /// Ridge µ of the heads (the strong-convexity constant of g per task, times 1/|B|).
    pub ridge: f64,
    /// Standard deviation σ of the target noise.
    pub noise: f64,
    /// Held-out (meta-test) tasks for the `test_loss_at_optimum` metric (0: no such metric).
    pub n_test_tasks: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            n_tasks: 200,
            dim_input: 100,
            dim_embed: 5,
            n_support: 10,
            n_query: 15,
            ridge: 0.1,
            noise: 0.1,
            n_test_tasks: 100,
        }
    }
}

impl Config {
    /// `"tiny"` (4 tasks, p = 6, k = 2, 3 test tasks), `"small"` (20 tasks, p = 20, k = 3, 20
    /// test tasks), `"default"` (200 tasks, p = 100, k = 5, 100 test tasks).
    pub fn preset(name: &str) -> Result<Self> {
        match name {
            "tiny" => Ok(Self {
                n_tasks: 4,
                dim_input: 6,
                dim_embed: 2,
                n_support: 5,
                n_query: 4,
                n_test_tasks: 3,
                ..Self::default()
            }),
            "small" => Ok(Self { n_tasks: 20, dim_input: 20, dim_embed: 3, n_test_tasks: 20, ..Self::default() }),
            "default" => Ok(Self::default()),
            _ => Err(INFO.unknown_preset(name)),
        }
    }

    /// Checks every parameter.
    pub fn validate(&self) -> Result<()> {
        let bad = |name: &'static str, reason: String| Err(KernelError::InvalidParameter { name, reason });
        for (name, v) in [
            ("n_tasks", self.n_tasks),
            ("dim_input", self.dim_input),
            ("dim_embed", self.dim_embed),
            ("n_support", self.n_support),
            ("n_query", self.n_query),
        ] {
            if v == 0 {
                return bad(name, "must be >= 1".into());
            }
        }
        if self.dim_embed > self.dim_input.min(MAX_K) {
            return bad("dim_embed", format!("must be <= min(dim_input, {MAX_K}), got {}", self.dim_embed));
        }
        if !(self.ridge.is_finite() && self.ridge > 0.0) {
            return bad("ridge", format!("must be finite and > 0 (strong convexity), got {:?}", self.ridge));
        }
        if !(self.noise.is_finite() && self.noise >= 0.0) {
            return bad("noise", format!("must be finite and >= 0, got {:?}", self.noise));
        }
        Ok(())
    }
}

/// One set of samples of every task, rows grouped by task: task t owns rows `t·n..(t+1)·n`.
#[derive(Clone, Debug, PartialEq)]
struct TaskData {
    n: usize,
    /// Row-major (T·n) × p.
    x: Vec<f64>,
    y: Vec<f64>,
}

/// The generated meta-learning problem.
#[derive(Clone, Debug)]
pub struct MetaLearning {
    config: Config,
    seed: u64,
    support: TaskData,
    query: TaskData,
    /// The held-out tasks' support and query rows.
    test_support: TaskData,
    test_query: TaskData,
    e_star: Mat<f64>,
    w_star: Vec<f64>,
    workspace: Workspace,
    par_min_work: usize,
    /// max_t of an upper bound on λ_max(X_tᵀX_t)/n_s over the support designs, computed once
    /// ([`crate::logreg_hpo::bounds::dense_gram_bound`]): the data part of `constants_at`.
    support_gram_max: f64,
}

/// Generates the problem (see the module doc).
pub fn generate(config: &Config, seed: u64) -> Result<MetaLearning> {
    config.validate()?;
    let (t, p, k) = (config.n_tasks, config.dim_input, config.dim_embed);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let e_star = haar_orthonormal(p, k, &mut rng)?;
    let w_star: Vec<f64> = (0..t * k).map(|_| StandardNormal.sample(&mut rng)).collect();
    let draw = |t: usize, w_star: &[f64], n: usize, rng: &mut Xoshiro256PlusPlus| {
        let x = gaussian_mat(t * n, p, rng);
        let mut xs = Vec::with_capacity(t * n * p);
        let mut ys = Vec::with_capacity(t * n);
        for row in 0..t * n {
            let task = row / n;
            xs.extend((0..p).map(|j| x[(row, j)]));
            let target: f64 =
                (0..k).map(|l| (0..p).map(|j| x[(row, j)] * e_star[(j, l)]).sum::<f64>() * w_star[task * k + l]).sum();
            let eps: f64 = StandardNormal.sample(rng);
            ys.push(target + config.noise * eps);
        }
        TaskData { n, x: xs, y: ys }
    };
    let support = draw(t, &w_star, config.n_support, &mut rng);
    let query = draw(t, &w_star, config.n_query, &mut rng);
    let tt = config.n_test_tasks;
    let w_test: Vec<f64> = (0..tt * k).map(|_| StandardNormal.sample(&mut rng)).collect();
    let test_support = draw(tt, &w_test, config.n_support, &mut rng);
    let test_query = draw(tt, &w_test, config.n_query, &mut rng);
    let workspace = Workspace::new((BLOCKS - 1) * p * k);
    let ns = config.n_support;
    let support_gram_max =
        support.x.chunks_exact(ns * p).map(|xt| dense_gram_bound(xt, ns, p) / ns as f64).fold(0.0, f64::max);
    Ok(MetaLearning {
        config: config.clone(),
        seed,
        support,
        query,
        test_support,
        test_query,
        e_star,
        w_star,
        workspace,
        par_min_work: PAR_MIN_WORK,
        support_gram_max,
    })
}

/// The standard deviation 1/√p of the starting embedding's entries.
pub fn x0_scale(config: &Config) -> f64 {
    1.0 / (config.dim_input as f64).sqrt()
}

/// The tasks at positions `range` of a batch (all tasks for `Batch::Full`), in order.
fn tasks(batch: Batch<'_>, range: std::ops::Range<usize>) -> impl Iterator<Item = usize> + '_ {
    let (full, rows) = match batch {
        Batch::Full => (range, &[][..]),
        Batch::Rows(r) => (0..0, &r[range]),
    };
    full.chain(rows.iter().copied())
}

impl MetaLearning {
    /// The generator's settings.
    pub fn config(&self) -> &Config {
        &self.config
    }
    /// The ground-truth embedding E* (p×k, orthonormal columns).
    pub fn e_star(&self) -> &Mat<f64> {
        &self.e_star
    }
    /// A seeded starting embedding: entries N(0, 1/p), the quadratics' law
    /// ([`gaussian_x0`](crate::quadratic::gaussian_x0)) scaled by [`x0_scale`].
    pub fn x0(&self, seed: u64) -> Vec<f64> {
        let s = x0_scale(&self.config);
        crate::quadratic::gaussian_x0(self.dim_x(), seed).into_iter().map(|v| s * v).collect()
    }

    /// The work from which oracles run their blocks in parallel (see the module doc).
    pub fn par_min_work(&self) -> usize {
        self.par_min_work
    }
    /// Sets the parallel threshold (0: always parallel when a batch has two blocks or more;
    /// `usize::MAX`: never). Changes the speed, never the results.
    pub fn with_par_min_work(mut self, work: usize) -> Self {
        self.par_min_work = work;
        self
    }

    fn k(&self) -> usize {
        self.config.dim_embed
    }

    /// Whether a pass over `len` tasks of `rows` rows each is worth running in parallel.
    fn parallel(&self, len: usize, rows: usize) -> bool {
        len.saturating_mul(rows).saturating_mul(self.dim_x()) >= self.par_min_work
    }

    /// Panics, naming it, on a batch index ≥ n_tasks (the caller's precondition), before a
    /// parallel pass that would otherwise skip it.
    fn check_rows(&self, batch: Batch<'_>) {
        if let Batch::Rows(r) = batch {
            let n = self.config.n_tasks;
            if let Some(&t) = r.iter().find(|&&t| t >= n) {
                panic!("batch index {t} out of range for {n} tasks");
            }
        }
    }

    /// out (T·k) = Σ over the batch's positions of `add(t, head_t)` (each call adds into the
    /// head of its task t). Parallel over fixed task ranges of the heads; the bits of every
    /// head do not depend on it (module doc).
    fn per_head(&self, batch: Batch<'_>, rows: usize, out: &mut [f64], add: impl Fn(usize, &mut [f64]) + Sync) {
        let (n, k) = (self.config.n_tasks, self.k());
        let len = batch.len(n);
        out.fill(0.0);
        if blocks(len) < 2 || !self.parallel(len, rows) {
            for t in tasks(batch, 0..len) {
                add(t, &mut out[t * k..(t + 1) * k]);
            }
            return;
        }
        self.check_rows(batch);
        let per = n.div_ceil(BLOCKS);
        out.par_chunks_mut(per * k).enumerate().for_each(|(c, heads)| {
            let lo = c * per;
            let hi = lo + heads.len() / k;
            match batch {
                Batch::Full => (lo..hi).for_each(|t| add(t, &mut heads[(t - lo) * k..(t - lo + 1) * k])),
                Batch::Rows(r) => r
                    .iter()
                    .filter(|&&t| (lo..hi).contains(&t))
                    .for_each(|&t| add(t, &mut heads[(t - lo) * k..(t - lo + 1) * k])),
            }
        });
    }

    /// out (p·k) = Σ over the batch's positions of `add(t, ·)` (each call adds into its
    /// argument), by blocks of positions summed in block order (module doc).
    fn sum_vec(&self, batch: Batch<'_>, rows: usize, out: &mut [f64], add: impl Fn(usize, &mut [f64]) + Sync) {
        let len = batch.len(self.config.n_tasks);
        let nb = blocks(len);
        out.fill(0.0);
        if nb < 2 {
            tasks(batch, 0..len).for_each(|t| add(t, out));
            return;
        }
        let dx = out.len();
        let (mut guard, mut local);
        let ws: &mut [f64] = match self.workspace.buf.try_lock() {
            Ok(g) => {
                guard = g;
                &mut guard[..]
            }
            Err(TryLockError::Poisoned(p)) => {
                guard = p.into_inner();
                &mut guard[..]
            }
            Err(TryLockError::WouldBlock) => {
                local = vec![0.0; (BLOCKS - 1) * dx];
                &mut local[..]
            }
        };
        let slots = &mut ws[..(nb - 1) * dx];
        slots.fill(0.0);
        let block = |b: usize, acc: &mut [f64]| {
            let r = par::row_blocks(len, nb).nth(b).expect("b < nb");
            tasks(batch, r).for_each(|t| add(t, acc));
        };
        if self.parallel(len, rows) {
            self.check_rows(batch);
            rayon::join(
                || block(0, out),
                || slots.par_chunks_mut(dx).enumerate().for_each(|(b, acc)| block(b + 1, acc)),
            );
        } else {
            block(0, out);
            slots.chunks_mut(dx).enumerate().for_each(|(b, acc)| block(b + 1, acc));
        }
        for acc in slots.chunks(dx) {
            out.iter_mut().zip(acc).for_each(|(o, a)| *o += a);
        }
    }

    /// Σ over the batch's positions of `value(t)`: per block in task order, the blocks' partial
    /// sums in block order (module doc).
    fn sum_scalar(&self, batch: Batch<'_>, rows: usize, value: impl Fn(usize) -> f64 + Sync) -> f64 {
        let len = batch.len(self.config.n_tasks);
        let nb = blocks(len);
        if nb < 2 {
            return tasks(batch, 0..len).map(&value).sum();
        }
        let mut partial = [0.0; BLOCKS];
        let block = |(b, s): (usize, &mut f64)| {
            let r = par::row_blocks(len, nb).nth(b).expect("b < nb");
            *s = tasks(batch, r).map(&value).sum();
        };
        if self.parallel(len, rows) {
            self.check_rows(batch);
            partial[..nb].par_iter_mut().enumerate().for_each(block);
        } else {
            partial[..nb].iter_mut().enumerate().for_each(block);
        }
        partial[..nb].iter().sum()
    }

    /// Task t's rows of `data` as the kernels' ridge model (ridge µ for g, 0 for f).
    fn task<'a>(&self, data: &'a TaskData, t: usize, ridge: f64) -> EmbeddedRidge<'a> {
        let (n, p) = (data.n, self.config.dim_input);
        EmbeddedRidge { x: &data.x[t * n * p..(t + 1) * n * p], y: &data.y[t * n..(t + 1) * n], p, k: self.k(), ridge }
    }
    fn support(&self, t: usize) -> EmbeddedRidge<'_> {
        self.task(&self.support, t, self.config.ridge)
    }
    fn query(&self, t: usize) -> EmbeddedRidge<'_> {
        self.task(&self.query, t, 0.0)
    }
    /// 1/|B| over tasks.
    fn scale(&self, batch: Batch<'_>) -> f64 {
        1.0 / batch.len(self.config.n_tasks) as f64
    }
    /// Head t of a per-task vector.
    fn head<'v>(&self, v: &'v [f64], t: usize) -> &'v [f64] {
        &v[t * self.k()..(t + 1) * self.k()]
    }

    /// Per task, w_t = H_t⁻¹ (rhs_t) with H_t = Z_tᵀZ_t/n_s + µI scaled by `h_scale`, where
    /// rhs_t = Z_tᵀy_t/n_s (`rhs = None`) or `rhs[t]`. A k×k Cholesky per task; if it fails
    /// (E non-finite: H_t is positive definite for every finite E since µ > 0), the task's head
    /// is NaN — the error policy's numerical-failure path, never a panic.
    /// Tasks are independent (disjoint heads, each with its own stack scratch): in parallel over
    /// fixed task ranges above the work threshold, the same bits either way.
    fn solve_heads(&self, e: &[f64], h_scale: f64, rhs: Option<&[f64]>, out: &mut [f64]) {
        let (n, k) = (self.config.n_tasks, self.k());
        let range = |(c, heads): (usize, &mut [f64])| {
            let per = n.div_ceil(BLOCKS);
            let (mut h, mut b) = ([0.0; MAX_K * MAX_K], [0.0; MAX_K]);
            let (h, b) = (&mut h[..k * k], &mut b[..k]);
            for (i, o) in heads.chunks_exact_mut(k).enumerate() {
                let t = c * per + i;
                self.support(t).normal_equations(e, h, b);
                h.iter_mut().for_each(|v| *v *= h_scale);
                if let Some(rhs) = rhs {
                    b.copy_from_slice(self.head(rhs, t));
                }
                match MatRef::from_column_major_slice(h, k, k).llt(faer::Side::Lower) {
                    Ok(llt) => {
                        o.copy_from_slice(b);
                        llt.solve_in_place(MatMut::from_column_major_slice_mut(o, k, 1));
                    }
                    Err(_) => o.fill(f64::NAN),
                }
            }
        };
        let chunk = n.div_ceil(BLOCKS) * k;
        if self.parallel(n, self.config.n_support) {
            out[..n * k].par_chunks_mut(chunk).enumerate().for_each(range);
        } else {
            out[..n * k].chunks_mut(chunk).enumerate().for_each(range);
        }
    }
}

impl BilevelProblem for MetaLearning {
    fn dim_x(&self) -> usize {
        self.config.dim_input * self.k()
    }
    fn dim_y(&self) -> usize {
        self.config.n_tasks * self.k()
    }
    fn n_samples_f(&self) -> usize {
        self.config.n_tasks
    }
    fn n_samples_g(&self) -> usize {
        self.config.n_tasks
    }
    fn f(&self, x: &[f64], y: &[f64], batch: Batch<'_>) -> f64 {
        let s = self.scale(batch);
        self.sum_scalar(batch, self.query.n, |t| s * self.query(t).value(x, self.head(y, t)))
    }
    fn g(&self, x: &[f64], y: &[f64], batch: Batch<'_>) -> f64 {
        let s = self.scale(batch);
        self.sum_scalar(batch, self.support.n, |t| s * self.support(t).value(x, self.head(y, t)))
    }
    fn grad_x_f(&self, x: &[f64], y: &[f64], batch: Batch<'_>, out: &mut [f64]) {
        let s = self.scale(batch);
        self.sum_vec(batch, 2 * self.query.n, out, |t, acc| self.query(t).grad_e(x, self.head(y, t), s, acc));
    }
    fn grad_y_f(&self, x: &[f64], y: &[f64], batch: Batch<'_>, out: &mut [f64]) {
        let s = self.scale(batch);
        self.per_head(batch, self.query.n, out, |t, o| self.query(t).grad_w(x, self.head(y, t), s, o));
    }
    fn grad_y_g(&self, x: &[f64], y: &[f64], batch: Batch<'_>, out: &mut [f64]) {
        let s = self.scale(batch);
        self.per_head(batch, self.support.n, out, |t, o| self.support(t).grad_w(x, self.head(y, t), s, o));
    }
    fn hvp(&self, x: &[f64], _y: &[f64], v: &[f64], batch: Batch<'_>, out: &mut [f64]) {
        let s = self.scale(batch);
        self.per_head(batch, self.support.n, out, |t, o| self.support(t).hvp_w(x, self.head(v, t), s, o));
    }
    fn cross(&self, x: &[f64], y: &[f64], v: &[f64], batch: Batch<'_>, out: &mut [f64]) {
        let s = self.scale(batch);
        self.sum_vec(batch, 2 * self.support.n, out, |t, acc| {
            self.support(t).cross_ew(x, self.head(y, t), self.head(v, t), s, acc)
        });
    }
    fn exact(&self) -> Option<&dyn ExactReference> {
        Some(self)
    }
    /// The x-independent constants: µ_g ≥ µ/T (full batch: the ridge of each head, times 1/T;
    /// the data part is positive semi-definite) and µ_g,sample = 0 (a sample is a task, and
    /// one task's g_t does not involve the other heads: its Hessian is zero on them; on its
    /// own head it is µ-strongly convex). L_g and the outer constants grow with ‖E‖: see
    /// [`constants_at`](Self::constants_at).
    fn constants(&self) -> ProblemConstants {
        ProblemConstants {
            mu_g: Some(self.config.ridge / self.config.n_tasks as f64),
            mu_g_sample: Some(0.0),
            ..Default::default()
        }
    }
    /// Bounds at E. The Hessian is block-diagonal over the heads; on a batch B of tasks head t
    /// gets (c_t/|B|)·H_t, c_t its count in B, with H_t = EᵀX_tᵀX_tE/n_s + µI and
    /// λ_max(EᵀX_tᵀX_tE) = ‖X_tE‖₂² ≤ ‖X_t‖₂²‖E‖₂². With S = max_t ‖X_t‖₂²/n_s (an upper
    /// bound computed once per task at construction: a dense Gram eigen-solve in
    /// min(n_s, p) dimensions, `logreg_hpo/bounds.rs`) and ‖E‖₂² = λ_max(EᵀE) (a k×k
    /// eigen-solve, raised by its rounding bound: O(p·k²) = O(k·dim x)):
    /// - full batch: µ_g = µ/T, L_g = (S·‖E‖₂² + µ)/T;
    /// - one task (g_t alone, |B| = 1): L_g,sample = S·‖E‖₂² + µ, µ_g,sample = 0 (see
    ///   [`constants`](Self::constants)).
    ///
    /// The Hessian does not depend on w. The bound is attained where E = u·e_1ᵀ with u the
    /// top right singular vector of the task with the largest ‖X_t‖₂²/n_s; for a generic E it
    /// is loose by at most max_t ‖X_t‖₂²‖E‖₂² / max_t ‖X_tE‖₂² (measured up to 3.4 for random E
    /// at the tiny preset, tests/constants_at.rs).
    fn constants_at(&self, x: &[f64]) -> Option<ProblemConstants> {
        let (t, p, k, mu) = (self.config.n_tasks as f64, self.config.dim_input, self.k(), self.config.ridge);
        let sample = self.support_gram_max * dense_gram_bound(x, p, k) + mu;
        Some(ProblemConstants {
            mu_g: Some(mu / t),
            l_g: Some(sample / t),
            l_g_sample: Some(sample),
            mu_g_sample: Some(0.0),
            ..Default::default()
        })
    }
    fn metrics(&self) -> Option<&dyn ProblemMetrics> {
        Some(self)
    }
}

impl MetaLearning {
    /// The meta-test loss at E: the mean over the held-out tasks of the query loss of the head
    /// fitted exactly to E on the task's support rows (NaN where the k×k Cholesky fails; NaN
    /// without test tasks). Per-task values in parallel, summed in task order.
    pub fn test_loss_at_optimum(&self, e: &[f64]) -> f64 {
        let (tt, k) = (self.config.n_test_tasks, self.k());
        let one = |t: usize| {
            let (mut h, mut b) = ([0.0; MAX_K * MAX_K], [0.0; MAX_K]);
            let (h, b) = (&mut h[..k * k], &mut b[..k]);
            self.task(&self.test_support, t, self.config.ridge).normal_equations(e, h, b);
            match MatRef::from_column_major_slice(h, k, k).llt(faer::Side::Lower) {
                Ok(llt) => {
                    llt.solve_in_place(MatMut::from_column_major_slice_mut(b, k, 1));
                    self.task(&self.test_query, t, 0.0).value(e, b)
                }
                Err(_) => f64::NAN,
            }
        };
        let values: Vec<f64> = if self.parallel(tt, self.config.n_support + self.config.n_query) {
            (0..tt).into_par_iter().map(one).collect()
        } else {
            (0..tt).map(one).collect()
        };
        values.iter().sum::<f64>() / tt as f64
    }
}

impl ProblemMetrics for MetaLearning {
    /// `val_loss`: the query loss f(E, w) on every task; `val_loss_at_optimum`: L(E) = f(E, w*(E)),
    /// the query loss of the heads fitted exactly to E; `test_loss_at_optimum` (with test
    /// tasks): the same on the held-out tasks ([`MetaLearning::test_loss_at_optimum`]).
    fn names(&self) -> &[&'static str] {
        if self.config.n_test_tasks > 0 {
            &["val_loss", "val_loss_at_optimum", "test_loss_at_optimum"]
        } else {
            &["val_loss", "val_loss_at_optimum"]
        }
    }
    fn evaluate(&self, x: &[f64], y: &[f64], out: &mut [f64]) {
        out[0] = self.f(x, y, Batch::Full);
        out[1] = ExactReference::value(self, x);
        if self.config.n_test_tasks > 0 {
            out[2] = self.test_loss_at_optimum(x);
        }
    }
}

impl ExactReference for MetaLearning {
    /// Per task w_t* = H_t⁻¹ Z_tᵀy_t/n_s.
    fn y_star(&self, x: &[f64], out: &mut [f64]) {
        self.solve_heads(x, 1.0, None, out);
    }
    /// v* = [∂ww g]⁻¹ ∂w f at (E, w*): per task (H_t/T)⁻¹ (∂w_t f).
    fn v_star(&self, x: &[f64], out: &mut [f64]) {
        let mut w = vec![0.0; self.dim_y()];
        self.y_star(x, &mut w);
        let mut q = vec![0.0; self.dim_y()];
        self.grad_y_f(x, &w, Batch::Full, &mut q);
        self.solve_heads(x, 1.0 / self.config.n_tasks as f64, Some(&q), out);
    }
    fn value(&self, x: &[f64]) -> f64 {
        let mut w = vec![0.0; self.dim_y()];
        self.y_star(x, &mut w);
        self.f(x, &w, Batch::Full)
    }
    /// ∇L(E) = ∂E f(E, w*) − ∂E∂w g(E, w*)·v*.
    fn hypergradient(&self, x: &[f64], out: &mut [f64]) {
        let mut w = vec![0.0; self.dim_y()];
        self.y_star(x, &mut w);
        let mut v = vec![0.0; self.dim_y()];
        self.v_star(x, &mut v);
        let mut cross = vec![0.0; self.dim_x()];
        self.grad_x_f(x, &w, Batch::Full, out);
        self.cross(x, &w, &v, Batch::Full, &mut cross);
        out.iter_mut().zip(&cross).for_each(|(o, c)| *o -= c);
    }
}

impl Dataset for MetaLearning {
    fn generator(&self) -> &'static str {
        INFO.name
    }
    fn parameters(&self) -> Map<String, Value> {
        crate::dataset::parameters_of(&self.config, Some(self.seed))
    }
    fn arrays(&self) -> Vec<Array> {
        let (t, p, k) = (self.config.n_tasks, self.config.dim_input, self.k());
        let (s, q) = (&self.support, &self.query);
        vec![
            Array::from_mat("E_star", self.e_star.as_ref()),
            Array::f64("W_star", vec![t, k], self.w_star.clone()),
            Array::f64("X_support", vec![t * s.n, p], s.x.clone()),
            Array::f64("y_support", vec![t * s.n], s.y.clone()),
            Array::f64("X_query", vec![t * q.n, p], q.x.clone()),
            Array::f64("y_query", vec![t * q.n], q.y.clone()),
            Array::f64("X_test_support", vec![self.config.n_test_tasks * s.n, p], self.test_support.x.clone()),
            Array::f64("y_test_support", vec![self.config.n_test_tasks * s.n], self.test_support.y.clone()),
            Array::f64("X_test_query", vec![self.config.n_test_tasks * q.n, p], self.test_query.x.clone()),
            Array::f64("y_test_query", vec![self.config.n_test_tasks * q.n], self.test_query.y.clone()),
        ]
    }
}
