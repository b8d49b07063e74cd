//! Vector primitives on `&[f64]`: pulp SIMD with runtime dispatch (AVX-512, AVX2+FMA, NEON or
//! scalar, picked once per call), rayon above [`PAR_MIN_LEN`](crate::par::PAR_MIN_LEN) elements,
//! and the fused updates of the iterative solvers, each one pass over its operands.
//!
//! Reductions are deterministic: the same bits for any thread count (see [`crate::par`]).
//!
//! Length contract: like `copy_from_slice`, every function here panics if its slices differ in
//! length. These are the inner-loop primitives; the fallible APIs above them (solvers, models,
//! operators) check sizes once and return [`KernelError`](crate::KernelError) instead.

use crate::par::{self, Split};
pub use pulp::{Arch, Simd, WithSimd};

/// The SIMD dispatcher (AVX-512, AVX2+FMA, NEON or scalar, picked at run time).
#[inline]
pub fn arch() -> Arch {
    Arch::new()
}

#[inline]
#[track_caller]
fn same_len(a: usize, b: usize) {
    assert_eq!(a, b, "vector lengths differ");
}

/// Four independent accumulators hide the FMA latency; summed in a fixed order.
macro_rules! simd_sum4 {
    ($simd:ident, $n:expr, |$i:ident| $term:expr) => {{
        let zero = $simd.splat_f64s(0.0);
        let mut acc = [zero; 4];
        let n4 = $n / 4 * 4;
        let mut $i = 0;
        while $i < n4 {
            let i0 = $i;
            for (k, a) in acc.iter_mut().enumerate() {
                let $i = i0 + k;
                *a = $term(*a);
            }
            $i += 4;
        }
        while $i < $n {
            acc[0] = $term(acc[0]);
            $i += 1;
        }
        let s = $simd.add_f64s($simd.add_f64s(acc[0], acc[1]), $simd.add_f64s(acc[2], acc[3]));
        $simd.reduce_sum_f64s(s)
    }};
}

struct Dot<'a>(&'a [f64], &'a [f64]);
impl WithSimd for Dot<'_> {
    type Output = f64;
    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) -> f64 {
        let (a, at) = S::as_simd_f64s(self.0);
        let (b, bt) = S::as_simd_f64s(self.1);
        let head = simd_sum4!(simd, a.len(), |i| |acc| simd.mul_add_e_f64s(a[i], b[i], acc));
        head + at.iter().zip(bt).map(|(x, y)| x * y).sum::<f64>()
    }
}

/// `aᵀb`.
pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    same_len(a.len(), b.len());
    par::reduce((a, b), &|(a, b): (&[f64], &[f64])| arch().dispatch(Dot(a, b)))
}

/// `‖a‖²`, reading `a` once.
pub fn norm_sq(a: &[f64]) -> f64 {
    par::reduce(a, &|a: &[f64]| arch().dispatch(Dot(a, a)))
}

/// Euclidean norm `‖a‖₂`.
pub fn norm2(a: &[f64]) -> f64 {
    norm_sq(a).sqrt()
}

/// `max_i |a_i|` (0 for an empty slice; NaN if any entry is NaN).
pub fn norm_inf(a: &[f64]) -> f64 {
    a.iter().fold(0.0_f64, |m, &x| if x.is_nan() || m.is_nan() { f64::NAN } else { m.max(x.abs()) })
}

struct Axpby<'a> {
    alpha: f64,
    x: &'a [f64],
    beta: f64,
    y: &'a mut [f64],
}
impl WithSimd for Axpby<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let (x, xt) = S::as_simd_f64s(self.x);
        let (y, yt) = S::as_mut_simd_f64s(self.y);
        let (a, b) = (simd.splat_f64s(self.alpha), simd.splat_f64s(self.beta));
        if self.beta == 1.0 {
            for (yi, &xi) in y.iter_mut().zip(x) {
                *yi = simd.mul_add_e_f64s(a, xi, *yi);
            }
        } else {
            for (yi, &xi) in y.iter_mut().zip(x) {
                *yi = simd.mul_add_e_f64s(a, xi, simd.mul_f64s(b, *yi));
            }
        }
        for (yi, &xi) in yt.iter_mut().zip(xt) {
            *yi = if self.beta == 1.0 { self.alpha.mul_add(xi, *yi) } else { self.alpha.mul_add(xi, self.beta * *yi) };
        }
    }
}

/// `y ← αx + βy`.
pub fn axpby(alpha: f64, x: &[f64], beta: f64, y: &mut [f64]) {
    same_len(x.len(), y.len());
    par::for_each((x, y), &|(x, y): (&[f64], &mut [f64])| arch().dispatch(Axpby { alpha, x, beta, y }));
}

/// `y ← y + αx`.
pub fn axpy(alpha: f64, x: &[f64], y: &mut [f64]) {
    axpby(alpha, x, 1.0, y);
}

