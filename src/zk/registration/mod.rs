//! Registering this process as a serverset member.
//!
//! A registration is a task that keeps one EPHEMERAL_SEQUENTIAL `member_`
//! znode alive for as long as its [`Registration`] handle lives: it
//! re-creates the node on a new session after expiry (exactly once), when
//! someone else deletes it, and when an optional health check recovers;
//! it deletes the node when the check fails, on [`Registration::close`]
//! and on drop.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};
use zookeeper_client as zk;

use crate::error::{Error, Result};
use crate::format::acl::NodeAcl;
use crate::format::codec;
use crate::format::member::Member;
use crate::format::path::ServerSetPath;
use crate::zk::health::Health;
use crate::zk::session::{connected, Backoff, Session};

type CheckFuture = Pin<Box<dyn Future<Output = bool> + Send>>;
type HealthCheck = Arc<dyn Fn() -> CheckFuture + Send + Sync>;

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
    health_check: Option<HealthCheck>,
    interval: Duration,
    acl: NodeAcl,
    path_acl: NodeAcl,
}

impl Default for RegisterOptions {
    fn default() -> Self {
        RegisterOptions {
            health_check: None,
            interval: Duration::from_secs(1),
            acl: NodeAcl::open(),
            path_acl: NodeAcl::open(),
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

    /// The ACL of set-path znodes this registration has to create (default
    /// [`NodeAcl::open`]); existing ones are left as they are.
    pub fn path_acl(mut self, acl: NodeAcl) -> Self {
        self.path_acl = acl;
        self
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
        let task = Registrar {
            data: codec::encode(&member),
            session,
            path: path.clone(),
            options,
            znode: znode_tx,
            owned: None,
            uncertain: None,
            first: Some(first_tx),
        };
        let handle = tokio::spawn(task.run(stop));
        let mut registration = Registration {
            path,
            close_wait: wait,
            znode,
            stop: Some(stop_tx),
            task: Some(handle),
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

    /// The full path of the member znode, while one exists (`None` while a
    /// health check fails or between sessions).
    pub fn znode(&self) -> Option<String> {
        self.znode.borrow().clone()
    }

    /// The serverset path this member is registered in.
    pub fn path(&self) -> &ServerSetPath {
        &self.path
    }

    /// Waits until the member znode changes (re-created, deleted) and
    /// returns the new one.
    pub async fn changed(&mut self) -> Option<String> {
        self.znode.changed().await.ok()?;
        self.znode()
    }

    /// Deletes the member and waits until it is gone, at most the
    /// client's connect timeout. If ZooKeeper cannot be reached meanwhile,
    /// the deletion goes on in the background until it succeeds, the
    /// session ends (taking the member with it) or the client is closed.
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

/// The member node this task owns, and in which session.
#[derive(Debug, Clone)]
struct Owned {
    generation: u64,
    znode: String,
}

/// What the task does next.
enum Next {
    /// Wait for this node's watch (deletion), the session, or a tick.
    Watch(zk::OneshotWatcher),
    /// Nothing to watch: wait for the session or a tick.
    Idle,
    /// Go around again at once.
    Again,
    /// A transient failure: pause, then go around again.
    Retry(String),
}

struct Registrar {
    session: Session,
    path: ServerSetPath,
    data: Vec<u8>,
    options: RegisterOptions,
    znode: watch::Sender<Option<String>>,
    owned: Option<Owned>,
    /// The session generation in which a create's outcome is unknown.
    uncertain: Option<u64>,
    first: Option<oneshot::Sender<Result<()>>>,
}

impl Registrar {
    async fn run(mut self, mut stop: oneshot::Receiver<()>) {
        let mut views = self.session.views();
        let mut healthy = self.check_health().await;
        let mut backoff = Backoff::new();
        let mut ticks = tokio::time::interval(self.options.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.reset();
        loop {
            let view = tokio::select! {
                _ = &mut stop => break,
                view = connected(&mut views) => match view {
                    Ok(view) => view,
                    Err(_) => break,
                },
            };
            if self
                .owned
                .as_ref()
                .is_some_and(|o| o.generation != view.generation)
            {
                // The node died with its session; only this task re-creates it.
                self.set_owned(None);
            }
            let next = match (view.client.clone(), healthy) {
                (Some(zk), true) => self.ensure_present(&zk, view.generation).await,
                (Some(zk), false) => self.ensure_absent(&zk).await,
                (None, _) => Next::Idle,
            };
            // Hold no client clone while waiting: closing drops the session
            // when the last clone goes.
            drop(view);
            let mut watcher: Option<zk::OneshotWatcher> = None;
            let mut pause = None;
            match next {
                Next::Again => continue,
                Next::Retry(why) => {
                    // Before register() returns, it reports; after, we log.
                    if self.first.is_none() {
                        warn!(path = %self.path, error = %why, "registration will retry");
                    }
                    pause = Some(backoff.next_delay());
                }
                settled => {
                    self.report(Ok(()));
                    backoff.reset();
                    if let Next::Watch(w) = settled {
                        watcher = Some(w);
                    }
                }
            }
            let has_check = self.options.health_check.is_some();
            let node_event = async move {
                match watcher {
                    Some(watcher) => watcher.changed().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = &mut stop => break,
                changed = views.changed() => if changed.is_err() { break },
                event = node_event => {
                    if let Some(owned) = &self.owned {
                        if event.event_type == zk::EventType::NodeDeleted {
                            warn!(znode = %owned.znode, "member was deleted by someone else; re-creating it");
                            self.set_owned(None);
                        }
                    }
                }
                _ = tokio::time::sleep(pause.unwrap_or_default()), if pause.is_some() => {}
                _ = ticks.tick(), if has_check => {
                    let now = self.check_health().await;
                    if now != healthy {
                        if now {
                            info!(path = %self.path, "health check passes again; re-registering");
                        } else {
                            warn!(path = %self.path, "health check failed; deregistering");
                        }
                        healthy = now;
                    }
                }
            }
        }
        self.finish().await;
    }

    fn report(&mut self, result: Result<()>) {
        if let Some(first) = self.first.take() {
            let _ = first.send(result);
        }
    }

    async fn check_health(&self) -> bool {
        let Some(check) = &self.options.health_check else {
            return true;
        };
        tokio::time::timeout(self.options.interval, check())
            .await
            .unwrap_or(false)
    }

    fn set_owned(&mut self, owned: Option<Owned>) {
        if let Ok(mut claimed) = self.session.shared.claimed.lock() {
            if let Some(old) = &self.owned {
                claimed.remove(&old.znode);
            }
            if let Some(new) = &owned {
                claimed.insert(new.znode.clone());
            }
        }
        let znode = owned.as_ref().map(|o| o.znode.clone());
        self.owned = owned;
        self.znode.send_replace(znode);
    }

    /// Makes sure our member node exists in this session and watches it.
    async fn ensure_present(&mut self, zk: &zk::Client, generation: u64) -> Next {
        if let Some(owned) = self.owned.clone() {
            return match zk.check_and_watch_stat(&owned.znode).await {
                Ok((Some(stat), watcher)) if stat.ephemeral_owner == zk.session_id().0 => {
                    Next::Watch(watcher)
                }
                Ok(_) => {
                    warn!(znode = %owned.znode, "member was deleted by someone else; re-creating it");
                    self.set_owned(None);
                    Next::Again
                }
                Err(e) => Next::Retry(format!("checking {}: {e}", owned.znode)),
            };
        }
        // A create whose answer was lost may have succeeded: adopt that node
        // instead of creating a duplicate.
        if self.uncertain == Some(generation) {
            match self.recover(zk).await {
                Ok(Some(znode)) => {
                    info!(%znode, "recovered member created before the connection was lost");
                    self.uncertain = None;
                    self.set_owned(Some(Owned { generation, znode }));
                    return Next::Again;
                }
                Ok(None) => self.uncertain = None,
                Err(e) => return Next::Retry(format!("listing own ephemerals: {e}")),
            }
        }
        match self.create(zk).await {
            Ok(znode) => {
                info!(%znode, "registered member");
                self.set_owned(Some(Owned { generation, znode }));
                Next::Again
            }
            Err(CreateError::Permanent(e)) => {
                if self.first.is_some() {
                    self.report(Err(e.clone()));
                } else {
                    error!(path = %self.path, error = %e, "cannot register member; will retry");
                }
                Next::Retry(e.to_string())
            }
            Err(CreateError::Uncertain(e)) => {
                self.uncertain = Some(generation);
                Next::Retry(format!("creating member in {}: {e}", self.path))
            }
        }
    }

    /// Deletes our member node while the health check fails.
    async fn ensure_absent(&mut self, zk: &zk::Client) -> Next {
        let Some(owned) = self.owned.clone() else {
            return Next::Idle;
        };
        match zk.delete(&owned.znode, None).await {
            Ok(()) | Err(zk::Error::NoNode) => {
                info!(znode = %owned.znode, "deregistered member");
                self.set_owned(None);
                Next::Idle
            }
            Err(e) => Next::Retry(format!("deleting {}: {e}", owned.znode)),
        }
    }

    async fn create(&self, zk: &zk::Client) -> std::result::Result<String, CreateError> {
        let prefix = self.path.member_prefix();
        let options = zk::CreateMode::EphemeralSequential
            .with_acls(zk::Acls::new(self.options.acl.entries()));
        let mut made_parents = false;
        loop {
            match zk.create(&prefix, &self.data, &options).await {
                Ok((_, sequence)) => return Ok(format!("{prefix}{sequence}")),
                Err(zk::Error::NoNode) if !made_parents => {
                    let dirs = zk::CreateMode::Persistent
                        .with_acls(zk::Acls::new(self.options.path_acl.entries()));
                    zk.mkdir(self.path.as_str(), &dirs)
                        .await
                        .map_err(|e| CreateError::classify("mkdir", self.path.as_str(), e))?;
                    made_parents = true;
                }
                Err(e) => return Err(CreateError::classify("create", &prefix, e)),
            }
        }
    }

    /// Finds a member node of this session with our data that no other
    /// registration of this client owns.
    async fn recover(&self, zk: &zk::Client) -> std::result::Result<Option<String>, zk::Error> {
        let prefix = self.path.member_prefix();
        let mine = zk.list_ephemerals(&prefix).await?;
        for znode in mine {
            let claimed = self
                .session
                .shared
                .claimed
                .lock()
                .map(|c| c.contains(&znode))
                .unwrap_or(true);
            if claimed {
                continue;
            }
            match zk.get_data(&znode).await {
                Ok((data, _)) if data == self.data => return Ok(Some(znode)),
                Ok(_) | Err(zk::Error::NoNode) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    /// Deletes the member on close or drop.
    async fn finish(mut self) {
        // Delete what this session may hold of ours: the owned node, or one
        // a create whose answer was lost may have made. If ZooKeeper cannot
        // be reached now, keep trying: the session may be resumed later
        // with the node still in it. Nothing is left to do once the session
        // is replaced (its nodes went with it) or the client is closed.
        let mut views = self.session.views();
        let mut backoff = Backoff::new();
        loop {
            let view = views.borrow_and_update().clone();
            let owned = self
                .owned
                .clone()
                .filter(|o| o.generation == view.generation);
            let uncertain = self.uncertain == Some(view.generation);
            if (owned.is_none() && !uncertain) || view.health == Health::Closed {
                break;
            }
            if let (Some(zk), Health::Connected) = (view.client.clone(), view.health) {
                let target = match owned {
                    Some(owned) => Ok(Some(owned.znode)),
                    None => self.recover(&zk).await,
                };
                match target {
                    Ok(None) => break,
                    Ok(Some(znode)) => match zk.delete(&znode, None).await {
                        Ok(()) | Err(zk::Error::NoNode) => {
                            info!(%znode, "deregistered member");
                            break;
                        }
                        Err(e) => debug!(%znode, error = %e, "deleting member; will retry"),
                    },
                    Err(e) => debug!(error = %e, "looking for our member; will retry"),
                }
            }
            tokio::select! {
                changed = views.changed() => if changed.is_err() { break },
                _ = tokio::time::sleep(backoff.next_delay()) => {}
            }
        }
        self.set_owned(None);
        self.report(Err(Error::Closed));
    }
}

enum CreateError {
    /// ZooKeeper refused: retrying the same request will not help.
    Permanent(Error),
    /// The outcome is unknown (connection lost mid-request).
    Uncertain(zk::Error),
}

impl CreateError {
    fn classify(operation: &'static str, path: &str, e: zk::Error) -> Self {
        use zk::Error::*;
        match e {
            NoAuth
            | InvalidAcl
            | BadArguments(_)
            | NoChildrenForEphemerals
            | NoNode
            | QuotaExceeded
            | Unimplemented => CreateError::Permanent(Error::zk(operation, path, e)),
            other => CreateError::Uncertain(other),
        }
    }
}
