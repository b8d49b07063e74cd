//! Mini-batch sampling for the stochastic algorithms: one [`BatchStream`] per oracle that a
//! paper requires to be sampled independently (paper 001 Alg. 1 steps 1–4; paper 002's D_F, D_G,
//! D_H and the per-term Neumann batches; paper 000's D_g, D_f, D_gyy, D_gxy).
//!
//! - **Streams.** Every stream derives from the run's seed and its own stream number: the
//!   generator is Xoshiro256++ seeded from the seed and then jumped `stream` times (each jump
//!   skips 2^128 draws), so two streams never share a subsequence and the same seed gives the
//!   same batches, bit for bit, whatever the number of threads (sampling is sequential; the
//!   oracles' parallel reductions are deterministic).
//! - **With replacement**: each index uniform on 0..n, independently.
//! - **Epochs** (without replacement): a shuffled permutation of 0..n is read in order and
//!   reshuffled when it is used up, so every n consecutive draws of the stream (an epoch) visit
//!   every sample exactly once; a batch may straddle two epochs. (benchopt's sampler reads one
//!   index past the end of its permutation; this one never does.)
//! - **Full batches**: a stream with no batch size yields [`Batch::Full`]: the deterministic
//!   oracles, which makes every stochastic algorithm reproduce its deterministic iterates.
//! - **Replay**: [`BatchStream::last`] is the batch drawn last, for estimators that evaluate two
//!   points on the same sample (SUSTAIN's ζ_t at (x_t, y_t) and at (x_{t−1}, y_{t−1})).
//!
//! Buffers are sized when a stream is built for its largest draw, so drawing does not allocate.

use bilevel_kernels::{Batch, KernelError, Result, StepBatches};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

/// How a stream draws indices.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Sampling {
    /// Independent uniform indices.
    #[default]
    Replacement,
    /// Shuffled epochs: every sample once per n draws.
    Epochs,
}

/// The mini-batch sizes of a run, by oracle (`None`: full batches, the deterministic oracle).
/// Which oracle is which follows each paper's notation; an algorithm reads those it has.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct BatchSizes {
    /// ∂y g in the inner loop (paper 000's D_g, paper 002's S), one fresh batch per step.
    pub inner: Option<usize>,
    /// ∂x f and ∂y f, one batch for both (paper 000's D_f, paper 002's D_F).
    pub outer: Option<usize>,
    /// Hessian-vector products (paper 000's D_gyy, a fresh batch per adjoint step; paper 002's
    /// B, the per-term Neumann batches).
    pub hvp: Option<usize>,
    /// The cross product (paper 000's D_gxy, paper 002's D_G).
    pub cross: Option<usize>,
    /// How the indices are drawn.
    pub sampling: Sampling,
}

impl BatchSizes {
    /// Full batches everywhere (the deterministic algorithms).
    pub fn full() -> Self {
        Self::default()
    }
    /// Batches of `b` samples for every oracle.
    pub fn all(b: usize) -> Self {
        Self { inner: Some(b), outer: Some(b), hvp: Some(b), cross: Some(b), sampling: Sampling::Replacement }
    }
    /// Whether every oracle runs on full batches.
    pub fn is_full(&self) -> bool {
        [self.inner, self.outer, self.hvp, self.cross].iter().all(Option::is_none)
    }
}

/// One stream of indices over `n` samples.
#[derive(Clone, Debug)]
struct Sampler {
    n: usize,
    sampling: Sampling,
    rng: Xoshiro256PlusPlus,
    perm: Vec<usize>,
    cursor: usize,
}

impl Sampler {
    fn new(n: usize, sampling: Sampling, seed: u64, stream: u64) -> Self {
        let rng = stream_rng(seed, stream);
        let perm = if sampling == Sampling::Epochs { (0..n).collect() } else { Vec::new() };
        // cursor = n: the first draw shuffles.
        Self { n, sampling, rng, perm, cursor: n }
    }

