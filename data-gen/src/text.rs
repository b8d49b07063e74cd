//! A synthetic sparse, text-like classification dataset: the stand-in for 20 Newsgroups in the
//! logistic-regression hyper-parameter problems of Arbel & Mairal, "Amortized implicit
//! differentiation for stochastic bilevel optimization" (ICLR 2022) §5.2/App. F.2 and Ji, Yang &
//! Liang, "Bilevel Optimization: Convergence Analysis and Enhanced Design" (ICML 2021) App. A.
//!
//! # Model (a bag of words with class topics)
//! Vocabulary of d words; word j (0-based) has background frequency rank j + 1.
//! For each document i, independently:
//! 1. class `c_i` uniform in `0..K`;
//! 2. token count `T_i = max(1, round(mean_tokens · exp(σ Z − σ²/2)))`, Z ~ N(0, 1), σ =
//!    `length_sigma` (log-normal lengths with mean ≈ `mean_tokens`);
//! 3. each of the T_i tokens is, with probability `1 − topic_fraction`, a background word
//!    drawn from **Zipf(d, s)**: `P(word j) ∝ (j + 1)^{−s}`, s = `zipf_exponent` (default 1.0,
//!    Zipf's law for natural-language word frequencies); and with probability `topic_fraction`
//!    a word of the class topic `S_c`, drawn from Zipf(m, s) over that topic's word list.
//!
//! The topics make the classes learnable: `S_c` is a set of m = `topic_words` distinct words
//! drawn uniformly (per class, independently) from the ranks `topic_min_rank..d`, i.e. from
//! mid- and low-frequency words, whose background probability is small. A document of class c
//! thus carries about `topic_fraction · T_i` tokens from `S_c`, which a linear model picks up;
//! the frequent words (ranks below `topic_min_rank`, "stop words") carry no class information.
//!
//! # Features (tf-idf, unit rows)
//! With `tf_ij` the count of word j in document i and `df_j` the number of documents (all
//! splits) containing it, the stored value is sublinear tf-idf with smoothed idf, as
//! scikit-learn's `TfidfVectorizer(sublinear_tf=True)` computes it:
//! `x_ij = (1 + ln tf_ij) · (ln((1 + n)/(1 + df_j)) + 1)`, then each row is scaled to unit
//! Euclidean norm. All values are positive; only words that occur are stored (CSR).
//!
//! # Splits
//! Documents are i.i.d., so the split is by position: the first `n_train` documents are the
//! training set, the next `n_val` the validation set, the rest the test set.
//!
//! # Cost
//! O(Σ_i T_i log T_i + d + K·m) time, O(nnz + d) memory: one pass draws the tokens of a
//! document, sorts them (run-length counting), and appends its row; a second pass over the
//! stored values applies idf and the row norms. No dense n × d array is ever formed.
//!
//! # Reproducibility
//! One `Xoshiro256PlusPlus` stream seeded by `seed_from_u64(seed)`, consumed sequentially: the
//! same config and seed give the same bits on a given platform (the samplers use `ln`, `exp`
//! and `powf`, whose last bit may differ between libm implementations).
//!
//! Presets: `"tiny"` (60 documents, 50 words, 3 classes: tests), `"small"` (2,000 documents,
//! 5,000 words, 5 classes) and `"20news"` (the default: 18,846 documents = 5,657 train + 5,657
//! validation + 7,532 test as in stocBiO's script, 101,631 words as in both papers, 20 classes,
//! about 0.1% density, i.e. ≈ 100 distinct words per document).

use crate::dataset::{Array, Dataset, GeneratorInfo};
use bilevel_kernels::{CsrMatrix, KernelError, Result};
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, StandardNormal, Zipf};
use rand_xoshiro::Xoshiro256PlusPlus;

/// Catalogue entry of the text dataset generator.
pub const INFO: GeneratorInfo = GeneratorInfo {
    name: "text",
    summary: "synthetic sparse text-like data: Zipf word frequencies, class topics, tf-idf, unit rows",
    presets: &["tiny", "small", "20news"],
};

