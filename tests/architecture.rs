//! The library's layering, read from the source: nothing below the app layer (`src/cli/`)
//! imports it, and the library's files (modules) import each other without a loop.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The code of a file without its unit tests (which may use anything): a `*_tests.rs` file
/// is all tests.
fn code(path: &Path) -> String {
    if path.to_string_lossy().ends_with("_tests.rs") {
        return String::new();
    }
    let s = std::fs::read_to_string(path).unwrap();
    match s.find("#[cfg(test)]\nmod tests") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// The top-level modules `src` names: `crate::m` paths and `use crate::{m, ...}` lists.
fn modules_named(src: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    for (i, _) in src.match_indices("crate::") {
        let rest = &src[i + 7..];
        if let Some(list) = rest.strip_prefix('{') {
            let list = &list[..list.find('}').unwrap_or(list.len())];
            out.extend(list.split(',').map(|m| ident(m.trim())));
        } else {
            out.insert(ident(rest));
        }
    }
    out.retain(|m| !m.is_empty() && m.chars().next().is_some_and(|c| c.is_ascii_lowercase()));
    out
}

/// Top-level library module of each file under src/ (None for the crate root and the app).
fn top_module(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel.components().next()?.as_os_str().to_str()?.to_string();
    let name = first.trim_end_matches(".rs").to_string();
    (!["lib", "main", "cli"].contains(&name.as_str())).then_some(name)
}

fn import_graph() -> BTreeMap<String, BTreeMap<String, Vec<PathBuf>>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeMap<String, Vec<PathBuf>>> = BTreeMap::new();
    for f in files {
        let Some(m) = top_module(&src, &f) else {
            continue;
        };
        for used in modules_named(&code(&f)) {
            if used != m {
                let e = graph.entry(m.clone()).or_default();
                e.entry(used).or_default().push(f.clone());
            }
        }
    }
    graph
}

#[test]
fn no_library_module_imports_the_app_layer() {
    let graph = import_graph();
    let offenders: Vec<_> = graph
        .iter()
        .filter_map(|(m, uses)| uses.get("cli").map(|files| (m, files)))
        .collect();
    assert!(
        offenders.is_empty(),
        "the library imports the CLI: {offenders:?}"
    );
}

/// The file a module path (`a::b::item`, from src/) names: the longest prefix that is a file.
fn file_of(src: &Path, parts: &[&str]) -> Option<PathBuf> {
    (1..=parts.len()).rev().find_map(|k| {
        let base = parts[..k].iter().fold(src.to_path_buf(), |p, s| p.join(s));
        let file = base.with_extension("rs");
        if file.is_file() {
            return Some(file);
        }
        let m = base.join("mod.rs");
        m.is_file().then_some(m)
    })
}

/// The files a library file imports, through `crate::` and `super::` paths and lists.
fn files_imported(src: &Path, file: &Path) -> BTreeSet<PathBuf> {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut module: Vec<String> = rel.iter().map(|c| c.to_string_lossy().into()).collect();
    if module.last().is_some_and(|m| m == "mod") {
        module.pop();
    }
    let parent = &module[..module.len().saturating_sub(1)];
    let text = code(file);
    let mut out = BTreeSet::new();
    for (root, base) in [("crate::", &[][..]), ("super::", parent)] {
        for (i, _) in text.match_indices(root) {
            let rest = &text[i + root.len()..];
            let mut paths: Vec<String> = Vec::new();
            if let Some(list) = rest.strip_prefix('{') {
                let list = &list[..list.find('}').unwrap_or(list.len())];
                paths.extend(list.split(',').map(|p| p.trim().to_string()));
            } else {
                let end = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                    .unwrap_or(rest.len());
                paths.push(rest[..end].to_string());
            }
            for p in paths {
                let mut parts: Vec<&str> = base.iter().map(|s| s.as_str()).collect();
                parts.extend(p.split("::").filter(|s| !s.is_empty() && !s.contains(' ')));
                if let Some(f) = file_of(src, &parts) {
                    if f != file {
                        out.insert(f);
                    }
                }
            }
        }
    }
    out
}

/// A loop among `imports` (file -> the files it imports), as its path, if there is one.
fn find_loop(imports: &BTreeMap<PathBuf, BTreeSet<PathBuf>>) -> Option<Vec<PathBuf>> {
    fn visit(
        f: &PathBuf,
        imports: &BTreeMap<PathBuf, BTreeSet<PathBuf>>,
        path: &mut Vec<PathBuf>,
        done: &mut BTreeSet<PathBuf>,
    ) -> Option<Vec<PathBuf>> {
        if let Some(i) = path.iter().position(|p| p == f) {
            let mut cycle = path[i..].to_vec();
            cycle.push(f.clone());
            return Some(cycle);
        }
        if done.contains(f) {
            return None;
        }
        path.push(f.clone());
        for next in imports.get(f).into_iter().flatten() {
            if let Some(c) = visit(next, imports, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(f.clone());
        None
    }
    let mut done = BTreeSet::new();
    imports
        .keys()
        .find_map(|f| visit(f, imports, &mut Vec::new(), &mut done))
}

/// Every library file (module) imports others without a loop, so the library reads bottom up.
/// (Top-level folders are not layers: the INT8 scheme in `quant/int8.rs` sits below the GPU
/// kernels in `ops/` that implement it, and the quantization algorithms above them.)
#[test]
fn library_files_import_each_other_without_a_loop() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.retain(|f| top_module(&src, f).is_some());
    let imports: BTreeMap<PathBuf, BTreeSet<PathBuf>> = files
        .iter()
        .map(|f| (f.clone(), files_imported(&src, f)))
        .collect();
    if let Some(cycle) = find_loop(&imports) {
        let names: Vec<_> = cycle
            .iter()
            .map(|f| f.strip_prefix(&src).unwrap())
            .collect();
        panic!("library files import each other in a loop: {names:?}");
    }
    // The scan sees imports at all: the INT8 model file reads the graph.
    let q = src.join("quant/model.rs");
    assert!(
        imports[&q].contains(&src.join("graph/mod.rs")),
        "{:?}",
        imports[&q]
    );
}

#[test]
fn a_loop_is_found() {
    let f = |s: &str| PathBuf::from(s);
    let mut g: BTreeMap<PathBuf, BTreeSet<PathBuf>> = BTreeMap::new();
    g.insert(f("a"), [f("b")].into());
    g.insert(f("b"), [f("c")].into());
    g.insert(f("c"), BTreeSet::new());
    assert_eq!(find_loop(&g), None);
    g.get_mut(&f("c")).unwrap().insert(f("a"));
    assert_eq!(find_loop(&g), Some(vec![f("a"), f("b"), f("c"), f("a")]));
}

/// The scan itself: it sees `crate::` paths and `use crate::{..}` lists.
#[test]
fn the_scan_finds_paths_and_lists() {
    let found = modules_named("use crate::{data, gpu::Gpu};\nlet x = crate::eval::run();");
    let want: BTreeSet<String> = ["data", "gpu", "eval"].map(String::from).into();
    assert_eq!(found, want);
}
