//! Running commands: echo them, time them, report how they ended.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// A command to run from the workspace root, with extra environment variables.
#[derive(Debug, Clone)]
pub struct Cmd {
    program: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

impl Cmd {
    /// `program` with `args`.
    pub fn new(program: &str, args: &[&str]) -> Self {
        Cmd {
            program: program.to_owned(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            env: Vec::new(),
        }
    }

    /// Adds arguments.
    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets an environment variable for this command.
    pub fn env(mut self, key: &str, value: impl Into<String>) -> Self {
        self.env.push((key.to_owned(), value.into()));
        self
    }

    /// The command as a shell would show it.
    pub fn display(&self) -> String {
        let mut parts: Vec<String> = self
            .env
            .iter()
            .map(|(k, v)| format!("{k}=\"{v}\""))
            .collect();
        parts.push(self.program.clone());
        parts.extend(self.args.iter().cloned());
        parts.join(" ")
    }

    /// Runs it in `dir`, inheriting stdout and stderr; returns whether it succeeded and how long it took.
    pub fn run(&self, dir: &Path) -> (bool, Duration) {
        println!("    $ {}", self.display());
        let start = Instant::now();
        let status = Command::new(&self.program)
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(dir)
            .status();
        let ok = match status {
            Ok(status) => status.success(),
            Err(e) => {
                eprintln!("    cannot run {}: {e}", self.program);
                false
            }
        };
        (ok, start.elapsed())
    }

    /// Runs it quietly and returns its stdout if it succeeded.
    pub fn output(&self, dir: &Path) -> Option<String> {
        let out = Command::new(&self.program)
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(dir)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// `1m 23.4s` or `4.2s`.
pub fn human(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs >= 60.0 {
        format!("{}m {:04.1}s", (secs / 60.0) as u64, secs % 60.0)
    } else {
        format!("{secs:.1}s")
    }
}
