//! What the tests of the service share: the service as a process, started on an ephemeral 127.0.0.1 port and
//! stopped with SIGTERM (or killed by PID when dropped), and plain HTTP/1.1 requests to it.
#![allow(dead_code)] // each test binary uses its part

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use otlp_testkit::Demo;
use serde_json::Value;

/// A running `otlp-demo` (otlp-testkit's `Demo`), killed by PID on drop unless stopped gracefully first.
pub struct Service {
    demo: Demo,
    pub addr: SocketAddr,
    /// The Prometheus scrape endpoint, when `--prometheus` turned it on.
    pub prometheus: Option<SocketAddr>,
}

impl Service {
    /// With the SDK off unless `env` turns it on, and no collector endpoint from the caller's environment.
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> Service {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_otlp-demo"));
        cmd.args(args)
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env("OTEL_SDK_DISABLED", "true")
            .envs(env.iter().copied());
        let demo = Demo::start(&mut cmd).expect("start otlp-demo");
        Service {
            addr: demo.addr(),
            prometheus: demo.prometheus(),
            demo,
        }
    }

    /// SIGTERM, then the `stopped` report; asserts exit status 0.
    pub fn stop(self) -> Value {
        self.demo.stop().expect("a graceful stop")
    }

    pub fn report(&self) -> Value {
        self.demo
            .report()
            .expect("otlp-demo prints its stopped line")
    }
}

#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// One request on its own connection (`Connection: close`); `Err` if the connection failed before a full answer.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> std::io::Result<Answer> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes())?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    let (head, body) = raw.split_once("\r\n\r\n").ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("no full head: {raw:?}"),
        )
    })?;
    let mut head_lines = head.lines();
    let status = head_lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line: {head:?}")))?;
    let headers: Vec<(String, String)> = head_lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let answer = Answer {
        status,
        headers,
        body: body.to_owned(),
    };
    let declared: usize = answer
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if declared != answer.body.len() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "body cut short",
        ));
    }
    Ok(answer)
}

pub fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Answer {
    request(addr, "GET", path, headers, "").expect("GET")
}
