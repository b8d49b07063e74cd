"""Goal 4 of the comparison: stocBiO iterations on benchopt's stochastic quadratic
(bench/peers/README.md), in NumPy (`--variant numpy`) and in JAX (`--variant jax`).

Loads the directory `bilevel export --problem stochastic_quadratic` wrote (either layout:
benchopt's dense per-sample matrices or the rank-one factors) and the files the Rust
`peers stocbio` run wrote beside its result: x0.npy in the directory, and the rows of every
batch it drew (`--rust PREFIX`: PREFIX_{inner,outer,hvp,cross}.npy, [K, T, B], [K, B],
[K, Q, B], [K, B]) and its step sizes (PREFIX.json). It replays the same K iterations on the same
batches (paper 002 Alg. 2 + Alg. 3, as solvers/src/algorithms/stocbio.rs):

    y ← y − α ∇y g(x, y; S_t)                   t = 1..T      (y warm-started, y_0 = 0)
    b = ∇y f(x, y; D_F);  r = b, v = b;  r ← r − η H(B_j) r, v ← v + r   (Q terms);  v ← ηv
    x ← x − β (∇x f(x, y; D_F) − ∇x∇y g(x, y; D_G) v)

NumPy: a batch is `M[idx]` (fancy indexing copies it) and a batched product `M[idx] @ v`
(BLAS per sample), mean over the batch. JAX: the whole run under one `jax.jit`, `lax.scan`
over the iterations, the inner steps and the Neumann terms, the batch gathered by `M[idx]`
inside the scan (XLA copies it), compile excluded, `block_until_ready`.
"""
import argparse
import json
import os
import statistics
import sys
import time

import common

p = argparse.ArgumentParser()
p.add_argument("--dir", required=True)
p.add_argument("--rust", required=True, help="prefix of the Rust `peers stocbio` result")
p.add_argument("--out", required=True)
p.add_argument("--variant", choices=["numpy", "jax"], required=True)
p.add_argument("--threads", type=int, default=1)
p.add_argument("--repeats", type=int, default=5)
args = p.parse_args()
common.set_threads_env(args.threads)

import numpy as np  # noqa: E402

with open(os.path.join(args.dir, "manifest.json")) as f:
    manifest = json.load(f)
if manifest["generator"] != "stochastic_quadratic":
    sys.exit(f"{args.dir}: generator {manifest['generator']}, expected stochastic_quadratic")
A = {a["name"]: np.load(os.path.join(args.dir, a["file"])) for a in manifest["arrays"]}
x0 = np.load(os.path.join(args.dir, "x0.npy"))
rust = json.load(open(args.rust + ".json"))
idx = {name: np.load(os.path.join(os.path.dirname(args.rust), file)) for name, file in rust["batch_files"].items()}
alpha, eta, beta = rust["steps"]["inner"], rust["steps"]["adjoint"], rust["steps"]["outer"]
layout = manifest["parameters"]["layout"]
K, T, B = idx["inner"].shape
Q = idx["hvp"].shape[1]
dy = A["g_lin_y"].shape[1]


def numpy_oracles():
    """(grad_y_g, grad_x_f, grad_y_f, hvp, cross) on batch rows `i`, in NumPy."""
    g = {k[2:]: v for k, v in A.items() if k.startswith("g_")}
    f = {k[2:]: v for k, v in A.items() if k.startswith("f_")}
    if layout == "dense":
        # ∂y q_i = A_i y + B_i x + c_i, ∂x q_i = P_i x + B_iᵀ y + d_i, B_i of yᵀB_i x (d_y × d_x).
        def grad_y(L, x, y, i):
            return (L["hess_y"][i] @ y + L["cross"][i] @ x).mean(0) + L["lin_y"][i].mean(0)

        def grad_x(L, x, y, i):
            return (L["hess_x"][i] @ x + y @ L["cross"][i]).mean(0) + L["lin_x"][i].mean(0)

        def hvp(v, i):
            return (g["hess_y"][i] @ v).mean(0)

        def cross(v, i):
            return (v @ g["cross"][i]).mean(0)
    else:
        # h_i (h_iᵀy) + w_i (u_iᵀx) + c_i and p_i (p_iᵀx) + u_i (w_iᵀy) + d_i.
        def grad_y(L, x, y, i):
            h, w, u = L["hess_y_factors"][i], L["cross_y_factors"][i], L["cross_x_factors"][i]
            return (h.T @ (h @ y) + w.T @ (u @ x)) / len(i) + L["lin_y"][i].mean(0)

        def grad_x(L, x, y, i):
            pf, w, u = L["hess_x_factors"][i], L["cross_y_factors"][i], L["cross_x_factors"][i]
            return (pf.T @ (pf @ x) + u.T @ (w @ y)) / len(i) + L["lin_x"][i].mean(0)

        def hvp(v, i):
            h = g["hess_y_factors"][i]
            return h.T @ (h @ v) / len(i)

        def cross(v, i):
            w, u = g["cross_y_factors"][i], g["cross_x_factors"][i]
            return u.T @ (w @ v) / len(i)

    return (lambda x, y, i: grad_y(g, x, y, i)), (lambda x, y, i: grad_x(f, x, y, i)), \
        (lambda x, y, i: grad_y(f, x, y, i)), hvp, cross


