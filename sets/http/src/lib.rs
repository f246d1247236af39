//! # serversets-http
//!
//! An HTTP client that follows a serverset: point it at a service and
//! forget about it. Each request goes to the next endpoint in round-robin
//! order of the set as it is at that moment; endpoints that join are used
//! on their next turn, endpoints that leave get no more requests.
//!
//! It wraps `reqwest::Client`: requests are built with a path and sent with
//! reqwest's headers, bodies, timeouts and connection pooling.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use serversets_http::HttpSet;
//! use serversets::{Client, Selection, ServerSetPath};
//!
//! let zk = Client::connect("127.0.0.1:2181").await?;
//! let watch = zk
//!     .watch_with(&ServerSetPath::new("/discovery/prod/users")?, Selection::endpoint("http"))
//!     .await?;
//! let users = HttpSet::new(watch);
//! let response = users.get("/users/1").header("accept", "application/json").send().await?;
//! println!("{} from {:?}", response.status(), response.remote_addr());
//! # Ok(()) }
//! ```
//!
//! # Faults
//!
//! As Finagle's clients, it stops sending to endpoints that fail, bounds
//! every attempt in time and retries within a budget:
//!
//! - **Failure accrual** ([`serversets::accrual`], configured with
//!   [`HttpSetBuilder::failure_accrual`]): an endpoint that fails 5 times
//!   in a row is marked dead and skipped by the rotation; after a backoff
//!   (a jittered 100 ms, doubling with each marking in a row up to 1 s) one
//!   request probes it, and a response brings it back. Failures are
//!   attempts that could not connect, timed out, or lost their connection
//!   before the response or while reading its body; any response, whatever
//!   its status, is a success (judged when its body has been read, or when
//!   the response is dropped: a body cut short is a failure, never a
//!   truncated success). The last live endpoint is never marked dead, and
//!   if every endpoint is dead, requests go to the next in rotation
//!   anyway. A request whose future is dropped counts for nothing.
//!   [`HttpSet::accrual_stats`] counts markings and revivals.
//! - **Timeouts**, so that nothing waits forever on a wedged server: the
//!   client the set makes connects within 1 s
//!   ([`HttpSetBuilder::connect_timeout`]), and each attempt, from sending
//!   the request to the end of the response body, is given 10 s
//!   ([`HttpSetBuilder::attempt_timeout`]; [`Error::Timeout`], or an error
//!   reading the body) unless the request sets its own
//!   [`timeout`](RequestBuilder::timeout). The attempt timeout is a tokio
//!   timer armed only once the attempt has to wait.
//! - **Retries**: a request that cannot connect (or, for an idempotent
//!   method, whose connection broke before any response) is sent to
//!   another endpoint, neither dead nor tried already, up to
//!   [`HttpSetBuilder::max_attempts`] endpoints in all, as long as the
//!   [`RetryBudget`] allows (Finagle's default: 20 % of requests plus 10
//!   retries per second). Timeouts and responses are never retried.
//!
//! See [`HttpSetBuilder`] for the settings.

#![warn(missing_docs)]

mod base;
mod budget;
mod deadline;
mod error;
mod outcome;
mod request;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use metrics::{counter, Counter};
use reqwest::Method;
use serversets::accrual::{Accrual, Permit};
use serversets::{Entry, Snapshot, Source};
use tower::retry::budget::TpsBudget;

pub use budget::RetryBudget;
pub use error::Error;
pub use request::RequestBuilder;
pub use reqwest;
pub use serversets::accrual::{AccrualStats, FailureAccrual};

/// The `set` label of the HTTP set's metrics.
const SET_LABEL: &str = "http";

/// The default number of endpoints one request may try.
pub const DEFAULT_MAX_ATTEMPTS: usize = 3;

/// The default connect timeout of the client an [`HttpSet`] makes itself
/// (Finagle's default too).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// The default timeout of each attempt, from sending the request to the
/// end of the response body, unless the request sets its own
/// [`timeout`](RequestBuilder::timeout). Long enough for ordinary requests
/// and responses, short enough that a wedged server costs a caller
/// seconds, not forever; set your own with
/// [`HttpSetBuilder::attempt_timeout`] (say for large downloads).
pub const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// The URL scheme requests use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scheme {
    /// `http`
    #[default]
    Http,
    /// `https` (the endpoint's host is the TLS server name)
    Https,
}

