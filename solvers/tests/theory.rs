//! The theory rules' numbers against values computed here by hand from the papers' formulas
//! (written out again, not calling the rules' own code), on the F.1 quadratic — the one problem
//! that reports every constant the theorems need — and on the worked example of the notes.

use bilevel_data::catalog::{build, BuildOptions};
use bilevel_kernels::{BilevelProblem, ProblemConstants};
use bilevel_solvers::algorithms::aid_bio::Paper002Constants;
use bilevel_solvers::algorithms::stocbio::theorem_3;
use bilevel_solvers::algorithms::sustain::{theorem_3_2_horizon, Schedule, TheoryConstants as SustainConstants};
use bilevel_solvers::algorithms::{self, Settings};
use bilevel_solvers::{Built, Constants, Context, StepRule};

fn f1() -> (Box<dyn BilevelProblem + Send>, Vec<f64>) {
    let built =
        build("quadratic", &BuildOptions { preset: Some("tiny".into()), seed: 0, ..Default::default() }).unwrap();
    let x0 = built.x0(1);
    (built.into_problem().into_bilevel().unwrap(), x0)
}

fn built(name: &str, p: &dyn BilevelProblem, x0: &[f64], settings: &Settings) -> Built {
    built_with(name, p, p.constants(), x0, settings)
}

fn built_with(name: &str, p: &dyn BilevelProblem, k: ProblemConstants, x0: &[f64], settings: &Settings) -> Built {
    let c = Constants::new(k);
    let ctx = Context { problem: p, family: "quadratic", constants: &c, x0 };
    algorithms::build(name, StepRule::Theory, &ctx, settings).unwrap()
}

fn close(a: f64, b: f64, what: &str) {
    assert!((a - b).abs() <= 1e-12 * b.abs().max(1e-300), "{what}: {a} vs {b}");
}

/// Paper 000, Theorem 1 / Proposition 10 with eq. (13) and (19a)–(19f), deterministic, strongly
/// convex value function (η ≡ µ_L), M_g = 0.
#[test]
fn amigo_follows_proposition_10() {
    let (p, x0) = f1();
    let k = p.constants();
    let (mu, lg, lp, lf) = (k.mu_g.unwrap(), k.l_g.unwrap(), k.cross_bound.unwrap(), k.l_f.unwrap());
    let mu_l = k.mu_outer.unwrap();
    // Eq. (13) with M_g = 0: L = L_f(1 + L'_g/µ)².
    let l = lf * (1.0 + lp / mu).powi(2);
    let (alpha, beta, gamma) = (1.0 / lg, 1.0 / (2.0 * lg), 1.0 / l);
    let (l_y, l_z) = (lp / mu, lf / mu);
    let l_psi = f64::max(lf + lp * l_z, lp);
    let (eta0, zeta0) = (mu_l, 2.0 * l);
    let c1 = 1.0 + 2.0 * (6.0 + 24.0 * l_psi.powi(2) / eta0).ln();
    let c2 = 2.0 * (1.0 + 4.0 * l_y.powi(2) / l.powi(2) * eta0.max(8.0 * zeta0)).ln();
    let c3 = [0.0, -2.0 * (5.0 * l_psi.powi(2) / eta0).ln(), -2.0 * (l / (4.0 * l_y.powi(2))).ln()]
        .into_iter()
        .fold(f64::NEG_INFINITY, f64::max);
    let c1p = 1.0 + 2.0 * (4.0 + 24.0 * l_psi.powi(2) / eta0).ln();
    let c2p = 2.0 * (1.0 + 2.0 * l_z.powi(2) / l_y.powi(2) * (1.0 + 16.0 * l_y.powi(2))).ln();
    let c3p = [0.0, -2.0 * (l_psi.powi(2) / (4.0 * l_z.powi(2) * eta0)).ln(), -2.0 * (gamma * lp * lp).ln()]
        .into_iter()
        .fold(f64::NEG_INFINITY, f64::max);
    let cm = c1.max(c2).max(c3);
    let cpm = c1p.max(c2p).max(c3p);
    let t = (cm / (alpha * mu)).floor() as usize + 1;
    let n = (2.0 * (cm + cpm) / (beta * mu)).floor() as usize + 1;
    let got = built("amigo-gd", p.as_ref(), &x0, &Settings::default()).params;
    close(got.real("inner_step").unwrap(), alpha, "α");
    close(got.real("adjoint_step").unwrap(), beta, "β");
    close(got.real("outer_step").unwrap(), gamma, "γ");
    assert_eq!((got.count("inner_steps"), got.count("adjoint_steps")), (Some(t), Some(n)));
    assert!(t > 10 && n > t, "Θ(κ_g) steps, not the default 10: T = {t}, N = {n}");
}

