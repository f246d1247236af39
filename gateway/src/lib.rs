//! # serversets-gateway
//!
//! The discovery gateway behind `serverset serve`. Services without a
//! ZooKeeper or etcd client follow sets over HTTP and Server-Sent Events
//! and register as members with a TTL they renew; operators watch sets
//! live in a browser. One connection to the store, a ZooKeeper session or
//! an etcd client ([`serversets::Backend`]), serves every request.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let client = serversets::Client::connect("127.0.0.1:2181").await?;
//! let options = serversets_gateway::Options::new("127.0.0.1:8080".parse()?);
//! // Serves until Ctrl-C, then deletes the members it registered.
//! serversets_gateway::run(client, options, async {
//!     let _ = tokio::signal::ctrl_c().await;
//! })
//! .await?;
//! # Ok(()) }
//! ```
//!
//! On etcd, the same with an [`EtcdClient`](serversets::EtcdClient) (or a
//! [`Backend`] of either store):
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let etcd = serversets::EtcdClient::connect("127.0.0.1:2379").await?;
//! let options = serversets_gateway::Options::new("127.0.0.1:8080".parse()?);
//! serversets_gateway::run(etcd, options, async {
//!     let _ = tokio::signal::ctrl_c().await;
//! })
//! .await?;
//! # Ok(()) }
//! ```
//!
//! Every set route takes `format=finagle|etcd-naming` (default `finagle`):
//! how an etcd set stores its members, Finagle's JSON under `member_` keys
//! or etcd's gRPC naming format under `host:port` keys (see
//! [`serversets::naming`]). ZooKeeper sets are always Finagle's: another
//! format is refused (400). Instances registered through the gateway on
//! etcd hold a lease of etcd's default TTL
//! ([`serversets::DEFAULT_TTL`]) that the gateway keeps alive while their
//! client renews them within their own `ttl_secs`.
//!
//! Parts:
//! - [`api`]: members, leader, known paths, health, metrics, the page;
//! - [`events`]: the SSE stream of a set;
//! - [`instances`]: TTL registrations, kept by [`leases`] (pure);
//! - [`query`]: the set routes' query string; [`error`]: `{"error"}`.

mod api;
mod error;
mod events;
mod instances;
mod leases;
mod query;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, put};
use axum::Router;
use serversets::naming::Format;
use serversets::{Backend, Watch, WatchOptions};
use tokio::sync::watch;
use tracing::{info, warn};

use self::error::ApiError;
use self::instances::Instances;
use self::query::SetQuery;

/// Request bodies above this are refused (413).
pub const MAX_BODY: usize = 64 * 1024;

/// How many distinct (set, filters) the gateway keeps watching at most;
/// beyond, the least recently asked for is dropped.
const MAX_WATCHES: usize = 4096;

/// How long a stopping gateway waits for its connections to end.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// What every handler shares: the store's client, the watches it serves,
/// the TTL registrations, the metrics handle.
pub struct Gateway {
    backend: Backend,
    token: Option<String>,
    /// Each watched set with when it was last asked for.
    watches: Mutex<HashMap<SetQuery, (Watch, Instant)>>,
    /// The JSON of each watched set's members, by snapshot version:
    /// rendered once per change, not once per request.
    rendered: Mutex<HashMap<SetQuery, (u64, axum::body::Bytes)>>,
    instances: Instances,
    prometheus: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// Becomes true when the gateway shuts down: event streams end.
    shutdown: watch::Receiver<bool>,
    /// Slots for event streams.
    streams: Arc<tokio::sync::Semaphore>,
}

impl Gateway {
    /// Refuses a storage format the store cannot hold: ZooKeeper sets are
    /// always Finagle's.
    fn check_format(&self, format: Format) -> Result<(), ApiError> {
        match &self.backend {
            Backend::ZooKeeper(_) if format != Format::Finagle => {
                Err(ApiError::bad_request(format!(
                    "format={format}: ZooKeeper sets are in Finagle's format (format=finagle); \
                     {format} is for etcd"
                )))
            }
            _ => Ok(()),
        }
    }

