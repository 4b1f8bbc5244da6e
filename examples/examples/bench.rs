//! Benchmark program for the shared inventory workload (`../shared/bench`).
//!
//! Loads `source.json` and `target.json` into two adapters of derived models,
//! then times `target.diff_from(&source)`, the summary, `target.sync_from(&source)`
//! and a verifying re-diff, and prints ONE JSON line with the same stage names
//! and meanings as the Python baseline (`py_diffsync_bench.py`).
//!
//! Run: `cargo run --release -p diffsync-examples --example bench -- --data-dir DIR`,
//! or on a generated workload of about N models per side with F interfaces
//! per device (the sibling-list width): `-- --generate N --fanout F`;
//! a bidirectional reconcile: `-- --bidir N`; digests and fingerprints
//! (load cost, root comparison, re-diff after one change): `-- --digests N`;
//! the peer protocol's reconcile phase between two replicas of N models
//! (bytes, round trips, CPU, for equal, one change, 0.1 % and 1 %
//! scattered and 0.1 % clustered updates): `--features peer ... -- --peer N`.

use std::path::PathBuf;
use std::time::Instant;

use diffsync::{AdapterExt, Summary};
use diffsync_examples::{build, generate_shape, load_reader};
use serde_json::json;

// Large diffs allocate many small objects right after two loader threads freed
// theirs; glibc's per-thread arenas keep that memory from the diffing thread
// and its free path consolidates heavily. mimalloc avoids both (book/src/performance.md).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn status_kib(field: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some((kib / 1024.0 * 10.0).round() / 10.0)
}

/// CPU time of all the process's threads so far (their scheduler run
/// times, in nanoseconds): what a phase costs whatever else the machine
/// runs, where wall time on a shared machine is what it was given.
fn cpu_time() -> std::time::Duration {
    let ns: u64 = std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    std::time::Duration::from_nanos(ns)
}

fn summary_json(s: &Summary) -> serde_json::Value {
    json!({"create": s.create, "update": s.update, "delete": s.delete, "no-change": s.no_change, "skip": s.skip})
}

fn round4(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 10_000.0).round() / 10_000.0
}

fn round6(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e6
}

