//! A remote diffsync peer as a system of the config: diffed, synced into
//! (its changes pushed) and read from (pulled) by the command line, over
//! HTTP/2 and over QUIC. The peer is served by this test's process.

use std::sync::Arc;

use diffsync::{LocalStore, MemoryAdapter, ModelSchema};
use diffsync_peer::Server;
use diffsync_peer::http::PrivatePkcs8KeyDer;
use diffsync_peer::identity::{Identity, Peers, Rights};
use diffsync_peer::socket::listen;
use diffsync_peer::state::StateDir;

use crate::{CONFIG, Watching, configured, diffsync};

/// The config's model types, as the peer declares them too.
fn schemas() -> Vec<Arc<ModelSchema>> {
    let site = serde_json::json!({"name": "site", "identifiers": [{"name": "name", "kind": "string"}],
        "attributes": [{"name": "region", "kind": "string"}], "children": ["device"]});
    let device = serde_json::json!({"name": "device", "identifiers": [{"name": "name", "kind": "string"}],
        "attributes": [{"name": "role", "kind": "string"}]});
    [site, device]
        .map(|s| Arc::new(serde_json::from_value(s).unwrap()))
        .to_vec()
}

/// A peer served on `scheme` that allows this side `rights`, and the
/// config naming it `hq`: the server, and its socket (kept open).
fn serve_peer(
    dir: &std::path::Path,
    scheme: &str,
    rights: Rights,
) -> (Arc<Server<MemoryAdapter>>, diffsync_peer::socket::Listener) {
    let mine = StateDir::open(dir.join("peer-state"))
        .unwrap()
        .identity()
        .unwrap()
        .public_key();
    let mut store = LocalStore::new("hq");
    for s in schemas() {
        store.register_dyn(s).unwrap();
    }
    // The peer relays its store's changes (for a loop that follows it).
    let changes = store.subscribe();
    let identity = Identity::generate();
    let theirs = identity.public_key();
    let server = Arc::new(
        Server::new(
            "hq",
            MemoryAdapter::with_store("hq", &["site"], store),
            identity,
            Peers::new().allow("cli", mine, rights),
        )
        .with_feed(changes),
    );
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    std::fs::write(dir.join("hq.der"), made.cert.der()).unwrap();
    let key = PrivatePkcs8KeyDer::from(made.signing_key.serialize_der());
    let socket = listen(
        &format!("{scheme}://127.0.0.1:0"),
        Arc::clone(&server),
        vec![made.cert.der().clone()],
        key.into(),
    )
    .unwrap();
    let config = format!(
        "{CONFIG}\n[systems.hq]\npeer = \"{}\"\ncertificate = \"hq.der\"\nkey = \"{theirs}\"\nstate = \"peer-state\"\ntls_name = \"localhost\"\n",
        socket.url()
    );
    std::fs::write(dir.join("diffsync.toml"), config).unwrap();
    (server, socket)
}

fn a_peer_in_the_config_is_diffed_synced_into_and_pulled(scheme: &str) {
    let dir = configured();
    let dir = dir.path();
    let (server, _socket) = serve_peer(dir, scheme, Rights::read_write());
    // The peer holds nothing yet: a diff of the cmdb against it, then a
    // sync into it (pushed), then the peer's models in the server's store.
    let (code, out, err) = diffsync(dir, &["diff", "cmdb", "hq"]);
    assert_eq!(code, 3, "differences: {out}{err}");
    assert!(out.contains("nyc") && out.contains("MISSING in hq"), "{out}");
    let (code, out, err) = diffsync(dir, &["sync", "cmdb", "hq"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        server.adapter().store.count_all(),
        3,
        "two sites and a device on the peer"
    );
    assert_eq!(diffsync(dir, &["diff", "cmdb", "hq"]).0, 0, "nothing left");
    // Read from: the peer's models pulled into the network database.
    let (code, out, err) = diffsync(dir, &["sync", "hq", "network"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(diffsync(dir, &["diff", "cmdb", "network"]).0, 0);
    // Followed: an edit on the peer reaches the network through its feed.
    let watch = Watching::between(dir, "hq", "network", &[]);
    watch.wait_for("full pass (startup): 0 repaired");
    let mut region = diffsync::Attrs::new();
    region.insert("region".into(), "north".into());
    let nyc: diffsync::ModelKey = "site:nyc".parse().unwrap();
    server
        .adapter()
        .store
        .update_attributes(&nyc, diffsync::AttrSource::Values(&region))
        .unwrap();
    watch.wait_for("synced: 1 applied");
    drop(watch);
    let (_, history, _) = diffsync(dir, &["history", "site", "nyc"]);
    assert!(history.contains(r#"region: "east" -> "north""#), "{history}");
    // check reaches it; a peer that does not know this side's key refuses.
    let (code, out, err) = diffsync(dir, &["check"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("3 models pulled"), "{out}");
    assert_eq!(diffsync(dir, &["diff", "hq", "network"]).0, 0);
    server.set_peers(Peers::new());
    let (code, _, err) = diffsync(dir, &["diff", "cmdb", "hq"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("system \"hq\": the peer cannot be reached"), "{err}");
}

#[test]
fn a_peer_over_http2_in_the_config_is_diffed_synced_into_and_pulled() {
    a_peer_in_the_config_is_diffed_synced_into_and_pulled("https");
}

#[test]
fn a_peer_over_quic_in_the_config_is_diffed_synced_into_and_pulled() {
    a_peer_in_the_config_is_diffed_synced_into_and_pulled("quic");
}

#[test]
fn a_peer_system_missing_its_key_or_certificate_is_named() {
    let dir = configured();
    let dir = dir.path();
    let config =
        format!("{CONFIG}\n[systems.hq]\npeer = \"https://127.0.0.1:7443\"\nstate = \"s\"\ncertificate = \"c.der\"\n");
    std::fs::write(dir.join("diffsync.toml"), config).unwrap();
    let (code, _, err) = diffsync(dir, &["runs"]);
    assert_ne!(code, 0);
    assert!(err.contains("system \"hq\": a peer needs key"), "{err}");
    let config = format!("{CONFIG}\n[systems.cmdb2]\nfile = \"cmdb.json\"\nkey = \"x\"\n");
    std::fs::write(dir.join("diffsync.toml"), config).unwrap();
    let (_, _, err) = diffsync(dir, &["runs"]);
    assert!(err.contains("are for a peer system only"), "{err}");
}

#[test]
fn a_sync_into_a_peer_that_refuses_writes_stops_and_changes_nothing() {
    let dir = configured();
    let dir = dir.path();
    let (server, _socket) = serve_peer(dir, "https", Rights::read());
    // A replica allowed to read only: the peer refuses the batch whole.
    let (code, out, err) = diffsync(dir, &["sync", "cmdb", "hq"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("the batch failed") && err.contains("not allowed: writing to this replica"),
        "the refusal told: {err}"
    );
    assert_eq!(server.adapter().store.count_all(), 0, "the peer took nothing");
    let (_, runs, _) = diffsync(dir, &["runs"]);
    assert!(runs.contains("failed"), "the run recorded as failed: {runs}");
    assert_eq!(diffsync(dir, &["diff", "cmdb", "hq"]).0, 3, "still to do");
}
