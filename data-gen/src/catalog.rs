//! The catalogue of generators (what `bilevel problems` lists) and one entry point that builds
//! any of them by name from a preset and a few common options (what `bilevel export` runs).

use crate::dataset::{Dataset, GeneratorInfo};
use crate::{distillation, equilibrium, hyperclean, logreg_hpo, meta_learning, quadratic, stochastic_quadratic, text};
use bilevel_kernels::{KernelError, Result};

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
    pub seed: u64,
}

fn not_applicable(name: &str, what: &'static str) -> KernelError {
    KernelError::InvalidParameter {
        name: what,
        reason: format!("the `{name}` generator does not take it (use a preset)"),
    }
}

/// Builds the generator `name` (see [`catalog`]) with `options`.
pub fn build_dataset(name: &str, options: &BuildOptions) -> Result<Box<dyn Dataset>> {
    let preset = options.preset.as_deref();
    let only_preset = || -> Result<()> {
        for (set, what) in
            [(options.kappa.is_some(), "kappa"), (options.dim_x.is_some(), "dx"), (options.dim_y.is_some(), "dy")]
        {
            if set {
                return Err(not_applicable(name, what));
            }
        }
        Ok(())
    };
    let seed = options.seed;
    Ok(match name {
        "quadratic" => {
            let mut c = preset.map_or_else(|| Ok(quadratic::Config::default()), quadratic::Config::preset)?;
            c.kappa_g = options.kappa.unwrap_or(c.kappa_g);
            c.dim_x = options.dim_x.unwrap_or(c.dim_x);
            c.dim_y = options.dim_y.unwrap_or(c.dim_y);
            Box::new(quadratic::generate(&c, seed)?)
        }
        "stochastic_quadratic" => {
            let mut c = preset
                .map_or_else(|| Ok(stochastic_quadratic::Config::default()), stochastic_quadratic::Config::preset)?;
            if let Some(kappa) = options.kappa {
                if !(kappa.is_finite() && kappa >= 1.0) {
                    return Err(KernelError::InvalidParameter {
                        name: "kappa",
                        reason: format!("must be >= 1, got {kappa}"),
                    });
                }
                c.mu = c.g.l_yy / kappa;
            }
            c.dim_x = options.dim_x.unwrap_or(c.dim_x);
            c.dim_y = options.dim_y.unwrap_or(c.dim_y);
            Box::new(stochastic_quadratic::generate(&c, seed)?)
        }
        "text" => {
            only_preset()?;
            let c = preset.map_or_else(|| Ok(text::TextConfig::default()), text::TextConfig::preset)?;
            Box::new(text::generate(&c, seed)?)
        }
        "logreg_text" => {
            only_preset()?;
            let c = preset.map_or_else(|| Ok(text::TextConfig::default()), text::TextConfig::preset)?;
            Box::new(logreg_hpo::text_problem(&c, seed)?)
        }
        "logreg_binary" => {
            only_preset()?;
            let c = preset.map_or_else(|| Ok(logreg_hpo::BinaryConfig::default()), logreg_hpo::BinaryConfig::preset)?;
            Box::new(logreg_hpo::binary_problem(&c, seed)?)
        }
        "logreg_per_class" => {
            only_preset()?;
            let c =
                preset.map_or_else(|| Ok(logreg_hpo::PerClassConfig::default()), logreg_hpo::PerClassConfig::preset)?;
            Box::new(logreg_hpo::per_class_problem(&c, seed)?)
        }
        "hyperclean" => {
            only_preset()?;
            let c = preset
                .map_or_else(|| Ok(hyperclean::HyperCleanConfig::default()), hyperclean::HyperCleanConfig::preset)?;
            Box::new(hyperclean::generate(&c, seed)?)
        }
        "meta_learning" => {
            only_preset()?;
            let c = preset.map_or_else(|| Ok(meta_learning::Config::default()), meta_learning::Config::preset)?;
            Box::new(meta_learning::generate(&c, seed)?)
        }
        "equilibrium" => {
            only_preset()?;
            let c = preset.map_or_else(|| Ok(equilibrium::Config::default()), equilibrium::Config::preset)?;
            Box::new(equilibrium::generate(&c, seed)?)
        }
        "distillation" => {
            only_preset()?;
            let c = preset.map_or_else(|| Ok(distillation::Config::default()), distillation::Config::preset)?;
            Box::new(distillation::generate(&c, seed)?)
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
