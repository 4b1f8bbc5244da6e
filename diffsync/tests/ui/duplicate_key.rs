use diffsync::DiffModel;

#[derive(DiffModel, Clone, Debug)]
#[diffsync(name = "site", name = "location")]
struct Site {
    #[diffsync(id, id)]
    name: String,
}

fn main() {}
