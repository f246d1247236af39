//! The registration task: performs what [`decide`] says, against etcd.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{LeaseKeepAliveStream, LeaseKeeper, PutOptions};
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::decide::{decide, Action, Facts};
use crate::backoff::Backoff;
use crate::error::{Error, Result};
use crate::etcd::client::Shared;
use crate::format::member::Member;
use crate::format::naming::Format;
use crate::format::path::ServerSetPath;
use crate::metrics::Creations;
use crate::set::registration::HealthCheck;

/// One registration's state and I/O.
pub(crate) struct Registrar {
    pub shared: Arc<Shared>,
    pub path: ServerSetPath,
    pub member: Member,
    pub format: Format,
    pub ttl: Duration,
    pub check: Option<(HealthCheck, Duration)>,
    pub key: watch::Sender<Option<String>>,
    pub first: Option<oneshot::Sender<Result<()>>>,
    pub facts: Facts,
    pub keeper: Option<(LeaseKeeper, LeaseKeepAliveStream)>,
    pub creations: Creations,
}

/// What interrupted a wait.
enum Woken {
    Tick,
    Check,
    Close,
}

impl Registrar {
    /// Runs until closed: `stop` fires (or its handle is dropped), or the
    /// client is closed.
    pub(crate) async fn run(mut self, mut stop: oneshot::Receiver<()>) {
        let mut closed = self.shared.closed.subscribe();
        let keep_alive_every = self.keep_alive_every();
        let mut next_keep_alive = Instant::now();
        let mut next_check = Instant::now();
        let mut backoff = Backoff::new();
        let mut closing_since: Option<Instant> = None;
        if self.check.is_some() {
            self.facts.healthy = self.run_check().await;
            next_check = Instant::now() + self.check_interval();
        }
        loop {
            if closing_since.is_some_and(|since| since.elapsed() > self.ttl) {
                // etcd was unreachable for a whole TTL: the lease (and the
                // key) expired by itself.
                self.forget();
                return;
            }
            let action = decide(self.facts);
            let outcome = match action {
                Action::Done => return,
                Action::Grant => self.grant().await,
                Action::Put(id) => self.put(id).await,
                Action::Revoke(id) => self.revoke(id).await,
                Action::KeepAlive(_) | Action::Idle => {
                    self.settle_first();
                    let until = match action {
                        Action::KeepAlive(_) => Some(next_keep_alive),
                        _ => None,
                    };
                    let woken = self.wait(until, next_check, &mut stop, &mut closed).await;
                    if !self.woken(woken, &mut closing_since, &mut next_check).await {
                        continue;
                    }
                    let Action::KeepAlive(id) = action else {
                        continue;
                    };
                    next_keep_alive = Instant::now() + keep_alive_every;
                    self.keep_alive(id).await
                }
            };
            match outcome {
                Ok(()) => backoff.reset(),
                Err(error) => {
                    warn!(path = %self.path, %error, "etcd registration step failed; retrying");
                    let delay = Instant::now() + backoff.next_delay();
                    let woken = self
                        .wait(Some(delay), next_check, &mut stop, &mut closed)
                        .await;
                    self.woken(woken, &mut closing_since, &mut next_check).await;
                }
            }
        }
    }

    /// Applies what ended a wait: a close starts closing, a due check
    /// runs. Whether it was the time waited for.
    async fn woken(
        &mut self,
        woken: Woken,
        closing_since: &mut Option<Instant>,
        next_check: &mut Instant,
    ) -> bool {
        match woken {
            Woken::Close => {
                self.facts.closing = true;
                closing_since.get_or_insert_with(Instant::now);
                false
            }
            Woken::Check => {
                self.facts.healthy = self.run_check().await;
                *next_check = Instant::now() + self.check_interval();
                false
            }
            Woken::Tick => true,
        }
    }

