//! The metrics serversets records, through the [`metrics`](https://docs.rs/metrics)
//! facade (0.24): names, labels and what each one means.
//!
//! Nothing is recorded, and recording costs next to nothing, until the
//! application installs a recorder (an exporter) of its choice. Handles
//! are made once, when a watch, a registration, a session or a typed set
//! is made, so the recorder current at that time is the one they record
//! to: install it before connecting.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! // Any `metrics` recorder: here the one of `metrics-util` for tests; in
//! // production say `metrics-exporter-prometheus`'s.
//! let recorder = metrics_util::debugging::DebuggingRecorder::new();
//! let snapshotter = recorder.snapshotter();
//! recorder.install().map_err(|_| "a recorder is installed already")?;
//! serversets::metrics::describe(); // optional: descriptions and units
//!
//! let client = serversets::Client::connect("127.0.0.1:2181").await?;
//! let _watch = client
//!     .watch(&serversets::ServerSetPath::new("/discovery/prod/users")?)
//!     .await?;
//! for (key, _, _, value) in snapshotter.snapshot().into_vec() {
//!     println!("{} {:?}", key.key(), value);
//! }
//! # Ok(()) }
//! ```
//!
//! # Sets (one series per view: a watched path and a distinct selection)
//!
//! | name | type | labels | meaning |
//! | --- | --- | --- | --- |
//! | [`SET_SIZE`] `serversets_set_size` | gauge | `path`, `selection`\* | entries the view publishes now (held-back removals included) |
//! | [`SET_LIMBO`] `serversets_set_limbo` | gauge | `path`, `selection`\* | removals held back by [`WatchOptions::hold_removals`](crate::WatchOptions::hold_removals) now (members that left and have not come back); always 0 without it |
//! | [`SET_HEALTH`] `serversets_set_health` | gauge | `path`, `selection`\* | 1 while the watch is in sync with ZooKeeper ([`Health::Connected`](crate::Health::Connected)), 0 otherwise |
//!
//! \* `selection` only when the view does not serve the plain service
//! endpoint of every member: see [`label`] (`endpoint=http`, `shard=3`,
//! `endpoint=http,shard=3,meta.zone=eu-1`). When the last watch of a view
//! is dropped its three gauges are set to 0. Views that differ only in
//! their removal window share one series.
//!
//! # Session
//!
//! | name | type | labels | meaning |
//! | --- | --- | --- | --- |
//! | [`SESSION_EVENTS`] `serversets_session_events_total` | counter | `state` = `connected`, `disconnected`, `expired` | transitions of a client's ZooKeeper session: `connected` for the first session, a reconnection, a resumed or a new session after a loss; `disconnected` when the connection is lost; `expired` when the session is lost (expired or refused) |
//!
//! # ZooKeeper requests of watches
//!
//! | name | type | labels | meaning |
//! | --- | --- | --- | --- |
//! | [`ZK_LISTINGS`] `serversets_zk_listings_total` | counter | `path` | children listings of the set path (the initial load, one per reconnection, one per change with one-shot watches); the same count as [`WatchStats::listings`](crate::WatchStats::listings) |
//! | [`ZK_READS`] `serversets_zk_reads_total` | counter | `path` | nodes read (members and weight vectors), however batched; as [`WatchStats::reads`](crate::WatchStats::reads) |
//! | [`ZK_LISTING_SECONDS`] `serversets_zk_listing_seconds` | histogram | `path` | latency of one listing request, in seconds |
//! | [`ZK_READ_SECONDS`] `serversets_zk_read_seconds` | histogram | `path` | latency of one read request, in seconds: a multi-read of up to 500 nodes, or a single get |
//! | [`ETCD_GETS`] `serversets_etcd_gets_total` | counter | `path` | etcd prefix gets of a watch (initial load, one per resync) |
//! | [`ETCD_GET_SECONDS`] `serversets_etcd_get_seconds` | histogram | `path` | latency of one etcd prefix get, in seconds |
//!
//! # Registrations
//!
//! | name | type | labels | meaning |
//! | --- | --- | --- | --- |
//! | [`REGISTRATIONS_CREATED`] `serversets_registrations_created_total` | counter | `path` | member znodes created by registrations (a create whose answer was lost and whose node was found again counts too) |
//! | [`REGISTRATIONS_RECREATED`] `serversets_registrations_recreated_total` | counter | `path` | of those, the ones created again by the same registration after its first: after a session expiry, a deletion by someone else or a health check that passes again |
//!
//! # Typed sets (`serversets-memcache`, `serversets-http`, `serversets-pool`)
//!
//! | name | type | labels | meaning |
//! | --- | --- | --- | --- |
//! | [`REQUESTS`] `serversets_requests_total` | counter | `set` | requests: memcache operations, HTTP requests sent (retries not counted again), pool checkouts |
//! | [`REQUEST_ERRORS`] `serversets_request_errors_total` | counter | `set` | of those, the ones that returned an error |
//! | [`RETRIES`] `serversets_retries_total` | counter | `set` | attempts sent again to another endpoint (HTTP only) |
//! | [`EJECTIONS`] `serversets_ejections_total` | counter | `set` | endpoints marked dead by failure accrual (failed probes included); recorded by [`accrual`](crate::accrual) for a policy with a [`metrics_label`](crate::accrual::FailureAccrual::metrics_label) |
//! | [`REVIVALS`] `serversets_revivals_total` | counter | `set` | dead endpoints revived by a successful probe |
//!
//! `set` is `memcache`, `http` or `pool`; a pool inside the memcache set
//! records nothing of its own.
//!
//! # Tracing
//!
//! Beside metrics, each watch engine task runs in a `watch` span and each
//! registration task in a `registration` span, both with the set's `path`.

