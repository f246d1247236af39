//! Loopback echo servers that count the connections they accept and the
//! ones they see closed, and helpers to wait for events.

#![allow(dead_code)]

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serversets::Endpoint;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// How long any awaited event may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(10);

#[derive(Default)]
struct Counts {
    accepted: AtomicUsize,
    closed: AtomicUsize,
}

/// An echo server on 127.0.0.1.
pub struct EchoServer {
    addr: SocketAddr,
    counts: Arc<Counts>,
    task: Option<JoinHandle<()>>,
    /// While stopped: the port, bound but not listening (connects are
    /// refused, and no other server can take it).
    reserved: Option<TcpSocket>,
}

impl EchoServer {
    /// Starts a server on a free port.
    pub async fn start() -> EchoServer {
        Self::start_on(0).await
    }

    /// Starts a server on `port` (0: any free port).
    pub async fn start_on(port: u16) -> EchoServer {
        let mut server = EchoServer {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            counts: Arc::new(Counts::default()),
            task: None,
            reserved: None,
        };
        server.listen().await;
        server
    }

    async fn listen(&mut self) {
        let socket = match self.reserved.take() {
            Some(socket) => socket,
            None => bound(self.addr),
        };
        let listener = socket.listen(1024).expect("listen");
        self.addr = listener.local_addr().expect("local addr");
        self.task = Some(tokio::spawn(serve(listener, Arc::clone(&self.counts))));
    }

    pub fn endpoint(&self) -> Endpoint {
        Endpoint::from(self.addr)
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.counts.accepted.load(Ordering::SeqCst)
    }

    /// Connections the client closed (the server read EOF).
    pub fn closed(&self) -> usize {
        self.counts.closed.load(Ordering::SeqCst)
    }

    /// Stops listening and drops every connection; the port stays
    /// reserved (connects are refused).
    pub async fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
        if self.reserved.is_none() {
            self.reserved = Some(bound(self.addr));
        }
    }

    /// Listens again on the same port.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.listen().await;
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// A socket bound to `addr` with SO_REUSEADDR, not listening.
fn bound(addr: SocketAddr) -> TcpSocket {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.set_reuseaddr(true).expect("SO_REUSEADDR");
    socket.bind(addr).expect("bind");
    socket
}

/// An endpoint nothing listens on, refusing connects for as long as the
/// returned socket lives (it holds the port, so no other test's server can
/// take it).
pub fn dead_endpoint() -> (Endpoint, TcpSocket) {
    let socket = bound(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)));
    let addr = socket.local_addr().expect("local addr");
    (Endpoint::from(addr), socket)
}

async fn serve(listener: TcpListener, counts: Arc<Counts>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                counts.accepted.fetch_add(1, Ordering::SeqCst);
                connections.spawn(echo(stream, Arc::clone(&counts)));
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn echo(mut stream: TcpStream, counts: Arc<Counts>) {
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => {
                counts.closed.fetch_add(1, Ordering::SeqCst);
                return;
            }
            Ok(n) => {
                if stream.write_all(&buf[..n]).await.is_err() {
                    counts.closed.fetch_add(1, Ordering::SeqCst);
                    return;
                }
            }
        }
    }
}

/// Sends `message` and reads it back.
pub async fn round_trip(stream: &mut TcpStream, message: &[u8]) {
    stream.write_all(message).await.expect("write");
    let mut reply = vec![0u8; message.len()];
    stream.read_exact(&mut reply).await.expect("read");
    assert_eq!(reply, message);
}

/// Waits until `condition` holds, failing the test after [`DEADLINE`].
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Awaits `future`, failing the test after [`DEADLINE`].
pub async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(DEADLINE, future).await {
        Ok(value) => value,
        Err(_) => panic!("timed out: {what}"),
    }
}

/// Starts `n` servers.
pub async fn servers(n: usize) -> Vec<EchoServer> {
    let mut all = Vec::new();
    for _ in 0..n {
        all.push(EchoServer::start().await);
    }
    all
}
