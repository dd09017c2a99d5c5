//! The OTLP/HTTP transport: reqwest's async client, its requests driven by the exporter runtime.
//!
//! The SDK's export threads have no tokio runtime, which is why the async clients panic there and the
//! blocking one is the usual choice. But a blocking request cannot be abandoned: at the shutdown deadline
//! it would keep its export thread (and the provider's shutdown) waiting on a silent collector until its
//! timeout. Spawning each request on [`ExporterRuntime`](crate::runtime::ExporterRuntime) and awaiting the
//! task from the export thread makes the export future a real one: dropping it aborts the request.
#![cfg(feature = "http")]

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use opentelemetry_http::{HttpClient, HttpError, Request, Response};
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

/// Larger response bodies are an error, as in the SDK's own clients (OTLP responses are tiny).
const MAX_RESPONSE_BODY_BYTES: usize = 4 * 1024 * 1024;

/// An [`HttpClient`] whose requests run on a given runtime.
#[derive(Debug, Clone)]
pub(crate) struct RuntimeHttpClient {
    client: reqwest::Client,
    runtime: Handle,
}

impl RuntimeHttpClient {
    /// `timeout` bounds each request, like the exporter's own client.
    pub(crate) fn new(timeout: Duration, runtime: Handle) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder().timeout(timeout).build()?;
        Ok(RuntimeHttpClient { client, runtime })
    }
}

/// Aborts the spawned request when the export waiting for it is dropped (abandoned at the deadline).
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn send(
    client: reqwest::Client,
    request: Request<Bytes>,
) -> Result<Response<Bytes>, HttpError> {
    let request = reqwest::Request::try_from(request)?;
    let mut response = client.execute(request).await?;
    let status = response.status();
    let headers = std::mem::take(response.headers_mut());
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > MAX_RESPONSE_BODY_BYTES {
            return Err("the collector's response body is larger than 4 MiB".into());
        }
        body.extend_from_slice(&chunk);
    }
    let mut out = Response::builder().status(status).body(Bytes::from(body))?;
    *out.headers_mut() = headers;
    Ok(out)
}

impl HttpClient for RuntimeHttpClient {
    // The trait is declared with `#[async_trait]`: this is the signature it expands to.
    fn send_bytes<'life0, 'async_trait>(
        &'life0 self,
        request: Request<Bytes>,
    ) -> Pin<Box<dyn Future<Output = Result<Response<Bytes>, HttpError>> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        let task = AbortOnDrop(self.runtime.spawn(send(self.client.clone(), request)));
        Box::pin(async move {
            let mut task = task;
            match (&mut task.0).await {
                Ok(result) => result,
                Err(e) => Err(Box::new(e) as HttpError),
            }
        })
    }
}
