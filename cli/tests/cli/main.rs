//! The `diffsync` binary end to end on a files -> SQLite config: diff,
//! sync, history, show, rollback, their exit codes, and bad configs named.

mod dashboard;
mod peer;
mod redis;

use std::path::Path;
use std::process::Command;

const CONFIG: &str = r#"
journal = "runs.db"

[[models]]
name = "site"
identifiers = [{ name = "name", kind = "string" }]
attributes = [{ name = "region", kind = "string" }]
children = ["device"]

[[models]]
name = "device"
identifiers = [{ name = "name", kind = "string" }]
attributes = [{ name = "role", kind = "string" }]

[systems.cmdb]
file = "cmdb.json"

[systems.network]
sqlite = "network.db"
"#;

fn cmdb(region: &str) -> String {
    format!(
        r#"{{"site": [{{"name": "nyc", "region": "{region}", "device": [{{"name": "nyc-r1", "role": "edge"}}]}},
                      {{"name": "sfo", "region": "west"}}]}}"#
    )
}

/// A directory holding the config and a cmdb document.
fn configured() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("diffsync.toml"), CONFIG).unwrap();
    std::fs::write(dir.path().join("cmdb.json"), cmdb("east")).unwrap();
    dir
}

/// Runs `diffsync -c <dir>/diffsync.toml args`: exit code, stdout, stderr.
fn diffsync(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_diffsync"))
        .arg("-c")
        .arg(dir.join("diffsync.toml"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A program a test needs is missing: the test says it was skipped, or,
/// with `CI=true`, fails (CI installs it).
fn missing<T>(what: &str) -> Option<T> {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{what} not found, and CI=true: .ci/run must install it");
    }
    eprintln!("\n*** SKIPPED: {what} not found ***\n");
    None
}

#[test]
fn a_reader_that_closes_the_pipe_ends_the_command_quietly() {
    use std::io::{BufRead, BufReader};
    let dir = configured();
    // A diff far larger than a pipe's buffer.
    let sites: Vec<String> = (0..20_000)
        .map(|i| format!(r#"{{"name": "site{i}", "region": "region of site {i}"}}"#))
        .collect();
    std::fs::write(
        dir.path().join("cmdb.json"),
        format!(r#"{{"site": [{}]}}"#, sites.join(",")),
    )
    .unwrap();
    for format in ["text", "json", "table"] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_diffsync"))
            .arg("-c")
            .arg(dir.path().join("diffsync.toml"))
            .args(["diff", "cmdb", "network", "--format", format])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // `| head -1`: one line read, then the pipe closed.
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        assert!(!first.is_empty());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{format}: {stderr}");
        assert_eq!(out.status.code(), Some(0), "{format}: {stderr}");
    }
}

#[test]
fn diff_sync_history_show_and_rollback_from_a_file_into_sqlite() {
    let dir = configured();
    let dir = dir.path();

    let (code, out, _) = diffsync(dir, &["diff", "cmdb", "network"]);
    assert_eq!(code, 3, "differences found: {out}");
    assert!(out.contains("nyc") && out.contains("MISSING in network"), "{out}");
    let (code, out, _) = diffsync(dir, &["diff", "cmdb", "network", "--format", "json"]);
    assert_eq!(code, 3);
    let diff: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(diff["dest"], "network");
    let (code, out, _) = diffsync(dir, &["diff", "cmdb", "network", "--format", "table"]);
    assert_eq!(code, 3);
    insta::assert_snapshot!("diff_table_before_the_first_sync", out);

    // A dry run writes nothing, the journal included; with --record its
    // plan is kept; the sync writes.
    let (code, out, _) = diffsync(dir, &["sync", "cmdb", "network", "--dry-run"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("plan (not recorded): planned 3"), "{out}");
    assert_eq!(diffsync(dir, &["runs"]).1, "", "no run recorded");
    let (code, out, _) = diffsync(dir, &["sync", "cmdb", "network", "--dry-run", "--record"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("run 1: planned 3"), "{out}");
    assert_ne!(
        diffsync(dir, &["sync", "cmdb", "network", "--record"]).0,
        0,
        "--record is for dry runs"
    );
    assert_eq!(diffsync(dir, &["diff", "cmdb", "network"]).0, 3);
    let (code, out, err) = diffsync(dir, &["sync", "cmdb", "network"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("run 2: applied 3"), "{out}");
    // Piped: no progress bar drawn.
    assert!(!err.contains('\r') && !err.contains('\u{1b}'), "{err:?}");
    let (code, out, _) = diffsync(dir, &["diff", "cmdb", "network"]);
    assert_eq!((code, out.trim()), (0, "no differences"));

    // An edit in the file, synced, is in the site's history and the run's page.
    std::fs::write(dir.join("cmdb.json"), cmdb("north-east")).unwrap();
    let (code, out, _) = diffsync(dir, &["sync", "cmdb", "network"]);
    assert_eq!(code, 0, "{out}");
    let (_, history, _) = diffsync(dir, &["history", "site", "nyc"]);
    let lines: Vec<&str> = history.lines().collect();
    assert_eq!(lines.len(), 3, "dry run, create, update: {history}");
    assert!(lines[2].contains(r#"region: "east" -> "north-east""#), "{history}");
    let (_, show, _) = diffsync(dir, &["show", "3"]);
    assert!(show.contains("one-way cmdb -> network, succeeded"), "{show}");
    assert!(show.contains("update site nyc"), "{show}");
    let (_, runs, _) = diffsync(dir, &["runs", "--system", "network"]);
    assert_eq!(runs.lines().count(), 3, "{runs}");

    // Rolled back: the database holds the old region again.
    let (code, out, _) = diffsync(dir, &["rollback", "3"]);
    assert_eq!(code, 0, "{out}");
    let (code, out, _) = diffsync(dir, &["diff", "cmdb", "network"]);
    assert_eq!(code, 3);
    assert!(out.contains("north-east") && out.contains("east"), "{out}");

    // An unknown run is an error naming it.
    let (code, _, err) = diffsync(dir, &["rollback", "99"]);
    assert_eq!(code, 1);
    assert!(err.contains("99"), "{err}");
}

#[test]
fn a_rollback_that_must_leave_a_change_alone_says_so_and_exits_5() {
    let dir = configured();
    let dir = dir.path();
    assert_eq!(diffsync(dir, &["sync", "cmdb", "network"]).0, 0);
    std::fs::write(dir.join("cmdb.json"), cmdb("north-east")).unwrap();
    assert_eq!(diffsync(dir, &["sync", "cmdb", "network"]).0, 0);
    // Run 1 created nyc; run 2 changed it since: undoing run 1 leaves it.
    let (code, out, _) = diffsync(dir, &["rollback", "1"]);
    assert_eq!(code, 5, "{out}");
    assert!(out.contains("left alone: site nyc"), "{out}");
}

#[test]
fn bad_configs_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let case = |config: &str, args: &[&str]| {
        std::fs::write(dir.join("diffsync.toml"), config).unwrap();
        let (code, _, err) = diffsync(dir, args);
        assert_eq!(code, 1, "{err}");
        err
    };
    // A typo in a key: the key and its line.
    let err = case(&CONFIG.replace("sqlite = ", "sqlit = "), &["diff", "cmdb", "network"]);
    assert!(err.contains("sqlit") && err.contains("line"), "{err}");
    // A child type no model defines.
    let err = case(
        &CONFIG.replace(r#"children = ["device"]"#, r#"children = ["devices"]"#),
        &["diff", "cmdb", "network"],
    );
    assert!(err.contains("\"devices\"") && err.contains("no model defines"), "{err}");
    // A missing file: its path.
    let err = case(CONFIG, &["diff", "cmdb", "network"]);
    assert!(err.contains("cmdb.json"), "{err}");
    // A system the config does not name.
    std::fs::write(dir.join("cmdb.json"), cmdb("east")).unwrap();
    let err = case(CONFIG, &["diff", "cmdb", "netwrok"]);
    assert!(err.contains("no system named \"netwrok\""), "{err}");
    // A record whose value does not fit its model: model and key.
    std::fs::write(dir.join("cmdb.json"), r#"{"site": [{"name": "nyc", "region": 7}]}"#).unwrap();
    let err = case(CONFIG, &["diff", "cmdb", "network"]);
    assert!(
        err.contains("site") && err.contains("nyc") && err.contains("region"),
        "{err}"
    );
    // No config at all.
    std::fs::remove_file(dir.join("diffsync.toml")).unwrap();
    let (code, _, err) = diffsync(dir, &["runs"]);
    assert_eq!(code, 1);
    assert!(err.contains("diffsync.toml"), "{err}");
}

#[test]
fn reconcile_carries_each_side_s_edits_and_exits_5_on_a_conflict_it_leaves() {
    let dir = configured();
    let dir = dir.path();
    let region_in_db = |site: &str, region: &str| {
        let db = rusqlite::Connection::open(dir.join("network.db")).unwrap();
        db.execute("UPDATE site SET region = ?1 WHERE name = ?2", [region, site])
            .unwrap();
    };
    // The first run takes the union.
    let (code, out, err) = diffsync(dir, &["reconcile", "cmdb", "network"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(diffsync(dir, &["diff", "cmdb", "network"]).0, 0);
    assert!(dir.join("cmdb--network.base").exists());

    // An edit on each side: each goes to the other.
    std::fs::write(dir.join("cmdb.json"), cmdb("north-east")).unwrap();
    region_in_db("sfo", "pacific");
    let (code, out, err) = diffsync(dir, &["reconcile", "cmdb", "network"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(diffsync(dir, &["diff", "cmdb", "network"]).0, 0);
    assert!(
        std::fs::read_to_string(dir.join("cmdb.json"))
            .unwrap()
            .contains("pacific")
    );

    // Both edit nyc: safe leaves it, says so, exits 5; left-wins settles it.
    std::fs::write(dir.join("cmdb.json"), cmdb("north")).unwrap();
    region_in_db("nyc", "south");
    let (code, out, _) = diffsync(dir, &["reconcile", "cmdb", "network"]);
    assert_eq!(code, 5, "{out}");
    assert!(out.contains("nyc"), "{out}");
    let (code, out, _) = diffsync(dir, &["reconcile", "cmdb", "network", "--strategy", "left-wins"]);
    assert_eq!(code, 0, "{out}");
    let (code, out, _) = diffsync(dir, &["diff", "cmdb", "network"]);
    assert_eq!(code, 0, "{out}");
    let (_, runs, _) = diffsync(dir, &["runs"]);
    assert_eq!(runs.lines().filter(|l| l.contains("two-way")).count(), 4, "{runs}");
    // A strategy that does not parse is named.
    let (code, _, err) = diffsync(dir, &["reconcile", "cmdb", "network", "--strategy", "lefty"]);
    assert_eq!(code, 1);
    assert!(err.contains("lefty"), "{err}");
}

#[test]
fn watch_keeps_the_target_in_step_as_the_file_changes_and_records_each_pass() {
    let dir = configured();
    let dir = dir.path();
    // The feed: an edit of the watched file is synced (no schedule here,
    // so no full pass can take the edit first).
    let watch = Watching::start(dir, &[]);
    watch.wait_for("full pass (startup): 3 repaired");
    std::fs::write(dir.join("cmdb.json"), cmdb("north-east")).unwrap();
    let line = watch.wait_for("synced: 1 applied");
    // Each line starts with its time; latencies are in milliseconds.
    assert!(
        line.contains(" UTC synced: 1 applied, 0 failed, ") && line.ends_with(" ms after the change"),
        "{line}"
    );
    assert!(line.starts_with("20"), "{line}");
    drop(watch);
    // The schedule: an edit to the target, which no feed reports, is put
    // back by the next scheduled full pass (every second here).
    let watch = Watching::start(dir, &["--schedule", "* * * * * *"]);
    watch.wait_for("full pass (startup): 0 repaired");
    rusqlite::Connection::open(dir.join("network.db"))
        .unwrap()
        .execute("UPDATE device SET role = 'spine' WHERE name = 'nyc-r1'", [])
        .unwrap();
    watch.wait_for("full pass (schedule): 1 repaired");
    drop(watch);
    assert_eq!(diffsync(dir, &["diff", "cmdb", "network"]).0, 0);
    let (_, runs, _) = diffsync(dir, &["runs"]);
    assert_eq!(runs.lines().filter(|l| l.contains("batch")).count(), 3, "{runs}");
    let (_, history, _) = diffsync(dir, &["history", "site", "nyc"]);
    assert!(history.contains(r#"region: "east" -> "north-east""#), "{history}");
}

/// `diffsync watch cmdb network ARGS` running, its output line by line;
/// killed on drop.
pub(crate) struct Watching {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Watching {
    fn start(dir: &Path, args: &[&str]) -> Watching {
        Watching::between(dir, "cmdb", "network", args)
    }

    /// `diffsync watch SOURCE TARGET ARGS`.
    pub(crate) fn between(dir: &Path, source: &str, target: &str, args: &[&str]) -> Watching {
        use std::io::{BufRead, BufReader};
        let mut child = Command::new(env!("CARGO_BIN_EXE_diffsync"))
            .arg("-c")
            .arg(dir.join("diffsync.toml"))
            .args(["watch", source, target])
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let (send, lines) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = send.send(line);
            }
        });
        Watching { child, lines }
    }

    /// Waits (up to 20 s) for a line holding `what`.
    pub(crate) fn wait_for(&self, what: &str) -> String {
        use std::time::{Duration, Instant};
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut got = Vec::new();
        while Instant::now() < deadline {
            if let Ok(line) = self.lines.recv_timeout(Duration::from_millis(100)) {
                if line.contains(what) {
                    return line;
                }
                got.push(line);
            }
        }
        panic!("no {what:?} in {got:?}");
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_key_copied_from_diff_s_output_finds_the_model_s_history() {
    let dir = configured();
    let dir = dir.path();
    // A device named "100": a string that reads as a number.
    std::fs::write(
        dir.join("cmdb.json"),
        r#"{"site": [{"name": "nyc", "region": "east", "device": [{"name": "100", "role": "edge"}]}]}"#,
    )
    .unwrap();
    let (code, out, _) = diffsync(dir, &["diff", "cmdb", "network"]);
    assert_eq!(code, 3, "{out}");
    // The device's line in the diff (`device: "100" MISSING in network`),
    // and the key on it, as a typed key prints it.
    let line = out.lines().find(|l| l.trim_start().starts_with("device:")).expect(&out);
    let key = line.split_whitespace().nth(1).expect(line);
    assert_eq!(key, r#""100""#, "{line}");
    assert_eq!(diffsync(dir, &["sync", "cmdb", "network"]).0, 0);
    let (code, out, err) = diffsync(dir, &["history", "device", key]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("create") && out.contains("role"), "{key}: {out}");
    // The same key as the typed key prints it, and unquoted (the type's
    // identifier is a string).
    for same in [r#"device:"100""#, "100"] {
        assert_eq!(diffsync(dir, &["history", "device", same]).1, out, "{same}");
    }
    // A type the config does not define: an error naming it and the
    // types there are, not an empty history.
    let (code, _, err) = diffsync(dir, &["history", "router", "100"]);
    assert_eq!(code, 1);
    assert!(err.contains("\"router\"") && err.contains("site, device"), "{err}");
    // A key of one identifier is one value, `__` and all: no history, said so.
    let (code, out, _) = diffsync(dir, &["history", "site", "nyc__extra"]);
    assert_eq!((code, out.trim()), (0, r#"no recorded change to site:"nyc__extra""#));
}

#[test]
fn a_typo_in_a_model_declaration_names_its_line_and_the_key() {
    let dir = configured();
    let dir = dir.path();
    for (typo, line) in [("atributes", 7), ("optinal", 7)] {
        let config = CONFIG.replacen(
            r#"attributes = [{ name = "region", kind = "string" }]"#,
            &if typo == "atributes" {
                r#"atributes = [{ name = "region", kind = "string" }]"#.to_string()
            } else {
                r#"attributes = [{ name = "region", kind = "string", optinal = true }]"#.to_string()
            },
            1,
        );
        std::fs::write(dir.join("diffsync.toml"), config).unwrap();
        let (code, _, err) = diffsync(dir, &["diff", "cmdb", "network"]);
        assert_eq!(code, 1, "{typo}: {err}");
        assert!(
            err.contains(typo) && err.contains(&format!("line {line}")),
            "{typo}: {err}"
        );
    }
}

#[test]
fn a_diff_of_two_sql_systems_is_made_by_key_ranges_unless_told_otherwise() {
    let dir = configured();
    let dir = dir.path();
    let config = format!("{CONFIG}\n[systems.copy]\nsqlite = \"copy.db\"\n");
    std::fs::write(dir.join("diffsync.toml"), config).unwrap();
    for target in ["network", "copy"] {
        assert_eq!(diffsync(dir, &["sync", "cmdb", target]).0, 0);
    }
    std::fs::write(dir.join("cmdb.json"), cmdb("north-east")).unwrap();
    assert_eq!(diffsync(dir, &["sync", "cmdb", "network"]).0, 0);
    let (code, by_ranges, err) = diffsync(dir, &["diff", "network", "copy"]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("compared by key ranges"), "{err}");
    let (code, loaded, err) = diffsync(dir, &["diff", "network", "copy", "--ranges", "never"]);
    assert_eq!(code, 3, "{err}");
    assert!(!err.contains("compared by key ranges"), "{err}");
    assert_eq!(by_ranges, loaded);
    assert!(by_ranges.contains("north-east"), "{by_ranges}");
    // A sync by ranges writes the one row, and is journaled as any run.
    let (code, out, err) = diffsync(dir, &["sync", "network", "copy"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains("compared by key ranges"), "{err}");
    assert!(out.contains("applied 1"), "{out}");
    let (code, out, _) = diffsync(dir, &["diff", "network", "copy"]);
    assert_eq!((code, out.trim()), (0, "no differences"));
    let (_, runs, _) = diffsync(dir, &["runs"]);
    assert!(runs.contains("network") && runs.contains("copy"), "{runs}");
    // A file against a database: the file is loaded, the database
    // compared by ranges (a statement a table; the file's side runs none).
    let (code, out, err) = diffsync(dir, &["diff", "cmdb", "copy"]);
    assert_eq!((code, out.trim()), (0, "no differences"));
    assert!(
        err.contains("compared by key ranges: 2 queries, 2 ranges, 0 rows read"),
        "{err}"
    );
    // Two files: auto loads both, always refuses.
    let config = format!("{CONFIG}\n[systems.copy]\nsqlite = \"copy.db\"\n\n[systems.export]\nfile = \"cmdb.json\"\n");
    std::fs::write(dir.join("diffsync.toml"), config).unwrap();
    let (code, _, err) = diffsync(dir, &["diff", "cmdb", "export"]);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("compared by key ranges"), "{err}");
    let (code, _, err) = diffsync(dir, &["diff", "cmdb", "export", "--ranges", "always"]);
    assert_ne!(code, 0);
    assert!(err.contains("must be a SQLite or PostgreSQL system"), "{err}");
}

#[test]
fn prune_drops_old_runs_and_the_sync_rails_have_their_flags() {
    let dir = configured();
    let dir = dir.path();
    for _ in 0..3 {
        assert_eq!(diffsync(dir, &["sync", "cmdb", "network"]).0, 0);
    }
    // -c after the command, as before it.
    let out = Command::new(env!("CARGO_BIN_EXE_diffsync"))
        .args(["runs", "-c"])
        .arg(dir.join("diffsync.toml"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 3);
    // Filters and JSON, for scripts.
    let (_, json, _) = diffsync(
        dir,
        &["runs", "--format", "json", "--mode", "one-way", "--result", "succeeded"],
    );
    let runs: Vec<serde_json::Value> = json.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(runs.len(), 3, "{json}");
    assert_eq!(runs[0]["target"], "network");
    assert!(runs[0]["started_ms"].as_u64().unwrap() > 0);
    assert_eq!(diffsync(dir, &["runs", "--mode", "two-way"]).1, "");
    assert_eq!(diffsync(dir, &["runs", "--since", "2999-01-01"]).1, "");
    let (_, text, _) = diffsync(dir, &["runs", "--since", "2020-01-01T00:00:00Z"]);
    assert_eq!(text.lines().count(), 3);
    assert!(text.contains(" UTC\tone-way\t"), "a timestamp on each line: {text}");
    assert_ne!(diffsync(dir, &["runs", "--since", "yesterday"]).0, 0);
    // A run's changes, limited, and as JSON; a key's history as JSON.
    let (_, shown, _) = diffsync(dir, &["show", "1", "--limit", "1"]);
    assert!(
        shown.lines().next().unwrap().contains("3 changes (the first 1 shown)"),
        "{shown}"
    );
    // Who ran it: user@host.
    let by = shown.lines().next().unwrap().split(" by ").nth(1).unwrap_or_default();
    assert!(by.split(',').next().unwrap().contains('@'), "{shown}");
    assert_eq!(shown.lines().count(), 2, "{shown}");
    let (_, json, _) = diffsync(dir, &["show", "1", "--format", "json"]);
    let lines: Vec<serde_json::Value> = json.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(
        (lines.len(), &lines[0]["source"]),
        (4, &serde_json::json!("cmdb")),
        "{json}"
    );
    let (_, json, _) = diffsync(dir, &["history", "site", "nyc", "--format", "json"]);
    let event: serde_json::Value = serde_json::from_str(json.lines().next().unwrap()).unwrap();
    assert_eq!(event["run"], 1, "{json}");
    let (code, out, _) = diffsync(dir, &["prune", "--keep", "1"]);
    assert_eq!((code, out.trim()), (0, "dropped 2 runs"));
    let (_, runs, _) = diffsync(dir, &["runs"]);
    assert_eq!(runs.lines().count(), 1, "{runs}");
    assert!(runs.starts_with("3\t"), "{runs}");
    let (code, out, _) = diffsync(dir, &["prune", "--older-than", "1"]);
    assert_eq!((code, out.trim()), (0, "dropped 0 runs"));
    assert_ne!(diffsync(dir, &["prune"]).0, 0, "--keep or --older-than is required");

    // An empty source is refused, and the message names the flag.
    std::fs::write(dir.join("cmdb.json"), r#"{"site": []}"#).unwrap();
    let (code, _, err) = diffsync(dir, &["sync", "cmdb", "network"]);
    assert_ne!(code, 0);
    assert!(err.contains("--allow-empty-source"), "{err}");
    // A share of deletes too large for the limit is refused before writing.
    let (code, _, err) = diffsync(
        dir,
        &[
            "sync",
            "cmdb",
            "network",
            "--allow-empty-source",
            "--max-delete-share",
            "0.5",
        ],
    );
    assert_ne!(code, 0);
    assert!(err.contains("--max-delete-share"), "{err}");
    let (code, out, err) = diffsync(dir, &["sync", "cmdb", "network", "--allow-empty-source"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("applied 3"), "{out}");
}

#[test]
fn a_missing_target_file_is_created_only_when_asked_and_a_diff_shows_only_the_types_asked() {
    let dir = configured();
    let dir = dir.path();
    let config = format!("{CONFIG}\n[systems.copy]\nfile = \"copy.json\"\n");
    std::fs::write(dir.join("diffsync.toml"), config).unwrap();
    let (code, _, err) = diffsync(dir, &["sync", "cmdb", "copy"]);
    assert_ne!(code, 0);
    assert!(err.contains("--create-target"), "{err}");
    assert!(!dir.join("copy.json").exists());
    let (code, out, err) = diffsync(dir, &["sync", "cmdb", "copy", "--create-target"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("applied 3"), "{out}");
    assert!(dir.join("copy.json").exists());
    // Only the types asked for.
    std::fs::write(dir.join("cmdb.json"), cmdb("north-east")).unwrap();
    let (code, out, _) = diffsync(dir, &["diff", "cmdb", "copy", "--type", "site", "--format", "table"]);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("north-east") && !out.contains("device"), "{out}");
    let (code, out, _) = diffsync(dir, &["diff", "cmdb", "copy", "--type", "device"]);
    assert_eq!((code, out.trim()), (0, "no differences"));
    let (code, _, err) = diffsync(dir, &["diff", "cmdb", "copy", "--type", "sites"]);
    assert_ne!(code, 0);
    assert!(err.contains("no model type \"sites\""), "{err}");
}

/// Runs `diffsync` on a terminal (`script` gives it one), typing `input`:
/// everything the terminal showed.
fn on_terminal(dir: &Path, args: &str, input: &str) -> Option<String> {
    on_terminal_with(dir, args, input, &[])
}

/// [`on_terminal`] with these environment variables set.
fn on_terminal_with(dir: &Path, args: &str, input: &str, env: &[(&str, &str)]) -> Option<String> {
    use std::io::Write;
    let Ok(mut child) = Command::new("script")
        .envs(env.iter().copied())
        .arg("-qec")
        .arg(format!(
            "{} -c {} {args}",
            env!("CARGO_BIN_EXE_diffsync"),
            dir.join("diffsync.toml").display()
        ))
        .arg("/dev/null")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
    else {
        return missing("script (util-linux)");
    };
    // Typed once the prompt is up.
    std::thread::sleep(std::time::Duration::from_millis(500));
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn rollback_asks_on_a_terminal_unless_told_yes() {
    let dir = configured();
    let dir = dir.path();
    assert_eq!(diffsync(dir, &["sync", "cmdb", "network"]).0, 0);
    let Some(shown) = on_terminal(dir, "rollback 1", "n\n") else {
        return;
    };
    assert!(
        shown.contains("roll back run 1 in \"network\": 3 changes to undo? [y/N]"),
        "{shown}"
    );
    assert!(shown.contains("not rolled back"), "{shown}");
    assert_eq!(diffsync(dir, &["runs"]).1.lines().count(), 1, "nothing was run");
    let shown = on_terminal(dir, "rollback 1", "y\n").unwrap();
    assert!(shown.contains("run 2: applied 3"), "{shown}");
    // Piped, or with --yes, it does not ask.
    assert_eq!(diffsync(dir, &["sync", "cmdb", "network"]).0, 0);
    let shown = on_terminal(dir, "rollback 3 --yes", "").unwrap();
    assert!(
        !shown.contains("[y/N]") && shown.contains("run 4: applied 3"),
        "{shown}"
    );
}

#[test]
fn help_lists_the_exit_codes_and_each_command_has_an_example() {
    let help = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_diffsync"))
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let top = help(&["--help"]);
    assert!(
        top.contains("Exit codes: 0 done") && top.contains("5 a reconcile"),
        "{top}"
    );
    for command in [
        "diff",
        "sync",
        "reconcile",
        "watch",
        "runs",
        "prune",
        "show",
        "history",
        "serve",
        "rollback",
    ] {
        let text = help(&[command, "--help"]);
        assert!(
            text.contains(&format!("Example: diffsync {command} ")),
            "{command}: {text}"
        );
    }
}

#[test]
fn check_reads_every_system_as_declared_and_names_what_is_not() {
    let dir = configured();
    let dir = dir.path();
    let (code, out, err) = diffsync(dir, &["check"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("ok\tcmdb\tfile cmdb.json: 3 models read"), "{out}");
    assert!(out.contains("ok\tnetwork\tSQLite network.db: not made yet"), "{out}");
    assert!(!dir.join("network.db").exists(), "check writes nothing");
    assert_eq!(diffsync(dir, &["sync", "cmdb", "network"]).0, 0);
    assert!(
        diffsync(dir, &["check"])
            .1
            .contains("ok\tnetwork\tSQLite network.db: tables of 2 model types")
    );
    // A table without a declared column, and a file that does not parse.
    rusqlite::Connection::open(dir.join("network.db"))
        .unwrap()
        .execute_batch("ALTER TABLE device DROP COLUMN role")
        .unwrap();
    std::fs::write(dir.join("cmdb.json"), "{\"site\": [").unwrap();
    let (code, out, err) = diffsync(dir, &["check"]);
    assert_ne!(code, 0);
    assert!(out.contains("problem\tnetwork") && out.contains("role"), "{out}");
    assert!(out.contains("problem\tcmdb") && out.contains("cmdb.json"), "{out}");
    assert!(err.contains("2 systems cannot be read as declared"), "{err}");
}

#[test]
fn a_team_shares_one_postgresql_journal_from_two_configs() {
    let Some(pg) = diffsync_tests::servers::Postgres::start() else {
        return;
    };
    let config = CONFIG.replace(
        "journal = \"runs.db\"",
        &format!("journal_postgres = \"{}\"", pg.params()),
    );
    // Two machines: two directories, each its own systems, one journal.
    let (one, two) = (configured(), configured());
    for dir in [one.path(), two.path()] {
        std::fs::write(dir.join("diffsync.toml"), &config).unwrap();
        let (code, out, err) = diffsync(dir, &["sync", "cmdb", "network"]);
        assert_eq!(code, 0, "{out}{err}");
    }
    let (_, runs, _) = diffsync(one.path(), &["runs"]);
    assert_eq!(runs.lines().count(), 2, "both machines' runs: {runs}");
    assert!(!one.path().join("runs.db").exists());
    // Both journals named is a config error.
    let both = format!("journal = \"runs.db\"\n{config}");
    std::fs::write(one.path().join("diffsync.toml"), both).unwrap();
    let (code, _, err) = diffsync(one.path(), &["runs"]);
    assert_ne!(code, 0);
    assert!(err.contains("journal and journal_postgres"), "{err}");
}

#[test]
fn two_systems_in_one_postgresql_database_are_compared_by_joins_in_it() {
    let Some(pg) = diffsync_tests::servers::Postgres::start() else {
        return;
    };
    let mut admin = postgres::Client::connect(&pg.params(), postgres::NoTls).unwrap();
    admin.batch_execute("CREATE SCHEMA a; CREATE SCHEMA b").unwrap();
    let system = |schema: &str| format!("postgres = \"{} options='-c search_path={schema}'\"", pg.params());
    let config = format!(
        "{CONFIG}\n[systems.primary]\n{}\n\n[systems.replica]\n{}\n",
        system("a"),
        system("b")
    );
    let dir = configured();
    let dir = dir.path();
    std::fs::write(dir.join("diffsync.toml"), config).unwrap();
    for target in ["primary", "replica"] {
        let (code, out, err) = diffsync(dir, &["sync", "cmdb", target]);
        assert_eq!(code, 0, "{out}{err}");
    }
    std::fs::write(dir.join("cmdb.json"), cmdb("north")).unwrap();
    assert_eq!(diffsync(dir, &["sync", "cmdb", "primary"]).0, 0);
    let (code, out, err) = diffsync(dir, &["diff", "primary", "replica"]);
    assert_eq!(code, 3, "differences: {out}{err}");
    assert!(
        err.contains("compared by joins inside the database") && err.contains("2 tables joined"),
        "{err}"
    );
    assert!(out.contains("north"), "{out}");
    let (code, out, err) = diffsync(dir, &["sync", "primary", "replica"]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = diffsync(dir, &["diff", "primary", "replica"]);
    assert_eq!(code, 0, "none left: {out}{err}");
}

#[test]
fn a_postgresql_system_keeps_its_row_hashes_when_its_config_says_so() {
    let dir = configured();
    let dir = dir.path();
    // Only a PostgreSQL system can: named at its line.
    let wrong = format!("{CONFIG}\n[systems.copy]\nsqlite = \"copy.db\"\nkeep_hashes = true\n");
    std::fs::write(dir.join("diffsync.toml"), wrong).unwrap();
    let (code, _, err) = diffsync(dir, &["check"]);
    assert_ne!(code, 0);
    assert!(err.contains("keep_hashes is for a postgres system only"), "{err}");
    let Some(pg) = diffsync_tests::servers::Postgres::start() else {
        return;
    };
    let plain = format!("{CONFIG}\n[systems.warehouse]\npostgres = \"{}\"\n", pg.params());
    std::fs::write(dir.join("diffsync.toml"), &plain).unwrap();
    let (code, out, err) = diffsync(dir, &["sync", "cmdb", "warehouse"]);
    assert_eq!(code, 0, "{out}{err}");
    let config = plain.replace(
        &format!("{}\"\n", pg.params()),
        &format!("{}\"\nkeep_hashes = true\n", pg.params()),
    );
    assert!(config.contains("keep_hashes"), "{config}");
    std::fs::write(dir.join("diffsync.toml"), config).unwrap();
    // A check reads and writes nothing: the columns are not made yet.
    let (code, out, err) = diffsync(dir, &["check"]);
    assert_eq!(code, 0, "{out}{err}");
    let mut client = postgres::Client::connect(&pg.params(), postgres::NoTls).unwrap();
    let columns = |client: &mut postgres::Client| -> i64 {
        client
            .query_one(
                "SELECT count(*) FROM information_schema.columns WHERE column_name = '_hash_hi'",
                &[],
            )
            .unwrap()
            .get(0)
    };
    assert_eq!(columns(&mut client), 0, "check kept the hashes");
    assert_eq!(diffsync(dir, &["sync", "cmdb", "network"]).0, 0);
    std::fs::write(dir.join("cmdb.json"), cmdb("north")).unwrap();
    assert_eq!(diffsync(dir, &["sync", "cmdb", "network"]).0, 0);
    // SQLite hashes in its queries, PostgreSQL reads the hashes it keeps:
    // both tables of the warehouse.
    let (code, out, err) = diffsync(dir, &["diff", "network", "warehouse"]);
    assert_eq!(code, 3, "{out}{err}");
    assert!(err.contains("2 tables' row hashes read as kept"), "{err}");
    assert_eq!(columns(&mut client), 2, "a diff keeps them, as the config says");
    assert!(out.contains("north"), "{out}");
    let (code, out, err) = diffsync(dir, &["sync", "network", "warehouse"]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = diffsync(dir, &["diff", "network", "warehouse"]);
    assert_eq!((code, out.trim()), (0, "no differences"), "{err}");
}

#[test]
fn runs_are_searched_by_text() {
    let dir = configured();
    let dir = dir.path();
    assert_eq!(diffsync(dir, &["sync", "cmdb", "network"]).0, 0);
    assert_eq!(
        diffsync(dir, &["sync", "cmdb", "network", "--dry-run", "--record"]).0,
        0
    );
    let (code, out, err) = diffsync(dir, &["runs", "--search", "DRY RUN"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 1, "only the recorded dry run: {out}");
    let (_, out, _) = diffsync(dir, &["runs", "--search", "NETWORK"]);
    assert_eq!(out.lines().count(), 2, "{out}");
}

#[test]
fn diff_shows_one_models_subtree_by_its_printed_key() {
    let dir = configured();
    let dir = dir.path();
    let keys = |args: &[&str]| -> Vec<(String, String)> {
        let (_, out, err) = diffsync(dir, args);
        let diff: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}{err}"));
        diff["elements"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["key"].as_str().unwrap().to_string(),
                    e["action"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let pair = |k: &str, a: &str| (k.to_string(), a.to_string());
    // Loaded: the part is diffed alone.
    assert_eq!(
        keys(&["diff", "cmdb", "network", "--format", "json", "--key", "site:nyc"]),
        [pair("nyc", "create"), pair("nyc-r1", "create")]
    );
    assert_eq!(diffsync(dir, &["sync", "cmdb", "network"]).0, 0);
    std::fs::write(dir.join("cmdb.json"), cmdb("north").replace("edge", "core")).unwrap();
    // By ranges (network is SQLite): the device's subtree picked out,
    // under its site as a parent that changes nothing.
    assert_eq!(
        keys(&["diff", "cmdb", "network", "--format", "json", "--key", "device:nyc-r1"]),
        [pair("nyc", "no-change"), pair("nyc-r1", "update")]
    );
    // A key of no declared type, or not TYPE:KEY, is an error naming it.
    let (code, _, err) = diffsync(dir, &["diff", "cmdb", "network", "--key", "rack:r1"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no model type \"rack\""), "{err}");
    let (code, _, err) = diffsync(dir, &["diff", "cmdb", "network", "--key", "nyc"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("a key is TYPE:KEY"), "{err}");
}

#[test]
fn reconcile_takes_its_delete_limit_from_the_command_line() {
    let dir = configured();
    let dir = dir.path();
    assert_eq!(diffsync(dir, &["reconcile", "cmdb", "network"]).0, 0);
    // Most of cmdb deleted since the last run: more than half of network.
    std::fs::write(
        dir.join("cmdb.json"),
        r#"{"site": [{"name": "sfo", "region": "west"}]}"#,
    )
    .unwrap();
    let (code, _, err) = diffsync(dir, &["reconcile", "cmdb", "network"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("would be deleted") && err.contains("--max-delete-share"),
        "{err}"
    );
    assert_ne!(
        diffsync(dir, &["reconcile", "cmdb", "network", "--max-delete-share", "2"]).0,
        0
    );
    let (code, out, err) = diffsync(dir, &["reconcile", "cmdb", "network", "--max-delete-share", "1"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(diffsync(dir, &["diff", "cmdb", "network"]).0, 0);
}

#[test]
fn a_diff_table_is_coloured_on_a_terminal_unless_no_color() {
    let dir = configured();
    let dir = dir.path();
    let Some(shown) = on_terminal(dir, "diff cmdb network --format table", "") else {
        return;
    };
    assert!(shown.contains("\x1b[32mcreate  site"), "creates in green: {shown:?}");
    let plain = on_terminal_with(dir, "diff cmdb network --format table", "", &[("NO_COLOR", "1")]).unwrap();
    assert!(
        !plain.contains("\x1b[3") && plain.contains("create  site"),
        "no colour: {plain:?}"
    );
    // Piped: no colour (the snapshot tests see the plain table).
    assert!(
        !diffsync(dir, &["diff", "cmdb", "network", "--format", "table"])
            .1
            .contains('\x1b')
    );
}
