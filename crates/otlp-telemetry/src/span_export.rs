//! The OTLP span exporter `init` installs: each batch encoded by [`otlp_encode`](crate::otlp_encode) into one
//! buffer (no intermediate protobuf structures), optionally gzipped, and sent over gRPC (tonic, on the exporter
//! runtime's connection) or HTTP/protobuf ([`RuntimeHttpClient`](crate::http_client::RuntimeHttpClient)).
//! Endpoint, headers, timeout and compression come from the [`TelemetryConfig`](crate::TelemetryConfig), as
//! for the metric exporter.
#![cfg(any(feature = "grpc", feature = "http"))]

use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SpanData, SpanExporter};

use crate::otlp_encode::encode_trace_request;

/// The span exporter `init` installs: ours, or `opentelemetry-otlp`'s for gRPC to an `https://` endpoint (whose
/// TLS is configured through that crate's features).
#[derive(Debug)]
pub(crate) enum AnySpanExporter {
    Ours(OtlpSpanExporter),
    #[cfg(feature = "grpc")]
    Otlp(opentelemetry_otlp::SpanExporter),
}

impl SpanExporter for AnySpanExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        match self {
            AnySpanExporter::Ours(e) => e.export(batch).await,
            #[cfg(feature = "grpc")]
            AnySpanExporter::Otlp(e) => e.export(batch).await,
        }
    }

    fn shutdown_with_timeout(&self, timeout: std::time::Duration) -> OTelSdkResult {
        match self {
            AnySpanExporter::Ours(e) => e.shutdown_with_timeout(timeout),
            #[cfg(feature = "grpc")]
            AnySpanExporter::Otlp(e) => e.shutdown_with_timeout(timeout),
        }
    }

    fn set_resource(&mut self, resource: &Resource) {
        match self {
            AnySpanExporter::Ours(e) => e.set_resource(resource),
            #[cfg(feature = "grpc")]
            AnySpanExporter::Otlp(e) => e.set_resource(resource),
        }
    }
}

/// Where the encoded batches go.
#[derive(Debug)]
pub(crate) enum Transport {
    #[cfg(feature = "grpc")]
    Grpc {
        client: tonic::client::Grpc<tonic::transport::Channel>,
        metadata: tonic::metadata::MetadataMap,
    },
    #[cfg(feature = "http")]
    Http {
        client: crate::http_client::RuntimeHttpClient,
        uri: http::Uri,
        headers: http::HeaderMap,
        gzip: bool,
    },
}

/// See the [module docs](self).
#[derive(Debug)]
pub(crate) struct OtlpSpanExporter {
    resource: Resource,
    transport: Transport,
    /// The previous batch's encoded size: the next buffer is allocated once at about the right size.
    last_len: AtomicUsize,
}

impl OtlpSpanExporter {
    /// gRPC compresses in tonic (`Grpc::send_compressed`), HTTP in [`Transport::Http`]'s `gzip`.
    pub(crate) fn new(transport: Transport) -> Self {
        OtlpSpanExporter {
            resource: Resource::builder_empty().build(),
            transport,
            last_len: AtomicUsize::new(0),
        }
    }

    fn body(&self, batch: &[SpanData]) -> Result<Vec<u8>, OTelSdkError> {
        let mut buf = Vec::with_capacity(self.last_len.load(Ordering::Relaxed) + 1024);
        encode_trace_request(&self.resource, batch, &mut buf);
        self.last_len.store(buf.len(), Ordering::Relaxed);
        match &self.transport {
            #[cfg(feature = "http")]
            Transport::Http { gzip: true, .. } => {
                gzip(&buf).map_err(|e| OTelSdkError::InternalFailure(format!("gzip failed: {e}")))
            }
            _ => Ok(buf),
        }
    }
}

#[cfg(feature = "http")]
fn gzip(body: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::Write as _;
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4),
        flate2::Compression::default(),
    );
    encoder.write_all(body)?;
    encoder.finish()
}

