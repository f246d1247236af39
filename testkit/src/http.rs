//! A tiny real HTTP/1.1 server on a free loopback port, served by plain
//! threads, for tests and benchmarks of HTTP clients.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crate::net::on_a_free_port;
use crate::zookeeper::annotate;

/// Longest accepted request line or header line.
const MAX_LINE: u64 = 16 * 1024;

/// Most header lines accepted in one request.
const MAX_HEADERS: usize = 100;

/// Largest accepted request body.
const MAX_BODY: u64 = 64 * 1024 * 1024;

/// Size of each connection's read buffer.
const READ_BUFFER: usize = 16 * 1024;

/// Timeout for the connection that wakes the accept loop on stop.
const WAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// A tiny HTTP/1.1 server on 127.0.0.1, one thread per connection.
///
/// Every request is answered `200 OK` with `Content-Type: text/plain`, a
/// `Content-Length`, an `X-Server: NAME` header and the body `NAME` (the
/// name given to [`HttpServer::start`]), except for the path `/echo` (with
/// or without a query string), which answers the request body back.
///
/// Connections are kept alive (the HTTP/1.1 default; HTTP/1.0 clients must
/// ask with `Connection: keep-alive`) until the client sends
/// `Connection: close` or closes the connection. Request bodies may be sent
/// with `Content-Length` or `Transfer-Encoding: chunked`;
/// `Expect: 100-continue` is honoured. Malformed requests get
/// `400 Bad Request` and the connection is closed.
///
/// The server counts requests and records their targets, for assertions
/// about which server a client talked to. [`stop`](Self::stop) closes the
/// listener and every open connection, so clients see refused or reset
/// connections, like a crashed server; [`start_again`](Self::start_again)
/// brings it back on the same port. Dropping it stops it.
///
/// [`set_hanging`](Self::set_hanging) makes it a server that accepts
/// connections and reads requests but never answers them (a wedged
/// process), to test timeouts and failure accrual.
///
/// ```
/// use std::io::{Read, Write};
///
/// let mut server = testkit::HttpServer::start("a")?;
/// let mut stream = std::net::TcpStream::connect(server.addr())?;
/// stream.write_all(b"GET /hello HTTP/1.1\r\nConnection: close\r\n\r\n")?;
/// let mut response = String::new();
/// stream.read_to_string(&mut response)?;
/// assert!(response.starts_with("HTTP/1.1 200 OK\r\n"));
/// assert!(response.contains("X-Server: a\r\n"));
/// assert!(response.ends_with("\r\n\r\na"));
/// assert_eq!(server.paths(), ["/hello"]);
/// server.stop(); // connections refused from now on
/// server.start_again()?; // same port
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct HttpServer {
    /// The server's name: response body and `X-Server` header.
    name: Arc<str>,
    /// Port on 127.0.0.1.
    port: u16,
    /// Counters shared with all server threads (across restarts).
    stats: Arc<Stats>,
    /// The accept loop and its connections while running.
    running: Option<Running>,
}

/// Request statistics shared by all threads of a server, and its mode.
#[derive(Debug, Default)]
struct Stats {
    /// Requests read from now on are never answered.
    hanging: AtomicBool,
    /// Requests answered (or being answered).
    requests: AtomicU64,
    /// Connections accepted.
    connections: AtomicU64,
    /// Request targets, in arrival order.
    paths: Mutex<Vec<String>>,
}

/// One running generation of the server (from start to stop).
#[derive(Debug)]
struct Running {
    /// Shared with the accept loop and the connection threads.
    shared: Arc<Generation>,
    /// The accept loop thread, which owns the listener.
    acceptor: JoinHandle<()>,
}

/// State shared by the accept loop and connection threads of one
/// generation.
#[derive(Debug, Default)]
struct Generation {
    /// Set by stop: the accept loop exits at its next wake-up.
    stopping: AtomicBool,
    /// Open connections.
    connections: Mutex<ConnectionTable>,
}

/// Open connections by number: a handle to shut the socket down, and the
/// thread serving it.
type ConnectionTable = HashMap<u64, (TcpStream, JoinHandle<()>)>;

