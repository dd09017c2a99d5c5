//! Test helpers: a real collector (rotel) on free 127.0.0.1 ports, and a parser for its debug output.
#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const INSTALL: &str = "install it with `pip install rotel` (the rotel-agent binary ships inside the Python \
                       package), or set ROTEL_AGENT to the path of a rotel-agent binary";

/// Finds `rotel-agent`: `$ROTEL_AGENT`, else the folder of the installed `rotel` Python package.
pub fn rotel_agent() -> PathBuf {
    if let Some(p) = std::env::var_os("ROTEL_AGENT") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "ROTEL_AGENT={} is not a file: {INSTALL}",
            p.display()
        );
        return p;
    }
    let out = Command::new("python3")
        .args([
            "-c",
            "import rotel, os; print(os.path.dirname(rotel.__file__))",
        ])
        .output();
    let dir = match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_owned(),
        Ok(o) => panic!(
            "rotel is not installed ({}): {INSTALL}",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => panic!("could not run python3 to locate rotel ({e}): {INSTALL}"),
    };
    let p = Path::new(&dir).join("rotel-agent");
    assert!(p.is_file(), "{} not found: {INSTALL}", p.display());
    p
}

/// A free TCP port on 127.0.0.1 (bound then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// A running rotel-agent printing everything it receives; killed (by PID) on drop.
pub struct Rotel {
    child: Child,
    pub grpc_port: u16,
    pub http_port: u16,
    stdout: PathBuf,
    _dir: tempfile::TempDir,
}

