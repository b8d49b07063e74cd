"""Checks that every side reached the Rust result and writes the report table.

Usage: compare.py RESULTS_DIR REPORT.md  (RESULTS_DIR holds the JSONs of run.sh; file names
`<row>__<side>__t<threads>.json`). Exits 1 when a check fails; the report is written anyway,
with the failing checks listed.

Checks (tolerances and why in docs/performance.md):
- hypergrad: ‖h_side − h_rust‖ / ‖h_rust‖ ≤ HYPERGRAD_TOL and the same CG iteration count;
- amigo: the same iteration count to the target (exact), and ‖x_side − x_rust‖/‖x_rust‖ ≤
  X_TOL at that count;
- cli: `bilevel hypergrad --problem-dir` reports the peers binary's relative error (the two
  Rust paths compute the same estimate) and `bilevel solve --problem-dir` the same K;
- stocbio: ‖x_K,side − x_K,rust‖/‖x_K,rust‖ ≤ X_TOL after the same K iterations on the same
  batches (the Python sides replay the Rust run's recorded batches).
"""
import glob
import json
import os
import platform
import subprocess
import sys

import numpy as np

HYPERGRAD_TOL = 1e-10
X_TOL = 1e-8
HVP_TOL = 1e-10
SIDES = ["rust", "numpy", "symv", "jax", "jaxopt"]
SIDE_NAMES = {"rust": "Rust", "numpy": "NumPy `@`", "symv": "SciPy dsymv", "jax": "JAX", "jaxopt": "jaxopt CG"}


def rel(a, b):
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), np.finfo(float).tiny))