use ::metrics::{counter, gauge, histogram, Counter, Gauge, Histogram, Unit};

use crate::format::selection::Selection;

/// Gauge: entries a view publishes now. Labels `path`, `selection`.
pub const SET_SIZE: &str = "serversets_set_size";
/// Gauge: removals a view holds back now. Labels `path`, `selection`.
pub const SET_LIMBO: &str = "serversets_set_limbo";
/// Gauge: 1 while a view's watch is in sync, else 0. Labels `path`,
/// `selection`.
pub const SET_HEALTH: &str = "serversets_set_health";
/// Counter: session transitions. Label `state`.
pub const SESSION_EVENTS: &str = "serversets_session_events_total";
/// Counter: children listings by watches. Label `path`.
pub const ZK_LISTINGS: &str = "serversets_zk_listings_total";
/// Counter: nodes read by watches. Label `path`.
pub const ZK_READS: &str = "serversets_zk_reads_total";
/// Histogram: seconds per listing request. Label `path`.
pub const ZK_LISTING_SECONDS: &str = "serversets_zk_listing_seconds";
/// Histogram: seconds per read request (multi-read or get). Label `path`.
pub const ZK_READ_SECONDS: &str = "serversets_zk_read_seconds";
/// Counter: etcd prefix gets by watches (initial load, resyncs). Label
/// `path`.
pub const ETCD_GETS: &str = "serversets_etcd_gets_total";
/// Histogram: seconds per etcd prefix get. Label `path`.
pub const ETCD_GET_SECONDS: &str = "serversets_etcd_get_seconds";
/// Counter: member znodes created by registrations. Label `path`.
pub const REGISTRATIONS_CREATED: &str = "serversets_registrations_created_total";
/// Counter: member znodes created again by a registration. Label `path`.
pub const REGISTRATIONS_RECREATED: &str = "serversets_registrations_recreated_total";
/// Counter: requests of a typed set. Label `set`.
pub const REQUESTS: &str = "serversets_requests_total";
/// Counter: requests of a typed set that failed. Label `set`.
pub const REQUEST_ERRORS: &str = "serversets_request_errors_total";
/// Counter: retries of a typed set. Label `set`.
pub const RETRIES: &str = "serversets_retries_total";
/// Counter: endpoints marked dead by failure accrual. Label `set`.
pub const EJECTIONS: &str = "serversets_ejections_total";
/// Counter: dead endpoints revived. Label `set`.
pub const REVIVALS: &str = "serversets_revivals_total";

