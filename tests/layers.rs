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

/// Cycles between the files of one module that exist today, each with the work that
/// removes it. A new cycle fails the test below; so does a cycle listed here that is gone
/// (take it off the list: the list only shrinks).
const KNOWN_FILE_CYCLES: &[(&str, &str)] = &[];

/// Every `.rs` file of `src/` by module path (`["southbound", "modbus", "link"]`).
fn module_files(src: &Path) -> Vec<(Vec<String>, PathBuf)> {
    let mut files = Vec::new();
    sources(src, &mut files);
    files.sort();
    let mut out: Vec<(Vec<String>, PathBuf)> = Vec::new();
    for file in files {
        let rel = file.strip_prefix(src).expect("under src");
        let mut parts: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        let last = parts.pop().expect("file name");
        match last.as_str() {
            "mod.rs" => {}
            "lib.rs" | "main.rs" if parts.is_empty() => continue,
            name => parts.push(name.trim_end_matches(".rs").to_string()),
        }
        if !out.iter().any(|(m, _)| *m == parts) {
            out.push((parts, file));
        }
    }
    out
}

/// The text before a file's `#[cfg(test)] mod tests` (tests may use anything).
fn without_tests(text: &str) -> &str {
    let mut from = 0;
    while let Some(i) = text[from..].find("#[cfg(test)]") {
        let at = from + i;
        let after = text[at + "#[cfg(test)]".len()..].trim_start();
        if after.starts_with("mod tests") {
            return &text[..at];
        }
        from = at + 1;
    }
    text
}

fn ident_at(s: &str) -> &str {
    let n = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..n]
}

/// The paths (`crate::a::b`, `super::x`, `self::y`, one level of `{…}` expanded) in
/// `text`, each as its head and segments.
fn paths(text: &str) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    for head in ["crate", "super", "self"] {
        let pat = format!("{head}::");
        let mut from = 0;
        while let Some(i) = text[from..].find(&pat) {
            let at = from + i;
            from = at + pat.len();
            let boundary = at == 0 || {
                let c = bytes[at - 1] as char;
                !(c.is_ascii_alphanumeric() || c == '_' || c == ':')
            };
            if !boundary {
                continue;
            }
            let mut rest = &text[at + pat.len()..];
            let mut segs = Vec::new();
            loop {
                let id = ident_at(rest);
                if id.is_empty() {
                    break;
                }
                segs.push(id.to_string());
                rest = &rest[id.len()..];
                match rest.strip_prefix("::") {
                    Some(r) => rest = r,
                    None => break,
                }
            }
            if let Some(group) = rest.strip_prefix('{') {
                let mut depth = 0usize;
                let mut item = String::new();
                let mut items = Vec::new();
                for c in group.chars() {
                    match c {
                        '{' => {
                            depth += 1;
                            item.push(c)
                        }
                        '}' if depth == 0 => break,
                        '}' => {
                            depth -= 1;
                            item.push(c)
                        }
                        ',' if depth == 0 => items.push(std::mem::take(&mut item)),
                        c => item.push(c),
                    }
                }
                items.push(item);
                for it in items {
                    let mut more = segs.clone();
                    more.extend(
                        it.trim()
                            .split("::")
                            .map(ident_at)
                            .take_while(|s| !s.is_empty())
                            .map(str::to_string),
                    );
                    out.push((head.to_string(), more));
                }
            } else {
                out.push((head.to_string(), segs));
            }
        }
    }
    out
}

