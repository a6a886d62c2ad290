//! The core's top-level modules import one way: no module reaches, through `crate::` paths,
//! a module that reaches it back. Read from the sources (tests and comments left out), so a
//! new import that closes a circle fails here with the circle named.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

type Graph = BTreeMap<String, BTreeSet<String>>;

#[test]
fn core_modules_import_one_way() {
    let graph = module_graph(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    assert!(graph.len() > 10, "modules not found: {graph:?}");
    for module in graph.keys() {
        if let Some(path) = path_back(&graph, module) {
            panic!("modules import each other: {}", path.join(" -> "));
        }
    }
}

#[test]
fn a_circle_is_found() {
    let graph: Graph = [("a", "b"), ("b", "c"), ("c", "a")]
        .into_iter()
        .map(|(from, to)| (from.to_owned(), BTreeSet::from([to.to_owned()])))
        .collect();
    assert_eq!(path_back(&graph, "a").unwrap(), ["a", "b", "c", "a"]);
}

/// Each top-level module (a `x.rs` or `x/` under `src`) → the other top-level modules its
/// files name as `crate::y`.
fn module_graph(src: &Path) -> Graph {
    let modules: BTreeSet<String> = std::fs::read_dir(src)
        .unwrap()
        .flatten()
        .map(|entry| {
            entry
                .file_name()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_owned()
        })
        .filter(|name| name != "lib")
        .collect();
    modules
        .iter()
        .map(|module| {
            let mut text = String::new();
            for file in rust_files(&src.join(module))
                .into_iter()
                .chain(Some(src.join(format!("{module}.rs"))).filter(|f| f.exists()))
            {
                text += &code_of(&std::fs::read_to_string(file).unwrap());
            }
            let named = modules
                .iter()
                .filter(|other| *other != module && names(&text, other))
                .cloned()
                .collect();
            (module.clone(), named)
        })
        .collect()
}

fn rust_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files = Vec::new();
    for path in entries.flatten().map(|entry| entry.path()) {
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            files.push(path);
        }
    }
    files
}

/// The source without comments and without what follows `#[cfg(test)]` (test modules come
/// last in this crate's files).
fn code_of(source: &str) -> String {
    let code = source.split("#[cfg(test)]").next().unwrap_or_default();
    code.lines()
        .map(|line| line.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Whether `text` names `module` as `crate::module` or inside `crate::{..}`.
fn names(text: &str, module: &str) -> bool {
    let direct = format!("crate::{module}");
    let is_end = |rest: &str| !rest.starts_with(|c: char| c.is_alphanumeric() || c == '_');
    let in_group = text.split("crate::{").skip(1).any(|group| {
        let group = group.split('}').next().unwrap_or_default();
        group
            .split(',')
            .any(|item| item.trim().split("::").next() == Some(module))
    });
    in_group
        || text
            .match_indices(&direct)
            .any(|(at, _)| is_end(&text[at + direct.len()..]))
}

/// A path from `start` through the graph back to `start`, if there is one.
fn path_back(graph: &Graph, start: &str) -> Option<Vec<String>> {
    let mut stack = vec![vec![start.to_owned()]];
    let mut seen = BTreeSet::new();
    while let Some(path) = stack.pop() {
        let last = path.last().unwrap();
        for next in graph.get(last).into_iter().flatten() {
            let mut longer = path.clone();
            longer.push(next.clone());
            if next == start {
                return Some(longer);
            }
            if seen.insert(next.clone()) {
                stack.push(longer);
            }
        }
    }
    None
}
