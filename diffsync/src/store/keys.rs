//! The keys (unique ids) of a table's models, packed into large strings:
//! one allocation per 64 KiB of keys, not one per key (each a pointer, a
//! length and an allocator header beside the few bytes of the key), and
//! keys added together lie together in memory.

/// Where a key is in its table's [`Keys`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct KeyRef {
    chunk: u32,
    start: u32,
    len: u32,
}

/// A table's keys. Keys of removed models stay until the table is
/// compacted (which rebuilds this).
#[derive(Clone, Debug, Default)]
pub(crate) struct Keys {
    chunks: Vec<String>,
}

/// Bytes of keys per chunk (a longer key gets a chunk of its own).
const CHUNK: usize = 64 * 1024;

impl Keys {
    pub(crate) fn push(&mut self, key: &str) -> KeyRef {
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
        KeyRef {
            chunk: u32::try_from(chunk).expect("fewer than 2^32 chunks of keys"),
            start: u32::try_from(start).expect("a chunk under 4 GiB"),
            len: u32::try_from(key.len()).expect("a key under 4 GiB"),
        }
    }

    pub(crate) fn get(&self, at: KeyRef) -> &str {
        let start = at.start as usize;
        &self.chunks[at.chunk as usize][start..start + at.len as usize]
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
        assert!(keys.chunks.len() > 2);
        for (key, at) in &refs {
            assert_eq!(keys.get(*at), key);
        }
        assert_eq!(keys.get(at_long), long);
        assert_eq!(keys.get(after), "after");
        assert_eq!(keys.get(keys.clone().push("")), "");
    }
}
