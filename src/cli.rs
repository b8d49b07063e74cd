//! The `bilevel` command line (clap). `bilevel` alone prints the help.

use bilevel_data::catalog::{build, catalog, BuildOptions};
use bilevel_data::export::write_dir;
use bilevel_data::stochastic_quadratic;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// Bilevel optimization: hypergradient kernels, problem generators, algorithms.
#[derive(Parser, Debug)]
#[command(name = "bilevel", version, about, arg_required_else_help = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// List the problem generators and their presets.
    Problems,
    /// Generate a problem and write it as .npy files plus manifest.json.
    Export(ExportArgs),
    /// Compute one hypergradient at a seeded x and compare it with the exact one.
    Hypergrad(Box<HypergradArgs>),
    /// Run a bilevel algorithm and report its convergence.
    #[command(after_long_help = SOLVE_RULES)]
    Solve(Box<SolveArgs>),
    /// Measure how each method's cost grows with κ, d, nnz and 1/ε and hold it against the
    /// papers' claims (the complexity harness; report in --out).
    Scaling(ScalingArgs),
}

/// `solve --help`'s list of the parameter rules per algorithm (docs/solvers.md has the table with
/// every equation).
const SOLVE_RULES: &str = "\
Parameter rules (--steps), per algorithm. Every run prints each parameter with its source
(theorem and equation, paper section, search, your flag, our default, the problem) and writes
them to --json. L_g, mu_g: the lower level's constants; L_L: the outer objective's; on
mini-batches the steps use the expected smoothness L(b) of Gower et al. 2019 and L_max.
  amigo-gd, amigo-cg, aid-gd, aid-cg, aid-cg-ws, aid-fp, aid-n
    default      alpha = beta = 1/L_g, gamma = 1/L_L, T = N = 10 (paper 000 Sec. 5.1's values);
                 mini-batch: 1/(2 L(b)), gamma = 1/(2 L_L(b)) with the outer objective's
                 per-sample bound where the problem gives one (else L_L),
                 paper 000 Thm 1's Hessian batch floor
    experiments  paper 000 Sec. 5.1 (quadratic), 5.2 (logreg_text), 5.3 (distillation)
    theory       paper 000 Thm 1 / Prop. 10, eq. (13), (43): T, N, gamma = 1/L (full batch; the
                 baselines borrow AmIGO's, said so; AmIGO-CG's N is ours, the CG bound);
                 stochastic: refused (no problem bounds the oracles' noise)
                 Stochastic AmIGO-CG (one Hessian batch per CG call) is our own construction.
  aid-bio      default as above; experiments refused (paper 002 ran CNNs only);
               theory paper 002 Thm 1, eq. (22) and (31): alpha = 1/L, beta = 1/(8 L_Phi), T, N
  itd          default alpha = 1/L_g, gamma = 1/L_L, T = 10; experiments paper 000 Sec. 5.1-5.3;
               theory refused (Thm 2 needs the warm-start bound Delta, which no problem gives)
  stocbio      default alpha = 1/(2 L(S)), eta = 1/L_max, beta = 1/L_L (mini-batches: as
               AmIGO's gamma), T = Q = 10;
               experiments paper 002 App. A (logreg_text: alpha = beta = 100, eta = 0.5);
               theory paper 002 Thm 3, eq. (10), Lemma 9, Prop. 3 (one-sample problems; finite
               sums refused: sigma of Assumption 4 is unbounded)
  sustain      default paper 004 Sec. 4's schedule shape scaled by 1/L_L and L(b);
               experiments Sec. 4 (hyperclean); theory Thm 3.2 (17), (29), (36) with K from
               --max-iters, or Thm 3.3 where L is strongly convex (mu_L known)
  adam-sustain default alpha = 0.005 (App. A); experiments App. A (meta_learning);
               theory refused (the paper gives no theorem)
  bo-rep       default beta = 0.9, I = 2, N = 3, R = 0.5 (App. F), gamma = nu = 1/(2 L(b)),
               eta = 0.01; experiments Sec. 4.1 (meta_learning), 4.3 (hyperclean);
               theory Thm 3.1 / eq. (75) (one-sample problems, sigma = 0; finite sums refused)
  bsgm         default alpha = 1/L_L, eta = 1/L_g (1/L_max), Thm 17's c3 = 1/log(1/q);
               experiments paper 001 Sec. 7.1 (equilibrium: alpha = 0.5, t = k = 2);
               theory Thm 17 (full batch) or Thm 16 with Remark 18 (mini-batch, sigma bounded)
  bsa, ttsa    default: the schedules papers 001/002/004 give them, our constants;
               experiments and theory refused (no paper reports their values; the original
               theorems are not in the repository)
--steps search tries 15 (outer x inner) step factors around the default's with seed + 1 and
prints the winner (docs/cli.md). Astronomical prescriptions are refused with their numbers.";

/// `bilevel scaling`: the sweeps, fits and verdicts of the theory table (bench/claims.csv).
#[derive(clap::Args, Debug)]
pub struct ScalingArgs {
    /// Every claim at reduced range (minutes on 2 cores) instead of the full ranges.
    #[arg(long, conflicts_with = "test_size")]
    pub quick: bool,
    /// The smallest sweeps (seconds; what the test suite runs).
    #[arg(long = "test-size", hide = true)]
    pub test_size: bool,
    /// Only these claims (ids of bench/claims.csv, comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Only these algorithms (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub algos: Vec<String>,
    /// The report directory: report.md, report.html, points.json, points.csv, the SVG plots.
    #[arg(long, default_value = "target/bilevel-report")]
    pub out: PathBuf,
    /// Keep the points already in --out and measure the missing ones.
    #[arg(long)]
    pub resume: bool,
    /// Stop after this many new points (the rest with --resume later).
    #[arg(long, hide = true)]
    pub max_new_points: Option<usize>,
}

/// Algorithms of `bilevel solve`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq)]
pub enum Algo {
    /// AmIGO with a CG adjoint, warm starts of y and z (Arbel & Mairal, §5).
    AmigoCg,
    /// AmIGO with a GD adjoint, warm starts of y and z (Arbel & Mairal, Alg. 1-3).
    AmigoGd,
    /// AID-BiO: warm-started inner GD and CG (Ji, Yang & Liang, Alg. 1).
    AidBio,
    /// AID with CG from zero (paper 000 §5 baseline).
    AidCg,
    /// AID with GD from zero (paper 000 §5 baseline).
    AidGd,
    /// AID with warm-started CG, inner problem restarted (paper 000 §5 baseline).
    AidCgWs,
    /// AID with the fixed-point adjoint from zero (paper 000 §5 baseline).
    AidFp,
    /// AID with a truncated Neumann adjoint (paper 000 §5 baseline).
    #[value(name = "aid-n", alias = "aid-neumann")]
    AidNeumann,
    /// ITD-BiO: reverse mode through the inner steps (Ji, Yang & Liang, Alg. 1).
    Itd,
    /// BSGM (paper 001 Alg. 2, deterministic, Thm 17) on the gradient map, schedule
    /// t_s = k_s = ⌈c₃ log(s+1)⌉ with c₃ from --c3 (or a fixed --fixed-steps T); on the
    /// equilibrium model with --batch-size J, J examples per outer step (§7.1).
    Bsgm,
    /// stocBiO (Ji, Yang & Liang, paper 002 Alg. 2–3): inner SGD, Neumann adjoint on per-term
    /// batches, with --batch-size (full batches without it).
    Stocbio,
    /// BSA (Ghadimi & Wang), as configured in papers 001/002/004's comparisons: growing inner
    /// SGD, the randomized Hessian-inverse estimate, decreasing outer steps.
    Bsa,
    /// TTSA (Hong, Wai, Wang & Yang): one inner and one outer step per iteration on two
    /// timescales (k^−2/5, k^−3/5).
    Ttsa,
    /// SUSTAIN (Khanduri et al., paper 004 Alg. 1): recursive momentum for x and y, the
    /// randomized-truncation hypergradient (K = --lin-steps terms) on replayed samples.
    Sustain,
    /// Adam-SUSTAIN (paper 004 Alg. 2; --adam-option 1|2).
    AdamSustain,
    /// BO-REP (Hao, Gong & Liu, paper 003 Alg. 1–3): initialization refinement, periodic
    /// projected lower-level updates, normalized momentum on x.
    BoRep,
}

impl Algo {
    /// The library's name of the algorithm (`bilevel_solvers::algorithms::NAMES`).
    pub fn name(self) -> &'static str {
        match self {
            Algo::AmigoCg => "amigo-cg",
            Algo::AmigoGd => "amigo-gd",
            Algo::AidBio => "aid-bio",
            Algo::AidCg => "aid-cg",
            Algo::AidGd => "aid-gd",
            Algo::AidCgWs => "aid-cg-ws",
            Algo::AidFp => "aid-fp",
            Algo::AidNeumann => "aid-n",
            Algo::Itd => "itd",
            Algo::Bsgm => "bsgm",
            Algo::Stocbio => "stocbio",
            Algo::Bsa => "bsa",
            Algo::Ttsa => "ttsa",
            Algo::Sustain => "sustain",
            Algo::AdamSustain => "adam-sustain",
            Algo::BoRep => "bo-rep",
        }
    }
}

/// Where the parameters come from (`solve` prints each with its source; docs/solvers.md lists
/// them per algorithm).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq)]
pub enum Steps {
    /// Ours, written in the problem's constants: 1/L-type steps, the expected smoothness of
    /// mini-batches (Gower et al. 2019), followed along the run where the constants depend on x
    /// (the paper's values where they are these, cited).
    Default,
    /// The values of the paper's own experiment on this problem (section cited); an error where
    /// no paper ran the algorithm on it.
    Experiments,
    /// The algorithm's convergence theorem: what it prescribes from the problem's constants,
    /// or a refusal naming what the problem cannot bound.
    Theory,
    /// A short seeded search over the outer and inner steps around the default's (docs/cli.md):
    /// the chosen values are printed and written to the JSON, to rerun without searching.
    Search,
}

impl Steps {
    /// The library's rule (the search runs the default rule with searched steps).
    pub fn rule(self) -> bilevel_solvers::StepRule {
        match self {
            Steps::Default | Steps::Search => bilevel_solvers::StepRule::Default,
            Steps::Experiments => bilevel_solvers::StepRule::Experiments,
            Steps::Theory => bilevel_solvers::StepRule::Theory,
        }
    }
}

/// Problem constants set by hand (otherwise the generator's exact values, or estimates at x0).
#[derive(clap::Args, Debug, Default)]
pub struct ConstantArgs {
    /// L_g, the smoothness of g in y (λ_max of ∂yy g).
    #[arg(long = "l-g", value_parser = parse_positive)]
    pub l_g: Option<f64>,
    /// µ_g, the strong convexity of g in y (λ_min of ∂yy g).
    #[arg(long = "mu-g", value_parser = parse_positive)]
    pub mu_g: Option<f64>,
    /// L_L, the smoothness of the outer objective L(x) = f(x, y*(x)).
    #[arg(long = "l-outer", value_parser = parse_positive)]
    pub l_outer: Option<f64>,
    /// µ_L, the strong convexity of L (AmIGO's --average weight δ = γµ_L).
    #[arg(long = "mu-outer", value_parser = parse_positive)]
    pub mu_outer: Option<f64>,
}

impl ConstantArgs {
    /// As the library's overrides.
    pub fn overrides(&self) -> bilevel_solvers::Overrides {
        bilevel_solvers::Overrides { mu_g: self.mu_g, l_g: self.l_g, l_outer: self.l_outer, mu_outer: self.mu_outer }
    }
}

#[derive(clap::Args, Debug)]
#[command(allow_negative_numbers = true)]
pub struct SolveArgs {
    #[command(flatten)]
    pub problem: ProblemArgs,
    #[command(flatten)]
    pub constants: ConstantArgs,
    #[arg(long, value_enum, default_value = "amigo-cg")]
    pub algo: Algo,
    /// Where the parameters come from (the output lists each with its source).
    #[arg(long, value_enum, default_value = "default")]
    pub steps: Steps,
    /// The theory rules' target ε (each theorem's measure: docs/solvers.md).
    #[arg(long, value_parser = parse_positive)]
    pub epsilon: Option<f64>,
    /// Inner gradient steps T per outer step [default: the rule's, 10 for most].
    #[arg(long, value_parser = parse_steps)]
    pub inner_steps: Option<u64>,
    /// The inner (lower-level) step α, replacing the rule's.
    #[arg(long, value_parser = parse_positive)]
    pub inner_step: Option<f64>,
    /// The adjoint step (AmIGO's β, a Neumann series' η), replacing the rule's.
    #[arg(long, value_parser = parse_positive)]
    pub adjoint_step: Option<f64>,
    /// BSGM's c₃ (schedule t_s = k_s = ⌈c₃ log(s+1)⌉). Theorem 17 needs c₃ ≥ 1/log(1/q),
    /// q = 1 − µ_g/L_g: the default; a smaller value is an error under --steps theory and a
    /// warning otherwise.
    #[arg(long, value_parser = parse_positive)]
    pub c3: Option<f64>,
    /// BSGM: paper 001 §7.1's fixed schedule t_s = k_s = T (the equilibrium experiments' 2)
    /// instead of Theorem 16/17's c₃ schedules (so not with --c3 or --horizon, nor under
    /// --steps theory). On the equilibrium model the experiments rule's default is 2.
    #[arg(long, value_parser = parse_steps, conflicts_with_all = ["c3", "horizon"])]
    pub fixed_steps: Option<u64>,
    /// BSGM on a fixed-point problem with its own constraint set (the equilibrium model's Λ of
    /// paper 001 §7.1: ‖θ‖_∞ ≤ 1 entrywise, ‖A‖₂ ≤ 0.5): run on R^m instead of projecting onto it.
    #[arg(long)]
    pub no_projection: bool,
    /// Adjoint steps N per outer step (Neumann terms Q, SUSTAIN's K) [default: the rule's, 10 for
    /// most].
    #[arg(long, value_parser = parse_steps)]
    pub lin_steps: Option<u64>,
    /// Outer step γ, replacing the rule's (must be < 2/L_L where L_L is known).
    #[arg(long, value_parser = parse_positive)]
    pub outer_step: Option<f64>,
    #[arg(long, default_value_t = 1000)]
    pub max_iters: usize,
    /// Stop when (L(x_k) − L*)/(L(x_0) − L*) ≤ target.
    #[arg(long, value_parser = parse_positive)]
    pub target: Option<f64>,
    /// Stop after this many seconds of algorithm time.
    #[arg(long, value_parser = parse_positive)]
    pub time_limit: Option<f64>,
    /// Stop after this many oracle calls (grad f + grad g + HVP + cross).
    #[arg(long)]
    pub max_oracle_calls: Option<u64>,
    /// Evaluate the metrics (‖∇L‖, the reference, the problem's validation/test metrics) every
    /// this many iterations (the first and last rows always); other rows have empty cells.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub eval_every: u64,
    /// AmIGO (amigo-gd, amigo-cg): also report the averaged iterate x̂_k = (1 − δ)x̂_{k−1} + δx_k,
    /// δ = γµ_L, of paper 000 Corollary 2 (trace columns avg_rel_error, avg_grad_norm; needs µ_L:
    /// the problem's, or --mu-outer). The iterates do not change.
    #[arg(long)]
    pub average: bool,
    #[command(flatten)]
    pub batches: BatchArgs,
    #[command(flatten)]
    pub sustain: SustainArgs,
    #[command(flatten)]
    pub bo_rep: BoRepArgs,
    /// Also write the summary as one JSON object to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write the per-iteration trace as CSV to this file (a row at a time, so a run that
    /// fails or is interrupted keeps its rows).
    #[arg(long)]
    pub trace: Option<PathBuf>,
    /// Stop as Diverged when the hypergradient estimate ‖ψ_k‖ or ‖∇L‖ grows past this factor
    /// times its smallest value (and above its first); `inf` turns the test off.
    #[arg(long, default_value_t = bilevel_solvers::driver::DEFAULT_DIVERGENCE_GROWTH, value_parser = parse_growth)]
    pub divergence_growth: f64,
}

/// Mini-batches (`solve`): without them every oracle runs on the full batch (the deterministic
/// algorithms).
#[derive(clap::Args, Debug, Default)]
pub struct BatchArgs {
    /// Mini-batches of B samples for every oracle of an algorithm with a stochastic form.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub batch_size: Option<u64>,
    /// The inner-loop batch (paper 000's D_g, paper 002's S), replacing --batch-size.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub batch_size_inner: Option<u64>,
    /// The batch of ∂x f and ∂y f (D_f, D_F), replacing --batch-size.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub batch_size_outer: Option<u64>,
    /// The Hessian batches (D_gyy; paper 002's B), replacing --batch-size.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub batch_size_hvp: Option<u64>,
    /// The cross-product batch (D_gxy, D_G), replacing --batch-size.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub batch_size_cross: Option<u64>,
    /// How batches are drawn [default: replacement].
    #[arg(long, value_enum)]
    pub sampling: Option<SamplingArg>,
    /// Seed of the batch streams (separate from the problem's --seed).
    #[arg(long, default_value_t = 0)]
    pub sample_seed: u64,
    /// stocBiO: paper 002 Prop. 3's decreasing Neumann batch sizes ⌈B·Q·(1−ηµ)^k⌉.
    #[arg(long)]
    pub neumann_decay: bool,
    /// Stochastic BSGM: the finite-horizon schedule t_s = k_s = J_s = ⌈c₃S⌉ of Theorem 16 (ii)
    /// with this S (default: the anytime ⌈c₃(s+1)⌉).
    #[arg(long, value_parser = parse_steps)]
    pub horizon: Option<u64>,
}

/// SUSTAIN's and Adam-SUSTAIN's own options (`solve`).
#[derive(clap::Args, Debug, Default)]
pub struct SustainArgs {
    /// Adam-SUSTAIN's option (paper 004 Alg. 2): 1 or 2 [default: 2, the paper's runs].
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=2))]
    pub adam_option: Option<u8>,
    /// SUSTAIN's w in α_t = a/(w + t)^(1/3), replacing the rule's.
    #[arg(long, value_parser = parse_positive)]
    pub momentum_w: Option<f64>,
    /// SUSTAIN's c_η (η_t = min(1, c_η α_t²), both levels), replacing the rule's; `inf` turns the
    /// momentum off.
    #[arg(long)]
    pub momentum_c_eta: Option<f64>,
    /// SUSTAIN's c_β (β_t = c_β α_t), replacing the rule's.
    #[arg(long, value_parser = parse_positive)]
    pub momentum_c_beta: Option<f64>,
    /// SUSTAIN: momentum on the upper level only (η^g ≡ 1), the paper's remark's variant.
    #[arg(long)]
    pub upper_momentum_only: bool,
}