/// Paper 002, Theorem 1 with eq. (13), (18), (22) and condition (31), τ = ρ = 0.
#[test]
fn aid_bio_follows_theorem_1() {
    let (p, x0) = f1();
    let k = p.constants();
    let mu = k.mu_g.unwrap();
    let l = k.l_f.unwrap().max(k.l_g.unwrap() + k.cross_bound.unwrap());
    let m = k.grad_y_f_bound.unwrap();
    let kappa = l / mu;
    let l_phi = l + 2.0 * l * l / mu + l.powi(3) / (mu * mu);
    let (alpha, beta) = (1.0 / l, 1.0 / (8.0 * l_phi));
    let gamma = 3.0 * l * l + 6.0 * l * l * (1.0 + kappa.sqrt()).powi(2) * kappa * kappa;
    let omega =
        8.0 * (beta * kappa * kappa + 2.0 * beta * m * l / (mu * mu) + 2.0 * beta * l * m * kappa / (mu * mu)).powi(2);
    let lc = (1.0 / (1.0 - alpha * mu)).ln();
    let lq = ((kappa.sqrt() + 1.0) / (kappa.sqrt() - 1.0)).ln();
    let t22 = (36.0 * kappa.powi(3)
        + 16.0 * (kappa * kappa + 4.0 * l * m * kappa / (mu * mu)).powi(2) * beta * beta * gamma)
        .ln()
        / lc;
    let t31 = (2.0 * gamma * (5.0 * omega).max(1.0)).ln() / lc;
    let v = kappa * kappa + 2.0 * m * l / (mu * mu) + 2.0 * l * m * kappa / (mu * mu);
    let n22 = 0.5 * (8.0 * kappa + 48.0 * v * v * beta * beta * l * l * kappa).ln() / lq;
    let n31 = (12.0 * l * l * kappa * (5.0 * omega).max(1.0)).ln() / (2.0 * lq);
    let got = built("aid-bio", p.as_ref(), &x0, &Settings::default()).params;
    close(got.real("inner_step").unwrap(), alpha, "α");
    close(got.real("outer_step").unwrap(), beta, "β");
    close(got.real("l_phi").unwrap(), l_phi, "L_Φ");
    assert_eq!(got.count("inner_steps"), Some(t22.max(t31).ceil() as usize));
    assert_eq!(got.count("adjoint_steps"), Some(n22.max(n31).ceil() as usize));
}

/// Paper 002, Theorem 3 on the notes' worked example (L = 1, µ = 0.1, M = 1, τ = ρ = 0, σ = 1,
/// Φ's gap 1, ε = 10⁻²): each term of eq. (10) at most ε/6.
#[test]
fn stocbio_follows_theorem_3() {
    let k = Paper002Constants { mu: 0.1, l: 1.0, m: 1.0, tau: 0.0, rho: 0.0 };
    let th = theorem_3(&k, 1.0, 1e-2, Some(1.0));
    let (kappa, eps) = (10.0f64, 1e-2f64);
    let c_y = 1.0 + 1.0 / 0.1;
    let l_phi = 1.0 + 2.0 / 0.1 + 1.0 / 0.01;
    close(th.l_phi, l_phi, "L_Φ");
    close(th.alpha, 2.0 / 1.1, "α = 2/(L+µ)");
    close(th.beta, 1.0 / (4.0 * l_phi), "β");
    assert!(th.eta < 1.0 && th.eta > 0.99, "η < 1/L: {}", th.eta);
    let beta = 1.0 / (4.0 * l_phi);
    let t1 = (12.0f64 + 48.0 * beta * beta * c_y * c_y / 0.01f64).ln() / (2.0 * (1.1f64 / 0.9).ln());
    assert_eq!(th.t, t1.ceil() as usize);
    assert_eq!(th.t, 7, "the notes' worked example");
    let q = (432.0 * kappa * kappa / eps).ln() / (2.0 * (1.0 / (1.0 - th.eta * 0.1)).ln());
    assert_eq!(th.q, q.ceil() as usize);
    assert_eq!(th.k, Some((192.0 * l_phi / eps).ceil() as usize));
    assert_eq!(th.s, (240.0 * c_y * c_y / (0.1 * eps)).ceil() as usize);
    assert_eq!(th.d_g, (96.0 * kappa * kappa / eps).ceil() as usize);
    assert_eq!(th.d_f, ((48.0 + 192.0 * kappa * kappa) / eps).ceil() as usize);
    assert_eq!(th.b, (384.0 * kappa * kappa / eps).ceil() as usize);
    // Seven figures of samples and more: the CLI refuses such a run with its numbers.
    assert!(th.s > 10_000_000 && th.b > 1_000_000);
}

