//! [`Splits`]: the data [`BinaryHpo`](super::BinaryHpo) and [`MultinomialHpo`](super::MultinomialHpo)
//! hold alike — the inner model on the training split, the outer plain model on the validation
//! split, an optional test split and the generator's description — with the checks, the split
//! lookup, the export arrays and the `Debug` fields they share.

use super::{design_arrays, invalid, Description, Split};
use crate::dataset::Array;
use bilevel_kernels::models::logistic::LogisticModel;
use bilevel_kernels::models::multinomial::MultinomialLogistic;
use bilevel_kernels::models::Design;
use bilevel_kernels::{KernelError, Result};

/// A kernels model seen as the data of one split.
pub(crate) trait SplitModel {
    /// A label: ±1 as f64 (binary) or a class index (multinomial).
    type Label: Copy;
    /// The design and the labels.
    fn data(&self) -> (&Design, &[Self::Label]);
    /// The export array of a split's labels.
    fn label_array(name: &str, labels: &[Self::Label]) -> Array;
}

macro_rules! split_model {
    ($model:ty, $label:ty, $label_array:expr) => {
        impl SplitModel for $model {
            type Label = $label;
            fn data(&self) -> (&Design, &[$label]) {
                (self.design(), self.labels())
            }
            fn label_array(name: &str, labels: &[$label]) -> Array {
                $label_array(name, labels)
            }
        }
    };
}
// ±1 as f64; class indices as i64.
split_model!(LogisticModel, f64, |name, labels: &[f64]| Array::f64(name, vec![labels.len()], labels.to_vec()));
split_model!(MultinomialLogistic, usize, crate::text::label_array);

/// A split as the constructors take it: (design, labels).
type Data<L> = (Design, Vec<L>);

/// The inner (training) model, the outer (validation) model, the test split and the
/// description of a logistic HPO problem.
pub(crate) struct Splits<M: SplitModel> {
    pub(crate) inner: M,
    pub(crate) outer: M,
    pub(crate) test: Option<(Design, Vec<M::Label>)>,
    pub(crate) description: Description,
}

impl<M: SplitModel> Splits<M> {
    /// Checks the splits and builds the models: `inner` on the training split, `outer` on the
    /// validation split (each model checks its own split). Checked here: the validation and test
    /// designs have the training design's features, there is one test label per test row and
    /// `bad_label` accepts each (it gives the reason for refusing label `l` of sample `i`). No
    /// description yet.
    pub(crate) fn new(
        train: Data<M::Label>,
        val: Data<M::Label>,
        test: Option<Data<M::Label>>,
        bad_label: impl Fn(usize, M::Label) -> Option<String>,
        inner: impl FnOnce(Design, Vec<M::Label>) -> Result<M>,
        outer: impl FnOnce(Design, Vec<M::Label>) -> Result<M>,
    ) -> Result<Self> {
        let d = train.0.ncols();
        bilevel_kernels::error::check_len("validation features", d, val.0.ncols())?;
        if let Some((x, labels)) = &test {
            bilevel_kernels::error::check_len("test features", d, x.ncols())?;
            bilevel_kernels::error::check_len("test labels", x.nrows(), labels.len())?;
            if let Some(reason) = labels.iter().enumerate().find_map(|(i, &l)| bad_label(i, l)) {
                return Err(KernelError::InvalidData { what: "test labels", reason });
            }
        }
        let (inner, outer) = (inner(train.0, train.1)?, outer(val.0, val.1)?);
        Ok(Self { inner, outer, test, description: Description::default() })
    }

    /// The default batch capacity: max(n_train, n_val).
    pub(crate) fn capacity(&self) -> usize {
        self.inner.data().0.nrows().max(self.outer.data().0.nrows())
    }

    /// The design and labels of a split. Errors: [`Split::Test`] without a test split.
    pub(crate) fn get(&self, split: Split) -> Result<(&Design, &[M::Label])> {
        match split {
            Split::Train => Ok(self.inner.data()),
            Split::Validation => Ok(self.outer.data()),
            Split::Test => match &self.test {
                Some((x, l)) => Ok((x, l.as_slice())),
                None => Err(invalid("split", "this problem has no test split".into())),
            },
        }
    }

    /// `X_{train,val,test}` (dense `[n, d]` or CSR `_indptr/_indices/_data`) and
    /// `y_{train,val,test}` ([`SplitModel::label_array`]).
    pub(crate) fn arrays(&self) -> Vec<Array> {
        let mut splits = vec![("train", self.inner.data()), ("val", self.outer.data())];
        splits.extend(self.test.as_ref().map(|(x, l)| ("test", (x, l.as_slice()))));
        let mut out = Vec::new();
        for (name, (x, labels)) in splits {
            out.extend(design_arrays(&format!("X_{name}"), x));
            out.push(M::label_array(&format!("y_{name}"), labels));
        }
        out
    }

    /// A `Debug` builder named `name` with the fields both problems show: generator, n_train,
    /// n_val, n_features.
    pub(crate) fn debug_struct<'a, 'b>(
        &self,
        f: &'a mut std::fmt::Formatter<'b>,
        name: &str,
    ) -> std::fmt::DebugStruct<'a, 'b> {
        let (train, val) = (self.inner.data().0, self.outer.data().0);
        let mut s = f.debug_struct(name);
        s.field("generator", &self.description.generator)
            .field("n_train", &train.nrows())
            .field("n_val", &val.nrows())
            .field("n_features", &train.ncols());
        s
    }
}