impl SustainArgs {
    /// As the library's options.
    pub fn options(&self) -> Result<bilevel_solvers::algorithms::sustain::SustainOptions, String> {
        use bilevel_solvers::algorithms::sustain::{AdamOption, SustainOptions};
        if let Some(c) = self.momentum_c_eta.filter(|c| c.is_nan() || *c <= 0.0) {
            return Err(format!("--momentum-c-eta must be > 0 (or inf), got {c}"));
        }
        Ok(SustainOptions {
            adam_option: if self.adam_option == Some(1) { AdamOption::I } else { AdamOption::II },
            w: self.momentum_w,
            c_eta: self.momentum_c_eta,
            c_beta: self.momentum_c_beta,
            upper_only: self.upper_momentum_only,
        })
    }
}

/// BO-REP's own options (`solve`); each replaces the rule's value.
#[derive(clap::Args, Debug, Default)]
pub struct BoRepArgs {
    /// The period I of the lower-level updates.
    #[arg(long, value_parser = parse_steps)]
    pub period: Option<u64>,
    /// The number N of averaged projected lower-level steps per update.
    #[arg(long, value_parser = parse_steps)]
    pub lower_steps: Option<u64>,
    /// The projection radius R of the moving ball (`inf`: no projection).
    #[arg(long)]
    pub radius: Option<f64>,
    /// The momentum β of the normalized outer step, in [0, 1).
    #[arg(long)]
    pub momentum_beta: Option<f64>,
    /// The step ν of z's SGD step.
    #[arg(long, value_parser = parse_positive)]
    pub z_step: Option<f64>,
    /// The lower-level step γ of the periodic updates.
    #[arg(long, value_parser = parse_positive)]
    pub lower_step: Option<f64>,
    /// SGD steps of the initialization refinement [default: 10; 0: none].
    #[arg(long, value_parser = parse_steps_or_zero)]
    pub init_steps: Option<u64>,
}

