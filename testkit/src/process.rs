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
}
