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