impl BoRepArgs {
    /// As the library's options.
    pub fn options(&self) -> Result<bilevel_solvers::algorithms::bo_rep::BoRepOptions, String> {
        if let Some(r) = self.radius.filter(|r| r.is_nan() || *r <= 0.0) {
            return Err(format!("--radius must be > 0 (or inf), got {r}"));
        }
        if let Some(b) = self.momentum_beta.filter(|b| !(0.0..1.0).contains(b)) {
            return Err(format!("--momentum-beta must be in [0, 1), got {b}"));
        }
        Ok(bilevel_solvers::algorithms::bo_rep::BoRepOptions {
            period: self.period.map(|v| v as usize),
            lower_steps: self.lower_steps.map(|v| v as usize),
            radius: self.radius,
            beta: self.momentum_beta,
            z_step: self.z_step,
            lower_step: self.lower_step,
            init_steps: self.init_steps.map(|v| v as usize),
            ..Default::default()
        })
    }
}

/// `--sampling`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq)]
pub enum SamplingArg {
    /// Independent uniform indices.
    #[default]
    Replacement,
    /// Shuffled epochs (every sample once per epoch).
    Epochs,
}

impl BatchArgs {
    /// As the library's batch sizes.
    pub fn sizes(&self) -> bilevel_solvers::BatchSizes {
        let or = |v: Option<u64>| v.or(self.batch_size).map(|b| b as usize);
        bilevel_solvers::BatchSizes {
            inner: or(self.batch_size_inner),
            outer: or(self.batch_size_outer),
            hvp: or(self.batch_size_hvp),
            cross: or(self.batch_size_cross),
            sampling: match self.sampling.unwrap_or_default() {
                SamplingArg::Replacement => bilevel_solvers::Sampling::Replacement,
                SamplingArg::Epochs => bilevel_solvers::Sampling::Epochs,
            },
        }
    }
}