impl SpanExporter for OtlpSpanExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let body = self.body(&batch)?;
        // The spans' memory goes back before the round trip, not after it.
        drop(batch);
        match &self.transport {
            #[cfg(feature = "grpc")]
            Transport::Grpc { client, metadata } => {
                grpc::export(client.clone(), metadata.clone(), body).await
            }
            #[cfg(feature = "http")]
            Transport::Http {
                client,
                uri,
                headers,
                gzip,
            } => http_export(client, uri, headers, *gzip, body).await,
        }
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.resource = resource.clone();
    }
}

#[cfg(feature = "http")]
async fn http_export(
    client: &crate::http_client::RuntimeHttpClient,
    uri: &http::Uri,
    headers: &http::HeaderMap,
    gzip: bool,
    body: Vec<u8>,
) -> OTelSdkResult {
    use opentelemetry_http::HttpClient as _;
    let fail = |m: String| OTelSdkError::InternalFailure(m);
    let mut request = http::Request::post(uri.clone())
        .body(Bytes::from(body))
        .map_err(|e| fail(format!("could not build the request: {e}")))?;
    // The configured headers first, so that they cannot replace the content type or encoding set after them.
    *request.headers_mut() = headers.clone();
    request.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/x-protobuf"),
    );
    if gzip {
        request.headers_mut().insert(
            http::header::CONTENT_ENCODING,
            http::HeaderValue::from_static("gzip"),
        );
    }
    let response = client
        .send_bytes(request)
        .await
        .map_err(|e| fail(format!("HTTP export failed: {e}")))?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(fail(format!(
            "HTTP export failed: the collector answered {}",
            response.status()
        )))
    }
}

#[cfg(feature = "grpc")]
pub(crate) mod grpc {
    use super::*;
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

    const EXPORT: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

    /// Sends already-encoded bytes, and ignores the response's body (an `ExportTraceServiceResponse`,
    /// whose partial-success details `opentelemetry-otlp` only logs at debug level).
    #[derive(Debug, Clone, Copy)]
    struct Raw;

    impl Codec for Raw {
        type Encode = Bytes;
        type Decode = ();
        type Encoder = Raw;
        type Decoder = Raw;
        fn encoder(&mut self) -> Raw {
            Raw
        }
        fn decoder(&mut self) -> Raw {
            Raw
        }
    }

