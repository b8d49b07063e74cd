//! The catalogue: every generator by name (what `bilevel problems` lists), and one entry point,
//! [`build`], that turns a name, a preset and a few overrides into something every command can
//! run: the problem's oracles ([`Problem`]), its seeded starting point, its export
//! ([`Dataset`]), and, through the problem trait, its exact references, constants and metrics.
//!
//! ```no_run
//! use bilevel_data::catalog::{build, BuildOptions};
//! let built = build("quadratic", &BuildOptions { preset: Some("tiny".into()), kappa: Some(1e3), ..Default::default() })?;
//! let x0 = built.x0(7);
//! let problem = built.into_problem().into_bilevel().expect("the quadratic is a bilevel problem");
//! assert_eq!(x0.len(), problem.dim_x());
//! # Ok::<(), bilevel_kernels::KernelError>(())
//! ```

use crate::dataset::{Dataset, GeneratorInfo};
use crate::quadratic::gaussian_x0;
use crate::{distillation, equilibrium, hyperclean, logreg_hpo, meta_learning, quadratic, stochastic_quadratic, text};
use bilevel_kernels::{BilevelProblem, FixedPointProblem, KernelError, Result};

/// Every generator of this crate, in the order `bilevel problems` lists them.
pub fn catalog() -> Vec<GeneratorInfo> {
    vec![
        quadratic::INFO,
        stochastic_quadratic::INFO,
        text::INFO,
        logreg_hpo::INFO,
        logreg_hpo::INFO_BINARY,
        logreg_hpo::INFO_PER_CLASS,
        hyperclean::INFO,
        meta_learning::INFO,
        equilibrium::INFO,
        distillation::INFO,
    ]
}

/// Options common to the generators; `None` keeps the preset's value.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BuildOptions {
    /// A named preset of the generator (its default configuration when `None`).
    pub preset: Option<String>,
    /// Condition number of the lower-level Hessian (quadratic generators only).
    pub kappa: Option<f64>,
    /// Outer dimension (quadratic generators only).
    pub dim_x: Option<usize>,
    /// Inner dimension (quadratic generators only).
    pub dim_y: Option<usize>,
    /// How the per-sample matrices are stored (`stochastic_quadratic` only).
    pub layout: Option<stochastic_quadratic::Layout>,
    /// Seed of the generator's draws.
    pub seed: u64,
}

impl BuildOptions {
    /// Refuses the overrides a generator without them does not take (it has presets only).
    fn only_preset(&self, name: &str) -> Result<()> {
        for (set, what) in [
            (self.kappa.is_some(), "kappa"),
            (self.dim_x.is_some(), "dx"),
            (self.dim_y.is_some(), "dy"),
            (self.layout.is_some(), "layout"),
        ] {
            if set {
                return Err(KernelError::InvalidParameter {
                    name: what,
                    reason: format!("the `{name}` generator does not take it (use a preset)"),
                });
            }
        }
        Ok(())
    }
    fn sizes(&self, dim_x: &mut usize, dim_y: &mut usize) {
        *dim_x = self.dim_x.unwrap_or(*dim_x);
        *dim_y = self.dim_y.unwrap_or(*dim_y);
    }
    /// The config of the preset, or the default config without one.
    fn config<C: Default>(&self, from_preset: fn(&str) -> Result<C>) -> Result<C> {
        self.preset.as_deref().map_or_else(|| Ok(C::default()), from_preset)
    }
    /// `generate` on the preset's config (see [`config`](Self::config)) and the seed.
    fn generate<C: Default, P>(
        &self,
        from_preset: fn(&str) -> Result<C>,
        generate: fn(&C, u64) -> Result<P>,
    ) -> Result<P> {
        generate(&self.config(from_preset)?, self.seed)
    }
}

/// A generated bilevel problem that can also export itself.
pub trait BilevelDataset: BilevelProblem + Dataset + Send {}
impl<T: BilevelProblem + Dataset + Send> BilevelDataset for T {}

/// A generated fixed-point problem that can also export itself.
pub trait FixedPointDataset: FixedPointProblem + Dataset + Send {}
impl<T: FixedPointProblem + Dataset + Send> FixedPointDataset for T {}