    fn fill(&mut self, out: &mut [usize]) {
        match self.sampling {
            Sampling::Replacement => out.iter_mut().for_each(|i| *i = self.rng.random_range(0..self.n)),
            Sampling::Epochs => {
                for i in out {
                    if self.cursor == self.n {
                        shuffle(&mut self.perm, &mut self.rng);
                        self.cursor = 0;
                    }
                    *i = self.perm[self.cursor];
                    self.cursor += 1;
                }
            }
        }
    }
}

/// The generator of stream number `stream` of `seed`: Xoshiro256++ seeded from the seed and
/// jumped `stream` times (for draws other than batches: truncation depths, output indices).
pub fn stream_rng(seed: u64, stream: u64) -> Xoshiro256PlusPlus {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    for _ in 0..stream {
        rng.jump();
    }
    rng
}

/// Fisher–Yates, from the top (the same permutation for the same generator state).
fn shuffle(v: &mut [usize], rng: &mut Xoshiro256PlusPlus) {
    for i in (1..v.len()).rev() {
        v.swap(i, rng.random_range(0..=i));
    }
}

/// The batches of one oracle: full batches, or fresh mini-batches of a fixed size from one
/// independent stream (see the module doc).
#[derive(Clone, Debug)]
pub struct BatchStream {
    sampler: Option<Sampler>,
    size: usize,
    buf: Vec<usize>,
    len: usize,
}

impl BatchStream {
    /// Full batches.
    pub fn full() -> Self {
        Self { sampler: None, size: 0, buf: Vec::new(), len: 0 }
    }

    /// Mini-batches of `size` over `n` samples, from stream number `stream` of `seed`; `capacity`
    /// is the largest number of indices one draw will take (e.g. T·size for T inner steps).
    /// `size: None` gives [`full`](Self::full). Errors: `n == 0`, `size == 0`.
    pub fn new(
        n: usize,
        size: Option<usize>,
        sampling: Sampling,
        seed: u64,
        stream: u64,
        capacity: usize,
    ) -> Result<Self> {
        let Some(size) = size else { return Ok(Self::full()) };
        if n == 0 || size == 0 {
            return Err(KernelError::InvalidParameter {
                name: "batch_size",
                reason: format!("needs at least one sample and a batch of at least 1 (n = {n}, batch = {size})"),
            });
        }
        let capacity = capacity.max(size);
        bilevel_kernels::memory::check_fits(
            || format!("a batch buffer of {capacity} indices"),
            capacity as u128 * std::mem::size_of::<usize>() as u128,
        )?;
        Ok(Self { sampler: Some(Sampler::new(n, sampling, seed, stream)), size, buf: vec![0; capacity], len: 0 })
    }

    /// Whether this stream yields full batches.
    pub fn is_full(&self) -> bool {
        self.sampler.is_none()
    }

    /// The batch size (0 for full batches).
    pub fn size(&self) -> usize {
        self.size
    }

    /// Sets the size of the next batches (a schedule that grows them, as BSGM's J_s). Growing
    /// past the buffer reallocates it to the next power of two, so a growing schedule
    /// reallocates O(log) times in a run. A full stream stays full.
    pub fn set_size(&mut self, size: usize) {
        if self.sampler.is_some() {
            self.size = size.max(1);
            if self.size > self.buf.len() {
                self.buf.resize(self.size.next_power_of_two(), 0);
            }
        }
    }

