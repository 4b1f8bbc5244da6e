//! The core in true layers: each top-level module of `diffsync/src`
//! imports only modules of the layers before its own (the two modules of a
//! pair may import each other), and the README's Layout section lists the
//! layers in this order.

/// The layers, lowest first; a layer of two is a pair.
const LAYERS: &[&[&str]] = &[
    &["flags"],
    &["key"],
    &["chunked"],
    &["strategy_spec"],
    &["model", "digest"],
    &["store"],
    &["feed"],
    &["diff"],
    &["options"],
    &["render"],
    &["report", "error"],
    &["differ"],
    &["sync"],
    &["hooks"],
    &["bidir"],
    &["guide"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

/// Each top-level module's source, comments left out.
fn modules() -> std::collections::BTreeMap<String, String> {
    fn walk(dir: &std::path::Path, root: &std::path::Path, out: &mut std::collections::BTreeMap<String, String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, root, out);
                continue;
            }
            if path.extension().and_then(|e| e.to_str()) != Some("rs") {
                continue;
            }
            let rel = path.strip_prefix(root).unwrap();
            let top = rel.components().next().unwrap().as_os_str().to_string_lossy();
            let top = top.trim_end_matches(".rs").to_string();
            if top == "lib" {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let code: String = text
                .lines()
                .map(|l| l.split_once("//").map_or(l, |(code, _)| code))
                .collect::<Vec<_>>()
                .join("\n");
            out.entry(top).or_default().push_str(&code);
        }
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../diffsync/src");
    let mut out = std::collections::BTreeMap::new();
    walk(&root, &root, &mut out);
    out
}

/// The modules a module's code names as `crate::NAME` or in `crate::{..}`.
fn imports(code: &str, names: &[&String]) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        let words: Vec<&str> = if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            group[..end]
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .collect()
        } else {
            vec![
                rest.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .next()
                    .unwrap_or(""),
            ]
        };
        for w in words {
            if names.iter().any(|n| n.as_str() == w) {
                out.insert(w.to_string());
            }
        }
    }
    out
}

#[test]
fn each_core_module_imports_only_the_layers_below_it() {
    let modules = modules();
    let names: Vec<&String> = modules.keys().collect();
    let mut wrong = Vec::new();
    for (module, code) in &modules {
        let Some(mine) = layer_of(module) else {
            wrong.push(format!(
                "{module} is in no layer: place it in LAYERS and in the README's Layout"
            ));
            continue;
        };
        for used in imports(code, &names) {
            if used == *module {
                continue;
            }
            match layer_of(&used) {
                Some(theirs) if theirs <= mine => {}
                _ => wrong.push(format!("{module} imports {used}, a layer above it")),
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[test]
fn the_readme_lists_the_layers_in_their_order() {
    let readme =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md")).unwrap();
    let row = readme
        .lines()
        .find(|l| l.starts_with("| `diffsync/` |"))
        .expect("the Layout row of diffsync/");
    let mut at = 0;
    for name in LAYERS.iter().flat_map(|l| l.iter()) {
        let found = [format!("`{name}`"), format!("`{name}/`")]
            .iter()
            .filter_map(|n| row[at..].find(n.as_str()).map(|i| at + i))
            .min();
        match found {
            Some(i) => at = i,
            None => panic!("the README's Layout row lists {name:?} out of order, or not at all: {row}"),
        }
    }
}
