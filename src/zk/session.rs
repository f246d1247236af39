//! The one ZooKeeper session a [`Client`](crate::Client) owns: connecting,
//! watching its state, and building a new session after expiry.
//!
//! A manager task owns the session and publishes a [`SessionView`] on a
//! `tokio::sync::watch` channel. Registrations and watches hold receivers:
//! they see every reconnection (to re-list) and every new session (to
//! re-create ephemerals and re-arm watches). The task ends, closing the
//! session, when the client is closed or when no handle is left.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::time::Instant;
use tracing::{debug, info, warn};
use zookeeper_client as zk;

use crate::backoff::Backoff;
use crate::error::{Error, Result};
use crate::metrics::SessionEvents;
use crate::set::health::Health;

/// How a client connects (see [`ClientBuilder`](crate::ClientBuilder)).
#[derive(Clone)]
pub(crate) struct Config {
    pub connect: String,
    pub session_timeout: Duration,
    pub connect_timeout: Duration,
    pub digest: Option<String>,
    /// How watches learn of changes.
    pub watch_engine: crate::set::watch::WatchEngine,
    /// TLS settings: the connect string's hosts use TLS unless `tcp://`.
    #[cfg(feature = "tls")]
    pub tls: Option<crate::zk::tls::TlsConfig>,
}

impl Config {
    /// Whether connections use TLS settings.
    pub(crate) fn has_tls(&self) -> bool {
        #[cfg(feature = "tls")]
        return self.tls.is_some();
        #[cfg(not(feature = "tls"))]
        false
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut f = f.debug_struct("Config");
        f.field("connect", &self.connect)
            .field("session_timeout", &self.session_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("digest", &self.digest.as_ref().map(|_| "<redacted>"))
            .field("watch_engine", &self.watch_engine);
        #[cfg(feature = "tls")]
        f.field("tls", &self.tls.is_some());
        f.finish()
    }
}

/// What tasks see of the session.
#[derive(Clone, Debug)]
pub(crate) struct SessionView {
    /// Increases with every new session.
    pub generation: u64,
    /// Increases with every (re)connection, in any session.
    pub epoch: u64,
    /// The live ZooKeeper client; `None` between sessions and after close.
    pub client: Option<zk::Client>,
    /// The session's health.
    pub health: Health,
}

/// State shared by the manager and every task of one client.
#[derive(Debug)]
pub(crate) struct Shared {
    pub config: Config,
    close: Notify,
    /// Becomes true once the session is closed for good.
    done: watch::Sender<bool>,
    /// Member znodes owned by live registrations of this client, so that
    /// recovering an uncertain create never adopts a sibling's node.
    pub claimed: Mutex<HashSet<String>>,
    /// The running watch engines, by set path.
    pub watches: std::sync::Arc<crate::set::watch::hub::Registry>,
    /// The session's transitions, counted.
    events: SessionEvents,
}

/// A task's handle on the session.
#[derive(Clone, Debug)]
pub(crate) struct Session {
    view: watch::Receiver<SessionView>,
    pub shared: Arc<Shared>,
}

impl Session {
    /// Connects (within the connect timeout) and starts the manager task.
    pub(crate) async fn start(config: Config) -> Result<Session> {
        let deadline = Instant::now() + config.connect_timeout;
        let client = connect_until(&config, deadline).await?;
        info!(connect = %config.connect, session = %client.session_id(), "ZooKeeper session established");
        let view = SessionView {
            generation: 1,
            epoch: 1,
            client: Some(client.clone()),
            health: Health::Connected,
        };
        let (tx, rx) = watch::channel(view);
        let shared = Arc::new(Shared {
            config,
            close: Notify::new(),
            done: watch::channel(false).0,
            claimed: Mutex::new(HashSet::new()),
            watches: Default::default(),
            events: SessionEvents::new(),
        });
        shared.events.connected.increment(1);
        tokio::spawn(manage(tx, Arc::clone(&shared), client));
        Ok(Session { view: rx, shared })
    }

    /// The current view, without waiting.
    pub(crate) fn view(&self) -> SessionView {
        self.view.borrow().clone()
    }

    /// A receiver of session views.
    pub(crate) fn views(&self) -> watch::Receiver<SessionView> {
        self.view.clone()
    }

