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
/// use poolset::Connector;
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
