//! `tracing` events are printed to stderr, never stdout: services pipe stdout as data; and inside a sampled-out
//! trace, events still reach the console.
//!
//! Each test re-runs its own binary as a child process (with `OTLP_TELEMETRY_FMT_CHILD` set) so that the child's
//! real stdout and stderr can be captured apart.

use std::process::{Command, Output};

use otlp_telemetry::{TelemetryConfig, TraceSampler};

const CHILD: &str = "OTLP_TELEMETRY_FMT_CHILD";
const MARKER: &str = "fmt-output-marker-7c1e";
const INSIDE: &str = "event-inside-a-sampled-out-trace-5d2a";

/// In the child: `init` with `config` (traces and metrics not exported, `info` printed), `body`, then shutdown.
/// In the parent: runs `test` in a child process and returns its output.
fn in_child(test: &str, config: TelemetryConfig, body: impl FnOnce()) -> Option<Output> {
    if std::env::var_os(CHILD).is_some() {
        let mut guard =
            otlp_telemetry::init(config.traces(false).metrics(false).log_filter("info"))
                .expect("init");
        body();
        guard.shutdown().expect("shutdown");
        return None;
    }
    let out = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", test, "--nocapture"])
        .env(CHILD, "1")
        .env_remove("RUST_LOG")
        .env_remove("OTEL_CONSOLE_LOG")
        .output()
        .expect("run the child");
    assert!(
        out.status.success(),
        "child failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some(out)
}

#[test]
fn events_are_printed_to_stderr_not_stdout() {
    let Some(out) = in_child(
        "events_are_printed_to_stderr_not_stdout",
        TelemetryConfig::new(),
        || tracing::info!("{MARKER}"),
    ) else {
        return;
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stdout.contains(MARKER),
        "an event reached stdout:\n{stdout}"
    );
    assert!(
        stderr.contains(MARKER) && stderr.contains("INFO"),
        "the event is missing from stderr:\n{stderr}"
    );
}

/// Inside a sampled-out trace the children are never created, but events still reach the console, printed with
/// the root as their span.
#[test]
fn events_inside_a_sampled_out_trace_are_printed_with_the_root_as_their_span() {
    let config = TelemetryConfig::new()
        .fmt_span_context(true)
        .trace_sampler(TraceSampler::ParentBasedAlwaysOff);
    let Some(out) = in_child(
        "events_inside_a_sampled_out_trace_are_printed_with_the_root_as_their_span",
        config,
        || {
            let root = tracing::info_span!("console_root", order = 7);
            let _root = root.enter();
            let child = tracing::info_span!("console_child", step = 1);
            assert!(child.is_disabled());
            let _child = child.enter();
            tracing::info!("{INSIDE}");
        },
    ) else {
        return;
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr
        .lines()
        .find(|l| l.contains(INSIDE))
        .unwrap_or_else(|| panic!("the event is missing from stderr:\n{stderr}"));
    assert!(
        line.contains("console_root") && line.contains("order") && !line.contains("console_child"),
        "{line}"
    );
}

/// By default the console prints events only, without the spans they are in (whose fields it never formats), in
/// a sampled trace as in a sampled-out one; with span context on, a sampled trace's events show each span's
/// fields.
#[test]
fn events_print_their_spans_fields_only_with_span_context_on() {
    const SAMPLED: &str = "event-inside-a-sampled-trace-81f3";
    let run = |test: &str, config: TelemetryConfig| {
        in_child(
            test,
            config.trace_sampler(TraceSampler::ParentBasedAlwaysOn),
            || {
                let root = tracing::info_span!("console_root", order = 7);
                let _root = root.enter();
                let child = tracing::info_span!("console_child", step = 1);
                let _child = child.enter();
                tracing::info!("{SAMPLED}");
            },
        )
    };
    let line = |out: Output| {
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        stderr
            .lines()
            .find(|l| l.contains(SAMPLED))
            .unwrap_or_else(|| panic!("the event is missing from stderr:\n{stderr}"))
            .to_owned()
    };
    const TEST: &str = "events_print_their_spans_fields_only_with_span_context_on";
    let mode = std::env::var("OTLP_TELEMETRY_FMT_MODE").unwrap_or_default();
    if std::env::var_os(CHILD).is_some() {
        run(
            TEST,
            TelemetryConfig::new().fmt_span_context(mode == "spans"),
        );
        return;
    }
    for (mode, expect_spans) in [("events", false), ("spans", true)] {
        let out = Command::new(std::env::current_exe().expect("test binary"))
            .args(["--exact", TEST, "--nocapture"])
            .env(CHILD, "1")
            .env("OTLP_TELEMETRY_FMT_MODE", mode)
            .env_remove("RUST_LOG")
            .env_remove("OTEL_CONSOLE_LOG")
            .output()
            .expect("run the child");
        assert!(out.status.success(), "{out:?}");
        let line = line(out);
        assert!(line.contains("INFO"), "{line}");
        if expect_spans {
            assert!(
                line.contains("console_root")
                    && line.contains("order")
                    && line.contains("console_child")
                    && line.contains("step"),
                "{mode}: {line}"
            );
        } else {
            assert!(
                !line.contains("console_root") && !line.contains("console_child"),
                "{mode}: {line}"
            );
        }
    }
}
