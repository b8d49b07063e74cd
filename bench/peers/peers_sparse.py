"""SciPy side of goal 3: sparse logistic HVPs at 20 Newsgroups size (bench/peers/README.md).

Loads X_train, y_train of a `bilevel export --problem text` directory as a `scipy.sparse`
CSR matrix, and the points θ, directions v and Rust products the `peers logistic` run wrote
(prefix --rust). Binary (labels +1 for an even class, −1 for an odd one, no regularizer):
H v = Xᵀ(D ⊙ (X v))/n with D_i = σ(b_i z_i)σ(−b_i z_i), z = Xθ. Multinomial (K classes,
Θ row-major d×K): U = X V, H = S ⊙ (U − rowsum(S ⊙ U))/n with S = softmax(XΘ), HVP = XᵀH.
D and S (the point) are set-up; only the products are timed, as on the Rust side. SciPy's
sparse products run on one thread whatever the thread settings.
"""
import argparse
import json
import os

p = argparse.ArgumentParser()
p.add_argument("--dir", required=True)
p.add_argument("--rust", required=True, help="prefix of the Rust `peers logistic` run")
p.add_argument("--out", required=True)
p.add_argument("--threads", type=int, default=1)
p.add_argument("--repeats", type=int, default=7)
args = p.parse_args()

import common  # noqa: E402

common.set_threads_env(args.threads)
import numpy as np  # noqa: E402
import scipy  # noqa: E402
import scipy.sparse as sp  # noqa: E402
from scipy.special import expit, softmax  # noqa: E402

m = json.load(open(os.path.join(args.dir, "manifest.json")))
A = {a["name"]: a["file"] for a in m["arrays"]}
ld = lambda name: np.load(os.path.join(args.dir, A[name]))  # noqa: E731
d, k = m["parameters"]["n_features"], m["parameters"]["n_classes"]
indptr = ld("X_train_indptr")
X = sp.csr_matrix((ld("X_train_data"), ld("X_train_indices"), indptr), shape=(len(indptr) - 1, d))
labels = ld("y_train")
n = X.shape[0]
rust = json.load(open(args.rust + ".json"))
rd = os.path.dirname(args.rust)
vec = lambda name: np.load(os.path.join(rd, rust["files"][name]))  # noqa: E731


def rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


# Binary.
b = np.where(labels % 2 == 0, 1.0, -1.0)
z = X @ vec("theta_binary")
D = expit(b * z) * expit(-b * z)
v = vec("v_binary")


def hvp_binary():
    return X.T @ (D * (X @ v)) / n


h_b = hvp_binary()
sec_b, all_b = common.median_time(hvp_binary, args.repeats)

# Multinomial.
Theta = vec("theta_multinomial").reshape(d, k)
S = softmax(X @ Theta, axis=1)
V = vec("v_multinomial").reshape(d, k)


def hvp_multinomial():
    U = X @ V
    H = S * (U - (S * U).sum(axis=1, keepdims=True)) / n
    return X.T @ H


h_m = hvp_multinomial().ravel()
sec_m, all_m = common.median_time(hvp_multinomial, args.repeats)
report = {"side": "scipy", "task": "logistic", "threads": args.threads, "repeats": args.repeats,
          "scipy": scipy.__version__, "n": n, "d": d, "classes": k, "nnz": int(X.nnz),
          "seconds_binary": sec_b, "seconds_binary_all": all_b,
          "seconds_multinomial": sec_m, "seconds_multinomial_all": all_m,
          "rel_diff_binary": rel(h_b, vec("hvp_binary")),
          "rel_diff_multinomial": rel(h_m, vec("hvp_multinomial"))}
with open(args.out + ".json", "w") as f:
    json.dump(report, f, indent=2)
    f.write("\n")
