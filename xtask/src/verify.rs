//! `cargo xtask verify`: every check the project relies on, in order, each timed, with a summary.
//!
//! 1. `cargo fmt --all --check`
//! 2. clippy: `cargo clippy --workspace --all-targets --all-features -- -D warnings`, then, for each crate that
//!    declares features, `cargo clippy -p <crate> --all-targets -- -D warnings` with its default features, and
//!    with `--no-default-features` too where its defaults turn some on: a lint that fires only without a feature
//!    (an import or a helper used by feature-gated code alone) shows only in a build without it. Each crate on its
//!    own, since features selected together unify.
//! 3. `cargo test --workspace --all-features` (unit, integration and doc tests)
//! 4. loom: `RUSTFLAGS="--cfg otlp_loom" cargo test --release -p <crate> --test loom` for each crate with a
//!    `tests/loom.rs`
//! 5. miri: `MIRIFLAGS=-Zmiri-strict-provenance cargo +nightly miri test -p <crate> --lib` for each crate with
//!    `[package.metadata.otlp-kit] miri = true` (installs the nightly `miri` and `rust-src` components when
//!    missing; fails if that fails)
//! 6. `cargo deny check licenses bans sources` (installs cargo-deny when missing; the advisories check needs the
//!    internet, which CI lacks, so it is not run here)
//! 7. package: `cargo package --no-verify --exclude-lockfile` of every library crate under `crates/`, then the
//!    packages, unpacked side by side (each other's dependencies through `[patch.crates-io]`), must build alone
//!    (`cargo check --workspace --all-features --offline`): a crate that reaches outside its own folder (a
//!    `#[path]` include, an `include_str!` of a sibling's file) fails here. Cargo's own verification cannot do
//!    this: our crates are `publish = false`, so `cargo package` has no registry to resolve their dependencies
//!    on one another.
//!
//! A failing step does not stop the later ones, so one run shows everything that is wrong. `--quick` runs steps
//! 1–3 and reports 4–7 as skipped, never as passed.

use crate::cmd::{Cmd, human};
use crate::workspace::{self, Member};
use std::path::Path;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Passed,
    Failed,
    Skipped,
}

struct Step {
    name: &'static str,
    outcome: Outcome,
    took: Duration,
    detail: String,
}

pub fn run(args: &[String]) -> Result<bool, String> {
    let mut quick = false;
    for arg in args {
        match arg.as_str() {
            "--quick" => quick = true,
            other => return Err(format!("verify: unknown argument `{other}` (only --quick)")),
        }
    }
    let root = workspace::root();
    let members = workspace::members(&root)?;
    let mut steps: Vec<Step> = Vec::new();

    banner(1, "fmt");
    let (ok, took) = Cmd::new("cargo", &["fmt", "--all", "--check"]).run(&root);
    steps.push(finish("fmt", ok, took, String::new()));
    banner(2, "clippy");
    steps.push(clippy(&root, &members));
    banner(3, "test");
    let (ok, took) = Cmd::new("cargo", &["test", "--workspace", "--all-features"]).run(&root);
    steps.push(finish("test", ok, took, String::new()));

    if quick {
        for name in ["loom", "miri", "deny", "package"] {
            println!("\n==> {name}: skipped (--quick)");
            steps.push(Step {
                name,
                outcome: Outcome::Skipped,
                took: Duration::ZERO,
                detail: "skipped: --quick".into(),
            });
        }
    } else {
        banner(4, "loom");
        steps.push(loom(&root, &members));
        banner(5, "miri");
        steps.push(miri(&root, &members));
        banner(6, "deny");
        steps.push(deny(&root));
        banner(7, "package");
        steps.push(package(&root, &members));
    }

    summary(&steps, quick);
    Ok(steps.iter().all(|s| s.outcome != Outcome::Failed))
}

fn banner(n: usize, name: &str) {
    println!("\n==> [{n}/7] {name}");
}

fn finish(name: &'static str, ok: bool, took: Duration, detail: String) -> Step {
    let outcome = if ok { Outcome::Passed } else { Outcome::Failed };
    println!(
        "<== {name}: {} in {}",
        if ok { "passed" } else { "FAILED" },
        human(took)
    );
    Step {
        name,
        outcome,
        took,
        detail,
    }
}

/// Runs a list of commands; the step passes only if every one does.
fn run_all(root: &Path, name: &'static str, cmds: Vec<(String, Cmd)>) -> Step {
    if cmds.is_empty() {
        // A check with nothing to check must not look green.
        println!("    no crate asks for {name}: nothing was checked");
        return finish(
            name,
            false,
            Duration::ZERO,
            format!("no crate has {name} checks"),
        );
    }
    let mut took = Duration::ZERO;
    let mut failed = Vec::new();
    let mut done = Vec::new();
    for (label, cmd) in cmds {
        let (ok, t) = cmd.run(root);
        took += t;
        if ok {
            done.push(label);
        } else {
            failed.push(label);
        }
    }
    let detail = if failed.is_empty() {
        done.join(", ")
    } else {
        format!("failed: {}", failed.join(", "))
    };
    finish(name, failed.is_empty(), took, detail)
}

