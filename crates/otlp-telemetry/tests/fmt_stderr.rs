//! `tracing` events are printed to stderr, never stdout: services pipe stdout as data.
//!
//! The test re-runs its own binary as a child process (with `OTLP_TELEMETRY_FMT_CHILD` set) so that the child's
//! real stdout and stderr can be captured apart.

use std::process::Command;

use otlp_telemetry::TelemetryConfig;

const CHILD: &str = "OTLP_TELEMETRY_FMT_CHILD";
const MARKER: &str = "fmt-output-marker-7c1e";

#[test]
fn events_are_printed_to_stderr_not_stdout() {
    if std::env::var_os(CHILD).is_some() {
        let mut guard = otlp_telemetry::init(
            TelemetryConfig::new()
                .traces(false)
                .metrics(false)
                .log_filter("info"),
        )
        .expect("init");
        tracing::info!("{MARKER}");
        guard.shutdown().expect("shutdown");
        return;
    }
    let out = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "events_are_printed_to_stderr_not_stdout",
            "--nocapture",
        ])
        .env(CHILD, "1")
        .env_remove("RUST_LOG")
        .output()
        .expect("run the child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child failed:\n{stdout}\n{stderr}");
    assert!(
        !stdout.contains(MARKER),
        "an event reached stdout:\n{stdout}"
    );
    assert!(
        stderr.contains(MARKER) && stderr.contains("INFO"),
        "the event is missing from stderr:\n{stderr}"
    );
}
