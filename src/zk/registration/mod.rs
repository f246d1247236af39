//! Registering this process as a serverset member.
//!
//! A registration is a task that keeps one EPHEMERAL_SEQUENTIAL `member_`
//! znode alive for as long as its [`Registration`] handle lives: it
//! re-creates the node on a new session after expiry (exactly once), when
//! someone else deletes it, and when an optional health check recovers;
//! it deletes the node when the check fails, on [`Registration::close`]
//! and on drop.
//!
//! [`decide`](self::decide) says what to do next from what the task knows
//! (pure, unit-tested); [`driver`](self::driver) does it.

mod decide;
mod driver;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tracing::{info_span, Instrument};

use crate::error::{Error, Result};
use crate::format::acl::NodeAcl;
use crate::format::codec;
use crate::format::member::Member;
use crate::format::naming::Format;
use crate::format::path::ServerSetPath;
use crate::set::registration::Registration;
use crate::zk::session::Session;
use driver::Registrar;

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
    acl: NodeAcl,
    path_acl: NodeAcl,
    pub(crate) ttl: Duration,
    pub(crate) format: Format,
}

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
}

/// Starts the registration task of `member` in `path` and waits for its
/// first creation.
pub(crate) async fn start(
    session: Session,
    path: ServerSetPath,
    member: Member,
    options: RegisterOptions,
) -> Result<Registration> {
    if options.interval.is_zero() {
        return Err(Error::InvalidConfig(
            "health check interval must be above zero".into(),
        ));
    }
    if options.acl.entries().is_empty() || options.path_acl.entries().is_empty() {
        return Err(Error::InvalidConfig(
            "an ACL must have at least one entry".into(),
        ));
    }
    let (znode_tx, znode) = watch::channel(None);
    let (stop_tx, stop) = oneshot::channel();
    let (first_tx, first) = oneshot::channel();
    let wait = session.shared.config.connect_timeout;
    let task = Registrar::new(
        session,
        path.clone(),
        codec::encode(&member),
        options,
        znode_tx,
        first_tx,
    );
    let span = info_span!("registration", path = %path);
    let handle = tokio::spawn(task.run(stop).instrument(span));
    Registration::started(path, wait, znode, stop_tx, handle, first).await
}
