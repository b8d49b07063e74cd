//! Deterministic block-parallel sweeps over the positions of a batch.
//!
//! Positions `0..len` are cut by [`par::row_blocks`] into a number of blocks that the caller
//! fixes from the problem sizes only (never from the thread count). Each block gets disjoint
//! mutable views of the caller's buffers: per-row buffers (probabilities, per-sample values)
//! sliced to its rows, per-block buffers (accumulators, scratch) sliced to its own slot.
//! Blocks are split recursively with `rayon::join`, so no job list is allocated, and the work
//! each block does is the same whether it runs on 1 thread or 16: results are bitwise equal.
//! This is the one block-parallel scheme of the model passes (logistic, multinomial, the
//! equilibrium map): what a block gets is a [`Blocked`] (buffer arrays cut by [`Unit`], or
//! per-row operands with a per-block accumulator), what it returns a [`Combine`] (nothing, or a
//! partial sum added by the fixed tree of the recursion).

use crate::par;
use std::ops::Range;

/// How a buffer is cut among the blocks.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Unit {
    /// `u` values per batch position: the block gets its rows' `u`-strided slice.
    PerRow(usize),
    /// `u` values per block: the block gets its own `u`-slot.
    PerBlock(usize),
}

fn block_start(len: usize, blocks: usize, b: usize) -> usize {
    par::row_blocks(len, blocks).nth(b).map_or(len, |r| r.start)
}

/// What a sweep cuts among the blocks: split at a row and a block boundary, then handed to the
/// block's body as its [`View`](Blocked::View).
pub(crate) trait Blocked: Sized + Send {
    /// What one block's body receives.
    type View;
    /// Cuts after `rows` batch positions and `blocks` blocks (both relative to this part).
    fn split(self, rows: usize, blocks: usize) -> (Self, Self);
    /// The block's view.
    fn view(self) -> Self::View;
}

/// Buffers cut by their [`Unit`]; the body gets the slices.
impl<'a, const M: usize> Blocked for [(&'a mut [f64], Unit); M] {
    type View = [&'a mut [f64]; M];
    fn split(self, rows: usize, blocks: usize) -> (Self, Self) {
        let mut halves = self.map(|(s, unit)| {
            let cut = match unit {
                Unit::PerRow(u) => rows * u,
                Unit::PerBlock(u) => blocks * u,
            };
            let (l, r) = s.split_at_mut(cut);
            (Some((l, unit)), Some((r, unit)))
        });
        let left = std::array::from_fn(|k| halves[k].0.take().expect("split once"));
        let right = std::array::from_fn(|k| halves[k].1.take().expect("split once"));
        (left, right)
    }
    fn view(self) -> Self::View {
        self.map(|(s, _)| s)
    }
}

/// Per-row operands that split like [`par::Split`] (slices, tuples of slices), with one
/// per-block accumulator of `stride` values: the body gets `(rows' operands, its accumulator)`.
pub(crate) struct RowsAndAccumulator<'a, P> {
    /// The per-row operands.
    pub(crate) rows: P,
    /// `blocks·stride` values.
    pub(crate) acc: &'a mut [f64],
    /// Values per block.
    pub(crate) stride: usize,
}

