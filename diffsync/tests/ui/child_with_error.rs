use diffsync::DiffModel;

// The child's attribute typo is the only error: the parent's
// `children(Port)` does not add a second one.
#[derive(DiffModel, Clone, Debug)]
#[diffsync(name = "switch", children(Port))]
struct Switch {
    #[diffsync(id)]
    name: String,
}

#[derive(DiffModel, Clone, Debug)]
#[diffsync(name = "port")]
struct Port {
    #[diffsync(idd)]
    name: String,
}

fn main() {}