/// Paper 004, Theorem 3.2's K, (29)/(36) and the schedule α_t = a/(w + t)^{1/3},
/// β_t = c_β α_t, η_t = min(1, c_η α_t²) (η_0 = 1), on the F.1 quadratic with µ_L withheld
/// (Theorem 3.2 is the non-convex one; with µ_L the rule takes Theorem 3.3).
#[test]
fn sustain_follows_theorem_3_2() {
    let (p, x0) = f1();
    let k = ProblemConstants { mu_outer: None, ..p.constants() };
    let (mu, lg, c_gxy, c_fy, lf) =
        (k.mu_g.unwrap(), k.l_g.unwrap(), k.cross_bound.unwrap(), k.grad_y_f_bound.unwrap(), k.l_f.unwrap());
    let horizon = 300;
    let kk = ((lg / mu) * (c_gxy * c_fy * horizon as f64 / mu).ln()).ceil() as usize;
    assert_eq!(theorem_3_2_horizon(lg, mu, c_gxy, c_fy, horizon), kk);
    // Lemma 2.2 with L_gxy = L_gyy = 0, L_fx = L_fy = L_f.
    let l = lf + lf * c_gxy / mu;
    let l_f = l + l * c_gxy / mu;
    let l_y = c_gxy / mu;
    let l_mu = mu * lg / (mu + lg);
    let c_beta = 6.0 * 2f64.sqrt() * l_y * l / l_mu;
    let den = 2.0 * mu * lg - mu * mu;
    let lk2 = 2.0 * lf * lf + 6.0 * (c_gxy * lf).powi(2) * kk as f64 / den;
    let c_eta_f = 1.0 / (3.0 * l_f) + (36.0 * lk2).max(4.0 * lk2 * l_mu * (mu + lg) * c_beta * c_beta / (l * l));
    let bar_g = (36.0 * lg * lg).max(4.0 * lg * lg * l_mu * (mu + lg) * c_beta * c_beta / (l * l));
    let c_eta_g = 1.0 / (3.0 * l_f)
        + 8.0 * lg * lg * c_beta * c_beta
        + (8.0 * l * l / (l_mu * l_mu) + 2.0 * l * l / (l_mu * (mu + lg))) * bar_g;
    let w = [
        2.0,
        27.0 * l_f.powi(3),
        8.0 * (l_mu * c_beta).powi(3),
        ((mu + lg) * c_beta).powi(3),
        c_eta_f.powf(1.5),
        c_eta_g.powf(1.5),
    ]
    .into_iter()
    .fold(0.0, f64::max);
    let settings = Settings { iterations: Some(horizon), ..Settings::default() };
    let got = built_with("sustain", p.as_ref(), k, &x0, &settings).params;
    assert_eq!(got.count("adjoint_steps"), Some(kk));
    close(got.real("w").unwrap(), w, "w");
    close(got.real("c_beta").unwrap(), c_beta, "c_β");
    close(got.real("c_eta_f").unwrap(), c_eta_f, "c_ηf");
    close(got.real("c_eta_g").unwrap(), c_eta_g, "c_ηg");
    // The schedule itself.
    let t = SustainConstants::from_problem(&Constants::new(k), lg).unwrap();
    let s = Schedule::theorem_3_2(&t, kk).unwrap();
    for step in [0usize, 1, 7, 250] {
        let at = s.at(step);
        close(at.alpha, 1.0 / (w + step as f64).cbrt(), "α_t exponent 1/3");
        close(at.beta, c_beta * at.alpha, "β_t = c_β α_t");
        let want = if step == 0 { 1.0 } else { (c_eta_f * at.alpha * at.alpha).min(1.0) };
        close(at.eta_f, want, "η_t = min(1, c_η α_t²), η_0 = 1");
    }
}