impl<'a, P: par::Split> Blocked for RowsAndAccumulator<'a, P> {
    type View = (P, &'a mut [f64]);
    fn split(self, rows: usize, blocks: usize) -> (Self, Self) {
        let (pl, pr) = self.rows.split_at(rows);
        let (al, ar) = self.acc.split_at_mut(blocks * self.stride);
        (Self { rows: pl, acc: al, stride: self.stride }, Self { rows: pr, acc: ar, stride: self.stride })
    }
    fn view(self) -> Self::View {
        (self.rows, self.acc)
    }
}

/// What a block's body returns, combined over the blocks by the fixed tree of the recursion
/// (so a sum has the same bits with any number of threads).
pub(crate) trait Combine: Send {
    /// Combines the left half's result with the right half's.
    fn combine(self, right: Self) -> Self;
}

impl Combine for () {
    fn combine(self, _right: Self) {}
}

impl Combine for f64 {
    fn combine(self, right: Self) -> Self {
        self + right
    }
}

/// Runs `body(block, rows, view)` for every block of `par::row_blocks(len, blocks)`, in parallel
/// when `parallel`, and combines the results by halves (a tree fixed by `blocks` alone).
/// Preconditions for buffer arrays: a `PerRow(u)` buffer has length `len·u`, a `PerBlock(u)`
/// buffer `blocks·u`.
pub(crate) fn for_each_block<B, R, F>(len: usize, blocks: usize, parallel: bool, bufs: B, body: &F) -> R
where
    B: Blocked,
    R: Combine,
    F: Fn(usize, Range<usize>, B::View) -> R + Sync,
{
    let blocks = blocks.max(1);
    recurse(len, blocks, 0..blocks, 0, parallel, bufs, body)
}

fn recurse<B, R, F>(len: usize, blocks: usize, range: Range<usize>, row0: usize, parallel: bool, bufs: B, body: &F) -> R
where
    B: Blocked,
    R: Combine,
    F: Fn(usize, Range<usize>, B::View) -> R + Sync,
{
    let (b0, b1) = (range.start, range.end);
    if b1 - b0 == 1 {
        let rows = block_start(len, blocks, b0)..block_start(len, blocks, b1);
        return body(b0, rows, bufs.view());
    }
    let mid = b0 + (b1 - b0) / 2;
    let row_mid = block_start(len, blocks, mid);
    let (left, right) = bufs.split(row_mid - row0, mid - b0);
    let (l, r) = if parallel {
        rayon::join(
            || recurse(len, blocks, b0..mid, row0, parallel, left, body),
            || recurse(len, blocks, mid..b1, row_mid, parallel, right, body),
        )
    } else {
        (
            recurse(len, blocks, b0..mid, row0, parallel, left, body),
            recurse(len, blocks, mid..b1, row_mid, parallel, right, body),
        )
    };
    l.combine(r)
}

/// `out[j] += Σ_b acc[b·m + j]` for `b = 0..blocks` in block order (`m = out.len()`), elementwise
/// in parallel for long outputs: each entry's sum has a fixed order, so the bits do not depend
/// on the thread count.
pub(crate) fn add_block_sums(acc: &[f64], blocks: usize, out: &mut [f64]) {
    use rayon::prelude::*;
    let m = out.len();
    let chunk = par::LEAF;
    let leaf = |(c, o): (usize, &mut [f64])| {
        let start = c * chunk;
        for b in 0..blocks {
            let src = &acc[b * m + start..b * m + start + o.len()];
            o.iter_mut().zip(src).for_each(|(o, s)| *o += s);
        }
    };
    if m >= par::PAR_MIN_LEN {
        out.par_chunks_mut(chunk).enumerate().for_each(leaf);
    } else {
        out.chunks_mut(chunk).enumerate().for_each(leaf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every block sees the rows of `par::row_blocks` and its own slots, and the partial sums
    /// are combined to the same bits sequentially and in parallel.
    #[test]
    fn blocks_follow_row_blocks_and_sums_do_not_depend_on_parallelism() {
        for len in [0, 1, 15, 16, 17, 1000] {
            let blocks = 16;
            let want: Vec<_> = par::row_blocks(len, blocks).collect();
            let values: Vec<f64> = (0..len).map(|i| 1.0 / (1.0 + i as f64)).collect();
            let run = |parallel: bool| {
                let mut acc = vec![0.0; blocks];
                let mut seen = vec![0.0; len];
                let blocked = RowsAndAccumulator { rows: &mut seen[..], acc: &mut acc[..], stride: 1 };
                let sum = for_each_block(len, blocks, parallel, blocked, &|b, r: Range<usize>, (rows, acc)| {
                    assert_eq!(r, want[b]);
                    assert_eq!(rows.len(), r.len());
                    rows.iter_mut().zip(r.clone()).for_each(|(s, i)| *s = i as f64);
                    acc[0] = b as f64;
                    values[r].iter().sum::<f64>()
                });
                (sum, seen, acc)
            };
            let (s1, seen, acc) = run(false);
            let (s2, _, _) = run(true);
            assert_eq!(s1.to_bits(), s2.to_bits());
            assert!(seen.iter().enumerate().all(|(i, &s)| s == i as f64));
            assert!(acc.iter().enumerate().all(|(b, &a)| a == b as f64));
        }
    }
}
