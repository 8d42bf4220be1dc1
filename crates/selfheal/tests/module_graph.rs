//! The daemon's top-level modules (the `mod` lines of `src/lib.rs`, each a file or a folder
//! under `src/`) import each other without a cycle, so each one can be read, changed and
//! tested on top of the ones below it. Docker-free: it reads the source.
//!
//! A module's dependencies are the `crate::<module>` paths in its non-test code (string
//! literals count: serde's `with = "crate::..."` is a real use). Left out: comments, items under
//! `#[cfg(test)]`, and the test files (`tests.rs`, `*_tests.rs`, anything in a `tests/` folder).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Module -> (module it uses -> a file where it does, for the failure message).
type Graph = BTreeMap<String, BTreeMap<String, String>>;

#[test]
fn top_level_modules_have_no_import_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = graph_of(&src);
    assert!(
        graph.values().any(|uses| !uses.is_empty()),
        "no `crate::` path found under {}: the scan itself is broken",
        src.display()
    );
    let cycles = cycles(&graph);
    assert!(
        cycles.is_empty(),
        "import cycles between the top-level modules of {}:\n{}",
        src.display(),
        cycles.join("\n")
    );
}

/// A cycle written into the source is found and named, with the file of each edge.
#[test]
fn a_cycle_is_named() {
    let dir = tempfile::tempdir().expect("temp dir");
    let write = |path: &str, text: &str| {
        let path = dir.path().join(path);
        fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
        fs::write(path, text).expect("write");
    };
    write("lib.rs", "pub mod a;\npub mod b;\nmod c;\n");
    write("a/mod.rs", "mod x;\n");
    write("a/x.rs", "use crate::{b::B, c};\n");
    // Only test code, comments and a string that merely looks like a test attribute lead
    // back to `a`, and `c` reaches `a` only from a test file: no cycle through them.
    write(
        "b.rs",
        "// crate::a\n/* crate::a */\nconst S: &str = \"#[cfg(test)] {\";\n\
         #[cfg(test)]\nmod tests {\n    fn f() -> char { '}' }\n    use crate::a;\n}\n\
         pub struct B;\n",
    );
    write("c.rs", "#[cfg(test)]\nmod c_tests;\n");
    write("c/c_tests.rs", "use crate::a;\n");
    assert_eq!(cycles(&graph_of(dir.path())), Vec::<String>::new());

    write("b.rs", "use crate::a::x;\npub struct B;\n");
    assert_eq!(
        cycles(&graph_of(dir.path())),
        ["a -> b (a/x.rs) -> a (b.rs)"]
    );
}

fn graph_of(src: &Path) -> Graph {
    let lib = fs::read_to_string(src.join("lib.rs")).expect("src/lib.rs");
    let modules: BTreeSet<String> = lib
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let l = l
                .strip_prefix("pub(crate) ")
                .or(l.strip_prefix("pub "))
                .unwrap_or(l);
            l.strip_prefix("mod ")?
                .strip_suffix(';')
                .map(str::to_string)
        })
        .collect();
    let mut graph = Graph::new();
    for module in &modules {
        let mut files = Vec::new();
        for root in [src.join(format!("{module}.rs")), src.join(module)] {
            collect_files(&root, &mut files);
        }
        assert!(
            !files.is_empty(),
            "module {module}: no file in {}",
            src.display()
        );
        let uses = graph.entry(module.clone()).or_default();
        for file in files {
            let text = fs::read_to_string(&file).expect("read a source file");
            for used in used_modules(&text) {
                if used != *module && modules.contains(&used) {
                    let shown = file.strip_prefix(src).unwrap_or(&file).display();
                    uses.entry(used).or_insert_with(|| shown.to_string());
                }
            }
        }
    }
    graph
}

/// The `.rs` files at `path` (a file or a folder, recursively), test files left out.
fn collect_files(path: &Path, out: &mut Vec<PathBuf>) {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if path.is_dir() {
        if name == "tests" {
            return;
        }
        let mut entries: Vec<PathBuf> = fs::read_dir(path)
            .expect("read a source folder")
            .map(|e| e.expect("a folder entry").path())
            .collect();
        entries.sort();
        for entry in entries {
            collect_files(&entry, out);
        }
    } else if path.is_file()
        && name.ends_with(".rs")
        && name != "tests.rs"
        && !name.ends_with("_tests.rs")
    {
        out.push(path.to_path_buf());
    }
}

/// The first segment of every `crate::` path in `text`'s non-test code.
fn used_modules(text: &str) -> BTreeSet<String> {
    let (mut kept, code) = blanked(text.as_bytes());
    for (start, end) in test_items(&code) {
        kept[start..end].fill(b' ');
    }
    let kept = String::from_utf8(kept).expect("blanking keeps UTF-8");
    let mut found = BTreeSet::new();
    for (at, _) in kept.match_indices("crate::") {
        if kept[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_') {
            continue; // e.g. `selfheal_crate::`
        }
        let rest = kept[at + "crate::".len()..].trim_start();
        match rest.strip_prefix('{') {
            // `crate::{a::X, b}`: the first segment of each entry (nested groups are inside
            // an entry, after its first segment).
            Some(group) => {
                let mut depth = 0;
                let end = group
                    .find(|c| {
                        depth += i32::from(c == '{') - i32::from(c == '}');
                        depth < 0
                    })
                    .unwrap_or(group.len());
                let mut depth = 0;
                for entry in group[..end].split(|c| {
                    depth += i32::from(c == '{') - i32::from(c == '}');
                    c == ',' && depth == 0
                }) {
                    found.insert(ident(entry.trim_start()));
                }
            }
            None => {
                found.insert(ident(rest));
            }
        }
    }
    found
}

