//! One memcached server: its connections, its failure accrual, and one
//! command run on it within a deadline.

use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use async_memcached::Client;
use serversets::accrual::{Accrual, Permit, Tracker};
use serversets::Endpoint;
use serversets_pool::{Connector, PoolSet};
use tokio::time::{Instant as TokioInstant, Sleep};
use tracing::debug;

use crate::command::{self, Command, Fault, Reply, Verdict};
use crate::error::Error;

/// A pooled memcached connection and the timer that bounds its requests.
///
/// The timer is made once per connection and moved forward for each
/// request: moving a registered tokio timer later is one atomic store,
/// where a new timer per request costs a lock and a kernel timer.
pub(crate) struct Conn {
    client: Client,
    deadline: Pin<Box<Sleep>>,
}

/// Opens `async-memcached` connections (TCP, `TCP_NODELAY`). A client that
/// an incomplete request closed (error, timeout, cancellation) is broken:
/// the pool closes it instead of reusing it.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct MemcacheConnector;

impl Connector for MemcacheConnector {
    type Connection = Conn;
    type Error = async_memcached::Error;

    async fn connect(&self, endpoint: &Endpoint) -> Result<Conn, async_memcached::Error> {
        let client = Client::new(format!("tcp://{endpoint}")).await?;
        Ok(Conn {
            client,
            deadline: Box::pin(tokio::time::sleep(IDLE_DEADLINE)),
        })
    }

    fn is_broken(&self, conn: &Conn) -> bool {
        conn.client.is_closed()
    }
}

/// Where a connection's timer rests between requests (never reached).
const IDLE_DEADLINE: Duration = Duration::from_secs(24 * 3600);

/// `timeout` from now, or a day away if that does not fit (a huge timeout
/// means "none").
fn deadline_after(timeout: Duration) -> TokioInstant {
    let now = TokioInstant::now();
    now.checked_add(timeout)
        .or_else(|| now.checked_add(IDLE_DEADLINE))
        .unwrap_or(now)
}

/// Why an attempt failed.
enum Failed {
    /// The command failed.
    Fault(Fault),
    /// No connection: the pool's error.
    Pool(serversets_pool::Error),
    /// The deadline passed while waiting for a connection.
    CheckoutDeadline,
    /// The deadline passed while waiting for the reply.
    IoDeadline,
}

/// A server in the ring: where it is, its connection pool and its failure
/// accrual. Kept across ring rebuilds while the server stays in the set.
pub(crate) struct Server {
    pub(crate) endpoint: Endpoint,
    pool: PoolSet<MemcacheConnector>,
    pub(crate) tracker: Arc<Tracker>,
}

/// The settings a server's calls use.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    pub(crate) timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) max_connections: usize,
    pub(crate) max_idle: usize,
}

impl Server {
    pub(crate) fn new(endpoint: Endpoint, accrual: &Accrual, limits: &Limits) -> Self {
        let options = serversets_pool::Options::new()
            .max_idle(limits.max_idle)
            .max_active(limits.max_connections.max(1))
            .idle_timeout(Some(Duration::from_secs(60)))
            // A connect gets at most 90 % of the deadline, so that its own
            // timeout (which counts against the server) comes first.
            .connect_timeout(limits.connect_timeout.min(limits.timeout.mul_f64(0.9)))
            .checkout_timeout(limits.timeout)
            // The server's accrual is the memcache set's, not the pool's,
            // and so are the metrics.
            .failure_accrual(serversets::accrual::FailureAccrual::disabled())
            .metrics_label(None);
        let only = serversets::FixedSet::from_endpoints([endpoint.clone()]);
        Server {
            pool: PoolSet::with_options(only, MemcacheConnector, options),
            tracker: accrual.track(),
            endpoint,
        }
    }