/// Label: the set path.
pub const LABEL_PATH: &str = "path";
/// Label: a view's selection (see [`label`]).
pub const LABEL_SELECTION: &str = "selection";
/// Label: a session transition.
pub const LABEL_STATE: &str = "state";
/// Label: the typed set (`memcache`, `http`, `pool`).
pub const LABEL_SET: &str = "set";

/// The `selection` label of a view serving `selection`: `None` for the
/// plain service endpoint of every live member, else its parts joined by
/// commas: `endpoint=NAME`, `shard=N`, then `meta.KEY=VALUE` for each
/// metadata filter, in key order.
///
/// ```
/// use serversets::{metrics::label, Selection};
///
/// assert_eq!(label(&Selection::service()), None);
/// assert_eq!(label(&Selection::endpoint("http")).as_deref(), Some("endpoint=http"));
/// assert_eq!(label(&Selection::service().with_shard(3)).as_deref(), Some("shard=3"));
/// let both = Selection::endpoint("http").with_shard(3).with_metadata("zone", "eu-1");
/// assert_eq!(label(&both).as_deref(), Some("endpoint=http,shard=3,meta.zone=eu-1"));
/// ```
pub fn label(selection: &Selection) -> Option<String> {
    if selection.is_service() {
        return None;
    }
    let mut parts = Vec::new();
    if let Some(name) = selection.endpoint_name() {
        parts.push(format!("endpoint={name}"));
    }
    if let Some(shard) = selection.shard() {
        parts.push(format!("shard={shard}"));
    }
    for (key, value) in selection.metadata() {
        parts.push(format!("meta.{key}={value}"));
    }
    Some(parts.join(","))
}

/// Describes every metric above (description and unit) to the installed
/// recorder, for exporters that show them (Prometheus' `# HELP`). Call it
/// once, after installing the recorder; optional.
pub fn describe() {
    use ::metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_gauge!(SET_SIZE, "Entries a watched set publishes now");
    describe_gauge!(SET_LIMBO, "Removals a watched set holds back now");
    describe_gauge!(
        SET_HEALTH,
        "1 while a watched set is in sync with ZooKeeper, else 0"
    );
    describe_counter!(SESSION_EVENTS, "ZooKeeper session transitions");
    describe_counter!(ZK_LISTINGS, "Children listings by watches");
    describe_counter!(ZK_READS, "Nodes read by watches");
    describe_histogram!(
        ZK_LISTING_SECONDS,
        Unit::Seconds,
        "Latency of one children listing of a watch"
    );
    describe_histogram!(
        ZK_READ_SECONDS,
        Unit::Seconds,
        "Latency of one read request (multi-read or get) of a watch"
    );
    describe_counter!(ETCD_GETS, "etcd prefix gets by watches");
    describe_histogram!(
        ETCD_GET_SECONDS,
        Unit::Seconds,
        "Latency of one etcd prefix get of a watch"
    );
    describe_counter!(
        REGISTRATIONS_CREATED,
        "Member znodes created by registrations"
    );
    describe_counter!(
        REGISTRATIONS_RECREATED,
        "Member znodes created again by a registration after its first"
    );
    describe_counter!(REQUESTS, "Requests of a typed set");
    describe_counter!(REQUEST_ERRORS, "Requests of a typed set that failed");
    describe_counter!(RETRIES, "Attempts of a typed set sent again elsewhere");
    describe_counter!(EJECTIONS, "Endpoints marked dead by failure accrual");
    describe_counter!(REVIVALS, "Dead endpoints revived by a probe");
}

/// The gauges of one view.
#[derive(Debug, Clone)]
pub(crate) struct ViewGauges {
    size: Gauge,
    limbo: Gauge,
    health: Gauge,
}

impl ViewGauges {
    /// Gauges that record nothing.
    pub(crate) fn noop() -> Self {
        ViewGauges {
            size: Gauge::noop(),
            limbo: Gauge::noop(),
            health: Gauge::noop(),
        }
    }

