//! A linear softmax classifier W ∈ R^{d×K} (row-major: row j holds feature j's K class
//! weights) as a function of the weights **and of the point** it is evaluated on (dataset
//! distillation learns the points: Arbel & Mairal, AmIGO §5.3 / App. F.3), and the per-feature
//! regularizer c Σ_j e^{λ_j}‖W[j,·]‖².
//!
//! ```text
//! z = Wᵀξ, s = softmax(z), r = s − e_c,  H u = s⊙u − s(sᵀu)      CE(W; ξ, c) = lse(z) − z_c
//! ∂W CE = ξ rᵀ,   ∂WW CE·V = ξ (H Vᵀξ)ᵀ,   ∂ξ⟨∂W CE, V⟩ = V r + W H Vᵀξ
//! R(λ, W) = c Σ_j e^{λ_j}‖W_j‖²:  ∂W R = 2c e^λ ⊙ W,  ∂WW R·V = 2c e^λ ⊙ V,  ∂λ_j⟨∂W R, V⟩ = 2c e^{λ_j}⟨W_j, V_j⟩
//! ```
//!
//! The `add_*` functions *add* `scale ×` their value into the output. Sizes are the caller's
//! precondition; K ≤ [`MAX_CLASSES`] logits live on the stack: no allocation, sequential.

/// Largest number of classes K.
pub const MAX_CLASSES: usize = 256;

/// The classifier's shape: d features, K classes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SoftmaxLinear {
    /// Features d.
    pub d: usize,
    /// Classes K (≤ [`MAX_CLASSES`]).
    pub k: usize,
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

impl SoftmaxLinear {
    /// s = softmax(Wᵀξ) (length K); returns the log-sum-exp of the logits.
    pub fn probabilities(&self, w: &[f64], xi: &[f64], s: &mut [f64]) -> f64 {
        s.fill(0.0);
        for (&xj, wj) in xi.iter().zip(w.chunks_exact(self.k)) {
            s.iter_mut().zip(wj).for_each(|(z, w)| *z += xj * w);
        }
        let m = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let lse = m + s.iter().map(|z| (z - m).exp()).sum::<f64>().ln();
        s.iter_mut().for_each(|z| *z = (*z - lse).exp());
        lse
    }

    /// CE(W; ξ, c), and s = softmax(Wᵀξ) in `s`.
    fn loss_into(&self, w: &[f64], xi: &[f64], label: usize, s: &mut [f64]) -> f64 {
        let lse = self.probabilities(w, xi, s);
        let z_label: f64 = xi.iter().zip(w.chunks_exact(self.k)).map(|(x, wj)| x * wj[label]).sum();
        lse - z_label
    }

    /// CE(W; ξ, c).
    pub fn loss(&self, w: &[f64], xi: &[f64], label: usize) -> f64 {
        let mut s = [0.0; MAX_CLASSES];
        self.loss_into(w, xi, label, &mut s[..self.k])
    }

    /// out (d × K) += scale · ∂W CE; returns CE.
    pub fn add_grad_w(&self, w: &[f64], xi: &[f64], label: usize, scale: f64, out: &mut [f64]) -> f64 {
        let mut s = [0.0; MAX_CLASSES];
        let s = &mut s[..self.k];
        let loss = self.loss_into(w, xi, label, s);
        s[label] -= 1.0;
        for (&xj, oj) in xi.iter().zip(out.chunks_exact_mut(self.k)) {
            oj.iter_mut().zip(s.iter()).for_each(|(o, r)| *o += scale * xj * r);
        }
        loss
    }

    /// u = H Vᵀξ at s = softmax(Wᵀξ) (both written).
    fn curvature(&self, w: &[f64], xi: &[f64], v: &[f64], s: &mut [f64], u: &mut [f64]) {
        self.probabilities(w, xi, s);
        u.fill(0.0);
        for (&xj, vj) in xi.iter().zip(v.chunks_exact(self.k)) {
            u.iter_mut().zip(vj).for_each(|(u, v)| *u += xj * v);
        }
        let su = dot(s, u);
        u.iter_mut().zip(s.iter()).for_each(|(u, s)| *u = s * (*u - su));
    }

    /// out (d × K) += scale · ∂WW CE · V (independent of the label).
    pub fn add_hvp_w(&self, w: &[f64], xi: &[f64], v: &[f64], scale: f64, out: &mut [f64]) {
        let (mut s, mut u) = ([0.0; MAX_CLASSES], [0.0; MAX_CLASSES]);
        let (s, u) = (&mut s[..self.k], &mut u[..self.k]);
        self.curvature(w, xi, v, s, u);
        for (&xj, oj) in xi.iter().zip(out.chunks_exact_mut(self.k)) {
            oj.iter_mut().zip(u.iter()).for_each(|(o, u)| *o += scale * xj * u);
        }
    }

    /// out (d) += scale · ∂ξ⟨∂W CE, V⟩ = scale · (V r + W H Vᵀξ): the cross derivative through
    /// the point.
    pub fn add_cross_point(&self, w: &[f64], xi: &[f64], label: usize, v: &[f64], scale: f64, out: &mut [f64]) {
        let (mut s, mut u) = ([0.0; MAX_CLASSES], [0.0; MAX_CLASSES]);
        let (s, u) = (&mut s[..self.k], &mut u[..self.k]);
        self.curvature(w, xi, v, s, u);
        s[label] -= 1.0;
        for ((o, vj), wj) in out.iter_mut().zip(v.chunks_exact(self.k)).zip(w.chunks_exact(self.k)) {
            *o += scale * (dot(vj, s) + dot(wj, u));
        }
    }
}

/// The per-feature regularizer R(λ, W) = c Σ_j e^{λ_j}‖W[j,·]‖² on a d × K row-major W.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FeatureRidge {
    /// Classes K (the row length of W).
    pub k: usize,
    /// The constant c (AmIGO F.3: 1/(K·d)).
    pub c: f64,
}

impl FeatureRidge {
    /// R(λ, W).
    pub fn value(&self, lambda: &[f64], w: &[f64]) -> f64 {
        lambda.iter().zip(w.chunks_exact(self.k)).map(|(l, wj)| l.exp() * dot(wj, wj)).sum::<f64>() * self.c
    }
    /// out += ∂WW R · V = 2c e^λ ⊙ V (row-wise); with V = W it adds ∂W R.
    pub fn add_hvp(&self, lambda: &[f64], v: &[f64], out: &mut [f64]) {
        for ((l, vj), oj) in lambda.iter().zip(v.chunks_exact(self.k)).zip(out.chunks_exact_mut(self.k)) {
            let a = 2.0 * self.c * l.exp();
            oj.iter_mut().zip(vj).for_each(|(o, v)| *o += a * v);
        }
    }
    /// out (d) = ∂λ⟨∂W R, V⟩: 2c e^{λ_j}⟨W_j, V_j⟩ (overwritten).
    pub fn cross_lambda(&self, lambda: &[f64], w: &[f64], v: &[f64], out: &mut [f64]) {
        for (((o, l), wj), vj) in out.iter_mut().zip(lambda).zip(w.chunks_exact(self.k)).zip(v.chunks_exact(self.k)) {
            *o = 2.0 * self.c * l.exp() * dot(wj, vj);
        }
    }
}
