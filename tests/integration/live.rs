//! The reconcile loop: incremental syncs from change feeds, debounce,
//! retries, anti-entropy, and what an unreliable feed or target does to it.

use std::collections::HashMap;
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use diffsync::bidir::{Base, BaseFile, BiOptions, ConflictRecord, Resolution, Strategy};
use diffsync::feed::{ChangeFeed, FeedBatch, Position, StoreFeed};
use diffsync::{Adapter, AdapterExt, AttrSource, BoxError, Sink, Stage};
use diffsync_live::{LoopEvent, OneWay, ReconcileLoop, Subject, TwoWay};
use diffsync_tests::key_of;
use diffsync_tests::{Interface, Inventory, Site, sys_a};

/// A feed that loses, repeats and reorders events, and now and then says
/// it lost some (a gap).
struct Unreliable {
    inner: StoreFeed,
    seen: usize,
    polls: usize,
    gap_every: Option<usize>,
}

impl ChangeFeed for Unreliable {
    fn poll(&mut self, max: usize, wait: Duration) -> Result<FeedBatch, BoxError> {
        let mut batch = self.inner.poll(max, wait)?;
        if batch.events.is_empty() {
            return Ok(batch);
        }
        self.polls += 1;
        let mut out = Vec::new();
        for e in batch.events {
            self.seen += 1;
            match self.seen % 6 {
                0 | 3 => {}                                 // lost
                1 => out.extend([e.clone(), e.clone(), e]), // repeated
                _ => out.push(e),
            }
        }
        out.reverse();
        batch.events = out;
        batch.gap = self.gap_every.is_some_and(|n| self.polls.is_multiple_of(n));
        Ok(batch)
    }
}

fn wait_for(events: &Receiver<LoopEvent>, mut what: impl FnMut(&LoopEvent) -> bool) -> Vec<LoopEvent> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        if let Ok(e) = events.recv_timeout(Duration::from_millis(50)) {
            let done = what(&e);
            seen.push(e);
            if done {
                return seen;
            }
        }
    }
    panic!("timed out; events: {seen:?}");
}

fn intf(device: &str, name: &str, description: &str) -> Interface {
    Interface {
        device_name: device.into(),
        name: name.into(),
        description: description.into(),
        mtu: 1500,
    }
}

/// Sets an interface's description in one system (the application at work).
fn describe(system: &Mutex<Inventory>, key: &str, text: &str) {
    let v = [("description".into(), text.into())].into_iter().collect();
    system
        .lock()
        .unwrap()
        .store
        .update_attributes(key_of(&format!("interface:{}", key)), AttrSource::Values(&v))
        .unwrap();
}

/// Edits of every kind on the source: updates, creates under existing
/// parents, deletes of leaves and of a subtree.
fn edit(source: &Mutex<Inventory>, round: usize) {
    describe(source, "nyc-r1__eth0", &format!("round {round}"));
    let mut s = source.lock().unwrap();
    s.store
        .add_child(
            diffsync_tests::Device::key("nyc-r1"),
            intf("nyc-r1", &format!("eth{}", round + 10), "new"),
        )
        .unwrap();
    if round % 3 == 2 {
        s.store
            .remove(key_of(&format!("interface:nyc-r1__eth{}", round + 9)), false)
            .unwrap();
    }
    if round == 5 {
        s.store.remove(key_of("site:sfo"), true).unwrap();
    }
}

fn in_step(source: &Mutex<Inventory>, target: &Mutex<Inventory>) -> bool {
    let (s, t) = (source.lock().unwrap(), target.lock().unwrap());
    !t.diff_from(&*s).unwrap().has_diffs()
}

#[test]
fn a_lossy_feed_and_a_flaky_target_end_in_step_after_anti_entropy() {
    for gap_every in [None, Some(4)] {
        let source = Arc::new(Mutex::new(sys_a()));
        let mut t = Inventory::empty("target");
        // The first creates of these fail twice, then work.
        t.flaky.insert(("interface".into(), "nyc-r1__eth12".into()), 2);
        t.flaky.insert(("device".into(), "nyc-r1".into()), 2);
        let target = Arc::new(Mutex::new(t));
        let feed = Unreliable {
            inner: source.lock().unwrap().store.subscribe(),
            seen: 0,
            polls: 0,
            gap_every,
        };
        let handle = ReconcileLoop::new(OneWay::new(source.clone(), vec![target.clone()]))
            .feed(feed)
            .debounce(Duration::from_millis(5))
            .backoff(Duration::from_millis(5), Duration::from_millis(50))
            .anti_entropy(Some(Duration::from_millis(300)));
        let events = handle.subscribe();
        let handle = handle.spawn().unwrap();
        for round in 0..12 {
            edit(&source, round);
            std::thread::sleep(Duration::from_millis(3));
        }
        // Lost events are found by the next anti-entropy pass.
        let seen = wait_for(&events, |e| {
            matches!(
                e,
                LoopEvent::FullPass {
                    reason: "anti-entropy",
                    failed: 0,
                    error: None,
                    ..
                }
            )
        });
        let mut seen = seen;
        while !in_step(&source, &target) {
            seen.extend(wait_for(&events, |e| {
                matches!(
                    e,
                    LoopEvent::FullPass {
                        failed: 0,
                        error: None,
                        ..
                    }
                )
            }));
        }
        assert!(in_step(&source, &target));
        assert!(
            seen.iter().any(
                |e| matches!(e, LoopEvent::Failed { subject: Subject::Model(k), .. } if k.unique_id() == "nyc-r1")
            ),
            "the flaky device was retried: {seen:?}"
        );
        assert!(seen.iter().any(|e| matches!(e, LoopEvent::Synced { .. })), "{seen:?}");
        assert_eq!(
            gap_every.is_some(),
            seen.iter().any(|e| matches!(e, LoopEvent::Gap { .. }))
        );
        // Nothing was lost: the target has every model the source has, with its values.
        let (s, t) = (source.lock().unwrap(), target.lock().unwrap());
        assert_eq!(s.store.count_all(), t.store.count_all());
        assert_eq!(s.store.fingerprint(), t.store.fingerprint());
        drop((s, t));
        handle.shutdown();
    }
}

