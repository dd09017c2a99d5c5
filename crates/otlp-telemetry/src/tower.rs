//! A tower layer for HTTP servers: continue the caller's trace and open a server span per request.
//!
//! [`ServerTraceLayer`] wraps any `tower::Service<http::Request<B>, Response = http::Response<R>>` (axum,
//! hyper, tonic servers). For each request it [extracts](crate::extract_context) the W3C context from the
//! headers, opens an `info` span of kind `server` named after the method (`GET`) while that context is
//! current (so the span is its child, and a caller's "not sampled" costs almost nothing), runs the inner
//! service inside it, and records `http.response.status_code` (server errors, 5xx, and service errors mark
//! the span as an error).
//!
//! ```
//! use std::convert::Infallible;
//! use otlp_telemetry::tower::ServerTraceLayer;
//! use tower::{ServiceBuilder, ServiceExt as _};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let service = ServiceBuilder::new()
//!     .layer(ServerTraceLayer::new())
//!     .service_fn(|_req: http::Request<()>| async {
//!         // Inside the server span: outgoing calls can `inject_context` to continue the trace.
//!         Ok::<_, Infallible>(http::Response::new(()))
//!     });
//! let response = service.oneshot(http::Request::new(())).await.unwrap();
//! assert_eq!(response.status(), 200);
//! # }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tower_layer::Layer;
use tower_service::Service;

use opentelemetry::Context as OtelContext;
use tracing::callsite::DefaultCallsite;
use tracing::field::FieldSet;
use tracing::metadata::Kind;
use tracing::{Level, Metadata};

use crate::propagation::extract_remote;

/// Layer that opens a server span per request, parented to the caller's context. See the
/// [module docs](self).
#[derive(Debug, Clone, Copy, Default)]
pub struct ServerTraceLayer {
    _private: (),
}

impl ServerTraceLayer {
    /// The layer.
    pub fn new() -> Self {
        ServerTraceLayer { _private: () }
    }
}

impl<S> Layer<S> for ServerTraceLayer {
    type Service = ServerTrace<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ServerTrace { inner }
    }
}

/// The service made by [`ServerTraceLayer`].
#[derive(Debug, Clone)]
pub struct ServerTrace<S> {
    inner: S,
}

impl<S, B, R> Service<http::Request<B>> for ServerTrace<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ServerTraceFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        // The caller's context is current while the span is created, so that the head-sampling decision
        // follows the caller's sampled flag and the span continues the caller's trace.
        // Without propagation headers the current context is the parent already: nothing to attach. The
        // fields are `&str`s, not `Display`s: no formatting for a layer that records them.
        let span = {
            let _parent = extract_remote(req.headers()).map(OtelContext::attach);
            let method = req.method().as_str();
            server_span(method, req.uri().path())
        };
        let future = {
            let _entered = span.enter();
            self.inner.call(req)
        };
        ServerTraceFuture {
            inner: future,
            span,
        }
    }
}

/// The server span's callsite, written out rather than made by `info_span!`: the macro would give it the
/// file, line and module of this file, which the OpenTelemetry layer exports as code attributes when
/// `span_source_attributes` is on, naming otlp-telemetry instead of the user's service.
static SERVER_SPAN_CALLSITE: DefaultCallsite = DefaultCallsite::new(&SERVER_SPAN);
static SERVER_SPAN: Metadata<'static> = Metadata::new(
    "HTTP request",
    module_path!(),
    Level::INFO,
    None,
    None,
    None,
    FieldSet::new(
        &[
            "otel.name",
            "otel.kind",
            "otel.status_code",
            "http.request.method",
            "url.path",
            "http.response.status_code",
        ],
        tracing::callsite::Identifier(&SERVER_SPAN_CALLSITE),
    ),
    Kind::SPAN,
);

/// An `info` span of kind `server`, enabled and filtered exactly as `info_span!` would make it.
fn server_span(method: &str, path: &str) -> tracing::Span {
    let enabled = tracing::level_enabled!(Level::INFO) && {
        let interest = SERVER_SPAN_CALLSITE.interest();
        interest.is_always()
            || (!interest.is_never()
                && tracing::dispatcher::get_default(|d| d.enabled(&SERVER_SPAN)))
    };
    if !enabled {
        return tracing::Span::none();
    }
    // In the order of the field names; the two `None`s are recorded when the response is known.
    let values: [Option<&dyn tracing::Value>; 6] = [
        Some(&method),
        Some(&"server"),
        None,
        Some(&method),
        Some(&path),
        None,
    ];
    tracing::Span::new(&SERVER_SPAN, &SERVER_SPAN.fields().value_set_all(&values))
}

pin_project_lite::pin_project! {
    /// The response future of [`ServerTrace`]: polls the inner future inside the server span.
    #[derive(Debug)]
    pub struct ServerTraceFuture<F> {
        #[pin]
        inner: F,
        span: tracing::Span,
    }
}

impl<F, R, E> Future for ServerTraceFuture<F>
where
    F: Future<Output = Result<http::Response<R>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let _entered = this.span.enter();
        let output = match this.inner.poll(cx) {
            Poll::Ready(output) => output,
            Poll::Pending => return Poll::Pending,
        };
        match &output {
            Ok(response) => {
                let status = response.status();
                this.span
                    .record("http.response.status_code", status.as_u16());
                if status.is_server_error() {
                    this.span.record("otel.status_code", "ERROR");
                }
            }
            Err(_) => {
                this.span.record("otel.status_code", "ERROR");
            }
        }
        Poll::Ready(output)
    }
}
