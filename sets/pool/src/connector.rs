//! Opening connections: any type, from an endpoint.

use std::future::Future;
use std::io;

use serversets::Endpoint;
use tokio::net::TcpStream;

use crate::error::BoxError;

/// Opens a connection to an endpoint. The pool calls it whenever an
/// endpoint has no idle connection to hand out, within the connect timeout.
///
/// Any `Fn(Endpoint) -> impl Future<Output = Result<C, E>>` is a connector,
/// so a TCP stream, a Thrift client or a database connection all fit:
///
/// ```
/// use serversets_pool::Connector;
/// use serversets::Endpoint;
///
/// /// A connection of some protocol: here, just the address.
/// struct Session { peer: String }
///
/// let connector = |endpoint: Endpoint| async move {
///     Ok::<_, std::io::Error>(Session { peer: endpoint.to_string() })
/// };
/// fn takes(_: impl Connector<Connection = Session>) {}
/// takes(connector);
/// ```
///
/// [`TcpConnector`] opens plain TCP streams.
pub trait Connector: Send + Sync + 'static {
    /// What a connect produces and the pool hands out.
    type Connection: Send + 'static;
    /// What a failed connect returns (boxed into
    /// [`Error::Connect`](crate::Error::Connect)).
    type Error: Into<BoxError>;

    /// Opens a connection to `endpoint`.
    fn connect(
        &self,
        endpoint: &Endpoint,
    ) -> impl Future<Output = Result<Self::Connection, Self::Error>> + Send;

    /// Whether `conn` can no longer be used (like r2d2's `has_broken`);
    /// `false` by default. The pool asks when a connection is returned (a
    /// broken one is closed instead of kept idle) and when it takes one
    /// from the idle list (a broken one is closed and skipped).
    ///
    /// This is how a client marks its own connection closed, for example
    /// when an operation on it was cancelled or timed out halfway and the
    /// stream is out of step. Unlike [`Pooled::mark_broken`], it does
    /// **not** count as a failure of the endpoint. It must be cheap and
    /// must not block: it runs on every return.
    ///
    /// ```
    /// use serversets_pool::Connector;
    /// use serversets::Endpoint;
    ///
    /// struct Client { closed: bool }
    /// struct Connect;
    ///
    /// impl Connector for Connect {
    ///     type Connection = Client;
    ///     type Error = std::io::Error;
    ///
    ///     async fn connect(&self, _: &Endpoint) -> std::io::Result<Client> {
    ///         Ok(Client { closed: false })
    ///     }
    ///
    ///     fn is_broken(&self, conn: &Client) -> bool {
    ///         conn.closed
    ///     }
    /// }
    /// ```
    ///
    /// [`Pooled::mark_broken`]: crate::Pooled::mark_broken
    fn is_broken(&self, conn: &Self::Connection) -> bool {
        let _ = conn;
        false
    }
}

/// [`Connector::is_broken`] without the connector's type, for the pool's
/// slots (which know only the connection type).
pub(crate) trait BrokenCheck<T>: Send + Sync {
    fn is_broken(&self, conn: &T) -> bool;
}

impl<C: Connector> BrokenCheck<C::Connection> for C {
    fn is_broken(&self, conn: &C::Connection) -> bool {
        Connector::is_broken(self, conn)
    }
}

impl<F, Fut, C, E> Connector for F
where
    F: Fn(Endpoint) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<C, E>> + Send,
    C: Send + 'static,
    E: Into<BoxError>,
{
    type Connection = C;
    type Error = E;

    fn connect(&self, endpoint: &Endpoint) -> impl Future<Output = Result<C, E>> + Send {
        self(endpoint.clone())
    }
}

/// Opens tokio TCP streams with `TCP_NODELAY` set. Host names are resolved
/// on each connect.
#[derive(Debug, Clone, Copy, Default)]
pub struct TcpConnector {
    _private: (),
}

impl TcpConnector {
    /// A TCP connector.
    pub fn new() -> Self {
        TcpConnector { _private: () }
    }
}

impl Connector for TcpConnector {
    type Connection = TcpStream;
    type Error = io::Error;

    async fn connect(&self, endpoint: &Endpoint) -> io::Result<TcpStream> {
        let stream = match endpoint.socket_addr() {
            Some(addr) => TcpStream::connect(addr).await?,
            None => TcpStream::connect((endpoint.host.as_str(), endpoint.port)).await?,
        };
        stream.set_nodelay(true)?;
        Ok(stream)
    }
}
