//! Building and sending one request.

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use reqwest::{Body, Method, Response};
use serversets::{Endpoint, Entry, Snapshot};
use tower::retry::budget::Budget;
use tracing::debug;

use crate::base::Endpoints;
use crate::{deadline, outcome, Error, HttpSet};

/// One step of building the request, applied once the URL is known.
type Step = Box<dyn FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder + Send>;

/// A request under construction. The URL is made once, at send time, from
/// the chosen endpoint, the path and any query; the other parts are
/// reqwest's builder steps, applied then.
#[must_use = "a request does nothing until it is sent"]
pub struct RequestBuilder {
    set: HttpSet,
    method: Method,
    path: String,
    steps: Vec<Step>,
    /// Whether a step came from [`map`](Self::map) and may have set
    /// anything on the request (else only headers, body and timeout).
    opaque: bool,
    error: Option<String>,
}

impl std::fmt::Debug for RequestBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestBuilder")
            .field("method", &self.method)
            .field("path", &self.path)
            .finish()
    }
}

impl RequestBuilder {
    pub(crate) fn new(set: HttpSet, method: Method, path: &str) -> Self {
        let error = (!path.starts_with('/')).then(|| "the path must start with '/'".to_owned());
        RequestBuilder {
            set,
            method,
            path: path.to_owned(),
            steps: Vec::new(),
            opaque: false,
            error,
        }
    }

    /// Adds a header.
    pub fn header<K, V>(self, key: K, value: V) -> Self
    where
        K: Send + 'static,
        V: Send + 'static,
        HeaderName: TryFrom<K>,
        <HeaderName as TryFrom<K>>::Error: Into<http::Error>,
        HeaderValue: TryFrom<V>,
        <HeaderValue as TryFrom<V>>::Error: Into<http::Error>,
    {
        self.step(|r| r.header(key, value))
    }

    /// Adds headers.
    pub fn headers(self, headers: reqwest::header::HeaderMap) -> Self {
        self.step(|r| r.headers(headers))
    }

    /// Sets the body.
    pub fn body<T: Into<Body>>(self, body: T) -> Self {
        let body: Body = body.into();
        self.step(|r| r.body(body))
    }

    /// Sets a JSON body and the `content-type: application/json` header.
    pub fn json<T: serde::Serialize + ?Sized>(mut self, json: &T) -> Self {
        match serde_json::to_vec(json) {
            Ok(bytes) => self.header(CONTENT_TYPE, "application/json").body(bytes),
            Err(e) => {
                self.error.get_or_insert(format!("JSON body: {e}"));
                self
            }
        }
    }

    /// Appends query parameters (`serde_urlencoded`, as reqwest does).
    pub fn query<T: serde::Serialize + ?Sized>(mut self, query: &T) -> Self {
        match serde_urlencoded::to_string(query) {
            Ok(encoded) if encoded.is_empty() => {}
            Ok(encoded) => {
                let separator = if self.path.contains('?') { '&' } else { '?' };
                self.path.push(separator);
                self.path.push_str(&encoded);
            }
            Err(e) => {
                self.error.get_or_insert(format!("query: {e}"));
            }
        }
        self
    }

    /// A timeout for the whole request, per attempt.
    pub fn timeout(self, timeout: Duration) -> Self {
        self.step(move |r| r.timeout(timeout))
    }

    /// HTTP basic authentication.
    pub fn basic_auth(self, username: impl Into<String>, password: Option<String>) -> Self {
        let username = username.into();
        self.step(move |r| r.basic_auth(username, password))
    }

    /// A bearer token.
    pub fn bearer_auth(self, token: impl Into<String>) -> Self {
        let token = token.into();
        self.step(move |r| r.bearer_auth(token))
    }

    /// Anything else reqwest's builder offers.
    pub fn map(
        mut self,
        step: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder + Send + 'static,
    ) -> Self {
        self.opaque = true;
        self.step(step)
    }

    /// Adds a step that sets only headers, the body or the timeout.
    fn step(
        mut self,
        step: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder + Send + 'static,
    ) -> Self {
        self.steps.push(Box::new(step));
        self
    }