/// Parameters of the text generator (see the module doc for the model).
/// `Default` is the `"20news"` preset.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct TextConfig {
    /// Training documents (the lower-level data).
    pub n_train: usize,
    /// Validation documents (the upper-level data).
    pub n_val: usize,
    /// Test documents (held out, for reporting).
    pub n_test: usize,
    /// Vocabulary size d (number of features).
    pub n_features: usize,
    /// Number of classes K (≥ 2).
    pub n_classes: usize,
    /// Mean number of tokens per document (before counting repeats).
    pub mean_tokens: f64,
    /// σ of the log-normal document length (0: every document has `mean_tokens` tokens).
    pub length_sigma: f64,
    /// Exponent s of the Zipf law `P(rank r) ∝ r^{−s}` (background and within a topic).
    pub zipf_exponent: f64,
    /// Probability that a token is drawn from its class topic rather than the background.
    pub topic_fraction: f64,
    /// Words per class topic (m).
    pub topic_words: usize,
    /// Topic words are drawn from the ranks `topic_min_rank..n_features` (0-based).
    pub topic_min_rank: usize,
}

impl Default for TextConfig {
    fn default() -> Self {
        Self {
            n_train: 5_657,
            n_val: 5_657,
            n_test: 7_532,
            n_features: 101_631,
            n_classes: 20,
            mean_tokens: 125.0,
            length_sigma: 0.5,
            zipf_exponent: 1.0,
            topic_fraction: 0.2,
            topic_words: 500,
            topic_min_rank: 200,
        }
    }
}

impl TextConfig {
    /// A named preset: `"tiny"`, `"small"` or `"20news"` (= `Default`).
    pub fn preset(name: &str) -> Result<Self> {
        match name {
            "tiny" => Ok(Self {
                n_train: 24,
                n_val: 18,
                n_test: 18,
                n_features: 50,
                n_classes: 3,
                mean_tokens: 10.0,
                length_sigma: 0.3,
                zipf_exponent: 1.0,
                topic_fraction: 0.4,
                topic_words: 6,
                topic_min_rank: 5,
            }),
            "small" => Ok(Self {
                n_train: 800,
                n_val: 600,
                n_test: 600,
                n_features: 5_000,
                n_classes: 5,
                mean_tokens: 60.0,
                length_sigma: 0.5,
                zipf_exponent: 1.0,
                topic_fraction: 0.2,
                topic_words: 100,
                topic_min_rank: 50,
            }),
            "20news" => Ok(Self::default()),
            _ => Err(INFO.unknown_preset(name)),
        }
    }

    /// Total number of documents.
    pub fn n_docs(&self) -> usize {
        self.n_train + self.n_val + self.n_test
    }

    /// Checks every parameter; errors name the parameter and the reason.
    pub fn validate(&self) -> Result<()> {
        let bad = |name: &'static str, reason: String| Err(KernelError::InvalidParameter { name, reason });
        if self.n_train == 0 || self.n_val == 0 {
            return bad("n_train/n_val", "the training and validation sets must be non-empty".into());
        }
        if self.n_features == 0 || self.n_features > u32::MAX as usize {
            return bad("n_features", format!("must be in 1..=2^32-1, got {}", self.n_features));
        }
        crate::logreg_hpo::check_classes(self.n_classes)?;
        if !(self.mean_tokens.is_finite() && self.mean_tokens >= 1.0 && self.mean_tokens <= 1e6) {
            return bad("mean_tokens", format!("must be in [1, 1e6], got {:?}", self.mean_tokens));
        }
        if !(self.length_sigma.is_finite() && (0.0..=3.0).contains(&self.length_sigma)) {
            return bad("length_sigma", format!("must be in [0, 3], got {:?}", self.length_sigma));
        }
        if !(self.zipf_exponent.is_finite() && (0.0..=10.0).contains(&self.zipf_exponent)) {
            return bad("zipf_exponent", format!("must be in [0, 10], got {:?}", self.zipf_exponent));
        }
        if !(self.topic_fraction.is_finite() && (0.0..=1.0).contains(&self.topic_fraction)) {
            return bad("topic_fraction", format!("must be in [0, 1], got {:?}", self.topic_fraction));
        }
        if self.topic_min_rank >= self.n_features {
            return bad(
                "topic_min_rank",
                format!("must be below n_features = {}, got {}", self.n_features, self.topic_min_rank),
            );
        }
        let pool = self.n_features - self.topic_min_rank;
        if self.topic_words == 0 || self.topic_words > pool {
            return bad(
                "topic_words",
                format!("must be in 1..={pool} (the ranks topic_min_rank..n_features), got {}", self.topic_words),
            );
        }
        Ok(())
    }

