//! What every variant shares: the domain (orders, shards, ingest records), the accounting of answered requests,
//! and the process figures the admin route reports.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use serde::Serialize;

/// The client a request counts against (`x-client-id`, else `anonymous`).
pub fn client_id(headers: &HeaderMap) -> &str {
    headers
        .get("x-client-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .unwrap_or("anonymous")
}

/// One line of an order, as one shard knows it.
#[derive(Debug, Clone, Serialize)]
pub struct Line {
    pub shard: u32,
    pub sku: u32,
    pub qty: u32,
    pub price_cents: u64,
}

/// The `GET /api/orders/{id}` answer.
#[derive(Debug, Serialize)]
pub struct Order<'a> {
    pub id: u64,
    pub client: &'a str,
    pub status: &'static str,
    pub lines: Vec<Line>,
    pub total_cents: u64,
    pub note: &'static str,
}

/// Shards a `GET /api/orders/{id}` reads from.
pub const SHARDS: u32 = 3;

/// A shard's part of order `id`: a little CPU and one yield, like an in-memory store behind a lock.
pub async fn shard_lookup(id: u64, shard: u32) -> Result<Line, std::convert::Infallible> {
    tokio::task::yield_now().await;
    let h = mix(id ^ (u64::from(shard) << 32));
    Ok(Line {
        shard,
        sku: (h % 100_000) as u32,
        qty: (h >> 20) as u32 % 5 + 1,
        price_cents: (h >> 30) % 10_000 + 99,
    })
}

/// The simulated downstream call (a database, a partner API) made under the downstream semaphore.
pub async fn downstream(latency: Duration) {
    if latency.is_zero() {
        tokio::task::yield_now().await;
    } else {
        tokio::time::sleep(latency).await;
    }
}

/// Builds the order from the shards' lines.
pub fn order<'a>(id: u64, client: &'a str, lines: Vec<Line>) -> Order<'a> {
    let total_cents = lines.iter().map(|l| u64::from(l.qty) * l.price_cents).sum();
    Order {
        id,
        client,
        status: "confirmed",
        lines,
        total_cents,
        note: "simulated order: three shards fanned out, one downstream call under a semaphore",
    }
}

fn mix(mut x: u64) -> u64 {
    // splitmix64: deterministic per id, so tests can compare two variants' answers.
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The audit event of an order read: a checksum appended to an in-memory log.
pub async fn audit(log: Arc<AuditLog>, id: u64, client_hash: u64) {
    tokio::task::yield_now().await;
    log.record(mix(id ^ client_hash));
}

/// Where audit events go (a stand-in for a log shipper): counted and folded into a checksum.
#[derive(Debug, Default)]
pub struct AuditLog {
    events: AtomicU64,
    checksum: AtomicU64,
}

impl AuditLog {
    fn record(&self, value: u64) {
        self.events.fetch_add(1, Ordering::Relaxed);
        self.checksum.fetch_xor(value, Ordering::Relaxed);
    }

    /// Events recorded.
    pub fn events(&self) -> u64 {
        self.events.load(Ordering::Relaxed)
    }
}

/// A cheap hash of the client id for the audit event.
pub fn hash_str(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// One parsed ingest record: `sku,qty,price_cents`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    pub sku_len: usize,
    pub qty: u64,
    pub price_cents: u64,
}

/// Why an ingest line was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Not `sku,qty,price_cents` with numbers.
    Malformed,
    /// Parsed, but out of range (empty sku, qty 0 or over 1000, price 0).
    Invalid,
}

/// Stage 1: parse.
pub fn parse(line: &[u8]) -> Result<Record, Refused> {
    let text = std::str::from_utf8(line)
        .map_err(|_| Refused::Malformed)?
        .trim();
    let mut parts = text.split(',');
    let (Some(sku), Some(qty), Some(price), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Refused::Malformed);
    };
    let qty = qty.trim().parse().map_err(|_| Refused::Malformed)?;
    let price_cents = price.trim().parse().map_err(|_| Refused::Malformed)?;
    Ok(Record {
        sku_len: sku.trim().len(),
        qty,
        price_cents,
    })
}

/// Stage 2: validate.
pub fn validate(r: Record) -> Result<Record, Refused> {
    if r.sku_len == 0 || r.qty == 0 || r.qty > 1000 || r.price_cents == 0 {
        Err(Refused::Invalid)
    } else {
        Ok(r)
    }
}

/// Stage 3: aggregate (the record's value).
pub fn value(r: Record) -> u64 {
    r.qty * r.price_cents
}

/// The `POST /api/ingest` answer: every line is counted as exactly one outcome.
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct IngestSummary {
    pub records: u64,
    pub accepted: u64,
    pub malformed: u64,
    pub invalid: u64,
    pub total_cents: u64,
}

/// The non-empty lines of an ingest body.
pub fn lines(body: &Bytes) -> impl Iterator<Item = Bytes> + '_ {
    body.split(|b| *b == b'\n')
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .map(|l| body.slice_ref(l))
}

/// Requests answered, by status class: what the load test compares with its generator's counts.
#[derive(Debug, Default)]
pub struct Answered {
    pub ok: AtomicU64,
    pub throttled: AtomicU64,
    pub unavailable: AtomicU64,
    pub client_error: AtomicU64,
    pub server_error: AtomicU64,
}

impl Answered {
    /// Counts `status`.
    pub fn count(&self, status: StatusCode) {
        let slot = match status.as_u16() {
            200..=299 => &self.ok,
            429 => &self.throttled,
            503 => &self.unavailable,
            400..=499 => &self.client_error,
            _ => &self.server_error,
        };
        slot.fetch_add(1, Ordering::Relaxed);
    }

