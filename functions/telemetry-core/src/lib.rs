//! The telemetry core: everything the Lambda functions do, as pure logic
//! with no AWS SDK (the function crates wire it to AWS).
//!
//! Data flows one way, and so do imports: a module uses only the modules
//! listed above it (checked by `tests::imports_point_one_way`).
//!
//! | module | what it holds |
//! | --- | --- |
//! | [`json`] | bytes: the hot path's JSON scanner and writer (internal) |
//! | [`envelope`] | how an event arrived: one file per trigger, unwrapped into raw messages |
//! | [`payload`] | what the device sent: fields, records, the declarative mapping, timestamps, topics, units |
//! | [`reading`] | payload -> readings (`decode`), and the checks a reading must pass (`validate`) |
//! | [`command`] | readings -> commands back to devices (`[[command]]` rules and their conditions) |
//! | [`window`] | readings -> per-device aggregates over event-time buckets, and the tumbling window's compact state |
//! | [`outcome`] | what an invocation did (counts) and the answer it owes its trigger |
//! | [`sink`] | where readings and dead letters go: the traits, EMF, CloudWatch request planning, dead letters |
//! | [`warehouse`] | payload -> rows: table declarations, row building, the table-writer trait |
//! | [`invocation`] | the skeleton every function runs (read, refuse, decode, its step, answer) and the steps |
//! | [`config`] | settings from the environment and the pipeline file, read once per cold start |
//! | `fuzzing` | the checks the fuzz targets (`fuzz/`) and their saved inputs run (hidden) |
//!
//! A new trigger is one file in `envelope/`, a new backend one file in
//! `sink/` (or a table writer in a function crate), a new device shape a
//! `[[mapping]]` entry in the pipeline file.

pub(crate) mod json;

pub mod envelope;

pub mod payload;

pub mod reading;

pub mod command;

pub mod window;

pub mod outcome;

pub mod sink;

pub mod warehouse;

pub mod invocation;

pub mod config;

#[doc(hidden)]
pub mod fuzzing;

/// The module map above, checked: imports point one way only.
#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::Path;

    /// Top-level modules, lowest first: each may use only those before it.
    const LAYERS: [&str; 12] = [
        "json",
        "envelope",
        "payload",
        "reading",
        "command",
        "window",
        "outcome",
        "sink",
        "warehouse",
        "invocation",
        "config",
        "fuzzing",
    ];

    /// Every source file's module path (`payload::mapping`) and its code,
    /// without comments and test modules.
    fn modules() -> BTreeMap<String, String> {
        fn walk(dir: &Path, prefix: &str, out: &mut BTreeMap<String, String>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                let name = path.file_stem().unwrap().to_str().unwrap().to_owned();
                let module = match (prefix.is_empty(), name.as_str()) {
                    (_, "lib") => continue,
                    (_, "mod") => prefix.to_owned(),
                    (true, _) => name.clone(),
                    (false, _) => format!("{prefix}::{name}"),
                };
                if path.is_dir() {
                    walk(&path, &module, out);
                } else {
                    let text = std::fs::read_to_string(&path).unwrap();
                    let code = text.split("#[cfg(test)]\nmod tests").next().unwrap();
                    let code: String = code
                        .lines()
                        .filter(|line| !line.trim_start().starts_with("//"))
                        .collect::<Vec<_>>()
                        .join("\n");
                    out.insert(module, code);
                }
            }
        }
        let mut out = BTreeMap::new();
        walk(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            "",
            &mut out,
        );
        out
    }

    /// The modules `code` names with `crate::...` (the longest known prefix).
    fn imports(code: &str, known: &BTreeSet<String>) -> BTreeSet<String> {
        let mut found = BTreeSet::new();
        for (start, _) in code.match_indices("crate::") {
            let path: String = code[start + 7..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            let segments: Vec<&str> = path.split("::").collect();
            for length in (1..=segments.len()).rev() {
                let candidate = segments[..length].join("::");
                if known.contains(&candidate) {
                    found.insert(candidate);
                    break;
                }
            }
        }
        found
    }

    fn layer(module: &str) -> usize {
        let top = module.split("::").next().unwrap();
        LAYERS
            .iter()
            .position(|layer| *layer == top)
            .unwrap_or_else(|| panic!("module {top} is not in the map of lib.rs"))
    }

    #[test]
    fn imports_point_one_way() {
        let modules = modules();
        let known: BTreeSet<String> = modules.keys().cloned().collect();
        let mut graph: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
        for (module, code) in &modules {
            for target in imports(code, &known) {
                assert!(
                    layer(&target) <= layer(module),
                    "{module} uses {target}, a later stage: move the shared part down"
                );
                let is_parent = module.starts_with(&format!("{target}::"));
                let is_child = target.starts_with(&format!("{module}::"));
                // A folder's `mod.rs` and its files share types both ways.
                if target != *module && !is_parent && !is_child {
                    graph.entry(module).or_default().insert(target);
                }
            }
        }
        // No cycle among the files: depth-first search with colours.
        fn visit<'a>(
            node: &'a str,
            graph: &'a BTreeMap<&str, BTreeSet<String>>,
            state: &mut BTreeMap<&'a str, bool>,
            stack: &mut Vec<&'a str>,
        ) {
            match state.get(node) {
                Some(true) => return,
                Some(false) => panic!("import cycle: {} -> {node}", stack.join(" -> ")),
                None => {}
            }
            state.insert(node, false);
            stack.push(node);
            for next in graph.get(node).into_iter().flatten() {
                visit(next, graph, state, stack);
            }
            stack.pop();
            state.insert(node, true);
        }
        let mut state = BTreeMap::new();
        for module in graph.keys() {
            visit(module, &graph, &mut state, &mut Vec::new());
        }
        assert!(known.contains("envelope") && known.contains("payload::mapping"));
    }
}