/// `y ← x + βy` (the CG direction update `p ← r + βp`).
pub fn xpby(x: &[f64], beta: f64, y: &mut [f64]) {
    axpby(1.0, x, beta, y);
}

struct Scale<'a>(f64, &'a mut [f64]);
impl WithSimd for Scale<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let (x, xt) = S::as_mut_simd_f64s(self.1);
        let a = simd.splat_f64s(self.0);
        for xi in x {
            *xi = simd.mul_f64s(a, *xi);
        }
        for xi in xt {
            *xi *= self.0;
        }
    }
}

/// `x ← αx`.
pub fn scale(alpha: f64, x: &mut [f64]) {
    par::for_each(x, &|x: &mut [f64]| arch().dispatch(Scale(alpha, x)));
}

struct Triad<'a> {
    a: &'a mut [f64],
    b: &'a [f64],
    s: f64,
    c: &'a [f64],
}
impl WithSimd for Triad<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let (a, at) = S::as_mut_simd_f64s(self.a);
        let (b, bt) = S::as_simd_f64s(self.b);
        let (c, ct) = S::as_simd_f64s(self.c);
        let s = simd.splat_f64s(self.s);
        for ((ai, &bi), &ci) in a.iter_mut().zip(b).zip(c) {
            *ai = simd.mul_add_e_f64s(s, ci, bi);
        }
        for ((ai, &bi), &ci) in at.iter_mut().zip(bt).zip(ct) {
            *ai = self.s.mul_add(ci, bi);
        }
    }
}

/// The STREAM triad `a ← b + s·c`: the bandwidth reference of the benches.
pub fn triad(a: &mut [f64], b: &[f64], s: f64, c: &[f64]) {
    same_len(a.len(), b.len());
    same_len(a.len(), c.len());
    par::for_each((a, b, c), &|(a, b, c): (&mut [f64], &[f64], &[f64])| arch().dispatch(Triad { a, b, s, c }));
}

struct CgUpdate<'a> {
    alpha: f64,
    p: &'a [f64],
    hp: &'a [f64],
    x: &'a mut [f64],
    r: &'a mut [f64],
}
impl WithSimd for CgUpdate<'_> {
    type Output = f64;
    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) -> f64 {
        let (p, pt) = S::as_simd_f64s(self.p);
        let (hp, hpt) = S::as_simd_f64s(self.hp);
        let (x, xt) = S::as_mut_simd_f64s(self.x);
        let (r, rt) = S::as_mut_simd_f64s(self.r);
        let (a, na) = (simd.splat_f64s(self.alpha), simd.splat_f64s(-self.alpha));
        let head = simd_sum4!(simd, p.len(), |i| |acc| {
            x[i] = simd.mul_add_e_f64s(a, p[i], x[i]);
            r[i] = simd.mul_add_e_f64s(na, hp[i], r[i]);
            simd.mul_add_e_f64s(r[i], r[i], acc)
        });
        let mut tail = 0.0;
        for i in 0..pt.len() {
            xt[i] = self.alpha.mul_add(pt[i], xt[i]);
            rt[i] = (-self.alpha).mul_add(hpt[i], rt[i]);
            tail += rt[i] * rt[i];
        }
        head + tail
    }
}

/// The fused CG update, one pass: `x ← x + αp`, `r ← r − α·Hp`; returns the new `rᵀr`.
pub fn cg_update(alpha: f64, p: &[f64], hp: &[f64], x: &mut [f64], r: &mut [f64]) -> f64 {
    same_len(p.len(), hp.len());
    same_len(p.len(), x.len());
    same_len(p.len(), r.len());
    par::reduce((p, hp, x, r), &|(p, hp, x, r): (&[f64], &[f64], &mut [f64], &mut [f64])| {
        arch().dispatch(CgUpdate { alpha, p, hp, x, r })
    })
}

struct Richardson<'a> {
    beta: f64,
    hz: &'a [f64],
    b: &'a [f64],
    z: &'a mut [f64],
}
impl WithSimd for Richardson<'_> {
    type Output = f64;
    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) -> f64 {
        let (hz, hzt) = S::as_simd_f64s(self.hz);
        let (b, bt) = S::as_simd_f64s(self.b);
        let (z, zt) = S::as_mut_simd_f64s(self.z);
        let nb = simd.splat_f64s(-self.beta);
        let head = simd_sum4!(simd, z.len(), |i| |acc| {
            let res = simd.sub_f64s(hz[i], b[i]);
            z[i] = simd.mul_add_e_f64s(nb, res, z[i]);
            simd.mul_add_e_f64s(res, res, acc)
        });
        let mut tail = 0.0;
        for i in 0..zt.len() {
            let res = hzt[i] - bt[i];
            zt[i] = (-self.beta).mul_add(res, zt[i]);
            tail += res * res;
        }
        head + tail
    }
}