    /// A fresh batch of the stream's size.
    pub fn draw(&mut self) -> Batch<'_> {
        self.draw_sized(self.size)
    }

    /// A fresh batch of `size` samples (full batches stay full).
    pub fn draw_sized(&mut self, size: usize) -> Batch<'_> {
        match &mut self.sampler {
            None => Batch::Full,
            Some(s) => {
                if size > self.buf.len() {
                    // Only if a caller outgrows the capacity it declared: to the next power of
                    // two, so a growing size reallocates O(log) times in a run.
                    self.buf.resize(size.next_power_of_two(), 0);
                }
                s.fill(&mut self.buf[..size]);
                self.len = size;
                Batch::Rows(&self.buf[..size])
            }
        }
    }

    /// Fresh batches for `steps` inner steps, one per step.
    pub fn steps(&mut self, steps: usize) -> StepBatches<'_> {
        let size = self.size;
        match self.draw_sized(steps * size) {
            Batch::Full => StepBatches::full(steps),
            Batch::Rows(rows) => StepBatches::Chunks { rows, size },
        }
    }

    /// The batch drawn last (full for a full stream; empty before the first draw).
    pub fn last(&self) -> Batch<'_> {
        match self.sampler {
            None => Batch::Full,
            Some(_) => Batch::Rows(&self.buf[..self.len]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(b: Batch<'_>) -> Vec<usize> {
        match b {
            Batch::Rows(r) => r.to_vec(),
            Batch::Full => panic!("a mini-batch stream"),
        }
    }

    #[test]
    fn every_epoch_visits_every_sample_once() {
        let n = 37;
        let mut s = BatchStream::new(n, Some(5), Sampling::Epochs, 3, 0, 5).unwrap();
        let draws: Vec<usize> = (0..n * 4).map(|_| rows(s.draw_sized(1))[0]).collect();
        for epoch in draws.chunks(n) {
            let mut e = epoch.to_vec();
            e.sort_unstable();
            assert_eq!(e, (0..n).collect::<Vec<_>>());
        }
        // Not the identity order, and a different order each epoch.
        assert_ne!(&draws[..n], &(0..n).collect::<Vec<_>>()[..]);
        assert_ne!(&draws[..n], &draws[n..2 * n]);
        // Batches that straddle epochs still cover each epoch once (n not a multiple of 5).
        let mut s = BatchStream::new(n, Some(5), Sampling::Epochs, 3, 0, 5).unwrap();
        let flat: Vec<usize> = (0..37).flat_map(|_| rows(s.draw())).collect();
        for epoch in flat.chunks(n).take(5) {
            let mut e = epoch.to_vec();
            e.sort_unstable();
            assert_eq!(e, (0..n).collect::<Vec<_>>());
        }
    }

    #[test]
    fn streams_are_reproducible_and_independent() {
        let draw = |seed, stream| {
            let mut s = BatchStream::new(1000, Some(64), Sampling::Replacement, seed, stream, 64).unwrap();
            rows(s.draw())
        };
        assert_eq!(draw(7, 2), draw(7, 2));
        let (a, b) = (draw(7, 0), draw(7, 1));
        assert_ne!(a, b);
        // Independent uniform draws: about 64·64/1000 ≈ 4 common positions by chance, not 64.
        let same = a.iter().zip(&b).filter(|(x, y)| x == y).count();
        assert!(same < 8, "{same} equal positions");
        assert_ne!(draw(8, 0), a);
        // Every index in range; all of 0..n reachable.
        let mut s = BatchStream::new(10, Some(1000), Sampling::Replacement, 1, 0, 1000).unwrap();
        let r = rows(s.draw());
        assert!(r.iter().all(|&i| i < 10) && (0..10).all(|i| r.contains(&i)));
    }

    #[test]
    fn full_streams_and_inner_steps_and_replay() {
        let mut f = BatchStream::new(10, None, Sampling::Epochs, 0, 0, 0).unwrap();
        assert!(f.is_full() && f.draw() == Batch::Full && f.steps(4) == StepBatches::full(4));
        let mut s = BatchStream::new(50, Some(3), Sampling::Replacement, 5, 1, 12).unwrap();
        let StepBatches::Chunks { rows: r, size } = s.steps(4) else { panic!("chunks") };
        let r = r.to_vec();
        assert_eq!((r.len(), size), (12, 3));
        assert_eq!(s.last(), Batch::Rows(&r[..]));
        assert!(BatchStream::new(0, Some(3), Sampling::Replacement, 0, 0, 3).is_err());
        assert!(BatchStream::new(5, Some(0), Sampling::Replacement, 0, 0, 3).is_err());
        assert!(BatchSizes::full().is_full() && !BatchSizes::all(4).is_full());
    }
}