    /// Sends the request to the next endpoint in rotation, skipping
    /// endpoints that failure accrual marked dead (if all are, to the next
    /// one anyway); if it cannot connect, to another endpoint, up to the
    /// set's attempt limit and as its retry budget allows.
    ///
    /// Retried, on an endpoint neither dead nor tried yet: failures to
    /// connect, and for idempotent methods (GET, HEAD, PUT, DELETE,
    /// OPTIONS, TRACE) a connection that broke before any response (an
    /// endpoint that went away with a pooled connection open). Never
    /// retried: timeouts, responses of any status, and bodies that cannot
    /// be replayed.
    ///
    /// Each attempt has the set's attempt timeout unless the request sets
    /// its own [`timeout`](Self::timeout) (an attempt timeout is
    /// [`Error::Timeout`], the request's own is reqwest's). Failures to
    /// connect, timeouts and broken connections, before the response or
    /// while reading its body, count against the endpoint; a response that
    /// is read to its end or dropped counts for it. Dropping this future
    /// reports nothing.
    ///
    /// Counted as the metrics [`REQUESTS`](serversets::metrics::REQUESTS)
    /// and, when it returns an error,
    /// [`REQUEST_ERRORS`](serversets::metrics::REQUEST_ERRORS) (each
    /// retry as [`RETRIES`](serversets::metrics::RETRIES)), with
    /// `set="http"`.
    pub async fn send(self) -> Result<Response, Error> {
        let inner = Arc::clone(&self.set.inner);
        inner.requests.increment(1);
        let result = self.send_once().await;
        if result.is_err() {
            inner.errors.increment(1);
        }
        result
    }

    /// [`RequestBuilder::send`], uncounted.
    async fn send_once(self) -> Result<Response, Error> {
        let RequestBuilder {
            set,
            method,
            path,
            steps,
            opaque,
            error,
        } = self;
        if let Some(reason) = error {
            return Err(invalid(path, reason));
        }
        let (snapshot, endpoints) = set.view();
        let Some((index, permit)) = set.pick(&snapshot, &endpoints) else {
            return Err(Error::NoEndpoints { method, path });
        };
        let Some(first) = snapshot.entries().get(index) else {
            // Not reached: `index` is a position in `snapshot`.
            return Err(Error::NoEndpoints { method, path });
        };
        set.inner.budget.deposit();
        let attempts = set.inner.max_attempts.min(snapshot.len()).max(1);
        // The request is built and handed to reqwest in a block, so that
        // the future does not keep room for it while waiting.
        let (pending, spare, mut deadline) = {
            let builder = steps.into_iter().fold(
                start(&set, &snapshot, &endpoints, index, &method, &path),
                |r, step| step(r),
            );
            let mut request = match builder.build() {
                Ok(request) => request,
                Err(e) => return Err(unbuildable(path, e)),
            };
            // What a second attempt needs, taken before the first consumes
            // the request; small, so that the future stays small too.
            let spare = if attempts > 1 {
                Spare::of(&request, opaque)
            } else {
                None
            };
            let deadline = set.deadline(&mut request);
            (set.inner.client.execute(request), spare, deadline)
        };
        let failed = match deadline::within(pending, deadline.as_mut()).await {
            Ok(Ok(response)) => return Ok(outcome::answered(response, permit, deadline)),
            Ok(Err(e)) => e,
            Err(()) => {
                outcome::timed_out(permit);
                return Err(Error::Timeout {
                    endpoint: first.endpoint.clone(),
                    timeout: set.inner.attempt_timeout,
                });
            }
        };
        outcome::failed(permit, &failed);
        match spare {
            Some(spare) if retryable(&method, &failed) => {
                // Boxed: its state is only allocated when retrying.
                let first = Arc::clone(first);
                let retry = Retry {
                    set: &set,
                    snapshot: &snapshot,
                    endpoints: &endpoints,
                    index,
                    method,
                    path,
                    opaque,
                    attempts,
                };
                Box::pin(retry.run(first, failed, spare)).await
            }
            _ => Err(Error::Http {
                endpoint: first.endpoint.clone(),
                source: failed,
            }),
        }
    }
}

/// The invalid-request error for `path` that reqwest would not build.
fn unbuildable(path: String, source: reqwest::Error) -> Error {
    Error::InvalidRequest {
        path,
        reason: "reqwest cannot build it".to_owned(),
        source: Some(source),
    }
}

/// The invalid-request error for `path`, with no error behind it.
fn invalid(path: String, reason: String) -> Error {
    Error::InvalidRequest {
        path,
        reason,
        source: None,
    }
}

/// The attempts after a first one failed in a way that may be retried.
struct Retry<'a> {
    set: &'a HttpSet,
    /// The snapshot of the first attempt, with the first endpoint at `index`.
    snapshot: &'a Arc<Snapshot>,
    /// What requests need of that snapshot.
    endpoints: &'a Endpoints,
    index: usize,
    method: Method,
    path: String,
    opaque: bool,
    /// All attempts, the first included.
    attempts: usize,
}

