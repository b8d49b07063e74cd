//! Deterministic data parallelism.
//!
//! Reductions split their input by a binary tree whose shape depends only on the length
//! (leaves of [`LEAF`] elements, split points on leaf boundaries), never on the number of
//! threads; rayon only decides *who* evaluates a subtree. So a dot product gives the same
//! bits with 1, 2 or 16 threads, and no buffer of partial sums is allocated.

/// Elements per leaf of a reduction tree (128 KiB of f64: a leaf's operands stay in L2).
pub const LEAF: usize = 1 << 14;

/// Below this many elements, vector kernels run on the calling thread: waking a sleeping rayon
/// worker costs tens of microseconds, more than one core needs to stream 2^18 doubles from L3
/// (measured on the 2-core CI machine: docs/kernels.md).
pub const PAR_MIN_LEN: usize = 1 << 18;

/// Operands that can be cut at an index: slices and tuples of slices of one common length.
#[allow(clippy::len_without_is_empty)]
pub trait Split: Sized + Send {
    /// The common length.
    fn len(&self) -> usize;
    /// Cuts every operand at `mid`.
    fn split_at(self, mid: usize) -> (Self, Self);
}

impl Split for &[f64] {
    fn len(&self) -> usize {
        <[f64]>::len(self)
    }
    fn split_at(self, mid: usize) -> (Self, Self) {
        <[f64]>::split_at(self, mid)
    }
}

impl Split for &mut [f64] {
    fn len(&self) -> usize {
        <[f64]>::len(self)
    }
    fn split_at(self, mid: usize) -> (Self, Self) {
        self.split_at_mut(mid)
    }
}

macro_rules! impl_split_tuple {
    ($($t:ident $v:ident $i:tt),+) => {
        impl<$($t: Split),+> Split for ($($t,)+) {
            fn len(&self) -> usize {
                self.0.len()
            }
            fn split_at(self, mid: usize) -> (Self, Self) {
                $(let $v = self.$i.split_at(mid);)+
                (($($v.0,)+), ($($v.1,)+))
            }
        }
    };
}
impl_split_tuple!(A a 0, B b 1);
impl_split_tuple!(A a 0, B b 1, C c 2);
impl_split_tuple!(A a 0, B b 1, C c 2, D d 3);

/// Split point of a subtree of `len` elements: half of its leaves on the left.
fn mid_point(len: usize) -> usize {
    let leaves = len.div_ceil(LEAF);
    (leaves / 2) * LEAF
}

/// Sums `leaf(part)` over the leaves of the fixed tree (see the module doc).
/// The result depends only on the operands, not on the thread count.
pub fn reduce<P: Split>(parts: P, leaf: &(impl Fn(P) -> f64 + Sync)) -> f64 {
    let len = parts.len();
    if len <= LEAF {
        return leaf(parts);
    }
    let (l, r) = parts.split_at(mid_point(len));
    if len >= PAR_MIN_LEN {
        let (a, b) = rayon::join(|| reduce(l, leaf), || reduce(r, leaf));
        a + b
    } else {
        reduce(l, leaf) + reduce(r, leaf)
    }
}

/// Applies `leaf` to disjoint pieces of `parts` (an element-wise kernel), in parallel when long.
pub fn for_each<P: Split>(parts: P, leaf: &(impl Fn(P) + Sync)) {
    let len = parts.len();
    if len < PAR_MIN_LEN {
        return leaf(parts);
    }
    let (l, r) = parts.split_at(mid_point(len));
    rayon::join(|| for_each(l, leaf), || for_each(r, leaf));
}

/// Rows `0..n` cut into a fixed number of contiguous blocks, independent of the thread count.
/// Used by kernels that scatter into a shared output (Xᵀ D X v): each block accumulates into its
/// own buffer and the buffers are summed in block order, so results are deterministic.
pub fn row_blocks(n: usize, blocks: usize) -> impl Iterator<Item = std::ops::Range<usize>> + Clone {
    let blocks = blocks.max(1);
    (0..blocks).map(move |b| (b * n / blocks)..((b + 1) * n / blocks))
}