/// The fused gradient (Richardson) step on `½zᵀHz − bᵀz`, one pass: `z ← z − β(Hz − b)`.
/// Returns `‖Hz − b‖²` at the *incoming* z (the residual this step corrected).
pub fn richardson_update(beta: f64, hz: &[f64], b: &[f64], z: &mut [f64]) -> f64 {
    same_len(z.len(), hz.len());
    same_len(z.len(), b.len());
    par::reduce((hz, b, z), &|(hz, b, z): (&[f64], &[f64], &mut [f64])| arch().dispatch(Richardson { beta, hz, b, z }))
}

struct NeumannUpdate<'a> {
    eta: f64,
    hr: &'a [f64],
    r: &'a mut [f64],
    acc: &'a mut [f64],
}
impl WithSimd for NeumannUpdate<'_> {
    type Output = f64;
    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) -> f64 {
        let (hr, hrt) = S::as_simd_f64s(self.hr);
        let (r, rt) = S::as_mut_simd_f64s(self.r);
        let (acc_v, acct) = S::as_mut_simd_f64s(self.acc);
        let ne = simd.splat_f64s(-self.eta);
        let head = simd_sum4!(simd, r.len(), |i| |s| {
            r[i] = simd.mul_add_e_f64s(ne, hr[i], r[i]);
            acc_v[i] = simd.add_f64s(acc_v[i], r[i]);
            simd.mul_add_e_f64s(r[i], r[i], s)
        });
        let mut tail = 0.0;
        for i in 0..rt.len() {
            rt[i] = (-self.eta).mul_add(hrt[i], rt[i]);
            acct[i] += rt[i];
            tail += rt[i] * rt[i];
        }
        head + tail
    }
}

/// One Neumann term, fused: `r ← r − η·Hr` (i.e. `r ← (I − ηH) r`), `acc ← acc + r`.
/// Returns the new `‖r‖²`.
pub fn neumann_update(eta: f64, hr: &[f64], r: &mut [f64], acc: &mut [f64]) -> f64 {
    same_len(r.len(), hr.len());
    same_len(r.len(), acc.len());
    par::reduce((hr, r, acc), &|(hr, r, acc): (&[f64], &mut [f64], &mut [f64])| {
        arch().dispatch(NeumannUpdate { eta, hr, r, acc })
    })
}

struct FixedPoint<'a> {
    eta: f64,
    t: &'a [f64],
    b: &'a [f64],
    v: &'a mut [f64],
}
impl WithSimd for FixedPoint<'_> {
    type Output = f64;
    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) -> f64 {
        let (t, tt) = S::as_simd_f64s(self.t);
        let (b, bt) = S::as_simd_f64s(self.b);
        let (v, vt) = S::as_mut_simd_f64s(self.v);
        let e = simd.splat_f64s(self.eta);
        let head = simd_sum4!(simd, v.len(), |i| |acc| {
            let d = simd.sub_f64s(simd.add_f64s(t[i], b[i]), v[i]);
            v[i] = simd.mul_add_e_f64s(e, d, v[i]);
            simd.mul_add_e_f64s(d, d, acc)
        });
        let mut tail = 0.0;
        for i in 0..vt.len() {
            let d = (tt[i] + bt[i]) - vt[i];
            vt[i] = self.eta.mul_add(d, vt[i]);
            tail += d * d;
        }
        head + tail
    }
}

/// The fused (Krasnoselskii–Mann) fixed-point step for `v = Jᵀv + b`, one pass, given `t = Jᵀv`:
/// `d = t + b − v`, `v ← v + η·d` (η = 1: the plain step `v ← Jᵀv + b`).
/// Returns `‖d‖²`, the squared residual `‖(I − Jᵀ)v − b‖²` at the *incoming* v.
pub fn fixed_point_update(eta: f64, t: &[f64], b: &[f64], v: &mut [f64]) -> f64 {
    same_len(v.len(), t.len());
    same_len(v.len(), b.len());
    par::reduce((t, b, v), &|(t, b, v): (&[f64], &[f64], &mut [f64])| arch().dispatch(FixedPoint { eta, t, b, v }))
}

struct HadamardDot<'a> {
    d: &'a [f64],
    r: &'a [f64],
    z: &'a mut [f64],
}
impl WithSimd for HadamardDot<'_> {
    type Output = f64;
    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) -> f64 {
        let (d, dt) = S::as_simd_f64s(self.d);
        let (r, rt) = S::as_simd_f64s(self.r);
        let (z, zt) = S::as_mut_simd_f64s(self.z);
        let head = simd_sum4!(simd, z.len(), |i| |acc| {
            z[i] = simd.mul_f64s(d[i], r[i]);
            simd.mul_add_e_f64s(r[i], z[i], acc)
        });
        let mut tail = 0.0;
        for i in 0..zt.len() {
            zt[i] = dt[i] * rt[i];
            tail += rt[i] * zt[i];
        }
        head + tail
    }
}

