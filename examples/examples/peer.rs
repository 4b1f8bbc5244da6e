//! Two diffsync processes on one machine, syncing over HTTP/2 with TLS or
//! over QUIC.
//!
//! `hq` serves its inventory (a JSON file it keeps) to the peers it allows;
//! `branch` keeps its own copy and pulls from hq, or reconciles both ways
//! with it (a base kept per peer, so each side's edits go to the other).
//! Each replica keeps its state in a directory: its Ed25519 key pair (made
//! on first run), the peers it allows or calls, the two-way base; hq also
//! makes its TLS certificate on first run.
//!
//! Run, in two terminals:
//!
//! ```text
//! cargo run -p diffsync-examples --features peer --example peer -- serve
//! cargo run -p diffsync-examples --features peer --example peer -- pull
//! cargo run -p diffsync-examples --features peer --example peer -- reconcile
//! ```
//!
//! `serve` edits one device of hq every 10 seconds (as a CMDB's users
//! would); `pull` moves those edits to branch; `reconcile` also makes an
//! edit on branch's side first and sends it to hq. Options: `--dir DIR`
//! (default `target/peer-demo`), `--address HOST:PORT` (default
//! `127.0.0.1:7443`; hq serves HTTPS on that TCP port and QUIC on that
//! UDP port; branch takes `quic://HOST:PORT` or `https://HOST:PORT` (a
//! bare address is HTTPS), remembers hq's, and takes a new one given
//! here). A pull leaves the two-way base where both sides agree, so the
//! first reconcile after it sees only what changed since.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use diffsync::bidir::{Base, BiOptions, Strategy, reconcile};
use diffsync::{Adapter, AdapterExt, Change, DiffModel, HookError, LocalStore, Sink};
use diffsync_peer::http::{CertificateDer, HttpOptions, PrivatePkcs8KeyDer};
use diffsync_peer::identity::Rights;
use diffsync_peer::proto::Refusal;
use diffsync_peer::socket::{dial, listen};
use diffsync_peer::state::StateDir;
use diffsync_peer::{PeerError, RemotePeer, Server};
use serde::{Deserialize, Serialize};

#[derive(DiffModel, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[diffsync(name = "site", children(Device))]
struct Site {
    #[diffsync(id)]
    name: String,
    region: String,
}

#[derive(DiffModel, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[diffsync(name = "device", shortname(name))]
struct Device {
    #[diffsync(id)]
    site: String,
    #[diffsync(id)]
    name: String,
    role: String,
    serial: Option<String>,
}

/// A replica's system: its inventory in a JSON file, written after every
/// sync into it.
struct Inventory {
    name: String,
    store: LocalStore,
    file: PathBuf,
}

/// The file's layout.
#[derive(Default, Serialize, Deserialize)]
struct File {
    sites: Vec<Site>,
    devices: Vec<Device>,
}

impl Inventory {
    fn empty(name: &str, file: PathBuf) -> Result<Inventory, Box<dyn std::error::Error>> {
        let mut store = LocalStore::new(name);
        store.register::<Site>()?;
        store.register::<Device>()?;
        Ok(Inventory {
            name: name.into(),
            store,
            file,
        })
    }

    /// The file's inventory, or an empty one (a first run).
    fn open(name: &str, file: PathBuf) -> Result<Inventory, Box<dyn std::error::Error>> {
        let mut inv = Inventory::empty(name, file)?;
        if let Ok(text) = std::fs::read_to_string(&inv.file) {
            let data: File = serde_json::from_str(&text)?;
            for s in data.sites {
                inv.store.add(s)?;
            }
            for d in data.devices {
                inv.store.add_child(Site::key(d.site.clone()), d)?;
            }
        }
        Ok(inv)
    }

    fn save(&self) -> Result<(), Box<dyn std::error::Error>> {
        let data = File {
            sites: self.store.all::<Site>()?.cloned().collect(),
            devices: self.store.all::<Device>()?.cloned().collect(),
        };
        std::fs::write(&self.file, serde_json::to_string_pretty(&data)?)?;
        Ok(())
    }
}

impl Adapter for Inventory {
    type Store = LocalStore;
    fn name(&self) -> &str {
        &self.name
    }
    fn store(&self) -> &LocalStore {
        &self.store
    }
    fn store_mut(&mut self) -> &mut LocalStore {
        &mut self.store
    }
}
impl Sink for Inventory {
    /// Every change is taken (the file is the system); said as it happens.
    fn apply(&mut self, change: &mut Change<'_>) -> Result<(), HookError> {
        println!(
            "  {}: {} {} {}",
            self.name,
            change.action,
            change.model_type(),
            change.key()
        );
        Ok(())
    }
    fn sync_complete(&mut self, _: &diffsync::Diff, _: &diffsync::SyncReport) -> Result<(), HookError> {
        self.save().map_err(|e| HookError::Fatal(e.to_string().into()))
    }
}