fn main() -> Result<(), BoxError> {
    let mut args = std::env::args().skip(1);
    let mut data_dir: Option<PathBuf> = None;
    let (mut generated, mut fanout, mut bidir, mut digests, mut peer, mut journal) = (None, 10, None, None, None, None);
    while let Some(a) = args.next() {
        let mut number = || -> Result<usize, BoxError> { Ok(args.next().ok_or("missing number")?.parse()?) };
        match a.as_str() {
            "--data-dir" => data_dir = args.next().map(PathBuf::from),
            "--generate" => generated = Some(number()?),
            "--fanout" => fanout = number()?,
            "--bidir" => bidir = Some(number()?),
            "--digests" => digests = Some(number()?),
            "--peer" => peer = Some(number()?),
            "--journal" => journal = Some(number()?),
            "-h" | "--help" => {
                println!(
                    "usage: bench --data-dir DIR   (DIR holds source.json, target.json, meta.json)\n       bench --generate N [--fanout F]\n       bench --bidir N   (reconcile: 1% edits on each side, 0.1% on both)\n       bench --digests N   (fingerprints: load cost, root comparison, re-diff after one change)\n       bench --peer N   (peer protocol: bytes, round trips and CPU of the reconcile phase)\n       bench --journal N   (a sync with and without the journal)"
                );
                return Ok(());
            }
            other => return Err(format!("unknown argument {other:?}; see --help").into()),
        }
    }
    if let Some(n) = generated {
        return run_generated(n, fanout);
    }
    if let Some(n) = bidir {
        return run_bidir(n);
    }
    if let Some(n) = digests {
        return run_digests(n);
    }
    if let Some(n) = journal {
        #[cfg(feature = "journal")]
        return run_journal(n, fanout);
        #[cfg(not(feature = "journal"))]
        return Err(format!("--journal {n} needs the journal feature: cargo run --release -p diffsync-examples --features journal --example bench -- --journal {n}").into());
    }
    if let Some(n) = peer {
        #[cfg(feature = "peer")]
        run_peer(n);
        #[cfg(not(feature = "peer"))]
        return Err(format!("--peer {n} needs the peer feature: cargo run --release -p diffsync-examples --features peer --example bench -- --peer {n}").into());
        #[cfg(feature = "peer")]
        return Ok(());
    }
    let dir = data_dir.ok_or("missing --data-dir DIR")?;
    let meta: Option<serde_json::Value> = std::fs::read(dir.join("meta.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());

    let rss_start = status_kib("VmRSS:");
    let start = Instant::now();
    let cpu_start = cpu_time();
    // The two sides are independent: each file is parsed straight into
    // its store, 256 KiB at a time (neither the file nor a tree of
    // it is ever whole in memory), both in parallel. `parse_s` is opening
    // the files, `build_s` the rest.
    let t = Instant::now();
    let open = |name: &str| std::fs::File::open(dir.join(name)).map_err(|e| format!("{name}: {e}"));
    let (src_file, dst_file) = (open("source.json")?, open("target.json")?);
    let parse_t = t.elapsed();
    let t = Instant::now();
    let load_side = |name: &str, file: std::fs::File| load_reader(name, file).map_err(|e| format!("{name}: {e}"));
    let (source, target) = rayon::join(|| load_side("source", src_file), || load_side("target", dst_file));
    let (source, mut target) = (source?, target?);
    let build_t = t.elapsed();
    let rss_after_load = status_kib("VmRSS:");
    let load_cpu = cpu_time() - cpu_start;
    let target_models = target.store.count_all();

    let (t, cpu) = (Instant::now(), cpu_time());
    let diff = target.diff_from(&source)?;
    let diff_t = t.elapsed();
    let diff_cpu = cpu_time() - cpu;

    let t = Instant::now();
    let summary = diff.summary();
    let summary_t = t.elapsed();
    let rss_after_diff = status_kib("VmRSS:");
    drop(diff);

    let (t, cpu) = (Instant::now(), cpu_time());
    let report = target.sync_from(&source)?;
    let sync_t = t.elapsed();
    let sync_cpu = cpu_time() - cpu;

    let t = Instant::now();
    let again = target.diff_from(&source)?;
    let verify_t = t.elapsed();
    let counts_match = ["site", "device", "interface"]
        .iter()
        .all(|ty| target.store.count(ty) == source.store.count(ty));
    let verified = !again.has_diffs() && report.is_success() && counts_match;
    let total_t = start.elapsed();

    let expected = meta
        .as_ref()
        .and_then(|m| m.get("expected_summary_target_diff_from_source"))
        .cloned();
    let got = summary_json(&summary);
    let out = json!({
        "impl": "rust-diffsync",
        "n_models": meta.as_ref().and_then(|m| m["params"]["models"].as_u64()).unwrap_or(source.store.count_all() as u64),
        "data_dir": dir.display().to_string(),
        "source_models": source.store.count_all(),
        "target_models": target_models,
        "parse_s": round4(parse_t),
        "build_s": round4(build_t),
        "load_s": round4(parse_t + build_t),
        "diff_s": round4(diff_t),
        "summary_s": round4(summary_t),
        "sync_s": round4(sync_t),
        "verify_s": round4(verify_t),
        "total_s": round4(total_t),
        "load_cpu_s": round4(load_cpu),
        "diff_cpu_s": round4(diff_cpu),
        "sync_cpu_s": round4(sync_cpu),
        "summary": got,
        "expected_summary": expected,
        "summary_matches_expected": expected.as_ref().map(|e| *e == got),
        "verify_no_diffs": verified,
        "sync_applied": report.totals().applied,
        "peak_rss_mib": status_kib("VmHWM:"),
        "rss_start_mib": rss_start,
        "rss_after_load_mib": rss_after_load,
        "rss_after_diff_mib": rss_after_diff,
        "threads": rayon::current_num_threads(),
        "allocator": if cfg!(feature = "mimalloc") { "mimalloc" } else { "system" },
    });
    println!("{out}");
    Ok(())
}

/// A sync on a generated workload, without and with the journal (an
/// SQLite file in the temporary directory), alternated five times on fresh
/// targets: the medians, and the journal's overhead.
#[cfg(feature = "journal")]
fn run_journal(n: usize, fanout: usize) -> Result<(), BoxError> {
    let side = |target: bool| -> Result<diffsync::MemoryAdapter, BoxError> {
        let (src, dst) = generate_shape(n, fanout);
        Ok(if target {
            build("target", dst)?
        } else {
            build("source", src)?
        })
    };
    let source = side(false)?;
    let path = std::env::temp_dir().join(format!("diffsync-bench-journal-{}.db", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let mut journal = diffsync_journal::Journal::open(&path)?;
    let (mut plain, mut journaled, mut changes, mut same) = (Vec::new(), Vec::new(), 0, true);
    for _ in 0..5 {
        let mut target = side(true)?;
        let t = Instant::now();
        let report = target.sync_from(&source)?;
        plain.push(t.elapsed().as_secs_f64());
        drop(target);
        let mut target = side(true)?;
        let t = Instant::now();
        let (_, recorded) = journal.sync(&mut target, &source, &mut diffsync::Options::new())?;
        journaled.push(t.elapsed().as_secs_f64());
        changes = recorded.totals().applied;
        same &= recorded.totals() == report.totals();
    }
    // Closed first: the last connection folds the write-ahead log into the file.
    drop(journal);
    let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        (v[v.len() / 2] * 10_000.0).round() / 10_000.0
    };
    let (plain, journaled) = (median(&mut plain), median(&mut journaled));
    println!(
        "{}",
        json!({
            "impl": "rust-diffsync", "workload": "generated", "models_per_side": source.store.count_all(),
            "changes": changes, "sync_s": plain, "journaled_sync_s": journaled,
            "ratio": (journaled / plain * 100.0).round() / 100.0,
            "journal_bytes_5_runs": bytes, "bytes_per_change": bytes / (5 * changes.max(1)) as u64,
            "same_result": same,
        })
    );
    Ok(())
}

/// Times diff and sync on a generated workload and prints the time per model.
fn run_generated(n: usize, fanout: usize) -> Result<(), BoxError> {
    let (src_file, dst_file) = generate_shape(n, fanout);
    let t = Instant::now();
    let (source, target) = rayon::join(|| build("source", src_file), || build("target", dst_file));
    let (source, mut target) = (source?, target?);
    let build_t = t.elapsed();
    let models = source.store.count_all() + target.store.count_all();
    let t = Instant::now();
    let diff = target.diff_from(&source)?;
    let diff_t = t.elapsed();
    let summary = diff.summary();
    drop(diff);
    let t = Instant::now();
    let report = target.sync_from(&source)?;
    let sync_t = t.elapsed();
    let verified = !target.diff_from(&source)?.has_diffs() && report.is_success();
    let per_model_us = |d: std::time::Duration| (d.as_secs_f64() * 1e6 / models as f64 * 1000.0).round() / 1000.0;
    let out = json!({
        "impl": "rust-diffsync",
        "workload": "generated",
        "fanout": fanout,
        "models_both_sides": models,
        "diff_s": round4(diff_t),
        "sync_s": round4(sync_t),
        "diff_us_per_model": per_model_us(diff_t),
        "sync_us_per_model": per_model_us(sync_t),
        "build_us_per_model": per_model_us(build_t),
        "summary": summary_json(&summary),
        "verify_no_diffs": verified,
        "threads": rayon::current_num_threads(),
    });
    println!("{out}");
    Ok(())
}

/// Times a bidirectional reconcile on a generated workload: base, left and
/// right start equal (the standard source side); 1% of the interfaces are
/// edited on each side, and 0.1% on both (conflicts, resolved left-wins).
fn run_bidir(n: usize) -> Result<(), BoxError> {
    use diffsync::bidir::{Base, BiOptions, Strategy, classify, reconcile};
    let side = |name: &'static str| move || build(name, generate_shape(n, 10).0);
    let (base, (left, right)) = rayon::join(side("base"), || rayon::join(side("left"), side("right")));
    let (base, mut left, mut right) = (base?, left?, right?);
    let keys: Vec<diffsync::ModelKey> = base.store.get_all_dyn("interface").map(|m| m.model_key()).collect();
    let edit = |text: &str| [("description".into(), text.into())].into_iter().collect();
    let (on_left, on_right) = (edit("left edit"), edit("right edit"));
    for (i, k) in keys.iter().enumerate() {
        if i % 100 == 0 {
            left.store
                .update_attributes(k, diffsync::AttrSource::Values(&on_left))?;
        }
        if i % 100 == 50 || i % 1000 == 0 {
            right
                .store
                .update_attributes(k, diffsync::AttrSource::Values(&on_right))?;
        }
    }
    let models = left.store.count_all() + right.store.count_all();
    let mut base = Base::from_store(base.store);
    // The one-way diff against classification alone (the three-way walk,
    // before any strategy), alternated and repeated: medians of 5, as the
    // machine's noise is larger than the difference.
    let (mut one_way_runs, mut classify_runs, mut changed_keys) = (Vec::new(), Vec::new(), 0);
    let (mut one_way_cpu, mut classify_cpu) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        let (t, cpu) = (Instant::now(), cpu_time());
        let one_way = left.diff_from(&right)?;
        one_way_runs.push(t.elapsed());
        one_way_cpu.push(cpu_time() - cpu);
        drop(one_way);
        let (t, cpu) = (Instant::now(), cpu_time());
        let classes = classify(&left, &right, &base)?;
        classify_runs.push(t.elapsed());
        classify_cpu.push(cpu_time() - cpu);
        changed_keys = classes.changes.len();
    }
    let median = |mut v: Vec<std::time::Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (one_way_t, classify_t) = (median(one_way_runs), median(classify_runs));
    let (one_way_cpu, classify_cpu) = (median(one_way_cpu), median(classify_cpu));
    let opts = BiOptions::new().strategy(Strategy::LeftWins).max_delete_share(None);
    // A dry run classifies and plans, and writes nothing.
    let t = Instant::now();
    reconcile(&mut left, &mut right, &mut base, &opts.clone().dry_run(true))?;
    let plan_t = t.elapsed();
    let t = Instant::now();
    let report = reconcile(&mut left, &mut right, &mut base, &opts)?;
    let reconcile_t = t.elapsed();
    let verified = !left.diff_from(&right)?.has_diffs() && report.is_clean();
    let path = std::env::temp_dir().join(format!("diffsync-bench-base-{}.json", std::process::id()));
    base.save(&path)?;
    let base_bytes = std::fs::metadata(&path)?.len();
    // The next run's classification, against the base read back from its file.
    let saved = Base::load(&path, &left.store)?;
    std::fs::remove_file(&path)?;
    let t = Instant::now();
    let again = classify(&left, &right, &saved)?;
    let classify_saved_t = t.elapsed();
    let verified = verified && again.changes.is_empty();
    // Sparse edits (ten a side) after the reconcile, against its base: the
    // walks skip what is equal (on all three stores, for classification).
    for (i, k) in keys.iter().step_by(keys.len() / 10 + 1).enumerate() {
        left.store
            .update_attributes(k, diffsync::AttrSource::Values(&on_left))?;
        let other = &keys[(i * 7919 + 13) % keys.len()];
        right
            .store
            .update_attributes(other, diffsync::AttrSource::Values(&on_right))?;
    }
    let (mut sparse_diff, mut sparse_classify) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        let t = Instant::now();
        drop(left.diff_from(&right)?);
        sparse_diff.push(t.elapsed());
        let t = Instant::now();
        drop(classify(&left, &right, &base)?);
        sparse_classify.push(t.elapsed());
    }
    let (sparse_diff_t, sparse_classify_t) = (median(sparse_diff), median(sparse_classify));
    let out = json!({
        "impl": "rust-diffsync",
        "workload": "bidir",
        "models_both_sides": models,
        "one_way_diff_s": round4(one_way_t),
        "classify_s": round4(classify_t),
        "classify_over_diff": (classify_t.as_secs_f64() / one_way_t.as_secs_f64() * 100.0).round() / 100.0,
        "one_way_diff_cpu_s": round4(one_way_cpu),
        "classify_cpu_s": round4(classify_cpu),
        "classify_over_diff_cpu": (classify_cpu.as_secs_f64() / one_way_cpu.as_secs_f64() * 100.0).round() / 100.0,
        "changed_keys": changed_keys,
        "classify_saved_base_s": round4(classify_saved_t),
        "plan_s": round4(plan_t),
        "reconcile_s": round4(reconcile_t),
        "to_left": report.to_left.totals().applied,
        "to_right": report.to_right.totals().applied,
        "conflicts": report.conflicts.len(),
        "identical": report.identical,
        "base_models": base.len(),
        "base_bytes_per_model": (base_bytes as f64 / base.len().max(1) as f64).round(),
        "sparse_one_way_diff_s": round6(sparse_diff_t),
        "sparse_classify_s": round6(sparse_classify_t),
        "verify_no_diffs": verified,
    });
    println!("{out}");
    Ok(())
}

/// Digests and fingerprints on two equal generated stores of about N models:
/// what keeping them costs at load, comparing roots, a full walk against a
/// diff that skips equal subtrees, one change, and a re-diff after it.
fn run_digests(n: usize) -> Result<(), BoxError> {
    // The generator is deterministic: the same shape twice is two equal stores.
    let (file, copy) = (generate_shape(n, 10).0, generate_shape(n, 10).0);
    let t = Instant::now();
    let source = build("source", file)?;
    let build_t = t.elapsed();
    let mut target = build("target", copy)?;
    let models = source.store.count_all();
    // The item digests alone, as the load computed them (one per model).
    let t = Instant::now();
    let mut acc = 0u128;
    for ty in ["site", "device", "interface"] {
        for m in source.store.get_all_dyn(ty) {
            acc = acc.wrapping_add(diffsync::digest::item_digest(m).0);
        }
    }
    let digest_t = t.elapsed();
    let full_t = {
        let t = Instant::now();
        let d = target.diff_from_with(&source, &mut diffsync::Options::new().walk_all(true))?;
        assert!(!d.has_diffs());
        t.elapsed()
    };
    let rounds = 100_000;
    let t = Instant::now();
    let mut equal = 0;
    for _ in 0..rounds {
        equal += usize::from(std::hint::black_box(&source.store).fingerprint() == target.store.fingerprint());
    }
    let root_t = t.elapsed() / rounds;
    let skipped_t = {
        let t = Instant::now();
        let d = target.diff_from(&source)?;
        assert!(!d.has_diffs());
        t.elapsed()
    };
    // One change deep down: the diff walks the top level and that one path.
    let key = target
        .store
        .get_all_dyn("interface")
        .nth(models / 2)
        .map(|m| m.model_key())
        .ok_or("no interface")?;
    let v = [("description".into(), "changed".into())].into_iter().collect();
    let t = Instant::now();
    target.store.update_attributes(&key, diffsync::AttrSource::Values(&v))?;
    let update_one_t = t.elapsed();
    let mut runs = Vec::new();
    let mut found = 0;
    for _ in 0..5 {
        let t = Instant::now();
        let d = target.diff_from(&source)?;
        runs.push(t.elapsed());
        found = d.summary().update;
    }
    runs.sort();
    let us = |d: std::time::Duration| (d.as_secs_f64() * 1e7).round() / 10.0;
    let out = json!({
        "impl": "rust-diffsync",
        "workload": "digests",
        "models_per_side": models,
        "build_s": round4(build_t),
        "item_digests_s": round4(digest_t),
        "item_digests_share_of_build": (digest_t.as_secs_f64() / build_t.as_secs_f64() * 1000.0).round() / 1000.0,
        "root_compare_ns": root_t.as_nanos(),
        "roots_equal": equal == rounds as usize,
        "diff_equal_stores_walked_s": round4(full_t),
        "diff_equal_stores_skipped_s": round4(skipped_t),
        "update_one_us": us(update_one_t),
        "rediff_after_one_change_ms_median": (runs[2].as_secs_f64() * 1e4).round() / 10.0,
        "rediff_found_updates": found,
        "checksum": format!("{:x}", acc & 0xffff),
    });
    println!("{out}");
    Ok(())
}

/// A pull between two replicas of `n` interface keys (device, name), per
/// shape of difference: round trips (the reconcile rounds, the first of
/// which renews the session's snapshot, and the fetches), bytes each way
/// of the reconcile as sealed calls and signed answers (64-byte
/// signatures and the envelopes included), index
/// build (per side) and reconcile CPU (both sides). One JSON line per shape.
#[cfg(feature = "peer")]
fn run_peer(n: usize) {
    use diffsync::digest::Digest;
    use diffsync::{KeyValue, ModelKey};
    use diffsync_peer::index::Index;
    use diffsync_peer::proto::{self, Call, Request, Response, Sealed};
    use diffsync_peer::recon::{self, Config};

    let key = |i: usize| {
        ModelKey::new(
            "interface",
            [
                KeyValue::Str(format!("site{:04}-dev{:03}", i / 1000, (i / 10) % 100)),
                KeyValue::Str(format!("eth{}", i % 10)),
            ],
        )
        .to_bytes()
    };
    let mut rng = fastrand::Rng::with_seed(42);
    let base: Vec<(Vec<u8>, Digest)> = (0..n).map(|i| (key(i), Digest(rng.u128(..)))).collect();
    /// Makes the other replica out of a copy of this one's (key, term) pairs.
    type Change = Box<dyn Fn(&mut Vec<(Vec<u8>, Digest)>, &mut fastrand::Rng)>;
    let shapes: [(&str, Change); 6] = [
        ("equal", Box::new(|_, _| {})),
        (
            "one change",
            Box::new(|v, r| {
                let i = r.usize(..v.len());
                v[i].1 = Digest(r.u128(..));
            }),
        ),
        (
            "0.1% scattered",
            Box::new(|v, r| {
                for _ in 0..v.len() / 1000 {
                    let i = r.usize(..v.len());
                    v[i].1 = Digest(r.u128(..));
                }
            }),
        ),
        (
            "0.1% clustered",
            Box::new(|v, r| {
                let len = v.len() / 1000;
                let start = r.usize(..v.len() - len);
                for e in &mut v[start..start + len] {
                    e.1 = Digest(r.u128(..));
                }
            }),
        ),
        (
            "1% scattered",
            Box::new(|v, r| {
                for _ in 0..v.len() / 100 {
                    let i = r.usize(..v.len());
                    v[i].1 = Digest(r.u128(..));
                }
            }),
        ),
        (
            "10% scattered",
            Box::new(|v, r| {
                for _ in 0..v.len() / 10 {
                    let i = r.usize(..v.len());
                    v[i].1 = Digest(r.u128(..));
                }
            }),
        ),
    ];
    let sealed = |call: Call| {
        proto::encode(
            &Request::Sealed(Sealed {
                session: u64::MAX,
                seq: 1,
                body: proto::encode(&call, true),
                proof: vec![0; 64],
            }),
            false,
        )
        .len()
    };
    for (name, change) in shapes {
        let mut theirs = base.clone();
        change(&mut theirs, &mut rng);
        let changed = base.iter().zip(&theirs).filter(|(a, b)| a.1 != b.1).count();
        let t = Instant::now();
        let (ours, theirs) = (Index::from_terms(base.clone(), 7), Index::from_terms(theirs, 7));
        let index_t = t.elapsed();
        let t = Instant::now();
        // A pull's first round renews the session's snapshot and answers
        // the first message: equal, nothing else is sent.
        let (diff, messages) = recon::run(&ours, &theirs, Config::for_size(n)).expect("well-formed");
        let reconcile_t = t.elapsed();
        let signed = |response: Response| {
            proto::encode(
                &Response::Signed(proto::Signed {
                    seq: 1,
                    body: proto::encode(&response, true),
                    proof: vec![0; 64],
                }),
                false,
            )
            .len()
        };
        let (mut sent, mut received, mut round_trips) = (0, 0, 0);
        let whole = Some(theirs.fingerprint(0, theirs.len()));
        for (i, m) in messages.into_iter().enumerate() {
            if i % 2 == 0 {
                round_trips += 1;
                sent += sealed(Call::Reconcile {
                    renew: i == 0,
                    message: m,
                });
            } else {
                let whole = if i == 1 { whole } else { None };
                received += signed(Response::Reconcile { whole, message: m });
            }
        }
        // Then the fetches of what the image lacks, 65,536 ids a call (their
        // answers, filled to 32 MiB, hold them all at these models' sizes;
        // measured below).
        for ids in diff.need.chunks(65_536) {
            round_trips += 1;
            sent += sealed(Call::Fetch(ids.to_vec()));
        }
        let negentropy = negentropy_run(&base_pairs(&ours), &base_pairs(&theirs));
        println!(
            "{}",
            json!({
                "shape": name, "models": n, "changed": changed, "round_trips": round_trips,
                "found": {"have": diff.have.len(), "need": diff.need.len()},
                "bytes_sent": sent, "bytes_received": received, "bytes_total": sent + received,
                "bytes_per_change": (sent + received).checked_div(changed).unwrap_or(0),
                "index_build_s": round4(index_t), "reconcile_cpu_s": round4(reconcile_t),
                "negentropy": negentropy,
            })
        );
    }
    // The fetch that follows: 2,000 interface models as
    // the server sends them, compressed, against the same frame unpacked.
    let models: Vec<proto::WireModel> = (0..2_000)
        .map(|i| {
            let (device, port) = (format!("site{:04}-dev{:03}", i / 1000, (i / 10) % 100), format!("eth{}", i % 10));
            proto::WireModel {
                key: key(i),
                parent: Some(ModelKey::new("device", [KeyValue::Str(device.clone())]).to_bytes()),
                values: json!({
                    "identifiers": {"device": device, "name": port},
                    "attributes": {"description": format!("to {device} port {}", (i * 7) % 48), "mtu": if i % 2 == 0 { 1500 } else { 9000 }, "enabled": i % 5 != 0},
                })
                .to_string(),
            }
        })
        .collect();
    let answered = models.len() as u32;
    let packed = proto::encode(
        &Response::Models {
            models: models.clone(),
            answered,
        },
        true,
    )
    .len();
    let raw = proto::encode(&Response::Models { models, answered }, false).len();
    println!(
        "{}",
        json!({"payload": "2000 interface models", "bytes_raw": raw, "bytes_wire": packed,
               "compression": (raw as f64 / packed as f64 * 100.0).round() / 100.0})
    );
}

/// An index's items as (key, id) pairs, for the negentropy crate.
#[cfg(feature = "peer")]
fn base_pairs(index: &diffsync_peer::index::Index) -> Vec<(Vec<u8>, u128)> {
    index.items().iter().map(|it| (it.key.clone(), it.id)).collect()
}

/// The negentropy crate on the same two sets (ids: 32 bytes of hashes of
/// key and id, timestamp 0, no frame limit): round trips, bytes, CPU.
#[cfg(feature = "peer")]
fn negentropy_run(ours: &[(Vec<u8>, u128)], theirs: &[(Vec<u8>, u128)]) -> serde_json::Value {
    use negentropy::{Id, Negentropy, NegentropyStorageVector};
    use xxhash_rust::xxh3::{xxh3_128, xxh3_128_with_seed};
    let storage = |set: &[(Vec<u8>, u128)]| {
        let mut s = NegentropyStorageVector::with_capacity(set.len());
        for (k, id) in set {
            let content = [k.as_slice(), &id.to_le_bytes()].concat();
            let mut bytes = [0u8; 32];
            bytes[..16].copy_from_slice(&xxh3_128(&content).to_le_bytes());
            bytes[16..].copy_from_slice(&xxh3_128_with_seed(&content, 1).to_le_bytes());
            s.insert(0, Id::from_byte_array(bytes)).expect("an unsealed storage");
        }
        s.seal().expect("sealed once");
        s
    };
    let (a, b) = (storage(ours), storage(theirs));
    let t = Instant::now();
    let mut client = Negentropy::borrowed(&a, 0).expect("no frame limit");
    let mut server = Negentropy::borrowed(&b, 0).expect("no frame limit");
    let (mut have, mut need) = (Vec::new(), Vec::new());
    let mut msg = client.initiate().expect("the client initiates");
    let (mut sent, mut received, mut round_trips) = (0, 0, 0);
    loop {
        round_trips += 1;
        sent += msg.len();
        let reply = server.reconcile(&msg).expect("a well-formed message");
        received += reply.len();
        match client
            .reconcile_with_ids(&reply, &mut have, &mut need)
            .expect("a well-formed reply")
        {
            Some(next) => msg = next,
            None => break,
        }
    }
    json!({
        "round_trips": round_trips, "bytes_total": sent + received,
        "found": {"have": have.len(), "need": need.len()},
        "reconcile_cpu_s": round4(t.elapsed()),
    })
}
