//! The layout shows the pipeline: the top-level modules of `src/` depend on each other in one
//! direction only (sources → transforms → sinks), read off their `crate::` paths. A module
//! that reaches back up the pipeline (an import cycle) fails here with the files that do it.
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Top-level module → the modules it names through `crate::`, with one file that does.
fn dependencies() -> BTreeMap<String, BTreeMap<String, PathBuf>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut deps: BTreeMap<String, BTreeMap<String, PathBuf>> = BTreeMap::new();
    for file in files {
        let relative = file.strip_prefix(&src).unwrap();
        let first = relative.components().next().unwrap().as_os_str();
        let module = first.to_str().unwrap().trim_end_matches(".rs").to_string();
        let text = std::fs::read_to_string(&file).unwrap();
        for (i, _) in text.match_indices("crate::") {
            let name: String = text[i + 7..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() && name != module {
                deps.entry(module.clone())
                    .or_default()
                    .entry(name)
                    .or_insert_with(|| relative.to_path_buf());
            }
        }
    }
    deps
}

#[test]
fn top_level_modules_form_no_import_cycle() {
    let deps = dependencies();
    // depth-first search for a back edge, reporting the cycle it closes
    fn visit(
        module: &str,
        deps: &BTreeMap<String, BTreeMap<String, PathBuf>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) {
        if done.contains(module) {
            return;
        }
        if let Some(at) = path.iter().position(|m| m == module) {
            let cycle: Vec<String> = path[at..]
                .iter()
                .zip(path[at + 1..].iter().chain([&module.to_string()]))
                .map(|(a, b)| format!("{a} → {b} ({})", deps[a][b].display()))
                .collect();
            panic!("import cycle: {}", cycle.join(", "));
        }
        path.push(module.to_string());
        for next in deps.get(module).into_iter().flat_map(|d| d.keys()) {
            visit(next, deps, path, done);
        }
        path.pop();
        done.insert(module.to_string());
    }
    let mut done = BTreeSet::new();
    for module in deps.keys() {
        visit(module, &deps, &mut Vec::new(), &mut done);
    }
}

#[test]
fn the_sink_and_the_sources_know_nothing_of_the_pipeline() {
    let deps = dependencies();
    for (module, forbidden) in [
        ("serve", ["pipeline", "app", "ingest", "lm", "encode"]),
        ("ingest", ["pipeline", "app", "serve", "lm", "encode"]),
    ] {
        for name in forbidden {
            let file = deps.get(module).and_then(|d| d.get(name));
            assert!(file.is_none(), "{module} uses {name} in {file:?}");
        }
    }
}