    /// The gauges of the view of `path` serving `selection`.
    pub(crate) fn new(path: &str, selection: &Selection) -> Self {
        let mut labels = vec![(LABEL_PATH, path.to_owned())];
        if let Some(selection) = label(selection) {
            labels.push((LABEL_SELECTION, selection));
        }
        ViewGauges {
            size: gauge!(SET_SIZE, &labels),
            limbo: gauge!(SET_LIMBO, &labels),
            health: gauge!(SET_HEALTH, &labels),
        }
    }

    pub(crate) fn size(&self, entries: usize, held: usize) {
        self.size.set(entries as f64);
        self.limbo.set(held as f64);
    }

    pub(crate) fn health(&self, connected: bool) {
        self.health.set(if connected { 1.0 } else { 0.0 });
    }

    /// The view is gone.
    pub(crate) fn clear(&self) {
        self.size.set(0.0);
        self.limbo.set(0.0);
        self.health.set(0.0);
    }
}

/// What a watch engine asks of ZooKeeper, recorded.
#[derive(Debug)]
pub(crate) struct StoreRequests {
    pub listings: Counter,
    pub reads: Counter,
    pub listing_seconds: Histogram,
    pub read_seconds: Histogram,
}

impl StoreRequests {
    /// ZooKeeper's listings and reads for the watch of `path`.
    pub(crate) fn zookeeper(path: &str) -> Self {
        let labels = [(LABEL_PATH, path.to_owned())];
        StoreRequests {
            listings: counter!(ZK_LISTINGS, &labels),
            reads: counter!(ZK_READS, &labels),
            listing_seconds: histogram!(ZK_LISTING_SECONDS, &labels),
            read_seconds: histogram!(ZK_READ_SECONDS, &labels),
        }
    }

    /// etcd's prefix gets for the watch of `path` (it reads no single
    /// key).
    #[cfg(feature = "etcd")]
    pub(crate) fn etcd(path: &str) -> Self {
        let labels = [(LABEL_PATH, path.to_owned())];
        StoreRequests {
            listings: counter!(ETCD_GETS, &labels),
            reads: Counter::noop(),
            listing_seconds: histogram!(ETCD_GET_SECONDS, &labels),
            read_seconds: Histogram::noop(),
        }
    }
}

/// Session transitions, recorded.
#[derive(Debug)]
pub(crate) struct SessionEvents {
    pub connected: Counter,
    pub disconnected: Counter,
    pub expired: Counter,
}

impl SessionEvents {
    pub(crate) fn new() -> Self {
        SessionEvents {
            connected: counter!(SESSION_EVENTS, LABEL_STATE => "connected"),
            disconnected: counter!(SESSION_EVENTS, LABEL_STATE => "disconnected"),
            expired: counter!(SESSION_EVENTS, LABEL_STATE => "expired"),
        }
    }
}

/// A registration's creations, recorded.
#[derive(Debug)]
pub(crate) struct Creations {
    created: Counter,
    recreated: Counter,
    before: bool,
}

impl Creations {
    pub(crate) fn new(path: &str) -> Self {
        let labels = [(LABEL_PATH, path.to_owned())];
        Creations {
            created: counter!(REGISTRATIONS_CREATED, &labels),
            recreated: counter!(REGISTRATIONS_RECREATED, &labels),
            before: false,
        }
    }

    /// The member node was created (again, after the first time).
    pub(crate) fn created(&mut self) {
        self.created.increment(1);
        if self.before {
            self.recreated.increment(1);
        }
        self.before = true;
    }
}

/// The failure accrual transitions of one typed set, recorded.
#[derive(Debug)]
pub(crate) struct Transitions {
    pub ejections: Counter,
    pub revivals: Counter,
}

impl Transitions {
    /// Counted under `set` = `label`, or not at all.
    pub(crate) fn new(label: Option<&'static str>) -> Self {
        match label {
            Some(set) => Transitions {
                ejections: counter!(EJECTIONS, LABEL_SET => set),
                revivals: counter!(REVIVALS, LABEL_SET => set),
            },
            None => Transitions {
                ejections: Counter::noop(),
                revivals: Counter::noop(),
            },
        }
    }
}
