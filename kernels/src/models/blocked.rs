//! Deterministic block-parallel sweeps over the positions of a batch.
//!
//! Positions `0..len` are cut by [`par::row_blocks`] into a number of blocks that the caller
//! fixes from the problem sizes only (never from the thread count). Each block gets disjoint
//! mutable views of the caller's buffers: per-row buffers (probabilities, per-sample values)
//! sliced to its rows, per-block buffers (accumulators, scratch) sliced to its own slot.
//! Blocks are split recursively with `rayon::join`, so no job list is allocated, and the work
//! each block does is the same whether it runs on 1 thread or 16: results are bitwise equal.

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

/// Runs `body(block, rows, views)` for every block of `par::row_blocks(len, blocks)`, in
/// parallel when `parallel`. Preconditions: a `PerRow(u)` buffer has length `len·u`, a
/// `PerBlock(u)` buffer `blocks·u`.
pub(crate) fn for_each_block<const M: usize, F>(
    len: usize,
    blocks: usize,
    parallel: bool,
    bufs: [(&mut [f64], Unit); M],
    body: &F,
) where
    F: Fn(usize, Range<usize>, [&mut [f64]; M]) + Sync,
{
    let blocks = blocks.max(1);
    recurse(len, blocks, 0..blocks, 0, parallel, bufs, body);
}

fn recurse<const M: usize, F>(
    len: usize,
    blocks: usize,
    range: Range<usize>,
    row0: usize,
    parallel: bool,
    bufs: [(&mut [f64], Unit); M],
    body: &F,
) where
    F: Fn(usize, Range<usize>, [&mut [f64]; M]) + Sync,
{
    let (b0, b1) = (range.start, range.end);
    if b1 - b0 == 1 {
        let rows = block_start(len, blocks, b0)..block_start(len, blocks, b1);
        body(b0, rows, bufs.map(|(s, _)| s));
        return;
    }
    let mid = b0 + (b1 - b0) / 2;
    let row_mid = block_start(len, blocks, mid);
    let mut halves = bufs.map(|(s, unit)| {
        let cut = match unit {
            Unit::PerRow(u) => (row_mid - row0) * u,
            Unit::PerBlock(u) => (mid - b0) * u,
        };
        let (l, r) = s.split_at_mut(cut);
        (Some((l, unit)), Some((r, unit)))
    });
    let left: [(&mut [f64], Unit); M] = std::array::from_fn(|k| halves[k].0.take().expect("split once"));
    let right: [(&mut [f64], Unit); M] = std::array::from_fn(|k| halves[k].1.take().expect("split once"));
    if parallel {
        rayon::join(
            || recurse(len, blocks, b0..mid, row0, parallel, left, body),
            || recurse(len, blocks, mid..b1, row_mid, parallel, right, body),
        );
    } else {
        recurse(len, blocks, b0..mid, row0, parallel, left, body);
        recurse(len, blocks, mid..b1, row_mid, parallel, right, body);
    }
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