#[test]
fn events_within_the_debounce_window_make_one_apply_per_key() {
    let source = Arc::new(Mutex::new(sys_a()));
    let target = Arc::new(Mutex::new(sys_a()));
    let feed = source.lock().unwrap().store.subscribe();
    let handle = ReconcileLoop::new(OneWay::new(source.clone(), vec![target.clone()]))
        .feed(feed)
        .debounce(Duration::from_millis(300))
        .anti_entropy(None);
    let events = handle.subscribe();
    let handle = handle.spawn().unwrap();
    wait_for(&events, |e| matches!(e, LoopEvent::FullPass { reason: "startup", .. }));
    for i in 0..50 {
        describe(&source, "nyc-r1__eth0", &format!("edit {i}"));
    }
    // The key waits out its debounce in the loop's queue.
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while handle.queued() != 1 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(handle.queued(), 1);
    let seen = wait_for(&events, |e| matches!(e, LoopEvent::Synced { .. }));
    assert!(
        matches!(
            seen.last(),
            Some(LoopEvent::Synced {
                keys: 1,
                applied: 1,
                failed: 0,
                ..
            })
        ),
        "{seen:?}"
    );
    // The event names what it applied, by key.
    let Some(LoopEvent::Synced { changed, .. }) = seen.last() else {
        unreachable!()
    };
    assert_eq!(*changed, [Interface::key("nyc-r1", "eth0").into_erased()]);
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(handle.queued(), 0);
    handle.shutdown();
    assert!(in_step(&source, &target));
    let t = target.lock().unwrap();
    let updates = t
        .log
        .iter()
        .filter(|l| l.starts_with("update interface nyc-r1__eth0"))
        .count();
    assert_eq!(updates, 1, "{:?}", t.log);
}

#[test]
fn a_two_way_loop_does_not_take_its_own_writes_for_new_work() {
    let left = Arc::new(Mutex::new(sys_a()));
    let right = Arc::new(Mutex::new(sys_a()));
    right.lock().unwrap().name = "right".into();
    let (lf, rf) = (
        left.lock().unwrap().store.subscribe(),
        right.lock().unwrap().store.subscribe(),
    );
    let base = Base::from_store(sys_a().store);
    let two = TwoWay::new(left.clone(), right.clone(), base, BiOptions::new());
    let handle = ReconcileLoop::new(two)
        .feed(lf)
        .feed(rf)
        .debounce(Duration::from_millis(5))
        .anti_entropy(None);
    let events = handle.subscribe();
    let handle = handle.spawn().unwrap();
    wait_for(&events, |e| matches!(e, LoopEvent::FullPass { reason: "startup", .. }));
    describe(&left, "nyc-r1__eth0", "from the left");
    let v = [("region".into(), "from the right".into())].into_iter().collect();
    right
        .lock()
        .unwrap()
        .store
        .update_attributes(key_of("site:nyc"), AttrSource::Values(&v))
        .unwrap();
    wait_for(&events, |e| matches!(e, LoopEvent::Synced { applied: 2, .. }));
    // The writes the loop made raised events on both sides: none became work.
    std::thread::sleep(Duration::from_millis(200));
    let later: Vec<LoopEvent> = events.try_iter().collect();
    assert!(later.is_empty(), "{later:?}");
    handle.shutdown();
    let (l, r) = (left.lock().unwrap(), right.lock().unwrap());
    assert!(!l.diff_from(&*r).unwrap().has_diffs());
    assert_eq!(
        r.store.get(&Interface::key("nyc-r1", "eth0")).unwrap().description,
        "from the left"
    );
}