impl Retry<'_> {
    /// Attempts 2 to `attempts`, each on the next endpoint of the set as it
    /// is then that is neither dead nor tried yet, after `failed` on
    /// `endpoint`, each withdrawn from the retry budget; `spare` rebuilds
    /// the request.
    async fn run(
        self,
        mut endpoint: Arc<Entry>,
        mut failed: reqwest::Error,
        mut spare: Spare,
    ) -> Result<Response, Error> {
        let Retry {
            set,
            snapshot,
            endpoints,
            index,
            method,
            path,
            opaque,
            attempts,
        } = self;
        let mut tried = Vec::with_capacity(attempts);
        tried.push(Arc::clone(&endpoint));
        for attempt in 2..=attempts {
            let (now, now_endpoints) = set.view();
            let Some((other, permit)) = set.pick_other(&now, &now_endpoints, &tried) else {
                debug!(endpoint = %endpoint.endpoint, error = %failed, "no other live endpoint to retry on");
                break;
            };
            let Some(other) = now.entries().get(other).map(Arc::clone) else {
                break;
            };
            if !set.inner.budget.withdraw() {
                debug!(endpoint = %endpoint.endpoint, error = %failed, "retry budget exhausted: not retrying");
                break;
            }
            set.take_turn();
            set.inner.retries.increment(1);
            debug!(endpoint = %endpoint.endpoint, error = %failed, next = %other.endpoint, "connect failed; trying the next endpoint");
            let mut request =
                match spare.into_request(set, snapshot, endpoints, index, &method, &path) {
                    Ok(request) => request,
                    Err(e) => return Err(unbuildable(path, e)),
                };
            if let Err(reason) = point_at(request.url_mut(), &other.endpoint) {
                return Err(invalid(path, reason));
            }
            tried.push(Arc::clone(&other));
            endpoint = other;
            let next = if attempt == attempts {
                None
            } else {
                Spare::of(&request, opaque)
            };
            let mut deadline = set.deadline(&mut request);
            let pending = set.inner.client.execute(request);
            match (deadline::within(pending, deadline.as_mut()).await, next) {
                (Ok(Ok(response)), _) => {
                    return Ok(outcome::answered(response, Some(permit), deadline))
                }
                (Err(()), _) => {
                    outcome::timed_out(Some(permit));
                    return Err(Error::Timeout {
                        endpoint: endpoint.endpoint.clone(),
                        timeout: set.inner.attempt_timeout,
                    });
                }
                (Ok(Err(e)), next) => {
                    outcome::failed(Some(permit), &e);
                    match next {
                        Some(next) if retryable(&method, &e) => {
                            failed = e;
                            spare = next;
                        }
                        _ => {
                            return Err(Error::Http {
                                endpoint: endpoint.endpoint.clone(),
                                source: e,
                            })
                        }
                    }
                }
            }
        }
        Err(Error::Http {
            endpoint: endpoint.endpoint.clone(),
            source: failed,
        })
    }
}

/// reqwest's builder for `path` at the entry at `index` of `snapshot`:
/// the URL joined onto the endpoint's base URL in `endpoints`, or else
/// parsed from `scheme://endpoint/path` (see `base.rs`).
fn start(
    set: &HttpSet,
    snapshot: &Snapshot,
    endpoints: &Endpoints,
    index: usize,
    method: &Method,
    path: &str,
) -> reqwest::RequestBuilder {
    let inner = &set.inner;
    let joined = endpoints.url(index, path);
    match (joined, snapshot.entries().get(index)) {
        (Some(url), _) => inner.client.request(method.clone(), url),
        (None, Some(entry)) => inner.client.request(
            method.clone(),
            format!("{}://{}{path}", inner.scheme.as_str(), entry.endpoint),
        ),
        // Not reached: `index` is a position in `snapshot`.
        (None, None) => inner.client.request(method.clone(), path),
    }
}

/// What another attempt is made from, taken before an attempt consumes
/// the request. Without a body or a [`RequestBuilder::map`] step, the
/// request is what `start` gives plus headers and a timeout: those are
/// kept and the request is rebuilt, without copying the URL.
enum Spare {
    /// Nothing besides the URL: no headers, no timeout.
    Rebuild,
    /// The headers and the timeout.
    Parts(Box<(HeaderMap, Option<Duration>)>),
    /// A copy of the whole request: for requests that went through
    /// `map`, which may have set anything, and for requests with a body
    /// (the copy shares its bytes).
    Request(Box<reqwest::Request>),
}

impl Spare {
    /// `None` if the body cannot be replayed.
    fn of(request: &reqwest::Request, opaque: bool) -> Option<Spare> {
        if opaque || request.body().is_some() {
            return request.try_clone().map(|r| Spare::Request(Box::new(r)));
        }
        let timeout = request.timeout().copied();
        Some(if request.headers().is_empty() && timeout.is_none() {
            Spare::Rebuild
        } else {
            Spare::Parts(Box::new((request.headers().clone(), timeout)))
        })
    }