/// The diagonal (Jacobi) preconditioner step, one pass: `z ← d ∘ r` (element-wise); returns `rᵀz`.
pub fn hadamard_dot(d: &[f64], r: &[f64], z: &mut [f64]) -> f64 {
    same_len(z.len(), d.len());
    same_len(z.len(), r.len());
    par::reduce((d, r, z), &|(d, r, z): (&[f64], &[f64], &mut [f64])| arch().dispatch(HadamardDot { d, r, z }))
}

struct DotAxpy<'a> {
    col: &'a [f64],
    v: &'a [f64],
    alpha: f64,
    out: &'a mut [f64],
}
impl WithSimd for DotAxpy<'_> {
    type Output = f64;
    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) -> f64 {
        let (c, ct) = S::as_simd_f64s(self.col);
        let (v, vt) = S::as_simd_f64s(self.v);
        let (o, ot) = S::as_mut_simd_f64s(self.out);
        let a = simd.splat_f64s(self.alpha);
        let head = simd_sum4!(simd, c.len(), |i| |acc| {
            o[i] = simd.mul_add_e_f64s(a, c[i], o[i]);
            simd.mul_add_e_f64s(c[i], v[i], acc)
        });
        let mut tail = 0.0;
        for i in 0..ct.len() {
            ot[i] = self.alpha.mul_add(ct[i], ot[i]);
            tail += ct[i] * vt[i];
        }
        head + tail
    }
}

/// One pass over `col` doing two things: `out ← out + α·col` and returning `colᵀv`.
/// The kernel of the symmetric (one-triangle) and of the row-fused sparse products.
/// Sequential: its callers parallelize over columns or rows.
pub fn dot_axpy(col: &[f64], v: &[f64], alpha: f64, out: &mut [f64]) -> f64 {
    same_len(col.len(), v.len());
    same_len(col.len(), out.len());
    arch().dispatch(DotAxpy { col, v, alpha, out })
}

/// The panel kernel of the one-triangle symmetric product, inside the caller's SIMD context
/// (the caller dispatches once for all its panels: a per-panel runtime dispatch cost as much
/// as a short panel's arithmetic): for four lower-triangle columns `cols` (their parts below
/// the 4×4 diagonal block, all of `v.len()` rows), one pass that does
/// `out += Σ_k vj[k]·cols[k]` and returns the four dots `cols[k]ᵀv`. Reading four columns per
/// pass of `out` keeps the output traffic a quarter of the matrix traffic. Sequential.
#[inline(always)]
pub fn sym_panel4_simd<S: Simd>(simd: S, cols: [&[f64]; 4], vj: [f64; 4], v: &[f64], out: &mut [f64]) -> [f64; 4] {
    for c in &cols {
        same_len(c.len(), v.len());
    }
    same_len(v.len(), out.len());
    let n = v.len();
    let [c0, c1, c2, c3] = cols.map(|c| S::as_simd_f64s(&c[..n]));
    let (vs, vt) = S::as_simd_f64s(v);
    let (o, ot) = S::as_mut_simd_f64s(&mut out[..n]);
    let m = vs.len();
    let (c0h, c1h, c2h, c3h, o) = (&c0.0[..m], &c1.0[..m], &c2.0[..m], &c3.0[..m], &mut o[..m]);
    let b = vj.map(|x| simd.splat_f64s(x));
    // Four dot chains: with the four broadcasts, four column vectors, v and out they fill
    // AVX2's 16 registers (a second set of accumulators spilled and ran 1.7× slower).
    let mut acc = [simd.splat_f64s(0.0); 4];
    for i in 0..m {
        let (a0, a1, a2, a3, vi) = (c0h[i], c1h[i], c2h[i], c3h[i], vs[i]);
        let t = simd.mul_add_e_f64s(a0, b[0], o[i]);
        let t = simd.mul_add_e_f64s(a1, b[1], t);
        let t = simd.mul_add_e_f64s(a2, b[2], t);
        o[i] = simd.mul_add_e_f64s(a3, b[3], t);
        acc[0] = simd.mul_add_e_f64s(a0, vi, acc[0]);
        acc[1] = simd.mul_add_e_f64s(a1, vi, acc[1]);
        acc[2] = simd.mul_add_e_f64s(a2, vi, acc[2]);
        acc[3] = simd.mul_add_e_f64s(a3, vi, acc[3]);
    }
    let mut dots = acc.map(|a| simd.reduce_sum_f64s(a));
    let tails = [c0.1, c1.1, c2.1, c3.1];
    for (i, (&vi, oi)) in vt.iter().zip(ot.iter_mut()).enumerate() {
        for k in 0..4 {
            *oi = tails[k][i].mul_add(vj[k], *oi);
            dots[k] = tails[k][i].mul_add(vi, dots[k]);
        }
    }
    dots
}