    /// Closes the session and waits until ZooKeeper has closed it (its
    /// ephemeral nodes are gone), or the session timeout has passed.
    pub(crate) async fn close(&self) {
        let mut done = self.shared.done.subscribe();
        self.shared.close.notify_one();
        let _ = done.wait_for(|done| *done).await;
    }
}

/// Waits until the session is connected and returns its view; `Err(Closed)`
/// once the client is closed.
pub(crate) async fn connected(views: &mut watch::Receiver<SessionView>) -> Result<SessionView> {
    loop {
        {
            let view = views.borrow_and_update();
            match (&view.client, view.health) {
                (_, Health::Closed) => return Err(Error::Closed),
                (Some(_), Health::Connected) => return Ok(view.clone()),
                _ => {}
            }
        }
        views.changed().await.map_err(|_| Error::Closed)?;
    }
}

/// Connects, retrying with backoff, until `deadline`.
async fn connect_until(config: &Config, deadline: Instant) -> Result<zk::Client> {
    let mut backoff = Backoff::new();
    let mut last_failure: Option<(String, Option<zk::Error>)> = None;
    loop {
        let (reason, source) =
            match tokio::time::timeout_at(deadline, connect_once(config, None)).await {
                Ok(Ok(client)) => return Ok(client),
                Ok(Err(Error::Connect { reason, source, .. })) => (reason, source),
                Ok(Err(other)) => return Err(other),
                // Cut short: the previous attempt's failure says more.
                Err(_) => match last_failure.take() {
                    Some((last, source)) => (
                        format!(
                            "no session within {:?}; last failure: {last}",
                            config.connect_timeout
                        ),
                        source,
                    ),
                    None => (
                        format!("no session within {:?}", config.connect_timeout),
                        None,
                    ),
                },
            };
        let pause = backoff.next_delay();
        if Instant::now() + pause >= deadline {
            return Err(Error::Connect {
                store: "ZooKeeper",
                address: config.connect.clone(),
                reason,
                source,
            });
        }
        debug!(connect = %config.connect, %reason, "connect failed; retrying");
        last_failure = Some((reason, source));
        tokio::time::sleep(pause).await;
    }
}

async fn connect_once(config: &Config, resume: Option<&zk::SessionInfo>) -> Result<zk::Client> {
    let connection_timeout = config.connect_timeout.min(config.session_timeout);
    let mut connector = zk::Client::connector()
        .with_session_timeout(config.session_timeout)
        .with_connection_timeout(connection_timeout)
        .with_fail_eagerly();
    if let Some(session) = resume {
        connector = connector.with_session(session.clone());
    }
    if let Some(digest) = &config.digest {
        connector = connector.with_auth("digest", digest.as_bytes());
    }
    #[cfg(feature = "tls")]
    if let Some(tls) = &config.tls {
        let connected = connector
            .with_tls(tls.options.clone())
            .secure_connect(&config.connect)
            .await;
        return match connected {
            Ok(client) => Ok(client),
            Err(e) => match connect_error(config, e) {
                // zookeeper-client does not say why TLS failed: find out.
                Error::Connect {
                    store: "ZooKeeper",
                    address,
                    reason,
                    source,
                } => {
                    let reason = match tls.diagnose(&config.connect, connection_timeout).await {
                        Some(why) => format!("{reason} ({why})"),
                        None => reason,
                    };
                    Err(Error::Connect {
                        store: "ZooKeeper",
                        address,
                        reason,
                        source,
                    })
                }
                other => Err(other),
            },
        };
    }
    connector
        .connect(&config.connect)
        .await
        .map_err(|e| connect_error(config, e))
}

/// Our error for a failed connection attempt.
fn connect_error(config: &Config, e: zk::Error) -> Error {
    match e {
        zk::Error::BadArguments(_) => {
            Error::InvalidConfig(format!("connect string {:?}: {e}", config.connect))
        }
        zk::Error::SessionExpired | zk::Error::SessionMoved => Error::SessionExpired {
            address: config.connect.clone(),
        },
        other => Error::Connect {
            store: "ZooKeeper",
            address: config.connect.clone(),
            reason: other.to_string(),
            source: Some(other),
        },
    }
}

enum Ended {
    /// The session expired or failed authentication: build a new one.
    Lost(zk::SessionState),
    /// Closed by the user, or every handle is gone.
    Close,
}

/// The manager task.
async fn manage(tx: watch::Sender<SessionView>, shared: Arc<Shared>, mut client: zk::Client) {
    loop {
        let ended = follow(&tx, &shared, &client).await;
        let Ended::Lost(state) = ended else {
            return shutdown(&tx, &shared, client).await;
        };
        warn!(connect = %shared.config.connect, session = %client.session_id(), ?state, "ZooKeeper session lost; resuming it or building a new one");
        shared.events.expired.increment(1);
        tx.send_modify(|v| {
            v.client = None;
            v.health = Health::Expired;
        });
        // The client gives up on its own after 7/5 of the session timeout
        // without a server; the server may still hold the session (it does
        // not expire sessions without a quorum). Resume it if so: its
        // members are still there and must not be created twice.
        let previous = (state == zk::SessionState::Expired).then(|| client.session().clone());
        drop(client);
        let (next, resumed) = tokio::select! {
            _ = tx.closed() => return mark_closed(&tx, &shared),
            _ = shared.close.notified() => return mark_closed(&tx, &shared),
            next = reconnect(&shared.config, previous) => next,
        };
        client = next;
        if resumed {
            info!(session = %client.session_id(), "ZooKeeper session resumed");
        } else {
            info!(session = %client.session_id(), "new ZooKeeper session established");
        }
        shared.events.connected.increment(1);
        tx.send_modify(|v| {
            if !resumed {
                v.generation += 1;
            }
            v.epoch += 1;
            v.client = Some(client.clone());
            v.health = Health::Connected;
        });
    }
}

/// Gets a session again after one was lost: the same one if the server
/// still holds it, else a new one; retrying with backoff until one works.
/// `true` with the client when the session was resumed.
async fn reconnect(config: &Config, mut previous: Option<zk::SessionInfo>) -> (zk::Client, bool) {
    // While the servers are unreachable, or lack a quorum, resuming fails
    // but a new session would fail too; once they serve again, the server
    // either still holds the session or says it expired. Only if resuming
    // keeps failing for long after that is a new session tried as well, so
    // that an odd answer cannot stall recovery.
    let patience = (config.session_timeout * 2).max(config.connect_timeout);
    let give_up_resuming = Instant::now() + patience;
    let mut backoff = Backoff::new();
    loop {
        if let Some(session) = &previous {
            let deadline = Instant::now() + config.connect_timeout;
            match tokio::time::timeout_at(deadline, connect_once(config, Some(session))).await {
                Ok(Ok(client)) if client.session_id() == session.id() => return (client, true),
                Ok(Ok(client)) => return (client, false),
                Ok(Err(Error::SessionExpired { .. })) => {
                    debug!("the server expired the session too; building a new one");
                    previous = None;
                    continue;
                }
                Ok(Err(e)) => debug!(error = %e, "cannot resume the session yet"),
                Err(_) => debug!("resuming the session timed out"),
            }
            if Instant::now() < give_up_resuming {
                tokio::time::sleep(backoff.next_delay()).await;
                continue;
            }
        }
        let far = Instant::now() + config.connect_timeout;
        match connect_until(config, far).await {
            Ok(client) => return (client, false),
            Err(e) => {
                warn!(error = %e, "cannot get a ZooKeeper session yet");
                tokio::time::sleep(backoff.next_delay()).await;
            }
        }
    }
}

/// Follows one session's state until it ends.
async fn follow(tx: &watch::Sender<SessionView>, shared: &Shared, client: &zk::Client) -> Ended {
    let mut states = client.state_watcher();
    // A change between connecting and subscribing is caught here.
    let mut state = client.state();
    loop {
        use zk::SessionState::*;
        match state {
            Disconnected => {
                warn!(session = %client.session_id(), "ZooKeeper connection lost; reconnecting");
                let lost = tx.send_if_modified(|v| {
                    let changed = v.health != Health::Disconnected;
                    v.health = Health::Disconnected;
                    changed
                });
                if lost {
                    shared.events.disconnected.increment(1);
                }
            }
            SyncConnected | ConnectedReadOnly => {
                let reconnected = tx.borrow().health != Health::Connected;
                if reconnected {
                    info!(session = %client.session_id(), "ZooKeeper connection restored");
                    shared.events.connected.increment(1);
                    tx.send_modify(|v| {
                        v.epoch += 1;
                        v.health = Health::Connected;
                    });
                }
            }
            Expired | AuthFailed => return Ended::Lost(state),
            Closed => return Ended::Close,
        }
        state = tokio::select! {
            _ = tx.closed() => return Ended::Close,
            _ = shared.close.notified() => return Ended::Close,
            state = states.changed() => state,
        };
    }
}

/// Closes the session: dropping the last `zk::Client` clone makes the
/// ZooKeeper client send CloseSession, which deletes the session's
/// ephemeral nodes at once. Tasks drop their clones when they see the
/// `Closed` view.
async fn shutdown(tx: &watch::Sender<SessionView>, shared: &Shared, client: zk::Client) {
    let mut states = client.state_watcher();
    let terminated = states.peek_state().is_terminated();
    drop(client);
    tx.send_modify(|v| {
        v.client = None;
        v.health = Health::Closed;
    });
    if !terminated {
        let closed = async { while !states.changed().await.is_terminated() {} };
        if tokio::time::timeout(shared.config.session_timeout, closed)
            .await
            .is_err()
        {
            warn!("ZooKeeper did not confirm closing the session in time");
        }
    }
    mark_closed(tx, shared);
}

/// Publishes the closed state and wakes [`Session::close`].
fn mark_closed(tx: &watch::Sender<SessionView>, shared: &Shared) {
    tx.send_modify(|v| {
        v.client = None;
        v.health = Health::Closed;
    });
    shared.done.send_replace(true);
    debug!("ZooKeeper session closed");
}
