"""NumPy/SciPy side of the comparison (bench/peers/README.md).

`--variant numpy`: the products as a NumPy user writes them, `A @ v` (OpenBLAS dgemv, which
reads all of a symmetric A). `--variant symv`: SciPy's BLAS `dsymv` for the symmetric A_g and
A_f (one triangle read, as the Rust kernels do); B_g products stay dgemv. Both mirror the Rust
estimator and algorithm step for step (solvers/src/estimators/aid.rs,
solvers/src/algorithms/aid.rs, kernels/src/linsolve/cg.rs), so the results agree to rounding.
"""
import sys

import common

args = common.parse_args(lambda p: p.add_argument("--variant", choices=["numpy", "symv"], default="numpy"))
common.set_threads_env(args.threads)

import numpy as np  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

prob = common.load(args.dir)
A_f, C_f, A_g, B_g, x0 = (prob[k] for k in ("A_f", "C_f", "A_g", "B_g", "x0"))

if args.variant == "symv":
    from scipy.linalg.blas import dsymv

    # A C-ordered symmetric matrix's transpose is the same matrix, Fortran-ordered: no copy.
    A_gF, A_fF = A_g.T, A_f.T

    def mv_g(v):
        return dsymv(1.0, A_gF, v, lower=1)

    def mv_f(v):
        return dsymv(1.0, A_fF, v, lower=1)

else:

    def mv_g(v):
        return A_g @ v

    def mv_f(v):
        return A_f @ v


def cg(b, v, n):
    """kernels/src/linsolve/cg.rs with a fixed budget of n steps from v (in place)."""
    r = b.copy()
    if np.any(v):  # r = b − H v; from v = 0 no product
        r -= mv_g(v)
    rr = r @ r
    tol = common.RESIDUAL_FLOOR * np.sqrt(b @ b)
    if np.sqrt(rr) <= tol:
        return v, 0
    p = r.copy()
    for k in range(1, n + 1):
        hp = mv_g(p)
        alpha = rr / (p @ hp)
        v += alpha * p
        r -= alpha * hp
        rr_new = r @ r
        if np.sqrt(rr_new) <= tol:
            return v, k
        p *= rr_new / rr
        p += r
        rr = rr_new
    return v, n


def inner_steps(x, y, t, alpha):
    """T GD steps on g, B_g x hoisted: y ← y − α(A_g y + B_g x)."""
    bx = B_g @ x
    for _ in range(t):
        y -= alpha * (mv_g(y) + bx)
    return y


def hypergradient(x, t, n, alpha):
    y = inner_steps(x, np.zeros(B_g.shape[0]), t, alpha)
    # ∂y f = C_f, ∂x f = A_f x (f = ½xᵀA_f x + yᵀC_f): y does not enter them.
    v, it = cg(C_f, np.zeros_like(C_f), n)
    return mv_f(x) - B_g.T @ v, it


def amigo_step(state, t, n, alpha, gamma):
    x, y, v = state
    y = inner_steps(x, y, t, alpha)
    v, _ = cg(C_f, v, n)
    g = mv_f(x) - B_g.T @ v
    return (x - gamma * g, y, v)


with threadpool_limits(limits=args.threads):
    alpha = 1.0 / prob["l_g"]
    T, N = args.inner_steps, args.lin_steps
    base = {"side": args.variant, "task": args.task, "threads": args.threads, "repeats": args.repeats,
            "inner_steps": T, "lin_steps": N, "numpy": np.__version__}
    if args.task == "hypergrad":
        h, it = hypergradient(x0, T, N, alpha)
        sec, all_ = common.median_time(lambda: hypergradient(x0, T, N, alpha), args.repeats)
        common.write(args.out, {**base, "cg_iterations": it, "seconds": sec, "seconds_all": all_},
                     {"hypergradient": h})
    else:
        gamma = 1.0 / prob["l_f"]
        dy = B_g.shape[0]
        value = common.Value(prob)
        fresh = lambda: (x0.copy(), np.zeros(dy), np.zeros(dy))  # noqa: E731
        k, rel, reached = common.find_iterations(lambda s: amigo_step(s, T, N, alpha, gamma), fresh(),
                                                 x0, value, prob["L_star"], args.target, args.max_iters)
        final = {}

        def run():
            s = fresh()
            for _ in range(k):
                s = amigo_step(s, T, N, alpha, gamma)
            final["x"] = s[0]

        sec, all_ = common.median_time(run, args.repeats)
        common.write(args.out, {**base, "target": args.target, "iterations": k, "rel_error": rel,
                                "reached": bool(reached), "seconds": sec, "seconds_all": all_},
                     {"x": final["x"]})
sys.exit(0)