/// The clippy commands: the workspace with every feature, then each crate that has features with its defaults,
/// and without them where the defaults turn some on.
fn clippy_cmds(members: &[Member]) -> Vec<(String, Cmd)> {
    let lint = |args: &[&str]| {
        Cmd::new("cargo", &["clippy"])
            .args(args.iter().copied())
            .args(["--all-targets", "--", "-D", "warnings"])
    };
    let mut cmds = vec![(
        "workspace --all-features".to_owned(),
        lint(&["--workspace", "--all-features"]),
    )];
    for m in members.iter().filter(|m| m.features) {
        cmds.push((m.name.clone(), lint(&["-p", &m.name])));
        if m.default_features {
            cmds.push((
                format!("{} --no-default-features", m.name),
                lint(&["-p", &m.name, "--no-default-features"]),
            ));
        }
    }
    cmds
}

fn clippy(root: &Path, members: &[Member]) -> Step {
    run_all(root, "clippy", clippy_cmds(members))
}

fn loom(root: &Path, members: &[Member]) -> Step {
    let target = root.join("target/loom");
    let cmds = members
        .iter()
        .filter(|m| m.loom)
        .map(|m| {
            let cmd = Cmd::new(
                "cargo",
                &["test", "--release", "-p", &m.name, "--test", "loom"],
            )
            .env("RUSTFLAGS", "--cfg otlp_loom")
            .env("CARGO_TARGET_DIR", target.display().to_string());
            (m.name.clone(), cmd)
        })
        .collect();
    run_all(root, "loom", cmds)
}

fn miri(root: &Path, members: &[Member]) -> Step {
    let probe = Cmd::new("cargo", &["+nightly", "miri", "--version"]);
    if probe.output(root).is_none() {
        println!("    miri is missing: installing the nightly miri and rust-src components");
        let install = Cmd::new(
            "rustup",
            &[
                "component",
                "add",
                "--toolchain",
                "nightly",
                "miri",
                "rust-src",
            ],
        );
        let (ok, took) = install.run(root);
        if !ok {
            return finish(
                "miri",
                false,
                took,
                "could not install miri: run `rustup component add --toolchain nightly miri rust-src`".into(),
            );
        }
    }
    let cmds = members
        .iter()
        .filter(|m| m.miri)
        .map(|m| {
            let cmd = Cmd::new(
                "cargo",
                &["+nightly", "miri", "test", "-p", &m.name, "--lib"],
            )
            .env("MIRIFLAGS", "-Zmiri-strict-provenance");
            (m.name.clone(), cmd)
        })
        .collect();
    run_all(root, "miri", cmds)
}

/// Sets the modification time of every file under `dir` to `when`.
fn touch_all(dir: &Path, when: std::time::SystemTime) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            touch_all(&path, when)?;
        } else {
            std::fs::File::options()
                .write(true)
                .open(&path)?
                .set_modified(when)?;
        }
    }
    Ok(())
}

fn package(root: &Path, members: &[Member]) -> Step {
    let libraries: Vec<&Member> = members.iter().filter(|m| m.library).collect();
    if libraries.is_empty() {
        return finish(
            "package",
            false,
            Duration::ZERO,
            "no crate under crates/".into(),
        );
    }
    let mut pack = Cmd::new(
        "cargo",
        &[
            "package",
            "--no-verify",
            "--exclude-lockfile",
            "--allow-dirty",
        ],
    );
    for m in &libraries {
        pack = pack.args(["-p", m.name.as_str()]);
    }
    let (ok, mut took) = pack.run(root);
    if !ok {
        return finish("package", false, took, "`cargo package` failed".into());
    }
    // Unpack every package into one throw-away workspace whose crates find each other through patches.
    let dir = root.join("target/package-check");
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(e) = std::fs::create_dir_all(&dir) {
        return finish(
            "package",
            false,
            took,
            format!("cannot create {}: {e}", dir.display()),
        );
    }
    let mut manifest = String::from("[workspace]\nresolver = \"3\"\nmembers = [\n");
    let mut patches = String::from("\n[patch.crates-io]\n");
    for m in &libraries {
        let unpacked = format!("{}-{}", m.name, m.version);
        let archive = root.join(format!("target/package/{unpacked}.crate"));
        let (ok, t) = Cmd::new(
            "tar",
            &[
                "-xzf",
                &archive.display().to_string(),
                "-C",
                &dir.display().to_string(),
            ],
        )
        .run(root);
        took += t;
        if !ok {
            return finish(
                "package",
                false,
                took,
                format!("cannot unpack {unpacked}.crate"),
            );
        }
        manifest.push_str(&format!("    \"{unpacked}\",\n"));
        patches.push_str(&format!("{} = {{ path = \"{unpacked}\" }}\n", m.name));
    }
    // A `.crate` stores one fixed mtime for every file: older than the fingerprints a previous run left in the
    // shared target folder, so cargo would take last run's build for fresh. Stamp the sources as new.
    if let Err(e) = touch_all(&dir, std::time::SystemTime::now()) {
        return finish(
            "package",
            false,
            took,
            format!("cannot stamp the unpacked sources: {e}"),
        );
    }
    manifest.push_str("]\n");
    manifest.push_str(&patches);
    let written = std::fs::write(dir.join("Cargo.toml"), manifest)
        .and_then(|()| std::fs::copy(root.join("Cargo.lock"), dir.join("Cargo.lock")).map(|_| ()));
    if let Err(e) = written {
        return finish(
            "package",
            false,
            took,
            format!("cannot write the check workspace: {e}"),
        );
    }
    // The workspace's own target folder: the dependencies are already built there.
    let (ok, t) = Cmd::new(
        "cargo",
        &["check", "--workspace", "--all-features", "--offline"],
    )
    .env(
        "CARGO_TARGET_DIR",
        root.join("target").display().to_string(),
    )
    .run(&dir);
    took += t;
    let names: Vec<&str> = libraries.iter().map(|m| m.name.as_str()).collect();
    let detail = if ok {
        format!("packaged and built alone: {}", names.join(", "))
    } else {
        "a packaged crate does not build on its own (see above)".into()
    };
    finish("package", ok, took, detail)
}