impl Scheme {
    fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// A round-robin HTTP client over a [`Source`]. Cloning is cheap and
/// shares the rotation and the connection pool.
#[derive(Clone)]
pub struct HttpSet {
    inner: Arc<Inner>,
}

struct Inner {
    source: Box<dyn Source>,
    client: reqwest::Client,
    scheme: Scheme,
    max_attempts: usize,
    attempt_timeout: Duration,
    next: AtomicUsize,
    /// Per snapshot: the endpoints' base URLs and accrual trackers.
    endpoints: base::Cache,
    accrual: Accrual,
    budget: TpsBudget,
    /// Requests, counted (`set="http"`).
    requests: Counter,
    /// Requests that returned an error, counted.
    errors: Counter,
    /// Retries, counted.
    retries: Counter,
}

impl std::fmt::Debug for HttpSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSet")
            .field("scheme", &self.inner.scheme)
            .field("endpoints", &self.inner.source.current().len())
            .field("max_attempts", &self.inner.max_attempts)
            .field("attempt_timeout", &self.inner.attempt_timeout)
            .field("accrual", &self.inner.accrual.stats())
            .field("retry_budget", &self.inner.budget)
            .finish()
    }
}

/// Configures an [`HttpSet`]: the client, timeouts, failure accrual,
/// retries.
///
/// ```
/// use std::time::Duration;
/// use serversets_http::{FailureAccrual, HttpSet, RetryBudget, Scheme};
///
/// let set = serversets::FixedSet::parse("10.0.0.1:8080,10.0.0.2:8080")?;
/// let users = HttpSet::builder(set)
///     .scheme(Scheme::Http)
///     // Each attempt: 1 s to connect, 2 s in all (unless the request
///     // sets its own timeout).
///     .connect_timeout(Duration::from_secs(1))
///     .attempt_timeout(Duration::from_secs(2))
///     // Skip an endpoint after 3 failures in a row, probing it again
///     // after 200 ms, then 400 ms, ... up to 5 s.
///     .failure_accrual(
///         FailureAccrual::new()
///             .consecutive_failures(3)
///             .backoff(Duration::from_millis(200), Duration::from_secs(5)),
///     )
///     // Retry at most 10 % of the requests (and 5 per second).
///     .retry_budget(RetryBudget::new().ratio(0.1).min_retries_per_second(5))
///     .max_attempts(2)
///     .build();
/// assert_eq!(users.accrual_stats().ejections, 0);
/// # Ok::<(), serversets::Error>(())
/// ```
pub struct HttpSetBuilder {
    source: Box<dyn Source>,
    client: Option<reqwest::Client>,
    scheme: Scheme,
    max_attempts: usize,
    connect_timeout: Duration,
    attempt_timeout: Duration,
    accrual: FailureAccrual,
    budget: RetryBudget,
}

impl HttpSetBuilder {
    /// The reqwest client to send with (default: one made with the
    /// [`connect_timeout`](Self::connect_timeout)). The
    /// [`attempt_timeout`](Self::attempt_timeout) still applies to each
    /// attempt, in place of any timeout set on this client; its connect
    /// timeout is its own.
    pub fn client(mut self, client: reqwest::Client) -> Self {
        self.client = Some(client);
        self
    }

    /// `http` (default) or `https`.
    pub fn scheme(mut self, scheme: Scheme) -> Self {
        self.scheme = scheme;
        self
    }

