//! `peers`: the Rust side of the side-by-side comparison with NumPy/SciPy and JAX
//! (`bench/peers/`, issue 11; docs/performance.md).
//!
//! It loads a quadratic directory written by `bilevel export --problem quadratic` (the same
//! files the Python sides load), writes the starting point `x0.npy` there (the catalogue's
//! `x0(seed)` for the manifest's seed, which `bilevel hypergrad/solve --problem-dir` then also
//! use), runs the library's computations on a rayon pool of `--threads` threads and writes one
//! JSON of median times, oracle counts and result vectors (as `.npy` beside it) for
//! `bench/peers/compare.py` to check against the Python runs.
//!
//! ```text
//! peers hypergrad --dir D --out P [--threads n] [--repeats r] [--inner-steps T] [--lin-steps N]
//! peers amigo     --dir D --out P [--threads n] [--repeats r] [--inner-steps T] [--lin-steps N]
//!                 [--target ε] [--max-iters K]
//! peers logistic  --dir D --out P [--threads n] [--repeats r]
//! peers stocbio   --dir D --out P [--repeats r] [--inner-steps T] [--lin-steps Q] [--batch B]
//!                 [--iters K]
//! ```
//! `hypergrad`: one AID-CG hypergradient at x0 exactly as `bilevel hypergrad --method aid-cg`
//! computes it (T GD steps on g from y = 0 with step 1/L_g, B_g x hoisted; N CG steps on
//! A_g v = ∂y f from 0; ∂x f − B_gᵀ v); writes `P.json` and `P_hypergradient.npy`.
//! `amigo`: AmIGO-CG (warm-started y and v) with the experiments rule α = β = 1/L_g,
//! γ = 1/L_L, run once with the driver's target test ((L(x_k) − L*)/(L(x_0) − L*) ≤ ε,
//! checked after every step, outside the timing) to find the iteration count K, then timed
//! over exactly K steps (`--repeats` times, median); writes `P.json` and `P_x.npy` (x_K).
//! L_g and L_L are the manifest's prescribed `l_g` and `l_f` (the generator's λ_max(A_g),
//! λ_max(A_f); 1 by default), so every side uses the same steps without an eigen-solve.
//! `logistic`: on a `bilevel export --problem text` directory (CSR `X_train`, labels
//! `y_train`), the Hessian-vector products of the kernels' logistic models at a seeded point:
//! binary (labels +1 for an even class, −1 for an odd one, no regularizer: (1/n) Σ D_i (x_iᵀv)
//! x_i) and multinomial (all K classes, `Hyper::Plain`, Θ row-major d×K); writes the points,
//! the directions and the products as `P_{theta,v,hvp}_{binary,multinomial}.npy`. Only the
//! product is timed (the point's sweep, logits and softmax, is set-up, as in an algorithm that
//! takes several products at one point).
//! `stocbio`: on a `bilevel export --problem stochastic_quadratic` directory (either layout),
//! K iterations of the library's stocBiO (paper 002 Alg. 2 with the Neumann estimator of Alg. 3:
//! T inner SGD steps on fresh batches, Q Neumann terms on fresh batches, batches of B for every
//! oracle, drawn with replacement from the run's seeded streams) from x0 (written as `x0.npy`)
//! and y = 0, with Theorem 3's steps on the per-sample smoothness L_s: α = 2/(L_s + µ),
//! η = 1/L_s, β = 1/(4L_L). The instance is regenerated from the manifest's config and seed and
//! checked bit for bit against the exported sample arrays. One untimed pass logs every oracle
//! call with its rows ([`bilevel_bench::recorder`]) and writes them as `P_{inner,outer,hvp,cross}.npy`
//! ([K, T, B], [K, B], [K, Q, B], [K, B]) for the Python sides to replay; the timed passes
//! (which also draw their batches) must end at the same x_K, bit for bit; writes `P_x.npy`.
//! Set-up (loading, the exact references) is never timed.

use bilevel_bench::recorder::{Call, Oracle, Recorder};
use bilevel_data::export::load_dir;
use bilevel_data::npy::write_npy;
use bilevel_data::quadratic::{gaussian_x0, QuadraticProblem};
use bilevel_data::{stochastic_quadratic, Array, Dataset};
use bilevel_kernels::models::multinomial::{self, MultinomialLogistic};
use bilevel_kernels::models::{Design, Hyper, LogisticModel};
use bilevel_kernels::{Batch, BilevelProblem, Counted, CsrMatrix, OracleCounts, StepBatches};
use bilevel_solvers::{
    AdjointSolver, Aid, AidBilevel, AidBilevelConfig, AidConfig, AidVariant, Algorithm, BatchSizes, StepSizes,
};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Instant;