/// How `hypergrad` and `solve` get their problem.
#[derive(clap::Args, Debug)]
pub struct ProblemArgs {
    /// Any generator of `bilevel problems` (a bilevel one: not `text` or `equilibrium`).
    #[arg(long = "problem", default_value = "quadratic")]
    pub name: String,
    /// Load a quadratic from a directory written by `bilevel export` (or by hand); an `x0.npy`
    /// there (length d_x) is the starting point.
    #[arg(long, conflicts_with_all = ["name", "preset", "kappa", "dx", "dy", "layout"])]
    pub problem_dir: Option<PathBuf>,
    /// Your own data: a LIBSVM file with integer class labels, for `--problem hyperclean` or
    /// `--problem logreg_per_class` (rows split 50/25/25 into training, validation and test by
    /// the --seed; features scaled by their column's largest |value|). data/optdigits/ ships one.
    #[arg(long, conflicts_with_all = ["problem_dir", "preset", "kappa", "dx", "dy", "layout"])]
    pub problem_file: Option<PathBuf>,
    #[command(flatten)]
    pub file: FileArgs,
    #[command(flatten)]
    pub generator: GeneratorArgs,
}

/// How a `--problem-file` becomes a problem (defaults: `bilevel_data::from_file::FileOptions`).
#[derive(clap::Args, Debug, Default)]
pub struct FileArgs {
    /// Fraction of the file's rows for validation, the upper level [default: 0.25].
    #[arg(long, requires = "problem_file")]
    pub val_fraction: Option<f64>,
    /// Fraction of the rows held out for the test metrics (0: none) [default: 0.25].
    #[arg(long, requires = "problem_file")]
    pub test_fraction: Option<f64>,
    /// Hyper-cleaning: probability that a training label is replaced by a wrong class
    /// [default: 0.3].
    #[arg(long, requires = "problem_file")]
    pub corruption: Option<f64>,
    /// Hyper-cleaning: the inner ridge c of c‖y‖² [default: 1e-3].
    #[arg(long, requires = "problem_file")]
    pub ridge: Option<f64>,
    /// Per-class logistic HPO: the regularizer's constant (½·scale·Σ exp(λ_k)‖θ_k‖²) [default: 1].
    #[arg(long, requires = "problem_file")]
    pub reg_scale: Option<f64>,
}