/// hq's inventory on its first run: the sites and devices of the main
/// example's data file.
fn seed(inv: &mut Inventory) -> Result<(), Box<dyn std::error::Error>> {
    #[derive(Deserialize)]
    struct Data {
        site: Vec<SiteRec>,
    }
    #[derive(Deserialize)]
    struct SiteRec {
        name: String,
        region: String,
        devices: Vec<DeviceRec>,
    }
    #[derive(Deserialize)]
    struct DeviceRec {
        name: String,
        role: String,
        serial: Option<String>,
    }
    let data: Data = serde_json::from_str(include_str!("../data/inventory.json"))?;
    for s in data.site {
        inv.store.add(Site {
            name: s.name.clone(),
            region: s.region,
        })?;
        for d in s.devices {
            let device = Device {
                site: s.name.clone(),
                name: d.name,
                role: d.role,
                serial: d.serial,
            };
            inv.store.add_child(Site::key(s.name.clone()), device)?;
        }
    }
    inv.save()
}

struct Args {
    command: String,
    dir: PathBuf,
    /// `--address`, when given.
    address: Option<String>,
}

const USAGE: &str = "usage: peer serve|pull|reconcile [--dir DIR] [--address HOST:PORT]

  serve       hq: serve its inventory, edit a device every 10 s
  pull        branch: take hq's inventory
  reconcile   branch: edit a device, then sync both ways with hq

  --dir DIR            where both replicas keep their state (default target/peer-demo)
  --address HOST:PORT  where hq listens (default 127.0.0.1:7443; branch remembers it)";

/// The arguments, or `Err(None)` when help was asked for.
fn args() -> Result<Args, Option<String>> {
    let mut args = Args {
        command: String::new(),
        dir: PathBuf::from("target/peer-demo"),
        address: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--help" | "-h" | "help" => return Err(None),
            "--dir" => {
                args.dir = it
                    .next()
                    .ok_or_else(|| Some("--dir needs a directory".to_string()))?
                    .into()
            }
            "--address" => args.address = Some(it.next().ok_or_else(|| Some("--address needs HOST:PORT".to_string()))?),
            "serve" | "pull" | "reconcile" if args.command.is_empty() => args.command = a,
            other => return Err(Some(format!("unknown argument {other:?}\n\n{USAGE}"))),
        }
    }
    if args.command.is_empty() {
        return Err(Some(USAGE.into()));
    }
    Ok(args)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = match args() {
        Ok(args) => args,
        Err(None) => {
            println!("{USAGE}");
            return Ok(());
        }
        Err(Some(message)) => return Err(message.into()),
    };
    match args.command.as_str() {
        "serve" => serve(&args),
        command => follow(&args, command == "reconcile"),
    }
}

/// Writes a file only its owner can read (a private key).
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(bytes)
}

/// hq's TLS certificate and key, made on first run.
fn certificate(dir: &Path) -> Result<(CertificateDer<'static>, Vec<u8>), Box<dyn std::error::Error>> {
    let (cert, key) = (dir.join("cert.der"), dir.join("cert.key"));
    if !cert.exists() {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])?;
        write_private(&key, &made.signing_key.serialize_der())?;
        std::fs::write(&cert, made.cert.der())?;
    }
    Ok((CertificateDer::from(std::fs::read(cert)?), std::fs::read(key)?))
}

fn serve(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let state = StateDir::open(args.dir.join("hq"))?;
    let identity = state.identity()?;
    let (cert, key) = certificate(state.path())?;
    let mut inventory = Inventory::open("hq", state.path().join("inventory.json"))?;
    if inventory.store.count_all() == 0 {
        seed(&mut inventory)?;
    }
    println!(
        "hq: {} models, key {}",
        inventory.store.count_all(),
        identity.public_key()
    );
    let changes = inventory.store.subscribe();
    let server = Arc::new(Server::new("hq", inventory, identity, state.allowed()?).with_feed(changes));
    let address = args.address.as_deref().unwrap_or("127.0.0.1:7443");
    let https = listen(
        &format!("https://{address}"),
        Arc::clone(&server),
        vec![cert.clone()],
        PrivatePkcs8KeyDer::from(key.clone()).into(),
    )?;
    // QUIC on the UDP port of the same number.
    let quic = listen(
        &format!("quic://{}", https.address()),
        Arc::clone(&server),
        vec![cert],
        PrivatePkcs8KeyDer::from(key).into(),
    )?;
    println!("hq: serving on {} and {} (Ctrl-C stops)", https.url(), quic.url());
    let allowed = state.path().join("allowed");
    let modified = || std::fs::metadata(&allowed).and_then(|m| m.modified()).ok();
    let (mut seen, mut last_edit) = (modified(), Instant::now());
    loop {
        std::thread::sleep(Duration::from_millis(500));
        // The allow-list is read again when its file changes.
        if modified() != seen {
            seen = modified();
            server.set_peers(state.allowed()?);
            println!("hq: allow-list read again");
        }
        if last_edit.elapsed() >= Duration::from_secs(10) {
            last_edit = Instant::now();
            let mut adapter = server.adapter();
            let devices: Vec<Device> = adapter.store.all::<Device>()?.cloned().collect();
            let mut device = devices[fastrand::usize(..devices.len())].clone();
            device.role = if device.role == "spare" {
                "edge".into()
            } else {
                "spare".into()
            };
            println!("hq: {} is now {}", device.name, device.role);
            adapter.store.update(device)?;
            adapter.save()?;
        }
    }
}