type DynError = Box<dyn std::error::Error>;

struct Args {
    command: String,
    dir: PathBuf,
    out: PathBuf,
    threads: usize,
    repeats: usize,
    inner_steps: usize,
    lin_steps: usize,
    target: f64,
    max_iters: usize,
    batch: usize,
    iters: usize,
}

fn parse() -> Result<Args, DynError> {
    let mut it = std::env::args().skip(1);
    let command = it.next().ok_or("usage: peers hypergrad|amigo|logistic|stocbio --dir DIR --out PREFIX [options]")?;
    if !matches!(command.as_str(), "hypergrad" | "amigo" | "logistic" | "stocbio") {
        return Err(format!("unknown command `{command}` (hypergrad, amigo, logistic or stocbio)").into());
    }
    let mut a = Args {
        command,
        dir: PathBuf::new(),
        out: PathBuf::new(),
        threads: 1,
        repeats: 5,
        inner_steps: 10,
        lin_steps: 10,
        target: 1e-6,
        max_iters: 10_000,
        batch: 64,
        iters: 50,
    };
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let num = |v: &str| v.parse::<usize>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--dir" => a.dir = value.into(),
            "--out" => a.out = value.into(),
            "--threads" => a.threads = num(&value)?,
            "--repeats" => a.repeats = num(&value)?,
            "--inner-steps" => a.inner_steps = num(&value)?,
            "--lin-steps" => a.lin_steps = num(&value)?,
            "--max-iters" => a.max_iters = num(&value)?,
            "--batch" => a.batch = num(&value)?,
            "--iters" => a.iters = num(&value)?,
            "--target" => a.target = value.parse().map_err(|e| format!("--target: {e}"))?,
            _ => return Err(format!("unknown flag {flag}").into()),
        }
    }
    if a.dir.as_os_str().is_empty() || a.out.as_os_str().is_empty() {
        return Err("--dir and --out are required".into());
    }
    if [a.threads, a.repeats, a.inner_steps, a.lin_steps, a.batch, a.iters].contains(&0) {
        return Err("--threads, --repeats, --inner-steps, --lin-steps, --batch and --iters must be >= 1".into());
    }
    if !(a.target.is_finite() && a.target > 0.0) {
        return Err(format!("--target must be > 0, got {}", a.target).into());
    }
    Ok(a)
}

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), DynError> {
    let a = parse()?;
    let loaded = load_dir(&a.dir).map_err(|e| format!("{}: {e}", a.dir.display()))?;
    let pool = rayon::ThreadPoolBuilder::new().num_threads(a.threads).build()?;
    if a.command == "logistic" || a.command == "stocbio" {
        let task = if a.command == "logistic" { logistic } else { stocbio };
        let mut report = pool.install(|| task(&a, &loaded).map_err(|e| e.to_string()))?;
        return finish(&a, &mut report);
    }
    let param = |name: &str| loaded.parameters.get(name).cloned().unwrap_or(Value::Null);
    let seed = param("seed").as_u64().ok_or("the manifest has no integer parameter `seed`")?;
    let l_g = param("l_g").as_f64().ok_or("the manifest has no parameter `l_g`")?;
    let l_f = param("l_f").as_f64().ok_or("the manifest has no parameter `l_f`")?;
    // Oracle calls are counted on one untimed pass through `counted`; the timed passes go to
    // the bare problem.
    let counted = Counted::new(QuadraticProblem::from_loaded(&loaded)?);
    let x0 = gaussian_x0(counted.inner().dim_x(), seed);
    write_vec(&a.dir.join("x0.npy"), "x0", &x0)?;
    let mut report = pool.install(|| {
        match a.command.as_str() {
            "hypergrad" => hypergrad(&a, &counted, &x0, l_g),
            _ => amigo(&a, &counted, &x0, l_g, l_f),
        }
        .map_err(|e| e.to_string())
    })?;
    finish(&a, &mut report)
}