impl Generation {
    /// Locks the connection table, ignoring poisoning.
    fn connections(&self) -> MutexGuard<'_, ConnectionTable> {
        self.connections
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl HttpServer {
    /// Starts a server named `name` on a free port of 127.0.0.1. It accepts
    /// connections as soon as this returns.
    ///
    /// # Errors
    ///
    /// Fails if `name` contains control characters (it is sent in a
    /// header; kind [`io::ErrorKind::InvalidInput`]), or if no port can be
    /// bound or no thread spawned.
    pub fn start(name: &str) -> io::Result<HttpServer> {
        if name.chars().any(char::is_control) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("HTTP server name {name:?} must not contain control characters"),
            ));
        }
        let name: Arc<str> = Arc::from(name);
        on_a_free_port("the HTTP server", |port| {
            let mut server = HttpServer {
                name: Arc::clone(&name),
                port,
                stats: Arc::default(),
                running: None,
            };
            server.listen()?;
            Ok(server)
        })
    }

    /// The server's name (its response body and `X-Server` header).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server address, `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// The endpoint as a string, `"127.0.0.1:PORT"`.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The base URL, `"http://127.0.0.1:PORT"` (no trailing slash).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Whether the server is accepting connections (started and not
    /// stopped).
    pub fn is_running(&self) -> bool {
        self.running.is_some()
    }

    /// The number of requests received since start (or the last
    /// [`reset_stats`](Self::reset_stats)), across restarts.
    pub fn requests(&self) -> u64 {
        self.stats.requests.load(Ordering::SeqCst)
    }

    /// The number of connections accepted since start (or the last
    /// [`reset_stats`](Self::reset_stats)), across restarts; with
    /// keep-alive, usually far fewer than [`requests`](Self::requests).
    pub fn connections(&self) -> u64 {
        self.stats.connections.load(Ordering::SeqCst)
    }

    /// The request targets received so far, in arrival order, exactly as
    /// sent in the request line (path plus any query string, e.g.
    /// `"/echo?x=1"`).
    ///
    /// Every request adds an entry; long benchmarks may call
    /// [`reset_stats`](Self::reset_stats) to bound memory.
    pub fn paths(&self) -> Vec<String> {
        self.stats
            .paths
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Makes the server hang (`true`) or answer again (`false`).
    ///
    /// While hanging, it still accepts connections and reads (and counts)
    /// requests, but answers none of them: each connection that receives
    /// a request while hanging stays silent until the client closes it
    /// (or the server stops), even once hanging is turned off. Requests
    /// read after it is turned off are answered as usual. The mode
    /// survives [`stop`](Self::stop) and [`start_again`](Self::start_again).
    ///
    /// ```
    /// use std::io::{Read, Write};
    /// use std::time::Duration;
    ///
    /// let server = testkit::HttpServer::start("a")?;
    /// server.set_hanging(true);
    /// let mut stream = std::net::TcpStream::connect(server.addr())?;
    /// stream.set_read_timeout(Some(Duration::from_millis(100)))?;
    /// stream.write_all(b"GET / HTTP/1.1\r\n\r\n")?;
    /// let mut buf = [0u8; 64];
    /// assert!(stream.read(&mut buf).is_err(), "no answer, the connection open");
    /// server.set_hanging(false); // new requests are answered again
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn set_hanging(&self, hanging: bool) {
        self.stats.hanging.store(hanging, Ordering::SeqCst);
    }

    /// Whether the server hangs (see [`set_hanging`](Self::set_hanging)).
    pub fn is_hanging(&self) -> bool {
        self.stats.hanging.load(Ordering::SeqCst)
    }

    /// Resets the request and connection counters and forgets the recorded
    /// paths.
    pub fn reset_stats(&self) {
        let mut paths = self
            .stats
            .paths
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        paths.clear();
        paths.shrink_to_fit();
        self.stats.requests.store(0, Ordering::SeqCst);
        self.stats.connections.store(0, Ordering::SeqCst);
    }

    /// Stops the server: closes the listener (new connections are refused)
    /// and shuts down every open connection, including idle keep-alive
    /// ones and requests in progress, then waits for all server threads to
    /// finish. Does nothing if the server is not running.
    pub fn stop(&mut self) {
        let Some(running) = self.running.take() else {
            return;
        };
        running.shared.stopping.store(true, Ordering::SeqCst);
        // Wake the accept loop; it sees the flag and drops the listener.
        // If connecting fails the listener is gone already (the loop only
        // exits on the flag, so this should not happen).
        let _ = TcpStream::connect_timeout(&self.addr(), WAKE_TIMEOUT);
        let _ = running.acceptor.join();
        // No new connections can be registered now.
        let open: Vec<_> = running.shared.connections().drain().collect();
        for (_, (stream, _)) in &open {
            let _ = stream.shutdown(Shutdown::Both);
        }
        for (_, (_, thread)) in open {
            let _ = thread.join();
        }
    }

    /// Starts a stopped server again on the same port. Does nothing if the
    /// server is running. Counters and recorded paths are kept.
    ///
    /// # Errors
    ///
    /// Fails if the port has been taken by another process meanwhile (kind
    /// [`io::ErrorKind::AddrInUse`]) or no thread can be spawned.
    pub fn start_again(&mut self) -> io::Result<()> {
        if self.running.is_some() {
            return Ok(());
        }
        self.listen()
    }

    /// Binds `self.port` and spawns the accept loop.
    fn listen(&mut self) -> io::Result<()> {
        let addr = self.addr();
        // std sets SO_REUSEADDR on Unix listeners, so the port can be bound
        // again right after stop despite connections in TIME_WAIT.
        let listener = TcpListener::bind(addr)
            .map_err(|err| annotate(err, &format!("HTTP server cannot bind {addr}")))?;
        let shared = Arc::new(Generation::default());
        let context = Context {
            name: Arc::clone(&self.name),
            stats: Arc::clone(&self.stats),
            generation: Arc::clone(&shared),
        };
        let acceptor = thread::Builder::new()
            .name(format!("testkit-http-accept-{}", self.port))
            .spawn(move || accept_loop(&listener, &context))
            .map_err(|err| annotate(err, "HTTP server cannot spawn its accept thread"))?;
        self.running = Some(Running { shared, acceptor });
        Ok(())
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What connection threads need.
#[derive(Clone)]
struct Context {
    name: Arc<str>,
    stats: Arc<Stats>,
    generation: Arc<Generation>,
}

/// Accepts connections until the generation is stopping, handing each to
/// a new thread registered in the connection table.
fn accept_loop(listener: &TcpListener, context: &Context) {
    let mut next_id: u64 = 0;
    loop {
        let accepted = listener.accept();
        if context.generation.stopping.load(Ordering::SeqCst) {
            return;
        }
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(_) => {
                // E.g. out of file descriptors: back off a little.
                thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        let Ok(handle) = stream.try_clone() else {
            continue;
        };
        let id = next_id;
        next_id += 1;
        context.stats.connections.fetch_add(1, Ordering::SeqCst);
        // Register before the thread starts, so stop always finds it; the
        // thread removes its entry when done (waiting for the lock until
        // registration is complete).
        let mut connections = context.generation.connections();
        let thread_context = context.clone();
        let spawned = thread::Builder::new()
            .name("testkit-http-conn".to_owned())
            .spawn(move || {
                serve_connection(stream, &thread_context);
                thread_context.generation.connections().remove(&id);
            });
        if let Ok(thread) = spawned {
            connections.insert(id, (handle, thread));
        }
    }
}

/// Why a connection ends.
enum Close {
    /// The client closed it, asked to, or an I/O error occurred.
    Done,
    /// The request was malformed: answer 400 and close.
    BadRequest(&'static str),
}

/// One parsed request head.
struct Head {
    /// Whether this is a `HEAD` request (no response body).
    is_head: bool,
    /// Whether the connection stays open after the response.
    keep_alive: bool,
    /// `Content-Length`, if given.
    content_length: Option<u64>,
    /// Whether the body is chunked.
    chunked: bool,
    /// Whether the client waits for `100 Continue`.
    expect_continue: bool,
}

/// Serves requests on one connection until it is closed.
fn serve_connection(stream: TcpStream, context: &Context) {
    let _ = stream.set_nodelay(true);
    let mut writer = match stream.try_clone() {
        Ok(writer) => writer,
        Err(_) => return,
    };
    let mut reader = BufReader::with_capacity(READ_BUFFER, stream);
    let mut line = Vec::with_capacity(256);
    let mut body = Vec::new();
    let mut response = Vec::with_capacity(256);
    loop {
        match serve_request(
            &mut reader,
            &mut writer,
            context,
            &mut line,
            &mut body,
            &mut response,
        ) {
            Ok(true) => {}
            Ok(false) | Err(Close::Done) => return,
            Err(Close::BadRequest(reason)) => {
                let _ = write!(
                    writer,
                    "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{reason}",
                    reason.len()
                );
                let _ = writer.shutdown(Shutdown::Write);
                return;
            }
        }
    }
}

/// Reads and answers one request; `Ok(true)` to keep the connection open.
fn serve_request(
    reader: &mut BufReader<TcpStream>,
    writer: &mut TcpStream,
    context: &Context,
    line: &mut Vec<u8>,
    body: &mut Vec<u8>,
    response: &mut Vec<u8>,
) -> Result<bool, Close> {
    // Request line; tolerate empty lines before it (RFC 9112 2.2).
    let request_line = loop {
        if !read_line(reader, line)? {
            return Ok(false); // clean close between requests
        }
        if !line.is_empty() {
            break std::str::from_utf8(line)
                .map_err(|_| Close::BadRequest("request line is not UTF-8"))?;
        }
    };
    let mut parts = request_line.split_ascii_whitespace();
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Close::BadRequest("malformed request line"));
    };
    let http11 = match version {
        "HTTP/1.1" => true,
        "HTTP/1.0" => false,
        _ => return Err(Close::BadRequest("unsupported HTTP version")),
    };
    let is_head = method == "HEAD";
    let target = target.to_owned();
    let head = read_headers(reader, line, http11, is_head)?;
    context.stats.requests.fetch_add(1, Ordering::SeqCst);
    let is_echo = target == "/echo" || target.starts_with("/echo?");
    context
        .stats
        .paths
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .push(target);

    if head.expect_continue && (head.chunked || head.content_length.unwrap_or(0) > 0) {
        writer
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .map_err(|_| Close::Done)?;
    }
    body.clear();
    if head.chunked {
        read_chunked(reader, line, body)?;
    } else if let Some(len) = head.content_length {
        if len > MAX_BODY {
            return Err(Close::BadRequest("request body too large"));
        }
        let read = reader.by_ref().take(len).read_to_end(body);
        if read.map_err(|_| Close::Done)? as u64 != len {
            return Err(Close::Done);
        }
    }
    if body.capacity() > 1024 * 1024 && body.len() < 64 * 1024 {
        body.shrink_to(64 * 1024);
    }
    if context.stats.hanging.load(Ordering::SeqCst) {
        return Err(hang(reader));
    }

    let payload: &[u8] = if is_echo {
        body
    } else {
        context.name.as_bytes()
    };
    response.clear();
    // Writing to a Vec cannot fail.
    let _ = write!(
        response,
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nX-Server: {}\r\n{}\r\n",
        payload.len(),
        context.name,
        if head.keep_alive {
            ""
        } else {
            "Connection: close\r\n"
        },
    );
    if !head.is_head {
        response.extend_from_slice(payload);
    }
    writer.write_all(response).map_err(|_| Close::Done)?;
    if response.capacity() > 1024 * 1024 {
        response.shrink_to(64 * 1024);
    }
    if !head.keep_alive {
        let _ = writer.shutdown(Shutdown::Write);
    }
    Ok(head.keep_alive)
}

/// Never answers: reads and discards whatever else the client sends
/// until it closes the connection (or stop shuts it down).
fn hang(reader: &mut BufReader<TcpStream>) -> Close {
    let mut sink = [0u8; 1024];
    loop {
        match reader.read(&mut sink) {
            Ok(0) => return Close::Done,
            Err(err) if err.kind() != io::ErrorKind::Interrupted => return Close::Done,
            Ok(_) | Err(_) => {}
        }
    }
}

/// Reads header lines up to the empty line and extracts what the server
/// needs.
fn read_headers(
    reader: &mut BufReader<TcpStream>,
    line: &mut Vec<u8>,
    http11: bool,
    is_head: bool,
) -> Result<Head, Close> {
    let mut head = Head {
        is_head,
        keep_alive: http11,
        content_length: None,
        chunked: false,
        expect_continue: false,
    };
    let mut count = 0;
    loop {
        if !read_line(reader, line)? {
            return Err(Close::Done);
        }
        if line.is_empty() {
            return Ok(head);
        }
        count += 1;
        if count > MAX_HEADERS {
            return Err(Close::BadRequest("too many headers"));
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return Err(Close::BadRequest("malformed header line"));
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if name.eq_ignore_ascii_case(b"content-length") {
            let length = std::str::from_utf8(value)
                .ok()
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or(Close::BadRequest("invalid Content-Length"))?;
            if head
                .content_length
                .is_some_and(|previous| previous != length)
            {
                return Err(Close::BadRequest("conflicting Content-Length headers"));
            }
            head.content_length = Some(length);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            if has_token(value, b"chunked") {
                head.chunked = true;
            } else if !value.eq_ignore_ascii_case(b"identity") {
                return Err(Close::BadRequest("unsupported Transfer-Encoding"));
            }
        } else if name.eq_ignore_ascii_case(b"connection") {
            if has_token(value, b"close") {
                head.keep_alive = false;
            } else if has_token(value, b"keep-alive") {
                head.keep_alive = true;
            }
        } else if name.eq_ignore_ascii_case(b"expect") {
            head.expect_continue = value.eq_ignore_ascii_case(b"100-continue");
        }
    }
}

/// Whether a comma-separated header value contains `token`
/// (case-insensitively).
fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|part| part.trim_ascii().eq_ignore_ascii_case(token))
}

/// Reads a chunked body (ignoring chunk extensions and trailers).
fn read_chunked(
    reader: &mut BufReader<TcpStream>,
    line: &mut Vec<u8>,
    body: &mut Vec<u8>,
) -> Result<(), Close> {
    loop {
        if !read_line(reader, line)? {
            return Err(Close::Done);
        }
        let size = line.split(|&b| b == b';').next().unwrap_or_default();
        let size = std::str::from_utf8(size.trim_ascii())
            .ok()
            .and_then(|s| u64::from_str_radix(s, 16).ok())
            .ok_or(Close::BadRequest("invalid chunk size"))?;
        if size == 0 {
            // Trailers up to the empty line.
            loop {
                if !read_line(reader, line)? {
                    return Err(Close::Done);
                }
                if line.is_empty() {
                    return Ok(());
                }
            }
        }
        if body.len() as u64 + size > MAX_BODY {
            return Err(Close::BadRequest("request body too large"));
        }
        let read = reader.by_ref().take(size).read_to_end(body);
        if read.map_err(|_| Close::Done)? as u64 != size {
            return Err(Close::Done);
        }
        if !read_line(reader, line)? {
            return Err(Close::Done);
        }
        if !line.is_empty() {
            return Err(Close::BadRequest("chunk not followed by CRLF"));
        }
    }
}

/// Reads one line into `line` without its line ending (`\r\n` or `\n`).
/// `Ok(false)` on end of stream before any byte.
fn read_line(reader: &mut BufReader<TcpStream>, line: &mut Vec<u8>) -> Result<bool, Close> {
    line.clear();
    let read = reader
        .by_ref()
        .take(MAX_LINE)
        .read_until(b'\n', line)
        .map_err(|_| Close::Done)?;
    if read == 0 {
        return Ok(false);
    }
    if line.last() != Some(&b'\n') {
        if read as u64 >= MAX_LINE {
            return Err(Close::BadRequest("line too long"));
        }
        return Err(Close::Done); // connection closed mid-line
    }
    line.pop();
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(true)
}