    /// The request again, still pointed at the first attempt's endpoint.
    fn into_request(
        self,
        set: &HttpSet,
        snapshot: &Snapshot,
        endpoints: &Endpoints,
        index: usize,
        method: &Method,
        path: &str,
    ) -> Result<reqwest::Request, reqwest::Error> {
        let (headers, timeout) = match self {
            Spare::Request(request) => return Ok(*request),
            Spare::Rebuild => return start(set, snapshot, endpoints, index, method, path).build(),
            Spare::Parts(parts) => *parts,
        };
        let mut request = start(set, snapshot, endpoints, index, method, path).build()?;
        *request.headers_mut() = headers;
        *request.timeout_mut() = timeout;
        Ok(request)
    }
}

/// Whether a failed attempt may be sent to the next endpoint.
fn retryable(method: &Method, error: &reqwest::Error) -> bool {
    if error.is_connect() {
        return true;
    }
    method.is_idempotent() && error.is_request() && !error.is_timeout()
}

/// Points a URL at another endpoint.
fn point_at(url: &mut reqwest::Url, endpoint: &Endpoint) -> Result<(), String> {
    let host = if endpoint.host.contains(':') {
        format!("[{}]", endpoint.host)
    } else {
        endpoint.host.clone()
    };
    url.set_host(Some(&host))
        .map_err(|e| format!("endpoint {endpoint}: {e}"))?;
    url.set_port(Some(endpoint.port))
        .map_err(|()| format!("endpoint {endpoint}: cannot carry a port"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serversets::FixedSet;

    /// The requests of the test below, and the spare each keeps.
    fn case(set: &HttpSet, case: usize) -> Option<(RequestBuilder, &'static str)> {
        Some(match case {
            0 => (set.get("/plain"), "rebuild"),
            1 => (set.head("/a/../b?x=1#f"), "rebuild"),
            2 => (set.get("/q").query(&[("k", "v w")]), "rebuild"),
            3 => (set.get("/h").header("x-a", "1").header("x-a", "2"), "parts"),
            4 => (set.get("/t").timeout(Duration::from_millis(1500)), "parts"),
            5 => (
                set.delete("/u").basic_auth("user", Some("pw".into())),
                "parts",
            ),
            6 => (set.put("/v").bearer_auth("token"), "parts"),
            7 => (set.post("/b").body("bytes"), "request"),
            8 => (
                set.get("/m").map(|r| r.version(http::Version::HTTP_10)),
                "request",
            ),
            _ => return None,
        })
    }

    /// A retry's request, rebuilt from its spare, equals a copy of the
    /// first one pointed at the other endpoint (what retries sent before:
    /// `try_clone` and `point_at`).
    #[test]
    fn rebuilt_requests_equal_copies() {
        let set = HttpSet::new(FixedSet::from_endpoints([
            Endpoint::new("127.0.0.1", 8080),
            Endpoint::new("example.com", 80),
        ]));
        let (snapshot, endpoints) = set.view();
        let other = Endpoint::new("::1", 9000);
        for n in 0.. {
            for index in 0..snapshot.len() {
                // Steps run once: a new builder for each index.
                let Some((builder, kind)) = case(&set, n) else {
                    return;
                };
                let (method, path, opaque) = (builder.method, builder.path, builder.opaque);
                let first = builder
                    .steps
                    .into_iter()
                    .fold(
                        start(&set, &snapshot, &endpoints, index, &method, &path),
                        |r, step| step(r),
                    )
                    .build()
                    .expect("build");
                let spare = Spare::of(&first, opaque).expect("spare");
                let got = match &spare {
                    Spare::Rebuild => "rebuild",
                    Spare::Parts(_) => "parts",
                    Spare::Request(_) => "request",
                };
                assert_eq!(got, kind, "{path}");
                let mut want = first.try_clone().expect("copy");
                point_at(want.url_mut(), &other).expect("point");
                let mut rebuilt = spare
                    .into_request(&set, &snapshot, &endpoints, index, &method, &path)
                    .expect("rebuild");
                point_at(rebuilt.url_mut(), &other).expect("point");
                assert_eq!(rebuilt.method(), want.method(), "{path}");
                assert_eq!(rebuilt.url(), want.url(), "{path}");
                assert_eq!(rebuilt.headers(), want.headers(), "{path}");
                assert_eq!(rebuilt.timeout(), want.timeout(), "{path}");
                assert_eq!(rebuilt.version(), want.version(), "{path}");
                assert_eq!(
                    rebuilt.body().and_then(Body::as_bytes),
                    want.body().and_then(Body::as_bytes),
                    "{path}"
                );
            }
        }
    }
}
