use diffsync::{DiffModel, LocalStore};

#[derive(DiffModel, Clone, Debug)]
#[diffsync(name = "site")]
struct Site {
    #[diffsync(id)]
    name: String,
}

#[derive(DiffModel, Clone, Debug)]
#[diffsync(name = "device")]
struct Device {
    #[diffsync(id)]
    name: String,
}

fn main() {
    let store = LocalStore::new("inventory");
    // A device's key cannot fetch a site.
    let _site: &Site = store.get(&Device::key("nyc-r1")).unwrap();
}