impl FileArgs {
    /// The library's options with these set.
    pub fn options(&self) -> bilevel_data::from_file::FileOptions {
        let d = bilevel_data::from_file::FileOptions::default();
        bilevel_data::from_file::FileOptions {
            val_fraction: self.val_fraction.unwrap_or(d.val_fraction),
            test_fraction: self.test_fraction.unwrap_or(d.test_fraction),
            corruption: self.corruption.unwrap_or(d.corruption),
            ridge: self.ridge.unwrap_or(d.ridge),
            reg_scale: self.reg_scale.unwrap_or(d.reg_scale),
        }
    }
}

/// The options every generator takes: a preset, the quadratics' overrides, a seed.
#[derive(clap::Args, Debug)]
pub struct GeneratorArgs {
    /// Named preset of the generator (see `bilevel problems`; its default configuration
    /// otherwise).
    #[arg(long)]
    pub preset: Option<String>,
    /// Condition number of the lower-level Hessian, ≥ 1 (quadratic generators).
    #[arg(long, value_parser = parse_kappa)]
    pub kappa: Option<f64>,
    /// Outer dimension d_x, ≥ 1 (quadratic generators).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub dx: Option<u64>,
    /// Inner dimension d_y, ≥ 1 (quadratic generators).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub dy: Option<u64>,
    /// How the per-sample matrices are stored (`stochastic_quadratic`): rank-one factors, or
    /// benchopt's dense d×d matrices per sample (n·(d_y² + d_x² + d_x·d_y) numbers).
    #[arg(long, value_enum)]
    pub layout: Option<LayoutArg>,
    /// Seed of the generator (and of x0).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// `--layout` of the stochastic quadratic.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq)]
pub enum LayoutArg {
    /// The factors h_i, p_i, u_i, w_i (d numbers per sample and term; the default).
    RankOne,
    /// Dense per-sample matrices, as benchopt stores them.
    Dense,
}

impl GeneratorArgs {
    /// The catalogue's options.
    pub fn build_options(&self) -> BuildOptions {
        BuildOptions {
            preset: self.preset.clone(),
            kappa: self.kappa,
            dim_x: self.dx.map(|d| d as usize),
            dim_y: self.dy.map(|d| d as usize),
            layout: self.layout.map(|l| match l {
                LayoutArg::RankOne => stochastic_quadratic::Layout::RankOne,
                LayoutArg::Dense => stochastic_quadratic::Layout::Dense,
            }),
            seed: self.seed,
        }
    }
}

/// Hypergradient methods of `bilevel hypergrad`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq)]
pub enum Method {
    /// AID, adjoint by conjugate gradient.
    AidCg,
    /// AID, adjoint by gradient descent (step 1/L_g).
    AidGd,
    /// AID, adjoint by the fixed-point iteration (step 1/L_g).
    AidFp,
    /// AID, adjoint by a truncated Neumann series (step 1/L_g).
    #[value(name = "aid-n", alias = "aid-neumann")]
    AidNeumann,
    /// Reverse-mode differentiation through the inner steps.
    Itd,
    /// The closed form (a dense solve).
    Exact,
}

#[derive(clap::Args, Debug)]
#[command(allow_negative_numbers = true)]
pub struct HypergradArgs {
    #[command(flatten)]
    pub problem: ProblemArgs,
    #[command(flatten)]
    pub constants: ConstantArgs,
    #[arg(long, value_enum, default_value = "aid-cg")]
    pub method: Method,
    /// Inner gradient steps T (step 1/L_g, from y = 0) [default: 10].
    #[arg(long, value_parser = parse_steps_or_zero)]
    pub inner_steps: Option<u64>,
    /// Adjoint steps N (CG iterations, GD/FP steps, Neumann terms) [default: 10].
    #[arg(long, value_parser = parse_steps)]
    pub lin_steps: Option<u64>,
    /// Also write the result as one JSON object to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
#[command(allow_negative_numbers = true)]
pub struct ExportArgs {
    /// Generator name (see `bilevel problems`).
    #[arg(long)]
    pub problem: String,
    #[command(flatten)]
    pub generator: GeneratorArgs,
    /// Output directory (created if needed). It is written in a temporary sibling and renamed
    /// into place; an existing non-empty directory is refused unless `--force`.
    #[arg(long)]
    pub out: PathBuf,
    /// Replace an existing non-empty output directory (whole: no stale files stay beside the
    /// new ones).
    #[arg(long)]
    pub force: bool,
}

fn parse_positive(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("`{s}` is not a number"))?;
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(format!("must be a finite number > 0, got {s}"))
    }
}

