"""JAX side of the comparison (bench/peers/README.md): float64, everything under `jax.jit`,
loops as `lax.fori_loop` / `lax.while_loop`, compile excluded (one warm-up call), timings end
with `block_until_ready`. The matrices are jit arguments (not closure constants, which XLA
would embed and could fold). `--variant jax`: CG written out as kernels/src/linsolve/cg.rs
(same iterates, same early stop at the rounding floor); `--variant jaxopt`:
`jaxopt.linear_solve.solve_cg` (jax.scipy's CG) with tol = 0 and maxiter = N, warm-started
through `init` for AmIGO. Run pinned (`taskset`): JAX sizes its thread pools from the
affinity mask.
"""
import sys

import common

args = common.parse_args(lambda p: p.add_argument("--variant", choices=["jax", "jaxopt"], default="jax"))
common.set_threads_env(args.threads)

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax import lax  # noqa: E402

prob = common.load(args.dir)
M = {k: jnp.asarray(prob[k]) for k in ("A_f", "C_f", "A_g", "B_g")}
x0 = jnp.asarray(prob["x0"])
T, N = args.inner_steps, args.lin_steps
alpha = 1.0 / prob["l_g"]
gamma = 1.0 / prob["l_f"]


def cg_ours(A, b, v, n):
    r = lax.cond(jnp.any(v != 0), lambda: b - A @ v, lambda: b)
    rr = r @ r
    tol = common.RESIDUAL_FLOOR * jnp.sqrt(b @ b)

    def cond(s):
        k, _, _, _, rr = s
        return (k < n) & (jnp.sqrt(rr) > tol)

    def body(s):
        k, v, r, p, rr = s
        hp = A @ p
        a = rr / (p @ hp)
        v = v + a * p
        r = r - a * hp
        rr_new = r @ r
        return (k + 1, v, r, r + (rr_new / rr) * p, rr_new)

    k, v, _, _, _ = lax.while_loop(cond, body, (0, v, r, r, rr))
    return v, k


def cg_jaxopt(A, b, v, n):
    from jaxopt.linear_solve import solve_cg

    return solve_cg(lambda u: A @ u, b, init=v, tol=0.0, maxiter=n), n


cg = cg_ours if args.variant == "jax" else cg_jaxopt


def inner_steps(A_g, B_g, x, y, t):
    bx = B_g @ x
    return lax.fori_loop(0, t, lambda _, y: y - alpha * (A_g @ y + bx), y)


@jax.jit
def hypergradient(M, x):
    # y is returned so that XLA cannot drop the inner steps: ∂y f = C_f does not depend on y,
    # but every side (and `bilevel hypergrad`) computes them.
    y = inner_steps(M["A_g"], M["B_g"], x, jnp.zeros_like(M["C_f"]), T)
    v, it = cg(M["A_g"], M["C_f"], jnp.zeros_like(M["C_f"]), N)
    return M["A_f"] @ x - M["B_g"].T @ v, y, it


def amigo_step(M, s):
    x, y, v = s
    y = inner_steps(M["A_g"], M["B_g"], x, y, T)
    v, _ = cg(M["A_g"], M["C_f"], v, N)
    return (x - gamma * (M["A_f"] @ x - M["B_g"].T @ v), y, v)


step = jax.jit(amigo_step)


@jax.jit
def amigo_run(M, s, k):
    return lax.fori_loop(0, k, lambda _, s: amigo_step(M, s), s)


base = {"side": args.variant, "task": args.task, "threads": args.threads, "repeats": args.repeats,
        "inner_steps": T, "lin_steps": N, "jax": jax.__version__,
        "devices": [str(d) for d in jax.devices()]}
if args.task == "hypergrad":
    h, _, it = jax.block_until_ready(hypergradient(M, x0))  # compile + result
    sec, all_ = common.median_time(lambda: jax.block_until_ready(hypergradient(M, x0)), args.repeats)
    common.write(args.out, {**base, "cg_iterations": int(it), "seconds": sec, "seconds_all": all_},
                 {"hypergradient": np.asarray(h)})
else:
    dy = prob["C_f"].shape[0]
    fresh = lambda: (x0, jnp.zeros(dy), jnp.zeros(dy))  # noqa: E731
    value = common.Value(prob)
    k, rel, reached = common.find_iterations(lambda s: step(M, s), fresh(), prob["x0"], value,
                                             prob["L_star"], args.target, args.max_iters)
    jax.block_until_ready(amigo_run(M, fresh(), k))  # compile (k is traced: one compile)
    final = {}

    def run():
        final["s"] = jax.block_until_ready(amigo_run(M, fresh(), k))

    sec, all_ = common.median_time(run, args.repeats)
    common.write(args.out, {**base, "target": args.target, "iterations": k, "rel_error": rel,
                            "reached": bool(reached), "seconds": sec, "seconds_all": all_},
                 {"x": np.asarray(final["s"][0])})
sys.exit(0)
