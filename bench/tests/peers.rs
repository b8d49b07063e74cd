//! The `peers` binary (the Rust side of bench/peers/, docs/performance.md) on tiny exports,
//! against plain-loop recomputations of what the NumPy/SciPy sides compute: the comparison's
//! formulas are checked here without Python (`cargo test` never runs Python).

use bilevel_data::catalog::{build_dataset, BuildOptions};
use bilevel_data::export::{load_dir, read_array, write_dir};
use bilevel_data::ArrayData;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("bilevel-peers-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn export(name: &str, options: &BuildOptions, dir: &Path) {
    write_dir(build_dataset(name, options).unwrap().as_ref(), dir, false).unwrap();
}

fn peers(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_peers")).args(args).output().unwrap();
    assert!(out.status.success(), "peers {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    let prefix = args[args.iter().position(|a| *a == "--out").unwrap() + 1];
    serde_json::from_str(&std::fs::read_to_string(format!("{prefix}.json")).unwrap()).unwrap()
}

fn f64s(path: &Path) -> Vec<f64> {
    match read_array("v", path).unwrap().data {
        ArrayData::F64(v) => v,
        ArrayData::I64(_) => panic!("{} holds integers", path.display()),
    }
}

/// The loaded arrays by name, as f64 or i64.
fn arrays(dir: &Path) -> (serde_json::Map<String, Value>, Vec<bilevel_data::Array>) {
    let l = load_dir(dir).unwrap();
    (l.parameters, l.arrays)
}

fn get<'a>(arrays: &'a [bilevel_data::Array], name: &str) -> &'a bilevel_data::Array {
    arrays.iter().find(|a| a.name == name).unwrap()
}

fn f(a: &bilevel_data::Array) -> &[f64] {
    match &a.data {
        ArrayData::F64(v) => v,
        ArrayData::I64(_) => panic!("{} holds integers", a.name),
    }
}

fn i(a: &bilevel_data::Array) -> &[i64] {
    match &a.data {
        ArrayData::I64(v) => v,
        ArrayData::F64(_) => panic!("{} holds floats", a.name),
    }
}

/// y = M v for a C-order (row-major) `rows × cols` matrix, as NumPy's `M @ v`.
fn mv(m: &[f64], rows: usize, cols: usize, v: &[f64]) -> Vec<f64> {
    (0..rows).map(|r| (0..cols).map(|c| m[r * cols + c] * v[c]).sum()).collect()
}