fn finish(a: &Args, report: &mut Value) -> Result<(), DynError> {
    report["threads"] = json!(a.threads);
    report["repeats"] = json!(a.repeats);
    report["dir"] = json!(a.dir.display().to_string());
    let path = PathBuf::from(format!("{}.json", a.out.display()));
    std::fs::write(&path, serde_json::to_string_pretty(report)? + "\n")
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(())
}

fn write_vec(path: &Path, name: &str, v: &[f64]) -> Result<(), DynError> {
    let f = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    write_npy(&Array::f64(name, vec![v.len()], v.to_vec()), std::io::BufWriter::new(f))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(())
}

fn sibling(out: &Path, suffix: &str) -> PathBuf {
    let stem = out.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    out.with_file_name(format!("{stem}{suffix}"))
}

/// The median of the timings (at least one repeat is enforced by the argument parser).
fn median(t: Vec<f64>) -> f64 {
    bilevel_bench::scaling::report::median(t).unwrap_or(f64::NAN)
}

fn counts_json(c: &OracleCounts) -> Value {
    json!({"grad_x_f": c.grad_x_f, "grad_y_f": c.grad_y_f, "grad_g": c.grad_y_g, "hvp": c.hvp, "cross": c.cross})
}

/// One AID-CG hypergradient at x0, as `bilevel hypergrad --method aid-cg` computes it.
/// Returns the CG iterations and the seconds of the estimate (the estimator's set-up excluded).
fn hypergrad_once(
    a: &Args,
    p: &dyn BilevelProblem,
    x: &[f64],
    step: f64,
    out: &mut [f64],
) -> Result<(usize, f64), DynError> {
    let (dx, dy) = (p.dim_x(), p.dim_y());
    let mut aid = Aid::new(AidConfig { solver: AdjointSolver::Cg, steps: a.lin_steps, warm_start: false }, dx, dy)?;
    let (mut y, mut work) = (vec![0.0; dy], vec![0.0; dy]);
    let start = Instant::now();
    p.inner_gradient_steps(x, &mut y, step, StepBatches::full(a.inner_steps), &mut work);
    let iterations = aid.estimate(p, x, &y, out)?.iterations;
    Ok((iterations, start.elapsed().as_secs_f64()))
}

fn hypergrad(a: &Args, counted: &Counted<QuadraticProblem>, x0: &[f64], l_g: f64) -> Result<Value, DynError> {
    let problem = counted.inner();
    let step = 1.0 / l_g;
    let mut got = vec![0.0; problem.dim_x()];
    let (iterations, _) = hypergrad_once(a, counted, x0, step, &mut got)?;
    let counts = counted.counts();
    let mut times = Vec::with_capacity(a.repeats);
    for _ in 0..a.repeats {
        times.push(hypergrad_once(a, problem, x0, step, &mut got)?.1);
    }
    let mut exact = vec![0.0; problem.dim_x()];
    problem.exact().ok_or("the quadratic has an exact reference")?.hypergradient(x0, &mut exact);
    let rel_error = rel_diff(&got, &exact);
    let file = sibling(&a.out, "_hypergradient.npy");
    write_vec(&file, "hypergradient", &got)?;
    Ok(json!({
        "side": "rust", "task": "hypergrad", "method": "aid-cg",
        "inner_steps": a.inner_steps, "lin_steps": a.lin_steps, "cg_iterations": iterations,
        "l_g": l_g, "seconds": median(times.clone()), "seconds_all": times,
        "oracle_calls": counts_json(&counts), "rel_error_vs_exact": rel_error,
        "hypergradient_file": file.file_name().map(|s| s.to_string_lossy().into_owned()),
    }))
}

fn rel_diff(a: &[f64], b: &[f64]) -> f64 {
    let d: f64 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f64>().sqrt();
    d / b.iter().map(|y| y * y).sum::<f64>().sqrt().max(f64::MIN_POSITIVE)
}