#[test]
fn a_panicking_target_hook_fails_the_pass_and_the_loop_goes_on() {
    struct Panicky(Inventory, bool);
    impl Adapter for Panicky {
        type Store = diffsync::LocalStore;
        fn name(&self) -> &str {
            "panicky"
        }
        fn store(&self) -> &diffsync::LocalStore {
            &self.0.store
        }
        fn store_mut(&mut self) -> &mut diffsync::LocalStore {
            &mut self.0.store
        }
        fn top_level(&self) -> Vec<&str> {
            vec!["site"]
        }
    }
    impl Sink for Panicky {
        fn apply(&mut self, change: &mut diffsync::Change<'_>) -> Result<(), diffsync::HookError> {
            match change.action {
                diffsync::Action::Create => {
                    if std::mem::take(&mut self.1) {
                        panic!("driver bug");
                    }
                    Ok(())
                }
                _ => Ok(()),
            }
        }
    }
    let source = Arc::new(Mutex::new(sys_a()));
    let target = Arc::new(Mutex::new(Panicky(Inventory::empty("t"), true)));
    // No automatic retry within the test: the state right after the panic is what is checked.
    let handle = ReconcileLoop::new(OneWay::new(source.clone(), vec![target.clone()]))
        .backoff(Duration::from_secs(60), Duration::from_secs(60))
        .anti_entropy(None);
    let events = handle.subscribe();
    let handle = handle.spawn().unwrap();
    // The startup pass failed as a whole, and says so.
    let mut seen = wait_for(&events, |e| matches!(e, LoopEvent::FullPass { .. }));
    assert!(
        seen.iter()
            .any(|e| matches!(e, LoopEvent::Failed { error, .. } if error.contains("driver bug"))),
        "{seen:?}"
    );
    assert!(
        matches!(seen.last(), Some(LoopEvent::FullPass { reason: "startup", error: Some(e), .. }) if e.contains("driver bug")),
        "{seen:?}"
    );
    assert!(handle.is_running());
    {
        // The panic poisoned the lock. The loop's tag was taken off despite
        // the panic: later writes are the application's.
        let mut t = target.lock().unwrap_or_else(|e| e.into_inner());
        let mut feed = t.0.store.subscribe();
        t.0.store
            .add(diffsync_tests::Site {
                name: "ams".into(),
                region: "eu".into(),
            })
            .unwrap();
        let written = feed.poll(10, Duration::ZERO).unwrap().events;
        assert!(
            !written.is_empty() && written.iter().all(|e| e.origin.is_none()),
            "{written:?}"
        );
    }
    // The next pass completes the work.
    handle.trigger();
    seen.extend(wait_for(
        &events,
        |e| matches!(e, LoopEvent::FullPass { reason: "trigger", failed: 0, error: None, repaired, .. } if *repaired > 0),
    ));
    handle.shutdown();
    // The store is as the system took the changes.
    let s = source.lock().unwrap_or_else(|e| e.into_inner());
    let t = target.lock().unwrap_or_else(|e| e.into_inner());
    assert!(!t.diff_from(&*s).unwrap().has_diffs(), "{seen:?}");
}

#[test]
fn a_full_pass_that_cannot_re_read_a_target_fails_as_a_whole_and_its_retry_repairs() {
    let source = Arc::new(Mutex::new(sys_a()));
    let target = Arc::new(Mutex::new(sys_a()));
    let looped = ReconcileLoop::new(OneWay::new(source.clone(), vec![target.clone()]))
        .anti_entropy(None)
        .backoff(Duration::from_millis(10), Duration::from_millis(50));
    let events = looped.subscribe();
    let handle = looped.spawn().unwrap();
    wait_for(&events, |e| matches!(e, LoopEvent::FullPass { reason: "startup", .. }));
    target.lock().unwrap().fail_refresh = true;
    source
        .lock()
        .unwrap()
        .store
        .remove(key_of("interface:nyc-r1__eth1"), false)
        .unwrap();
    handle.trigger();
    let seen = wait_for(&events, |e| matches!(e, LoopEvent::FullPass { error: Some(_), .. }));
    let Some(LoopEvent::FullPass { error: Some(error), .. }) = seen.last() else {
        unreachable!()
    };
    assert!(
        error.contains("re-reading the target") && error.contains("cannot be read"),
        "{error}"
    );
    assert!(
        !in_step(&source, &target),
        "nothing written to a target that cannot be read"
    );
    target.lock().unwrap().fail_refresh = false;
    wait_for(&events, |e| {
        matches!(
            e,
            LoopEvent::FullPass {
                reason: "retry",
                repaired: 1,
                error: None,
                ..
            }
        )
    });
    handle.shutdown();
    assert!(in_step(&source, &target));
}

#[test]
fn a_manual_trigger_runs_a_full_pass_that_finds_what_no_feed_reported() {
    let source = Arc::new(Mutex::new(sys_a()));
    let target = Arc::new(Mutex::new(sys_a()));
    // No feed at all, no periodic pass: only the trigger finds the change.
    let looped = ReconcileLoop::new(OneWay::new(source.clone(), vec![target.clone()])).anti_entropy(None);
    let events = looped.subscribe();
    let handle = looped.spawn().unwrap();
    wait_for(&events, |e| {
        matches!(
            e,
            LoopEvent::FullPass {
                reason: "startup",
                repaired: 0,
                ..
            }
        )
    });
    source
        .lock()
        .unwrap()
        .store
        .remove(key_of("interface:nyc-r1__eth1"), false)
        .unwrap();
    let models = source.lock().unwrap().store.count_all() + target.lock().unwrap().store.count_all();
    handle.trigger();
    let seen = wait_for(&events, |e| {
        matches!(
            e,
            LoopEvent::FullPass {
                reason: "trigger",
                repaired: 1,
                failed: 0,
                error: None,
                unresolved: 0,
            }
        )
    });
    handle.shutdown();
    assert!(in_step(&source, &target));
    // The pass told how far it got: each stage to its end.
    let ends: Vec<(Stage, usize)> = seen
        .iter()
        .filter_map(|e| match e {
            LoopEvent::Progress {
                reason: "trigger",
                stage,
                current,
                total,
            } if current == total => Some((*stage, *total)),
            _ => None,
        })
        .collect();
    // One element to apply: the interface, under its site and device.
    assert_eq!(ends, [(Stage::Diff, models), (Stage::Sync, 3)], "{seen:?}");
}