    /// The parameters as JSON (for [`Dataset::parameters`]).
    pub fn to_json(&self) -> serde_json::Map<String, serde_json::Value> {
        crate::dataset::parameters_of(self, None)
    }
}

/// One split: a CSR design (documents as rows) and class labels in `0..K`.
#[derive(Clone, Debug, PartialEq)]
pub struct SparseSplit {
    /// The documents as tf-idf CSR rows.
    pub x: CsrMatrix,
    /// The class of every document.
    pub labels: Vec<usize>,
}

/// A generated text dataset.
#[derive(Clone, Debug, PartialEq)]
pub struct TextData {
    /// The config it was generated with.
    pub config: TextConfig,
    /// The seed it was generated with.
    pub seed: u64,
    /// The training documents.
    pub train: SparseSplit,
    /// The validation documents.
    pub val: SparseSplit,
    /// The test documents.
    pub test: SparseSplit,
    /// Total number of tokens of each word over all documents (the Zipf law is visible here:
    /// `token_counts[j]` decreases roughly as `(j + 1)^{−s}` below `topic_min_rank`).
    pub token_counts: Vec<u64>,
    /// The topic word list of each class (`topics[c]`, m words each, in topic-rank order).
    pub topics: Vec<Vec<u32>>,
}

impl TextData {
    /// Stored entries over all splits.
    pub fn nnz(&self) -> usize {
        self.train.x.nnz() + self.val.x.nnz() + self.test.x.nnz()
    }
    /// Fraction of stored entries over all splits: nnz / (n·d).
    pub fn density(&self) -> f64 {
        self.nnz() as f64 / (self.config.n_docs() as f64 * self.config.n_features as f64)
    }
}

/// Generates the text dataset of `config` with `seed` (see the module doc). Errors: an invalid
/// config ([`TextConfig::validate`]).
pub fn generate(config: &TextConfig, seed: u64) -> Result<TextData> {
    config.validate()?;
    let (n, d, k, m) = (config.n_docs(), config.n_features, config.n_classes, config.topic_words);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let zipf_err = |e: rand_distr::ZipfError| KernelError::InvalidParameter { name: "zipf", reason: e.to_string() };
    let background = Zipf::new(d as f64, config.zipf_exponent).map_err(zipf_err)?;
    let topic = Zipf::new(m as f64, config.zipf_exponent).map_err(zipf_err)?;

    let pool = d - config.topic_min_rank;
    let topics: Vec<Vec<u32>> = (0..k)
        .map(|_| {
            rand::seq::index::sample(&mut rng, pool, m)
                .into_iter()
                .map(|r| (config.topic_min_rank + r) as u32)
                .collect()
        })
        .collect();

    // Pass 1: tokens → counts per document (CSR with raw tf), document frequencies.
    let expected_nnz = (n as f64 * config.mean_tokens.min(d as f64)) as usize;
    let mut indptr = Vec::with_capacity(n + 1);
    indptr.push(0usize);
    let mut indices: Vec<u32> = Vec::with_capacity(expected_nnz);
    let mut values: Vec<f64> = Vec::with_capacity(expected_nnz);
    let mut labels = Vec::with_capacity(n);
    let mut df = vec![0u32; d];
    let mut token_counts = vec![0u64; d];
    let mut tokens: Vec<u32> = Vec::new();
    let sigma = config.length_sigma;
    for _ in 0..n {
        let c = rng.random_range(0..k);
        labels.push(c);
        let z: f64 = StandardNormal.sample(&mut rng);
        let len = (config.mean_tokens * (sigma * z - 0.5 * sigma * sigma).exp()).round().max(1.0) as usize;
        tokens.clear();
        for _ in 0..len {
            let word = if rng.random_bool(config.topic_fraction) {
                topics[c][rank_index(topic.sample(&mut rng), m)]
            } else {
                rank_index(background.sample(&mut rng), d) as u32
            };
            tokens.push(word);
        }
        tokens.sort_unstable();
        let mut t = 0;
        while t < tokens.len() {
            let word = tokens[t];
            let run = tokens[t..].iter().take_while(|&&w| w == word).count();
            indices.push(word);
            values.push(run as f64);
            df[word as usize] += 1;
            token_counts[word as usize] += run as u64;
            t += run;
        }
        indptr.push(indices.len());
    }

    // Pass 2: sublinear tf · smoothed idf, then unit rows.
    let idf: Vec<f64> = df.iter().map(|&f| ((1.0 + n as f64) / (1.0 + f as f64)).ln() + 1.0).collect();
    for i in 0..n {
        let (lo, hi) = (indptr[i], indptr[i + 1]);
        let row = &mut values[lo..hi];
        for (v, &j) in row.iter_mut().zip(&indices[lo..hi]) {
            *v = (1.0 + v.ln()) * idf[j as usize];
        }
        let norm = row.iter().map(|v| v * v).sum::<f64>().sqrt();
        row.iter_mut().for_each(|v| *v /= norm);
    }

    let split = |rows: std::ops::Range<usize>| -> Result<SparseSplit> {
        let (lo, hi) = (indptr[rows.start], indptr[rows.end]);
        let ptr = indptr[rows.start..=rows.end].iter().map(|p| p - lo).collect();
        let x = CsrMatrix::new(rows.len(), d, ptr, indices[lo..hi].to_vec(), values[lo..hi].to_vec())?;
        Ok(SparseSplit { x, labels: labels[rows].to_vec() })
    };
    let (a, b) = (config.n_train, config.n_train + config.n_val);
    Ok(TextData {
        config: config.clone(),
        seed,
        train: split(0..a)?,
        val: split(a..b)?,
        test: split(b..n)?,
        token_counts,
        topics,
    })
}