    /// A third of the TTL (at least 500 ms): two keep-alives may fail
    /// before the lease is at risk.
    fn keep_alive_every(&self) -> Duration {
        (self.ttl / 3).max(Duration::from_millis(500))
    }

    fn check_interval(&self) -> Duration {
        self.check
            .as_ref()
            .map_or(Duration::MAX, |(_, every)| *every)
    }

    /// Waits for `until` (if any), the next health check, or closing.
    async fn wait(
        &mut self,
        until: Option<Instant>,
        next_check: Instant,
        stop: &mut oneshot::Receiver<()>,
        closed: &mut watch::Receiver<bool>,
    ) -> Woken {
        if self.facts.closing {
            // Closing already: nothing more to wait for but the time (the
            // stop signal is never polled again once it has fired).
            if let Some(at) = until {
                tokio::time::sleep_until(at).await;
            }
            return Woken::Tick;
        }
        let tick = async {
            match until {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let check = async {
            if self.check.is_some() {
                tokio::time::sleep_until(next_check).await
            } else {
                std::future::pending().await
            }
        };
        tokio::select! {
            _ = tick => Woken::Tick,
            _ = check => Woken::Check,
            _ = &mut *stop => Woken::Close,
            _ = closed.wait_for(|closed| *closed) => Woken::Close,
        }
    }

    async fn run_check(&self) -> bool {
        let Some((check, every)) = &self.check else {
            return true;
        };
        // Never longer than a keep-alive period: a hanging check must not
        // starve the lease.
        let within = (*every).min(self.keep_alive_every());
        let passed = matches!(tokio::time::timeout(within, check()).await, Ok(true));
        if passed != self.facts.healthy {
            info!(path = %self.path, passed, "health check changed");
        }
        passed
    }

    /// The first registration is settled (written, or not wanted): the
    /// caller of `register` gets its handle.
    fn settle_first(&mut self) {
        if let Some(first) = self.first.take() {
            let _ = first.send(Ok(()));
        }
    }

    fn timeout(&self) -> Duration {
        self.shared.config.request_timeout
    }

    fn key_of(&self, lease: i64) -> String {
        let name = self.format.name(&self.member, lease);
        format!("{}{name}", self.shared.prefix_of(&self.path))
    }

    async fn grant(&mut self) -> Result<()> {
        let ttl = i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX);
        let mut lease = self.shared.etcd.lease_client();
        let granted = tokio::time::timeout(self.timeout(), lease.grant(ttl, None))
            .await
            .map_err(|_| self.timed_out("lease grant"))?
            .map_err(|e| Error::etcd("lease grant", self.path.as_str(), &e))?;
        debug!(path = %self.path, lease = granted.id(), ttl = granted.ttl(), "lease granted");
        self.facts.lease = Some(granted.id());
        self.facts.written = false;
        self.keeper = None;
        Ok(())
    }

    async fn put(&mut self, lease: i64) -> Result<()> {
        let key = self.key_of(lease);
        let value = self.format.encode(&self.member);
        let mut kv = self.shared.etcd.kv_client();
        let put = kv.put(
            key.clone(),
            value,
            Some(PutOptions::new().with_lease(lease)),
        );
        match tokio::time::timeout(self.timeout(), put).await {
            Err(_) => return Err(self.timed_out("put")),
            Ok(Err(e)) if lease_gone(&e) => {
                warn!(path = %self.path, lease, "lease gone before the put; granting another");
                self.facts.lease = None;
                return Ok(());
            }
            Ok(Err(e)) => return Err(Error::etcd("put", &key, &e)),
            Ok(Ok(_)) => {}
        }
        info!(path = %self.path, %key, lease, "registered");
        self.facts.written = true;
        self.creations.created();
        self.key.send_replace(Some(key));
        self.settle_first();
        Ok(())
    }

    /// One keep-alive of `lease`, on the open keep-alive stream or a new
    /// one. etcd-client reads the first answer of a new stream itself (and
    /// reports TTL 0 as "lease not found"), so opening one is a keep-alive.
    async fn keep_alive(&mut self, lease: i64) -> Result<()> {
        // No longer than the interval between keep-alives: a lease of a
        // few seconds must not wait out a long request timeout.
        let timeout = self.timeout().min(self.keep_alive_every());
        let answer = tokio::time::timeout(timeout, async {
            match &mut self.keeper {
                Some((keeper, stream)) => {
                    keeper.keep_alive().await?;
                    Ok(stream.message().await?.map(|response| response.ttl()))
                }
                None => {
                    let mut client = self.shared.etcd.lease_client();
                    let (keeper, stream) = client.keep_alive(lease).await?;
                    self.keeper = Some((keeper, stream));
                    Ok(Some(1))
                }
            }
        })
        .await;
        let ttl = match answer {
            Ok(Ok(Some(ttl))) => ttl,
            Ok(Ok(None)) => {
                self.keeper = None;
                return Err(self.failed("keep-alive", "the stream ended"));
            }
            Ok(Err(e)) if lease_gone(&e) => 0,
            Ok(Err(e)) => {
                self.keeper = None;
                return Err(Error::etcd("keep-alive", self.path.as_str(), &e));
            }
            Err(_) => {
                // A reply may still come on this stream: never reuse it.
                self.keeper = None;
                return Err(Error::Timeout {
                    what: format!("etcd keep-alive for {}", self.path),
                    after: timeout,
                });
            }
        };
        if ttl <= 0 {
            warn!(path = %self.path, lease, "the lease expired in etcd (and the member with it); registering again");
            self.forget();
            return Ok(());
        }
        self.check_key(lease, timeout).await;
        Ok(())
    }

    /// Whether our key is still there: someone may have deleted it (it is
    /// put again, as ZooKeeper members are re-created), or another
    /// registration of the same address (etcd naming: one key per
    /// address) may have taken it over and then gone. A key held under
    /// another lease is left alone: two holders would otherwise take it
    /// from each other at every keep-alive. A failed read changes
    /// nothing: the next keep-alive looks again.
    async fn check_key(&mut self, lease: i64, timeout: Duration) {
        let key = self.key_of(lease);
        let mut kv = self.shared.etcd.kv_client();
        let Ok(Ok(found)) = tokio::time::timeout(timeout, kv.get(key.clone(), None)).await else {
            return;
        };
        if found.kvs().is_empty() {
            warn!(path = %self.path, %key, "our key was deleted; putting it again");
            self.facts.written = false;
        }
    }

    async fn revoke(&mut self, lease: i64) -> Result<()> {
        let mut client = self.shared.etcd.lease_client();
        match tokio::time::timeout(self.timeout(), client.revoke(lease)).await {
            Err(_) => return Err(self.timed_out("lease revoke")),
            Ok(Err(e)) if !lease_gone(&e) => {
                return Err(Error::etcd("lease revoke", self.path.as_str(), &e))
            }
            Ok(_) => {}
        }
        info!(path = %self.path, lease, "deregistered (lease revoked)");
        self.forget();
        Ok(())
    }

    /// The lease is gone, and the key with it.
    fn forget(&mut self) {
        self.facts.lease = None;
        self.facts.written = false;
        self.keeper = None;
        self.key.send_replace(None);
    }

    fn timed_out(&self, what: &str) -> Error {
        Error::Timeout {
            what: format!("etcd {what} for {}", self.path),
            after: self.timeout(),
        }
    }

    fn failed(&self, operation: &'static str, reason: &str) -> Error {
        Error::Etcd {
            operation,
            key: self.path.as_str().to_owned(),
            reason: reason.to_owned(),
        }
    }
}

/// Whether etcd says the lease does not exist (expired or revoked): a
/// put's "requested lease not found", or a keep-alive answered with TTL 0
/// (which etcd-client reports as "lease not found").
fn lease_gone(error: &etcd_client::Error) -> bool {
    error.to_string().contains("lease not found")
}