/// branch: pulls from hq, or reconciles both ways with it.
fn follow(args: &Args, both_ways: bool) -> Result<(), Box<dyn std::error::Error>> {
    // hq must have started once (its certificate made) before branch
    // touches anything of either side.
    let hq_dir = args.dir.join("hq");
    let cert = CertificateDer::from(std::fs::read(hq_dir.join("cert.der")).map_err(|e| {
        format!(
            "{}: {e} (start `serve` first: it makes hq's certificate)",
            hq_dir.join("cert.der").display()
        )
    })?);
    let state = StateDir::open(args.dir.join("branch"))?;
    let key = state.identity()?.public_key();
    let hq = StateDir::open(&hq_dir)?;
    if hq.allowed()?.get(&key).is_none() {
        // A shortcut of a demo on one machine: branch writes itself into
        // hq's allow-list. On two machines, hq's operator adds this line.
        hq.allow("branch", key, &Rights::read_write())?;
        println!("branch: key {key} added to {}", hq_dir.join("allowed").display());
        std::thread::sleep(Duration::from_secs(1));
    }
    let mut known = state.peer("hq")?;
    // An address given now replaces the one remembered.
    if let Some(given) = &args.address
        && known.address.as_ref() != Some(given)
    {
        known.address = Some(given.clone());
        known.save()?;
    }
    let address = known.address.clone().unwrap_or_else(|| "127.0.0.1:7443".into());
    let mut local = Inventory::open("branch", state.path().join("inventory.json"))?;
    // The image starts as branch's copy: the first pull moves what differs.
    let image = local.store.clone();
    let mut peer = None;
    for _ in 0..5 {
        let wire = dial(
            &address,
            "localhost",
            std::slice::from_ref(&cert),
            HttpOptions::default(),
        )?;
        match RemotePeer::connect_known(state.peer("hq")?, image.clone(), wire, state.identity()?) {
            // hq reads its allow-list again within a second.
            Err(PeerError::Refused {
                refusal: Refusal::Unauthorized,
                ..
            }) => std::thread::sleep(Duration::from_millis(500)),
            other => {
                peer = Some(other?);
                break;
            }
        }
    }
    let mut peer = peer.ok_or("hq does not allow branch's key")?;
    for r in peer.resent() {
        println!("branch: a batch of an earlier run was answered: {:?}", r.outcomes);
    }
    let pulled = peer.pull()?;
    println!(
        "branch: pulled from hq at {address}: {} fetched, {} removed; {} round trips, {} bytes",
        pulled.fetched,
        pulled.removed,
        pulled.traffic.round_trips,
        pulled.traffic.sent + pulled.traffic.received
    );
    if both_ways {
        // An edit on branch's side, for hq to take.
        let mut device: Device = local
            .store
            .all::<Device>()?
            .next()
            .ok_or("branch holds no device yet: pull first")?
            .clone();
        device.serial = Some(format!("BR{}", fastrand::u32(1000..9999)));
        println!("branch: {} gets serial {:?}", device.name, device.serial);
        local.store.update(device)?;
        let path = state.base_path("hq")?;
        let mut base = Base::load(&path, &local.store)?;
        // Edits of different fields of one device merge; the same field
        // edited on both sides: branch's wins.
        let opts = BiOptions::new().strategy(Strategy::merge(Strategy::LeftWins));
        let report = reconcile(&mut local, &mut peer, &mut base, &opts)?;
        base.save(&path)?;
        local.save()?;
        println!("branch: reconciled with hq:\n{report}");
    } else {
        let report = local.sync_from(&peer)?;
        println!("branch: synced from hq:\n{report}");
        // Both hold the same now: that is the two-way base, so a reconcile
        // after this pull sees only the edits made since.
        Base::from_store(local.store.clone()).save(state.base_path("hq")?)?;
    }
    Ok(())
}
