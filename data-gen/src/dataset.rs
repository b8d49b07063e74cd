//! What every generated problem exposes for export and for listing: its name, its parameters
//! (including the seed) and its data as named arrays.

/// The data of one array, in row-major (C) order.
#[derive(Clone, Debug, PartialEq)]
pub enum ArrayData {
    /// 64-bit floats (`<f8`).
    F64(Vec<f64>),
    /// 64-bit integers (`<i8`).
    I64(Vec<i64>),
}

/// A named n-dimensional array (row-major), e.g. `A_g` of shape `[d_y, d_y]`, or the three
/// arrays `X_indptr`, `X_indices`, `X_data` of a CSR matrix.
#[derive(Clone, Debug, PartialEq)]
pub struct Array {
    /// The name (a plain file name: letters, digits, `_`, `-`).
    pub name: String,
    /// The shape (row-major); `[]` for a scalar.
    pub shape: Vec<usize>,
    /// The values.
    pub data: ArrayData,
}

impl Array {
    /// A float array (shape product = data length, checked in debug builds).
    pub fn f64(name: &str, shape: Vec<usize>, data: Vec<f64>) -> Self {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        Self { name: name.to_string(), shape, data: ArrayData::F64(data) }
    }
    /// An integer array (shape product = data length, checked in debug builds).
    pub fn i64(name: &str, shape: Vec<usize>, data: Vec<i64>) -> Self {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        Self { name: name.to_string(), shape, data: ArrayData::I64(data) }
    }
    /// A column-major faer matrix as a row-major array.
    pub fn from_mat(name: &str, m: faer::MatRef<'_, f64>) -> Self {
        let data = (0..m.nrows()).flat_map(|i| (0..m.ncols()).map(move |j| m[(i, j)])).collect();
        Self::f64(name, vec![m.nrows(), m.ncols()], data)
    }
}

/// A generated problem as data: enough to write it to disk and check it from Python.
pub trait Dataset {
    /// The generator's name (as listed by `bilevel problems`), e.g. `"quadratic"`.
    fn generator(&self) -> &'static str;
    /// The parameters it was generated with, the seed included, as JSON values.
    fn parameters(&self) -> serde_json::Map<String, serde_json::Value>;
    /// Its data (matrices, vectors, labels, and the exact references it knows).
    fn arrays(&self) -> Vec<Array>;
}

/// An entry of the generator catalogue (`bilevel problems`).
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct GeneratorInfo {
    /// The generator's name (`--problem NAME`).
    pub name: &'static str,
    /// One line: the paper and the form of the problem.
    pub summary: &'static str,
    /// Named presets, smallest first (e.g. `"tiny"` for tests).
    pub presets: &'static [&'static str],
}

impl GeneratorInfo {
    /// The error of a `preset` that is not one of [`presets`](Self::presets).
    pub(crate) fn unknown_preset(&self, preset: &str) -> bilevel_kernels::KernelError {
        bilevel_kernels::KernelError::InvalidParameter {
            name: "preset",
            reason: format!("unknown preset `{preset}` for `{}` (known: {})", self.name, self.presets.join(", ")),
        }
    }
}

/// A config's fields as export parameters (the manifest's `parameters`), plus the seed when
/// given: the one place configs become JSON (`#[derive(Serialize)]` on each config).
pub(crate) fn parameters_of(
    config: &impl serde::Serialize,
    seed: Option<u64>,
) -> serde_json::Map<String, serde_json::Value> {
    let mut m = match serde_json::to_value(config) {
        Ok(serde_json::Value::Object(m)) => m,
        _ => unreachable!("configs are structs of numbers and names"),
    };
    if let Some(seed) = seed {
        m.insert("seed".into(), seed.into());
    }
    m
}