fn amigo(a: &Args, counted: &Counted<QuadraticProblem>, x0: &[f64], l_g: f64, l_f: f64) -> Result<Value, DynError> {
    let problem = counted.inner();
    let steps = StepSizes { inner: 1.0 / l_g, adjoint: 1.0 / l_g, outer: 1.0 / l_f };
    let config = AidBilevelConfig::variant(AidVariant::AmigoCg, a.inner_steps, a.lin_steps, steps);
    let exact = problem.exact().ok_or("the quadratic has an exact reference")?;
    let (_, l_star) = exact.minimum().ok_or("the quadratic has a minimum")?;
    let y0 = vec![0.0; problem.dim_y()];
    let gap0 = exact.value(x0) - l_star;
    // Pass 1: the iteration count K at which the driver's target test first holds.
    let mut alg = AidBilevel::new("amigo-cg", config)?;
    alg.init(counted, x0, &y0)?;
    let mut k = 0;
    let mut rel = 1.0;
    while k < a.max_iters {
        alg.step(counted)?;
        k += 1;
        rel = (exact.value(&alg.iterates().x) - l_star) / gap0;
        if !rel.is_finite() {
            return Err(format!("AmIGO-CG diverged at iteration {k}").into());
        }
        if rel <= a.target {
            break;
        }
    }
    let reached = rel <= a.target;
    let counts = counted.counts();
    // Pass 2: the time of exactly K steps, from the same start.
    let mut times = Vec::with_capacity(a.repeats);
    for _ in 0..a.repeats {
        let mut alg = AidBilevel::new("amigo-cg", config)?;
        alg.init(problem, x0, &y0)?;
        let start = Instant::now();
        for _ in 0..k {
            alg.step(problem)?;
        }
        times.push(start.elapsed().as_secs_f64());
        if times.len() == a.repeats {
            write_vec(&sibling(&a.out, "_x.npy"), "x", &alg.iterates().x)?;
        }
    }
    Ok(json!({
        "side": "rust", "task": "amigo", "algo": "amigo-cg",
        "inner_steps": a.inner_steps, "lin_steps": a.lin_steps, "target": a.target,
        "steps": {"inner": steps.inner, "adjoint": steps.adjoint, "outer": steps.outer},
        "iterations": k, "reached": reached, "rel_error": rel, "l_star": l_star,
        "seconds": median(times.clone()), "seconds_all": times,
        "oracle_calls": counts_json(&counts),
        "x_file": sibling(&a.out, "_x.npy").file_name().map(|s| s.to_string_lossy().into_owned()),
    }))
}

/// N(0, scale² I) of length n: the catalogue's seeded Gaussian stream.
fn gaussian(n: usize, scale: f64, seed: u64) -> Vec<f64> {
    gaussian_x0(n, seed).into_iter().map(|v| scale * v).collect()
}

