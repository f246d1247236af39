//! A registration, whatever the backend: its options, and the handle
//! that holds the member's key while it is registered.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::error::{Error, Result};
use crate::format::acl::NodeAcl;
use crate::format::naming::Format;
use crate::format::path::ServerSetPath;

pub(crate) type CheckFuture = Pin<Box<dyn Future<Output = bool> + Send>>;
pub(crate) type HealthCheck = Arc<dyn Fn() -> CheckFuture + Send + Sync>;

/// Options for [`Client::register_with`](crate::Client::register_with).
///
/// ```
/// use std::time::Duration;
/// use serversets::RegisterOptions;
///
/// let options = RegisterOptions::new()
///     .health_check(|| async { true /* e.g. ping the local server */ })
///     .health_check_interval(Duration::from_millis(500));
/// ```
#[derive(Clone)]
pub struct RegisterOptions {
    pub(crate) health_check: Option<HealthCheck>,
    pub(crate) interval: Duration,
    pub(crate) acl: NodeAcl,
    pub(crate) path_acl: NodeAcl,
    pub(crate) ttl: Duration,
    pub(crate) format: Format,
}

/// The longest etcd lease TTL accepted (an hour, as the gateway's).
const MAX_TTL: Duration = Duration::from_secs(3600);

/// The lease TTL of etcd registrations by default.
pub const DEFAULT_TTL: Duration = Duration::from_secs(10);

impl Default for RegisterOptions {
    fn default() -> Self {
        RegisterOptions {
            health_check: None,
            interval: Duration::from_secs(1),
            acl: NodeAcl::open(),
            path_acl: NodeAcl::open(),
            ttl: DEFAULT_TTL,
            format: Format::Finagle,
        }
    }
}

impl std::fmt::Debug for RegisterOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegisterOptions")
            .field("health_check", &self.health_check.is_some())
            .field("interval", &self.interval)
            .field("acl", &self.acl)
            .field("path_acl", &self.path_acl)
            .field("ttl", &self.ttl)
            .field("format", &self.format)
            .finish()
    }
}

impl RegisterOptions {
    /// No health check.
    pub fn new() -> Self {
        Self::default()
    }

    /// Polls `check` every interval: `false` (or no answer within the
    /// interval) deletes the member, `true` again re-creates it.
    pub fn health_check<F, Fut>(mut self, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = bool> + Send + 'static,
    {
        self.health_check = Some(Arc::new(move || Box::pin(check())));
        self
    }

    /// How often the health check runs (default 1 s).
    pub fn health_check_interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// The member node's ACL (default [`NodeAcl::open`]).
    pub fn acl(mut self, acl: NodeAcl) -> Self {
        self.acl = acl;
        self
    }

    /// The lease TTL of an etcd registration (default 10 s; etcd takes
    /// whole seconds, at least 1, at most 3600 here): how long the member
    /// outlives this process or its connection. ZooKeeper registrations
    /// live as long as the session instead.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// How an etcd registration stores the member (default
    /// [`Format::Finagle`]); ZooKeeper members are always Finagle's JSON.
    pub fn format(mut self, format: Format) -> Self {
        self.format = format;
        self
    }

    /// The ACL of set-path znodes this registration has to create (default
    /// [`NodeAcl::open`]); existing ones are left as they are.
    pub fn path_acl(mut self, acl: NodeAcl) -> Self {
        self.path_acl = acl;
        self
    }

    /// Refuses options no registration can use, on either store: the
    /// same rules for both, checked before anything is written.
    pub(crate) fn validate(&self) -> Result<()> {
        if self.interval.is_zero() {
            return Err(Error::InvalidConfig(
                "health check interval must be above zero".into(),
            ));
        }
        if self.acl.entries().is_empty() || self.path_acl.entries().is_empty() {
            return Err(Error::InvalidConfig(
                "an ACL must have at least one entry".into(),
            ));
        }
        if self.ttl < Duration::from_secs(1) || self.ttl > MAX_TTL || self.ttl.subsec_nanos() != 0 {
            return Err(Error::InvalidConfig(format!(
                "an etcd lease TTL must be whole seconds from 1 to 3600, not {:?}",
                self.ttl
            )));
        }
        Ok(())
    }
}

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
