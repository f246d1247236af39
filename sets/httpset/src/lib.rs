//! # httpset
//!
//! An HTTP client that follows a serverset: point it at a service and
//! forget about it. Each request goes to the next endpoint in round-robin
//! order of the set as it is at that moment; endpoints that join are used
//! on their next turn, endpoints that leave get no more requests. A request
//! that cannot connect is retried on the next endpoint, a bounded number of
//! times; any other failure is returned as it is.
//!
//! It wraps `reqwest::Client`: requests are built with a path and sent with
//! reqwest's headers, bodies, timeouts and connection pooling.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use httpset::HttpSet;
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

mod base;
mod error;
mod request;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use reqwest::Method;
use serversets::{Entry, Snapshot, Source};

pub use error::Error;
pub use request::RequestBuilder;
pub use reqwest;

/// The default number of endpoints one request may try.
pub const DEFAULT_MAX_ATTEMPTS: usize = 3;

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
    next: AtomicUsize,
    /// The endpoints' base URLs, parsed once per snapshot.
    bases: base::BaseCache,
}

impl std::fmt::Debug for HttpSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSet")
            .field("scheme", &self.inner.scheme)
            .field("endpoints", &self.inner.source.current().len())
            .field("max_attempts", &self.inner.max_attempts)
            .finish()
    }
}

/// Configures an [`HttpSet`].
pub struct HttpSetBuilder {
    source: Box<dyn Source>,
    client: Option<reqwest::Client>,
    scheme: Scheme,
    max_attempts: usize,
}

impl HttpSetBuilder {
    /// The reqwest client to send with (default: `reqwest::Client::new()`).
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
    /// (default 3, at least 1; never more than the set has).
    pub fn max_attempts(mut self, attempts: usize) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// Builds the client.
    pub fn build(self) -> HttpSet {
        HttpSet {
            inner: Arc::new(Inner {
                source: self.source,
                client: self.client.unwrap_or_default(),
                scheme: self.scheme,
                max_attempts: self.max_attempts,
                next: AtomicUsize::new(0),
                bases: base::BaseCache::default(),
            }),
        }
    }
}

impl HttpSet {
    /// An `http` client with default settings over `source` (a
    /// [`Watch`](serversets::Watch), a `fixedset::FixedSet`, ...).
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

    /// The endpoints requests go to now.
    pub fn endpoints(&self) -> Arc<Snapshot> {
        self.inner.source.current()
    }

    /// The position in `snapshot` of its next entry in rotation, and the
    /// entry.
    fn next_turn<'s>(&self, snapshot: &'s Snapshot) -> Option<(usize, &'s Arc<Entry>)> {
        let len = snapshot.len();
        if len == 0 {
            return None;
        }
        let index = self.inner.next.fetch_add(1, Ordering::Relaxed) % len;
        Some((index, snapshot.entries().get(index)?))
    }

    /// The next entry of `snapshot` in rotation.
    fn next_entry(&self, snapshot: &Snapshot) -> Option<Arc<Entry>> {
        self.next_turn(snapshot).map(|(_, entry)| Arc::clone(entry))
    }
}
