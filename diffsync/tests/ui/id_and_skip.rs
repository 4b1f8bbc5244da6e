use diffsync::DiffModel;

#[derive(DiffModel, Clone, Debug)]
struct Site {
    #[diffsync(id, skip)]
    name: String,
    #[diffsync(children)]
    devices: Vec<String>,
}

fn main() {}
