//! The problems `hypergrad` and `solve` run on: built by name from a generator with exact
//! references, or loaded from a problem directory.

use crate::cli::ProblemArgs;
use bilevel_data::export::load_dir;
use bilevel_data::{meta_learning, quadratic, stochastic_quadratic};
use bilevel_kernels::BilevelProblem;

type DynError = Box<dyn std::error::Error>;

/// What to do with the built problem and its seeded starting point (generic over the type, so
/// the oracles are statically dispatched).
pub trait ProblemVisitor {
    fn visit<P: BilevelProblem>(self, name: &str, problem: P, x0: Vec<f64>) -> Result<(), DynError>;
}

/// Builds (or loads) the problem of `a` and hands it to `v`.
pub fn with_problem(a: &ProblemArgs, v: impl ProblemVisitor) -> Result<(), DynError> {
    if let Some(dir) = &a.problem_dir {
        let loaded = load_dir(dir)?;
        let p = quadratic::QuadraticProblem::from_arrays(loaded.parameters, &loaded.arrays)?;
        let x = p.x0(a.seed);
        return v.visit("quadratic (loaded)", p, x);
    }
    let preset = a.preset.as_deref();
    let (dx, dy) = (a.dx.map(|d| d as usize), a.dy.map(|d| d as usize));
    match a.name.as_str() {
        "quadratic" => {
            let mut c = preset.map_or_else(|| Ok(quadratic::Config::default()), quadratic::Config::preset)?;
            c.kappa_g = a.kappa.unwrap_or(c.kappa_g);
            (c.dim_x, c.dim_y) = (dx.unwrap_or(c.dim_x), dy.unwrap_or(c.dim_y));
            let p = quadratic::generate(&c, a.seed)?;
            let x = p.x0(a.seed);
            v.visit("quadratic", p, x)
        }
        "stochastic_quadratic" => {
            let mut c =
                preset.map_or_else(|| Ok(stochastic_quadratic::Config::default()), stochastic_quadratic::Config::preset)?;
            if let Some(k) = a.kappa {
                c.mu = c.g.l_yy / k;
            }
            (c.dim_x, c.dim_y) = (dx.unwrap_or(c.dim_x), dy.unwrap_or(c.dim_y));
            let p = stochastic_quadratic::generate(&c, a.seed)?;
            let x = p.x0(a.seed);
            v.visit("stochastic_quadratic", p, x)
        }
        "meta_learning" => {
            if a.kappa.is_some() || dx.is_some() || dy.is_some() {
                return Err("meta_learning takes --preset only (no --kappa/--dx/--dy)".into());
            }
            let c = preset.map_or_else(|| Ok(meta_learning::Config::default()), meta_learning::Config::preset)?;
            let p = meta_learning::generate(&c, a.seed)?;
            let x = p.x0(a.seed);
            v.visit("meta_learning", p, x)
        }
        other => Err(format!(
            "this command needs a problem with an exact hypergradient: quadratic, stochastic_quadratic or meta_learning, not `{other}`"
        )
        .into()),
    }
}
