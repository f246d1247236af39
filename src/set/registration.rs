//! The handle of a registration, whatever the backend: the member's key
//! while it is registered, and closing.

use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::error::{Error, Result};
use crate::format::path::ServerSetPath;

/// A live registration. Dropping it deletes the member in the background;
/// [`Registration::close`] deletes it and waits.
#[derive(Debug)]
pub struct Registration {
    path: ServerSetPath,
    close_wait: Duration,
    znode: watch::Receiver<Option<String>>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Registration {
    /// The handle of a registration task: `task` runs until `stop` fires,
    /// publishing its member's key in `key`; `first` says how its first
    /// registration went. Waits up to `wait` for it.
    pub(crate) async fn started(
        path: ServerSetPath,
        wait: Duration,
        key: watch::Receiver<Option<String>>,
        stop: oneshot::Sender<()>,
        task: JoinHandle<()>,
        first: oneshot::Receiver<Result<()>>,
    ) -> Result<Registration> {
        let mut registration = Registration {
            path,
            close_wait: wait,
            znode: key,
            stop: Some(stop),
            task: Some(task),
        };
        match tokio::time::timeout(wait, first).await {
            Ok(Ok(Ok(()))) => Ok(registration),
            Ok(Ok(Err(e))) => Err(e),
            Ok(Err(_)) => Err(Error::Closed),
            Err(_) => {
                registration.stop_task();
                Err(Error::Timeout {
                    what: format!("registration in {}", registration.path),
                    after: wait,
                })
            }
        }
    }

    /// The full path of the member znode (on etcd: the member's key), while
    /// one exists (`None` while a health check fails, between sessions, or
    /// between an etcd lease lost and the next).
    pub fn znode(&self) -> Option<String> {
        self.znode.borrow().clone()
    }

    /// The serverset path this member is registered in.
    pub fn path(&self) -> &ServerSetPath {
        &self.path
    }

    /// Waits until the member znode (or key) changes (re-created,
    /// deleted) and returns the new one.
    pub async fn changed(&mut self) -> Option<String> {
        self.znode.changed().await.ok()?;
        self.znode()
    }

    /// Deletes the member and waits until it is gone, at most the
    /// client's connect timeout. If ZooKeeper cannot be reached meanwhile,
    /// the deletion goes on in the background until it succeeds, the
    /// session ends (taking the member with it) or the client is closed.
    /// On etcd the member's lease is revoked (and expires by itself if
    /// etcd cannot be reached).
    pub async fn close(mut self) {
        self.stop_task();
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(self.close_wait, task).await;
        }
    }

    fn stop_task(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.stop_task();
    }
}
