//! A spawned producer process (shell command, ffmpeg) whose stdout carries frames. It runs
//! in its own process group so that dropping it stops the whole pipeline of commands.

use super::SourceError;
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdout, Command, Stdio};

/// A running producer; killed (with its process group) when dropped.
pub struct ProducerProcess {
    child: Child,
    name: String,
}

impl ProducerProcess {
    /// Start `cmd` with stdout piped.
    pub fn spawn(
        mut cmd: Command,
        name: &str,
    ) -> Result<(ProducerProcess, ChildStdout), SourceError> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .process_group(0);
        let mut child = cmd.spawn().map_err(|e| SourceError::Open {
            what: name.into(),
            why: e.to_string(),
        })?;
        let out = child.stdout.take().expect("stdout is piped");
        Ok((
            ProducerProcess {
                child,
                name: name.into(),
            },
            out,
        ))
    }

    /// The exit status if it has exited, for error messages.
    pub fn exit_note(&mut self) -> String {
        match self.child.try_wait() {
            Ok(Some(s)) => format!("{} exited ({s})", self.name),
            _ => format!("{} stopped sending", self.name),
        }
    }
}

impl Drop for ProducerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: plain kill(2) on the process group we created.
            unsafe {
                libc::kill(-(self.child.id() as i32), libc::SIGTERM);
            }
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}
