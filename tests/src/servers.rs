//! Real servers for the tests (the adapters', the command line's): a private PostgreSQL or Redis per test, in a
//! temporary directory, on a free loopback port, stopped on drop.
//!
//! Without the server binaries a test says loudly that it was skipped; with
//! `CI=true` it fails instead (CI installs them).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    l.local_addr().expect("local address").port()
}

fn missing(what: &str) -> Option<()> {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{what} not found, and CI=true: CI must install it (.ci/run)");
    }
    eprintln!("\n*** SKIPPED: {what} not found; install it to run this test ***\n");
    None
}

fn find(bin: &str, extra_dirs: &[PathBuf]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(extra_dirs.iter().cloned())
        .map(|d| d.join(bin))
        .find(|p| p.is_file())
}

fn uid_gid_of(user: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    let line = passwd.lines().find(|l| l.split(':').next() == Some(user))?;
    let f: Vec<&str> = line.split(':').collect();
    Some((f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0"))
}

/// A running PostgreSQL server.
pub struct Postgres {
    _dir: tempfile::TempDir,
    data: PathBuf,
    pg_ctl: PathBuf,
    as_user: Option<(u32, u32)>,
    /// The server's options (`pg_ctl -o`), to start it again.
    opts: String,
    /// The port it listens on (loopback).
    pub port: u16,
}

impl Postgres {
    /// Starts a server of its own (`None`: no PostgreSQL here, and not CI).
    pub fn start() -> Option<Postgres> {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path().join("bin")).collect())
            .unwrap_or_default();
        dirs.sort();
        dirs.reverse();
        let (Some(initdb), Some(pg_ctl)) = (find("initdb", &dirs), find("pg_ctl", &dirs)) else {
            missing("PostgreSQL (initdb, pg_ctl)")?;
            return None;
        };
        let dir = tempfile::tempdir().expect("temp dir");
        // initdb refuses to run as root: use the postgres user then.
        let as_user = if is_root() { uid_gid_of("postgres") } else { None };
        if let Some((uid, gid)) = as_user {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown temp dir");
        }
        let data = dir.path().join("data");
        let port = free_port();
        let cmd = |bin: &Path| {
            let mut c = Command::new(bin);
            if let Some((uid, gid)) = as_user {
                use std::os::unix::process::CommandExt;
                c.uid(uid).gid(gid);
            }
            c.stdout(Stdio::null()).stderr(Stdio::piped());
            c
        };
        let out = cmd(&initdb)
            .args(["-D"])
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .output()
            .expect("run initdb");
        assert!(out.status.success(), "initdb: {}", String::from_utf8_lossy(&out.stderr));
        let opts = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            dir.path().display()
        );
        let server = Postgres {
            _dir: dir,
            data,
            pg_ctl,
            as_user,
            opts,
            port,
        };
        server.revive();
        Some(server)
    }

    fn pg_ctl(&self) -> Command {
        let mut c = Command::new(&self.pg_ctl);
        if let Some((uid, gid)) = self.as_user {
            use std::os::unix::process::CommandExt;
            c.uid(uid).gid(gid);
        }
        c.arg("-D").arg(&self.data);
        c.stdout(Stdio::null()).stderr(Stdio::piped());
        c
    }

    /// Stops the server at once (`immediate`: no goodbye to clients, as a crash).
    pub fn kill(&self) {
        let _ = self.pg_ctl().args(["-m", "immediate", "-w", "stop"]).output();
    }

    /// Starts the server (again, after a [`kill`](Self::kill)) and waits for it.
    pub fn revive(&self) {
        let out = self
            .pg_ctl()
            .args(["-o", &self.opts, "-l"])
            .arg(self._dir.path().join("log"))
            .args(["-w", "start"])
            .output()
            .expect("run pg_ctl");
        assert!(
            out.status.success(),
            "pg_ctl start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Its connection parameters (`host=... port=... user=... dbname=...`).
    pub fn params(&self) -> String {
        format!("host=127.0.0.1 port={} user=postgres dbname=postgres", self.port)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A running redis-server.
pub struct Redis {
    child: Child,
    bin: PathBuf,
    _dir: tempfile::TempDir,
    /// TCP port, or 0 for a Unix socket in the directory (which a restart
    /// can take again, unlike a port another test may grab meanwhile).
    pub port: u16,
    /// Writes go to an append-only file (fsync each), so data outlives a kill.
    durable: bool,
}

impl Redis {
    /// Starts a server of its own (`None`: no redis-server here, and not CI).
    pub fn start() -> Option<Redis> {
        let Some(bin) = find("redis-server", &[]) else {
            missing("redis-server")?;
            return None;
        };
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        Self::started(bin, dir, port, false)
    }

    /// A server on a Unix socket, for tests that restart it.
    pub fn start_on_socket() -> Option<Redis> {
        let Some(bin) = find("redis-server", &[]) else {
            missing("redis-server")?;
            return None;
        };
        Self::started(bin, tempfile::tempdir().expect("temp dir"), 0, false)
    }

    /// A server on a Unix socket whose data outlives a kill
    /// ([`kill`](Self::kill), then [`revive`](Self::revive)).
    pub fn start_durable() -> Option<Redis> {
        let Some(bin) = find("redis-server", &[]) else {
            missing("redis-server")?;
            return None;
        };
        Self::started(bin, tempfile::tempdir().expect("temp dir"), 0, true)
    }

    fn started(bin: PathBuf, dir: tempfile::TempDir, port: u16, durable: bool) -> Option<Redis> {
        let child = Self::spawn(&bin, dir.path(), port, durable);
        Some(Redis {
            child,
            bin,
            _dir: dir,
            port,
            durable,
        })
    }

    fn spawn(bin: &Path, dir: &Path, port: u16, durable: bool) -> Child {
        let socket = dir.join("redis.sock");
        let mut cmd = Command::new(bin);
        cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", ""]);
        if durable {
            cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            cmd.args(["--appendonly", "no"]);
        }
        cmd.arg("--dir").arg(dir);
        if port == 0 {
            let _ = std::fs::remove_file(&socket);
            cmd.arg("--unixsocket").arg(&socket);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        // Up means it answers PING (a server that accepts connections may
        // still answer LOADING while it reads its append-only file).
        fn pong(mut conn: impl std::io::Read + std::io::Write) -> bool {
            let mut reply = [0u8; 5];
            conn.write_all(b"PING\r\n").is_ok() && conn.read_exact(&mut reply).is_ok() && &reply == b"+PONG"
        }
        let up = || match port {
            0 => std::os::unix::net::UnixStream::connect(&socket).is_ok_and(pong),
            _ => std::net::TcpStream::connect(("127.0.0.1", port)).is_ok_and(pong),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !up() {
            assert!(Instant::now() < deadline, "redis-server did not start on port {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        child
    }

    /// Stops the server and starts a fresh one on the same port (empty,
    /// unless durable).
    pub fn restart(&mut self) {
        self.kill();
        self.revive();
    }

    /// Kills the server (SIGKILL: no goodbye to clients).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the server again after a [`kill`](Self::kill).
    pub fn revive(&mut self) {
        self.child = Self::spawn(&self.bin, self._dir.path(), self.port, self.durable);
    }

    /// Its URL.
    pub fn url(&self) -> String {
        match self.port {
            0 => format!("redis+unix://{}", self._dir.path().join("redis.sock").display()),
            port => format!("redis://127.0.0.1:{port}/"),
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
