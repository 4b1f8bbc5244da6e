use diffsync::DiffModel;

#[derive(DiffModel, Clone, Debug)]
struct Site {
    name: String,
}

fn main() {}
