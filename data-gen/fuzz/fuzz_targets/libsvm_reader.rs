#![no_main]
//! Any byte string must give a dataset or a `LibsvmError`, never a panic.
use bilevel_data::libsvm::{read, IndexBase, ReadOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for index_base in [IndexBase::One, IndexBase::Zero, IndexBase::Auto] {
        if let Ok(d) = read(data, ReadOptions { index_base, n_features: None }) {
            assert_eq!(d.labels.len(), d.x.nrows());
        }
    }
});
