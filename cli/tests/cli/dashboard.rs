//! `diffsync serve` in a real browser: headless Chromium (Debian's
//! package, which `.ci/run` installs) driven through chromedriver. The
//! pages render, a run's changes show as a tree, a loop's status follows
//! an edit, and a rollback goes through its preview and a confirmation.
//! Screenshots are kept under the target directory, not committed.
//!
//! Without Chromium the test says it was skipped; with `CI=true` it fails.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::{cmdb, configured, diffsync, missing};

/// A process killed when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `diffsync serve` on a free port: the process and its address.
fn serve(dir: &Path, args: &[&str]) -> (Running, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_diffsync"))
        .arg("-c")
        .arg(dir.join("diffsync.toml"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let address = line
        .trim()
        .strip_prefix("serving ")
        .unwrap_or_else(|| panic!("{line:?}"))
        .trim_end_matches('/')
        .to_string();
    (Running(child), address)
}

/// Chromium and chromedriver (Debian's packages chromium and chromium-driver).
fn browser_binaries() -> Option<(PathBuf, PathBuf)> {
    let found = |p: &str| Path::new(p).is_file().then(|| PathBuf::from(p));
    match (found("/usr/bin/chromium"), found("/usr/bin/chromedriver")) {
        (Some(chromium), Some(driver)) => Some((chromium, driver)),
        _ => missing("/usr/bin/chromium or /usr/bin/chromedriver"),
    }
}

/// One headless Chromium session through WebDriver.
struct Browser {
    /// The session's address at chromedriver.
    url: String,
    _driver: Running,
    _profile: tempfile::TempDir,
}

/// WebDriver's key for an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

impl Browser {
    fn start(chromium: &Path, chromedriver: &Path) -> Browser {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let driver = Running(
            Command::new(chromedriver)
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while ureq::get(format!("{url}/status")).call().is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        let profile = tempfile::tempdir().unwrap();
        // Chromium's usual headless flags here: no sandbox (root in CI),
        // and none of its own network traffic (the machine has none).
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1280,900",
            &format!("--user-data-dir={}", profile.path().display()),
        ];
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": args},
        }}});
        let answer = post(&format!("{url}/session"), &capabilities);
        let session = answer["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("{answer}"))
            .to_string();
        Browser {
            url: format!("{url}/session/{session}"),
            _driver: driver,
            _profile: profile,
        }
    }

    fn open(&self, url: &str) {
        post(&format!("{}/url", self.url), &json!({ "url": url }));
    }

    /// The element `css` selects (the first), waiting a little for it.
    fn find(&self, css: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Ok(found) = ureq::post(format!("{}/element", self.url))
                .send_json(json!({"using": "css selector", "value": css}))
                .and_then(|mut r| r.body_mut().read_json::<Value>())
            {
                return found["value"][ELEMENT].as_str().unwrap().to_string();
            }
            assert!(Instant::now() < deadline, "no element {css:?} on {}", self.title());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn text(&self, css: &str) -> String {
        let element = self.find(css);
        get(&format!("{}/element/{element}/text", self.url))
            .as_str()
            .unwrap()
            .to_string()
    }

    fn click(&self, css: &str) {
        let element = self.find(css);
        post(&format!("{}/element/{element}/click", self.url), &json!({}));
    }

    /// Waits for the page titled `title` (a click's navigation may still
    /// be under way when the click returns).
    fn on_page(&self, title: &str) {
        let full = format!("{title} · diffsync");
        eventually(&format!("a page titled {full:?}, not {:?}", self.title()), || {
            self.title() == full
        });
    }

    fn title(&self) -> String {
        get(&format!("{}/title", self.url))
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    fn source(&self) -> String {
        get(&format!("{}/source", self.url)).as_str().unwrap().to_string()
    }

    /// Saves a screenshot as `<target tmp>/dashboard/<name>.png`.
    fn screenshot(&self, name: &str) {
        use base64::Engine;
        let png = get(&format!("{}/screenshot", self.url));
        let png = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap();
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard");
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join(format!("{name}.png"));
        std::fs::write(&file, png).unwrap();
        eprintln!("screenshot: {}", file.display());
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = ureq::delete(&self.url).call();
    }
}

/// A WebDriver command's `value`.
fn post(url: &str, body: &Value) -> Value {
    let mut answer = ureq::post(url).send_json(body).unwrap_or_else(|e| panic!("{url}: {e}"));
    answer.body_mut().read_json::<Value>().unwrap()["value"].take()
}

fn get(url: &str) -> Value {
    let mut answer = ureq::get(url).call().unwrap_or_else(|e| panic!("{url}: {e}"));
    answer.body_mut().read_json::<Value>().unwrap()["value"].take()
}

/// Waits until `check` holds, reloading the page it looks at.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_dashboard_shows_systems_runs_a_loop_and_rolls_a_run_back_after_its_preview() {
    let Some((chromium, chromedriver)) = browser_binaries() else {
        return;
    };
    let dir = configured();
    let dir = dir.path();
    // A system whose connection string holds a password: never shown.
    let config = std::fs::read_to_string(dir.join("diffsync.toml")).unwrap()
        + "\n[systems.warehouse]\npostgres = \"host=db.invalid user=ops password=hunter2 dbname=inv\"\n";
    std::fs::write(dir.join("diffsync.toml"), config).unwrap();
    assert_eq!(diffsync(dir, &["sync", "cmdb", "network"]).0, 0);
    let edited = cmdb("north-east").replace("edge", "core");
    std::fs::write(dir.join("cmdb.json"), &edited).unwrap();
    assert_eq!(diffsync(dir, &["sync", "cmdb", "network"]).0, 0);

    let (_server, site) = serve(
        dir,
        &["--allow-writes", "--watch", "cmdb:network", "--anti-entropy", "0"],
    );
    let browser = Browser::start(&chromium, &chromedriver);

    // The front page: systems with their last run, the loop, recent runs.
    browser.open(&format!("{site}/"));
    browser.on_page("Systems and runs");
    let systems = browser.text("table");
    assert!(systems.contains("network SQLite network.db run 2"), "{systems}");
    assert!(systems.contains("warehouse PostgreSQL none yet"), "{systems}");
    assert!(!browser.source().contains("hunter2"), "no secret on a page");
    assert!(browser.text("#loops").contains("cmdb → network"));
    // The network's runs as a chart drawn on the server: a bar per run.
    let chart = browser.text("#chart-network figcaption");
    assert!(chart.contains("network: its last 2 runs, oldest left."), "{chart}");
    let bars = browser.source();
    let svg = &bars[bars
        .find(r#"<figure class="chart" id="chart-network">"#)
        .expect("a chart")..];
    let svg = &svg[..svg.find("</svg>").unwrap()];
    // Run 1 created two sites and a device, run 2 updated a site and a device.
    assert!(
        svg.contains(r##"fill="#1E7D32""##) && svg.contains(r##"fill="#B35C00""##),
        "{svg}"
    );
    assert!(!bars.contains(r#"id="chart-warehouse""#), "no chart without runs");
    browser.screenshot("index");

    // The loop's live status follows an edit of the watched file.
    std::fs::write(dir.join("cmdb.json"), edited.replace("west", "south-west")).unwrap();
    browser.open(&format!("{site}/loops"));
    eventually("the loop's page shows the edit synced", || {
        browser.open(&format!("{site}/loops"));
        browser.text("#loops").contains("1 applied, 0 failed")
    });
    assert!(browser.text("#loops").contains("full pass (startup)"));
    let lag = browser.text("figure.chart figcaption");
    assert!(
        lag.contains("cmdb → network: lag of its last sync (the highest"),
        "{lag}"
    );
    assert!(
        browser.source().contains(r#"http-equiv="refresh""#),
        "the page refreshes itself"
    );

    // Run 2's changes as a tree: the device under its site.
    browser.open(&format!("{site}/runs/2"));
    let tree = browser.text("ul.tree");
    assert!(tree.contains("site nyc"), "{tree}");
    assert!(tree.contains(r#"region: "east" -> "north-east""#), "{tree}");
    let device = browser.text("ul.tree li.update ul.tree li.update");
    assert!(
        device.contains("device nyc-r1") && device.contains(r#"role: "edge" -> "core""#),
        "{device}"
    );
    browser.screenshot("run");

    // A key's history, linked from the tree.
    browser.click("ul.tree a.key");
    browser.on_page("History of site nyc");
    assert_eq!(
        browser.text("#history").lines().count(),
        3,
        "a header and two runs: {}",
        browser.text("#history")
    );

    // The rollback: its preview, then the confirmation.
    browser.open(&format!("{site}/runs/2"));
    browser.click("a.rollback");
    browser.on_page("Roll back run 2 on network");
    let preview = browser.text("#preview");
    assert!(
        preview.contains(r#"update site nyc region: "north-east" -> "east""#)
            && preview.contains(r#"update device nyc-r1 role: "core" -> "edge""#),
        "{preview}"
    );
    browser.screenshot("rollback-preview");
    // Not confirmed: the browser keeps the form (the box is required).
    browser.click("form button");
    std::thread::sleep(Duration::from_millis(300));
    browser.on_page("Roll back run 2 on network");
    browser.click("input[name=confirm]");
    browser.click("form button");
    browser.on_page("run 4");
    assert!(browser.text("table").contains("rollback, undoing run 2"));
    let (_, show, _) = diffsync(dir, &["show", "4"]);
    assert!(show.contains("rollback"), "{show}");
    let (_, history, _) = diffsync(dir, &["history", "site", "nyc"]);
    assert!(
        history
            .lines()
            .last()
            .unwrap()
            .contains(r#"region: "north-east" -> "east""#),
        "{history}"
    );
    // A post without this process's token (a page of another site) is refused.
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let forged = agent
        .post(format!("{site}/runs/4/rollback"))
        .send_form([("on", "network"), ("token", "0123456789abcdef"), ("confirm", "yes")])
        .unwrap();
    assert_eq!(forged.status(), 403);
    let (_, runs, _) = diffsync(dir, &["runs"]);
    assert_eq!(runs.lines().count(), 4, "nothing undone: {runs}");
}

#[test]
fn a_dashboard_started_without_allow_writes_rolls_nothing_back() {
    let dir = configured();
    let dir = dir.path();
    assert_eq!(diffsync(dir, &["sync", "cmdb", "network"]).0, 0);
    // Loopback unless told otherwise.
    let (_, help, _) = diffsync(dir, &["serve", "--help"]);
    assert!(help.contains("[default: 127.0.0.1:8480]"), "{help}");
    let (_server, site) = serve(dir, &[]);
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let text = |path: &str| {
        let mut answer = agent.get(format!("{site}{path}")).call().unwrap();
        answer.body_mut().read_to_string().unwrap()
    };
    let page = text("/runs/1/rollback");
    assert!(page.contains("read-only") && !page.contains("<form"), "{page}");
    let answer = agent
        .post(format!("{site}/runs/1/rollback"))
        .send_form([("on", "network"), ("token", ""), ("confirm", "yes")])
        .unwrap();
    assert_eq!(answer.status(), 403);
    assert_eq!(diffsync(dir, &["diff", "cmdb", "network"]).0, 0, "nothing undone");
    // The runs list: who ran each, what it did, filtered as asked.
    let page = text("/?system=network&result=succeeded");
    let runs = &page[page.find(r#"<table id="runs">"#).expect("a runs table")..];
    assert!(
        runs.contains("<th>By</th>") && runs.contains("<th>Applied</th>") && runs.contains("<th>Took</th>"),
        "{runs}"
    );
    assert!(runs.contains(r#"<td class="num">3</td>"#), "3 applied: {runs}");
    assert!(runs.contains('@'), "who ran it: {runs}");
    assert!(text("/?result=failed").contains("No run is recorded here."));
    assert!(text("/?mode=bogus").contains("no run kind"));
    // A two-way run's page: each side's changes, and the conflict it left.
    assert_eq!(diffsync(dir, &["reconcile", "cmdb", "network"]).0, 0);
    std::fs::write(dir.join("cmdb.json"), cmdb("north")).unwrap();
    rusqlite::Connection::open(dir.join("network.db"))
        .unwrap()
        .execute("UPDATE site SET region = 'south' WHERE name = 'nyc'", [])
        .unwrap();
    let (code, out, _) = diffsync(dir, &["reconcile", "cmdb", "network"]);
    assert_eq!(code, 5, "{out}");
    let page = text("/runs/3");
    assert!(
        page.contains("Changes to cmdb (0)") && page.contains("Changes to network (0)"),
        "{page}"
    );
    let conflicts = &page[page.find(r#"<table id="conflicts">"#).expect(&page)..];
    assert!(
        conflicts.contains("nyc")
            && conflicts.contains("update/update")
            && conflicts.contains("&quot;region&quot;:&quot;north&quot;")
            && conflicts.contains("&quot;region&quot;:&quot;south&quot;"),
        "{conflicts}"
    );
    assert_eq!(page.matches(r#"class="rollback""#).count(), 2, "one per side");
    // An unknown run is a page saying so.
    let missing = agent.get(format!("{site}/runs/99")).call().unwrap();
    assert_eq!(missing.status(), 404);
    // The metrics endpoint answers in Prometheus' text format.
    let mut metrics = agent.get(format!("{site}/metrics")).call().unwrap();
    assert_eq!(
        metrics.headers()["content-type"].to_str().unwrap(),
        "text/plain; version=0.0.4"
    );
    // The journal's runs, the command line's included, by systems, mode
    // and result, and their changes by outcome.
    let body = metrics.body_mut().read_to_string().unwrap();
    let line = |prefix: &str| {
        body.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("{body}"))
    };
    assert_eq!(
        line("diffsync_journal_runs{"),
        r#"diffsync_journal_runs{source="cmdb",target="network",mode="one-way",result="succeeded"} 1"#
    );
    assert_eq!(
        line(r#"diffsync_journal_changes{target="network",outcome="applied"}"#),
        r#"diffsync_journal_changes{target="network",outcome="applied"} 3"#
    );
}

/// A request written by hand (a Host header of the caller's choosing):
/// the status and the whole answer.
fn raw(address: &str, request: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, answer)
}

#[test]
fn another_host_name_is_refused_and_no_page_can_be_framed() {
    let dir = configured();
    let dir = dir.path();
    let (_server, site) = serve(dir, &["--allow-writes"]);
    let address = site.trim_start_matches("http://");
    let get = |host: &str| {
        raw(
            address,
            &format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
        )
    };
    // A name that resolves here by DNS rebinding: refused, nothing read.
    let (status, answer) = get("attacker.example");
    assert_eq!(status, 421, "{answer}");
    assert!(!answer.contains("Recent runs"), "{answer}");
    let port = address.rsplit_once(':').unwrap().1;
    for host in [address.to_string(), format!("localhost:{port}")] {
        let (status, answer) = get(&host);
        assert_eq!(status, 200, "{host}: {answer}");
        let headers = answer.to_ascii_lowercase();
        assert!(headers.contains("x-frame-options: deny"), "{answer}");
        assert!(headers.contains("frame-ancestors 'none'"), "{answer}");
        assert!(headers.contains("x-content-type-options: nosniff"), "{answer}");
        assert!(
            answer.contains(r#"<link rel="stylesheet" href="/style.css">"#),
            "{answer}"
        );
    }
    let (status, css) = raw(
        address,
        &format!("GET /style.css HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"),
    );
    assert!(status == 200 && css.contains("text/css"), "{css}");
    // A rollback posted through a rebound name: refused before the form is read.
    let body = "on=network&token=x&confirm=yes";
    let (status, _) = raw(
        address,
        &format!(
            "POST /runs/1/rollback HTTP/1.1\r\nHost: attacker.example\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    );
    assert_eq!(status, 421);
}

#[test]
fn writes_off_loopback_need_a_credential() {
    let dir = configured();
    let dir = dir.path();
    assert_eq!(diffsync(dir, &["sync", "cmdb", "network"]).0, 0);
    let (code, _, err) = diffsync(dir, &["serve", "--listen", "0.0.0.0:0", "--allow-writes"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("--token-file"), "{err}");
    let token = "a-credential-of-32-characters-xx";
    std::fs::write(dir.join("token"), token).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_diffsync"))
        .arg("-c")
        .arg(dir.join("diffsync.toml"))
        .args(["serve", "--listen", "0.0.0.0:0", "--allow-writes", "--token-file"])
        .arg(dir.join("token"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _server = Running(child);
    let port = line
        .trim()
        .trim_end_matches('/')
        .rsplit_once(':')
        .unwrap()
        .1
        .to_string();
    let address = format!("127.0.0.1:{port}");
    let preview = |auth: &str| {
        raw(
            &address,
            &format!("GET /runs/1/rollback HTTP/1.1\r\nHost: {address}\r\n{auth}Connection: close\r\n\r\n"),
        )
    };
    // Reads need nothing; the rollback's preview (its form) and its post do.
    let (status, _) = raw(
        &address,
        &format!("GET / HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"),
    );
    assert_eq!(status, 200);
    let (status, answer) = preview("");
    assert_eq!(status, 401, "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("www-authenticate: basic"),
        "{answer}"
    );
    use base64::Engine;
    let basic = |password: &str| {
        format!(
            "Authorization: Basic {}\r\n",
            base64::engine::general_purpose::STANDARD.encode(format!("ops:{password}"))
        )
    };
    assert_eq!(preview(&basic("wrong-credential-of-32-chars-xxx")).0, 401);
    let (status, answer) = preview(&basic(token));
    assert_eq!(status, 200, "{answer}");
    assert!(answer.contains("<form"), "{answer}");
}

#[test]
fn the_runs_list_pages_past_its_first_fifty() {
    let dir = configured();
    let dir = dir.path();
    for _ in 0..52 {
        assert_eq!(diffsync(dir, &["sync", "cmdb", "network"]).0, 0);
        // Runs a millisecond apart at least: a page starts before a time.
        std::thread::sleep(Duration::from_millis(2));
    }
    let (_server, site) = serve(dir, &[]);
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let text = |path: &str| {
        let mut answer = agent.get(format!("{site}{path}")).call().unwrap();
        answer.body_mut().read_to_string().unwrap()
    };
    let first = text("/");
    let runs = &first[first.find(r#"<table id="runs">"#).expect("a runs table")..];
    assert!(
        runs.contains(r#"href="/runs/52""#) && !runs.contains(r#"href="/runs/2""#),
        "newest first"
    );
    let at = first.find(r#"id="older" href=""#).expect("a link to older runs") + r#"id="older" href=""#.len();
    let older = &first[at..at + first[at..].find('"').unwrap()];
    let second = text(&older.replace("&amp;", "&"));
    let second = &second[second.find(r#"<table id="runs">"#).expect("a runs table")..];
    assert!(
        second.contains(r#"href="/runs/2""#) && second.contains(r#"href="/runs/1""#),
        "{second}"
    );
    assert!(!second.contains(r#"href="/runs/52""#), "{second}");
    assert!(!second.contains(r#"id="older""#), "the last page");
}

#[test]
fn a_runs_changes_page_past_their_first_2000_and_runs_filter_by_day() {
    let dir = configured();
    let dir = dir.path();
    // 2,501 sites: a run of 2,501 creates.
    let sites: Vec<Value> = (0..2501)
        .map(|i| json!({"name": format!("s{i:04}"), "region": "east"}))
        .collect();
    std::fs::write(dir.join("cmdb.json"), json!({ "site": sites }).to_string()).unwrap();
    assert_eq!(diffsync(dir, &["sync", "cmdb", "network"]).0, 0);
    let (_server, site) = serve(dir, &[]);
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let page = |path: &str| {
        let mut answer = agent.get(format!("{site}{path}")).call().unwrap();
        (answer.status().as_u16(), answer.body_mut().read_to_string().unwrap())
    };
    let link = |page: &str, class: &str| {
        let mark = format!(r#"<a class="{class}" href=""#);
        let at = page.find(&mark)? + mark.len();
        Some(page[at..at + page[at..].find('"')?].replace("&amp;", "&"))
    };
    let (status, first) = page("/runs/1");
    assert_eq!(status, 200);
    assert!(first.contains("Changes 1–2000 of 2501."), "{first}");
    assert!(first.contains(">s0000<") && first.contains(">s1999<") && !first.contains(">s2000<"));
    assert_eq!(link(&first, "earlier"), None);
    let later = link(&first, "later").expect("a link to the later changes");
    let (_, second) = page(&later);
    assert!(second.contains("Changes 2001–2501 of 2501."), "{second}");
    assert!(second.contains(">s2000<") && second.contains(">s2500<") && !second.contains(">s1999<"));
    assert_eq!(link(&second, "later"), None);
    assert_eq!(link(&second, "earlier").as_deref(), Some("/runs/1?from=0"));
    // Past the end: the last change, not an empty page.
    assert!(page("/runs/1?from=9999").1.contains("Changes 2501–2501 of 2501."));

    // Runs since a day: today's, none from a day to come, a day that is none refused.
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let (_, listed) = page(&format!("/?since={today}"));
    assert!(listed.contains(r#"href="/runs/1""#), "{listed}");
    assert!(
        listed.contains(&format!(r#"name="since" value="{today}""#)),
        "the form keeps the day"
    );
    let (_, later_day) = page("/?since=2999-01-01");
    assert!(later_day.contains("No run is recorded here."), "{later_day}");
    // Runs found by text: a system's name in any case, kept in the form.
    let (_, searched) = page("/?q=NETWORK");
    assert!(searched.contains(r#"href="/runs/1""#), "{searched}");
    assert!(searched.contains(r#"name="q" placeholder="search: system, who, error" value="NETWORK""#));
    let (_, none) = page("/?q=warehouse");
    assert!(none.contains("No run is recorded here."), "{none}");
    let (status, refused) = page("/?since=yesterday");
    assert_eq!(status, 400, "{refused}");
    assert!(refused.contains("is no day (YYYY-MM-DD)"), "{refused}");
}