    /// How many endpoints one request may try when connecting fails
    /// (default 3, at least 1; never more than the set has). Each retry
    /// also needs the [`retry_budget`](Self::retry_budget).
    pub fn max_attempts(mut self, attempts: usize) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// How long connecting to an endpoint may take, for the client the set
    /// makes itself (default [`DEFAULT_CONNECT_TIMEOUT`], 1 s; ignored with
    /// [`client`](Self::client)). A connect timeout is a connect failure:
    /// the request is retried on another endpoint.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long each attempt may take, from sending the request to the end
    /// of the response body (default [`DEFAULT_ATTEMPT_TIMEOUT`], 10 s),
    /// unless the request sets its own
    /// [`timeout`](RequestBuilder::timeout). An attempt that times out
    /// before its response is [`Error::Timeout`]; reading a body past the
    /// deadline fails with an error whose `is_timeout()` is true. Either
    /// counts against the endpoint and is not retried.
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = timeout;
        self
    }

    /// When an endpoint is skipped for failing and for how long (default
    /// [`FailureAccrual::new`]: 5 failures in a row, probed again after a
    /// jittered 100 ms doubling up to 1 s; [`FailureAccrual::disabled`]
    /// never skips one).
    pub fn failure_accrual(mut self, policy: FailureAccrual) -> Self {
        self.accrual = policy;
        self
    }

    /// How many retries the set may send (default [`RetryBudget::new`],
    /// Finagle's: 20 % of requests, at least 10 per second;
    /// [`RetryBudget::none`] never retries).
    pub fn retry_budget(mut self, budget: RetryBudget) -> Self {
        self.budget = budget;
        self
    }

    /// Builds the client.
    ///
    /// Requests, failed requests, retries and the failure accrual's
    /// markings and revivals are counted as the metrics of
    /// [`serversets::metrics`] with `set="http"` (the accrual's own
    /// [label](FailureAccrual::metrics_label) if it has one).
    pub fn build(self) -> HttpSet {
        let client = self.client.unwrap_or_else(|| {
            reqwest::Client::builder()
                .connect_timeout(self.connect_timeout)
                .build()
                .unwrap_or_else(|error| {
                    tracing::warn!(%error, "cannot build the HTTP client; using reqwest's default");
                    reqwest::Client::new()
                })
        });
        HttpSet {
            inner: Arc::new(Inner {
                source: self.source,
                client,
                scheme: self.scheme,
                max_attempts: self.max_attempts,
                attempt_timeout: self.attempt_timeout,
                next: AtomicUsize::new(0),
                endpoints: base::Cache::default(),
                accrual: Accrual::new(match self.accrual.label() {
                    Some(_) => self.accrual,
                    None => self.accrual.metrics_label(SET_LABEL),
                }),
                budget: self.budget.build(),
                requests: counter!(serversets::metrics::REQUESTS, serversets::metrics::LABEL_SET => SET_LABEL),
                errors: counter!(serversets::metrics::REQUEST_ERRORS, serversets::metrics::LABEL_SET => SET_LABEL),
                retries: counter!(serversets::metrics::RETRIES, serversets::metrics::LABEL_SET => SET_LABEL),
            }),
        }
    }
}

impl HttpSet {
    /// An `http` client with default settings over `source` (a
    /// [`Watch`](serversets::Watch), a `serversets::FixedSet`, ...).
    pub fn new(source: impl Source) -> Self {
        Self::builder(source).build()
    }

    /// Starts configuring a client over `source`.
    pub fn builder(source: impl Source) -> HttpSetBuilder {
        HttpSetBuilder {
            source: Box::new(source),
            client: None,
            scheme: Scheme::Http,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            attempt_timeout: DEFAULT_ATTEMPT_TIMEOUT,
            accrual: FailureAccrual::new(),
            budget: RetryBudget::new(),
        }
    }