#[test]
fn a_cron_schedule_runs_full_passes_and_a_bad_pattern_is_refused() {
    let source = Arc::new(Mutex::new(sys_a()));
    let target = Arc::new(Mutex::new(sys_a()));
    let err = ReconcileLoop::new(OneWay::new(source.clone(), vec![target.clone()]))
        .schedule("every minute")
        .err()
        .unwrap();
    assert!(err.to_string().contains("\"every minute\""), "{err}");
    // Every second (six fields: seconds first).
    let looped = ReconcileLoop::new(OneWay::new(source.clone(), vec![target.clone()]))
        .anti_entropy(None)
        .startup_sync(false)
        .schedule("* * * * * *")
        .unwrap();
    let events = looped.subscribe();
    let handle = looped.spawn().unwrap();
    source.lock().unwrap().store.remove(key_of("site:sfo"), true).unwrap();
    wait_for(
        &events,
        |e| matches!(e, LoopEvent::FullPass { reason: "schedule", repaired, .. } if *repaired > 0),
    );
    handle.shutdown();
    assert!(in_step(&source, &target));
}

/// A feed that numbers the events it returns (its position: how many so
/// far) and records every commit.
struct Numbered {
    inner: StoreFeed,
    returned: u64,
    /// (position, key) of each event returned.
    log: Arc<Mutex<Vec<(u64, String)>>>,
    commits: Arc<Mutex<Vec<u64>>>,
    /// This many commits fail first (the database holding the cursor is down).
    failing_commits: usize,
}

/// What a test reads of a [`Numbered`] feed: the events returned, the commits.
type Shared<T> = Arc<Mutex<Vec<T>>>;

impl Numbered {
    /// A feed of `source`'s store whose first `failing_commits` commits fail.
    fn of(source: &Mutex<Inventory>, failing_commits: usize) -> (Self, Shared<(u64, String)>, Shared<u64>) {
        let (log, commits) = (Shared::default(), Shared::default());
        let feed = Numbered {
            inner: source.lock().unwrap().store.subscribe(),
            returned: 0,
            log: Arc::clone(&log),
            commits: Arc::clone(&commits),
            failing_commits,
        };
        (feed, log, commits)
    }
}

impl ChangeFeed for Numbered {
    fn poll(&mut self, max: usize, wait: Duration) -> Result<FeedBatch, BoxError> {
        let batch = self.inner.poll(max, wait)?;
        let mut log = self.log.lock().unwrap();
        for e in &batch.events {
            self.returned += 1;
            log.push((self.returned, e.key.unique_id().to_string()));
        }
        Ok(batch)
    }
    fn position(&self) -> Option<Position> {
        Some(Position::new(self.returned.to_string()))
    }
    fn commit_at(&mut self, position: &Position) -> Result<(), BoxError> {
        if self.failing_commits > 0 {
            self.failing_commits -= 1;
            return Err("cursor store unreachable".into());
        }
        self.commits.lock().unwrap().push(position.as_str().parse()?);
        Ok(())
    }
}

