//! What `init`'s span exporter puts on the wire over OTLP/HTTP, read by a minimal HTTP server: the configured
//! headers, the protobuf content type, gzip when asked, and a body that decodes to the spans that were recorded.
#![cfg(feature = "http")]

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use otlp_telemetry::{TelemetryConfig, TraceSampler};
use prost::Message as _;

/// One HTTP request as received: lower-cased header lines and the body.
struct Received {
    request_line: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Serves one connection: answers 200 to each request and sends it on `tx`.
fn serve(listener: TcpListener, tx: mpsc::Sender<Received>) {
    let (stream, _) = listener.accept().expect("accept");
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut writer = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            reader.read_line(&mut h).expect("header");
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (n, v) = h.split_once(':').expect("header line");
            headers.push((n.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
        let len: usize = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .map(|(_, v)| v.parse().expect("length"))
            .expect("content-length");
        let mut body = vec![0; len];
        reader.read_exact(&mut body).expect("body");
        writer
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            .expect("answer");
        let request_line = line.trim_end().to_owned();
        if tx
            .send(Received {
                request_line,
                headers,
                body,
            })
            .is_err()
        {
            return;
        }
    }
}

#[test]
fn headers_gzip_and_spans_reach_the_wire() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || serve(listener, tx));

    let config = TelemetryConfig::from_env_vars([
        ("OTEL_SERVICE_NAME", "wire"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        (
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            &format!("http://127.0.0.1:{port}/custom/traces"),
        ),
        ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
        (
            "OTEL_EXPORTER_OTLP_HEADERS",
            "x-team=checkout,api-key=s%3Dcret",
        ),
    ])
    .expect("valid variables")
    .trace_sampler(TraceSampler::ParentBasedAlwaysOn)
    .metrics(false)
    .fmt_output(false)
    .shutdown_timeout(Duration::from_secs(10));
    let mut guard = otlp_telemetry::init(config).expect("init");
    {
        let parent = tracing::info_span!("wire.parent", order.id = 42, customer = "acme");
        let _p = parent.enter();
        tracing::info_span!("wire.child", rows = 3).in_scope(|| {});
    }
    guard.shutdown().expect("delivered");
    assert_eq!(guard.dropped_spans(), Some(0));

    let got = rx.recv_timeout(Duration::from_secs(10)).expect("a request");
    assert_eq!(got.request_line, "POST /custom/traces HTTP/1.1");
    assert_eq!(got.header("x-team"), Some("checkout"));
    assert_eq!(got.header("api-key"), Some("s=cret"));
    assert_eq!(got.header("content-type"), Some("application/x-protobuf"));
    assert_eq!(got.header("content-encoding"), Some("gzip"));
    assert!(
        got.header("user-agent")
            .is_some_and(|ua| ua.starts_with("OTel-OTLP-Exporter-Rust/")),
        "{:?}",
        got.header("user-agent")
    );

    let mut body = Vec::new();
    flate2::read::GzDecoder::new(got.body.as_slice())
        .read_to_end(&mut body)
        .expect("gzip body");
    let request = ExportTraceServiceRequest::decode(body.as_slice()).expect("protobuf body");
    let rs = &request.resource_spans[0];
    let resource = rs.resource.as_ref().expect("resource");
    assert!(
        resource
            .attributes
            .iter()
            .any(|kv| kv.key == "service.name" && format!("{:?}", kv.value).contains("wire"))
    );
    let spans: Vec<_> = rs.scope_spans.iter().flat_map(|s| &s.spans).collect();
    let parent = spans
        .iter()
        .find(|s| s.name == "wire.parent")
        .expect("parent");
    let child = spans
        .iter()
        .find(|s| s.name == "wire.child")
        .expect("child");
    assert_eq!(child.parent_span_id, parent.span_id);
    assert_eq!(child.trace_id, parent.trace_id);
    assert!(parent.attributes.iter().any(|kv| kv.key == "order.id"));
    assert!(parent.attributes.iter().any(|kv| kv.key == "customer"));
}