struct AxpyPanel4<'a> {
    cols: [&'a [f64]; 4],
    coef: [f64; 4],
    out: &'a mut [f64],
}
impl WithSimd for AxpyPanel4<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let n = self.out.len();
        let [c0, c1, c2, c3] = self.cols.map(|c| S::as_simd_f64s(&c[..n]));
        let (o, ot) = S::as_mut_simd_f64s(self.out);
        let m = o.len();
        let (c0h, c1h, c2h, c3h) = (&c0.0[..m], &c1.0[..m], &c2.0[..m], &c3.0[..m]);
        let b = self.coef.map(|x| simd.splat_f64s(x));
        for i in 0..m {
            let t = simd.mul_add_e_f64s(c0h[i], b[0], o[i]);
            let t = simd.mul_add_e_f64s(c1h[i], b[1], t);
            let t = simd.mul_add_e_f64s(c2h[i], b[2], t);
            o[i] = simd.mul_add_e_f64s(c3h[i], b[3], t);
        }
        let tails = [c0.1, c1.1, c2.1, c3.1];
        for (i, oi) in ot.iter_mut().enumerate() {
            for (tail, &c) in tails.iter().zip(&self.coef) {
                *oi = tail[i].mul_add(c, *oi);
            }
        }
    }
}

/// `out += Σ_k coef[k]·cols[k]` in one pass over `out` (four columns per pass keep the output
/// traffic a quarter of the matrix traffic): the kernel of the dense column-major `B x`.
/// Each entry is the same chain of fused multiply-adds in k, whatever the slice boundaries, so
/// splitting the rows between threads does not change the bits. Sequential.
pub fn axpy_panel4(cols: [&[f64]; 4], coef: [f64; 4], out: &mut [f64]) {
    for c in &cols {
        same_len(c.len(), out.len());
    }
    arch().dispatch(AxpyPanel4 { cols, coef, out })
}

/// Asks the memory system to bring `data` into the L2 cache ahead of its use: for loops that
/// jump between blocks too short for the hardware prefetcher to follow (the dense per-sample
/// matrices of a mini-batch). A hint: no effect on any result; a no-op off x86-64.
#[inline]
pub fn prefetch(data: &[f64]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T1};
        // One address per 64-byte line (8 values), and the last value's line.
        let last = data.len().checked_sub(1).map(|k| &data[k]);
        for p in data.iter().step_by(8).chain(last) {
            // SAFETY: a prefetch is only a hint: it neither faults nor reads architecturally,
            // and the address is that of a live element of `data`.
            unsafe { _mm_prefetch::<_MM_HINT_T1>((p as *const f64).cast()) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = data;
}

struct RowsMatvec<'a> {
    m: &'a [f64],
    x: &'a [f64],
    out: &'a mut [f64],
}
impl WithSimd for RowsMatvec<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        for (row, o) in self.m.chunks_exact(self.x.len().max(1)).zip(self.out.iter_mut()) {
            *o += Dot(row, self.x).with_simd(simd);
        }
    }
}

/// `out[r] += M[r, :]·x` for a row-major `M` of `out.len()` rows and `x.len()` columns, one
/// SIMD dispatch for all rows (the same bits as a [`dot_seq`] per row). Sequential.
pub fn rows_matvec_add(m: &[f64], x: &[f64], out: &mut [f64]) {
    same_len(m.len(), out.len() * x.len());
    arch().dispatch(RowsMatvec { m, x, out })
}

struct RowsMatvecT<'a> {
    m: &'a [f64],
    v: &'a [f64],
    out: &'a mut [f64],
}
impl WithSimd for RowsMatvecT<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let cols = self.out.len().max(1);
        for (row, &alpha) in self.m.chunks_exact(cols).zip(self.v) {
            Axpby { alpha, x: row, beta: 1.0, y: &mut *self.out }.with_simd(simd);
        }
    }
}

/// `out += Mᵀv = Σ_r v[r]·M[r, :]` for a row-major `M` of `v.len()` rows and `out.len()`
/// columns, one SIMD dispatch for all rows (the same bits as an [`axpy_seq`] per row).
/// Sequential.
pub fn rows_matvec_t_add(m: &[f64], v: &[f64], out: &mut [f64]) {
    same_len(m.len(), out.len() * v.len());
    arch().dispatch(RowsMatvecT { m, v, out })
}

struct GatherSet<'a> {
    idx: &'a [u32],
    vals: &'a [f64],
    m: &'a [f64],
    out: &'a mut [f64],
}
impl WithSimd for GatherSet<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        gather_simd(simd, self.idx, self.vals, self.m, self.out)
    }
}