#[test]
fn cursors_advance_under_sustained_load_and_stop_before_a_key_that_keeps_failing() {
    let source = Arc::new(Mutex::new(sys_a()));
    let mut t = Inventory::empty("target");
    t.sync_from(&*source.lock().unwrap()).unwrap();
    let target = Arc::new(Mutex::new(t));
    let (feed, log, commits) = Numbered::of(&source, 0);
    // A debounce longer than the gaps between edits: some key is always
    // dirty, so "commit when nothing is pending" would never commit.
    let handle = ReconcileLoop::new(OneWay::new(source.clone(), vec![target.clone()]))
        .feed(feed)
        .debounce(Duration::from_millis(60))
        .backoff(Duration::from_millis(5), Duration::from_millis(20))
        .commit_every(Duration::from_millis(20))
        .startup_sync(false)
        .anti_entropy(None)
        .spawn()
        .unwrap();
    let mut round = 0;
    let mut load = |ms: u64| {
        let end = Instant::now() + Duration::from_millis(ms);
        while Instant::now() < end {
            let key = ["nyc-r1__eth1", "sfo-r1__eth0"][round % 2];
            describe(&source, key, &format!("load {round}"));
            round += 1;
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    load(500);
    let advanced = commits.lock().unwrap().iter().copied().max().unwrap_or(0);
    assert!(advanced > 0, "committed while keys stayed dirty");

    // A key that fails on every try holds the cursor before its event.
    let stuck = ("interface".to_string(), "nyc-r1__eth0".to_string());
    target.lock().unwrap().fail.insert(stuck.clone());
    describe(&source, &stuck.1, "stuck");
    let held_from = commits.lock().unwrap().len();
    load(500);
    let at = log
        .lock()
        .unwrap()
        .iter()
        .find(|(_, k)| *k == stuck.1)
        .map(|(p, _)| *p)
        .unwrap();
    let held: Vec<u64> = commits.lock().unwrap()[held_from..].to_vec();
    assert!(
        held.iter().all(|&p| p < at),
        "commits {held:?} passed the stuck event at {at}"
    );
    assert!(
        log.lock().unwrap().last().unwrap().0 > at + 10,
        "events after the stuck one were read"
    );

    // Once it succeeds, the cursor moves past it.
    target.lock().unwrap().fail.remove(&stuck);
    load(300);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !in_step(&source, &target) {
        assert!(Instant::now() < deadline, "the loop did not catch up");
        std::thread::sleep(Duration::from_millis(10));
    }
    handle.shutdown();
    let last = commits.lock().unwrap().last().copied().unwrap();
    assert!(last > at, "cursor {last} still before the event at {at}");
}

#[test]
fn a_loop_follows_events_from_the_applications_bus_and_resyncs_on_its_gap() {
    use diffsync::feed::{ChangeEvent, ChangeKind};
    let source = Arc::new(Mutex::new(sys_a()));
    let target = Arc::new(Mutex::new(sys_a()));
    let (bus, feed) = diffsync::feed::channel(100);
    let looped = ReconcileLoop::new(OneWay::new(source.clone(), vec![target.clone()]))
        .feed(feed)
        .debounce(Duration::from_millis(5))
        .anti_entropy(None)
        .startup_sync(false);
    let events = looped.subscribe();
    let handle = looped.spawn().unwrap();
    // The application changes its system and publishes what changed.
    describe(&source, "nyc-r1__eth0", "from the bus");
    bus.send(ChangeEvent {
        kind: ChangeKind::Updated,
        key: key_of("interface:nyc-r1__eth0"),
        parent: None,
        origin: None,
    });
    wait_for(&events, |e| matches!(e, LoopEvent::Synced { applied: 1, .. }));
    assert!(in_step(&source, &target));
    // A change the bus lost, then the bus says it lost some.
    source.lock().unwrap().store.remove(key_of("site:sfo"), true).unwrap();
    bus.gap();
    wait_for(&events, |e| {
        matches!(
            e,
            LoopEvent::FullPass {
                reason: "gap",
                error: None,
                ..
            }
        )
    });
    handle.shutdown();
    assert!(in_step(&source, &target));
}

#[test]
fn a_failed_cursor_commit_is_reported_and_the_next_one_catches_up() {
    let source = Arc::new(Mutex::new(sys_a()));
    let target = Arc::new(Mutex::new(sys_a()));
    let (feed, log, commits) = Numbered::of(&source, 2);
    let looped = ReconcileLoop::new(OneWay::new(source.clone(), vec![target.clone()]))
        .feed(feed)
        .debounce(Duration::from_millis(5))
        .commit_every(Duration::from_millis(10))
        .startup_sync(false)
        .anti_entropy(None);
    let events = looped.subscribe();
    let handle = looped.spawn().unwrap();
    describe(&source, "nyc-r1__eth0", "x");
    let seen = wait_for(&events, |e| matches!(e, LoopEvent::Synced { .. }));
    // Two failed commits are reported against the feed; the work is done.
    let mut seen = seen;
    while seen
        .iter()
        .filter(
            |e| matches!(e, LoopEvent::Failed { subject: Subject::Feed(0), error, .. } if error.contains("unreachable")),
        )
        .count()
        < 2
    {
        seen.push(
            events
                .recv_timeout(Duration::from_secs(20))
                .expect("commit failures reported"),
        );
    }
    assert!(in_step(&source, &target));
    // The position is kept until a commit succeeds.
    let deadline = Instant::now() + Duration::from_secs(20);
    while commits.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "no commit after the failures: {seen:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
    handle.shutdown();
    assert_eq!(
        commits.lock().unwrap().last().copied(),
        Some(log.lock().unwrap().len() as u64)
    );
}

fn set_region(side: &Mutex<Inventory>, site: &str, region: &str) {
    let v = [("region".into(), region.into())].into_iter().collect();
    side.lock()
        .unwrap()
        .store
        .update_attributes(key_of(&format!("site:{}", site)), AttrSource::Values(&v))
        .unwrap();
}

fn two_sides() -> (Arc<Mutex<Inventory>>, Arc<Mutex<Inventory>>) {
    let (left, right) = (sys_a(), sys_a());
    let right = Inventory {
        name: "right".into(),
        ..right
    };
    let left = Inventory {
        name: "left".into(),
        ..left
    };
    (Arc::new(Mutex::new(left)), Arc::new(Mutex::new(right)))
}

#[test]
fn a_two_way_loop_tells_and_logs_each_conflict_once_and_counts_the_unresolved() {
    let (left, right) = two_sides();
    set_region(&left, "nyc", "north");
    set_region(&right, "nyc", "south");
    let log = Arc::new(Mutex::new(Vec::<ConflictRecord>::new()));
    let opts = BiOptions::new().log_to(log.clone());
    let two = TwoWay::new(left.clone(), right.clone(), Base::from_store(sys_a().store), opts);
    let looped = ReconcileLoop::new(two).anti_entropy(None);
    let events = looped.subscribe();
    let handle = looped.spawn().unwrap();
    let seen = wait_for(&events, |e| matches!(e, LoopEvent::FullPass { .. }));
    let conflicts: Vec<&ConflictRecord> = seen
        .iter()
        .filter_map(|e| match e {
            LoopEvent::Conflict(c) => Some(&**c),
            _ => None,
        })
        .collect();
    assert_eq!(conflicts.len(), 1, "{seen:?}");
    assert_eq!(
        (
            conflicts[0].key.unique_id(),
            conflicts[0].resolution,
            conflicts[0].applied
        ),
        ("nyc", Resolution::Skip, Some(false))
    );
    assert!(
        matches!(seen.last(), Some(LoopEvent::FullPass { unresolved: 1, .. })),
        "{seen:?}"
    );
    // Another pass: still unresolved, counted, neither told nor logged again.
    handle.trigger();
    let seen = wait_for(&events, |e| matches!(e, LoopEvent::FullPass { reason: "trigger", .. }));
    assert!(!seen.iter().any(|e| matches!(e, LoopEvent::Conflict(_))), "{seen:?}");
    assert!(matches!(seen.last(), Some(LoopEvent::FullPass { unresolved: 1, .. })));
    assert_eq!(log.lock().unwrap().len(), 1);
    // One side changes it again: a new conflict.
    set_region(&left, "nyc", "north-east");
    handle.trigger();
    let seen = wait_for(&events, |e| matches!(e, LoopEvent::FullPass { reason: "trigger", .. }));
    assert_eq!(
        seen.iter().filter(|e| matches!(e, LoopEvent::Conflict(_))).count(),
        1,
        "{seen:?}"
    );
    assert_eq!(log.lock().unwrap().len(), 2);
    handle.shutdown();
}

#[test]
fn a_two_way_loop_logs_the_edits_its_strategy_overwrites() {
    let (left, right) = two_sides();
    set_region(&left, "nyc", "north");
    set_region(&right, "nyc", "south");
    let log = Arc::new(Mutex::new(Vec::<ConflictRecord>::new()));
    let opts = BiOptions::new().strategy(Strategy::RightWins).log_to(log.clone());
    let two = TwoWay::new(left.clone(), right.clone(), Base::from_store(sys_a().store), opts);
    let looped = ReconcileLoop::new(two).anti_entropy(None);
    let events = looped.subscribe();
    let handle = looped.spawn().unwrap();
    let seen = wait_for(&events, |e| matches!(e, LoopEvent::FullPass { .. }));
    handle.shutdown();
    assert!(
        seen.iter().any(
            |e| matches!(e, LoopEvent::Conflict(c) if c.resolution == Resolution::Right && c.applied == Some(true))
        ),
        "{seen:?}"
    );
    assert!(matches!(seen.last(), Some(LoopEvent::FullPass { unresolved: 0, .. })));
    let logged = log.lock().unwrap();
    assert_eq!(logged.len(), 1);
    assert_eq!(
        logged[0].left.as_ref().unwrap()["region"],
        "north",
        "the overwritten edit"
    );
    assert_eq!(
        left.lock().unwrap().store.get(&Site::key("nyc")).unwrap().region,
        "south"
    );
}

#[test]
fn a_two_way_loop_keeps_its_base_so_a_restart_loses_no_edit() {
    let dir = tempfile::tempdir().unwrap();
    let saved = || BaseFile(dir.path().join("base.json"));
    let (left, right) = two_sides();
    let run = |left: &Arc<Mutex<Inventory>>, right: &Arc<Mutex<Inventory>>| {
        let opts = BiOptions::new().max_delete_share(None);
        let two = TwoWay::persisted(left.clone(), right.clone(), saved(), opts).unwrap();
        let looped = ReconcileLoop::new(two).anti_entropy(None);
        let events = looped.subscribe();
        let handle = looped.spawn().unwrap();
        let seen = wait_for(&events, |e| matches!(e, LoopEvent::FullPass { .. }));
        handle.shutdown();
        assert!(
            matches!(
                seen.last(),
                Some(LoopEvent::FullPass {
                    error: None,
                    failed: 0,
                    unresolved: 0,
                    ..
                })
            ),
            "{seen:?}"
        );
    };
    // First run: no base yet; both sides agree on everything.
    run(&left, &right);
    let like = sys_a().store;
    assert_eq!(
        Base::load(dir.path().join("base.json"), &like).unwrap().len(),
        like.count_all()
    );
    // While the loop is stopped: the left deletes an interface and edits a
    // site, the right adds a site.
    left.lock()
        .unwrap()
        .store
        .remove(key_of("interface:nyc-r1__eth1"), false)
        .unwrap();
    set_region(&left, "sfo", "south");
    right
        .lock()
        .unwrap()
        .store
        .add(Site {
            name: "ams".into(),
            region: "eu".into(),
        })
        .unwrap();
    run(&left, &right);
    for side in [&left, &right] {
        let s = side.lock().unwrap();
        assert!(
            s.store.get_dyn(key_of("interface:nyc-r1__eth1")).is_err(),
            "{}: the delete was undone",
            s.name
        );
        assert_eq!(s.store.get(&Site::key("sfo")).unwrap().region, "south");
        assert!(s.store.get_dyn(key_of("site:ams")).is_ok(), "{}", s.name);
    }
}

/// A base file whose saves fail while `failing` is set: the process dying
/// before it could record a pass.
struct FlakyBase {
    file: BaseFile,
    failing: Arc<std::sync::atomic::AtomicBool>,
}

impl diffsync::bidir::BaseStore for FlakyBase {
    fn load(&mut self, like: &diffsync::LocalStore) -> diffsync::Result<Base> {
        self.file.load(like)
    }
    fn save(&mut self, base: &Base) -> diffsync::Result<()> {
        if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(diffsync::Error::Reconcile(diffsync::ReconcileError::Base {
                path: self.file.0.display().to_string(),
                message: "the process died".into(),
            }));
        }
        self.file.save(base)
    }
}

/// Locks a side a panicking hook may have poisoned (the loop goes on).
fn lock(side: &Mutex<Inventory>) -> std::sync::MutexGuard<'_, Inventory> {
    side.lock().unwrap_or_else(|e| e.into_inner())
}

