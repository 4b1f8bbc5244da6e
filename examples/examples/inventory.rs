//! Main example: a CMDB (loaded from `examples/data/inventory.json`) is the
//! source of truth for a network (built in code, as if read from devices).
//! Prints the diff and its summary, syncs the network from the CMDB through
//! hooks that print what they would push, prints the report, and shows that a
//! second diff is empty.
//!
//! Run: `cargo run -p diffsync-examples --example inventory`

use diffsync::{Adapter, AdapterExt, Change, DiffModel, HookError, Hooks, LocalStore, Options, Progress, Sink, Write};
use serde::Deserialize;

#[derive(DiffModel, Clone, Debug, PartialEq)]
#[diffsync(name = "site", children(Device))]
struct Site {
    #[diffsync(id)]
    name: String,
    region: String,
}

#[derive(DiffModel, Clone, Debug, PartialEq)]
#[diffsync(name = "device", children(Interface), shortname(name))]
struct Device {
    #[diffsync(id)]
    site: String,
    #[diffsync(id)]
    name: String,
    role: String,
    serial: Option<String>,
}

#[derive(DiffModel, Clone, Debug, PartialEq)]
#[diffsync(name = "interface", shortname(name))]
struct Interface {
    #[diffsync(id)]
    device: String,
    #[diffsync(id)]
    name: String,
    description: String,
    mtu: u32,
    enabled: bool,
}

/// The data file's layout: sites holding devices holding interfaces.
#[derive(Deserialize)]
struct File {
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
    interfaces: Vec<InterfaceRec>,
}
#[derive(Deserialize)]
struct InterfaceRec {
    name: String,
    description: String,
    mtu: u32,
    enabled: bool,
}

/// One system: a name, a store, and (for the network) hooks that print changes.
struct System {
    name: &'static str,
    store: LocalStore,
    pushes: Vec<String>,
}

impl System {
    fn new(name: &'static str) -> Self {
        System {
            name,
            store: LocalStore::new(name),
            pushes: Vec::new(),
        }
    }

    fn add_site(&mut self, s: SiteRec) -> diffsync::Result<()> {
        let site_name = s.name.clone();
        let site = self.store.add(Site {
            name: s.name,
            region: s.region,
        })?;
        for d in s.devices {
            let dev = d.name.clone();
            // The handle from add names the parent: no "site__device" key to build.
            let device = self.store.add_under(
                site,
                Device {
                    site: site_name.clone(),
                    name: d.name,
                    role: d.role,
                    serial: d.serial,
                },
            )?;
            for i in d.interfaces {
                self.store.add_under(
                    device,
                    Interface {
                        device: dev.clone(),
                        name: i.name,
                        description: i.description,
                        mtu: i.mtu,
                        enabled: i.enabled,
                    },
                )?;
            }
        }
        Ok(())
    }

    /// The CMDB, from the data file shipped with the examples.
    fn cmdb() -> Result<Self, Box<dyn std::error::Error>> {
        let file: File = serde_json::from_str(include_str!("../data/inventory.json"))?;
        let mut sys = System::new("cmdb");
        for s in file.site {
            sys.add_site(s)?;
        }
        Ok(sys)
    }

    /// The network as discovered: a renamed description, a drifted MTU, a
    /// device the CMDB does not know, a site not yet built.
    fn network() -> diffsync::Result<Self> {
        let intf = |name: &str, description: &str, mtu, enabled| InterfaceRec {
            name: name.into(),
            description: description.into(),
            mtu,
            enabled,
        };
        let mut sys = System::new("network");
        sys.add_site(SiteRec {
            name: "nyc".into(),
            region: "us-east".into(),
            devices: vec![
                DeviceRec {
                    name: "nyc-core1".into(),
                    role: "core".into(),
                    serial: Some("FDO2231X0AB".into()),
                    interfaces: vec![
                        intf("Ethernet1/1", "uplink to nyc-edge1", 9216, true),
                        intf("Ethernet1/2", "to rack A12", 1500, true),
                        intf("Ethernet1/3", "", 1500, false),
                        intf("Ethernet1/4", "temp: lab cable", 1500, true),
                    ],
                },
                DeviceRec {
                    name: "nyc-edge1".into(),
                    role: "core".into(),
                    serial: Some("FDO2231X0AC".into()),
                    interfaces: vec![
                        intf("Ethernet1/1", "transit: carrier-a", 1500, true),
                        intf("Ethernet1/2", "to nyc-core1", 9216, true),
                    ],
                },
                DeviceRec {
                    name: "nyc-old1".into(),
                    role: "access".into(),
                    serial: None,
                    interfaces: vec![intf("Ethernet1/1", "unused", 1500, false)],
                },
            ],
        })?;
        sys.add_site(SiteRec {
            name: "sin".into(),
            region: "ap-southeast".into(),
            devices: vec![DeviceRec {
                name: "sin-edge1".into(),
                role: "edge".into(),
                serial: None,
                interfaces: vec![
                    intf("Ethernet1/1", "transit: carrier-b", 1500, true),
                    intf("Ethernet1/2", "peering: ix-sg\nas 64500\nmax-prefix 500", 1500, true),
                ],
            }],
        })?;
        Ok(sys)
    }
}

