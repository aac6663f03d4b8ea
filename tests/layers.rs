//! The top-level modules of `src/` form layers that point one way (lib.rs "Layout"):
//! a module may use modules of a lower layer, never one of its own layer or above. This
//! test reads every source file and fails naming the offending file and import, so an
//! import cycle (or an upward reference that would start one) cannot land.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Lowest first. Modules on one line are peers and may not use each other, except where
/// a later module of the line is listed as using an earlier one in `PEER_USES`.
const LAYERS: &[&[&str]] = &[
    &["model", "ops"],
    &["script"],
    &["profile"],
    &["config"],
    &["buffer"],
    &["pipeline"],
    &["southbound", "commands"],
    &["schedule"],
    &["northbound"],
    &["http"],
    &["app"],
    &["demo"],
    &["cli"],
];

fn rank(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level modules named after `crate::` in `text`, including `use crate::{a, b::c}`.
fn referenced(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // Top-level names of the group: identifiers at nesting depth 0.
            let mut depth = 0usize;
            let mut ident = String::new();
            let mut at_start = true;
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => at_start = true,
                    c if depth == 0 && at_start && (c.is_ascii_alphanumeric() || c == '_') => {
                        ident.push(c)
                    }
                    _ => {
                        if !ident.is_empty() {
                            found.insert(std::mem::take(&mut ident));
                        }
                        if !c.is_whitespace() {
                            at_start = false;
                        }
                    }
                }
            }
        } else {
            let ident: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            // `crate::failpoint!` is a macro exported at the crate root (defined in ops,
            // the lowest layer), not a module.
            let is_macro = rest[ident.len()..].starts_with('!');
            if !ident.is_empty() && !is_macro {
                found.insert(ident);
            }
        }
    }
    found
}

#[test]
fn no_top_level_module_uses_one_of_its_own_layer_or_above() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut violations = Vec::new();
    let mut unknown = BTreeSet::new();
    for file in &files {
        let rel = file.strip_prefix(&src).expect("under src");
        let first = rel.components().next().expect("component");
        let top = first
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if top == "lib" || top == "main" {
            continue;
        }
        let Some(own) = rank(&top) else {
            unknown.insert(top);
            continue;
        };
        let text = std::fs::read_to_string(file).expect("read source");
        for used in referenced(&text) {
            if used == top {
                continue;
            }
            match rank(&used) {
                Some(r) if r < own => {}
                Some(_) => violations.push(format!("{} uses crate::{used}", rel.display())),
                None => {
                    unknown.insert(used);
                }
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "modules missing from LAYERS (place them in tests/layers.rs): {unknown:?}"
    );
    assert!(
        violations.is_empty(),
        "imports that point up or sideways:\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_reference_scanner_reads_grouped_and_nested_imports() {
    let got =
        referenced("use crate::{model::{Kind, Value}, ops::counters};\nx = crate::buffer::Queue;");
    let want: BTreeSet<String> = ["model", "ops", "buffer"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(got, want);
}
