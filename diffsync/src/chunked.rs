//! A vector kept in fixed-size chunks: the store's per-type columns.
//!
//! A `Vec` doubles when full: up to half of a large column is allocated
//! and unused, and every growth copies the whole column while the old and
//! the new allocation both exist (the peak of a load, or of a sync that
//! creates a few models in a store filled to a power of two). Here growing
//! never moves what is stored: at most one chunk is partly used, and the
//! first chunk grows as a `Vec` does, so a small store stays small.

use std::ops::{Index, IndexMut};

/// Elements per chunk (a power of two, so an index splits by shifting).
const SHIFT: u32 = 12;
const CHUNK: usize = 1 << SHIFT;
const MASK: usize = CHUNK - 1;

/// A vector in chunks of [`CHUNK`] elements.
#[derive(Clone, Debug)]
pub(crate) struct Chunked<T> {
    chunks: Vec<Vec<T>>,
    len: usize,
}

impl<T> Default for Chunked<T> {
    fn default() -> Self {
        Chunked {
            chunks: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Chunked<T> {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn push(&mut self, value: T) {
        match self.chunks.last_mut() {
            Some(last) if last.len() < CHUNK => {
                if last.len() == last.capacity() {
                    // Only the first chunk starts small; it doubles up to a chunk.
                    let more = last.capacity().max(4).min(CHUNK - last.len());
                    last.reserve_exact(more);
                }
                last.push(value);
            }
            _ => {
                let mut chunk = Vec::with_capacity(if self.chunks.is_empty() { 4 } else { CHUNK });
                chunk.push(value);
                self.chunks.push(chunk);
            }
        }
        self.len += 1;
    }

    pub(crate) fn get(&self, i: usize) -> Option<&T> {
        self.chunks.get(i >> SHIFT)?.get(i & MASK)
    }

    pub(crate) fn get_mut(&mut self, i: usize) -> Option<&mut T> {
        self.chunks.get_mut(i >> SHIFT)?.get_mut(i & MASK)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> {
        self.chunks.iter().flatten()
    }

    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.chunks.iter_mut().flatten()
    }

    /// Keeps the elements `keep` says, in order.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        let old = std::mem::take(self);
        for value in old.chunks.into_iter().flatten() {
            if keep(&value) {
                self.push(value);
            }
        }
    }
}

impl<T> Index<usize> for Chunked<T> {
    type Output = T;
    fn index(&self, i: usize) -> &T {
        &self.chunks[i >> SHIFT][i & MASK]
    }
}

impl<T> IndexMut<usize> for Chunked<T> {
    fn index_mut(&mut self, i: usize) -> &mut T {
        &mut self.chunks[i >> SHIFT][i & MASK]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pushes_gets_and_retains_across_chunks_without_moving_a_full_chunk() {
        let mut v = Chunked::new();
        for i in 0..3 * CHUNK + 5 {
            v.push(i);
        }
        assert_eq!(v.len(), 3 * CHUNK + 5);
        assert_eq!((v[0], v[CHUNK], v[3 * CHUNK + 4]), (0, CHUNK, 3 * CHUNK + 4));
        assert_eq!(v.get(3 * CHUNK + 5), None);
        let first = v.chunks[1].as_ptr();
        v.push(0);
        assert_eq!(v.chunks[1].as_ptr(), first, "a full chunk stays where it is");
        assert!(v.chunks.iter().skip(1).all(|c| c.capacity() == CHUNK));
        v[7] = 70;
        *v.get_mut(8).unwrap() += 1;
        assert_eq!((v[7], v[8]), (70, 9));
        let mut plain: Vec<usize> = v.iter().copied().collect();
        v.retain(|&i| i % 2 == 0);
        plain.retain(|&i| i % 2 == 0);
        assert_eq!(v.iter().copied().collect::<Vec<_>>(), plain);
        assert_eq!(v.len(), plain.len());
        let mut small = Chunked::new();
        small.push(1u8);
        assert!(small.chunks[0].capacity() < CHUNK, "a small column stays small");
    }
}
