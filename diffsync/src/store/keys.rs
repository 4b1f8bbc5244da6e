//! The keys (unique ids) of a table's models, packed into large strings:
//! one allocation per 64 KiB of keys, not one per key (each a pointer, a
//! length and an allocator header beside the few bytes of the key), and
//! keys added together lie together in memory.

/// Where a key is in its table's [`Keys`]: 8 bytes (a chunk holds less
/// than 64 KiB of keys, so an offset in it fits 16 bits; a key as long as that
/// or longer has a chunk of its own, and its length is the chunk's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct KeyRef {
    chunk: u32,
    start: u16,
    /// [`OWN_CHUNK`]: the key is the whole chunk.
    len: u16,
}

/// A table's keys. Keys of removed models stay until the table is
/// compacted (which rebuilds this).
#[derive(Clone, Debug, Default)]
pub(crate) struct Keys {
    chunks: Vec<String>,
}

/// Bytes of keys a chunk holds, at most.
const CHUNK: usize = u16::MAX as usize;

/// The length of a key that is a chunk of its own (no shorter key has one).
const OWN_CHUNK: u16 = u16::MAX;

impl Keys {
    pub(crate) fn push(&mut self, key: &str) -> KeyRef {
        let chunk_index = |n: usize| u32::try_from(n).expect("fewer than 2^32 chunks of keys");
        if key.len() >= usize::from(OWN_CHUNK) {
            // No key fits after it (`fits` below): the chunk stays this key.
            self.chunks.push(key.to_owned());
            return KeyRef {
                chunk: chunk_index(self.chunks.len() - 1),
                start: 0,
                len: OWN_CHUNK,
            };
        }
        let fits = self.chunks.last().is_some_and(|c| c.len() + key.len() <= CHUNK);
        if !fits {
            // The first chunk starts small and grows (a small store stays
            // small): keys are found by offset, so a chunk may move.
            let size = if self.chunks.is_empty() { key.len() * 8 } else { CHUNK };
            self.chunks.push(String::with_capacity(size.max(key.len())));
        }
        let chunk = self.chunks.len() - 1;
        let last = &mut self.chunks[chunk];
        let start = last.len();
        last.push_str(key);
        // Both under 2^16: the chunk holds at most CHUNK bytes, the key is shorter than OWN_CHUNK.
        KeyRef {
            chunk: chunk_index(chunk),
            start: start as u16,
            len: key.len() as u16,
        }
    }

    pub(crate) fn get(&self, at: KeyRef) -> &str {
        let chunk = &self.chunks[at.chunk as usize];
        if at.len == OWN_CHUNK {
            return chunk;
        }
        let start = usize::from(at.start);
        &chunk[start..start + usize::from(at.len)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_read_back_across_chunks_and_a_long_key_gets_its_own() {
        let mut keys = Keys::default();
        let refs: Vec<(String, KeyRef)> = (0..20_000)
            .map(|i| {
                let key = format!("site{i:06}__dev{:04}", i % 7);
                let at = keys.push(&key);
                (key, at)
            })
            .collect();
        let long = "x".repeat(CHUNK + 1);
        let at_long = keys.push(&long);
        let after = keys.push("after");
        let just_long = "y".repeat(usize::from(OWN_CHUNK));
        let at_just_long = keys.push(&just_long);
        let just_short = "z".repeat(usize::from(OWN_CHUNK) - 1);
        let at_just_short = keys.push(&just_short);
        let last = keys.push("last");
        assert!(keys.chunks.len() > 2);
        assert_eq!(keys.get(at_just_long), just_long);
        assert_eq!(keys.get(at_just_short), just_short);
        assert_eq!(keys.get(last), "last");
        for (key, at) in &refs {
            assert_eq!(keys.get(*at), key);
        }
        assert_eq!(keys.get(at_long), long);
        assert_eq!(keys.get(after), "after");
        assert_eq!(keys.get(keys.clone().push("")), "");
    }
}
