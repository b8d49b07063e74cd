//! Hypergradient estimators and bilevel algorithms (built on `bilevel-kernels`; see the solvers issue).
