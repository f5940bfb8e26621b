//! The layering of `docs/ARCHITECTURE.md`, held against the code: every
//! `crate::MODULE` a library file uses must stand in the same or a lower layer than
//! the file's own module, and no modules use each other round a loop. The table is
//! read from the document itself, so the picture and the test cannot drift apart.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Uses that break the table on `main` today, each removed by the branch named. The
/// test fails when one of them is gone, so that this list only shrinks: delete the
/// row in the commit that removes the use.
const KNOWN: &[(&str, &str, &str)] = &[];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The layer table of ARCHITECTURE.md: module → layer.
fn layers() -> BTreeMap<String, u32> {
    let doc = fs::read_to_string(root().join("docs/ARCHITECTURE.md")).unwrap();
    let start = doc
        .find("<!-- layers:")
        .expect("docs/ARCHITECTURE.md has the `<!-- layers: … -->` marker before its table");
    let mut out = BTreeMap::new();
    for line in doc[start..].lines().skip(1) {
        let line = line.trim();
        if !line.starts_with('|') {
            break;
        }
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let Ok(layer) = cells[1].parse::<u32>() else {
            continue; // the header and the separator
        };
        for name in cells[2].split(',') {
            let name = name.trim().trim_matches('`');
            assert!(
                out.insert(name.to_string(), layer).is_none(),
                "`{name}` stands in two rows of the layer table"
            );
        }
    }
    assert!(!out.is_empty(), "no layer table after the marker");
    out
}

/// The modules `src/lib.rs` declares.
fn lib_modules() -> BTreeSet<String> {
    let lib = fs::read_to_string(root().join("src/lib.rs")).unwrap();
    lib.lines()
        .filter_map(|l| {
            let l = l.trim();
            let rest = l
                .strip_prefix("pub mod ")
                .or_else(|| l.strip_prefix("mod "))?;
            Some(rest.trim_end_matches(';').trim().to_string())
        })
        .collect()
}

/// Every `.rs` file below `dir`.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    crate::util::walk(dir)
        .into_iter()
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "rs"))
        .collect()
}

/// The code of a file without its `//` comments (doc comments name modules in links
/// without using them). A `//` inside a string literal cuts the rest of that line,
/// which can only hide a use, never invent one.
fn without_comments(text: &str) -> String {
    text.lines()
        .map(|l| l.find("//").map_or(l, |at| &l[..at]))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The first path segments named after each `crate::` in `code`: `crate::a::b` gives
/// `a`, `crate::{a::b, c}` gives `a` and `c`.
fn crate_uses(code: &str) -> BTreeSet<String> {
    let ident = |s: &str| -> String {
        s.trim_start()
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut out = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        // `$crate::` in a macro and `pub(crate)` are no uses of a module.
        if at > 0 && code.as_bytes()[at - 1] == b'$' {
            continue;
        }
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // Top-level items of the group: split at commas outside nested braces.
            let mut depth = 0;
            let mut item = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        out.insert(ident(&item));
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                item.push(c);
            }
            out.insert(ident(&item));
        } else {
            out.insert(ident(rest));
        }
    }
    out.remove("");
    out
}

/// Module → (used module → files that use it), for every library file.
fn uses(modules: &BTreeSet<String>) -> BTreeMap<String, BTreeMap<String, BTreeSet<String>>> {
    let src = root().join("src");
    let mut out: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for file in rust_files(&src) {
        let rel = file.strip_prefix(&src).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let module = first.trim_end_matches(".rs").to_string();
        if !modules.contains(&module) {
            continue; // lib.rs, and the binary (main.rs, cli/)
        }
        let code = without_comments(&fs::read_to_string(&file).unwrap());
        for used in crate_uses(&code) {
            if used != module && modules.contains(&used) {
                out.entry(module.clone())
                    .or_default()
                    .entry(used)
                    .or_default()
                    .insert(format!("src/{}", rel.display()));
            }
        }
    }
    out
}

/// A loop of modules in `edges`, if there is one.
fn find_loop(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    // Depth-first search (the graph has a few dozen modules); `path` is the current chain.
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        done: &mut BTreeSet<String>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, edges, done, path) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for start in edges.keys() {
        if let Some(c) = visit(start, edges, &mut done, &mut Vec::new()) {
            return Some(c);
        }
    }
    None
}

#[test]
fn imports_follow_the_layers_of_architecture_md() {
    let table = layers();
    let modules = lib_modules();
    let binary: BTreeSet<String> = ["main", "cli"].map(String::from).into();
    for m in &modules {
        assert!(
            table.contains_key(m),
            "src/lib.rs declares `{m}`, which no row of the layer table in docs/ARCHITECTURE.md names: put it in its layer"
        );
    }
    for m in table.keys() {
        assert!(
            modules.contains(m) || binary.contains(m),
            "the layer table in docs/ARCHITECTURE.md names `{m}`, which is no module of src/lib.rs: remove or rename it"
        );
    }

    let uses = uses(&modules);
    let known: BTreeSet<(&str, &str)> = KNOWN.iter().map(|(a, b, _)| (*a, *b)).collect();
    let mut broken = Vec::new();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, used) in &uses {
        for (other, files) in used {
            if known.contains(&(module.as_str(), other.as_str())) {
                continue;
            }
            edges
                .entry(module.clone())
                .or_default()
                .insert(other.clone());
            if table[other] > table[module] {
                broken.push(format!(
                    "{module} (layer {}) uses {other} (layer {}) in {}",
                    table[module],
                    table[other],
                    files.iter().cloned().collect::<Vec<_>>().join(", ")
                ));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "uses against the layer table of docs/ARCHITECTURE.md (a module may use its own layer and lower ones):\n  {}",
        broken.join("\n  ")
    );
    if let Some(cycle) = find_loop(&edges) {
        panic!(
            "modules use each other round a loop: {}",
            cycle.join(" -> ")
        );
    }
    let gone: Vec<String> = KNOWN
        .iter()
        .filter(|(a, b, _)| !uses.get(*a).is_some_and(|u| u.contains_key(*b)))
        .map(|(a, b, why)| format!("{a} -> {b} ({why})"))
        .collect();
    assert!(
        gone.is_empty(),
        "known violations that are gone: delete them from KNOWN in tests/architecture/mod.rs:\n  {}",
        gone.join("\n  ")
    );
}

#[test]
fn the_use_scanner_reads_groups_paths_and_skips_comments() {
    let code = without_comments(
        "use crate::a::B;\nuse crate::{b::{C, D}, c, d::E as F};\nlet x = crate::e::f();\n\
         // crate::g is only a comment\n/// [`crate::h`] a doc link\n$crate::i!();\npub(crate) fn j() {}",
    );
    let got: Vec<String> = crate_uses(&code).into_iter().collect();
    assert_eq!(got, ["a", "b", "c", "d", "e"]);
    let edges: BTreeMap<String, BTreeSet<String>> = [
        ("x".to_string(), ["y".to_string()].into()),
        ("y".to_string(), ["z".to_string()].into()),
        ("z".to_string(), ["x".to_string()].into()),
    ]
    .into();
    assert_eq!(find_loop(&edges).unwrap(), ["x", "y", "z", "x"]);
    let no_loop: BTreeMap<String, BTreeSet<String>> =
        [("x".to_string(), ["y".to_string()].into())].into();
    assert_eq!(find_loop(&no_loop), None);
}
