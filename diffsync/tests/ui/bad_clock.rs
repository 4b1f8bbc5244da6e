use diffsync::DiffModel;

#[derive(DiffModel, Clone, Debug)]
struct Setting {
    #[diffsync(id, timestamp)]
    key: String,
    #[diffsync(timestamp)]
    changed_at: i64,
    #[diffsync(timestamp)]
    touched_at: i64,
    #[diffsync(skip, version)]
    revision: u32,
}

fn main() {}
