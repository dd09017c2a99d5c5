//! One HTTP request through a tower service that answers at once: the floor under `ServerTraceLayer` in the
//! `telemetry_server_layer` bench group and in the `server_span` example (instructions per request), and an
//! exporter that drops what it is given.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use tower_service::Service;

/// Drops every batch of spans: what is measured is the SDK's work up to the exporter.
#[derive(Debug)]
pub struct NoopExporter;

impl SpanExporter for NoopExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        black_box(batch);
        Ok(())
    }
}

/// Answers every request at once with an empty 200.
#[derive(Debug, Clone, Copy, Default)]
pub struct Answer;

impl Service<http::Request<()>> for Answer {
    type Response = http::Response<()>;
    type Error = Infallible;
    type Future = Ready<Result<http::Response<()>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<()>) -> Self::Future {
        black_box(req);
        ready(Ok(http::Response::new(())))
    }
}

/// A request as a load generator sends it: a path and two headers, no propagation headers.
pub fn request() -> http::Request<()> {
    http::Request::get("/orders/7")
        .header("host", "shop.example")
        .header("user-agent", "wrk")
        .body(())
        .expect("a valid request")
}

/// Sends `n` requests through `service`, each polled once to its response.
pub fn serve<S>(service: &mut S, n: u64)
where
    S: Service<http::Request<()>, Response = http::Response<()>, Error = Infallible>,
{
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..n {
        let future = pin!(service.call(request()));
        let Poll::Ready(Ok(response)) = future.poll(&mut cx) else {
            panic!("the service answers at once");
        };
        black_box(response);
    }
}

/// The propagator `otlp_telemetry::init` installs by default (W3C Trace Context and Baggage), installed
/// globally so that the layer's extraction does the same work as in a service.
pub fn install_default_propagator() {
    opentelemetry::global::set_text_map_propagator(
        opentelemetry::propagation::TextMapCompositePropagator::new(vec![
            Box::new(opentelemetry_sdk::propagation::TraceContextPropagator::new()),
            Box::new(opentelemetry_sdk::propagation::BaggagePropagator::new()),
        ]),
    );
}
