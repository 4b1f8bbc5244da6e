//! A Redis namespace as a system: synced into from a file, read from into
//! SQLite, rolled back, each command a new process on the same server.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{CONFIG, cmdb, configured, diffsync, missing};

/// A redis-server on a free loopback port, killed on drop.
struct Redis(Child, u16);

impl Redis {
    fn start() -> Option<Redis> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let Ok(child) = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", ""])
            .stdout(Stdio::null())
            .spawn()
        else {
            return missing("redis-server");
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(Redis(child, port))
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_redis_namespace_is_a_system_to_sync_into_read_from_and_roll_back() {
    let Some(redis) = Redis::start() else { return };
    let dir = configured();
    let dir = dir.path();
    let config = format!(
        "{CONFIG}\n[systems.cache]\nredis = \"redis://127.0.0.1:{}/\"\nnamespace = \"inv\"\n",
        redis.1
    );
    std::fs::write(dir.join("diffsync.toml"), config).unwrap();

    let (code, out, err) = diffsync(dir, &["sync", "cmdb", "cache"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("run 1: applied 3"), "{out}");
    assert_eq!(
        diffsync(dir, &["diff", "cmdb", "cache"]).0,
        0,
        "another process reads it back"
    );
    // Redis as the source, SQLite the target.
    assert_eq!(diffsync(dir, &["sync", "cache", "network"]).0, 0);
    assert_eq!(diffsync(dir, &["diff", "cmdb", "network"]).0, 0);

    std::fs::write(dir.join("cmdb.json"), cmdb("north-east")).unwrap();
    assert_eq!(diffsync(dir, &["sync", "cmdb", "cache"]).0, 0);
    let (_, history, _) = diffsync(dir, &["history", "site", "nyc"]);
    assert!(history.contains("cmdb -> cache"), "{history}");
    let (code, out, _) = diffsync(dir, &["rollback", "3"]);
    assert_eq!(code, 0, "{out}");
    let (code, out, _) = diffsync(dir, &["diff", "cache", "network"]);
    assert_eq!(code, 0, "the cache holds the old region again: {out}");

    // A namespace without a redis URL is named.
    let bad = CONFIG.replace("sqlite = \"network.db\"", "sqlite = \"network.db\"\nnamespace = \"x\"");
    std::fs::write(dir.join("diffsync.toml"), bad).unwrap();
    let (code, _, err) = diffsync(dir, &["runs"]);
    assert_eq!(code, 1);
    assert!(err.contains("namespace is for a redis system only"), "{err}");
}
