use diffsync::DiffModel;

#[derive(DiffModel, Clone, Debug)]
#[diffsync(children(Devise))]
struct Site {
    #[diffsync(id)]
    name: String,
}

#[derive(Clone, Debug)]
struct Region;

#[derive(DiffModel, Clone, Debug)]
#[diffsync(children(Region))]
struct Area {
    #[diffsync(id)]
    name: String,
}

fn main() {}
