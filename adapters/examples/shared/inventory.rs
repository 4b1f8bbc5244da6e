//! The inventory the file and SQLite examples share: three model types and
//! a first version of the file.

use diffsync::DiffModel;
use diffsync_adapters::Registry;
use serde::{Deserialize, Serialize};

#[derive(DiffModel, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[diffsync(name = "site", children(Device))]
pub struct Site {
    #[diffsync(id)]
    pub name: String,
    pub region: String,
}

#[derive(DiffModel, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[diffsync(name = "device", children(Interface), shortname(name))]
pub struct Device {
    #[diffsync(id)]
    pub site: String,
    #[diffsync(id)]
    pub name: String,
    pub role: String,
    pub serial: Option<String>,
}

#[derive(DiffModel, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[diffsync(name = "interface", shortname(name))]
pub struct Interface {
    #[diffsync(id)]
    pub device: String,
    #[diffsync(id)]
    pub name: String,
    pub description: String,
    pub mtu: i64,
    pub enabled: bool,
}

pub const FIRST: &str = r#"{"site": [
  {"name": "nyc", "region": "us-east", "device": [
    {"site": "nyc", "name": "nyc-core1", "role": "core", "serial": "FDO2231X0AB", "interface": [
      {"device": "nyc-core1", "name": "Ethernet1/1", "description": "uplink", "mtu": 9216, "enabled": true},
      {"device": "nyc-core1", "name": "Ethernet1/2", "description": "rack A12", "mtu": 9216, "enabled": true}]},
    {"site": "nyc", "name": "nyc-edge1", "role": "edge", "serial": null, "interface": [
      {"device": "nyc-edge1", "name": "Ethernet1/1", "description": "transit", "mtu": 1500, "enabled": true}]}]},
  {"name": "lon", "region": "eu-west", "device": [
    {"site": "lon", "name": "lon-core1", "role": "core", "serial": "FDO2231X0AD", "interface": [
      {"device": "lon-core1", "name": "Ethernet1/1", "description": "uplink", "mtu": 9216, "enabled": true}]}]}
]}"#;

/// The three types, for the adapters.
pub fn registry() -> Registry {
    Registry::new().with::<Site>().with::<Device>().with::<Interface>()
}
