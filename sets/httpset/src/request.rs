//! Building and sending one request.

use std::time::Duration;

use reqwest::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use reqwest::{Body, Method, Response};
use serversets::Endpoint;
use tracing::debug;

use crate::{Error, HttpSet};

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
        self.map(|r| r.header(key, value))
    }

    /// Adds headers.
    pub fn headers(self, headers: reqwest::header::HeaderMap) -> Self {
        self.map(|r| r.headers(headers))
    }

    /// Sets the body.
    pub fn body<T: Into<Body>>(self, body: T) -> Self {
        let body: Body = body.into();
        self.map(|r| r.body(body))
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
        self.map(move |r| r.timeout(timeout))
    }

    /// HTTP basic authentication.
    pub fn basic_auth(self, username: impl Into<String>, password: Option<String>) -> Self {
        let username = username.into();
        self.map(move |r| r.basic_auth(username, password))
    }

    /// A bearer token.
    pub fn bearer_auth(self, token: impl Into<String>) -> Self {
        let token = token.into();
        self.map(move |r| r.bearer_auth(token))
    }

    /// Anything else reqwest's builder offers.
    pub fn map(
        mut self,
        step: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder + Send + 'static,
    ) -> Self {
        self.steps.push(Box::new(step));
        self
    }

    /// Sends the request to the next endpoint; if it cannot connect, to
    /// the one after, up to the set's attempt limit. Retried: failures to
    /// connect, and for idempotent methods (GET, HEAD, PUT, DELETE,
    /// OPTIONS, TRACE) a connection that broke before any response (an
    /// endpoint that went away with a pooled connection open). Never
    /// retried: timeouts, responses of any status, and bodies that cannot
    /// be replayed.
    pub async fn send(self) -> Result<Response, Error> {
        let RequestBuilder {
            set,
            method,
            path,
            steps,
            error,
        } = self;
        let invalid = |reason: String| Error::InvalidRequest {
            path: path.clone(),
            reason,
        };
        if let Some(reason) = error {
            return Err(invalid(reason));
        }
        let snapshot = set.endpoints();
        let Some(first) = set.next_entry(&snapshot) else {
            return Err(Error::NoEndpoints { method, path });
        };
        let scheme = set.inner.scheme.as_str();
        let url = format!("{scheme}://{}{path}", first.endpoint);
        let builder = steps
            .into_iter()
            .fold(set.inner.client.request(method.clone(), url), |r, step| {
                step(r)
            });
        let mut request = builder.build().map_err(|e| invalid(e.to_string()))?;
        let attempts = set.inner.max_attempts.min(snapshot.len()).max(1);
        let mut endpoint = first;
        for attempt in 1..=attempts {
            let last = attempt == attempts;
            let spare = if last { None } else { request.try_clone() };
            let result = set.inner.client.execute(request).await;
            match (result, spare) {
                (Ok(response), _) => return Ok(response),
                (Err(e), Some(next)) if retryable(&method, &e) => {
                    let Some(other) = set.next_entry(&set.endpoints()) else {
                        return Err(Error::NoEndpoints { method, path });
                    };
                    debug!(endpoint = %endpoint.endpoint, error = %e, next = %other.endpoint, "connect failed; trying the next endpoint");
                    request = next;
                    point_at(request.url_mut(), &other.endpoint).map_err(invalid)?;
                    endpoint = other;
                }
                (Err(e), _) => {
                    return Err(Error::Http {
                        endpoint: endpoint.endpoint.to_string(),
                        source: e,
                    })
                }
            }
        }
        Err(Error::NoEndpoints { method, path })
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
