//! What the workspace holds: its root, and which crates have loom models or want miri.

use crate::cmd::Cmd;
use std::path::{Path, PathBuf};

/// A member crate and the checks it asks for.
#[derive(Debug, Clone)]
pub struct Member {
    pub name: String,
    pub version: String,
    /// A library crate under `crates/` (what `cargo xtask verify` packages).
    pub library: bool,
    /// Has `tests/loom.rs`.
    pub loom: bool,
    /// `[package.metadata.otlp-kit] miri = true`.
    pub miri: bool,
    /// Declares features of its own (so its code differs with them).
    pub features: bool,
    /// Its `default` feature turns some on (so `--no-default-features` is another build).
    pub default_features: bool,
}

/// The workspace root (the folder above `xtask/`).
pub fn root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(Path::to_path_buf).unwrap_or(manifest)
}

/// The workspace members, read from `cargo metadata`.
pub fn members(root: &Path) -> Result<Vec<Member>, String> {
    let json = Cmd::new("cargo", &["metadata", "--format-version", "1", "--no-deps"])
        .output(root)
        .ok_or("`cargo metadata` failed")?;
    let meta: serde_json::Value =
        serde_json::from_str(&json).map_err(|e| format!("cannot parse `cargo metadata`: {e}"))?;
    let packages = meta["packages"]
        .as_array()
        .ok_or("`cargo metadata` lists no packages")?;
    let mut members: Vec<Member> = packages
        .iter()
        .filter_map(|p| {
            let name = p["name"].as_str()?.to_owned();
            let dir = Path::new(p["manifest_path"].as_str()?)
                .parent()?
                .to_path_buf();
            Some(Member {
                version: p["version"].as_str()?.to_owned(),
                library: dir.parent().is_some_and(|d| d.ends_with("crates")),
                loom: dir.join("tests/loom.rs").is_file(),
                miri: p["metadata"]["otlp-kit"]["miri"].as_bool().unwrap_or(false),
                features: p["features"].as_object().is_some_and(|f| !f.is_empty()),
                default_features: p["features"]["default"]
                    .as_array()
                    .is_some_and(|d| !d.is_empty()),
                name,
            })
        })
        .collect();
    members.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(members)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};

    /// Each package of the workspace, with the names of its normal (not dev, not build) dependencies, and its
    /// features.
    fn packages() -> BTreeMap<String, (BTreeSet<String>, serde_json::Value)> {
        let json = Cmd::new("cargo", &["metadata", "--format-version", "1", "--no-deps"])
            .output(&root())
            .expect("cargo metadata");
        let meta: serde_json::Value = serde_json::from_str(&json).expect("metadata is JSON");
        meta["packages"]
            .as_array()
            .expect("packages")
            .iter()
            .map(|p| {
                let normal = p["dependencies"]
                    .as_array()
                    .expect("dependencies")
                    .iter()
                    .filter(|d| d["kind"].is_null())
                    .map(|d| d["name"].as_str().expect("name").to_owned())
                    .collect();
                let name = p["name"].as_str().expect("name").to_owned();
                (name, (normal, p["features"].clone()))
            })
            .collect()
    }

    /// The crate graph of docs/architecture.md: `otlp-core` at the bottom, `otlp-pool` and `otlp-sync` on it,
    /// `otlp-patterns` on `otlp-sync` (not on `otlp-pool`), `otlp-telemetry` beside them using `otlp-sync`'s
    /// rate limiter, the facade over all. Change the document and this list together.
    const GRAPH: [(&str, &[&str]); 6] = [
        ("otlp-core", &[]),
        ("otlp-pool", &["otlp-core"]),
        ("otlp-sync", &["otlp-core"]),
        ("otlp-patterns", &["otlp-core", "otlp-sync"]),
        ("otlp-telemetry", &["otlp-core", "otlp-sync"]),
        (
            "otlp-kit",
            &["otlp-patterns", "otlp-pool", "otlp-sync", "otlp-telemetry"],
        ),
    ];

    /// Crates under crates/ that are no library of the toolkit: the demo service and the test support.
    const NOT_LIBRARIES: [&str; 2] = ["otlp-demo", "otlp-testkit"];

    #[test]
    fn the_crate_graph_is_the_documented_one() {
        let packages = packages();
        let doc = std::fs::read_to_string(root().join("docs/architecture.md")).expect("the doc");
        for (name, want) in GRAPH {
            let (deps, _) = &packages[name];
            let ours: BTreeSet<&str> = deps
                .iter()
                .map(String::as_str)
                .filter(|d| d.starts_with("otlp-"))
                .collect();
            assert_eq!(
                ours,
                want.iter().copied().collect(),
                "{name}'s dependencies on our crates differ from docs/architecture.md's graph"
            );
            assert!(
                doc.contains(name),
                "docs/architecture.md never names {name}"
            );
        }
        // Every library crate under crates/ is in the graph.
        let members = members(&root()).expect("members");
        for m in members.iter().filter(|m| m.library) {
            let in_graph = GRAPH.iter().any(|(n, _)| *n == m.name);
            assert!(
                in_graph || NOT_LIBRARIES.contains(&m.name.as_str()),
                "{} is missing from the graph",
                m.name
            );
        }
        // The facade's `patterns` feature brings `sync` (a fan-out's shared limit), not `pool`.
        let (_, features) = &packages["otlp-kit"];
        let patterns: Vec<&str> = features["patterns"]
            .as_array()
            .expect("a patterns feature")
            .iter()
            .filter_map(|f| f.as_str())
            .collect();
        assert!(patterns.contains(&"sync"), "{patterns:?}");
        assert!(!patterns.iter().any(|f| f.contains("pool")), "{patterns:?}");
    }

    #[test]
    fn only_otlp_telemetry_has_the_sdk_as_a_normal_dependency() {
        // A library's normal dependency on the SDK would change every user's SDK through feature unification.
        let members = members(&root()).expect("members");
        let packages = packages();
        let libraries = members
            .iter()
            .filter(|m| m.library && !NOT_LIBRARIES.contains(&m.name.as_str()));
        for m in libraries {
            let (deps, _) = &packages[&m.name];
            let sdk = deps.iter().any(|d| d == "opentelemetry_sdk");
            assert_eq!(
                sdk,
                m.name == "otlp-telemetry",
                "{}: opentelemetry_sdk among its normal dependencies: {sdk}",
                m.name
            );
        }
    }
}
