//! Ridge regression on a learned linear embedding: one task's loss as a function of the shared
//! embedding E ∈ R^{p×k} (row-major) and the task's head w ∈ R^k (the meta-learning problems
//! of Grazzi, Pontil & Salzo §7.2 and Ji, Yang & Liang §5, in their linear form).
//!
//! ```text
//! z_i = Eᵀx_i,  r_i = z_iᵀw − y_i,   ℓ(E, w) = (1/(2n)) Σ_i r_i² + (µ/2)‖w‖²
//! ∂w ℓ = (1/n) Σ r_i z_i + µ w,          ∂E ℓ = (1/n) Σ r_i x_i wᵀ
//! ∂ww ℓ·v = (1/n) Σ (z_iᵀv) z_i + µ v,   ∂E∂w ℓ·v = (1/n) Σ x_i (r_i v + (z_iᵀv) w)ᵀ
//! ```
//!
//! Every derivative *adds* `scale ×` its value into the output (a problem sums tasks with
//! scale 1/|B|). Sizes are the caller's precondition (slice indexing panics otherwise); no
//! allocation (k ≤ [`MAX_EMBED`] values on the stack), sequential.

/// Largest embedding dimension k.
pub const MAX_EMBED: usize = 64;

/// One task's rows: inputs `x` (n × p, row-major) and targets `y` (n), with ridge µ.
#[derive(Clone, Copy, Debug)]
pub struct EmbeddedRidge<'a> {
    /// Inputs, n × p row-major.
    pub x: &'a [f64],
    /// Targets, n.
    pub y: &'a [f64],
    /// Input dimension p.
    pub p: usize,
    /// Embedding dimension k (≤ [`MAX_EMBED`]).
    pub k: usize,
    /// Ridge µ on the head (0: the plain squared loss).
    pub ridge: f64,
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

impl EmbeddedRidge<'_> {
    fn n(&self) -> usize {
        self.y.len()
    }

    /// Visits every row with (x_i, z_i = Eᵀx_i, y_i).
    fn rows(&self, e: &[f64], mut visit: impl FnMut(&[f64], &[f64], f64)) {
        let (p, k) = (self.p, self.k);
        let mut z = [0.0; MAX_EMBED];
        let z = &mut z[..k];
        for (xi, &yi) in self.x.chunks_exact(p).zip(self.y) {
            z.fill(0.0);
            for (&xij, ej) in xi.iter().zip(e.chunks_exact(k)) {
                z.iter_mut().zip(ej).for_each(|(zl, el)| *zl += xij * el);
            }
            visit(xi, z, yi);
        }
    }

    /// ℓ(E, w).
    pub fn value(&self, e: &[f64], w: &[f64]) -> f64 {
        let mut sq = 0.0;
        self.rows(e, |_, z, y| {
            let r = dot(z, w) - y;
            sq += r * r;
        });
        sq / (2.0 * self.n() as f64) + 0.5 * self.ridge * dot(w, w)
    }

    /// out (k) += scale · ∂w ℓ.
    pub fn grad_w(&self, e: &[f64], w: &[f64], scale: f64, out: &mut [f64]) {
        let c = scale / self.n() as f64;
        self.rows(e, |_, z, y| {
            let r = c * (dot(z, w) - y);
            out.iter_mut().zip(z).for_each(|(o, z)| *o += r * z);
        });
        out.iter_mut().zip(w).for_each(|(o, w)| *o += scale * self.ridge * w);
    }

    /// out (p × k) += scale · ∂E ℓ.
    pub fn grad_e(&self, e: &[f64], w: &[f64], scale: f64, out: &mut [f64]) {
        let c = scale / self.n() as f64;
        self.rows(e, |x, z, y| outer_add(out, x, c * (dot(z, w) - y), w));
    }

    /// out (k) += scale · ∂ww ℓ · v (independent of w).
    pub fn hvp_w(&self, e: &[f64], v: &[f64], scale: f64, out: &mut [f64]) {
        let c = scale / self.n() as f64;
        self.rows(e, |_, z, _| {
            let zv = c * dot(z, v);
            out.iter_mut().zip(z).for_each(|(o, z)| *o += zv * z);
        });
        out.iter_mut().zip(v).for_each(|(o, v)| *o += scale * self.ridge * v);
    }

    /// out (p × k) += scale · ∂E∂w ℓ · v.
    pub fn cross_ew(&self, e: &[f64], w: &[f64], v: &[f64], scale: f64, out: &mut [f64]) {
        let c = scale / self.n() as f64;
        let mut u = [0.0; MAX_EMBED];
        let u = &mut u[..self.k];
        self.rows(e, |x, z, y| {
            let (r, zv) = (dot(z, w) - y, dot(z, v));
            u.iter_mut().zip(v.iter().zip(w)).for_each(|(u, (v, w))| *u = r * v + zv * w);
            outer_add(out, x, c, u);
        });
    }

    /// The head's normal equations at E: H = ZᵀZ/n + µI (k × k, column-major, as faer reads a
    /// slice) and b = Zᵀy/n, so that w*(E) = H⁻¹b and ∂ww ℓ = H.
    pub fn normal_equations(&self, e: &[f64], h: &mut [f64], b: &mut [f64]) {
        let k = self.k;
        let c = 1.0 / self.n() as f64;
        h.fill(0.0);
        b.fill(0.0);
        self.rows(e, |_, z, y| {
            for a in 0..k {
                b[a] += c * y * z[a];
                for (col, zb) in z.iter().enumerate() {
                    h[col * k + a] += c * z[a] * zb;
                }
            }
        });
        (0..k).for_each(|a| h[a * k + a] += self.ridge);
    }
}

/// out (p × k, row-major) += coeff · x uᵀ.
fn outer_add(out: &mut [f64], x: &[f64], coeff: f64, u: &[f64]) {
    for (&xj, row) in x.iter().zip(out.chunks_exact_mut(u.len())) {
        let a = coeff * xj;
        row.iter_mut().zip(u).for_each(|(o, ul)| *o += a * ul);
    }
}