fn logistic(a: &Args, loaded: &bilevel_data::export::LoadedDataset) -> Result<Value, DynError> {
    let find = |name: &str| {
        loaded.arrays.iter().find(|x| x.name == name).ok_or_else(|| format!("the directory has no array `{name}`"))
    };
    let ints = |name: &str| -> Result<Vec<i64>, DynError> {
        match &find(name)?.data {
            bilevel_data::ArrayData::I64(v) => Ok(v.clone()),
            _ => Err(format!("`{name}` is not an integer array").into()),
        }
    };
    let data = match &find("X_train_data")?.data {
        bilevel_data::ArrayData::F64(v) => v.clone(),
        _ => return Err("`X_train_data` is not a float array".into()),
    };
    let d = loaded.parameters.get("n_features").and_then(Value::as_u64).ok_or("no parameter `n_features`")? as usize;
    let k = loaded.parameters.get("n_classes").and_then(Value::as_u64).ok_or("no parameter `n_classes`")? as usize;
    let indptr: Vec<usize> = ints("X_train_indptr")?.into_iter().map(|p| p as usize).collect();
    let indices: Vec<u32> = ints("X_train_indices")?.into_iter().map(|j| j as u32).collect();
    let labels: Vec<usize> = ints("y_train")?.into_iter().map(|c| c as usize).collect();
    let n = indptr.len() - 1;
    let x = CsrMatrix::new(n, d, indptr, indices, data)?;
    let nnz = x.nnz();
    let time = |f: &mut dyn FnMut() -> bilevel_kernels::Result<()>| -> Result<Vec<f64>, DynError> {
        f()?;
        let mut t = Vec::with_capacity(a.repeats);
        for _ in 0..a.repeats {
            let start = Instant::now();
            f()?;
            t.push(start.elapsed().as_secs_f64());
        }
        Ok(t)
    };
    // Binary.
    let signs: Vec<f64> = labels.iter().map(|&c| if c % 2 == 0 { 1.0 } else { -1.0 }).collect();
    let binary = LogisticModel::new(Design::Sparse(x.clone()), signs, Hyper::None)?;
    let (theta_b, v_b) = (gaussian(d, 1.0, 11), gaussian(d, 1.0, 12));
    let mut ws = binary.workspace();
    let mut hvp_b = vec![0.0; d];
    let mut point = binary.point(&theta_b, &[], Batch::Full, &mut ws)?;
    let times_b = time(&mut || point.hvp(&v_b, &mut hvp_b))?;
    // Multinomial, K classes.
    let multi = MultinomialLogistic::new(Design::Sparse(x), labels, k, multinomial::Hyper::Plain)?;
    let (theta_m, v_m) = (gaussian(d * k, 1.0, 21), gaussian(d * k, 1.0, 22));
    let mut ws = multi.workspace(n);
    let mut hvp_m = vec![0.0; d * k];
    let mut point = multi.point(&theta_m, &[], Batch::Full, &mut ws)?;
    let times_m = time(&mut || point.hvp(&v_m, &mut hvp_m))?;
    let mut files = serde_json::Map::new();
    for (name, v) in [
        ("theta_binary", &theta_b),
        ("v_binary", &v_b),
        ("hvp_binary", &hvp_b),
        ("theta_multinomial", &theta_m),
        ("v_multinomial", &v_m),
        ("hvp_multinomial", &hvp_m),
    ] {
        let file = sibling(&a.out, &format!("_{name}.npy"));
        write_vec(&file, name, v)?;
        files.insert(name.into(), json!(file.file_name().map(|s| s.to_string_lossy().into_owned())));
    }
    Ok(json!({
        "side": "rust", "task": "logistic", "n": n, "d": d, "classes": k, "nnz": nnz,
        "binary_labels": "+1 for an even class, -1 for an odd one",
        "seconds_binary": median(times_b.clone()), "seconds_binary_all": times_b,
        "seconds_multinomial": median(times_m.clone()), "seconds_multinomial_all": times_m,
        "files": files,
    }))
}

/// K iterations of stocBiO on the exported stochastic quadratic (see the module doc).
fn stocbio(a: &Args, loaded: &bilevel_data::export::LoadedDataset) -> Result<Value, DynError> {
    if loaded.generator != stochastic_quadratic::INFO.name {
        return Err(format!("`stocbio` runs on a stochastic_quadratic export, not `{}`", loaded.generator).into());
    }
    let config: stochastic_quadratic::Config = serde_json::from_value(Value::Object(loaded.parameters.clone()))
        .map_err(|e| format!("the manifest's parameters are not a stochastic_quadratic config: {e}"))?;
    let seed = loaded.parameters.get("seed").and_then(Value::as_u64).ok_or("the manifest has no integer `seed`")?;
    let problem = stochastic_quadratic::generate(&config, seed)?;
    // The samples must be the exported ones, bit for bit (the references x_star, L_star come
    // from a parallel Cholesky and are not compared).
    for want in problem.arrays().into_iter().filter(|x| x.name.starts_with("g_") || x.name.starts_with("f_")) {
        let got = loaded.arrays.iter().find(|x| x.name == want.name).ok_or(format!("no array `{}`", want.name))?;
        if got != &want {
            return Err(format!("array `{}` differs from the instance regenerated from the manifest", want.name).into());
        }
    }
    let x0 = problem.x0(seed);
    write_vec(&a.dir.join("x0.npy"), "x0", &x0)?;
    let y0 = vec![0.0; problem.dim_y()];
    let c = problem.constants();
    let (l_s, mu, l_outer) =
        (c.l_g_sample.ok_or("no per-sample smoothness")?, c.mu_g.ok_or("no µ_g")?, c.l_outer.ok_or("no L_L")?);
    let steps = StepSizes { inner: 2.0 / (l_s + mu), adjoint: 1.0 / l_s, outer: 1.0 / (4.0 * l_outer) };
    let (t, q, b, k) = (a.inner_steps, a.lin_steps, a.batch, a.iters);
    let config = AidBilevelConfig::variant(AidVariant::AidNeumann, t, q, steps).with_batches(BatchSizes::all(b), seed);
    let run = |p: &dyn BilevelProblem| -> Result<Vec<f64>, DynError> {
        let mut alg = AidBilevel::new("stocbio", config)?;
        alg.init(p, &x0, &y0)?;
        for _ in 0..k {
            alg.step(p)?;
        }
        Ok(alg.iterates().x.clone())
    };
    let recorder = Recorder::new(&problem);
    let x_recorded = run(&recorder)?;
    let batches = replay_batches(&recorder.calls(), k, t, q, b)?;
    let mut times = Vec::with_capacity(a.repeats);
    let mut x = Vec::new();
    for _ in 0..a.repeats {
        let start = Instant::now();
        x = run(&problem)?;
        times.push(start.elapsed().as_secs_f64());
    }
    if x != x_recorded {
        return Err("the timed run did not end where the recorded run did".into());
    }
    let file = |s: &str| sibling(&a.out, s).file_name().map(|s| s.to_string_lossy().into_owned());
    write_vec(&sibling(&a.out, "_x.npy"), "x", &x)?;
    let mut files = serde_json::Map::new();
    for (name, shape, rows) in batches {
        let path = sibling(&a.out, &format!("_{name}.npy"));
        let f = std::fs::File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let data = rows.into_iter().map(|i| i as i64).collect();
        write_npy(&Array::i64(name, shape, data), std::io::BufWriter::new(f))?;
        files.insert(name.into(), json!(file(&format!("_{name}.npy"))));
    }
    let seconds = median(times.clone());
    Ok(json!({
        "side": "rust", "task": "stocbio", "layout": loaded.parameters.get("layout"),
        "inner_steps": t, "neumann_terms": q, "batch": b, "iterations": k,
        "dim_x": problem.dim_x(), "dim_y": problem.dim_y(),
        "n_samples_f": problem.n_samples_f(), "n_samples_g": problem.n_samples_g(),
        "steps": {"rule": "stocBiO Theorem 3 on the per-sample smoothness", "inner": steps.inner,
                  "adjoint": steps.adjoint, "outer": steps.outer},
        "seconds": seconds, "seconds_per_iteration": seconds / k as f64, "seconds_all": times,
        "x_file": file("_x.npy"), "batch_files": files,
    }))
}

