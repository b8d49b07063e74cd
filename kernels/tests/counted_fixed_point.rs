//! `Counted`: one count per call in the field of its documented mapping, the batch's
//! samples in the sample fields, and the inner problem's outputs unchanged.

use bilevel_kernels::{Batch, Counted, FixedPointProblem, OracleCounts};

/// Φ(w, λ)_i = 0.5 w_i + λ (one scalar state per sample), E = ½ Σ_i w_i² + ½‖λ‖².
struct Affine {
    n: usize,
}

fn rows(b: Batch<'_>, n: usize) -> Vec<usize> {
    match b {
        Batch::Full => (0..n).collect(),
        Batch::Rows(r) => r.to_vec(),
    }
}

impl FixedPointProblem for Affine {
    fn dim_lambda(&self) -> usize {
        1
    }
    fn dim_state(&self) -> usize {
        1
    }
    fn n_samples(&self) -> usize {
        self.n
    }
    fn map(&self, l: &[f64], w: &[f64], b: Batch<'_>, out: &mut [f64]) {
        (0..rows(b, self.n).len()).for_each(|p| out[p] = 0.5 * w[p] + l[0]);
    }
    fn jvp_w(&self, _: &[f64], _: &[f64], v: &[f64], b: Batch<'_>, out: &mut [f64]) {
        (0..rows(b, self.n).len()).for_each(|p| out[p] = 0.5 * v[p]);
    }
    fn vjp_w(&self, l: &[f64], w: &[f64], v: &[f64], b: Batch<'_>, out: &mut [f64]) {
        self.jvp_w(l, w, v, b, out)
    }
    fn vjp_lambda(&self, _: &[f64], _: &[f64], v: &[f64], b: Batch<'_>, out: &mut [f64]) {
        out[0] = v[..rows(b, self.n).len()].iter().sum();
    }
    fn upper(&self, l: &[f64], w: &[f64], b: Batch<'_>) -> f64 {
        0.5 * w[..rows(b, self.n).len()].iter().map(|v| v * v).sum::<f64>() + 0.5 * l[0] * l[0]
    }
    fn upper_grad_w(&self, _: &[f64], w: &[f64], b: Batch<'_>, out: &mut [f64]) {
        let len = rows(b, self.n).len();
        out[..len].copy_from_slice(&w[..len]);
    }
    fn upper_grad_lambda(&self, l: &[f64], _: &[f64], _: Batch<'_>, out: &mut [f64]) {
        out[0] = l[0];
    }
}

#[test]
fn every_call_is_counted_in_its_field_with_its_samples() {
    let p = Counted::new(Affine { n: 5 });
    let (l, w, v) = ([0.3], [1.0, 2.0, 3.0, 4.0, 5.0], [0.5; 5]);
    let (mut out, mut g) = (vec![0.0; 5], vec![0.0; 1]);
    let two = Batch::Rows(&[4, 1]);
    let mut want = OracleCounts::default();
    assert_eq!(p.counts(), want);
    p.map(&l, &w, Batch::Full, &mut out);
    (want.grad_y_g, want.samples_g) = (1, 5);
    assert_eq!(p.counts(), want, "map → grad_y_g");
    let mut direct = vec![0.0; 5];
    p.inner().map(&l, &w, Batch::Full, &mut direct);
    assert_eq!(out, direct, "the wrapper returns the inner outputs");
    p.map(&l, &w, two, &mut out);
    (want.grad_y_g, want.samples_g) = (2, 7);
    assert_eq!(p.counts(), want, "a batch of two touches two samples");
    p.jvp_w(&l, &w, &v, Batch::Full, &mut out);
    p.vjp_w(&l, &w, &v, two, &mut out);
    (want.hvp, want.samples_g) = (2, 14);
    assert_eq!(p.counts(), want, "jvp_w and vjp_w → hvp");
    p.vjp_lambda(&l, &w, &v, Batch::Full, &mut g);
    (want.cross, want.samples_g) = (1, 19);
    assert_eq!(p.counts(), want, "vjp_lambda → cross");
    assert_eq!(p.upper(&l, &w, two), p.inner().upper(&l, &w, two));
    (want.f, want.samples_f) = (1, 2);
    assert_eq!(p.counts(), want, "upper → f (the inner call is not counted)");
    p.upper_grad_w(&l, &w, Batch::Full, &mut out);
    (want.grad_y_f, want.samples_f) = (1, 7);
    assert_eq!(p.counts(), want, "upper_grad_w → grad_y_f");
    p.upper_grad_lambda(&l, &w, Batch::Full, &mut g);
    (want.grad_x_f, want.samples_f) = (1, 12);
    assert_eq!(p.counts(), want, "upper_grad_lambda → grad_x_f");
    assert_eq!(want.g, 0);
    p.reset();
    assert_eq!(p.counts(), OracleCounts::default());
    // Boxed, as the catalogue hands it out.
    let boxed: Box<dyn FixedPointProblem + Send> = Box::new(Affine { n: 3 });
    let p = Counted::new(boxed);
    p.map(&l, &w, Batch::Full, &mut out);
    assert_eq!((p.counts().grad_y_g, p.counts().samples_g), (1, 3));
}

#[test]
fn replayed_calls_count_as_calls_but_not_their_samples() {
    let p = Counted::new(Affine { n: 5 });
    let (l, w) = ([0.3], [1.0, 2.0, 3.0, 4.0, 5.0]);
    let (mut out, mut g) = (vec![0.0; 5], vec![0.0; 1]);
    let two = Batch::Rows(&[4, 1]);
    p.upper_grad_w(&l, &w, two, &mut out);
    p.replay(&mut || p.upper_grad_lambda(&l, &w, two, &mut g));
    let c = p.counts();
    assert_eq!((c.grad_y_f, c.grad_x_f, c.samples_f), (1, 1, 2), "∇λE on ∇wE's examples: one access");
    // Outside replay, counting is back on.
    p.upper_grad_lambda(&l, &w, two, &mut g);
    assert_eq!((p.counts().grad_x_f, p.counts().samples_f), (2, 4));
    // Through a bilevel problem's gradient map of a counted problem, and a box: forwarded.
    use bilevel_kernels::models::{QuadraticBilevel, QuadraticForm};
    use bilevel_kernels::{BilevelProblem, GradientMap};
    let a = faer::Mat::<f64>::identity(2, 2);
    let q = QuadraticBilevel::new(
        QuadraticForm::new(1, 2).with_a(a.clone()).unwrap(),
        QuadraticForm::new(1, 2).with_a(a).unwrap(),
    )
    .unwrap();
    let boxed: Box<dyn BilevelProblem> = Box::new(q);
    let counted = Counted::new(boxed);
    let map = GradientMap { problem: &counted, eta: 0.5 };
    let (x, y) = ([1.0], [0.5, -0.5]);
    let (mut gy, mut gx) = (vec![0.0; 2], vec![0.0; 1]);
    map.upper_grad_w(&x, &y, Batch::Full, &mut gy);
    map.replay(&mut || map.upper_grad_lambda(&x, &y, Batch::Full, &mut gx));
    let c = counted.counts();
    assert_eq!((c.grad_y_f, c.grad_x_f, c.samples_f), (1, 1, 1));
}
