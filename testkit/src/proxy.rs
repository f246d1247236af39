//! A TCP proxy that can black-hole traffic: a network partition between a
//! client and a server, on loopback. It also counts the bytes it forwards.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// Forwards connections from a free loopback port to `target`. While
/// [`Proxy::partition`] is on, nothing passes in either direction: bytes
/// are dropped (connections stay open, nothing is refused), as when a
/// network loses packets; [`Proxy::heal`] lets new bytes flow again. [`Proxy::cut`] closes every open
/// connection at once. [`Proxy::bytes_to_clients`] and
/// [`Proxy::bytes_from_clients`] count what it has forwarded each way
/// (over all connections, dropped bytes not included).
///
/// ```no_run
/// let mut proxy = testkit::Proxy::start("127.0.0.1:2181".parse().unwrap())?;
/// let through = proxy.endpoint(); // give this to the client
/// proxy.partition();
/// proxy.heal();
/// let sent = proxy.bytes_to_clients(); // what the server sent through it
/// # let _ = (through, sent);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

#[derive(Debug, Default)]
struct Shared {
    partitioned: AtomicBool,
    stopping: AtomicBool,
    connections: Mutex<Vec<TcpStream>>,
    /// Bytes forwarded from the target to the clients.
    to_clients: AtomicU64,
    /// Bytes forwarded from the clients to the target.
    from_clients: AtomicU64,
}

/// Which way a pipe copies.
#[derive(Debug, Clone, Copy)]
enum Direction {
    /// From a client to the target.
    FromClient,
    /// From the target to a client.
    ToClient,
}

impl Proxy {
    /// Starts forwarding to `target`.
    pub fn start(target: SocketAddr) -> io::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let accepting = Arc::clone(&shared);
        let acceptor = thread::Builder::new()
            .name(format!("proxy-{}", addr.port()))
            .spawn(move || accept(listener, target, accepting))?;
        Ok(Proxy {
            addr,
            shared,
            acceptor: Some(acceptor),
        })
    }

    /// `127.0.0.1:PORT` to connect to.
    pub fn endpoint(&self) -> String {
        self.addr.to_string()
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops all traffic (both directions, open and new connections).
    pub fn partition(&self) {
        self.shared.partitioned.store(true, Ordering::SeqCst);
    }

    /// Lets traffic flow again.
    pub fn heal(&self) {
        self.shared.partitioned.store(false, Ordering::SeqCst);
    }

    /// Whether traffic is stopped.
    pub fn is_partitioned(&self) -> bool {
        self.shared.partitioned.load(Ordering::SeqCst)
    }

    /// Bytes forwarded from the target to the clients so far (all
    /// connections, closed ones included; bytes a partition dropped are not
    /// counted).
    pub fn bytes_to_clients(&self) -> u64 {
        self.shared.to_clients.load(Ordering::SeqCst)
    }

    /// Bytes forwarded from the clients to the target so far (as
    /// [`Proxy::bytes_to_clients`], the other way).
    pub fn bytes_from_clients(&self) -> u64 {
        self.shared.from_clients.load(Ordering::SeqCst)
    }

    /// Closes every open connection (both sides see a reset or EOF).
    pub fn cut(&self) {
        if let Ok(mut connections) = self.shared.connections.lock() {
            for stream in connections.drain(..) {
                let _ = stream.shutdown(Shutdown::Both);
            }
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        self.heal();
        self.cut();
        // Wake the acceptor.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

fn accept(listener: TcpListener, target: SocketAddr, shared: Arc<Shared>) {
    for client in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = client else { continue };
        let Ok(server) = TcpStream::connect_timeout(&target, Duration::from_secs(5)) else {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        };
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        if let Ok(mut connections) = shared.connections.lock() {
            for stream in [&client, &server] {
                if let Ok(clone) = stream.try_clone() {
                    connections.push(clone);
                }
            }
        }
        for (from, to, direction) in [
            (&client, &server, Direction::FromClient),
            (&server, &client, Direction::ToClient),
        ] {
            let (Ok(from), Ok(to)) = (from.try_clone(), to.try_clone()) else {
                continue;
            };
            let shared = Arc::clone(&shared);
            let _ = thread::Builder::new()
                .name("proxy-pipe".into())
                .spawn(move || pipe(from, to, direction, shared));
        }
    }
}

/// Copies bytes one way, counting them; while partitioned, holds them
/// back.
fn pipe(mut from: TcpStream, mut to: TcpStream, direction: Direction, shared: Arc<Shared>) {
    let counter = match direction {
        Direction::FromClient => &shared.from_clients,
        Direction::ToClient => &shared.to_clients,
    };
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        // A partition drops what crosses it.
        if shared.partitioned.load(Ordering::SeqCst) {
            continue;
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        counter.fetch_add(n as u64, Ordering::SeqCst);
    }
    let _ = to.shutdown(Shutdown::Write);
}