/// [`gather_set`] inside a caller's SIMD context: for kernels that gather many short sparse
/// rows under one dispatch (a dispatch per row of a sparse matrix with mostly one- or
/// two-entry rows cost more than the rows' arithmetic).
#[inline(always)]
pub fn gather_simd<S: Simd>(simd: S, idx: &[u32], vals: &[f64], m: &[f64], out: &mut [f64]) {
    same_len(idx.len(), vals.len());
    let (k, lanes) = (out.len(), S::F64_LANES);
    let mut off = 0;
    while off + 8 * lanes <= k {
        gather_block::<S, 8>(simd, idx, vals, m, off, out);
        off += 8 * lanes;
    }
    match (k - off) / lanes {
        0 => {}
        1 => gather_block::<S, 1>(simd, idx, vals, m, off, out),
        2 => gather_block::<S, 2>(simd, idx, vals, m, off, out),
        3 => gather_block::<S, 3>(simd, idx, vals, m, off, out),
        4 => gather_block::<S, 4>(simd, idx, vals, m, off, out),
        5 => gather_block::<S, 5>(simd, idx, vals, m, off, out),
        6 => gather_block::<S, 6>(simd, idx, vals, m, off, out),
        _ => gather_block::<S, 7>(simd, idx, vals, m, off, out),
    }
    off += (k - off) / lanes * lanes;
    for e in off..k {
        out[e] = 0.0;
        for (&j, &alpha) in idx.iter().zip(vals) {
            out[e] = alpha.mul_add(m[j as usize * k + e], out[e]);
        }
    }
}

/// Columns `off..off + NV·lanes` of [`gather_set`], the NV output vectors held in registers
/// across all entries (a per-entry axpy through memory waited on store-to-load forwarding at
/// every entry). Each output element is the same chain of fused multiply-adds in t as an
/// [`axpy_seq`] per entry into zeros, so the bits are the same.
#[inline(always)]
fn gather_block<S: Simd, const NV: usize>(simd: S, idx: &[u32], vals: &[f64], m: &[f64], off: usize, out: &mut [f64]) {
    let (k, lanes) = (out.len(), S::F64_LANES);
    let (o, _) = S::as_mut_simd_f64s(&mut out[off..off + NV * lanes]);
    let mut acc = [simd.splat_f64s(0.0); NV];
    for (&j, &alpha) in idx.iter().zip(vals) {
        let (row, _) = S::as_simd_f64s(&m[j as usize * k + off..j as usize * k + off + NV * lanes]);
        let a = simd.splat_f64s(alpha);
        for v in 0..NV {
            acc[v] = simd.mul_add_e_f64s(a, row[v], acc[v]);
        }
    }
    o.copy_from_slice(&acc);
}

/// `out = Σ_t vals[t]·M[idx[t], :]` for a row-major `M` with `out.len()` columns (`out` is
/// written, not read): a sparse row times a dense matrix, one SIMD dispatch for all its
/// entries, the output in registers (the same bits as an [`axpy_seq`] per entry into zeros,
/// which ran 3× slower). Sequential.
pub fn gather_set(idx: &[u32], vals: &[f64], m: &[f64], out: &mut [f64]) {
    same_len(idx.len(), vals.len());
    arch().dispatch(GatherSet { idx, vals, m, out })
}

struct ScatterAxpy<'a> {
    idx: &'a [u32],
    vals: &'a [f64],
    g: &'a [f64],
    out: &'a mut [f64],
}
impl WithSimd for ScatterAxpy<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let k = self.g.len();
        for (&j, &alpha) in self.idx.iter().zip(self.vals) {
            let j = j as usize;
            Axpby { alpha, x: self.g, beta: 1.0, y: &mut self.out[j * k..(j + 1) * k] }.with_simd(simd);
        }
    }
}

/// `out[idx[t], :] += vals[t]·g` for a row-major `out` with `g.len()` columns: the outer
/// product of a sparse row with g added in place, one SIMD dispatch (the same bits as an
/// [`axpy_seq`] per entry). Sequential.
pub fn scatter_axpy(idx: &[u32], vals: &[f64], g: &[f64], out: &mut [f64]) {
    same_len(idx.len(), vals.len());
    arch().dispatch(ScatterAxpy { idx, vals, g, out })
}

struct OuterAdd<'a> {
    x: &'a [f64],
    g: &'a [f64],
    out: &'a mut [f64],
}
impl WithSimd for OuterAdd<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        for (&alpha, block) in self.x.iter().zip(self.out.chunks_exact_mut(self.g.len().max(1))) {
            Axpby { alpha, x: self.g, beta: 1.0, y: block }.with_simd(simd);
        }
    }
}

/// `out += x ⊗ g` for a row-major `x.len() × g.len()` `out`, one SIMD dispatch (the same
/// bits as an [`axpy_seq`] per row). Sequential.
pub fn outer_add(x: &[f64], g: &[f64], out: &mut [f64]) {
    same_len(out.len(), x.len() * g.len());
    arch().dispatch(OuterAdd { x, g, out })
}

/// [`dot_seq`] inside a caller's SIMD context (same bits): for kernels that loop over many
/// short rows under one dispatch.
#[inline(always)]
pub fn dot_simd<S: Simd>(simd: S, a: &[f64], b: &[f64]) -> f64 {
    same_len(a.len(), b.len());
    Dot(a, b).with_simd(simd)
}

/// [`axpy_seq`] inside a caller's SIMD context (same bits).
#[inline(always)]
pub fn axpy_simd<S: Simd>(simd: S, alpha: f64, x: &[f64], y: &mut [f64]) {
    same_len(x.len(), y.len());
    Axpby { alpha, x, beta: 1.0, y }.with_simd(simd)
}

