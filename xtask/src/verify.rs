//! `cargo xtask verify`: every check the project relies on, in order, each timed, with a summary.
//!
//! 1. `cargo fmt --all --check`
//! 2. `cargo clippy --workspace --all-targets --all-features -- -D warnings`
//! 3. `cargo test --workspace --all-features` (unit, integration and doc tests)
//! 4. loom: `RUSTFLAGS="--cfg otlp_loom" cargo test --release -p <crate> --test loom` for each crate with a
//!    `tests/loom.rs`
//! 5. miri: `cargo +nightly miri test -p <crate> --lib` for each crate with `[package.metadata.otlp-kit] miri = true`
//!    (installs the nightly `miri` and `rust-src` components when missing; fails if that fails)
//! 6. `cargo deny check licenses bans sources` (installs cargo-deny when missing; the advisories check needs the
//!    internet, which CI lacks, so it is not run here)
//!
//! A failing step does not stop the later ones, so one run shows everything that is wrong. `--quick` runs steps
//! 1–3 and reports 4–6 as skipped, never as passed.

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

    let simple: [(&'static str, Cmd); 3] = [
        ("fmt", Cmd::new("cargo", &["fmt", "--all", "--check"])),
        (
            "clippy",
            Cmd::new(
                "cargo",
                &[
                    "clippy",
                    "--workspace",
                    "--all-targets",
                    "--all-features",
                    "--",
                    "-D",
                    "warnings",
                ],
            ),
        ),
        (
            "test",
            Cmd::new("cargo", &["test", "--workspace", "--all-features"]),
        ),
    ];
    for (i, (name, cmd)) in simple.into_iter().enumerate() {
        banner(i + 1, name);
        let (ok, took) = cmd.run(&root);
        steps.push(finish(name, ok, took, String::new()));
    }

    if quick {
        for name in ["loom", "miri", "deny"] {
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
    }

    summary(&steps, quick);
    Ok(steps.iter().all(|s| s.outcome != Outcome::Failed))
}

fn banner(n: usize, name: &str) {
    println!("\n==> [{n}/6] {name}");
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
            );
            (m.name.clone(), cmd)
        })
        .collect();
    run_all(root, "miri", cmds)
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
