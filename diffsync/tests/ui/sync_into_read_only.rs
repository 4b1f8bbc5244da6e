//! A read-only system (an `Adapter`, no `Sink`) cannot be synced into.
use diffsync::{Adapter, AdapterExt, LocalStore, MemoryAdapter};

struct Export(LocalStore);

impl Adapter for Export {
    type Store = LocalStore;
    fn store(&self) -> &LocalStore {
        &self.0
    }
    fn store_mut(&mut self) -> &mut LocalStore {
        &mut self.0
    }
}

fn main() {
    let cmdb = MemoryAdapter::new("cmdb", &["site"]);
    let mut export = Export(LocalStore::new("export"));
    let _ = export.diff_from(&cmdb);
    let _ = export.sync_from(&cmdb);
}