/// Paper 004, Theorem 3.3 (ℓ µ_f-strongly convex: the F.1 quadratic's L has µ_L): K =
/// ⌈(L_g/(2µ_g)) log(C²_gxy C²_fy T/µ_g²)⌉, constant α = the least of its five bounds, β = ĉ_β α
/// with ĉ_β = 8L_y² + 8L² + 2µ_f/µ_g, η^f = (µ_f + 1)α, η^g = 1, and the last iterate reported.
#[test]
fn sustain_follows_theorem_3_3() {
    let (p, x0) = f1();
    let k = p.constants();
    let (mu, lg, c_gxy, c_fy, lf, mu_f) = (
        k.mu_g.unwrap(),
        k.l_g.unwrap(),
        k.cross_bound.unwrap(),
        k.grad_y_f_bound.unwrap(),
        k.l_f.unwrap(),
        k.mu_outer.unwrap(),
    );
    let horizon = 500;
    let kk = ((lg / (2.0 * mu)) * ((c_gxy * c_fy).powi(2) * horizon as f64 / (mu * mu)).ln()).ceil() as usize;
    let l = lf + lf * c_gxy / mu;
    let l_val = l + l * c_gxy / mu;
    let l_y = c_gxy / mu;
    let lk2 = 2.0 * lf * lf + 6.0 * (c_gxy * lf).powi(2) * kk as f64 / (2.0 * mu * lg - mu * mu);
    let c_hat = 8.0 * l_y * l_y + 8.0 * l * l + 2.0 * mu_f / mu;
    let alpha = [
        1.0 / (mu_f + 1.0),
        1.0 / (2.0 * mu * c_hat),
        mu / (c_hat * lg * lg),
        1.0 / (8.0 * lk2 + l_val),
        (l * l + 2.0 * l_y * l_y) / (4.0 * lk2 * lg * lg * c_hat * c_hat),
    ]
    .into_iter()
    .fold(f64::INFINITY, f64::min);
    let settings = Settings { iterations: Some(horizon), ..Settings::default() };
    let b = built("sustain", p.as_ref(), &x0, &settings);
    let got = b.params;
    assert_eq!(got.count("adjoint_steps"), Some(kk));
    close(got.real("outer_step").unwrap(), alpha, "α");
    close(got.real("c_beta").unwrap(), c_hat, "ĉ_β");
    close(got.real("inner_step").unwrap(), c_hat * alpha, "β = ĉ_β α");
    close(got.real("c_eta_f").unwrap() * alpha * alpha, (mu_f + 1.0) * alpha, "η^f = (µ_f + 1)α");
    assert_eq!(got.real("c_eta_g"), Some(f64::INFINITY), "η^g ≡ 1");
    assert_eq!(b.algorithm.output(), bilevel_solvers::Output::Last);
    let t = SustainConstants::from_problem(&Constants::new(k), lg).unwrap();
    let s = Schedule::theorem_3_3(&t, mu_f, kk).unwrap();
    for step in [1usize, 2, 300] {
        let at = s.at(step);
        close(at.alpha, alpha, "constant α");
        close(at.eta_f, (mu_f + 1.0) * alpha, "constant η^f");
        assert_eq!(at.eta_g, 1.0);
    }
}

