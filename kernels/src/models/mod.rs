//! Analytic derivatives of the model families used by the papers: value, gradients, the
//! Hessian-vector product ∂yy·v and the cross product ∂x∂y·v, over the full data or a
//! mini-batch of rows, dense or sparse, with fused passes where one sweep gives several.

mod blocked;
pub mod design;
pub mod embedding_ridge;
pub mod equilibrium;
pub mod logistic;
pub mod multinomial;
pub mod quadratic;
pub mod softmax_linear;

pub use design::{DenseRows, Design};
pub use logistic::{Hyper, LogisticModel, LogisticWorkspace};
pub use quadratic::{QuadraticBilevel, QuadraticForm};
