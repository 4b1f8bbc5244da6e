use diffsync::DiffModel;

#[derive(DiffModel, Clone, Debug)]
#[diffsync(name = "site", parent(Region))]
struct Site {
    #[diffsync(id, primary)]
    name: String,
}

fn main() {}
