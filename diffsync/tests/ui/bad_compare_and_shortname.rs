use diffsync::DiffModel;

#[derive(DiffModel, Clone, Debug)]
#[diffsync(shortname(label), flags(IGNORED))]
struct Site {
    #[diffsync(id, compare = "ignore_case")]
    name: String,
    #[diffsync(compare = "fuzzy")]
    region: String,
}

fn main() {}