def run_numpy():
    grad_y_g, grad_x_f, grad_y_f, hvp, cross = numpy_oracles()

    def run():
        x, y = x0.copy(), np.zeros(dy)
        for k in range(K):
            for t in range(T):
                y -= alpha * grad_y_g(x, y, idx["inner"][k, t])
            d_f = idx["outer"][k]
            r = grad_y_f(x, y, d_f)
            v = r.copy()
            for j in range(Q):
                r = r - eta * hvp(r, idx["hvp"][k, j])
                v += r
            v *= eta
            x = x - beta * (grad_x_f(x, y, d_f) - cross(v, idx["cross"][k]))
        return x

    return run


def run_jax():
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    from jax import lax

    J = {k: jnp.asarray(v) for k, v in A.items() if k.startswith(("g_", "f_"))}
    I = {k: jnp.asarray(v) for k, v in idx.items()}

    def oracles(M):
        g = {k[2:]: v for k, v in M.items() if k.startswith("g_")}
        f = {k[2:]: v for k, v in M.items() if k.startswith("f_")}
        if layout == "dense":
            def grad_y(L, x, y, i):
                return jnp.mean(L["hess_y"][i] @ y + L["cross"][i] @ x + L["lin_y"][i], axis=0)

            def grad_x(L, x, y, i):
                return jnp.mean(L["hess_x"][i] @ x + y @ L["cross"][i] + L["lin_x"][i], axis=0)

            def hvp(v, i):
                return jnp.mean(g["hess_y"][i] @ v, axis=0)

            def cross(v, i):
                return jnp.mean(v @ g["cross"][i], axis=0)
        else:
            def grad_y(L, x, y, i):
                h, w, u = L["hess_y_factors"][i], L["cross_y_factors"][i], L["cross_x_factors"][i]
                return (h.T @ (h @ y) + w.T @ (u @ x)) / i.shape[0] + jnp.mean(L["lin_y"][i], axis=0)

            def grad_x(L, x, y, i):
                pf, w, u = L["hess_x_factors"][i], L["cross_y_factors"][i], L["cross_x_factors"][i]
                return (pf.T @ (pf @ x) + u.T @ (w @ y)) / i.shape[0] + jnp.mean(L["lin_x"][i], axis=0)

            def hvp(v, i):
                h = g["hess_y_factors"][i]
                return h.T @ (h @ v) / i.shape[0]

            def cross(v, i):
                w, u = g["cross_y_factors"][i], g["cross_x_factors"][i]
                return u.T @ (w @ v) / i.shape[0]

        return (lambda x, y, i: grad_y(g, x, y, i)), (lambda x, y, i: grad_x(f, x, y, i)), \
            (lambda x, y, i: grad_y(f, x, y, i)), hvp, cross

    @jax.jit
    def stocbio(M, I, x, y):
        grad_y_g, grad_x_f, grad_y_f, hvp, cross = oracles(M)

        def iteration(state, b):
            x, y = state
            y, _ = lax.scan(lambda y, i: (y - alpha * grad_y_g(x, y, i), None), y, b["inner"])
            r = grad_y_f(x, y, b["outer"])

            def term(s, i):
                r, v = s
                r = r - eta * hvp(r, i)
                return (r, v + r), None

            (_, v), _ = lax.scan(term, (r, r), b["hvp"])
            x = x - beta * (grad_x_f(x, y, b["outer"]) - cross(eta * v, b["cross"]))
            return (x, y), None

        (x, y), _ = lax.scan(iteration, (x, y), I)
        return x

    xj, yj = jnp.asarray(x0), jnp.zeros(dy)
    stocbio(J, I, xj, yj).block_until_ready()  # compile
    return lambda: np.asarray(stocbio(J, I, xj, yj).block_until_ready())


run = run_numpy() if args.variant == "numpy" else run_jax()
x = run()  # warm-up (and the JAX compile, excluded)
times = []
for _ in range(args.repeats):
    t = time.perf_counter()
    x = run()
    times.append(time.perf_counter() - t)
seconds = statistics.median(times)
x_rust = np.load(os.path.join(os.path.dirname(args.rust), rust["x_file"]))
report = {
    "side": args.variant, "task": "stocbio", "layout": layout, "threads": args.threads,
    "iterations": int(K), "inner_steps": int(T), "neumann_terms": int(Q), "batch": int(B),
    "seconds": seconds, "seconds_per_iteration": seconds / K, "seconds_all": times,
    "rel_diff_x_vs_rust": float(np.linalg.norm(x - x_rust) / np.linalg.norm(x_rust)),
}
common.write(args.out, report, {"x": x})
print(f"stocbio {layout} {args.variant}: {seconds / K * 1e3:.3f} ms/iteration, "
      f"|x - x_rust|/|x_rust| = {report['rel_diff_x_vs_rust']:.1e}")
