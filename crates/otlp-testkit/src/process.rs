//! A child process that cannot outlive its handle.

use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use crate::Error;

/// A spawned child process, killed (SIGKILL, by PID) and reaped when dropped, unless it has already exited.
#[derive(Debug)]
pub struct Process {
    child: Child,
    name: String,
}

impl Process {
    /// Spawns `cmd`; `name` and `install` (how to get the program) go into the error when it cannot start.
    pub fn spawn(cmd: &mut Command, name: &str, install: &str) -> Result<Process, Error> {
        let child = cmd
            .spawn()
            .map_err(|e| Error::new(format!("cannot start {name} ({e}): {install}")))?;
        Ok(Process {
            child,
            name: name.to_owned(),
        })
    }

    /// The child's PID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The program's name, for messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The child itself (its pipes, `try_wait`).
    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    /// Whether it has exited (without waiting).
    pub fn exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGKILL now, and wait until it is gone.
    pub fn kill(&mut self) {
        if !self.exited() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }

    /// SIGTERM (a graceful stop); [`wait`](Self::wait) for its exit.
    pub fn terminate(&self) -> Result<(), Error> {
        let pid = self.pid().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status();
        if sent.is_ok_and(|s| s.success()) {
            Ok(())
        } else {
            Err(Error::new(format!(
                "could not send SIGTERM to {} (PID {pid})",
                self.name
            )))
        }
    }

    /// Waits for it to exit.
    pub fn wait(&mut self) -> Result<ExitStatus, Error> {
        self.child
            .wait()
            .map_err(|e| Error::new(format!("waiting for {}: {e}", self.name)))
    }
}

/// Waits until `ready(&server)` holds, asking every `pause` for at most `within`: the error says the server's
/// process exited first (with `exit_hint`) or that it did not `what` in time. `process` finds the server's process.
pub(crate) fn wait_ready<T>(
    mut server: T,
    process: fn(&mut T) -> &mut Process,
    ready: impl Fn(&T) -> bool,
    (within, pause): (Duration, Duration),
    what: &str,
    exit_hint: &str,
) -> Result<T, Error> {
    let deadline = Instant::now() + within;
    while !ready(&server) {
        let process = process(&mut server);
        if process.exited() {
            return Err(Error::new(format!(
                "{} exited at start ({exit_hint})",
                process.name
            )));
        }
        if Instant::now() > deadline {
            return Err(Error::new(format!(
                "{} did not {what} within {} s",
                process.name,
                within.as_secs()
            )));
        }
        std::thread::sleep(pause);
    }
    Ok(server)
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Stdio;

    /// Whether a process with this PID exists (`kill -0`: a zombie still counts, so this also checks the reaping).
    fn alive(pid: u32) -> bool {
        Command::new("kill")
            .args(["-0", &pid.to_string()])
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success()
    }

    #[test]
    fn a_dropped_process_is_killed_and_reaped() {
        let mut cmd = Command::new("sleep");
        cmd.arg("600");
        let p = Process::spawn(&mut cmd, "sleep", "coreutils").unwrap();
        let pid = p.pid();
        assert!(alive(pid));
        drop(p);
        assert!(!alive(pid), "PID {pid} is still there after the drop");
    }

    #[test]
    fn a_program_that_is_not_there_is_an_error_that_says_how_to_get_it() {
        let err = Process::spawn(
            &mut Command::new("otlp-testkit-no-such-program"),
            "no-such",
            "install it",
        )
        .unwrap_err();
        assert!(
            err.to_string().starts_with("cannot start no-such ("),
            "{err}"
        );
        assert!(err.to_string().ends_with("install it"), "{err}");
    }
}