/// What a catalogue entry runs: a bilevel problem (its oracles, exact references, constants and
/// metrics through [`BilevelProblem`]), a fixed-point problem (the equilibrium model), or data
/// only (the `text` generator).
pub enum Problem {
    /// y*(x) = argmin_y g(x, y).
    Bilevel(Box<dyn BilevelDataset>),
    /// w(λ) = Φ(w(λ), λ).
    FixedPoint(Box<dyn FixedPointDataset>),
    /// A data set, no optimization problem.
    Data(Box<dyn Dataset + Send + Sync>),
}

impl Problem {
    /// The export of whichever it is.
    pub fn dataset(&self) -> &dyn Dataset {
        match self {
            Problem::Bilevel(p) => p.as_ref(),
            Problem::FixedPoint(p) => p.as_ref(),
            Problem::Data(d) => d.as_ref(),
        }
    }
    /// The bilevel problem, if it is one.
    pub fn as_bilevel(&self) -> Option<&dyn BilevelProblem> {
        match self {
            Problem::Bilevel(p) => Some(p.as_ref()),
            _ => None,
        }
    }
    /// The bilevel problem as a box the kernels' wrappers take (`Counted::new`, the solvers).
    pub fn into_bilevel(self) -> Option<Box<dyn BilevelProblem + Send>> {
        match self {
            Problem::Bilevel(p) => Some(p),
            _ => None,
        }
    }
    /// The fixed-point problem, if it is one.
    pub fn into_fixed_point(self) -> Option<Box<dyn FixedPointProblem + Send>> {
        match self {
            Problem::FixedPoint(p) => Some(p),
            _ => None,
        }
    }
    /// Length of the outer variable (x, or λ for a fixed-point problem; 0 for data).
    pub fn dim_outer(&self) -> usize {
        match self {
            Problem::Bilevel(p) => p.dim_x(),
            Problem::FixedPoint(p) => p.dim_lambda(),
            Problem::Data(_) => 0,
        }
    }
    /// Length of the inner variable (y, or every sample's state n·dim_state; 0 for data).
    pub fn dim_inner(&self) -> usize {
        match self {
            Problem::Bilevel(p) => p.dim_y(),
            Problem::FixedPoint(p) => p.n_samples() * p.dim_state(),
            Problem::Data(_) => 0,
        }
    }
}

/// How a generator draws its starting outer point.
enum Start {
    /// x0 = scale · N(0, I) from the seed's jumped stream ([`gaussian_x0`]).
    Gaussian { scale: f64 },
    /// A point fixed by the generator (drawn with the data), whatever the seed.
    Fixed(Vec<f64>),
    /// x0 = 0 (hyper-parameters at their neutral value).
    Zero,
}

/// A built catalogue entry: its name, the problem it runs, its starting point and its export.
pub struct Built {
    name: &'static str,
    problem: Problem,
    start: Start,
}

impl std::fmt::Debug for Built {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Built")
            .field("name", &self.name)
            .field("dim_outer", &self.problem.dim_outer())
            .field("dim_inner", &self.problem.dim_inner())
            .finish()
    }
}

impl Built {
    /// The generator's name, as [`catalog`] lists it.
    pub fn name(&self) -> &'static str {
        self.name
    }
    /// The problem (borrowed).
    pub fn problem(&self) -> &Problem {
        &self.problem
    }
    /// The problem, owned (the starting point and name are gone: read them first).
    pub fn into_problem(self) -> Problem {
        self.problem
    }
    /// Its export: parameters (with the seed) and arrays.
    pub fn dataset(&self) -> &dyn Dataset {
        self.problem.dataset()
    }
    /// The seeded starting outer point (length [`Problem::dim_outer`]). The law is the
    /// generator's: N(0, I) from the seed's jumped stream for the quadratics, N(0, 1/p) for the
    /// meta-learning embedding, the point drawn with the data for distillation (synthetic
    /// points N(0, 1), λ = 0) and the equilibrium model (the paper's initial λ), whatever the
    /// seed, and 0 for the logistic hyper-parameters and the hyper-cleaning weights.
    pub fn x0(&self, seed: u64) -> Vec<f64> {
        let dim = self.problem.dim_outer();
        match &self.start {
            Start::Gaussian { scale } => gaussian_x0(dim, seed).into_iter().map(|v| scale * v).collect(),
            Start::Fixed(x) => x.clone(),
            Start::Zero => vec![0.0; dim],
        }
    }
    /// The starting inner point: zero for every generator (y = 0; the equilibrium states w = 0,
    /// as in the paper).
    pub fn y0(&self) -> Vec<f64> {
        vec![0.0; self.problem.dim_inner()]
    }
}