/// Paper 003, Theorem 3.1 / E.2's (75) with σ = 0 (one sample): 1 − β = min(1/4, µ/L), ν = (1 −
/// β)/µ, I = 1, η = min(⅛ min(ε/K0, Δ/‖∇Φ(x_0)‖, εΔ/(C²Δ_{z,0}))(1 − β), µε/(8K0 I C)), R =
/// ε/(4K0), γ = 1/(2L), N = ⌈16L/µ⌉, K0 of (16) with K1 = 0.
#[test]
fn bo_rep_follows_theorem_3_1_without_noise() {
    let (p, x0) = f1();
    let k = p.constants();
    let (mu, l, lf, c, m) =
        (k.mu_g.unwrap(), k.l_g.unwrap(), k.l_f.unwrap(), k.cross_bound.unwrap(), k.grad_y_f_bound.unwrap());
    let _ = m; // M enters only with σ_{g,2}, and with ρ = τ = 0 not K0.
    let k0 = (1.0 + c * c / (mu * mu)).sqrt() * (lf + c / mu * lf);
    let eps = 1e-2;
    let omb = 0.25f64.min(mu / l);
    // (75)'s start terms: Δ = Φ(x_0) − inf Φ, ‖∇Φ(x_0)‖, Δ_{z,0} = ‖z*(x_0)‖² (z_0 = 0).
    let e = p.exact().unwrap();
    let gap = e.value(&x0) - e.minimum().unwrap().1;
    let (mut g, mut z) = (vec![0.0; x0.len()], vec![0.0; p.dim_y()]);
    e.hypergradient(&x0, &mut g);
    e.v_star(&x0, &mut z);
    let grad_norm = g.iter().map(|v| v * v).sum::<f64>().sqrt();
    let z_gap: f64 = z.iter().map(|v| v * v).sum();
    let first = (eps / k0).min(gap / grad_norm).min(eps * gap / (c * c * z_gap));
    let eta = (0.125 * first * omb).min(mu * eps / (8.0 * k0 * c));
    let settings = Settings { epsilon: Some(eps), ..Settings::default() };
    let got = built("bo-rep", p.as_ref(), &x0, &settings).params;
    close(got.real("k0").unwrap(), k0, "K0");
    close(got.real("momentum").unwrap(), 1.0 - omb, "β");
    close(got.real("adjoint_step").unwrap(), omb / mu, "ν");
    close(got.real("outer_step").unwrap(), eta, "η");
    close(got.real("radius").unwrap(), eps / (4.0 * k0), "R");
    close(got.real("inner_step").unwrap(), 1.0 / (2.0 * l), "γ");
    assert_eq!((got.count("period"), got.count("lower_steps")), (Some(1), Some((16.0 * l / mu).ceil() as usize)));
}

/// stocBiO's theory rule on a finite sum: Theorem 3 needs σ² of Assumption 4 for every z, which
/// a finite sum of quadratics does not bound (the gradient noise grows with ‖z‖), so the rule
/// refuses and says why, rather than running on an unrelated number.
#[test]
fn stocbio_theory_on_a_finite_sum_refuses_with_the_assumption() {
    let built =
        build("stochastic_quadratic", &BuildOptions { preset: Some("tiny".into()), seed: 0, ..Default::default() })
            .unwrap();
    let x0 = built.x0(1);
    let p = built.into_problem().into_bilevel().unwrap();
    assert!(p.n_samples_g() > 1);
    let c = Constants::new(p.constants());
    let ctx = Context { problem: p.as_ref(), family: "stochastic_quadratic", constants: &c, x0: &x0 };
    let settings = Settings { batches: bilevel_solvers::BatchSizes::all(16), ..Settings::default() };
    let err = algorithms::build("stocbio", StepRule::Theory, &ctx, &settings).err().expect("refused").to_string();
    assert!(err.contains("Assumption") && err.contains("--steps default"), "{err}");
}

/// A prescription past what can run is refused with its number, never saturated into a hang.
#[test]
fn an_astronomical_prescription_is_refused_with_its_number() {
    let err = bilevel_solvers::algorithms::lower::theory_steps("adjoint_steps", "N", 3.0e15).unwrap_err().to_string();
    assert!(err.contains("3.000e15") && err.contains("infeasible"), "{err}");
    assert!(bilevel_solvers::algorithms::lower::theory_steps("adjoint_steps", "N", f64::INFINITY).is_err());
    assert_eq!(bilevel_solvers::algorithms::lower::theory_steps("adjoint_steps", "N", 42.0).unwrap(), 42);
}
