//! The console log is turned on and off, and its level chosen, from the environment without code: a service that
//! builds its config with `TelemetryConfig::from_env` prints what `RUST_LOG` lets through, and nothing with
//! `OTEL_CONSOLE_LOG=off`.
//!
//! The test re-runs its own binary as a child process (with `OTLP_CONSOLE_ENV_CHILD` set) once per environment,
//! and reads the child's stderr.

use std::process::Command;

use otlp_telemetry::TelemetryConfig;

const CHILD: &str = "OTLP_CONSOLE_ENV_CHILD";
const TEST: &str = "the_environment_turns_the_console_log_on_and_off_and_sets_its_level";

/// The child's stderr, with these variables set (and no other `RUST_LOG` / `OTEL_CONSOLE_LOG`).
fn stderr_with(vars: &[(&str, &str)]) -> String {
    let mut cmd = Command::new(std::env::current_exe().expect("test binary"));
    cmd.args(["--exact", TEST, "--nocapture"])
        .env(CHILD, "1")
        .env_remove("RUST_LOG")
        .env_remove("OTEL_CONSOLE_LOG");
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run the child");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "child failed:\n{stderr}");
    stderr
}

#[test]
fn the_environment_turns_the_console_log_on_and_off_and_sets_its_level() {
    if std::env::var_os(CHILD).is_some() {
        // A service's code, the same in every run: only the environment differs.
        let config = TelemetryConfig::from_env()
            .expect("valid environment")
            .traces(false)
            .metrics(false);
        let mut guard = otlp_telemetry::init(config).expect("init");
        tracing::debug!("console-env-debug-3f1a");
        tracing::info!("console-env-info-3f1a");
        tracing::warn!("console-env-warn-3f1a");
        guard.shutdown().expect("shutdown");
        return;
    }
    let printed = |stderr: &str| -> Vec<&'static str> {
        ["debug", "info", "warn"]
            .into_iter()
            .filter(|level| stderr.contains(&format!("console-env-{level}-3f1a")))
            .collect()
    };
    let default = stderr_with(&[]);
    assert_eq!(printed(&default), ["info", "warn"], "{default}");
    let debug = stderr_with(&[("RUST_LOG", "debug")]);
    assert_eq!(printed(&debug), ["debug", "info", "warn"], "{debug}");
    let warn = stderr_with(&[("RUST_LOG", "warn")]);
    assert_eq!(printed(&warn), ["warn"], "{warn}");
    let off = stderr_with(&[("OTEL_CONSOLE_LOG", "off"), ("RUST_LOG", "debug")]);
    assert_eq!(printed(&off), Vec::<&str>::new(), "{off}");
    let spans = stderr_with(&[("OTEL_CONSOLE_LOG", "spans")]);
    assert_eq!(printed(&spans), ["info", "warn"], "{spans}");
}