    /// A request with this method to `path` (which starts with `/` and may
    /// carry a query string).
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        RequestBuilder::new(self.clone(), method, path)
    }

    /// A `GET` request to `path`.
    pub fn get(&self, path: &str) -> RequestBuilder {
        self.request(Method::GET, path)
    }

    /// A `POST` request to `path`.
    pub fn post(&self, path: &str) -> RequestBuilder {
        self.request(Method::POST, path)
    }

    /// A `PUT` request to `path`.
    pub fn put(&self, path: &str) -> RequestBuilder {
        self.request(Method::PUT, path)
    }

    /// A `DELETE` request to `path`.
    pub fn delete(&self, path: &str) -> RequestBuilder {
        self.request(Method::DELETE, path)
    }

    /// A `HEAD` request to `path`.
    pub fn head(&self, path: &str) -> RequestBuilder {
        self.request(Method::HEAD, path)
    }

    /// A `PATCH` request to `path`.
    pub fn patch(&self, path: &str) -> RequestBuilder {
        self.request(Method::PATCH, path)
    }

    /// The endpoints requests go to now (dead ones included).
    pub fn endpoints(&self) -> Arc<Snapshot> {
        self.inner.source.current()
    }

    /// Failure accrual so far: how many times an endpoint was marked dead
    /// (`ejections`) and came back (`revivals`), and how many are dead
    /// now. Endpoints are counted once a request has seen them.
    pub fn accrual_stats(&self) -> AccrualStats {
        self.inner.accrual.stats()
    }

    /// The snapshot now and what requests need of it (made once per
    /// snapshot; lock-free once made).
    fn view(&self) -> (Arc<Snapshot>, Arc<base::Endpoints>) {
        let inner = &*self.inner;
        let snapshot = inner.source.current();
        if let Some(endpoints) = inner.endpoints.get(&snapshot) {
            return (snapshot, endpoints);
        }
        inner
            .endpoints
            .refresh(inner.scheme, &inner.accrual, || inner.source.current())
    }

    /// The first attempt's endpoint: the next in rotation that is admitted
    /// (live, or dead and due for a probe, which this request then is),
    /// skipping dead ones; if none is, the next in rotation anyway,
    /// without a permit. `None` if the snapshot is empty.
    fn pick(
        &self,
        snapshot: &Snapshot,
        endpoints: &base::Endpoints,
    ) -> Option<(usize, Option<Permit>)> {
        let len = snapshot.len();
        if len == 0 {
            return None;
        }
        let first = self.inner.next.fetch_add(1, Ordering::Relaxed) % len;
        for skipped in 0..len {
            let index = (first + skipped) % len;
            let Some(Ok(permit)) = endpoints.tracker(index).map(|t| t.admit()) else {
                continue;
            };
            if skipped > 0 {
                // The turns skipped are used up: the endpoint after a dead
                // one does not get two turns in a row.
                self.inner.next.fetch_add(skipped, Ordering::Relaxed);
            }
            return Some((index, Some(permit)));
        }
        Some((first, None))
    }

    /// A retry's endpoint: the next in rotation that is admitted and not
    /// one of `tried`; `None` if there is no such endpoint. The turn is
    /// only taken once the retry is sent ([`Self::take_turn`]).
    fn pick_other(
        &self,
        snapshot: &Snapshot,
        endpoints: &base::Endpoints,
        tried: &[Arc<Entry>],
    ) -> Option<(usize, Permit)> {
        let len = snapshot.len();
        if len == 0 {
            return None;
        }
        let first = self.inner.next.load(Ordering::Relaxed) % len;
        (0..len).find_map(|skipped| {
            let index = (first + skipped) % len;
            let entry = snapshot.entries().get(index)?;
            if tried.iter().any(|t| t.endpoint == entry.endpoint) {
                return None;
            }
            let permit = endpoints.tracker(index)?.admit().ok()?;
            Some((index, permit))
        })
    }

    /// Takes a turn in the rotation (for a retry).
    fn take_turn(&self) {
        self.inner.next.fetch_add(1, Ordering::Relaxed);
    }

    /// The attempt timeout's deadline for `request`, unless it has its own
    /// timeout (which reqwest keeps). Outside a tokio runtime, reqwest
    /// keeps the attempt timeout too.
    fn deadline(&self, request: &mut reqwest::Request) -> Option<deadline::Deadline> {
        if request.timeout().is_some() {
            return None;
        }
        let timeout = self.inner.attempt_timeout;
        let deadline = deadline::Deadline::after(timeout);
        if deadline.is_none() {
            *request.timeout_mut() = Some(timeout);
        }
        deadline
    }
}