fn deny(root: &Path) -> Step {
    if Cmd::new("cargo", &["deny", "--version"])
        .output(root)
        .is_none()
    {
        println!("    cargo-deny is missing: installing it (a few minutes)");
        let (ok, took) = Cmd::new("cargo", &["install", "--locked", "cargo-deny"]).run(root);
        if !ok {
            return finish(
                "deny",
                false,
                took,
                "could not install cargo-deny: run `cargo install --locked cargo-deny`".into(),
            );
        }
    }
    let (ok, took) = Cmd::new("cargo", &["deny", "check", "licenses", "bans", "sources"]).run(root);
    finish(
        "deny",
        ok,
        took,
        "licenses, bans, sources (advisories need the internet)".into(),
    )
}

fn summary(steps: &[Step], quick: bool) {
    println!("\n== verify summary ==");
    println!("| step | result | time | detail |");
    println!("|---|---|---|---|");
    for s in steps {
        let result = match s.outcome {
            Outcome::Passed => "passed",
            Outcome::Failed => "FAILED",
            Outcome::Skipped => "skipped",
        };
        println!(
            "| {} | {} | {} | {} |",
            s.name,
            result,
            human(s.took),
            s.detail
        );
    }
    let total: Duration = steps.iter().map(|s| s.took).sum();
    let failed = steps
        .iter()
        .filter(|s| s.outcome == Outcome::Failed)
        .count();
    let skipped = steps
        .iter()
        .filter(|s| s.outcome == Outcome::Skipped)
        .count();
    println!(
        "{} of {} steps passed, {failed} failed, {skipped} skipped, in {}{}",
        steps.len() - failed - skipped,
        steps.len(),
        human(total),
        if quick {
            " (--quick: loom, miri and cargo-deny were NOT run)"
        } else {
            ""
        }
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, features: bool, default_features: bool) -> Member {
        Member {
            name: name.into(),
            version: "0.1.0".into(),
            library: true,
            loom: false,
            miri: false,
            features,
            default_features,
        }
    }

    /// Each crate with features is linted on its own with its defaults, and without them when they turn some on.
    #[test]
    fn clippy_lints_each_crate_with_features_with_and_without_its_defaults() {
        let members = [
            member("plain", false, false),
            member("opt-in", true, false),
            member("defaults", true, true),
        ];
        let cmds: Vec<(String, String)> = clippy_cmds(&members)
            .into_iter()
            .map(|(label, cmd)| (label, cmd.display()))
            .collect();
        let tail = "--all-targets -- -D warnings";
        assert_eq!(
            cmds,
            [
                (
                    "workspace --all-features".to_owned(),
                    format!("cargo clippy --workspace --all-features {tail}")
                ),
                (
                    "opt-in".to_owned(),
                    format!("cargo clippy -p opt-in {tail}")
                ),
                (
                    "defaults".to_owned(),
                    format!("cargo clippy -p defaults {tail}")
                ),
                (
                    "defaults --no-default-features".to_owned(),
                    format!("cargo clippy -p defaults --no-default-features {tail}")
                ),
            ]
        );
    }

    /// The workspace's own crates: the ones with features are found, and so are their defaults.
    #[test]
    fn members_know_their_features() {
        let members = workspace::members(&workspace::root()).unwrap();
        let find = |n: &str| members.iter().find(|m| m.name == n).unwrap();
        assert!(find("otlp-kit").features && find("otlp-kit").default_features);
        assert!(find("otlp-sync").features && !find("otlp-sync").default_features);
        assert!(!find("otlp-core").features);
    }
}
