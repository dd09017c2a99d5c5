//! Project automation, run as `cargo xtask <command>` (an alias in `.cargo/config.toml`).
//!
//! * `cargo xtask demo [--seconds N]`: builds and starts the demo service (`crates/otlp-demo`), sends it traffic
//!   and prints a line a second from its owners' stats, then shuts it down gracefully.
//! * `cargo xtask load [--quick] [--rounds N] [--seconds S] [--update-docs]`: the demo service against its twin
//!   and the naive-instrumented variant under a load generator; a Service table for docs/benchmarks.md and a plot.
//! * `cargo xtask dashboard [--json] [--seconds N]`: writes docs/dashboards/otlp-kit.json (Grafana) and, without `--json`, renders
//!   its panels to docs/dashboards/otlp-kit.png from a real Prometheus scraping the demo service under load.
//! * `cargo xtask verify [--quick]`: formatting, clippy, tests, loom models, miri, cargo-deny, in that order,
//!   each timed, with a summary table; exits non-zero if any step failed. `--quick` runs the first three only and
//!   says so.
//! * `cargo xtask bench [--quick] [--rounds N] [--update-docs] [FILTER]`: the criterion benches of `benches/`, each
//!   comparison in interleaved rounds (5, `--quick` 3), then a table of ours against the baselines of the same
//!   run (each ratio's median and min–max), with the goals of `benches/goals.json` checked against the worst round.

mod bench;
mod cmd;
mod dashboard;
mod demo;
mod fonts;
mod load;
mod service;
mod verify;
mod workspace;

use std::process::ExitCode;

const USAGE: &str = "usage:
  cargo xtask demo [--seconds N]                   see it work: the demo service under traffic, one line a
                                                   second from its owners' stats, then a graceful shutdown
  cargo xtask load [--quick] [--rounds N] [--seconds S] [--update-docs]
                                                   the demo service against its twin and a naive variant
                                                   under oha (or wrk), interleaved rounds
  cargo xtask dashboard [--json] [--seconds N]     the Grafana dashboard (docs/dashboards/otlp-kit.json) and,
                                                   without --json, its panels drawn from a real Prometheus
                                                   scraping the demo under load (otlp-kit.png)
  cargo xtask verify [--quick]                     fmt, clippy, tests, loom, miri, cargo-deny
  cargo xtask bench [--quick] [--rounds N] [--update-docs] [FILTER]
                                                   criterion benches in interleaved rounds (5, --quick 3)
                                                   and the ratio table, goals checked on the worst round
                                                   (--update-docs writes it into docs/benchmarks.md)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (command, rest) = match args.split_first() {
        Some((command, rest)) => (command.as_str(), rest),
        None => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let result = match command {
        "demo" => demo::run(rest),
        "dashboard" => dashboard::run(rest),
        "load" => load::run(rest),
        "verify" => verify::run(rest),
        "bench" => bench::run(rest),
        "help" | "--help" | "-h" => {
            println!("{USAGE}");
            Ok(true)
        }
        other => Err(format!("unknown command `{other}`\n{USAGE}")),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::from(2)
        }
    }
}