    /// All answered requests.
    pub fn total(&self) -> u64 {
        [
            &self.ok,
            &self.throttled,
            &self.unavailable,
            &self.client_error,
            &self.server_error,
        ]
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .sum()
    }

    /// As JSON.
    pub fn json(&self) -> serde_json::Value {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        serde_json::json!({
            "total": self.total(),
            "ok": g(&self.ok),
            "throttled": g(&self.throttled),
            "unavailable": g(&self.unavailable),
            "client_error": g(&self.client_error),
            "server_error": g(&self.server_error),
        })
    }
}

/// A JSON response with `body` (already encoded).
pub fn json_response(status: StatusCode, body: impl Into<Body>) -> Response {
    let mut r = Response::new(body.into());
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// An error answer with a short JSON message and, for 429/503, `retry-after` in whole seconds (at least 1).
pub fn refuse(
    status: StatusCode,
    message: &'static str,
    retry_after: Option<Duration>,
) -> Response {
    let mut r = json_response(status, Body::from(message));
    if let Some(after) = retry_after {
        let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
    }
    r
}

/// The peak of alive tokio tasks, sampled every millisecond by a plain thread (not a task, so it does not count
/// itself) until stopped.
#[derive(Debug)]
pub struct TaskSampler {
    peak: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TaskSampler {
    /// Starts sampling `handle`'s runtime.
    pub fn start(handle: tokio::runtime::Handle) -> TaskSampler {
        let peak = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (peak, stop) = (Arc::clone(&peak), Arc::clone(&stop));
            std::thread::Builder::new()
                .name("task-sampler".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        peak.fetch_max(handle.metrics().num_alive_tasks(), Ordering::Relaxed);
                        std::thread::sleep(Duration::from_millis(1));
                    }
                })
                .ok()
        };
        TaskSampler { peak, stop, thread }
    }

    /// A handle to the peak, for the admin route.
    pub fn peak(&self) -> Arc<AtomicUsize> {
        Arc::clone(&self.peak)
    }

    /// Stops and joins the thread.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Resident memory now (VmRSS), in KiB; 0 where /proc is missing.
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// CPU time the process has used so far (user + system, all threads, exited ones included), in milliseconds;
/// 0 where /proc is missing. `/proc` reports it in USER_HZ ticks, 100 a second on Linux.
pub fn cpu_ms() -> u64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
            let rest = &s[s.rfind(')')? + 1..];
            let mut f = rest.split_whitespace().skip(11);
            let utime: u64 = f.next()?.parse().ok()?;
            let stime: u64 = f.next()?.parse().ok()?;
            Some((utime + stime) * 10)
        })
        .unwrap_or(0)
}

/// What every variant's `/admin/stats` says besides its owners' stats.
pub fn process_json(
    answered: &Answered,
    peak: &AtomicUsize,
    audit: &AuditLog,
) -> serde_json::Value {
    let alloc = crate::alloc::snapshot();
    serde_json::json!({
        "answered": answered.json(),
        "alive_tasks": tokio::runtime::Handle::current().metrics().num_alive_tasks(),
        "peak_alive_tasks": peak.load(Ordering::Relaxed),
        "rss_kib": rss_kib(),
        "cpu_ms": cpu_ms(),
        "alloc_bytes": alloc.map(|a| a.0),
        "alloc_count": alloc.map(|a| a.1),
        "audit_events": audit.events(),
    })
}

/// `POST /admin/alloc-counting` with `on` or `off`: turns the counting allocator on or off (all variants).
pub async fn alloc_counting(body: Bytes) -> Response {
    let on = match &body[..] {
        b"on" => true,
        b"off" => false,
        _ => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "{\"error\":\"send on or off\"}",
                None,
            );
        }
    };
    if crate::alloc::set(on) {
        json_response(
            StatusCode::OK,
            Body::from(if on {
                "{\"counting\":true}"
            } else {
                "{\"counting\":false}"
            }),
        )
    } else {
        refuse(
            StatusCode::CONFLICT,
            "{\"error\":\"built without the count-alloc feature: rebuild with --features count-alloc\"}",
            None,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ingest_stages_sort_every_line_into_one_outcome() {
        assert_eq!(
            parse(b"A-1, 2, 150"),
            Ok(Record {
                sku_len: 3,
                qty: 2,
                price_cents: 150
            })
        );
        assert_eq!(parse(b"A-1,2"), Err(Refused::Malformed));
        assert_eq!(parse(b"A-1,x,3"), Err(Refused::Malformed));
        assert_eq!(parse(b"A,1,2,3"), Err(Refused::Malformed));
        assert_eq!(parse(b",1,2").and_then(validate), Err(Refused::Invalid));
        assert_eq!(parse(b"A,0,2").and_then(validate), Err(Refused::Invalid));
        assert_eq!(parse(b"A,1001,2").and_then(validate), Err(Refused::Invalid));
        assert_eq!(parse(b"A,3,5").and_then(validate).map(value), Ok(15));
        let body = Bytes::from_static(b"a,1,2\n\n  \nb,2,3\n");
        assert_eq!(lines(&body).count(), 2);
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        let r = refuse(
            StatusCode::TOO_MANY_REQUESTS,
            "{}",
            Some(Duration::from_millis(1)),
        );
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
        let r = refuse(
            StatusCode::TOO_MANY_REQUESTS,
            "{}",
            Some(Duration::from_millis(2500)),
        );
        assert_eq!(r.headers()[header::RETRY_AFTER], "3");
    }
}