/// A Zipf sample (a rank in 1..=len, as f64) as a 0-based index, clamped against rounding.
#[inline]
fn rank_index(sample: f64, len: usize) -> usize {
    (sample as usize).clamp(1, len) - 1
}

/// The arrays of a CSR matrix, named `{prefix}_indptr`, `{prefix}_indices`, `{prefix}_data`.
pub fn csr_arrays(prefix: &str, x: &CsrMatrix) -> Vec<Array> {
    vec![
        Array::i64(&format!("{prefix}_indptr"), vec![x.nrows() + 1], x.indptr().iter().map(|&p| p as i64).collect()),
        Array::i64(&format!("{prefix}_indices"), vec![x.nnz()], x.indices().iter().map(|&j| j as i64).collect()),
        Array::f64(&format!("{prefix}_data"), vec![x.nnz()], x.values().to_vec()),
    ]
}

/// Labels as an `i64` array.
pub fn label_array(name: &str, labels: &[usize]) -> Array {
    Array::i64(name, vec![labels.len()], labels.iter().map(|&c| c as i64).collect())
}

impl Dataset for TextData {
    fn generator(&self) -> &'static str {
        INFO.name
    }
    fn parameters(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut p = self.config.to_json();
        p.insert("seed".into(), self.seed.into());
        p
    }
    /// `X_{train,val,test}_{indptr,indices,data}` (CSR, shape n_split × d), `y_{train,val,test}`,
    /// `token_counts` (d) and `topics` (K × m).
    fn arrays(&self) -> Vec<Array> {
        let mut out = Vec::new();
        for (name, s) in [("train", &self.train), ("val", &self.val), ("test", &self.test)] {
            out.extend(csr_arrays(&format!("X_{name}"), &s.x));
            out.push(label_array(&format!("y_{name}"), &s.labels));
        }
        let d = self.config.n_features;
        out.push(Array::i64("token_counts", vec![d], self.token_counts.iter().map(|&c| c as i64).collect()));
        let (k, m) = (self.topics.len(), self.config.topic_words);
        out.push(Array::i64("topics", vec![k, m], self.topics.iter().flatten().map(|&w| w as i64).collect()));
        out
    }
}
