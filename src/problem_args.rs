//! The problems `hypergrad` and `solve` run on: any bilevel problem of the catalogue
//! (`bilevel_data::catalog::build`), or a quadratic loaded from a problem directory; `solve`
//! also runs the catalogue's fixed-point problem (the equilibrium model) with BSGM.

use crate::cli::ProblemArgs;
use bilevel_data::catalog::{build, Problem};
use bilevel_data::export::{load_dir, read_array};
use bilevel_data::quadratic::QuadraticProblem;
use bilevel_data::ArrayData;
use bilevel_kernels::{BilevelProblem, FixedPointProblem};

type DynError = Box<dyn std::error::Error>;

/// A problem to run and its seeded starting point. The catalogue's problems arrive as
/// `Box<dyn BilevelProblem + Send>`, and so does a loaded one.
pub struct Loaded {
    pub name: String,
    pub problem: Box<dyn BilevelProblem + Send>,
    pub x0: Vec<f64>,
}

/// A fixed-point problem to run (the equilibrium model) and its starting λ_0 and states w_0.
pub struct LoadedFixedPoint {
    pub name: String,
    pub problem: Box<dyn FixedPointProblem + Send>,
    pub lambda0: Vec<f64>,
    pub w0: Vec<f64>,
}

/// What `solve` runs: a bilevel problem, or a fixed-point problem.
pub enum Runnable {
    Bilevel(Loaded),
    FixedPoint(LoadedFixedPoint),
}

/// Builds (or loads) the problem of `a`, with its starting point: the generator's `x0(seed)`,
/// or for a problem directory its `x0.npy` when there is one (else the quadratic's seeded law).
/// A fixed-point problem is refused (`hypergrad` runs bilevel problems); see [`load_runnable`].
pub fn load(a: &ProblemArgs) -> Result<Loaded, DynError> {
    match load_runnable(a)? {
        Runnable::Bilevel(loaded) => Ok(loaded),
        Runnable::FixedPoint(p) => {
            Err(format!("`{}` is a fixed-point problem; `hypergrad` runs bilevel problems", p.name).into())
        }
    }
}

/// [`load`], keeping a fixed-point problem (what `solve` runs with BSGM) with the generator's λ_0
/// and w_0 = 0.
pub fn load_runnable(a: &ProblemArgs) -> Result<Runnable, DynError> {
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
        return Ok(Runnable::Bilevel(Loaded { name: "quadratic (loaded)".into(), problem: Box::new(p), x0: x }));
    }
    if let Some(file) = &a.problem_file {
        return from_file(&a.name, file, &a.file.options(), a.generator.seed).map(Runnable::Bilevel);
    }
    let built = build(&a.name, &a.generator.build_options())?;
    let (name, x0, y0) = (built.name(), built.x0(a.generator.seed), built.y0());
    match built.into_problem() {
        Problem::Bilevel(problem) => Ok(Runnable::Bilevel(Loaded { name: name.to_string(), problem, x0 })),
        Problem::FixedPoint(problem) => {
            Ok(Runnable::FixedPoint(LoadedFixedPoint { name: name.to_string(), problem, lambda0: x0, w0: y0 }))
        }
        Problem::Data(_) => Err(format!("`{name}` is a data set, not a problem (use `bilevel export`)").into()),
    }
}

/// Refuses `--problem-file` options that the chosen problem would not read (or given without
/// `--problem-file`).
pub fn check_file_flags(a: &ProblemArgs) -> Result<(), DynError> {
    let f = &a.file;
    let given = [
        (f.val_fraction.is_some(), "--val-fraction", "both file problems"),
        (f.test_fraction.is_some(), "--test-fraction", "both file problems"),
        (f.corruption.is_some(), "--corruption", "hyperclean"),
        (f.ridge.is_some(), "--ridge", "hyperclean"),
        (f.reg_scale.is_some(), "--reg-scale", "logreg_per_class"),
    ];
    for (set, flag, who) in given {
        if !set {
            continue;
        }
        if a.problem_file.is_none() {
            return Err(
                format!("{flag} shapes a problem built from --problem-file (read by {who}); none was given").into()
            );
        }
        if who != "both file problems" && a.name != who {
            return Err(format!("{flag} is not used by `{}` from a file; it is read by {who}", a.name).into());
        }
    }
    Ok(())
}

/// A problem on the rows of a LIBSVM file (`--problem-file`), x0 = 0 (the neutral weights).
fn from_file(
    name: &str,
    file: &std::path::Path,
    options: &bilevel_data::from_file::FileOptions,
    seed: u64,
) -> Result<Loaded, DynError> {
    use bilevel_data::from_file;
    let data = bilevel_data::libsvm::read_path(file, Default::default())
        .map_err(|e| format!("--problem-file {}: {e}", file.display()))?;
    let problem: Box<dyn BilevelProblem + Send> = match name {
        "hyperclean" => Box::new(from_file::hyperclean(&data, options, seed)?),
        "logreg_per_class" => Box::new(from_file::logreg_per_class(&data, options, seed)?),
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