/// Strongly connected components of more than one node (Tarjan), each sorted.
fn cycles(graph: &std::collections::BTreeMap<usize, BTreeSet<usize>>, n: usize) -> Vec<Vec<usize>> {
    struct T<'a> {
        g: &'a std::collections::BTreeMap<usize, BTreeSet<usize>>,
        idx: Vec<Option<usize>>,
        low: Vec<usize>,
        stack: Vec<usize>,
        on: Vec<bool>,
        next: usize,
        out: Vec<Vec<usize>>,
    }
    fn visit(t: &mut T, v: usize) {
        t.idx[v] = Some(t.next);
        t.low[v] = t.next;
        t.next += 1;
        t.stack.push(v);
        t.on[v] = true;
        let ws: Vec<usize> = t.g.get(&v).into_iter().flatten().copied().collect();
        for w in ws {
            match t.idx[w] {
                None => {
                    visit(t, w);
                    t.low[v] = t.low[v].min(t.low[w]);
                }
                Some(i) if t.on[w] => t.low[v] = t.low[v].min(i),
                Some(_) => {}
            }
        }
        if Some(t.low[v]) == t.idx[v] {
            let mut comp = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on[w] = false;
                comp.push(w);
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort_unstable();
                t.out.push(comp);
            }
        }
    }
    let mut t = T {
        g: graph,
        idx: vec![None; n],
        low: vec![0; n],
        stack: Vec::new(),
        on: vec![false; n],
        next: 0,
        out: Vec::new(),
    };
    for v in 0..n {
        if t.idx[v].is_none() {
            visit(&mut t, v);
        }
    }
    t.out
}

#[test]
fn no_new_import_cycle_between_the_files_of_one_module() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mods = module_files(&src);
    let find = |path: &[String]| {
        (1..=path.len())
            .rev()
            .find_map(|k| mods.iter().position(|(m, _)| m[..] == path[..k]))
    };
    let mut graph: std::collections::BTreeMap<usize, BTreeSet<usize>> = Default::default();
    for (i, (mp, file)) in mods.iter().enumerate() {
        if mp.is_empty() {
            continue;
        }
        let text = std::fs::read_to_string(file).expect("read source");
        for (head, segs) in paths(without_tests(&text)) {
            let mut segs: &[String] = &segs;
            let base: Vec<String> = match head.as_str() {
                "crate" => Vec::new(),
                "self" => mp.clone(),
                _ => {
                    // `super` of `a/b.rs` and of `a/b/mod.rs` alike is module `a`.
                    let mut b = mp[..mp.len() - 1].to_vec();
                    while segs.first().is_some_and(|s| s == "super") {
                        b.pop();
                        segs = &segs[1..];
                    }
                    b
                }
            };
            let full: Vec<String> = base.iter().chain(segs).cloned().collect();
            let Some(t) = find(&full) else { continue };
            let target = &mods[t].0;
            let ancestor = target.len() < mp.len() && mp[..target.len()] == target[..];
            if t != i && target.first() == mp.first() && !ancestor {
                graph.entry(i).or_default().insert(t);
            }
        }
    }
    let found: Vec<String> = cycles(&graph, mods.len())
        .into_iter()
        .map(|c| {
            c.iter()
                .map(|&v| mods[v].0.join("/"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    let known: Vec<String> = KNOWN_FILE_CYCLES
        .iter()
        .map(|(c, _)| c.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    let new: Vec<&String> = found.iter().filter(|c| !known.contains(c)).collect();
    let gone: Vec<&String> = known.iter().filter(|c| !found.contains(c)).collect();
    assert!(
        new.is_empty(),
        "import cycles between the files of one module (break them: a shared type goes to \
         the lower file, or to a leaf file of its own):\n{new:#?}"
    );
    assert!(
        gone.is_empty(),
        "cycles in KNOWN_FILE_CYCLES that no longer exist (take them off):\n{gone:#?}"
    );
}

#[test]
fn the_path_scanner_expands_groups_and_sees_super_and_self() {
    let got =
        paths("use super::{link::Link, plan};\nlet x = self::a::b;\nuse crate::m::{n, o::p};");
    let want: Vec<(String, Vec<String>)> = vec![
        ("crate".into(), vec!["m".into(), "n".into()]),
        ("crate".into(), vec!["m".into(), "o".into(), "p".into()]),
        ("super".into(), vec!["link".into(), "Link".into()]),
        ("super".into(), vec!["plan".into()]),
        ("self".into(), vec!["a".into(), "b".into()]),
    ];
    assert_eq!(got, want);
}
