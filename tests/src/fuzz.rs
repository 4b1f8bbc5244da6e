//! Inputs no one expects: seeded mutators of valid inputs, structure-aware
//! (JSON trees edited node by node; binary frames cut, spliced and
//! overwritten where lengths and varints are), and the loop that feeds a
//! decoder one input per seed. Shared by the test binaries.

use std::panic::{AssertUnwindSafe, catch_unwind};

use serde_json::Value;

/// How many inputs each decoder takes, and the first seed.
pub fn cases() -> (u64, u64) {
    let get = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    (get("FUZZ_SEED").unwrap_or(0), get("FUZZ_CASES").unwrap_or(256))
}

/// Runs `case` for each seed; a panic is reported with its seed.
pub fn each_seed(decoder: &str, mut case: impl FnMut(&mut fastrand::Rng)) {
    let (first, n) = cases();
    for seed in first..first + n {
        let mut rng = fastrand::Rng::with_seed(seed);
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| case(&mut rng))) {
            let text = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!("{decoder}: seed {seed} failed (FUZZ_SEED={seed} FUZZ_CASES=1 replays it): {text}");
        }
    }
}

/// Bytes cut, spliced, overwritten: 1 to 4 edits of a binary input, aimed
/// at where lengths and varints are as often as anywhere.
pub fn mutate_bytes(rng: &mut fastrand::Rng, input: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..rng.usize(1..=4) {
        let len = out.len();
        let at = if len == 0 { 0 } else { rng.usize(..len) };
        match rng.u8(..9) {
            0 if len > 0 => out[at] ^= 1 << rng.u8(..8),
            1 if len > 0 => out[at] = [0x00, 0xff, 0x80, 0x7f][rng.usize(..4)],
            2 => {
                let n = rng.usize(1..16);
                for _ in 0..n {
                    out.insert(at.min(out.len()), rng.u8(..));
                }
            }
            3 if len > 0 => {
                let end = (at + rng.usize(1..64)).min(len);
                out.drain(at..end);
            }
            4 if len > 0 => {
                let end = (at + rng.usize(1..64)).min(len);
                let piece = out[at..end].to_vec();
                let to = rng.usize(..=out.len());
                out.splice(to..to, piece);
            }
            5 => out.truncate(at),
            // A length or varint that claims the most.
            6 if len >= 8 => {
                let at = rng.usize(..=len - 8);
                out[at..at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
            }
            7 if len > 0 => {
                for b in &mut out[at..(at + 5).min(len)] {
                    *b = 0xff;
                }
            }
            _ => {
                let n = rng.usize(..64);
                out.extend((0..n).map(|_| rng.u8(..)));
            }
        }
    }
    out
}

/// A JSON value edited node by node: a value of another type, a key
/// dropped, renamed or added, an element duplicated, a long string, a
/// huge number, a deep nest.
pub fn mutate_json(rng: &mut fastrand::Rng, value: &mut Value) {
    for _ in 0..rng.usize(1..=4) {
        let node = pick(rng, value);
        match rng.u8(..10) {
            0 => *node = Value::Null,
            1 => *node = Value::Bool(rng.bool()),
            2 => *node = serde_json::json!(1e300),
            3 => *node = serde_json::json!(-9_223_372_036_854_775_808i64),
            4 => *node = Value::String("x".repeat(rng.usize(..20_000))),
            5 => *node = serde_json::json!([]),
            6 => *node = serde_json::json!({}),
            7 => {
                if let Value::Object(map) = node
                    && !map.is_empty()
                {
                    let key = map.keys().nth(rng.usize(..map.len())).cloned().unwrap_or_default();
                    let v = map.remove(&key).unwrap_or_default();
                    if rng.bool() {
                        map.insert(format!("{key}_"), v);
                    }
                } else if let Value::Array(items) = node
                    && !items.is_empty()
                {
                    let i = rng.usize(..items.len());
                    let copy = items[i].clone();
                    items.insert(i, copy);
                }
            }
            8 => {
                let mut nest = Value::Null;
                for _ in 0..rng.usize(1..300) {
                    nest = Value::Array(vec![nest]);
                }
                *node = nest;
            }
            _ => {
                if let Value::Object(map) = node {
                    map.insert("unexpected".into(), serde_json::json!({"a": [1, "b"]}));
                } else {
                    *node = serde_json::json!(rng.i64(..));
                }
            }
        }
    }
}

/// A node down a random path of `v`.
fn pick<'a>(rng: &mut fastrand::Rng, v: &'a mut Value) -> &'a mut Value {
    let len = match v {
        Value::Array(a) => a.len(),
        Value::Object(m) => m.len(),
        _ => 0,
    };
    if len == 0 || rng.u8(..4) == 0 {
        return v;
    }
    let i = rng.usize(..len);
    match v {
        Value::Array(a) => pick(rng, &mut a[i]),
        Value::Object(m) => pick(rng, m.values_mut().nth(i).expect("an index below the length")),
        other => other,
    }
}