impl Rotel {
    pub fn start() -> Rotel {
        let agent = rotel_agent();
        let dir = tempfile::tempdir().expect("temp dir");
        let stdout = dir.path().join("rotel.out");
        let stderr = dir.path().join("rotel.err");
        let grpc_port = free_port();
        let mut http_port = free_port();
        while http_port == grpc_port {
            http_port = free_port();
        }
        let child = Command::new(&agent)
            .arg("start")
            .args(["--otlp-grpc-endpoint", &format!("127.0.0.1:{grpc_port}")])
            .args(["--otlp-http-endpoint", &format!("127.0.0.1:{http_port}")])
            .args(["--exporter", "blackhole"])
            .args(["--debug-log", "traces", "--debug-log", "metrics"])
            .args(["--debug-log-verbosity", "detailed"])
            .arg("--pid-file")
            .arg(dir.path().join("rotel.pid"))
            .arg("--log-file")
            .arg(dir.path().join("rotel.log"))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).expect("stdout file"))
            .stderr(std::fs::File::create(&stderr).expect("stderr file"))
            .spawn()
            .unwrap_or_else(|e| panic!("could not start {}: {e}", agent.display()));
        let mut rotel = Rotel {
            child,
            grpc_port,
            http_port,
            stdout,
            _dir: dir,
        };
        rotel.wait_listening(Duration::from_secs(20));
        rotel
    }

    fn wait_listening(&mut self, limit: Duration) {
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "rotel-agent exited with {status} before listening:\n{}\n{}",
                    self.output(),
                    std::fs::read_to_string(self.stdout.with_file_name("rotel.err"))
                        .unwrap_or_default()
                );
            }
            let up = |port| TcpStream::connect(("127.0.0.1", port)).is_ok();
            if up(self.grpc_port) && up(self.http_port) {
                return;
            }
            assert!(
                start.elapsed() < limit,
                "rotel-agent did not listen on 127.0.0.1:{} and :{} within {limit:?}",
                self.grpc_port,
                self.http_port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    /// Waits (bounded) until every needle appears in rotel's output, then returns the output.
    pub fn wait_for(&self, needles: &[&str], limit: Duration) -> String {
        let start = Instant::now();
        loop {
            let out = self.output();
            if needles.iter().all(|n| out.contains(n)) {
                return out;
            }
            if start.elapsed() > limit {
                let missing: Vec<_> = needles.iter().filter(|n| !out.contains(**n)).collect();
                panic!("rotel did not print {missing:?} within {limit:?}; its output:\n{out}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Rotel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One span as rotel prints it with `--debug-log-verbosity detailed`.
#[derive(Debug, Default, Clone)]
pub struct PrintedSpan {
    pub name: String,
    pub trace_id: String,
    pub id: String,
    pub parent_id: String,
    pub kind: String,
    /// `key: Type(value)` lines of the span's attributes.
    pub attributes: Vec<String>,
}

/// Parses the `Span #N` blocks of rotel's output.
pub fn spans(output: &str) -> Vec<PrintedSpan> {
    let mut spans = Vec::new();
    let mut current: Option<PrintedSpan> = None;
    let mut in_attributes = false;
    for line in output.lines() {
        let t = line.trim();
        if t.starts_with("Span #") {
            spans.extend(current.take());
            current = Some(PrintedSpan::default());
            in_attributes = false;
            continue;
        }
        if t.starts_with("ResourceSpans #") || t.starts_with("ScopeSpans #") {
            spans.extend(current.take());
            continue;
        }
        let Some(span) = current.as_mut() else {
            continue;
        };
        let field = |prefix: &str| {
            t.strip_prefix(prefix)
                .and_then(|r| r.trim_start().strip_prefix(':'))
                .map(|v| v.trim().to_owned())
        };
        if let Some(v) = field("Trace ID") {
            span.trace_id = v;
        } else if let Some(v) = field("Parent ID") {
            span.parent_id = v;
        } else if let Some(v) = field("ID") {
            span.id = v;
        } else if let Some(v) = field("Name") {
            span.name = v;
        } else if let Some(v) = field("Kind") {
            span.kind = v;
        } else if t == "Attributes:" {
            in_attributes = true;
        } else if in_attributes && t.starts_with("->") {
            span.attributes
                .push(t.trim_start_matches("->").trim().to_owned());
        } else if !t.starts_with("->") {
            in_attributes = false;
        }
    }
    spans.extend(current);
    spans
}

/// The lines of the block that describes metric `name` (from its `Name:` line to the next `Metric #`).
pub fn metric_block(output: &str, name: &str) -> Option<String> {
    let needle = format!("-> Name: {name}");
    let start = output.find(&needle)?;
    let rest = &output[start..];
    let end = rest
        .find("Metric #")
        .or_else(|| rest.find("ResourceMetrics #"))
        .unwrap_or(rest.len());
    Some(rest[..end].to_owned())
}

/// The value of the last exported data point of `name` whose attributes include `attribute`.
pub fn last_value(out: &str, name: &str, attribute: &str) -> Option<u64> {
    let start = out.rfind(&format!("-> Name: {name}"))?;
    let block = &out[start..];
    let block = &block[..block.find("Metric #").unwrap_or(block.len())];
    block
        .split("NumberDataPoints #")
        .filter(|point| point.contains(attribute))
        .find_map(|point| {
            point
                .lines()
                .find_map(|l| l.trim().strip_prefix("Value: "))
                .and_then(|v| v.trim().parse().ok())
        })
}

/// A field value that counts how often it is formatted (`Debug`): a probe for which layers visit a span's fields.
#[derive(Clone, Default)]
pub struct Counted(pub std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl std::fmt::Debug for Counted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        f.write_str("counted")
    }
}

impl Counted {
    /// The formattings so far, resetting the count.
    pub fn take(&self) -> usize {
        self.0.swap(0, std::sync::atomic::Ordering::Relaxed)
    }
}

/// A request's spans: a root with a `Debug` field (named `name` for OpenTelemetry) and 3 children with one each,
/// an event in each child, and a field recorded later: [`FORMATTED_PER_TRACED_REQUEST`] formattings of `field`
/// when the OpenTelemetry layer sees the whole trace.
pub fn traced_request(name: &'static str, field: &Counted) {
    let root =
        tracing::info_span!("request", otel.name = name, url.path = "/orders/7", body = ?field);
    let _root = root.enter();
    for i in 0..3 {
        let child = tracing::info_span!("step", step = i, detail = ?field);
        let _child = child.enter();
        tracing::info!(value = ?field, "inside a step");
        tracing::Span::current().record("step", 10 + i);
    }
}

/// How often [`traced_request`] formats its field for the OpenTelemetry layer.
pub const FORMATTED_PER_TRACED_REQUEST: usize = 7;
