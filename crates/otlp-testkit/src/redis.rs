//! `redis-server` of a test's own.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::process::wait_ready;
use crate::{Error, Process, free_port};

/// A `redis-server` on a loopback port with persistence off (no RDB snapshots, no AOF), killed by PID on drop.
#[derive(Debug)]
pub struct Redis {
    process: Process,
    port: u16,
}

impl Redis {
    /// Starts one on a free port and waits (up to 10 s) until it answers `PING`.
    pub fn start() -> Result<Redis, Error> {
        Redis::start_on(free_port()?)
    }

    /// Starts one on `port` (a restart on the port of one that was killed) and waits until it answers `PING`.
    pub fn start_on(port: u16) -> Result<Redis, Error> {
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let process = Process::spawn(
            &mut cmd,
            "redis-server",
            "apt-get install -y redis-server (.ci/run installs it)",
        )?;
        wait_ready(
            Redis { process, port },
            |r| &mut r.process,
            Redis::answers_ping,
            (Duration::from_secs(10), Duration::from_millis(1)),
            &format!("answer PING on port {port}"),
            &format!("is port {port} taken?"),
        )
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The server's PID.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Kills it now (SIGKILL, by PID) and waits until it is gone: Redis down mid-test.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// `PING` in RESP on a fresh connection; `+PONG` back.
    fn answers_ping(&self) -> bool {
        let ping = || -> std::io::Result<bool> {
            let mut s = TcpStream::connect(("127.0.0.1", self.port))?;
            s.set_read_timeout(Some(Duration::from_millis(200)))?;
            s.write_all(b"*1\r\n$4\r\nPING\r\n")?;
            let mut answer = [0u8; 7];
            s.read_exact(&mut answer)?;
            Ok(&answer == b"+PONG\r\n")
        };
        ping().unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_server_is_gone_and_its_port_closed() {
        let mut redis = Redis::start().expect("redis-server (apt-get install -y redis-server)");
        assert!(redis.answers_ping());
        let (pid, port) = (redis.pid(), redis.port());
        assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
        drop(redis);
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "redis-server (PID {pid}) is still there after the drop"
        );
        assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
        // And one restarted on that port answers again.
        redis = Redis::start_on(port).unwrap();
        assert!(redis.answers_ping());
    }
}
