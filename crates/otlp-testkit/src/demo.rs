//! The demo service (`otlp-demo`) as a child process.

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

use crate::{Error, Process};

/// A running `otlp-demo` on an ephemeral 127.0.0.1 port, killed by PID on drop unless [`stop`](Self::stop)ped.
#[derive(Debug)]
pub struct Demo {
    process: Process,
    addr: SocketAddr,
    prometheus: Option<SocketAddr>,
    lines: mpsc::Receiver<String>,
}

impl Demo {
    /// Starts `cmd` (the `otlp-demo` binary with the caller's arguments and environment) with `--addr
    /// 127.0.0.1:0`, and waits (up to 30 s) for the line saying where it listens.
    pub fn start(cmd: &mut Command) -> Result<Demo, Error> {
        cmd.args(["--addr", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut process = Process::spawn(cmd, "otlp-demo", "cargo build -p otlp-demo")?;
        let stdout = process
            .child_mut()
            .stdout
            .take()
            .ok_or_else(|| Error::new("otlp-demo has no stdout"))?;
        let (tx, lines) = mpsc::channel();
        // Ends with the child's stdout, so it does not outlive the process.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut prometheus = None;
        let addr = loop {
            let line = lines.recv_timeout(Duration::from_secs(30)).map_err(|_| {
                Error::new("otlp-demo did not print its listening line within 30 s")
            })?;
            if let Some(rest) = line.strip_prefix("otlp-demo prometheus on http://") {
                prometheus = rest.trim_end_matches("/metrics").parse().ok();
                continue;
            }
            break line
                .strip_prefix("otlp-demo listening on http://")
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|a| a.parse().ok())
                .ok_or_else(|| {
                    Error::new(format!("unexpected first line from otlp-demo: {line}"))
                })?;
        };
        Ok(Demo {
            process,
            addr,
            prometheus,
            lines,
        })
    }

    /// Where it serves HTTP.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its Prometheus scrape endpoint, when `--prometheus` turned it on.
    pub fn prometheus(&self) -> Option<SocketAddr> {
        self.prometheus
    }

    /// Its PID.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Waits (up to 60 s) for its `otlp-demo stopped {json}` line: the report of a graceful shutdown.
    pub fn report(&self) -> Result<Value, Error> {
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(60))
                .map_err(|_| Error::new("otlp-demo did not report its shutdown within 60 s"))?;
            if let Some(json) = line.strip_prefix("otlp-demo stopped ") {
                return serde_json::from_str(json).map_err(|e| {
                    Error::new(format!("otlp-demo's report is not JSON ({e}): {json}"))
                });
            }
        }
    }

    /// SIGTERM, then its report; an error unless it exits with status 0.
    pub fn stop(mut self) -> Result<Value, Error> {
        self.process.terminate()?;
        let report = self.report()?;
        let status = self.process.wait()?;
        if !status.success() {
            return Err(Error::new(format!("otlp-demo exited with {status}")));
        }
        Ok(report)
    }
}
