use diffsync::DiffModel;

#[derive(Clone, Debug, PartialEq)]
struct Opaque;

#[derive(DiffModel, Clone, Debug)]
struct Site {
    #[diffsync(id)]
    name: String,
    secret: Opaque,
}

fn main() {}