/// The hooks: what each change would push to the network, per model type.
impl System {
    fn site(&mut self, write: Write<'_, Site>) -> Result<(), HookError> {
        self.pushes.push(match write {
            Write::Create { new, .. } => format!("create site {} in {}", new.name, new.region),
            Write::Update { old, new, .. } => format!("move site {} from {} to {}", new.name, old.region, new.region),
            Write::Delete { old, .. } => format!("delete site {}", old.name),
        });
        Ok(())
    }

    fn device(&mut self, write: Write<'_, Device>) -> Result<(), HookError> {
        let serial = |d: &Device| d.serial.clone().unwrap_or_else(|| "none".into());
        self.pushes.push(match write {
            Write::Create { new, .. } => format!("create device {}/{} as {}", new.site, new.name, new.role),
            Write::Update { old, new, changed } => {
                let what: Vec<String> = changed
                    .iter()
                    .map(|f| match f {
                        DeviceField::Role => format!("role {} -> {}", old.role, new.role),
                        DeviceField::Serial => format!("serial {} -> {}", serial(old), serial(new)),
                    })
                    .collect();
                format!("update device {}/{}: {}", new.site, new.name, what.join(", "))
            }
            Write::Delete { old, .. } => format!("delete device {}/{}", old.site, old.name),
        });
        Ok(())
    }

    fn interface(&mut self, write: Write<'_, Interface>) -> Result<(), HookError> {
        self.pushes.push(match write {
            Write::Create { new, .. } => format!("create interface {} {} mtu {}", new.device, new.name, new.mtu),
            Write::Update { old, new, changed } => {
                let what: Vec<String> = changed
                    .iter()
                    .map(|f| match f {
                        InterfaceField::Description => {
                            format!("description {:?} -> {:?}", old.description, new.description)
                        }
                        InterfaceField::Mtu => format!("mtu {} -> {}", old.mtu, new.mtu),
                        InterfaceField::Enabled => format!("enabled {} -> {}", old.enabled, new.enabled),
                    })
                    .collect();
                format!("update interface {} {}: {}", new.device, new.name, what.join(", "))
            }
            Write::Delete { old, .. } => format!("delete interface {} {}", old.device, old.name),
        });
        Ok(())
    }
}

impl Adapter for System {
    type Store = LocalStore;
    fn name(&self) -> &str {
        self.name
    }
    fn store(&self) -> &LocalStore {
        &self.store
    }
    fn store_mut(&mut self) -> &mut LocalStore {
        &mut self.store
    }
}
impl Sink for System {
    fn apply(&mut self, change: &mut Change<'_>) -> Result<(), HookError> {
        Hooks::new()
            .on(Self::site)
            .on(Self::device)
            .on(Self::interface)
            .apply(self, change)
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cmdb = System::cmdb()?;
    let mut network = System::network()?;
    println!(
        "cmdb: {} models, network: {} models\n",
        cmdb.store.count_all(),
        network.store.count_all()
    );

    let diff = network.diff_from(&cmdb)?;
    println!("{diff}\n");
    println!("summary: {}\n", diff.summary());

    let mut last = None;
    let mut on_progress = |p: Progress| last = Some(p);
    let report = network.sync_diff_from(&cmdb, &diff, &mut Options::new().progress(&mut on_progress))?;
    for line in &network.pushes {
        println!("push: {line}");
    }
    println!("\n{report}");
    if let Some(p) = last {
        println!("progress: {:?} {}/{}", p.stage, p.current, p.total);
    }

    let again = network.diff_from(&cmdb)?;
    println!("second diff: {again} ({})", again.summary());
    if again.has_diffs() {
        return Err("the network still differs from the CMDB after the sync".into());
    }
    Ok(())
}
