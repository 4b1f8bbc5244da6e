use diffsync::DiffModel;

#[derive(DiffModel, Clone, Debug)]
#[diffsync(children(Vec<Device>, "interface"))]
struct Site {
    #[diffsync(id)]
    name: String,
}

#[derive(DiffModel, Clone, Debug)]
enum Device {
    Router,
}

fn main() {}
