//! The problems `hypergrad` and `solve` run on: any bilevel problem of the catalogue
//! (`bilevel_data::catalog::build`), or a quadratic loaded from a problem directory.

use crate::cli::ProblemArgs;
use bilevel_data::catalog::{build, Problem};
use bilevel_data::export::{load_dir, read_array};
use bilevel_data::quadratic::QuadraticProblem;
use bilevel_data::ArrayData;
use bilevel_kernels::BilevelProblem;

type DynError = Box<dyn std::error::Error>;

/// A problem to run and its seeded starting point. The catalogue's problems arrive as
/// `Box<dyn BilevelProblem + Send>`, and so does a loaded one.
pub struct Loaded {
    pub name: String,
    pub problem: Box<dyn BilevelProblem + Send>,
    pub x0: Vec<f64>,
}

/// Builds (or loads) the problem of `a`, with its starting point: the generator's `x0(seed)`,
/// or for a problem directory its `x0.npy` when there is one (else the quadratic's seeded law).
pub fn load(a: &ProblemArgs) -> Result<Loaded, DynError> {
    if let Some(dir) = &a.problem_dir {
        let loaded = load_dir(dir)?;
        let p = QuadraticProblem::from_loaded(&loaded)?;
        let x0 = match loaded.arrays.iter().find(|a| a.name == "x0") {
            Some(array) => Some(array.clone()),
            None => {
                let path = dir.join("x0.npy");
                path.exists().then(|| read_array("x0", &path)).transpose()?
            }
        };
        let x = match x0 {
            None => p.x0(a.generator.seed),
            Some(array) => {
                let x: Vec<f64> = match array.data {
                    ArrayData::F64(v) => v,
                    ArrayData::I64(v) => v.into_iter().map(|x| x as f64).collect(),
                };
                if x.len() != p.dim_x() || array.shape.len() != 1 {
                    return Err(format!(
                        "{}: x0 has shape {:?}, the loaded quadratic needs [{}]",
                        dir.display(),
                        array.shape,
                        p.dim_x()
                    )
                    .into());
                }
                if let Some(i) = x.iter().position(|v| !v.is_finite()) {
                    return Err(format!("{}: x0[{i}] is not finite", dir.display()).into());
                }
                x
            }
        };
        return Ok(Loaded { name: "quadratic (loaded)".into(), problem: Box::new(p), x0: x });
    }
    if let Some(file) = &a.problem_file {
        return from_file(&a.name, file, a.generator.seed);
    }
    let built = build(&a.name, &a.generator.build_options())?;
    let (name, x0) = (built.name(), built.x0(a.generator.seed));
    match built.into_problem() {
        Problem::Bilevel(problem) => Ok(Loaded { name: name.to_string(), problem, x0 }),
        Problem::FixedPoint(_) => {
            Err(format!("`{name}` is a fixed-point problem; `hypergrad` and `solve` run bilevel problems").into())
        }
        Problem::Data(_) => Err(format!("`{name}` is a data set, not a problem (use `bilevel export`)").into()),
    }
}

/// A problem on the rows of a LIBSVM file (`--problem-file`), x0 = 0 (the neutral weights).
fn from_file(name: &str, file: &std::path::Path, seed: u64) -> Result<Loaded, DynError> {
    use bilevel_data::from_file::{self, FileOptions};
    let data = bilevel_data::libsvm::read_path(file, Default::default())
        .map_err(|e| format!("--problem-file {}: {e}", file.display()))?;
    let options = FileOptions::default();
    let problem: Box<dyn BilevelProblem + Send> = match name {
        "hyperclean" => Box::new(from_file::hyperclean(&data, &options, seed)?),
        "logreg_per_class" => Box::new(from_file::logreg_per_class(&data, &options, seed)?),
        other => {
            return Err(format!(
                "--problem-file runs `hyperclean` or `logreg_per_class` on a file, not `{other}` (set --problem)"
            )
            .into())
        }
    };
    let x0 = vec![0.0; problem.dim_x()];
    Ok(Loaded { name: format!("{name} ({})", file.display()), problem, x0 })
}
