//! The module map holds: dependencies between the crate's top-level modules point one way, down the
//! layers the crate docs show, with no cycle. Read from the source (every `crate::…` path outside
//! comments), so a new import that breaks the map fails here, not in a reviewer's head.
//!
//! Run it alone with `cargo test --test architecture`; `-- --nocapture` prints the graph.

#![allow(clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The layers, top first. A module may use modules of lower layers, and modules of its own layer as
/// long as no cycle forms. `backends` is held to `store` alone below.
const LAYERS: &[(&str, &[&str])] = &[
    ("entry points", &["lib", "mcp_oauth", "http", "fuzzing"]),
    ("features", &["pages", "console", "passkey", "cimd"]),
    ("protocol", &["oauth"]),
    ("the owner's presence", &["presence"]),
    (
        "shared rules",
        &[
            "audit",
            "config",
            "error",
            "paths",
            "rules",
            "clock",
            "caching",
            "telemetry",
        ],
    ),
    ("storage", &["store", "backends"]),
];

/// What each backend may use: the store contracts, nothing of the server.
const BACKENDS_MAY_USE: &[&str] = &["store"];

#[test]
fn module_dependencies_point_down_the_layers_without_a_cycle() {
    let graph = dependency_graph();
    println!("{}", render(&graph));
    let layer_of = |module: &str| {
        LAYERS
            .iter()
            .position(|(_, members)| members.contains(&module))
            .unwrap_or_else(|| panic!("module `{module}` is in no layer: add it to LAYERS and to the map in src/lib.rs"))
    };
    let mut upward = Vec::new();
    for (from, targets) in &graph {
        for to in targets {
            if layer_of(to) < layer_of(from) {
                upward.push(format!("{from} -> {to}"));
            }
        }
    }
    assert!(
        upward.is_empty(),
        "dependencies pointing up the layers: {upward:?}"
    );
    if let Some(cycle) = find_cycle(&graph) {
        panic!("a dependency cycle: {}", cycle.join(" -> "));
    }
    let backend_uses: Vec<_> = graph
        .get("backends")
        .into_iter()
        .flatten()
        .filter(|to| !BACKENDS_MAY_USE.contains(&to.as_str()))
        .collect();
    assert!(
        backend_uses.is_empty(),
        "backends use {backend_uses:?}; they may use only {BACKENDS_MAY_USE:?}"
    );
}

#[test]
fn the_checker_sees_imports_in_every_form() {
    let source = r#"use crate::store::{A, B};
use crate::{oauth::x, audit};
// crate::pages in a comment
fn f<'a>(x: &'a str) { crate::config::g("*/*", '"', "crate::cimd"); $crate::macro_only!(); }
/* crate::http */ fn g() { crate::error::h(r"crate::console") }
#[cfg(test)]
mod tests { fn t() { if x { crate::mcp_oauth::y(); } } }
#[cfg(all(test, feature = "memory"))]
mod more_tests { use crate::http::z; }
#[cfg(feature = "cimd")]
fn kept() { crate::cimd::w(); }
fn after_tests() { crate::rules::z(); }
"#;
    let found = paths_used(source, &BTreeMap::new());
    let expected: BTreeSet<String> = [
        "store", "oauth", "audit", "config", "error", "rules", "cimd",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(found, expected);
    let graph = BTreeMap::from([
        ("a".to_owned(), BTreeSet::from(["b".to_owned()])),
        ("b".to_owned(), BTreeSet::from(["a".to_owned()])),
    ]);
    assert_eq!(
        find_cycle(&graph),
        Some(vec!["a".into(), "b".into(), "a".into()])
    );
}

/// Top-level module -> the top-level modules its files use.
fn dependency_graph() -> BTreeMap<String, BTreeSet<String>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lib = fs::read_to_string(root.join("src/lib.rs")).expect("src/lib.rs");
    let reexports = root_reexports(&lib);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut files = Vec::new();
    collect_rust_files(&root.join("src"), &mut files);
    collect_rust_files(&root.join("storage-backends"), &mut files);
    for file in files.into_iter().filter(|file| !is_test_file(file)) {
        let module = top_level_module(root, &file);
        let source = fs::read_to_string(&file).expect("readable source");
        let mut used = paths_used(&source, &reexports);
        used.remove(&module);
        graph.entry(module).or_default().extend(used);
    }
    graph
}

/// A file of unit tests (`tests.rs`, `…_tests.rs`, or anything under a `tests/` folder), declared
/// under `#[cfg(test)]` by its parent; like test modules, not part of what ships.
fn is_test_file(file: &Path) -> bool {
    let stem = file.file_stem().unwrap_or_default().to_string_lossy();
    stem == "tests"
        || stem.ends_with("_tests")
        || file.components().any(|part| part.as_os_str() == "tests")
}

fn top_level_module(root: &Path, file: &Path) -> String {
    if file.starts_with(root.join("storage-backends")) {
        return "backends".to_owned();
    }
    let relative = file.strip_prefix(root.join("src")).expect("under src");
    let first = relative.components().next().expect("a path");
    let name = first.as_os_str().to_string_lossy();
    name.trim_end_matches(".rs").to_owned()
}