def main(results, report_path):
    # File names: <row>__<side>__t<threads>__r<round>.json. Each (row, side, threads) keeps its
    # fastest round; the logistic rows keep each model's fastest round (fastest_logistic).
    rounds = {}
    for f in sorted(glob.glob(os.path.join(results, "*__*__t*__r*.json"))):
        row, side, t, _ = os.path.basename(f)[:-5].split("__")
        with open(f) as fh:
            rounds.setdefault((row, side, int(t[1:])), []).append((json.load(fh), f[:-5]))
    key = lambda r: r[0].get("seconds", r[0].get("seconds_per_iteration", 0.0))  # noqa: E731
    runs = {k: fastest_logistic(v) if k[0] == "logistic" else min(v, key=key) for k, v in rounds.items()}
    meta = json.load(open(os.path.join(results, "meta.json")))
    failures, lines, notes = [], [], []
    keys = sorted({(r, t) for (r, _, t) in runs if r != "logistic" and not r.startswith("stocbio")}, key=lambda k: (meta["rows"][k[0]]["order"], k[1]))
    for row, t in keys:
        info = meta["rows"][row]
        ref, ref_prefix = runs.get((row, "rust", t), (None, None))
        if ref is None:
            failures.append(f"{row} t{t}: no Rust run")
            continue
        times, checks, vecs = {}, [], []
        tol = info.get("tol", HYPERGRAD_TOL)
        for side in SIDES:
            if (row, side, t) not in runs:
                continue
            r, prefix = runs[(row, side, t)]
            times[side] = r["seconds"]
            if side == "rust":
                continue
            d = os.path.dirname(prefix)
            if ref["task"] == "hypergrad":
                h = np.load(os.path.join(d, r["hypergradient_file"]))
                h_ref = np.load(os.path.join(os.path.dirname(ref_prefix), ref["hypergradient_file"]))
                e = rel(h, h_ref)
                vecs.append(h)
                ok = e <= tol and r["cg_iterations"] == ref["cg_iterations"]
                checks.append(f"{side} {e:.1e}")
                if not ok:
                    failures.append(f"{row} t{t} {side}: hypergradient rel diff {e:.2e} (tol {tol:.0e}), "
                                    f"CG iterations {r['cg_iterations']} vs {ref['cg_iterations']}")
            else:
                x = np.load(os.path.join(d, r["x_file"]))
                x_ref = np.load(os.path.join(os.path.dirname(ref_prefix), ref["x_file"]))
                e = rel(x, x_ref)
                ok = r["iterations"] == ref["iterations"] and e <= X_TOL and r["reached"]
                checks.append(f"{side} K={r['iterations']} {e:.0e}")
                if not ok:
                    failures.append(f"{row} t{t} {side}: K {r['iterations']} vs Rust {ref['iterations']}, "
                                    f"reached {r['reached']}, x rel diff {e:.2e} (tol {X_TOL:.0e})")
        if len(vecs) > 1:
            spread = max(rel(a, b) for i, a in enumerate(vecs) for b in vecs[i + 1:])
            notes.append(f"{row} t{t}: tolerance {tol:.0e}; the Python sides differ among themselves by up to "
                         f"{spread:.1e}; Rust's estimate is {ref['rel_error_vs_exact']:.2e} from the exact "
                         "hypergradient")
        c = ref["oracle_calls"]
        k = ref.get("iterations", 1)
        # Byte floor: one triangle of A_g per ∂y g and HVP, one pass over B_g for the hoisted
        # B_g x of each outer step and for each cross product, one triangle of A_f per ∂x f.
        floor = ((c["grad_g"] + c["hvp"]) * info["tri_g"] + (k + c["cross"]) * info["b_g"]
                 + c["grad_x_f"] * info["tri_f"])
        rust = times["rust"]
        cells = [info["label"], str(t)]
        cells += [f"{times[s]*1e3:.1f}" if s in times else "–" for s in SIDES]
        cells += [f"{times[s]/rust:.2f}" if s in times else "–" for s in SIDES[1:]]
        cells += [f"{floor/1e6:.0f}", f"{floor/rust/1e9:.1f}", "; ".join(checks)]
        if ref["task"] == "amigo":
            cells[0] += f", K = {ref['iterations']}"
        lines.append("| " + " | ".join(cells) + " |")
    for name, cli in meta.get("cli", {}).items():
        r, _ = runs.get((cli["row"], "rust", 1), (None, None))
        if r is None:
            continue
        want = r["rel_error_vs_exact"] if r["task"] == "hypergrad" else r["iterations"]
        got = cli["value"]
        ok = (abs(got - want) <= 1e-12 * abs(want) + 1e-300) if r["task"] == "hypergrad" else got == want
        if not ok:
            failures.append(f"cli {name}: `bilevel` reports {got}, the peers binary {want}")
    sparse = logistic_table(runs, failures)
    head = ["row", "threads"] + [f"{SIDE_NAMES[s]} ms" for s in SIDES]
    head += [f"{SIDE_NAMES[s]}/Rust" for s in SIDES[1:]] + ["byte floor MB", "Rust GB/s", "agreement with Rust"]
    out = ["# bilevel vs NumPy/SciPy and JAX (bench/peers/run.sh)", ""]
    out += [f"- date: {meta['date']}; machine: {meta['machine']}; load before/after: {meta['load_before']} / "
            f"{load()}", f"- versions: {meta['versions']}", f"- command: `{meta['command']}`",
            f"- repeats: {meta['repeats']} (median); times in ms; ratios = peer time / Rust time "
            "(> 1: Rust faster)", ""]
    out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + lines + [""]
    out += [f"- {n}" for n in notes] + [""] if notes else []
    out += sparse
    out += stocbio_table(runs, failures)
    out += [f"Checks: hypergradient relative difference ≤ the row's tolerance (default {HYPERGRAD_TOL:.0e}) with the same CG iteration count; "
            f"AmIGO-CG the same iteration count K to the target and x_K within {X_TOL:.0e}; "
            "`bilevel hypergrad`/`solve --problem-dir` agree with the peers binary; sparse HVPs within "
            f"{HVP_TOL:.0e} of Rust's.", ""]
    out += ["**All checks passed.**" if not failures else "**FAILED:**\n" + "\n".join(f"- {f}" for f in failures)]
    with open(report_path, "w") as f:
        f.write("\n".join(out) + "\n")
    print("\n".join(out))
    return 1 if failures else 0


def fastest_logistic(runs):
    """One logistic run whose seconds_binary and seconds_multinomial are the fastest rounds'."""
    best = dict(runs[0][0])
    for model in ("binary", "multinomial"):
        r = min(runs, key=lambda r: r[0][f"seconds_{model}"])[0]
        best[f"seconds_{model}"] = r[f"seconds_{model}"]
    return best, runs[0][1]


