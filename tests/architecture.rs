//! The shape of the code, checked: arrows point one way. Read from the sources, as a person
//! would: every `crate::a::b` and `super::x` path in `src/` (outside the binaries).
//!
//! 1. Only the daemon's and the bus adapters' modules name `crate::daemon` or `crate::bus`
//!    (the daemon composes; the domains never reach back up to it or to D-Bus).
//! 2. No two files import each other.
//! 3. The top-level modules import each other without a cycle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Module = Vec<String>;

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

/// `src/a/b.rs` and `src/a/b/mod.rs` → `a::b`.
fn module_of(src: &Path, file: &Path) -> Module {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut m: Module = rel
        .iter()
        .map(|c| c.to_string_lossy().into_owned())
        .collect();
    if m.last().is_some_and(|l| l == "mod") {
        m.pop();
    }
    m
}

/// The paths after each occurrence of `prefix` (`crate::` or `super::`), as segments.
fn paths_after(code: &str, prefix: &str) -> Vec<Module> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find(prefix) {
        let before = rest[..i].chars().last();
        rest = &rest[i + prefix.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let mut segs = Vec::new();
        let mut s = rest;
        loop {
            let n = s
                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .unwrap_or(s.len());
            if n == 0 {
                break;
            }
            segs.push(s[..n].to_string());
            if s[n..].starts_with("::") {
                s = &s[n + 2..];
            } else {
                break;
            }
        }
        out.push(segs);
    }
    out
}

fn without_comments(code: &str) -> String {
    code.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// File module → the modules (files) it names.
fn graph() -> BTreeMap<Module, BTreeSet<Module>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let modules: BTreeSet<Module> = files.iter().map(|f| module_of(&src, f)).collect();
    let longest_known = |mut p: Module| {
        while !p.is_empty() && !modules.contains(&p) {
            p.pop();
        }
        p
    };
    let mut g = BTreeMap::new();
    for f in &files {
        let me = module_of(&src, f);
        if matches!(me.first().map(String::as_str), Some("bin" | "main" | "lib")) {
            continue;
        }
        let code = without_comments(&std::fs::read_to_string(f).unwrap());
        let mut to = BTreeSet::new();
        for p in paths_after(&code, "crate::") {
            to.insert(longest_known(p));
        }
        // `super::x` from `a/b.rs` (module a::b) is a::x; from `a/mod.rs` (module a) it
        // is the parent's x.
        let parent: Module = me[..me.len().saturating_sub(1)].to_vec();
        for p in paths_after(&code, "super::") {
            let mut full = parent.clone();
            full.extend(p.into_iter().filter(|s| s != "super"));
            to.insert(longest_known(full));
        }
        to.retain(|t| !t.is_empty() && *t != me && !me.starts_with(t));
        g.insert(me, to);
    }
    g
}

#[test]
fn only_the_daemon_and_the_bus_name_the_daemon_or_the_bus() {
    let mut wrong = Vec::new();
    for (from, tos) in graph() {
        let top = from[0].as_str();
        if top == "daemon" || top == "bus" {
            continue;
        }
        for to in tos {
            if matches!(to[0].as_str(), "daemon" | "bus") {
                wrong.push(format!("{} -> {}", from.join("::"), to.join("::")));
            }
        }
    }
    assert!(wrong.is_empty(), "wrong-way imports:\n{}", wrong.join("\n"));
}

#[test]
fn no_two_files_import_each_other() {
    let g = graph();
    let mut pairs = Vec::new();
    for (a, tos) in &g {
        for b in tos {
            if a < b && g.get(b).is_some_and(|back| back.contains(a)) {
                pairs.push(format!("{} <-> {}", a.join("::"), b.join("::")));
            }
        }
    }
    assert!(
        pairs.is_empty(),
        "files that import each other:\n{}",
        pairs.join("\n")
    );
}

#[test]
fn the_top_level_modules_have_no_cycle() {
    let mut top: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (from, tos) in graph() {
        let entry = top.entry(from[0].clone()).or_default();
        for to in tos {
            if to[0] != from[0] {
                entry.insert(to[0].clone());
            }
        }
    }
    // Depth-first search; a module met again on the current path closes a cycle.
    fn visit(
        m: &str,
        top: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
        cycles: &mut Vec<String>,
    ) {
        if let Some(i) = path.iter().position(|p| p == m) {
            cycles.push(format!("{} -> {m}", path[i..].join(" -> ")));
            return;
        }
        if !done.insert(m.to_string()) {
            return;
        }
        path.push(m.to_string());
        for next in top.get(m).into_iter().flatten() {
            visit(next, top, path, done, cycles);
        }
        path.pop();
    }
    let mut cycles = Vec::new();
    let mut done = BTreeSet::new();
    for m in top.keys() {
        visit(m, &top, &mut Vec::new(), &mut done, &mut cycles);
    }
    assert!(
        cycles.is_empty(),
        "cycles between top-level modules:\n{}",
        cycles.join("\n")
    );
    // The test itself must see the modules, or it checks nothing.
    assert!(
        top.contains_key("daemon") && top["daemon"].contains("tutor"),
        "{top:?}"
    );
}
