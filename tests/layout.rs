//! The map at the top of `src/lib.rs` (and in the README) holds: every module imports only
//! from the layers below its own, and inside a folder no file imports its folder's `mod.rs`
//! nor, through its siblings, itself. Read from the source: the `crate::` and `super::` paths
//! of every file outside its unit tests.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

/// The layers from the top down, as the map in `src/lib.rs` lists them; a module may import
/// only from a later row. The first rows are the map's folders, in its order.
const LAYERS: &[&[&str]] = &[
    &["serve"],
    &["pool"],
    &["config"],
    &["wire", "relay"],
    &["threads"],
    &["log", "counters", "stream"],
    &["sys", "addr", "end", "deadline"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|row| row.contains(&module))
}

/// The source of a file without its unit tests (`#[cfg(test)]` then `mod tests`, at the end).
fn without_tests(text: &str) -> &str {
    let mut from = 0;
    while let Some(at) = text[from..].find("#[cfg(test)]") {
        let at = from + at;
        let after = text[at + "#[cfg(test)]".len()..].trim_start();
        if after.starts_with("mod tests") {
            return &text[..at];
        }
        from = at + 1;
    }
    text
}

fn ident(text: &str) -> &str {
    let end = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    &text[..end]
}

/// The byte ranges of the modules written inline in a file (`mod name {...}`), where
/// `super::` means the file itself.
fn inline_modules(text: &str) -> Vec<std::ops::Range<usize>> {
    let mut ranges = Vec::new();
    for (at, _) in text.match_indices("mod ") {
        let rest = &text[at + 4..];
        let name = ident(rest);
        if name.is_empty() || !rest[name.len()..].trim_start().starts_with('{') {
            continue;
        }
        let open = at + 4 + rest.find('{').unwrap();
        let mut depth = 0;
        for (i, c) in text[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        ranges.push(at..open + i);
                        break;
                    }
                }
                _ => {}
            }
        }
    }
    ranges
}

/// The first names after each `prefix` (`crate::`, `super::`): `a` of `prefix a::b`, and
/// `a` and `b` of `prefix {a::x, b}`; none from the inline modules `skip`.
fn names_after<'a>(text: &'a str, prefix: &str, skip: &[std::ops::Range<usize>]) -> Vec<&'a str> {
    let mut names = Vec::new();
    for (at, _) in text.match_indices(prefix) {
        if skip.iter().any(|r| r.contains(&at)) {
            continue;
        }
        let rest = &text[at + prefix.len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0;
            let mut start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => start = true,
                    c if start && depth == 0 && !c.is_whitespace() => {
                        names.push(ident(&group[i..]));
                        start = false;
                    }
                    _ => {}
                }
            }
        } else {
            names.push(ident(rest));
        }
    }
    names.retain(|n| !n.is_empty() && *n != "self");
    names
}

/// Every source file under `src/` as (path below `src/`, text without unit tests).
fn sources() -> Vec<(String, String)> {
    fn walk(dir: &Path, base: &Path, out: &mut Vec<(String, String)>) {
        let mut entries: Vec<_> = fs::read_dir(dir)
            .expect("read src")
            .map(|e| e.expect("entry").path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                walk(&path, base, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = fs::read_to_string(&path).expect("read a source file");
                let name = path
                    .strip_prefix(base)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.push((name, without_tests(&text).to_owned()));
            }
        }
    }
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Vec::new();
    walk(&base, &base, &mut out);
    out
}

/// `serve/accept.rs` → (`serve`, Some(`accept`)); `log.rs` → (`log`, None).
fn place(path: &str) -> (&str, Option<&str>) {
    match path.split_once('/') {
        Some((folder, file)) => (folder, Some(file.trim_end_matches(".rs"))),
        None => (path.trim_end_matches(".rs"), None),
    }
}

#[test]
fn no_module_imports_a_layer_above_its_own() {
    let mut wrong = Vec::new();
    for (path, text) in sources() {
        let (module, _) = place(&path);
        let Some(own) = layer_of(module) else {
            assert!(
                ["lib", "main"].contains(&module),
                "{path}: a module the map does not place (add it to LAYERS and the map)"
            );
            continue;
        };
        for name in names_after(&text, "crate::", &[]) {
            if name == module {
                continue;
            }
            match layer_of(name) {
                Some(theirs) if theirs > own => {}
                _ => wrong.push(format!("{path} imports crate::{name}")),
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports that do not run down:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn inside_a_folder_no_file_imports_its_mod_rs_or_itself() {
    // Each folder's files and the siblings each one names (mod.rs is the folder itself).
    let mut folders: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    let all = sources();
    for (path, _) in &all {
        if let (folder, Some(file)) = place(path) {
            folders
                .entry(folder.to_owned())
                .or_default()
                .insert(file.to_owned(), Vec::new());
        }
    }
    let mut wrong = Vec::new();
    for (path, text) in &all {
        let (folder, Some(file)) = place(path) else {
            continue;
        };
        let files = &folders[folder];
        let mut named: Vec<&str> = names_after(text, &format!("crate::{folder}::"), &[]);
        if file != "mod" {
            named.extend(names_after(text, "super::", &inline_modules(text)));
        }
        let mut siblings = Vec::new();
        for name in named {
            if files.contains_key(name) && name != "mod" {
                if name != file {
                    siblings.push(name.to_owned());
                }
            } else if file != "mod" {
                wrong.push(format!("{path} imports {name} from {folder}/mod.rs"));
            }
        }
        siblings.sort();
        siblings.dedup();
        folders
            .get_mut(folder)
            .unwrap()
            .insert(file.to_owned(), siblings);
    }
    for (folder, files) in &folders {
        for start in files.keys() {
            // Depth-first from `start`: coming back to it is a circle.
            let mut stack = vec![(start.clone(), vec![start.clone()])];
            while let Some((at, trail)) = stack.pop() {
                for next in &files[&at] {
                    if next == start {
                        wrong.push(format!("{folder}/: {} -> {start}", trail.join(" -> ")));
                    } else if !trail.contains(next) {
                        let mut longer = trail.clone();
                        longer.push(next.clone());
                        stack.push((next.clone(), longer));
                    }
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports inside folders:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_map_in_lib_rs_lists_the_folders_in_import_order() {
    let lib = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs"))
        .expect("read src/lib.rs");
    let listed: Vec<&str> = lib
        .lines()
        .filter_map(|l| l.strip_prefix("//! | `"))
        .filter_map(|l| l.split_once('`'))
        .map(|(name, _)| name.trim_end_matches('/').trim_end_matches(".rs"))
        .filter(|name| *name != "folder")
        .collect();
    let layered: Vec<&str> = LAYERS.iter().flat_map(|row| row.iter().copied()).collect();
    let in_order: Vec<&str> = layered
        .iter()
        .copied()
        .filter(|m| listed.contains(m))
        .collect();
    assert!(listed.len() >= 6, "the map's rows: {listed:?}");
    assert_eq!(listed, in_order, "the map's rows against LAYERS");
}
