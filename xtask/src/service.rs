//! The demo service as a child process, a small keep-alive HTTP/1.1 client, and the rotel collector: what
//! `cargo xtask demo` and `cargo xtask load` share.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use otlp_testkit::Demo;
use serde_json::Value;

use crate::cmd::Cmd;

/// Builds `otlp-demo` in release mode with the counting allocator and returns the binary's path.
pub fn build(root: &Path) -> Result<PathBuf, String> {
    let (ok, took) = Cmd::new(
        "cargo",
        &[
            "build",
            "--release",
            "-p",
            "otlp-demo",
            "--features",
            "count-alloc",
        ],
    )
    .run(root);
    if !ok {
        return Err("building otlp-demo failed".into());
    }
    println!("    built in {:.1} s", took.as_secs_f64());
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    Ok(target.join("release").join("otlp-demo"))
}

/// A running `otlp-demo` (otlp-testkit's `Demo`); killed by PID on drop unless [`stop`](Self::stop)ped.
pub struct Service {
    demo: Demo,
    pub addr: SocketAddr,
    /// The Prometheus scrape endpoint, when `--prometheus` turned it on.
    pub prometheus: Option<SocketAddr>,
    spawned_at: Instant,
}

impl Service {
    /// Starts `bin` on a free 127.0.0.1 port with `args` and `env`; waits for its listening line.
    pub fn start(bin: &Path, args: &[String], env: &[(String, String)]) -> Result<Service, String> {
        let spawned_at = Instant::now();
        let mut cmd = Command::new(bin);
        cmd.args(args).envs(env.iter().map(|(k, v)| (k, v)));
        let demo = Demo::start(&mut cmd).map_err(|e| format!("{}: {e}", bin.display()))?;
        Ok(Service {
            addr: demo.addr(),
            prometheus: demo.prometheus(),
            demo,
            spawned_at,
        })
    }

    /// From spawn until the first `200` of `GET path` (polled without pause: this is the start-up figure).
    pub fn time_to_first_200(&self, path: &str) -> Option<Duration> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(mut c) = Client::connect(self.addr)
                && let Ok((200, _)) = c.request("GET", path, &[], "")
            {
                return Some(self.spawned_at.elapsed());
            }
        }
        None
    }

    /// `GET /admin/stats`.
    pub fn stats(&self) -> Result<Value, String> {
        let mut c = Client::connect(self.addr).map_err(|e| format!("admin: {e}"))?;
        let (status, body) = c
            .request("GET", "/admin/stats", &[], "")
            .map_err(|e| format!("admin: {e}"))?;
        if status != 200 {
            return Err(format!("admin answered {status}"));
        }
        serde_json::from_str(&body).map_err(|e| format!("admin JSON: {e}"))
    }

    /// `POST path` with `body` on the admin routes; the status.
    pub fn admin_post(&self, path: &str, body: &str) -> Result<u16, String> {
        let mut c = Client::connect(self.addr).map_err(|e| format!("admin: {e}"))?;
        c.request("POST", path, &[], body)
            .map(|(s, _)| s)
            .map_err(|e| format!("admin: {e}"))
    }

    /// SIGTERM, then the `stopped` report; an error unless the exit status is 0.
    pub fn stop(self) -> Result<Value, String> {
        self.demo.stop().map_err(|e| e.to_string())
    }
}

/// A keep-alive HTTP/1.1 connection (just enough for our own service: `content-length` bodies).
pub struct Client {
    stream: BufReader<TcpStream>,
    addr: SocketAddr,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> std::io::Result<Client> {
        let s = TcpStream::connect(addr)?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        Ok(Client {
            stream: BufReader::new(s),
            addr,
        })
    }

