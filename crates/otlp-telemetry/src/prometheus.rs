//! Metrics for a Prometheus scrape (feature `prometheus`): `OTEL_METRICS_EXPORTER=prometheus` (or
//! `otlp,prometheus` for both), served at `http://OTEL_EXPORTER_PROMETHEUS_HOST:OTEL_EXPORTER_PROMETHEUS_PORT/metrics`
//! (`localhost:9464` by default, as the specification says).
//!
//! The meter provider gets one more reader, `opentelemetry-prometheus`'s, which the scrape pulls: each scrape
//! runs the owners' callbacks and encodes what they observed in Prometheus's text format. Names follow that
//! exporter's translation: dots become underscores, the unit is appended (`semaphore_wait_duration_seconds`),
//! counters end in `_total` (`worker_pool_tasks_total`), and attribute keys become labels (`worker_pool_name`).
//!
//! The endpoint is a small HTTP/1.1 server on a thread of its own: it answers `GET /metrics` (and 404 to anything
//! else), one connection at a time, with read and write timeouts so that a stuck client cannot hold it. It stops
//! when the [`TelemetryGuard`](crate::TelemetryGuard) shuts down or is dropped; the thread is joined then.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = otlp_telemetry::TelemetryConfig::from_env()?
//!     .metrics(false) // no OTLP metrics, only the scrape
//!     .prometheus(true)
//!     .prometheus_address("127.0.0.1", 0); // 0: any free port
//! let guard = otlp_telemetry::init(config)?;
//! println!("scrape http://{}/metrics", guard.prometheus_addr().unwrap());
//! # Ok(())
//! # }
//! ```

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use prometheus::{Encoder, Registry, TextEncoder};

use crate::error::TelemetryError;

/// How long a scrape's connection may take to send its request or to take the answer.
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// The most of a request that is read: a scrape's request is a few hundred bytes.
const MAX_REQUEST: usize = 16 * 1024;

/// The scrape endpoint: its reader goes to the meter provider, the server answers scrapes until stopped.
pub(crate) struct PrometheusServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for PrometheusServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrometheusServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// Binds `host:port` and builds the reader whose collection the server encodes.
pub(crate) fn start(
    host: &str,
    port: u16,
) -> Result<
    (
        opentelemetry_prometheus::PrometheusExporter,
        PrometheusServer,
    ),
    TelemetryError,
> {
    let bind_error = |source: io::Error| TelemetryError::Prometheus {
        address: format!("{host}:{port}"),
        source,
    };
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(bind_error)?
        .collect();
    let listener = TcpListener::bind(&addrs[..]).map_err(bind_error)?;
    let addr = listener.local_addr().map_err(bind_error)?;
    let registry = Registry::new();
    let exporter = opentelemetry_prometheus::exporter()
        .with_registry(registry.clone())
        .build()
        .map_err(|e| TelemetryError::Prometheus {
            address: addr.to_string(),
            source: io::Error::other(e.to_string()),
        })?;
    let stop = Arc::new(AtomicBool::new(false));
    let thread = {
        let stop = Arc::clone(&stop);
        std::thread::Builder::new()
            .name("otlp-telemetry-prometheus".into())
            .spawn(move || serve(&listener, &registry, &stop))
            .map_err(TelemetryError::Runtime)?
    };
    Ok((
        exporter,
        PrometheusServer {
            addr,
            stop,
            thread: Some(thread),
        },
    ))
}

impl PrometheusServer {
    /// Where scrapes go (the bound port when 0 was asked).
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops answering and joins the thread: at most one scrape's [`IO_TIMEOUT`]s.
    pub(crate) fn stop(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept with a connection of our own (to loopback when bound to every interface).
        let mut wake = self.addr;
        if wake.ip().is_unspecified() {
            wake.set_ip(match wake {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        let _ = TcpStream::connect_timeout(&wake, IO_TIMEOUT);
        let _ = thread.join();
    }
}

impl Drop for PrometheusServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve(listener: &TcpListener, registry: &Registry, stop: &AtomicBool) {
    for stream in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        // A failed connection concerns its client only.
        if let Ok(stream) = stream {
            let _ = answer(stream, registry);
        }
    }
}

/// Reads one request and answers it; the connection closes after.
fn answer(mut stream: TcpStream, registry: &Registry) -> io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut request = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < MAX_REQUEST {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        request.extend_from_slice(&buf[..n]);
    }
    let line = request.split(|&b| b == b'\r').next().unwrap_or_default();
    let mut parts = line.split(|&b| b == b' ');
    let (method, path) = (parts.next(), parts.next());
    let path = path.map(|p| p.split(|&b| b == b'?').next().unwrap_or_default());
    let (status, content_type, body) = match (method, path) {
        (Some(b"GET"), Some(b"/metrics")) => {
            let encoder = TextEncoder::new();
            let mut body = Vec::new();
            match encoder.encode(&registry.gather(), &mut body) {
                Ok(()) => ("200 OK", encoder.format_type().to_owned(), body),
                Err(e) => (
                    "500 Internal Server Error",
                    "text/plain".to_owned(),
                    e.to_string().into_bytes(),
                ),
            }
        }
        _ => (
            "404 Not Found",
            "text/plain".to_owned(),
            b"only GET /metrics is served here\n".to_vec(),
        ),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(&body)?;
    stream.flush()
}