def logistic_table(runs, failures):
    """Goal 3: one row per model and thread count, Rust against SciPy."""
    lines = []
    for t in sorted({t for (r, _, t) in runs if r == "logistic"}):
        rust, _ = runs.get(("logistic", "rust", t), (None, None))
        sc, _ = runs.get(("logistic", "scipy", t), (None, None))
        if rust is None or sc is None:
            failures.append(f"logistic t{t}: a side is missing")
            continue
        n, d, k, nnz = rust["n"], rust["d"], rust["classes"], rust["nnz"]
        x_bytes = nnz * 12 + (n + 1) * 8  # f64 values, u32 column indices, the row pointers
        for model, floor in [("binary", x_bytes + 2 * d * 8 + n * 8),
                             ("multinomial", x_bytes + 2 * d * k * 8 + n * k * 8)]:
            r, s_ = rust[f"seconds_{model}"], sc[f"seconds_{model}"]
            e = sc[f"rel_diff_{model}"]
            if not e <= HVP_TOL:
                failures.append(f"logistic {model} t{t}: SciPy's HVP differs from Rust's by {e:.2e} (tol {HVP_TOL:.0e})")
            label = f"3: {model} logistic HVP" + (f", K = {k}" if model == "multinomial" else "")
            lines.append(f"| {label} | {t} | {r*1e3:.2f} | {s_*1e3:.2f} | {s_/r:.2f} | {floor/1e6:.1f} | "
                         f"{floor/r/1e9:.1f} | {e:.1e} |")
    if not lines:
        return []
    first = next(v for (r, s, _), (v, _) in runs.items() if r == "logistic" and s == "rust")
    head = (f"Sparse logistic HVPs on the `text` 20news export's training split (n = {first['n']}, "
            f"d = {first['d']}, nnz = {first['nnz']}); SciPy `X.T @ (D * (X @ v)) / n` and its multinomial "
            "form (one thread: SciPy's sparse products are sequential).")
    return [head, "", "| row | threads | Rust ms | SciPy ms | SciPy/Rust | byte floor MB | Rust GB/s | "
            "rel diff |", "|---|---|---|---|---|---|---|---|"] + lines + [""]


def stocbio_table(runs, failures):
    """Goal 4: one row per layout and thread count, Rust against NumPy and JAX, per iteration."""
    lines = []
    for row, t in sorted({(r, t) for (r, _, t) in runs if r.startswith("stocbio")}):
        rust, _ = runs.get((row, "rust", t), (None, None))
        if rust is None:
            failures.append(f"{row} t{t}: no Rust run")
            continue
        per_it = {s: runs[(row, s, t)][0]["seconds_per_iteration"] for s in ("rust", "numpy", "jax") if (row, s, t) in runs}
        checks = []
        for s in ("numpy", "jax"):
            if (row, s, t) in runs:
                e = runs[(row, s, t)][0]["rel_diff_x_vs_rust"]
                checks.append(f"{s} {e:.0e}")
                if not e <= X_TOL:
                    failures.append(f"{row} t{t} {s}: x_K differs from Rust's by {e:.2e} (tol {X_TOL:.0e})")
        T, Q, B, dx, dy = (rust[k] for k in ("inner_steps", "neumann_terms", "batch", "dim_x", "dim_y"))
        if rust["layout"] == "dense":
            # One triangle of each symmetric sample matrix, the cross matrix B_i once per use.
            tri_y, tri_x, cr = dy * (dy + 1) // 2, dx * (dx + 1) // 2, dx * dy
            per = T * (tri_y + cr + dy) + (tri_y + 2 * cr + tri_x + dy + dx) + Q * tri_y + cr
        else:
            per = T * (3 * dy + dx) + (3 * dy + 3 * dx) + Q * dy + (dy + dx)
        floor = per * B * 8
        r = per_it["rust"]
        cell = lambda s: f"{per_it[s]*1e3:.3f}" if s in per_it else "–"
        ratio = lambda s: f"{per_it[s]/r:.2f}" if s in per_it else "–"
        lines.append(f"| 4: stocBiO iteration, {rust['layout']} samples | {t} | {cell('rust')} | {cell('numpy')} | "
                     f"{cell('jax')} | {ratio('numpy')} | {ratio('jax')} | {floor/1e6:.2f} | {floor/r/1e9:.1f} | "
                     f"{'; '.join(checks)} |")
    if not lines:
        return []
    head = ("stocBiO on the stochastic quadratic (benchopt's: n = 1024 samples per level, d_y = 100, d_x = 10, "
            f"batch {B}, T = {T}, Q = {Q}), K = {rust['iterations']} iterations on the batches the Rust run "
            "drew; times per iteration.")
    return [head, "", "| row | threads | Rust ms | NumPy ms | JAX ms | NumPy/Rust | JAX/Rust | byte floor MB | "
            "Rust GB/s | x_K vs Rust |", "|---|---|---|---|---|---|---|---|---|---|"] + lines + [""]


def load():
    try:
        return open("/proc/loadavg").read().split()[:3]
    except OSError:
        return platform.platform()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
