use crate::{AdapterExt, DiffModel, LocalStore, MemoryAdapter};

/// A key from its text form (`device:r1`).
fn key_of(text: &str) -> crate::ModelKey {
    text.parse().expect("a key's text")
}

#[derive(DiffModel, Clone, Debug, PartialEq)]
#[diffsync(name = "switch", children(Port))]
struct Switch {
    #[diffsync(id)]
    name: String,
}

#[derive(DiffModel, Clone, Debug, PartialEq)]
#[diffsync(name = "port", shortname(label))]
struct Port {
    #[diffsync(id)]
    switch: String,
    #[diffsync(id)]
    n: u32,
    label: String,
}

fn switch(name: &str, ports: impl Iterator<Item = u32>, label: impl Fn(u32) -> String) -> MemoryAdapter {
    let mut s = LocalStore::new(name);
    s.add(Switch { name: "sw".into() }).unwrap();
    for n in ports {
        let p = Port {
            switch: "sw".into(),
            n,
            label: label(n),
        };
        s.add_child(key_of("switch:sw"), p).unwrap();
    }
    MemoryAdapter::with_store(name, &["switch"], s)
}

#[test]
fn large_sibling_lists_match_through_the_index_in_any_order() {
    // 200 children (> SCAN_LIMIT), reversed order on one side, some changed.
    let src = switch("src", 0..200, |n| format!("p{n}"));
    let dst = switch("dst", (50..250).rev(), |n| {
        if n % 10 == 0 { format!("x{n}") } else { format!("p{n}") }
    });
    let s = dst.diff_from(&src).unwrap().summary();
    assert_eq!((s.create, s.delete), (50, 50));
    assert_eq!(s.update, (50..200).filter(|n| n % 10 == 0).count());
    assert_eq!(s.no_change, 1 + 150 - s.update);
}

#[test]
fn small_sibling_lists_match_out_of_order() {
    let src = switch("src", 0..5, |n| format!("p{n}"));
    let dst = switch("dst", (0..5).rev(), |n| format!("p{n}"));
    assert!(!dst.diff_from(&src).unwrap().has_diffs());
}

#[test]
fn shortname_collision_names_type_and_both_keys() {
    let src = switch("src", 0..3, |n| if n == 0 { "same".into() } else { format!("p{n}") });
    let dst = switch("dst", 1..4, |_| "same".into());
    let err = dst.diff_from(&src).unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"port shortname "same" is shared by "sw__0" and "sw__3""#
    );
}

#[cfg(feature = "parallel")]
#[test]
fn parallel_diff_equals_sequential_diff() {
    // 300 switches x 40 ports per side: above PARALLEL_MIN_MODELS.
    let build = |name: &str, variant: u32| {
        let mut s = LocalStore::new(name);
        for sw in 0..300u32 {
            if variant == 1 && sw % 50 == 7 {
                continue; // switches only in the other side
            }
            let sname = format!("sw{sw}");
            s.add(Switch { name: sname.clone() }).unwrap();
            for n in 0..40 + variant * (sw % 3) {
                let label = if variant == 1 && (sw + n) % 97 == 0 {
                    "changed".to_string()
                } else {
                    format!("p{n}")
                };
                s.add_child(
                    Switch::key(&sname),
                    Port {
                        switch: sname.clone(),
                        n,
                        label,
                    },
                )
                .unwrap();
            }
        }
        MemoryAdapter::with_store(name, &["switch"], s)
    };
    let (src, dst) = (build("src", 0), build("dst", 1));
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| {
            let mut last = None;
            let mut cb = |p: crate::Progress| last = Some((p.current, p.total));
            let diff = dst
                .diff_from_with(&src, &mut crate::Options::new().progress(&mut cb))
                .unwrap();
            (diff, last)
        })
    };
    let (sequential, seq_progress) = run(1);
    let (parallel, par_progress) = run(4);
    assert!(sequential.has_diffs());
    assert_eq!(parallel, sequential);
    assert_eq!(par_progress, seq_progress);
    let s = parallel.summary();
    assert_eq!(s.create, 6 * 41);
    assert!(s.update > 0 && s.delete > 0);
}