    /// One request; returns the status and the body.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> std::io::Result<(u16, String)> {
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nhost: {}\r\ncontent-length: {}\r\n",
            self.addr,
            body.len()
        );
        for (k, v) in headers {
            req.push_str(k);
            req.push_str(": ");
            req.push_str(v);
            req.push_str("\r\n");
        }
        req.push_str("\r\n");
        req.push_str(body);
        self.stream.get_mut().write_all(req.as_bytes())?;
        let bad =
            |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
        let mut line = String::new();
        if self.stream.read_line(&mut line)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "closed",
            ));
        }
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("status line"))?;
        let mut len = 0usize;
        loop {
            line.clear();
            if self.stream.read_line(&mut line)? == 0 {
                return Err(bad("headers cut short"));
            }
            let t = line.trim_end();
            if t.is_empty() {
                break;
            }
            if let Some((k, v)) = t.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                len = v.trim().parse().map_err(|_| bad("content-length"))?;
            }
        }
        let mut buf = vec![0; len];
        self.stream.read_exact(&mut buf)?;
        Ok((status, String::from_utf8_lossy(&buf).into_owned()))
    }
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> Option<u16> {
    otlp_testkit::free_port().ok()
}

/// `rotel-agent`: `$ROTEL_AGENT`, else inside the installed `rotel` Python package.
pub fn rotel_agent() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ROTEL_AGENT") {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    let out = Command::new("python3")
        .args([
            "-c",
            "import rotel, os; print(os.path.dirname(rotel.__file__))",
        ])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status.success().then_some(())?;
    let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("rotel-agent");
    p.is_file().then_some(p)
}

/// A rotel collector on free loopback ports, printing what it receives to a file; killed by PID on drop.
pub struct Rotel {
    child: Child,
    pub grpc_port: u16,
    pub out: PathBuf,
}

impl Rotel {
    /// Starts `agent` printing everything it receives into `dir`; waits until it listens.
    pub fn start(agent: &Path, dir: &Path) -> Result<Rotel, String> {
        Rotel::spawn(agent, dir, true)
    }

    /// Starts `agent` discarding what it receives (for load runs: printing would cost the machine's CPU).
    pub fn start_quiet(agent: &Path, dir: &Path) -> Result<Rotel, String> {
        Rotel::spawn(agent, dir, false)
    }

    fn spawn(agent: &Path, dir: &Path, print: bool) -> Result<Rotel, String> {
        let grpc_port = free_port().ok_or("no free port")?;
        let http_port = loop {
            let p = free_port().ok_or("no free port")?;
            if p != grpc_port {
                break p;
            }
        };
        let out = dir.join("rotel.out");
        let mut cmd = Command::new(agent);
        cmd.arg("start")
            .args(["--otlp-grpc-endpoint", &format!("127.0.0.1:{grpc_port}")])
            .args(["--otlp-http-endpoint", &format!("127.0.0.1:{http_port}")])
            .args(["--exporter", "blackhole"]);
        if print {
            cmd.args(["--debug-log", "traces", "--debug-log", "metrics"])
                .args(["--debug-log-verbosity", "detailed"]);
        }
        let child = cmd
            .arg("--pid-file")
            .arg(dir.join("rotel.pid"))
            .arg("--log-file")
            .arg(dir.join("rotel.log"))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).map_err(|e| e.to_string())?)
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", agent.display()))?;
        let mut rotel = Rotel {
            child,
            grpc_port,
            out,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", grpc_port)).is_err() {
            if Instant::now() > deadline || matches!(rotel.child.try_wait(), Ok(Some(_))) {
                return Err("rotel-agent did not start listening".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(rotel)
    }

    /// What it printed so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }
}

impl Drop for Rotel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A scratch directory under the target folder, emptied first.
pub fn scratch(root: &Path, name: &str) -> Result<PathBuf, String> {
    let dir = root.join("target").join("xtask").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}

/// `u64` at a JSON pointer, 0 when absent.
pub fn num(v: &Value, pointer: &str) -> u64 {
    v.pointer(pointer).and_then(Value::as_u64).unwrap_or(0)
}
