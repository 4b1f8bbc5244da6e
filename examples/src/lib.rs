//! Shared code of the examples and benchmarks: the inventory workload's models
//! (`../shared/bench` layout), an in-memory adapter, the JSON loader, and a
//! deterministic in-memory generator for microbenchmarks.

use diffsync::{DiffModel, LocalStore, MemoryAdapter};
use serde::Deserialize;

/// A site (`site` in the workload).
#[derive(DiffModel, Clone, Debug, PartialEq)]
#[diffsync(name = "site", children(Device))]
pub struct Site {
    /// Site name.
    #[diffsync(id)]
    pub name: String,
    /// Region.
    pub region: String,
    /// Status.
    pub status: String,
}

/// A device.
#[derive(DiffModel, Clone, Debug, PartialEq)]
#[diffsync(name = "device", children(Interface))]
pub struct Device {
    /// Owning site.
    #[diffsync(id)]
    pub site: String,
    /// Device name.
    #[diffsync(id)]
    pub name: String,
    /// Role.
    pub role: String,
    /// Hardware model.
    pub model: String,
    /// Serial number.
    pub serial: String,
    /// Status.
    pub status: String,
}

/// An interface.
#[derive(DiffModel, Clone, Debug, PartialEq, Deserialize)]
#[diffsync(name = "interface")]
pub struct Interface {
    /// Owning site.
    #[diffsync(id)]
    pub site: String,
    /// Owning device.
    #[diffsync(id)]
    pub device: String,
    /// Interface name.
    #[diffsync(id)]
    pub name: String,
    /// Description.
    pub description: String,
    /// MTU.
    pub mtu: i64,
    /// Admin state.
    pub enabled: bool,
    /// Mode.
    pub mode: String,
}

/// The workload file: `{"site": [...]}`.
#[derive(Deserialize)]
pub struct File {
    /// Sites with nested devices and interfaces.
    pub site: Vec<SiteRec>,
}

/// A site record with its devices.
#[derive(Deserialize)]
pub struct SiteRec {
    /// Site name.
    pub name: String,
    /// Region.
    pub region: String,
    /// Status.
    pub status: String,
    /// Devices.
    pub devices: Vec<DeviceRec>,
}

/// A device record with its interfaces.
#[derive(Deserialize)]
pub struct DeviceRec {
    /// Owning site.
    pub site: String,
    /// Device name.
    pub name: String,
    /// Role.
    pub role: String,
    /// Hardware model.
    pub model: String,
    /// Serial number.
    pub serial: String,
    /// Status.
    pub status: String,
    /// Interfaces.
    pub interfaces: Vec<Interface>,
}

/// Builds an in-memory adapter from parsed workload records.
pub fn build(name: &str, file: File) -> diffsync::Result<MemoryAdapter> {
    let mut store = LocalStore::new(name);
    for s in file.site {
        let site = store.add(Site {
            name: s.name,
            region: s.region,
            status: s.status,
        })?;
        for d in s.devices {
            let device = store.add_under(
                site,
                Device {
                    site: d.site,
                    name: d.name,
                    role: d.role,
                    model: d.model,
                    serial: d.serial,
                    status: d.status,
                },
            )?;
            for i in d.interfaces {
                store.add_under(device, i)?;
            }
        }
    }
    Ok(MemoryAdapter::with_store(name, &["site"], store))
}

/// A deterministic pair of workloads of about `n` models each (1 % sites,
/// 9 % devices, 90 % interfaces); about 5 % of the models differ (a third
/// created, a third deleted, a third updated), in the spirit of
/// `gen_workload.py`, without its files.
pub fn generate(n: usize) -> (File, File) {
    generate_shape(n, 10)
}

/// Like [`generate`], with `fanout` interfaces per device (about 10 in the
/// standard shape; 50 gives sibling lists past the differ's short-list scan).
pub fn generate_shape(n: usize, fanout: usize) -> (File, File) {
    let devices_per_site = 9;
    let per_site = 1 + devices_per_site * (1 + fanout.max(1));
    let sites = (n / per_site).max(1);
    let interfaces_per_device = fanout.max(1);
    let side = |target: bool| File {
        site: (0..sites)
            .map(|s| {
                let site = format!("site{s:06}");
                SiteRec {
                    name: site.clone(),
                    region: ["us-east", "eu-west", "ap-south"][s % 3].into(),
                    status: "active".into(),
                    devices: (0..devices_per_site)
                        .map(|d| {
                            let dev = format!("dev{d:04}");
                            let changed = target && (s * devices_per_site + d) % 60 == 0;
                            DeviceRec {
                                site: site.clone(),
                                name: dev.clone(),
                                role: if changed { "spine".into() } else { "leaf".into() },
                                model: "EX4300-48T".into(),
                                serial: format!("SN{s:06}{d:04}"),
                                status: "active".into(),
                                interfaces: (0..interfaces_per_device)
                                    .map(|i| i + usize::from(target && (s + d + i) % 30 == 0) * 1000)
                                    .map(|i| Interface {
                                        site: site.clone(),
                                        device: dev.clone(),
                                        name: format!("Ethernet1/{i}"),
                                        description: if target && (s + d + i) % 40 == 1 {
                                            "changed".into()
                                        } else {
                                            format!("port {i}")
                                        },
                                        mtu: 9216,
                                        enabled: true,
                                        mode: "access".into(),
                                    })
                                    .collect(),
                            }
                        })
                        .collect(),
                }
            })
            .collect(),
    };
    (side(false), side(true))
}