/// The most steps one count flag may ask for: 10^8 oracle calls of the smallest problem take
/// seconds, of a real one hours; more cannot finish in any reasonable time (a run is cut by
/// --time-limit and Ctrl-C inside its steps anyway).
pub const MAX_STEPS: u64 = 100_000_000;

/// A step count ≥ 1 and ≤ [`MAX_STEPS`], as an integer or an integral float (`1e6`).
fn parse_steps(s: &str) -> Result<u64, String> {
    match parse_steps_or_zero(s)? {
        0 => Err("must be at least 1".into()),
        n => Ok(n),
    }
}

/// [`parse_steps`], 0 allowed (no steps).
fn parse_steps_or_zero(s: &str) -> Result<u64, String> {
    let v: f64 = match s.parse::<u64>() {
        Ok(n) => n as f64,
        Err(_) => s.parse().map_err(|_| format!("`{s}` is not a count"))?,
    };
    if !(v >= 0.0 && v.fract() == 0.0) {
        return Err(format!("`{s}` is not a whole number ≥ 0"));
    }
    if v > MAX_STEPS as f64 {
        return Err(format!(
            "{v:.3e} steps cannot finish in any reasonable time; the most one flag may ask for is {MAX_STEPS:.0e}",
            MAX_STEPS = MAX_STEPS as f64
        ));
    }
    Ok(v as u64)
}

