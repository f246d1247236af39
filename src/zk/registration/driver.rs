//! The registration task: does what [`decide`] says, with ZooKeeper, and
//! waits for what changes the facts (the session, the node's deletion, the
//! health check's ticks, the handle's close).

use tokio::sync::{oneshot, watch};
use tracing::{debug, error, info, warn};
use zookeeper_client as zk;

use super::decide::{decide, Action, Facts, Owned};
use super::RegisterOptions;
use crate::backoff::Backoff;
use crate::error::{Error, Result};
use crate::format::path::ServerSetPath;
use crate::metrics::Creations;
use crate::set::health::Health;
use crate::zk::session::{connected, Session};

/// Where one round of decisions stopped.
enum Settled {
    /// In place: wait for this node's deletion, the session, or a tick.
    Watch(zk::OneshotWatcher),
    /// Nothing to watch: wait for the session or a tick.
    Idle,
    /// A transient failure: pause, then try again.
    Retry(String),
    /// Closing, and nothing of ours is left.
    Done,
}

pub(super) struct Registrar {
    session: Session,
    path: ServerSetPath,
    data: Vec<u8>,
    options: RegisterOptions,
    znode: watch::Sender<Option<String>>,
    owned: Option<Owned>,
    /// The session generation in which a create's outcome is unknown.
    uncertain: Option<u64>,
    first: Option<oneshot::Sender<Result<()>>>,
    /// Member nodes created, counted.
    creations: Creations,
}

impl Registrar {
    pub(super) fn new(
        session: Session,
        path: ServerSetPath,
        data: Vec<u8>,
        options: RegisterOptions,
        znode: watch::Sender<Option<String>>,
        first: oneshot::Sender<Result<()>>,
    ) -> Self {
        Registrar {
            creations: Creations::new(path.as_str()),
            session,
            path,
            data,
            options,
            znode,
            owned: None,
            uncertain: None,
            first: Some(first),
        }
    }

    pub(super) async fn run(mut self, mut stop: oneshot::Receiver<()>) {
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
            let settled = match view.client.clone() {
                Some(zk) => self.settle(&zk, view.generation, healthy, false).await,
                None => Settled::Idle,
            };
            // Hold no client clone while waiting: closing drops the session
            // when the last clone goes.
            drop(view);
            let mut watcher = None;
            let mut pause = None;
            match settled {
                Settled::Retry(why) => {
                    // Before register() returns, it reports; after, we log.
                    if self.first.is_none() {
                        warn!(path = %self.path, error = %why, "registration will retry");
                    }
                    pause = Some(backoff.next_delay());
                }
                settled => {
                    self.report(Ok(()));
                    backoff.reset();
                    if let Settled::Watch(w) = settled {
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

    /// Does what [`decide`] says until it says to wait (or a step fails).
    async fn settle(
        &mut self,
        zk: &zk::Client,
        generation: u64,
        healthy: bool,
        closing: bool,
    ) -> Settled {
        loop {
            let facts = Facts {
                generation,
                healthy,
                owned: self.owned.as_ref(),
                uncertain: self.uncertain,
                closing,
            };
            match decide(facts) {
                Action::Forget => self.set_owned(None),
                Action::Check(znode) => match zk.check_and_watch_stat(&znode).await {
                    Ok((Some(stat), watcher)) if stat.ephemeral_owner == zk.session_id().0 => {
                        return Settled::Watch(watcher)
                    }
                    Ok(_) => {
                        warn!(%znode, "member was deleted by someone else; re-creating it");
                        self.set_owned(None);
                    }
                    Err(e) => return Settled::Retry(format!("checking {znode}: {e}")),
                },
                Action::Recover => match self.recover(zk).await {
                    Ok(Some(znode)) => {
                        info!(%znode, "recovered member created before the connection was lost");
                        self.creations.created();
                        self.uncertain = None;
                        self.set_owned(Some(Owned { generation, znode }));
                    }
                    Ok(None) => self.uncertain = None,
                    Err(e) => return Settled::Retry(format!("listing own ephemerals: {e}")),
                },
                Action::Create => match self.create(zk).await {
                    Ok(znode) => {
                        info!(%znode, "registered member");
                        self.creations.created();
                        self.set_owned(Some(Owned { generation, znode }));
                    }
                    Err(CreateError::Permanent(e)) => {
                        if self.first.is_some() {
                            self.report(Err(e.clone()));
                        } else {
                            error!(path = %self.path, error = %e, "cannot register member; will retry");
                        }
                        return Settled::Retry(e.to_string());
                    }
                    Err(CreateError::Uncertain(e)) => {
                        self.uncertain = Some(generation);
                        return Settled::Retry(format!("creating member in {}: {e}", self.path));
                    }
                },
                Action::Delete(znode) => match zk.delete(&znode, None).await {
                    Ok(()) | Err(zk::Error::NoNode) => {
                        info!(%znode, "deregistered member");
                        self.set_owned(None);
                    }
                    Err(e) => return Settled::Retry(format!("deleting {znode}: {e}")),
                },
                Action::Wait => return Settled::Idle,
                Action::Done => return Settled::Done,
            }
        }
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

    /// Deletes the member on close or drop: what this session may hold of
    /// ours, the owned node or one a create whose answer was lost may have
    /// made. If ZooKeeper cannot be reached now, keep trying: the session
    /// may be resumed later with the node still in it. Nothing is left to
    /// do once the session is replaced (its nodes went with it) or the
    /// client is closed.
    async fn finish(mut self) {
        let mut views = self.session.views();
        let mut backoff = Backoff::new();
        loop {
            let view = views.borrow_and_update().clone();
            if view.health == Health::Closed {
                break;
            }
            let facts = Facts {
                generation: view.generation,
                healthy: false,
                owned: self.owned.as_ref(),
                uncertain: self.uncertain,
                closing: true,
            };
            match decide(facts) {
                Action::Done => break,
                Action::Forget => {
                    self.set_owned(None);
                    continue;
                }
                _ => {}
            }
            if let (Some(zk), Health::Connected) = (view.client.clone(), view.health) {
                match self.settle(&zk, view.generation, false, true).await {
                    Settled::Retry(why) => {
                        debug!(path = %self.path, %why, "deregistering; will retry")
                    }
                    Settled::Done | Settled::Watch(_) | Settled::Idle => break,
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
