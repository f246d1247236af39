//! Building and sending one request.

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Body, Method, Response};
use tracing::debug;

use crate::{Error, HttpSet};

/// The host in URLs before an endpoint is chosen; replaced on every send.
const PLACEHOLDER: &str = "http://serverset.invalid";

/// A request under construction: reqwest's builder, plus the set that
/// chooses where it goes.
#[must_use = "a request does nothing until it is sent"]
pub struct RequestBuilder {
    set: HttpSet,
    method: Method,
    path: String,
    inner: reqwest::RequestBuilder,
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
        let inner = set
            .inner
            .client
            .request(method.clone(), format!("{PLACEHOLDER}{path}"));
        RequestBuilder {
            set,
            method,
            path: path.to_owned(),
            inner,
        }
    }

    /// Adds a header.
    pub fn header<K, V>(self, key: K, value: V) -> Self
    where
        HeaderName: TryFrom<K>,
        <HeaderName as TryFrom<K>>::Error: Into<http::Error>,
        HeaderValue: TryFrom<V>,
        <HeaderValue as TryFrom<V>>::Error: Into<http::Error>,
    {
        self.map(|r| r.header(key, value))
    }

    /// Adds headers.
    pub fn headers(self, headers: HeaderMap) -> Self {
        self.map(|r| r.headers(headers))
    }

    /// Sets the body.
    pub fn body<T: Into<Body>>(self, body: T) -> Self {
        self.map(|r| r.body(body))
    }

    /// Sets a JSON body (and the content type).
    pub fn json<T: serde::Serialize + ?Sized>(self, json: &T) -> Self {
        self.map(|r| r.json(json))
    }

    /// Appends query parameters.
    pub fn query<T: serde::Serialize + ?Sized>(self, query: &T) -> Self {
        self.map(|r| r.query(query))
    }

    /// A timeout for the whole request, per attempt.
    pub fn timeout(self, timeout: Duration) -> Self {
        self.map(|r| r.timeout(timeout))
    }

    /// HTTP basic authentication.
    pub fn basic_auth<U: std::fmt::Display, P: std::fmt::Display>(
        self,
        username: U,
        password: Option<P>,
    ) -> Self {
        self.map(|r| r.basic_auth(username, password))
    }

    /// A bearer token.
    pub fn bearer_auth<T: std::fmt::Display>(self, token: T) -> Self {
        self.map(|r| r.bearer_auth(token))
    }

    /// Anything else reqwest's builder offers.
    pub fn map(
        mut self,
        f: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> Self {
        self.inner = f(self.inner);
        self
    }

    /// Sends the request to the next endpoint; if it cannot connect, to
    /// the one after, up to the set's attempt limit. Only connection
    /// failures are retried (and only when the body can be replayed).
    pub async fn send(self) -> Result<Response, Error> {
        let RequestBuilder {
            set,
            method,
            path,
            inner,
        } = self;
        let invalid = |reason: String| Error::InvalidRequest {
            path: path.clone(),
            reason,
        };
        let mut request = inner.build().map_err(|e| invalid(e.to_string()))?;
        let scheme = set.inner.scheme.as_str();
        if request.url_mut().set_scheme(scheme).is_err() {
            return Err(invalid(format!("cannot use scheme {scheme}")));
        }
        let attempts = set.inner.max_attempts.min(set.endpoints().len()).max(1);
        for attempt in 1..=attempts {
            let Some(endpoint) = set.next_endpoint() else {
                return Err(Error::NoEndpoints { method, path });
            };
            let last = attempt == attempts;
            let spare = if last { None } else { request.try_clone() };
            let url = request.url_mut();
            let host = if endpoint.host.contains(':') {
                format!("[{}]", endpoint.host)
            } else {
                endpoint.host.clone()
            };
            if url.set_host(Some(&host)).is_err() || url.set_port(Some(endpoint.port)).is_err() {
                return Err(invalid(format!(
                    "endpoint {endpoint} is not a valid URL host"
                )));
            }
            match set.inner.client.execute(request).await {
                Ok(response) => return Ok(response),
                Err(e) if e.is_connect() && !last => {
                    let Some(next) = spare else {
                        return Err(Error::Http {
                            endpoint: endpoint.to_string(),
                            source: e,
                        });
                    };
                    debug!(%endpoint, error = %e, "connect failed; trying the next endpoint");
                    request = next;
                }
                Err(e) => {
                    return Err(Error::Http {
                        endpoint: endpoint.to_string(),
                        source: e,
                    })
                }
            }
        }
        Err(Error::NoEndpoints { method, path })
    }
}