fn bilevel(name: &'static str, p: impl BilevelDataset + 'static, start: Start) -> Built {
    Built { name, problem: Problem::Bilevel(Box::new(p)), start }
}

/// Builds the generator `name` (see [`catalog`]) with `options`. Errors: an unknown name or
/// preset, an override the generator does not take (`kappa`, `dx`, `dy` are for the two
/// quadratics only, `layout` for the stochastic one), and every error of the generator's config validation.
pub fn build(name: &str, options: &BuildOptions) -> Result<Built> {
    let seed = options.seed;
    if !matches!(name, "quadratic" | "stochastic_quadratic") {
        options.only_preset(name)?;
    }
    if name == "quadratic" && options.layout.is_some() {
        return Err(KernelError::InvalidParameter {
            name: "layout",
            reason: "only the `stochastic_quadratic` generator stores per-sample matrices".into(),
        });
    }
    Ok(match name {
        "quadratic" => {
            let mut c = options.config(quadratic::Config::preset)?;
            c.kappa_g = options.kappa.unwrap_or(c.kappa_g);
            options.sizes(&mut c.dim_x, &mut c.dim_y);
            bilevel(quadratic::INFO.name, quadratic::generate(&c, seed)?, Start::Gaussian { scale: 1.0 })
        }
        "stochastic_quadratic" => {
            let mut c = options.config(stochastic_quadratic::Config::preset)?;
            if let Some(kappa) = options.kappa {
                c = c.with_kappa(kappa)?;
            }
            options.sizes(&mut c.dim_x, &mut c.dim_y);
            c.layout = options.layout.unwrap_or(c.layout);
            bilevel(
                stochastic_quadratic::INFO.name,
                stochastic_quadratic::generate(&c, seed)?,
                Start::Gaussian { scale: 1.0 },
            )
        }
        "text" => {
            let data = options.generate(text::TextConfig::preset, text::generate)?;
            Built { name: text::INFO.name, problem: Problem::Data(Box::new(data)), start: Start::Zero }
        }
        "logreg_text" => {
            let p = options.generate(text::TextConfig::preset, logreg_hpo::text_problem)?;
            bilevel(logreg_hpo::INFO.name, p, Start::Zero)
        }
        "logreg_binary" => {
            let p = options.generate(logreg_hpo::BinaryConfig::preset, logreg_hpo::binary_problem)?;
            bilevel(logreg_hpo::INFO_BINARY.name, p, Start::Zero)
        }
        "logreg_per_class" => {
            let p = options.generate(logreg_hpo::PerClassConfig::preset, logreg_hpo::per_class_problem)?;
            bilevel(logreg_hpo::INFO_PER_CLASS.name, p, Start::Zero)
        }
        "hyperclean" => {
            let p = options.generate(hyperclean::HyperCleanConfig::preset, hyperclean::generate)?;
            bilevel(hyperclean::INFO.name, p, Start::Zero)
        }
        "meta_learning" => {
            let p = options.generate(meta_learning::Config::preset, meta_learning::generate)?;
            let scale = meta_learning::x0_scale(p.config());
            bilevel(meta_learning::INFO.name, p, Start::Gaussian { scale })
        }
        "equilibrium" => {
            let p = options.generate(equilibrium::Config::preset, equilibrium::generate)?;
            let start = Start::Fixed(p.lambda0().to_vec());
            Built { name: equilibrium::INFO.name, problem: Problem::FixedPoint(Box::new(p)), start }
        }
        "distillation" => {
            let p = options.generate(distillation::Config::preset, distillation::generate)?;
            let start = Start::Fixed(p.x0().to_vec());
            bilevel(distillation::INFO.name, p, start)
        }
        _ => {
            let known: Vec<&str> = catalog().iter().map(|g| g.name).collect();
            return Err(KernelError::InvalidParameter {
                name: "problem",
                reason: format!("unknown problem `{name}`; known: {}", known.join(", ")),
            });
        }
    })
}

/// The export of the generator `name` (what `bilevel export` writes): [`build`] without the
/// problem's other uses.
pub fn build_dataset(name: &str, options: &BuildOptions) -> Result<Box<dyn Dataset>> {
    Ok(match build(name, options)?.into_problem() {
        Problem::Bilevel(p) => p,
        Problem::FixedPoint(p) => p,
        Problem::Data(d) => d,
    })
}
