//! The child process behind a server the harness starts.

use std::process::{Child, ExitStatus};
use std::sync::{Mutex, MutexGuard};

/// Holds a server's process while it runs; killing it reaps it.
#[derive(Debug, Default)]
pub(crate) struct ChildSlot(Mutex<Option<Child>>);

impl ChildSlot {
    /// Locks the slot, ignoring poisoning (the data stays valid).
    pub(crate) fn lock(&self) -> MutexGuard<'_, Option<Child>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether a process was started and has not exited.
    pub(crate) fn is_running(&self) -> bool {
        match self.lock().as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// The exit status if the process was started and has exited.
    pub(crate) fn exit_status(&self) -> Option<ExitStatus> {
        self.lock()
            .as_mut()
            .and_then(|child| child.try_wait().ok().flatten())
    }

    /// Kills the process (if any) and waits for it to exit.
    pub(crate) fn kill(&self) {
        if let Some(mut child) = self.lock().take() {
            // Errors mean the process has already exited; waiting reaps it.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Holds a newly started process.
    pub(crate) fn set(&self, child: Child) {
        *self.lock() = Some(child);
    }

    /// Sends a signal (`STOP`, `CONT`, ...) to the running process with
    /// `kill(1)`; an error if none runs.
    pub(crate) fn signal(&self, signal: &str) -> std::io::Result<()> {
        let pid = match self.lock().as_ref() {
            Some(child) => child.id(),
            None => return Err(std::io::Error::other("the process is not running")),
        };
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()?;
        if !status.success() {
            return Err(std::io::Error::other(format!(
                "kill -{signal} {pid}: {status}"
            )));
        }
        if signal == "STOP" {
            wait_stopped(pid)?;
        }
        Ok(())
    }
}

/// Waits (up to 10 s) until every thread of `pid` is stopped, as
/// `/proc/PID/task/*/stat` shows (state `T`): the stop is asynchronous.
fn wait_stopped(pid: u32) -> std::io::Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))?;
        let mut all = true;
        for task in tasks.flatten() {
            let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
            // The state follows the command name in parentheses.
            let state = stat
                .rsplit_once(") ")
                .and_then(|(_, rest)| rest.chars().next());
            if !matches!(state, Some('T' | 't')) {
                all = false;
            }
        }
        if all {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            return Err(std::io::Error::other(format!("process {pid} did not stop")));
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}