fn parse_growth(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("`{s}` is not a number"))?;
    if v > 1.0 {
        Ok(v)
    } else {
        Err(format!("must be a number > 1 (or inf), got {s}"))
    }
}

fn parse_kappa(s: &str) -> Result<f64, String> {
    let k: f64 = s.parse().map_err(|_| format!("`{s}` is not a number"))?;
    if k.is_finite() && k >= 1.0 {
        Ok(k)
    } else {
        Err(format!("κ must be a finite number ≥ 1, got {s}"))
    }
}

type DynError = Box<dyn std::error::Error>;

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<(), DynError> {
    match cli.command {
        Command::Problems => {
            for g in catalog() {
                println!("{:<22} {}", g.name, g.summary);
                println!("{:<22} presets: {}", "", g.presets.join(", "));
            }
            Ok(())
        }
        Command::Export(a) => {
            let built = build(&a.problem, &a.generator.build_options())?;
            let dataset = built.dataset();
            write_dir(dataset, &a.out, a.force)?;
            println!("wrote {} ({} arrays) to {}", a.problem, dataset.arrays().len(), a.out.display());
            Ok(())
        }
        Command::Hypergrad(a) => crate::hypergrad_cmd::run(&a),
        Command::Solve(a) => crate::solve_cmd::run(&a),
        Command::Scaling(a) => crate::scaling_cmd::run(&a),
    }
}

/// The oracle counts as the JSON outputs write them: `grad_f` in paper 000's paired convention,
/// `grad_x_f` and `grad_y_f` separately (paper 002's).
pub fn oracle_calls_json(c: &bilevel_kernels::OracleCounts) -> serde_json::Value {
    serde_json::json!({
        "grad_f": c.grad_f(bilevel_kernels::CountingConvention::PairedGradF),
        "grad_x_f": c.grad_x_f,
        "grad_y_f": c.grad_y_f,
        "grad_g": c.grad_y_g,
        "hvp": c.hvp,
        "cross": c.cross,
    })
}