/// Mᵀ v, as NumPy's `M.T @ v`.
fn mtv(m: &[f64], rows: usize, cols: usize, v: &[f64]) -> Vec<f64> {
    (0..cols).map(|c| (0..rows).map(|r| m[r * cols + c] * v[r]).sum()).collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn rel(a: &[f64], b: &[f64]) -> f64 {
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    dot(&d, &d).sqrt() / dot(b, b).sqrt()
}

/// bench/peers/peers_numpy.py's `cg`: N steps from v, the 1e-15 floor.
fn cg(a: &[f64], n: usize, b: &[f64], v: &mut [f64], steps: usize) {
    let mut r = b.to_vec();
    if v.iter().any(|&x| x != 0.0) {
        let av = mv(a, n, n, v);
        r.iter_mut().zip(&av).for_each(|(r, a)| *r -= a);
    }
    let tol = 1e-15 * dot(b, b).sqrt();
    let mut rr = dot(&r, &r);
    let mut p = r.clone();
    for _ in 0..steps {
        if rr.sqrt() <= tol {
            return;
        }
        let hp = mv(a, n, n, &p);
        let alpha = rr / dot(&p, &hp);
        v.iter_mut().zip(&p).for_each(|(v, p)| *v += alpha * p);
        r.iter_mut().zip(&hp).for_each(|(r, h)| *r -= alpha * h);
        let rr_new = dot(&r, &r);
        p.iter_mut().zip(&r).for_each(|(p, r)| *p = r + rr_new / rr * *p);
        rr = rr_new;
    }
}

#[test]
fn the_quadratic_runs_agree_with_the_python_sides_formulas() {
    let root = scratch("quadratic");
    let dir = root.join("q");
    let opts = BuildOptions { preset: Some("tiny".into()), kappa: Some(100.0), seed: 3, ..Default::default() };
    export("quadratic", &opts, &dir);
    let d = dir.to_str().unwrap();
    let prefix = root.join("hg");
    let hg = peers(&["hypergrad", "--dir", d, "--out", prefix.to_str().unwrap(), "--repeats", "2", "--lin-steps", "5"]);
    assert_eq!(hg["cg_iterations"], 5);
    assert_eq!(hg["oracle_calls"]["hvp"], 5);
    assert_eq!(hg["oracle_calls"]["grad_g"], 10);
    assert_eq!(hg["seconds_all"].as_array().unwrap().len(), 2);

    let (_, a) = arrays(&dir);
    let (a_f, c_f, a_g, b_g) = (f(get(&a, "A_f")), f(get(&a, "C_f")), f(get(&a, "A_g")), f(get(&a, "B_g")));
    let x0 = f64s(&dir.join("x0.npy"));
    let (dx, dy) = (x0.len(), c_f.len());
    assert_eq!(a_f.len(), dx * dx);
    assert_eq!(x0, bilevel_data::quadratic::gaussian_x0(dx, 3), "x0.npy is the catalogue's x0(seed)");
    // The NumPy side's hypergradient (the inner steps do not change it: ∂y f = C_f).
    let mut v = vec![0.0; dy];
    cg(a_g, dy, c_f, &mut v, 5);
    let want: Vec<f64> = mv(a_f, dx, dx, &x0).iter().zip(mtv(b_g, dy, dx, &v)).map(|(a, b)| a - b).collect();
    let got = f64s(&root.join("hg_hypergradient.npy"));
    assert!(rel(&got, &want) < 1e-12, "hypergradient differs from the plain-loop AID-CG by {}", rel(&got, &want));

    // AmIGO-CG: the plain-loop algorithm reaches the target at the same K, at the same x.
    let prefix = root.join("am");
    let am = peers(&["amigo", "--dir", d, "--out", prefix.to_str().unwrap(), "--repeats", "1", "--target", "1e-4"]);
    assert_eq!(am["reached"], true);
    let k = am["iterations"].as_u64().unwrap() as usize;
    let (mut x, mut y, mut v) = (x0.clone(), vec![0.0; dy], vec![0.0; dy]);
    for _ in 0..k {
        let bx = mv(b_g, dy, dx, &x);
        for _ in 0..10 {
            let ay = mv(a_g, dy, dy, &y);
            y.iter_mut().zip(ay.iter().zip(&bx)).for_each(|(y, (a, b))| *y -= a + b);
        }
        cg(a_g, dy, c_f, &mut v, 10);
        let g: Vec<f64> = mv(a_f, dx, dx, &x).iter().zip(mtv(b_g, dy, dx, &v)).map(|(a, b)| a - b).collect();
        x.iter_mut().zip(&g).for_each(|(x, g)| *x -= g);
    }
    let got = f64s(&root.join("am_x.npy"));
    // The iterates drift apart by rounding over K steps (as in compare.py, within 1e-8).
    assert!(rel(&got, &x) < 1e-8, "x_K differs from the plain-loop AmIGO-CG by {}", rel(&got, &x));
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn the_logistic_products_agree_with_the_scipy_formulas() {
    let root = scratch("text");
    let dir = root.join("t");
    export("text", &BuildOptions { preset: Some("tiny".into()), ..Default::default() }, &dir);
    let prefix = root.join("lr");
    let r = peers(&["logistic", "--dir", dir.to_str().unwrap(), "--out", prefix.to_str().unwrap(), "--repeats", "1"]);
    let (params, a) = arrays(&dir);
    let d = params["n_features"].as_u64().unwrap() as usize;
    let k = params["n_classes"].as_u64().unwrap() as usize;
    let (ptr, idx, val, lab) = (
        i(get(&a, "X_train_indptr")),
        i(get(&a, "X_train_indices")),
        f(get(&a, "X_train_data")),
        i(get(&a, "y_train")),
    );
    let n = ptr.len() - 1;
    assert_eq!(r["n"], n);
    let file = |name: &str| f64s(&root.join(r["files"][name].as_str().unwrap()));
    let row = |s: usize| (ptr[s] as usize..ptr[s + 1] as usize).map(|e| (idx[e] as usize, val[e]));
    let sigmoid = |t: f64| 1.0 / (1.0 + (-t).exp());
    // Binary: Xᵀ(D ⊙ (X v))/n with D_i = σ(b z)σ(−b z).
    let (theta, v) = (file("theta_binary"), file("v_binary"));
    let mut want = vec![0.0; d];
    for (s, &class) in lab.iter().enumerate() {
        let b = if class % 2 == 0 { 1.0 } else { -1.0 };
        let z: f64 = row(s).map(|(j, x)| x * theta[j]).sum();
        let dd = sigmoid(b * z) * sigmoid(-b * z);
        let xv: f64 = row(s).map(|(j, x)| x * v[j]).sum();
        row(s).for_each(|(j, x)| want[j] += dd * xv * x / n as f64);
    }
    let got = file("hvp_binary");
    assert!(rel(&got, &want) < 1e-12, "binary HVP differs by {}", rel(&got, &want));
    // Multinomial: U = X V, H = S ⊙ (U − rowsum(S ⊙ U))/n, XᵀH (Θ, V row-major d×K).
    let (theta, v) = (file("theta_multinomial"), file("v_multinomial"));
    let mut want = vec![0.0; d * k];
    for s in 0..n {
        let z: Vec<f64> = (0..k).map(|c| row(s).map(|(j, x)| x * theta[j * k + c]).sum()).collect();
        let m = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = z.iter().map(|z| (z - m).exp()).collect();
        let sum: f64 = e.iter().sum();
        let p: Vec<f64> = e.iter().map(|e| e / sum).collect();
        let u: Vec<f64> = (0..k).map(|c| row(s).map(|(j, x)| x * v[j * k + c]).sum()).collect();
        let su = dot(&p, &u);
        for (j, x) in row(s) {
            (0..k).for_each(|c| want[j * k + c] += x * p[c] * (u[c] - su) / n as f64);
        }
    }
    let got = file("hvp_multinomial");
    assert!(rel(&got, &want) < 1e-12, "multinomial HVP differs by {}", rel(&got, &want));
    let _ = std::fs::remove_dir_all(&root);
}

/// bench/peers/peers_stoch.py's dense NumPy side as plain loops: the mean over the batch rows
/// of M_i v for the stacked row-major `rows × cols` sample matrices `m`.
fn batch_mv(m: &[f64], rows: usize, cols: usize, idx: &[i64], v: &[f64]) -> Vec<f64> {
    let mut out = vec![0.0; rows];
    for &i in idx {
        let block = &m[i as usize * rows * cols..(i as usize + 1) * rows * cols];
        mv(block, rows, cols, v).iter().zip(&mut out).for_each(|(a, o)| *o += a / idx.len() as f64);
    }
    out
}

fn batch_mtv(m: &[f64], rows: usize, cols: usize, idx: &[i64], v: &[f64]) -> Vec<f64> {
    let mut out = vec![0.0; cols];
    for &i in idx {
        let block = &m[i as usize * rows * cols..(i as usize + 1) * rows * cols];
        mtv(block, rows, cols, v).iter().zip(&mut out).for_each(|(a, o)| *o += a / idx.len() as f64);
    }
    out
}

fn batch_mean_rows(m: &[f64], cols: usize, idx: &[i64]) -> Vec<f64> {
    let mut out = vec![0.0; cols];
    for &i in idx {
        m[i as usize * cols..(i as usize + 1) * cols]
            .iter()
            .zip(&mut out)
            .for_each(|(a, o)| *o += a / idx.len() as f64);
    }
    out
}

#[test]
fn the_stocbio_run_replays_on_its_recorded_batches() {
    let dir = scratch("stoch");
    let data = dir.join("data");
    let options = BuildOptions {
        preset: Some("tiny".into()),
        layout: Some(bilevel_data::stochastic_quadratic::Layout::Dense),
        seed: 3,
        ..Default::default()
    };
    export("stochastic_quadratic", &options, &data);
    let prefix = dir.join("run");
    let (k, t, q, b) = (6, 3, 4, 5);
    let r = peers(&[
        "stocbio",
        "--dir",
        data.to_str().unwrap(),
        "--out",
        prefix.to_str().unwrap(),
        "--repeats",
        "2",
        "--inner-steps",
        "3",
        "--lin-steps",
        "4",
        "--batch",
        "5",
        "--iters",
        "6",
    ]);
    let (_, a) = arrays(&data);
    let (dx, dy) = (r["dim_x"].as_u64().unwrap() as usize, r["dim_y"].as_u64().unwrap() as usize);
    let load = |name: &str| -> Vec<i64> {
        let file = dir.join(r["batch_files"][name].as_str().unwrap());
        match read_array(name, &file).unwrap().data {
            ArrayData::I64(v) => v,
            ArrayData::F64(_) => panic!("{name}: floats"),
        }
    };
    let (inner, outer, hvp, cross) = (load("inner"), load("outer"), load("hvp"), load("cross"));
    assert_eq!((inner.len(), outer.len(), hvp.len(), cross.len()), (k * t * b, k * b, k * q * b, k * b));
    let steps = &r["steps"];
    let (alpha, eta, beta) =
        (steps["inner"].as_f64().unwrap(), steps["adjoint"].as_f64().unwrap(), steps["outer"].as_f64().unwrap());
    let g = |s: &str| f(get(&a, &format!("g_{s}"))).to_vec();
    let fl = |s: &str| f(get(&a, &format!("f_{s}"))).to_vec();
    let x0 = f64s(&data.join("x0.npy"));
    let add = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x + y).collect::<Vec<f64>>();
    // ∂y q_i = A_i y + B_i x + c_i, ∂x q_i = P_i x + B_iᵀ y + d_i (B_i of yᵀB_i x, d_y × d_x).
    let grad_y = |l: &dyn Fn(&str) -> Vec<f64>, x: &[f64], y: &[f64], idx: &[i64]| {
        let hy = add(&batch_mv(&l("hess_y"), dy, dy, idx, y), &batch_mv(&l("cross"), dy, dx, idx, x));
        add(&hy, &batch_mean_rows(&l("lin_y"), dy, idx))
    };
    let replay = |inner: &[i64], outer: &[i64], hvp: &[i64], cross: &[i64]| {
        let (mut x, mut y) = (x0.clone(), vec![0.0; dy]);
        for it in 0..k {
            for s in 0..t {
                let gy = grad_y(&g, &x, &y, &inner[(it * t + s) * b..(it * t + s + 1) * b]);
                y.iter_mut().zip(&gy).for_each(|(y, g)| *y -= alpha * g);
            }
            let d_f = &outer[it * b..(it + 1) * b];
            let mut r_ = grad_y(&fl, &x, &y, d_f);
            let mut v = r_.clone();
            for j in 0..q {
                let h = batch_mv(&g("hess_y"), dy, dy, &hvp[(it * q + j) * b..(it * q + j + 1) * b], &r_);
                r_.iter_mut().zip(&h).for_each(|(r, h)| *r -= eta * h);
                v.iter_mut().zip(&r_).for_each(|(v, r)| *v += r);
            }
            v.iter_mut().for_each(|v| *v *= eta);
            let px = add(&batch_mv(&fl("hess_x"), dx, dx, d_f, &x), &batch_mtv(&fl("cross"), dy, dx, d_f, &y));
            let gx = add(&px, &batch_mean_rows(&fl("lin_x"), dx, d_f));
            let cr = batch_mtv(&g("cross"), dy, dx, &cross[it * b..(it + 1) * b], &v);
            x.iter_mut().zip(gx.iter().zip(&cr)).for_each(|(x, (gx, c))| *x -= beta * (gx - c));
        }
        x
    };
    let x_rust = f64s(&dir.join(r["x_file"].as_str().unwrap()));
    let x = replay(&inner, &outer, &hvp, &cross);
    assert!(rel(&x, &x_rust) < 1e-12, "replayed x_K differs by {:.2e}", rel(&x, &x_rust));
    // The comparison sees the batches: other Neumann batches give another x_K.
    let n_g = r["n_samples_g"].as_u64().unwrap() as i64;
    let shifted: Vec<i64> = hvp.iter().map(|i| (i + 1) % n_g).collect();
    let other = replay(&inner, &outer, &shifted, &cross);
    assert!(rel(&other, &x_rust) > 1e-6, "shifted Neumann batches moved x_K by only {:.1e}", rel(&other, &x_rust));
    std::fs::remove_dir_all(&dir).unwrap();
}
