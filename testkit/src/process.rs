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

/// What one look at a starting server found.
pub(crate) enum Answer {
    /// Our process answers: it has started.
    Ours,
    /// Another server of the kind answers on our port (ours will fail to
    /// bind and exit, or already has); says which kind.
    Another(&'static str),
    /// Nothing answers yet.
    Nothing,
}

/// Polls a starting server every `poll` until `probe` finds it answering,
/// its process exits, or `deadline` passes (`waited_for` says what was
/// waited for). `port_taken` reads its log for a port already in use:
/// such failures are [`std::io::ErrorKind::AddrInUse`], so the caller
/// retries on other ports. `failure` builds the error.
pub(crate) fn wait_until_ready(
    deadline: std::time::Instant,
    poll: std::time::Duration,
    exit_status: impl Fn() -> Option<ExitStatus>,
    port_taken: impl Fn() -> bool,
    mut probe: impl FnMut() -> Answer,
    failure: impl Fn(std::io::ErrorKind, &str) -> std::io::Error,
    waited_for: &str,
) -> std::io::Result<()> {
    use std::io::ErrorKind;
    let taken_or = |otherwise| {
        if port_taken() {
            ErrorKind::AddrInUse
        } else {
            otherwise
        }
    };
    loop {
        if let Some(status) = exit_status() {
            let kind = taken_or(ErrorKind::Other);
            return Err(failure(kind, &format!("exited during startup ({status})")));
        }
        match probe() {
            Answer::Ours => return Ok(()),
            Answer::Another(kind) => {
                let what = format!("port is used by another {kind} server");
                return Err(failure(ErrorKind::AddrInUse, &what));
            }
            Answer::Nothing => {}
        }
        if std::time::Instant::now() >= deadline {
            return Err(failure(taken_or(ErrorKind::TimedOut), waited_for));
        }
        std::thread::sleep(poll);
    }
}

/// How many lines of a server's log an error about it quotes.
pub(crate) const LOG_TAIL_LINES: usize = 40;

/// An error about a server (`what` says which and what went wrong), with
/// the last lines of each of its `logs`.
pub(crate) fn failure_with_logs(
    kind: std::io::ErrorKind,
    what: String,
    logs: &[std::path::PathBuf],
) -> std::io::Error {
    use std::fmt::Write as _;
    let mut message = what;
    for path in logs {
        let tail = match std::fs::read_to_string(path) {
            Ok(text) => {
                let lines: Vec<&str> = text.lines().collect();
                lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
            }
            Err(err) => format!("(cannot read: {err})"),
        };
        let _ = write!(
            message,
            "\n--- last lines of {} ---\n{tail}\n",
            path.display()
        );
    }
    std::io::Error::new(kind, message)
}

#[cfg(test)]
mod tests {
    use super::failure_with_logs;

    #[test]
    fn a_failure_quotes_the_last_lines_of_each_log() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("a.log");
        let lines: Vec<String> = (0..50).map(|n| format!("line {n}")).collect();
        std::fs::write(&log, lines.join("\n")).unwrap();
        let missing = dir.path().join("missing.log");
        let error = failure_with_logs(
            std::io::ErrorKind::Other,
            "server x failed".into(),
            &[log, missing],
        );
        let message = error.to_string();
        assert!(
            message.starts_with("server x failed\n--- last lines of "),
            "{message}"
        );
        assert!(message.contains("line 10\n") && message.contains("line 49"));
        assert!(!message.contains("line 9\n"));
        assert!(message.contains("(cannot read: "));
    }
}