    /// Runs `command` on this server: admitted by failure accrual (a dead
    /// server fails at once), within `timeout` for connect, checkout and
    /// I/O together. The outcome is reported to failure accrual; a
    /// cancelled call reports nothing and its connection is closed.
    pub(crate) async fn call(
        self: &Arc<Self>,
        command: &Command<'_>,
        timeout: Duration,
    ) -> Result<Reply, Error> {
        if self.tracker.is_dead() {
            // No caller's request is spent on probing a dead server: once
            // its backoff is over, a probe runs in the background.
            let retry_in = match self.tracker.admit() {
                Ok(permit) => {
                    self.probe(permit, timeout);
                    Duration::ZERO
                }
                Err(dead) => dead.until.saturating_duration_since(Instant::now()),
            };
            return Err(Error::Dead {
                server: self.endpoint.clone(),
                retry_in,
            });
        }
        // Live: outcomes go straight to the tracker (no permit to carry).
        let tracker = &*self.tracker;
        let deadline = deadline_after(timeout);
        let failed = match self.attempt(command, deadline).await {
            Ok(reply) => {
                tracker.success();
                return Ok(reply);
            }
            Err(failed) => failed,
        };
        // Waiting for one of our own busy connections says nothing about
        // the server; failing to connect, I/O errors and I/O timeouts do.
        let counts = match &failed {
            Failed::Fault(fault) => fault.verdict() == Verdict::Failure,
            Failed::Pool(
                serversets_pool::Error::Connect { .. }
                | serversets_pool::Error::ConnectTimeout { .. },
            ) => true,
            Failed::Pool(_) | Failed::CheckoutDeadline => false,
            Failed::IoDeadline => true,
        };
        let dead = counts && tracker.failure();
        let server = self.endpoint.clone();
        match failed {
            Failed::Fault(fault) => {
                if dead || fault.is_io() {
                    // The server went away or restarted: its idle
                    // connections are most likely dead as well.
                    self.pool.clear_idle();
                }
                debug!(server = %self.endpoint, ?fault, "memcache call failed");
                Err(match fault {
                    Fault::Memcache(source) => Error::Memcache { server, source },
                    Fault::Mismatch { expected, got } => Error::Mismatch {
                        server,
                        expected,
                        got,
                    },
                    Fault::Unexpected(reply) => Error::UnexpectedReply { server, reply },
                })
            }
            other => {
                if dead {
                    self.pool.clear_idle();
                }
                Err(match other {
                    Failed::Pool(source) => Error::Connect { server, source },
                    _ => Error::Timeout { server, timeout },
                })
            }
        }
    }

    /// Checks out a connection and runs `command` on it, by `deadline`.
    async fn attempt(
        &self,
        command: &Command<'_>,
        deadline: TokioInstant,
    ) -> Result<Reply, Failed> {
        // An idle connection is handed out without waiting; only a checkout
        // that has to wait (or connect) gets a timer of its own.
        let checkout = self.pool.checkout();
        tokio::pin!(checkout);
        let mut conn = match futures::poll!(checkout.as_mut()) {
            Poll::Ready(conn) => conn.map_err(Failed::Pool)?,
            Poll::Pending => tokio::time::timeout_at(deadline, checkout)
                .await
                .map_err(|_| Failed::CheckoutDeadline)?
                .map_err(Failed::Pool)?,
        };
        let Conn {
            client,
            deadline: timer,
        } = &mut *conn;
        timer.as_mut().reset(deadline);
        let outcome = tokio::select! {
            biased;
            outcome = command::run(client, command) => outcome,
            // Dropping the command closes the connection (async-memcached
            // closes a connection whose request did not complete).
            () = timer.as_mut() => return Err(Failed::IoDeadline),
        };
        outcome.map_err(|fault| {
            if fault.poisons_connection() {
                drop(conn.into_inner());
            }
            Failed::Fault(fault)
        })
    }

    /// Probes a dead server whose backoff is over, in the background: a
    /// `version` request on a fresh connection within `timeout`. Its
    /// success revives the server, its failure marks it dead again. Outside
    /// a runtime nothing is probed (the permit is dropped, so the next call
    /// tries again). Returns whether a probe was started.
    pub(crate) fn probe(self: &Arc<Self>, permit: Permit, timeout: Duration) -> bool {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return false;
        };
        let server = Arc::clone(self);
        runtime.spawn(async move {
            // Connections idle since before the server died are stale.
            server.pool.clear_idle();
            let probe = async {
                let mut conn = server.pool.checkout().await.ok()?;
                conn.client.version().await.ok()
            };
            match tokio::time::timeout(timeout, probe).await {
                Ok(Some(version)) => {
                    debug!(server = %server.endpoint, version, "probe succeeded");
                    permit.success();
                }
                _ => {
                    debug!(server = %server.endpoint, "probe failed");
                    let _ = permit.failure();
                }
            }
        });
        true
    }
}