/// The sites of a side: name → region.
fn sites(side: &Mutex<Inventory>) -> std::collections::BTreeMap<String, String> {
    let s = lock(side);
    s.store
        .get_all::<Site>("site")
        .unwrap()
        .map(|site| (site.name.clone(), site.region.clone()))
        .collect()
}

/// The chaos law of the two-way loop: rounds of edits on both sides, each
/// followed by a loop started from its saved base, run through one full
/// pass with failing and panicking hooks, systems that take nothing and
/// failing base saves, and
/// stopped. Once things go quiet, both sides and the saved base are equal,
/// and each key's last edit is held by both or is in the conflict log.
#[test]
fn a_two_way_loop_restarted_under_chaos_loses_no_edit() {
    let seeds = std::env::var("CHAOS_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8u64);
    for seed in 1..=seeds {
        two_way_loop_law(seed, 8);
    }
}

fn two_way_loop_law(seed: u64, rounds: usize) {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    let dir = tempfile::tempdir().unwrap();
    let failing = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let log = Arc::new(Mutex::new(Vec::<ConflictRecord>::new()));
    let (left, right) = two_sides();
    // Per site: its last edit (None: deleted) and the log's length then.
    let mut last: HashMap<String, (Option<String>, usize)> = HashMap::new();
    let pass = |strategy: Strategy| {
        let store = FlakyBase {
            file: BaseFile(dir.path().join("base.json")),
            failing: failing.clone(),
        };
        let opts = BiOptions::new()
            .max_delete_share(None)
            .strategy(strategy)
            .log_to(log.clone());
        let two = TwoWay::persisted(left.clone(), right.clone(), store, opts).unwrap();
        let looped = ReconcileLoop::new(two).anti_entropy(None);
        let events = looped.subscribe();
        let handle = looped.spawn().unwrap();
        let seen = wait_for(&events, |e| matches!(e, LoopEvent::FullPass { .. }));
        handle.shutdown();
        seen
    };
    let sides = [&left, &right];
    for round in 0..=rounds {
        let quiet = round == 0 || round == rounds;
        if !quiet {
            // A side that deletes a key the sides never agreed on (its own
            // create, not yet passed on) made no change the loop can see.
            let agreed = Base::load(dir.path().join("base.json"), &sys_a().store).unwrap();
            for (i, side) in sides.iter().enumerate() {
                for n in 0..1 + next(3) {
                    let now = sites(side);
                    let names: Vec<&String> = now.keys().collect();
                    let value = format!("{}{round}.{n}", ["L", "R"][i]);
                    let logged = log.lock().unwrap().len();
                    let mut s = lock(side);
                    match next(4) {
                        0 => {
                            let name = format!("s{}", next(6));
                            if s.store.get_dyn(key_of(&format!("site:{}", name))).is_ok() {
                                continue;
                            }
                            s.store
                                .add(Site {
                                    name: name.clone(),
                                    region: value.clone(),
                                })
                                .unwrap();
                            last.insert(name, (Some(value), logged));
                        }
                        1 => {
                            let name = names[next(names.len())].clone();
                            if !name.starts_with('s')
                                || name == "sfo"
                                || agreed.store().get_dyn(key_of(&format!("site:{}", name))).is_err()
                            {
                                continue;
                            }
                            s.store.remove(key_of(&format!("site:{}", name)), true).unwrap();
                            last.insert(name, (None, logged));
                        }
                        _ => {
                            let name = names[next(names.len())].clone();
                            let v = [("region".into(), value.clone().into())].into_iter().collect();
                            s.store
                                .update_attributes(key_of(&format!("site:{}", name)), AttrSource::Values(&v))
                                .unwrap();
                            last.insert(name, (Some(value), logged));
                        }
                    }
                }
            }
        }
        // Faults of this pass: hooks that fail or panic, a system that takes
        // nothing of the pass while its store took it all, a base save that
        // fails.
        let mut systems = Vec::new();
        for side in sides {
            let mut s = lock(side);
            s.fail.clear();
            s.panic_on.clear();
            s.fail_complete = !quiet && next(6) == 0;
            systems.push(s.store.clone());
            if !quiet {
                let keys: Vec<String> = s
                    .store
                    .get_all::<Site>("site")
                    .unwrap()
                    .map(|x| x.name.clone())
                    .collect();
                for k in keys.iter().chain(["s0".to_string(), "s1".to_string()].iter()) {
                    match next(12) {
                        0 => s.fail.insert(("site".into(), k.clone())),
                        1 => s.panic_on.insert(("site".into(), k.clone())),
                        _ => false,
                    };
                }
            }
        }
        failing.store(!quiet && next(5) == 0, std::sync::atomic::Ordering::SeqCst);
        let left_wins = next(2) == 0;
        let strategy = || {
            if left_wins {
                Strategy::LeftWins
            } else {
                Strategy::RightWins
            }
        };
        let seen = pass(strategy());
        for (side, system) in sides.into_iter().zip(systems) {
            let mut s = lock(side);
            if s.fail_complete {
                // Read back from the system: what it held before the pass.
                s.store = system;
                s.fail_complete = false;
            }
        }
        if quiet {
            assert!(
                matches!(
                    seen.last(),
                    Some(LoopEvent::FullPass {
                        error: None,
                        failed: 0,
                        ..
                    })
                ),
                "seed {seed}: {seen:?}"
            );
        }
    }
    let (l, r) = (sites(&left), sites(&right));
    assert_eq!(l, r, "seed {seed}: the sides differ");
    assert!(!lock(&left).diff_from(&*lock(&right)).unwrap().has_diffs());
    let base = Base::load(dir.path().join("base.json"), &sys_a().store).unwrap();
    let based: std::collections::BTreeMap<String, String> = base
        .store()
        .get_all::<Site>("site")
        .unwrap()
        .map(|s| (s.name.clone(), s.region.clone()))
        .collect();
    assert_eq!(based, l, "seed {seed}: the base differs");
    let log = log.lock().unwrap();
    for (key, (value, logged)) in &last {
        if l.get(key) == value.as_ref() {
            continue;
        }
        assert!(
            log[*logged..].iter().any(|c| c.key.unique_id() == *key),
            "seed {seed}: the last edit of {key} ({value:?}) is lost: both hold {:?}; log: {:#?}",
            l.get(key),
            log.iter().filter(|c| c.key.unique_id() == *key).collect::<Vec<_>>()
        );
    }
}

#[test]
fn the_loop_counts_what_it_applies_its_latency_queue_and_full_passes() {
    use crate::journal::{metrics_endpoint, sample, scrape};
    let address = metrics_endpoint();
    let source = Arc::new(Mutex::new(sys_a()));
    let target = Arc::new(Mutex::new(sys_a()));
    let feed = source.lock().unwrap().store.subscribe();
    let handle = ReconcileLoop::new(OneWay::new(source.clone(), vec![target.clone()]))
        .feed(feed)
        .debounce(Duration::from_millis(5))
        .anti_entropy(None)
        .origin("metrics-loop");
    let events = handle.subscribe();
    let handle = handle.spawn().unwrap();
    wait_for(&events, |e| matches!(e, LoopEvent::FullPass { reason: "startup", .. }));
    describe(&source, "nyc-r1__eth0", "one edit");
    wait_for(&events, |e| matches!(e, LoopEvent::Synced { applied: 1, .. }));
    handle.shutdown();
    let body = scrape(address);
    let this = r#"loop="metrics-loop""#;
    assert_eq!(
        sample(&body, "diffsync_loop_applied_total", &[this]),
        Some(1.0),
        "{body}"
    );
    assert_eq!(
        sample(
            &body,
            "diffsync_loop_full_passes_total",
            &[this, r#"reason="startup""#, r#"result="ok""#]
        ),
        Some(1.0),
        "{body}"
    );
    assert_eq!(
        sample(&body, "diffsync_loop_latency_seconds_count", &[this]),
        Some(1.0),
        "{body}"
    );
    assert_eq!(sample(&body, "diffsync_loop_queue_depth", &[this]), Some(0.0), "{body}");
}

#[test]
fn a_recorder_on_the_target_journals_each_pass_of_the_loop_and_it_can_be_undone() {
    use diffsync::Layered;
    use diffsync_journal::{Journal, Mode, Recorder, RunFilter, RunResult};
    let journal = Arc::new(Mutex::new(Journal::in_memory().unwrap()));
    let source = Arc::new(Mutex::new(sys_a()));
    let mut inner = sys_a();
    inner.name = "target".into();
    let target = Arc::new(Mutex::new(Layered::new(
        inner,
        Recorder::new(journal.clone(), "sys-a", "target"),
    )));
    let feed = source.lock().unwrap().store.subscribe();
    let handle = ReconcileLoop::new(OneWay::new(source.clone(), vec![target.clone()]))
        .feed(feed)
        .debounce(Duration::from_millis(5))
        .anti_entropy(None);
    let events = handle.subscribe();
    let handle = handle.spawn().unwrap();
    wait_for(&events, |e| matches!(e, LoopEvent::FullPass { reason: "startup", .. }));
    describe(&source, "nyc-r1__eth0", "recorded");
    wait_for(&events, |e| matches!(e, LoopEvent::Synced { applied: 1, .. }));
    handle.shutdown();
    let mut journal = journal.lock().unwrap();
    let runs = journal
        .runs(&RunFilter {
            mode: Some(Mode::Batch),
            ..RunFilter::default()
        })
        .unwrap();
    let pass = &runs[0];
    assert_eq!((pass.result, pass.target.as_str()), (RunResult::Succeeded, "target"));
    let [change] = journal.elements(pass.id).unwrap().try_into().unwrap();
    assert_eq!(change.key.unique_id(), "nyc-r1__eth0");
    assert_eq!(change.after.as_ref().unwrap()["description"], "recorded");
    let before = change.before.as_ref().unwrap()["description"].clone();
    // The pass undone through the same (recorded) adapter.
    let mut target = target.lock().unwrap();
    let undo = journal.rollback(pass.id, &mut *target, false).unwrap();
    assert!(undo.conflicts.is_empty(), "{:?}", undo.conflicts);
    let now = target
        .store()
        .get_dyn(key_of("interface:nyc-r1__eth0"))
        .unwrap()
        .attributes()["description"]
        .clone();
    assert_eq!(now, before);
    // The rollback is recorded once, as a rollback: the recorder stood aside.
    let all = journal.runs(&RunFilter::default()).unwrap();
    let modes: Vec<Mode> = all.iter().map(|r| r.mode).collect();
    assert_eq!(
        modes.iter().filter(|m| **m == Mode::Batch).count(),
        runs.len(),
        "{modes:?}"
    );
    assert_eq!(modes.iter().filter(|m| **m == Mode::Rollback).count(), 1, "{modes:?}");
}

#[test]
fn a_hook_that_panics_under_a_recorder_leaves_an_unfinished_run_with_its_changes() {
    use diffsync::Layered;
    use diffsync_journal::{Journal, Recorder, RunFilter, RunResult};
    let journal = Arc::new(Mutex::new(Journal::in_memory().unwrap()));
    let mut inner = diffsync_tests::sys_b();
    inner.panic_on.insert(("site".into(), "sfo".into()));
    let mut target = Layered::new(inner, Recorder::new(journal.clone(), "sys-a", "sys-b"));
    let died = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| target.sync_from(&sys_a())));
    assert!(died.is_err());
    let journal = journal.lock().unwrap_or_else(|p| p.into_inner());
    let filter = RunFilter {
        result: Some(RunResult::Unfinished),
        ..RunFilter::default()
    };
    let [run] = journal.runs(&filter).unwrap().runs.try_into().unwrap();
    let keys: Vec<String> = journal
        .elements(run.id)
        .unwrap()
        .into_iter()
        .map(|e| e.key.unique_id().to_string())
        .collect();
    assert!(
        keys.contains(&"sfo".to_string()) && keys.contains(&"lax".to_string()),
        "{keys:?}"
    );
}