fn ident(s: &str) -> String {
    s.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// `text` with its comments blanked out, and the same with string and char literals' contents
/// blanked too (where braces and attributes can be found). Spaces keep the byte offsets; every
/// blanked run starts and ends at ASCII, so both stay UTF-8.
fn blanked(text: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let (mut kept, mut code) = (text.to_vec(), text.to_vec());
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let at = |i: usize| text.get(i).copied().unwrap_or(0);
    let mut i = 0;
    while i < text.len() {
        let rest = &text[i..];
        let (end, literal) = if rest.starts_with(b"//") {
            (memchr(text, b'\n', i).unwrap_or(text.len()), false)
        } else if rest.starts_with(b"/*") {
            let mut depth = 0;
            let mut j = i;
            while j < text.len() {
                if text[j..].starts_with(b"/*") {
                    depth += 1;
                    j += 2;
                } else if text[j..].starts_with(b"*/") {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    j += 1;
                }
            }
            (j, false)
        } else if at(i) == b'"' {
            let mut j = i + 1;
            while j < text.len() && text[j] != b'"' {
                j += if text[j] == b'\\' { 2 } else { 1 };
            }
            (j + 1, true)
        } else if at(i) == b'r'
            && (i == 0 || !ident(at(i - 1)) || (at(i - 1) == b'b' && (i < 2 || !ident(at(i - 2)))))
            && matches!(rest.iter().skip(1).find(|&&b| b != b'#'), Some(b'"'))
        {
            // A raw string: r"..." or r#"..."#, also after b.
            let hashes = rest[1..].iter().take_while(|&&b| b == b'#').count();
            let mut close = vec![b'"'];
            close.resize(1 + hashes, b'#');
            let body = i + 2 + hashes;
            let end = text[body..]
                .windows(close.len())
                .position(|w| w == close)
                .map_or(text.len(), |p| body + p + close.len());
            (end, true)
        } else if at(i) == b'\'' {
            // A char literal ('x', '\n', '\u{..}', 'é'), else a lifetime or label.
            let len = if at(i + 1) == b'\\' {
                memchr(text, b'\'', i + 3).map(|e| e - i - 1)
            } else {
                let c = std::str::from_utf8(&text[i + 1..(i + 5).min(text.len())])
                    .or_else(|e| std::str::from_utf8(&text[i + 1..i + 1 + e.valid_up_to()]))
                    .ok()
                    .and_then(|s| s.chars().next());
                c.map(char::len_utf8).filter(|&n| at(i + 1 + n) == b'\'')
            };
            match len {
                Some(n) => (i + n + 2, true),
                None => (i + 1, false),
            }
        } else {
            i += 1;
            continue;
        };
        let end = end.min(text.len());
        if literal {
            code[i + 1..end.saturating_sub(1).max(i + 1)].fill(b' ');
        } else {
            kept[i..end].fill(b' ');
            code[i..end].fill(b' ');
        }
        i = end;
    }
    (kept, code)
}

fn memchr(text: &[u8], byte: u8, from: usize) -> Option<usize> {
    text.get(from..)?
        .iter()
        .position(|&b| b == byte)
        .map(|p| from + p)
}

/// The byte ranges of the items under `#[cfg(test)]` in `code` (literals already blanked):
/// from the attribute to the item's `;` or its closing brace (or to the end of what encloses
/// it: a field or a match arm).
fn test_items(code: &[u8]) -> Vec<(usize, usize)> {
    const ATTRIBUTE: &[u8] = b"#[cfg(test)]";
    let mut items = Vec::new();
    let mut i = 0;
    while let Some(p) = code[i..]
        .windows(ATTRIBUTE.len())
        .position(|w| w == ATTRIBUTE)
    {
        let start = i + p;
        let mut depth = 0i32;
        let mut end = code.len();
        for (j, &b) in code.iter().enumerate().skip(start + ATTRIBUTE.len()) {
            match b {
                b'(' | b'[' | b'{' => depth += 1,
                b')' | b']' | b'}' => {
                    depth -= 1;
                    if depth < 0 {
                        end = j;
                        break;
                    }
                    if depth == 0 && b == b'}' {
                        end = j + 1;
                        break;
                    }
                }
                b';' if depth == 0 => {
                    end = j + 1;
                    break;
                }
                _ => {}
            }
        }
        items.push((start, end));
        i = end;
    }
    items
}

/// Each cycle as `a -> b (file) -> a (file)`: one per edge back to a module still on the path
/// of a depth-first walk, so every strongly connected knot shows at least once.
fn cycles(graph: &Graph) -> Vec<String> {
    fn walk(
        graph: &Graph,
        module: &str,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
        out: &mut Vec<String>,
    ) {
        path.push(module.to_string());
        for used in graph.get(module).into_iter().flat_map(|u| u.keys()) {
            if let Some(from) = path.iter().position(|m| m == used) {
                let mut text = path[from].clone();
                for pair in path[from..].windows(2) {
                    text += &format!(" -> {} ({})", pair[1], graph[&pair[0]][&pair[1]]);
                }
                text += &format!(" -> {used} ({})", graph[module][used]);
                out.push(text);
            } else if !done.contains(used) {
                walk(graph, used, path, done, out);
            }
        }
        path.pop();
        done.insert(module.to_string());
    }
    let mut out = Vec::new();
    let mut done = BTreeSet::new();
    for module in graph.keys() {
        if !done.contains(module) {
            walk(graph, module, &mut Vec::new(), &mut done, &mut out);
        }
    }
    out
}
