"""Shared loading, thread settings and timing for the NumPy/SciPy and JAX peers (issue 11).

Every side loads the directory `bilevel export --problem quadratic` wrote, plus the `x0.npy`
the Rust `peers` binary wrote there (the catalogue's x0(seed)), so all run the identical
problem from the identical start. The step sizes are the manifest's prescribed L_g (`l_g`) and
L_L (`l_f`, = λ_max(A_f)): α = β = 1/L_g, γ = 1/L_L (AmIGO's experiments rule).
"""
import argparse
import json
import os
import statistics
import time

import numpy as np

# The CG floor of kernels/src/linsolve/cg.rs (RESIDUAL_FLOOR): a fixed-step CG stops early
# once ‖r‖ ≤ 1e-15 ‖b‖ (another step would divide by a vanishing pᵀHp).
RESIDUAL_FLOOR = 1e-15


def parse_args(extra=None):
    p = argparse.ArgumentParser()
    p.add_argument("task", choices=["hypergrad", "amigo"])
    p.add_argument("--dir", required=True)
    p.add_argument("--out", required=True, help="output prefix: PREFIX.json (+ PREFIX_*.npy)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--inner-steps", type=int, default=10)
    p.add_argument("--lin-steps", type=int, default=10)
    p.add_argument("--target", type=float, default=1e-6)
    p.add_argument("--max-iters", type=int, default=10_000)
    if extra:
        extra(p)
    return p.parse_args()


def set_threads_env(n):
    """Thread counts for BLAS/OpenMP/XLA; must run before numpy/jax are imported to take effect.
    The caller (run.sh) also pins the process with `taskset` to the first n cores: JAX's CPU
    client sizes its pools from the affinity mask, not from these flags alone."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS"):
        os.environ[var] = str(n)
    flags = os.environ.get("XLA_FLAGS", "")
    multi = "true" if n > 1 else "false"
    os.environ["XLA_FLAGS"] = (
        f"{flags} --xla_cpu_multi_thread_eigen={multi} intra_op_parallelism_threads={n}"
    ).strip()


def load(dir_):
    with open(os.path.join(dir_, "manifest.json")) as f:
        m = json.load(f)
    if m["generator"] != "quadratic":
        raise SystemExit(f"{dir_}: generator {m['generator']}, expected quadratic")
    arrays = {a["name"]: np.load(os.path.join(dir_, a["file"])) for a in m["arrays"]}
    x0_path = os.path.join(dir_, "x0.npy")
    if not os.path.exists(x0_path):
        raise SystemExit(f"{x0_path} missing: run the Rust `peers` binary on {dir_} first (it writes x0)")
    arrays["x0"] = np.load(x0_path)
    params = m["parameters"]
    prob = {k: np.ascontiguousarray(arrays[k]) for k in ("A_f", "C_f", "A_g", "B_g", "x0")}
    prob["L_star"] = float(arrays["L_star"][0])
    prob["l_g"] = float(params["l_g"])
    prob["l_f"] = float(params["l_f"])
    prob["seed"] = params["seed"]
    return prob


class Value:
    """L(x) = ½xᵀA_f x + C_fᵀ y*(x) with y*(x) = −A_g⁻¹B_g x, i.e. ½xᵀA_f x − wᵀx with
    w = B_gᵀA_g⁻¹C_f (one Cholesky, set-up, never timed)."""

    def __init__(self, prob):
        import scipy.linalg as sla

        z = sla.cho_solve(sla.cho_factor(prob["A_g"], lower=True), prob["C_f"])
        self.w = prob["B_g"].T @ z
        self.A_f = prob["A_f"]

    def __call__(self, x):
        return 0.5 * x @ (self.A_f @ x) - self.w @ x


def rel_gap(value, x, x0, l_star):
    return (value(x) - l_star) / (value(x0) - l_star)


def median_time(fn, repeats):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), times


def write(out, report, vectors):
    """PREFIX.json and one PREFIX_<name>.npy per vector (names in the JSON's *_file fields)."""
    for name, v in vectors.items():
        file = f"{out}_{name}.npy"
        np.save(file, np.asarray(v, dtype=np.float64))
        report[f"{name}_file"] = os.path.basename(file)
    with open(out + ".json", "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")


def find_iterations(step, state, x0, value, l_star, target, max_iters):
    """The driver's rule: the first k ≥ 1 with (L(x_k) − L*)/(L(x_0) − L*) ≤ target, checked
    after every step outside any timing. `step(state) -> state`, state[0] = x."""
    gap0 = value(x0) - l_star
    rel, k = 1.0, 0
    while k < max_iters:
        state = step(state)
        k += 1
        rel = (value(np.asarray(state[0])) - l_star) / gap0
        if not np.isfinite(rel):
            raise SystemExit(f"AmIGO-CG diverged at iteration {k}")
        if rel <= target:
            break
    return k, rel, rel <= target