fn collect_rust_files(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("a readable directory") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            collect_rust_files(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}

/// `pub use module::{Name, …};` lines of lib.rs: which module a root name such as `crate::Error`
/// comes from.
fn root_reexports(lib: &str) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    let code = code_only(lib);
    for statement in code.split(';') {
        // Past any attributes (`#[cfg(feature = "memory")] pub use …`).
        let Some((_, rest)) = statement.split_once("pub use ") else {
            continue;
        };
        let Some((module, names)) = rest.split_once("::") else {
            continue;
        };
        for name in names.split(|c: char| !(c.is_alphanumeric() || c == '_')) {
            if name.starts_with(|c: char| c.is_uppercase()) {
                map.insert(name.to_owned(), module.trim().to_owned());
            }
        }
    }
    map
}

/// The top-level modules named by `crate::` paths in `source`, outside comments and unit-test
/// modules (a test may build the whole server; what ships is what the map is about).
fn paths_used(source: &str, reexports: &BTreeMap<String, String>) -> BTreeSet<String> {
    let code = without_test_modules(&code_only(source));
    let mut used = BTreeSet::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        let is_macro_crate = rest[..at].ends_with('$');
        let is_word_start = !rest[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_');
        rest = &rest[at + "crate::".len()..];
        if is_macro_crate || !is_word_start {
            continue;
        }
        let first_names = if let Some(group) = rest.strip_prefix('{') {
            top_level_names(group)
        } else {
            vec![leading_identifier(rest)]
        };
        for name in first_names {
            let module = reexports.get(&name).cloned().unwrap_or(name);
            if !module.is_empty() {
                used.insert(module);
            }
        }
    }
    used
}

/// `code` without test modules (`#[cfg(test)] mod … { … }`, also `#[cfg(all(test, …))]`);
/// comments and literals are already gone, so the braces balance.
fn without_test_modules(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(at) = rest.find("#[cfg(") {
        out.push_str(&rest[..at]);
        let attribute_end = rest[at..].find(']').map_or(rest.len(), |end| at + end + 1);
        let attribute = &rest[at..attribute_end];
        let after = &rest[attribute_end..];
        let for_tests = attribute
            .split(|c: char| !(c.is_alphanumeric() || c == '_'))
            .any(|word| word == "test");
        let open = after
            .find('{')
            .filter(|_| for_tests && after.trim_start().starts_with("mod "));
        let Some(open) = open else {
            out.push_str(attribute);
            rest = after;
            continue;
        };
        let mut depth = 0;
        let close = after[open..].char_indices().find_map(|(i, c)| {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                _ => {}
            }
            (depth == 0).then_some(open + i + 1)
        });
        rest = close.map_or("", |close| &after[close..]);
    }
    out.push_str(rest);
    out
}

/// The first path segment of each item in a `{…}` group (up to its closing brace).
fn top_level_names(group: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut depth = 0;
    let mut at_item_start = true;
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => at_item_start = true,
            c if at_item_start && depth == 0 && !c.is_whitespace() => {
                names.push(leading_identifier(&group[i..]));
                at_item_start = false;
            }
            _ => {}
        }
    }
    names
}

fn leading_identifier(text: &str) -> String {
    text.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// The code alone: no comments (doc comments included: their links are not dependencies) and no
/// string or character literals (a path in a string is not a dependency, and `"*/*"` is not the
/// start of a comment).
fn code_only(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(c) = rest.chars().next() {
        let after_word = out.ends_with(|c: char| c.is_alphanumeric() || c == '_');
        rest = if let Some(tail) = rest.strip_prefix("//") {
            tail.find('\n').map_or("", |at| &tail[at..])
        } else if let Some(tail) = rest.strip_prefix("/*") {
            tail.split_once("*/").map_or("", |(_, tail)| tail)
        } else if let Some(tail) = raw_string_start(rest).filter(|_| !after_word) {
            tail
        } else if let Some(tail) = rest.strip_prefix('"') {
            skip_quoted(tail, '"')
        } else if let Some(tail) = char_literal_end(rest) {
            tail
        } else {
            out.push(c);
            &rest[c.len_utf8()..]
        };
    }
    out
}

/// After a raw string (`r"…"`, `r#"…"#`, `br"…"`) that starts `text`.
fn raw_string_start(text: &str) -> Option<&str> {
    let text = text.strip_prefix('b').unwrap_or(text).strip_prefix('r')?;
    let hashes = text.len() - text.trim_start_matches('#').len();
    let body = text[hashes..].strip_prefix('"')?;
    let close = format!("\"{}", "#".repeat(hashes));
    Some(body.split_once(close.as_str()).map_or("", |(_, tail)| tail))
}

/// After a quoted literal whose opening quote is already consumed, escapes honoured.
fn skip_quoted(text: &str, quote: char) -> &str {
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        if c == '\\' {
            chars.next();
        } else if c == quote {
            return &text[i + 1..];
        }
    }
    ""
}

/// After a character literal (`'x'`, `'\''`) that starts `text`; `None` for a lifetime.
fn char_literal_end(text: &str) -> Option<&str> {
    let body = text.strip_prefix('\'')?;
    if body.starts_with('\\') {
        return Some(skip_quoted(body, '\''));
    }
    let c = body.chars().next()?;
    body[c.len_utf8()..].strip_prefix('\'')
}

/// A cycle in the graph, as the path that closes it, if there is one.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|n| n == node) {
            let mut cycle = path[start..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

fn render(graph: &BTreeMap<String, BTreeSet<String>>) -> String {
    graph
        .iter()
        .map(|(from, to)| {
            let to: Vec<_> = to.iter().map(String::as_str).collect();
            format!("{from} -> {}\n", to.join(", "))
        })
        .collect()
}