/// The rows of each oracle's batches, checked against stocBiO's call pattern per iteration
/// (T × ∂y g, ∂y f, Q HVPs, one cross product, ∂x f on ∂y f's batch), as (name, shape, rows)
/// for `inner` [K, T, B], `outer` [K, B], `hvp` [K, Q, B], `cross` [K, B].
type Batches = Vec<(&'static str, Vec<usize>, Vec<usize>)>;
fn replay_batches(calls: &[Call], k: usize, t: usize, q: usize, b: usize) -> Result<Batches, DynError> {
    let pattern: Vec<Oracle> = std::iter::repeat_n(Oracle::GradYG, t)
        .chain([Oracle::GradYF])
        .chain(std::iter::repeat_n(Oracle::Hvp, q))
        .chain([Oracle::Cross, Oracle::GradXF])
        .collect();
    if calls.len() != k * pattern.len() {
        return Err(format!("{} oracle calls, stocBiO's pattern needs {}", calls.len(), k * pattern.len()).into());
    }
    let (mut inner, mut outer, mut hvp, mut cross) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut d_f: &[usize] = &[];
    for (i, (call, want)) in calls.iter().zip(pattern.iter().cycle()).enumerate() {
        let rows = match (call.oracle == *want, call.rows.as_deref().filter(|r| r.len() == b)) {
            (true, Some(r)) => r,
            _ => {
                let got = (call.oracle, call.rows.as_ref().map(Vec::len));
                return Err(format!("call {i} is {got:?}, stocBiO's pattern wants {want:?} on {b} rows").into());
            }
        };
        match want {
            Oracle::GradYG => inner.extend_from_slice(rows),
            Oracle::GradYF => {
                outer.extend_from_slice(rows);
                d_f = rows;
            }
            Oracle::Hvp => hvp.extend_from_slice(rows),
            Oracle::Cross => cross.extend_from_slice(rows),
            Oracle::GradXF if rows != d_f => return Err(format!("call {i}: ∂x f and ∂y f on different batches").into()),
            _ => {}
        }
    }
    Ok(vec![
        ("inner", vec![k, t, b], inner),
        ("outer", vec![k, b], outer),
        ("hvp", vec![k, q, b], hvp),
        ("cross", vec![k, b], cross),
    ])
}