    /// The watch of a set with these filters, started on first use and
    /// kept (watches of one path share one ZooKeeper or etcd watch).
    async fn watch(&self, query: &SetQuery) -> Result<Watch, ApiError> {
        self.check_format(query.format)?;
        if let Some((watch, used)) = self.lock_watches().get_mut(query) {
            *used = Instant::now();
            return Ok(watch.clone());
        }
        let options = WatchOptions::new()
            .selection(query.selection.clone())
            .format(query.format);
        let watch = self.backend.watch_with(&query.path, options).await?;
        let mut watches = self.lock_watches();
        if watches.len() >= MAX_WATCHES && !watches.contains_key(query) {
            // The least recently used goes (its streams keep their own
            // subscription; a later request watches it again).
            let oldest = watches
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(q, _)| q.clone());
            if let Some(oldest) = oldest {
                watches.remove(&oldest);
                self.lock_rendered().remove(&oldest);
            }
        }
        let (watch, _) = watches
            .entry(query.clone())
            .or_insert((watch, Instant::now()));
        Ok(watch.clone())
    }

    fn lock_rendered(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<SetQuery, (u64, axum::body::Bytes)>> {
        self.rendered
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn lock_watches(&self) -> std::sync::MutexGuard<'_, HashMap<SetQuery, (Watch, Instant)>> {
        // A panic elsewhere cannot leave the map half-updated: use it.
        self.watches
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// How the gateway listens.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Options {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The bearer token writes need, if any.
    pub token: Option<String>,
    /// Renders `/metrics`; [`run`] installs a recorder when `None`.
    pub prometheus: Option<metrics_exporter_prometheus::PrometheusHandle>,
}

impl Options {
    /// Listens on `listen`; writes need no token.
    pub fn new(listen: SocketAddr) -> Self {
        Options {
            listen,
            token: None,
            prometheus: None,
        }
    }

    /// Renders `/metrics` with this handle (from [`install_recorder`],
    /// called before the client connects, so that the session's metrics
    /// are recorded too).
    pub fn prometheus(mut self, handle: metrics_exporter_prometheus::PrometheusHandle) -> Self {
        self.prometheus = Some(handle);
        self
    }

    /// Writes (PUT, DELETE) need `Authorization: Bearer <token>`.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }
}

/// The gateway's own gauges.
pub mod metric_names {
    /// Gauge: TTL instances registered through the gateway now.
    pub const INSTANCES: &str = "serversets_gateway_instances";
    /// Gauge: Server-Sent Events subscribers connected now.
    pub const SSE_CLIENTS: &str = "serversets_gateway_sse_clients";
}

/// Installs a Prometheus recorder for the process's `metrics` (the
/// library's and the gateway's) and returns the handle that renders them.
/// Call it before connecting: metric handles are made when a client,
/// watch or registration is. Fails if a recorder is installed already.
pub fn install_recorder(
) -> Result<metrics_exporter_prometheus::PrometheusHandle, metrics_exporter_prometheus::BuildError>
{
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder()?;
    serversets::metrics::describe();
    Ok(handle)
}

/// Serves on `options.listen` until `stop` completes, then deletes the
/// members registered through the gateway and returns. Installs a
/// Prometheus recorder for the process's `metrics` if none is installed.
///
/// `backend` is the store: a ZooKeeper [`Client`](serversets::Client), an
/// [`EtcdClient`](serversets::EtcdClient) or a [`Backend`]. It is not
/// closed here (the caller's clones may still use it).
pub async fn run(
    backend: impl Into<Backend>,
    options: Options,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let prometheus = match options.prometheus {
        Some(handle) => Some(handle),
        None => match install_recorder() {
            Ok(handle) => Some(handle),
            Err(e) => {
                warn!(error = %e, "no Prometheus recorder: /metrics answers 503");
                None
            }
        },
    };
    let backend = backend.into();
    let (shutdown_tx, shutdown) = watch::channel(false);
    let gateway = Arc::new(Gateway {
        instances: Instances::new(backend.clone()),
        backend,
        token: options.token,
        watches: Mutex::new(HashMap::new()),
        rendered: Mutex::new(HashMap::new()),
        prometheus,
        shutdown,
        streams: Arc::new(tokio::sync::Semaphore::new(events::MAX_STREAMS)),
    });
    let listener = tokio::net::TcpListener::bind(options.listen).await?;
    info!(listen = %listener.local_addr()?, store = gateway.backend.store(), "gateway listening");
    let expiry = tokio::spawn(instances::expire_forever(Arc::clone(&gateway)));
    let upkeep = gateway.prometheus.clone().map(|handle| {
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(Duration::from_secs(5));
            loop {
                ticks.tick().await;
                handle.run_upkeep();
            }
        })
    });
    let (stopping_tx, stopping) = tokio::sync::oneshot::channel::<()>();
    let server =
        axum::serve(listener, router(Arc::clone(&gateway))).with_graceful_shutdown(async move {
            stop.await;
            let _ = stopping_tx.send(());
            // Event streams end, or the graceful shutdown would wait for them.
            let _ = shutdown_tx.send(true);
        });
    let mut server = std::pin::pin!(std::future::IntoFuture::into_future(server));
    let served = tokio::select! {
        served = &mut server => served,
        _ = async {
            let _ = stopping.await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => {
            // A subscriber that reads nothing is never polled again: cut it.
            warn!("connections still open {SHUTDOWN_GRACE:?} after the stop: closing them");
            Ok(())
        }
    };
    expiry.abort();
    if let Some(upkeep) = upkeep {
        upkeep.abort();
    }
    gateway.instances.close_all().await;
    served
}

/// Every route, on `gateway`'s state.
fn router(gateway: Arc<Gateway>) -> Router {
    Router::new()
        .route("/", get(api::dashboard))
        .route("/healthz", get(api::healthz))
        .route("/metrics", get(api::metrics))
        .route("/v1/paths", get(api::paths))
        .route("/v1/members", get(api::members))
        .route("/v1/leader", get(api::leader))
        .route("/v1/events", get(events::events))
        .route(
            "/v1/instances/{id}",
            put(instances::put).delete(instances::delete),
        )
        .fallback(api::not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(gateway)
}
