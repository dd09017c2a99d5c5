//! What the tests of the service share: the service as a process, started on an ephemeral 127.0.0.1 port and
//! stopped with SIGTERM (or killed by PID when dropped), and plain HTTP/1.1 requests to it.
#![allow(dead_code)] // each test binary uses its part

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

/// A running `otlp-demo`, killed by PID on drop unless stopped gracefully first.
pub struct Service {
    child: Child,
    pub addr: SocketAddr,
    /// The Prometheus scrape endpoint, when `--prometheus` turned it on.
    pub prometheus: Option<SocketAddr>,
    lines: mpsc::Receiver<String>,
}

impl Service {
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> Service {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_otlp-demo"));
        cmd.args(["--addr", "127.0.0.1:0"]).args(args);
        cmd.env_remove("OTEL_EXPORTER_OTLP_ENDPOINT");
        cmd.env("OTEL_SDK_DISABLED", "true");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start otlp-demo");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut prometheus = None;
        let addr = loop {
            let line = lines
                .recv_timeout(Duration::from_secs(30))
                .expect("otlp-demo prints its listening line");
            if let Some(rest) = line.strip_prefix("otlp-demo prometheus on http://") {
                let addr = rest.trim_end_matches("/metrics").parse().expect("address");
                prometheus = Some(addr);
                continue;
            }
            break line
                .strip_prefix("otlp-demo listening on http://")
                .and_then(|rest| rest.split_whitespace().next())
                .unwrap_or_else(|| panic!("unexpected first line: {line}"))
                .parse()
                .expect("address");
        };
        Service {
            child,
            addr,
            prometheus,
            lines,
        }
    }

    /// SIGTERM, then the `stopped` report; asserts exit status 0.
    pub fn stop(mut self) -> Value {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        let report = self.report();
        let exit = self.child.wait().expect("wait");
        assert!(exit.success(), "otlp-demo exited with {exit}");
        report
    }

    pub fn report(&self) -> Value {
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(30))
                .expect("otlp-demo prints its stopped line");
            if let Some(json) = line.strip_prefix("otlp-demo stopped ") {
                return serde_json::from_str(json).expect("report is JSON");
            }
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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