    impl Encoder for Raw {
        type Item = Bytes;
        type Error = tonic::Status;
        fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
            bytes::BufMut::put(dst, item);
            Ok(())
        }
    }

    impl Decoder for Raw {
        type Item = ();
        type Error = tonic::Status;
        fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<()>, tonic::Status> {
            let n = bytes::Buf::remaining(src);
            bytes::Buf::advance(src, n);
            Ok(Some(()))
        }
    }

    /// A TCP connection that acknowledges at once what it receives (Linux `TCP_QUICKACK`, re-armed after each read
    /// since the kernel clears it). A collector that writes its HTTP/2 WINDOW_UPDATE and then its response as two
    /// small segments with Nagle on (rotel does) otherwise holds the response until our delayed ACK, up to 40 ms
    /// per export: the batch processor exports one batch at a time, so that stall is what dropped spans.
    #[derive(Debug)]
    pub(crate) struct QuickAck(tokio::net::TcpStream);

    impl QuickAck {
        /// Whether the socket acknowledges at once right now (for tests).
        #[cfg(all(test, any(target_os = "linux", target_os = "android")))]
        pub(crate) fn quickack(&self) -> bool {
            socket2::SockRef::from(&self.0)
                .tcp_quickack()
                .unwrap_or(false)
        }

        fn rearm(&self) {
            #[cfg(any(target_os = "linux", target_os = "android"))]
            let _ = socket2::SockRef::from(&self.0).set_tcp_quickack(true);
        }
    }

    impl tokio::io::AsyncRead for QuickAck {
        fn poll_read(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            let this = self.get_mut();
            let polled = Pin::new(&mut this.0).poll_read(cx, buf);
            if polled.is_ready() {
                this.rearm();
            }
            polled
        }
    }

    impl tokio::io::AsyncWrite for QuickAck {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
        }

        fn poll_write_vectored(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            bufs: &[std::io::IoSlice<'_>],
        ) -> Poll<std::io::Result<usize>> {
            Pin::new(&mut self.get_mut().0).poll_write_vectored(cx, bufs)
        }

        fn is_write_vectored(&self) -> bool {
            self.0.is_write_vectored()
        }

        fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.get_mut().0).poll_flush(cx)
        }

        fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
        }
    }

    /// Connects the gRPC channel over [`QuickAck`] TCP connections (plain `http://` endpoints only).
    #[derive(Debug, Clone, Copy)]
    pub(crate) struct QuickAckConnector;

    type Connecting =
        Pin<Box<dyn Future<Output = std::io::Result<hyper_util::rt::TokioIo<QuickAck>>> + Send>>;

    impl tower_service::Service<http::Uri> for QuickAckConnector {
        type Response = hyper_util::rt::TokioIo<QuickAck>;
        type Error = std::io::Error;
        type Future = Connecting;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, uri: http::Uri) -> Connecting {
            Box::pin(async move {
                let host = uri
                    .host()
                    .ok_or_else(|| std::io::Error::other(format!("no host in {uri}")))?;
                let host = host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_owned();
                let port = uri.port_u16().unwrap_or(80);
                let stream = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
                stream.set_nodelay(true)?;
                let stream = QuickAck(stream);
                stream.rearm();
                Ok(hyper_util::rt::TokioIo::new(stream))
            })
        }
    }

    pub(super) async fn export(
        mut client: tonic::client::Grpc<tonic::transport::Channel>,
        metadata: tonic::metadata::MetadataMap,
        body: Vec<u8>,
    ) -> OTelSdkResult {
        let fail = |m: String| OTelSdkError::InternalFailure(m);
        client
            .ready()
            .await
            .map_err(|e| fail(format!("gRPC export failed: the channel is not ready: {e}")))?;
        let mut request = tonic::Request::new(Bytes::from(body));
        *request.metadata_mut() = metadata;
        client
            .unary::<_, (), _>(request, http::uri::PathAndQuery::from_static(EXPORT), Raw)
            .await
            .map(drop)
            .map_err(|s| fail(format!("gRPC export failed: {s}")))
    }
}

#[cfg(all(
    test,
    feature = "grpc",
    any(target_os = "linux", target_os = "android")
))]
mod tests {
    use super::grpc::QuickAckConnector;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tower_service::Service as _;

    /// Request/response rounds on a loopback connection, as an export does; returns the client socket's
    /// `TCP_QUICKACK` after them (the kernel reports 0 once it has switched to delayed, "ping-pong" ACKs).
    async fn quickack_after_rounds<S>(client: &mut S, sock: impl Fn(&S) -> bool) -> bool
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        for _ in 0..20 {
            client.write_all(b"request").await.unwrap();
            let mut answer = [0u8; 8];
            client.read_exact(&mut answer).await.unwrap();
        }
        sock(client)
    }

    async fn echo_server() -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 7];
                    while s.read_exact(&mut buf).await.is_ok() {
                        if s.write_all(b"response").await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn connections_keep_acknowledging_at_once() {
        let addr = echo_server().await;
        // A plain connection falls back to delayed ACKs: what lets a Nagle-bound collector stall.
        let mut plain = tokio::net::TcpStream::connect(addr).await.unwrap();
        plain.set_nodelay(true).unwrap();
        let plain_quick = quickack_after_rounds(&mut plain, |s| {
            socket2::SockRef::from(s).tcp_quickack().unwrap()
        })
        .await;
        assert!(
            !plain_quick,
            "the kernel kept quick ACKs on a plain connection"
        );

        let uri: http::Uri = format!("http://{addr}").parse().unwrap();
        let io = QuickAckConnector.call(uri).await.unwrap();
        let mut ours = io.into_inner();
        assert!(
            quickack_after_rounds(&mut ours, |s| s.quickack()).await,
            "our connection fell back to delayed ACKs"
        );
    }
}
