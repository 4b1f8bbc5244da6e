use diffsync::DiffModel;

// A key's text is `type:id`: a type name with `:` would not read back.
#[derive(DiffModel, Clone, Debug)]
#[diffsync(name = "net:vlan")]
struct Vlan {
    #[diffsync(id)]
    vid: u16,
}

#[derive(DiffModel, Clone, Debug)]
#[diffsync(name = "")]
struct Nameless {
    #[diffsync(id)]
    id: u16,
}

fn main() {}