struct AllFinite<'a>(&'a [f64]);
impl WithSimd for AllFinite<'_> {
    type Output = bool;
    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) -> bool {
        // x·0 is 0 for a finite x and NaN for ±∞ or NaN, and NaN survives the sums.
        let (v, vt) = S::as_simd_f64s(self.0);
        let zero = simd.splat_f64s(0.0);
        let s = simd_sum4!(simd, v.len(), |i| |acc| simd.mul_add_e_f64s(v[i], zero, acc));
        (s + vt.iter().map(|x| x * 0.0).sum::<f64>()) == 0.0
    }
}

/// Whether every value is finite, in one SIMD pass (the fast path of
/// [`check_finite`](crate::error::check_finite), which then finds the index only on failure).
pub fn all_finite(v: &[f64]) -> bool {
    arch().dispatch(AllFinite(v))
}

/// Sequential dot product of short slices (no parallel dispatch); used inside row kernels.
pub fn dot_seq(a: &[f64], b: &[f64]) -> f64 {
    same_len(a.len(), b.len());
    arch().dispatch(Dot(a, b))
}

/// Sequential `y ← y + αx` for short slices; used inside row kernels.
pub fn axpy_seq(alpha: f64, x: &[f64], y: &mut [f64]) {
    same_len(x.len(), y.len());
    arch().dispatch(Axpby { alpha, x, beta: 1.0, y })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vecs(n: usize, seed: u64) -> Vec<f64> {
        // A small LCG keeps these unit tests independent of rand.
        let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
            })
            .collect()
    }

    const SIZES: [usize; 8] = [0, 1, 3, 7, 33, 1000, LEAF_PLUS, 300_007];
    const LEAF_PLUS: usize = crate::par::LEAF + 5;

    fn close(a: f64, b: f64, scale: f64) -> bool {
        (a - b).abs() <= 1e-12 * scale.max(1.0)
    }

    #[test]
    fn all_finite_sees_every_non_finite_value() {
        for n in SIZES {
            let mut v = vecs(n, 7);
            v.iter_mut().for_each(|x| *x *= 1e300);
            assert!(all_finite(&v), "n={n}");
            for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
                for i in [0, n / 2, n.saturating_sub(1)] {
                    if n > 0 {
                        let mut w = v.clone();
                        w[i] = bad;
                        assert!(!all_finite(&w), "n={n} i={i} {bad}");
                    }
                }
            }
        }
    }

    #[test]
    fn reductions_match_plain_loops() {
        for n in SIZES {
            let (a, b) = (vecs(n, 1), vecs(n, 2));
            let naive: f64 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert!(close(dot(&a, &b), naive, n as f64), "n={n}");
            let nsq: f64 = a.iter().map(|x| x * x).sum();
            assert!(close(norm_sq(&a), nsq, n as f64), "n={n}");
            let ninf = a.iter().fold(0.0f64, |m, x| m.max(x.abs()));
            assert_eq!(norm_inf(&a), ninf);
        }
    }

    #[test]
    fn updates_match_plain_loops() {
        for n in SIZES {
            let (p, hp, x0, r0) = (vecs(n, 3), vecs(n, 4), vecs(n, 5), vecs(n, 6));
            let (mut x, mut r) = (x0.clone(), r0.clone());
            let rr = cg_update(0.7, &p, &hp, &mut x, &mut r);
            for i in 0..n {
                assert!(close(x[i], x0[i] + 0.7 * p[i], 1.0));
                assert!(close(r[i], r0[i] - 0.7 * hp[i], 1.0));
            }
            assert!(close(rr, r.iter().map(|v| v * v).sum(), n as f64));

            let mut y = x0.clone();
            axpby(0.3, &p, -2.0, &mut y);
            (0..n).for_each(|i| assert!(close(y[i], 0.3 * p[i] - 2.0 * x0[i], 1.0)));
            let mut y = x0.clone();
            axpy(0.3, &p, &mut y);
            (0..n).for_each(|i| assert!(close(y[i], x0[i] + 0.3 * p[i], 1.0)));
            let mut y = x0.clone();
            scale(-1.5, &mut y);
            (0..n).for_each(|i| assert_eq!(y[i], -1.5 * x0[i]));
            let mut a = vec![0.0; n];
            triad(&mut a, &p, 2.0, &hp);
            (0..n).for_each(|i| assert!(close(a[i], p[i] + 2.0 * hp[i], 1.0)));

            let mut z = x0.clone();
            let res = richardson_update(0.5, &hp, &p, &mut z);
            (0..n).for_each(|i| assert!(close(z[i], x0[i] - 0.5 * (hp[i] - p[i]), 1.0)));
            let want: f64 = hp.iter().zip(&p).map(|(h, b)| (h - b) * (h - b)).sum();
            assert!(close(res, want, n as f64));

            let (mut r, mut acc) = (r0.clone(), x0.clone());
            let rr = neumann_update(0.25, &hp, &mut r, &mut acc);
            for i in 0..n {
                let ri = r0[i] - 0.25 * hp[i];
                assert!(close(r[i], ri, 1.0));
                assert!(close(acc[i], x0[i] + ri, 1.0));
            }
            assert!(close(rr, r.iter().map(|v| v * v).sum(), n as f64));

            let (rows, cols) = (n % 7 + 1, n / 7);
            if cols > 0 && rows <= n {
                let m = &x0[..rows * cols];
                let mut o = r0[..rows].to_vec();
                rows_matvec_add(m, &p[..cols], &mut o);
                for r in 0..rows {
                    assert_eq!(o[r], r0[r] + dot_seq(&m[r * cols..(r + 1) * cols], &p[..cols]));
                }
                let mut o = r0[..cols].to_vec();
                rows_matvec_t_add(m, &p[..rows], &mut o);
                let mut want = r0[..cols].to_vec();
                for r in 0..rows {
                    axpy_seq(p[r], &m[r * cols..(r + 1) * cols], &mut want);
                }
                assert_eq!(o, want);
            }
            if n >= 18 {
                let (idx, vals) = ([2u32, 0, 2], [0.5, -1.0, 3.0]);
                let k = 4;
                // Written, not accumulated: whatever `o` held before does not matter. Widths
                // below, at and above one AVX2 vector (the scalar tail included).
                for kk in [3, 4, 6] {
                    let mm = &x0[..3 * kk];
                    let mut o = r0[..kk].to_vec();
                    gather_set(&idx, &vals, mm, &mut o);
                    let mut want = vec![0.0; kk];
                    for (&j, &a) in idx.iter().zip(&vals) {
                        axpy_seq(a, &mm[j as usize * kk..(j as usize + 1) * kk], &mut want);
                    }
                    assert_eq!(o, want, "k = {kk}");
                }
                let mut o = r0[..12].to_vec();
                scatter_axpy(&idx, &vals, &p[..k], &mut o);
                let mut want = r0[..12].to_vec();
                for (&j, &a) in idx.iter().zip(&vals) {
                    axpy_seq(a, &p[..k], &mut want[j as usize * k..(j as usize + 1) * k]);
                }
                assert_eq!(o, want);
                let mut o = r0[..12].to_vec();
                outer_add(&hp[..3], &p[..k], &mut o);
                let mut want = r0[..12].to_vec();
                for r in 0..3 {
                    axpy_seq(hp[r], &p[..k], &mut want[r * k..(r + 1) * k]);
                }
                assert_eq!(o, want);
            }
            let mut out = x0.clone();
            axpy_panel4([&p, &hp, &r0, &x0], [0.5, -1.0, 2.0, 0.25], &mut out);
            for i in 0..n {
                let want = x0[i] + 0.5 * p[i] - hp[i] + 2.0 * r0[i] + 0.25 * x0[i];
                assert!(close(out[i], want, 4.0), "axpy_panel4 n={n} i={i}");
            }
            let mut out = x0.clone();
            let d = dot_axpy(&p, &hp, 0.5, &mut out);
            assert!(close(d, p.iter().zip(&hp).map(|(a, b)| a * b).sum(), n as f64));
            (0..n).for_each(|i| assert!(close(out[i], x0[i] + 0.5 * p[i], 1.0)));
        }
    }

    #[test]
    fn fixed_point_and_jacobi_updates_match_plain_loops() {
        for n in SIZES {
            let (t, b, v0, d) = (vecs(n, 9), vecs(n, 10), vecs(n, 11), vecs(n, 12));
            let mut v = v0.clone();
            let res = fixed_point_update(0.6, &t, &b, &mut v);
            let mut want = 0.0;
            for i in 0..n {
                let di = t[i] + b[i] - v0[i];
                want += di * di;
                assert!(close(v[i], v0[i] + 0.6 * di, 1.0));
            }
            assert!(close(res, want, n as f64));

            let mut z = vec![f64::NAN; n];
            let rz = hadamard_dot(&d, &t, &mut z);
            (0..n).for_each(|i| assert_eq!(z[i], d[i] * t[i]));
            assert!(close(rz, (0..n).map(|i| t[i] * d[i] * t[i]).sum(), n as f64));
        }
    }

    #[test]
    fn reductions_are_bitwise_identical_for_any_thread_count() {
        let n = 1_000_003;
        let (a, b) = (vecs(n, 7), vecs(n, 8));
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| (dot(&a, &b), norm_sq(&a)))
        };
        let one = run(1);
        for t in [2, 3, 4] {
            let many = run(t);
            assert_eq!(one.0.to_bits(), many.0.to_bits(), "dot, {t} threads");
            assert_eq!(one.1.to_bits(), many.1.to_bits(), "norm_sq, {t} threads");
        }
    }

    #[test]
    #[should_panic(expected = "vector lengths differ")]
    fn length_mismatch_panics_with_a_clear_message() {
        dot(&[1.0, 2.0], &[1.0]);
    }
}
