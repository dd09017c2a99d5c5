//! A Prometheus of a test's own, scraping one target, and its HTTP query API.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::process::wait_ready;
use crate::{Error, Process, free_port};

/// Prometheus on a free loopback port scraping one target every second, its data under a folder of the caller's;
/// killed by PID on drop.
#[derive(Debug)]
pub struct Prometheus {
    process: Process,
    addr: SocketAddr,
}

impl Prometheus {
    /// Starts Prometheus with its configuration and data in `dir`, scraping `target`'s `/metrics` every second as
    /// job `job`; waits (up to 60 s) until its first scrape of `target` is up.
    pub fn start(dir: &Path, job: &str, target: SocketAddr) -> Result<Prometheus, Error> {
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: {job}\n    \
                 static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .map_err(|e| Error::new(format!("cannot write {}: {e}", config.display())))?;
        let addr: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
        let mut cmd = Command::new("prometheus");
        cmd.arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        let process = Process::spawn(
            &mut cmd,
            "prometheus",
            "apt-get install -y prometheus (.ci/run installs it)",
        )?;
        // Prometheus's own scrape interval is 1 s: asking more often only loads the machine.
        wait_ready(
            Prometheus { process, addr },
            |p| &mut p.process,
            |p| values(&p.query("up", None).unwrap_or_default()).contains(&1.0),
            (Duration::from_secs(60), Duration::from_millis(200)),
            &format!("scrape {target}"),
            "see its log above",
        )
    }

    /// Its address (the HTTP API and UI).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `GET path` on the HTTP API: the JSON answer, whatever its `status`.
    pub fn get(&self, path: &str) -> Result<Value, Error> {
        let io = |e: std::io::Error| Error::new(format!("prometheus at {}: {e}", self.addr));
        let mut s = TcpStream::connect(self.addr).map_err(io)?;
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(io)?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nhost: {}\r\nconnection: close\r\n\r\n",
            self.addr
        )
        .map_err(io)?;
        let mut raw = String::new();
        s.read_to_string(&mut raw).map_err(io)?;
        let body = raw.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
        // Prometheus answers with chunked encoding at times: the JSON is the part between the outer braces.
        let json = &body[body.find('{').unwrap_or(0)..=body.rfind('}').unwrap_or(0)];
        serde_json::from_str(json).map_err(|e| Error::new(format!("{e}: {body}")))
    }

    /// `GET /api/v1/query` (at time `at`, seconds since the epoch, or now): the result vector, each element
    /// `{"metric": .., "value": [t, "v"]}`; an error unless Prometheus says `success`.
    pub fn query(&self, promql: &str, at: Option<f64>) -> Result<Vec<Value>, Error> {
        let mut path = format!("/api/v1/query?query={}", encode(promql));
        if let Some(t) = at {
            path.push_str(&format!("&time={t:.3}"));
        }
        result(promql, self.get(&path)?)
    }

    /// `GET /api/v1/query_range` from `start` to `end` (seconds since the epoch) every `step` seconds: the result
    /// matrix, each element `{"metric": .., "values": [[t, "v"], ..]}`.
    pub fn query_range(
        &self,
        promql: &str,
        start: f64,
        end: f64,
        step: f64,
    ) -> Result<Vec<Value>, Error> {
        let path = format!(
            "/api/v1/query_range?query={}&start={start:.3}&end={end:.3}&step={step}",
            encode(promql)
        );
        result(promql, self.get(&path)?)
    }
}

fn result(promql: &str, v: Value) -> Result<Vec<Value>, Error> {
    if v["status"] != "success" {
        return Err(Error::new(format!("{promql}: {v}")));
    }
    Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
}

/// The sample values of an instant query's result vector.
pub fn values(result: &[Value]) -> Vec<f64> {
    result
        .iter()
        .filter_map(|r| r["value"][1].as_str()?.parse().ok())
        .collect()
}

/// Percent-encoding for a query string value (everything but RFC 3986's unreserved characters).
pub fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_keeps_unreserved_characters_and_escapes_the_rest() {
        assert_eq!(encode("aZ09-_.~"), "aZ09-_.~");
        assert_eq!(
            encode("sum(rate(x{job=\"a b\"}[5s]))"),
            "sum%28rate%28x%7Bjob%3D%22a%20b%22%7D%5B5s%5D%29%29"
        );
        assert_eq!(encode("é"), "%C3%A9");
    }

    #[test]
    fn values_reads_each_samples_value() {
        let v: Vec<Value> = serde_json::from_str(
            r#"[{"metric":{},"value":[1.5,"2"]},{"metric":{},"value":[1.5,"NaN"]},{"metric":{}}]"#,
        )
        .unwrap();
        let got = values(&v);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0], 2.0);
        assert!(got[1].is_nan());
    }
}
