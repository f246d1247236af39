//! One memcached server process on a free loopback port, plus a few direct
//! text-protocol helpers to inspect and seed its contents.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::install::{ensure_installed, running_as_root};
use crate::net::on_a_free_port;
use crate::process::{failure_with_logs, wait_until_ready, Answer, ChildSlot};
use crate::zookeeper::annotate;

/// How long memcached may take to answer `version` after being spawned.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Timeout of each readiness probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// How often readiness is polled.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Timeout for connecting, reading and writing in the protocol helpers.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// How many keys [`Memcached::keys_present`] asks for per `get` command.
const KEYS_PER_GET: usize = 100;

/// Longest key the memcached text protocol accepts.
const MAX_KEY_LEN: usize = 250;

/// The Debian location of the memcached binary.
const MEMCACHED_BINARY: &str = "/usr/bin/memcached";

/// A memcached server running as a child process on a free port of
/// 127.0.0.1 (TCP only, 64 MB of memory, up to 1024 connections).
///
/// Created by [`Memcached::start`]; dropping it kills the process. Its
/// stdout/stderr go to a log file in a temporary directory, never to the
/// test's output; the tail of that log is part of startup errors.
///
/// The protocol helpers ([`get`](Self::get), [`set`](Self::set),
/// [`keys_present`](Self::keys_present), ...) each open a fresh TCP
/// connection, so they can be used to check, from the outside, what a
/// client under test stored on which server.
///
/// ```no_run
/// let mut mc = testkit::Memcached::start()?;
/// let endpoint = mc.endpoint(); // "127.0.0.1:PORT", for the client under test
/// mc.set("k", b"v")?;
/// assert_eq!(mc.get("k")?.as_deref(), Some(&b"v"[..]));
/// assert_eq!(mc.keys_present(&["k", "other"])?, ["k"]);
/// mc.stop(); // like a crash
/// mc.start_again()?; // same port, empty cache
/// # let _ = endpoint;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct Memcached {
    /// Holds `memcached.log`.
    dir: TempDir,
    /// TCP port on 127.0.0.1.
    port: u16,
    /// The memcached process while running.
    child: ChildSlot,
}

impl Memcached {
    /// Starts memcached on a free port of 127.0.0.1 and waits (up to 30 s)
    /// until it answers `version` with `VERSION ...` and `stats` reports
    /// the pid of the process we started.
    ///
    /// Installs Debian's `memcached` package first if it is missing (see
    /// [`ensure_installed`]). When running as root, memcached is told to
    /// keep running as root (`-u root`), since it refuses to start as root
    /// otherwise. If the chosen port is taken by another process in the
    /// meantime, retries with a new port a few times.
    ///
    /// # Errors
    ///
    /// Fails if the package cannot be installed, memcached cannot be
    /// launched, or it does not become ready in time; the error message
    /// then includes the tail of its log.
    pub fn start() -> io::Result<Memcached> {
        ensure_installed(&["memcached"])?;
        on_a_free_port("memcached", |port| {
            let dir = tempfile::Builder::new()
                .prefix("testkit-memcached-")
                .tempdir()
                .map_err(|err| {
                    annotate(err, "cannot create a temporary directory for memcached")
                })?;
            let server = Memcached {
                dir,
                port,
                child: ChildSlot::default(),
            };
            server.launch()?;
            Ok(server)
        })
    }

    /// The TCP port on 127.0.0.1.
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

    /// The log file receiving memcached's stdout and stderr.
    pub fn log_file(&self) -> PathBuf {
        self.dir.path().join("memcached.log")
    }

    /// Whether the memcached process is running (started and not stopped
    /// or exited).
    pub fn is_running(&self) -> bool {
        self.child.is_running()
    }

    /// Stops the server: kills the process (SIGKILL, like a crash) and
    /// waits for it to exit. Its cache contents are lost. Does nothing if
    /// the server is not running.
    pub fn stop(&mut self) {
        self.child.kill();
    }

    /// Stalls the server (SIGSTOP): it keeps its connections and its
    /// listening socket (the kernel still accepts connections) but answers
    /// nothing until [`resume`](Self::resume).
    pub fn pause(&self) -> io::Result<()> {
        self.child.signal("STOP")
    }

    /// Lets a [paused](Self::pause) server go on (SIGCONT); it then answers
    /// what it was sent meanwhile.
    pub fn resume(&self) -> io::Result<()> {
        self.child.signal("CONT")
    }

    /// Starts a stopped server again on the same port, with an empty
    /// cache, and waits (up to 30 s) until it is ready. Does nothing if the
    /// server is running.
    ///
    /// # Errors
    ///
    /// Fails if memcached cannot be launched, if the port has been taken by
    /// another process meanwhile (kind [`io::ErrorKind::AddrInUse`]), or if
    /// it does not become ready in time.
    pub fn start_again(&mut self) -> io::Result<()> {
        if self.is_running() {
            return Ok(());
        }
        self.launch()
    }

    /// The value stored under `key`, or `None` if this server does not
    /// hold it.
    ///
    /// # Errors
    ///
    /// Fails on invalid keys (empty, longer than 250 bytes, or containing
    /// whitespace or control characters; kind
    /// [`io::ErrorKind::InvalidInput`]), connection or I/O errors, and
    /// error replies.
    pub fn get(&self, key: &str) -> io::Result<Option<Vec<u8>>> {
        check_key(key)?;
        let mut conn = self.connect()?;
        conn.send(format!("get {key}\r\n").as_bytes())?;
        let mut values = conn.read_values()?;
        Ok(values.pop().map(|(_, value)| value))
    }

    /// Stores `value` under `key` (flags 0, no expiry), replacing any
    /// previous value.
    ///
    /// # Errors
    ///
    /// Fails on invalid keys (see [`get`](Self::get)), connection or I/O
    /// errors, and replies other than `STORED` (e.g. a value larger than
    /// the 1 MB item limit).
    pub fn set(&self, key: &str, value: &[u8]) -> io::Result<()> {
        check_key(key)?;
        let mut conn = self.connect()?;
        let mut request = format!("set {key} 0 0 {}\r\n", value.len()).into_bytes();
        request.extend_from_slice(value);
        request.extend_from_slice(b"\r\n");
        conn.send(&request)?;
        conn.expect_line("STORED", &format!("set {key}"))
    }

    /// Which of `keys` this server holds, in the order of `keys` (a key
    /// listed twice and present is reported twice).
    ///
    /// Uses multi-key `get` commands of up to 100 keys over one connection.
    ///
    /// # Errors
    ///
    /// Fails on invalid keys (see [`get`](Self::get)), connection or I/O
    /// errors, and error replies.
    pub fn keys_present(&self, keys: &[&str]) -> io::Result<Vec<String>> {
        for key in keys {
            check_key(key)?;
        }
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.connect()?;
        let mut present = Vec::new();
        for batch in keys.chunks(KEYS_PER_GET) {
            let mut request = String::from("get");
            for key in batch {
                request.push(' ');
                request.push_str(key);
            }
            request.push_str("\r\n");
            conn.send(request.as_bytes())?;
            let found = conn.read_values()?;
            present.extend(
                batch
                    .iter()
                    .filter(|key| found.iter().any(|(name, _)| name == **key))
                    .map(|key| (*key).to_owned()),
            );
        }
        Ok(present)
    }

    /// Removes every item (`flush_all`).
    ///
    /// # Errors
    ///
    /// Fails on connection or I/O errors and replies other than `OK`.
    pub fn flush_all(&self) -> io::Result<()> {
        let mut conn = self.connect()?;
        conn.send(b"flush_all\r\n")?;
        conn.expect_line("OK", "flush_all")
    }

    /// The number of items currently stored (`curr_items` from `stats`).
    ///
    /// Items removed by [`flush_all`](Self::flush_all) may still be
    /// counted until memcached reclaims them; check with
    /// [`get`](Self::get) or [`keys_present`](Self::keys_present) instead
    /// when that matters.
    ///
    /// # Errors
    ///
    /// Fails on connection or I/O errors, or if the reply lacks
    /// `curr_items`.
    pub fn curr_items(&self) -> io::Result<u64> {
        let stats = self.stats()?;
        let value = stats
            .get("curr_items")
            .ok_or_else(|| io::Error::other("memcached stats reply lacks curr_items"))?;
        value.parse().map_err(|err| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("memcached stats: bad curr_items {value:?}: {err}"),
            )
        })
    }

    /// All general-purpose statistics (`stats`): name to value, e.g.
    /// `"curr_items"`, `"curr_connections"`, `"get_hits"`, `"pid"`.
    ///
    /// # Errors
    ///
    /// Fails on connection or I/O errors and malformed replies.
    pub fn stats(&self) -> io::Result<BTreeMap<String, String>> {
        self.connect()?.stats()
    }

    /// Opens a protocol connection with the default timeouts.
    fn connect(&self) -> io::Result<Conn> {
        Conn::open(self.addr(), IO_TIMEOUT)
    }

    /// Spawns memcached on `self.port` and waits until it is ready; kills
    /// it again if that fails.
    fn launch(&self) -> io::Result<()> {
        let pid = self.spawn()?;
        let result = self.wait_ready(pid, Instant::now() + START_TIMEOUT);
        if result.is_err() {
            self.child.kill();
        }
        result
    }

    /// Spawns the memcached process and returns its pid.
    fn spawn(&self) -> io::Result<u32> {
        let log_path = self.log_file();
        let log = File::create(&log_path)
            .map_err(|err| annotate(err, &format!("cannot create {}", log_path.display())))?;
        let log_err = log
            .try_clone()
            .map_err(|err| annotate(err, "cannot duplicate the log file handle"))?;
        let binary = memcached_binary();
        let mut command = Command::new(&binary);
        if running_as_root() {
            command.args(["-u", "root"]);
        }
        let port = self.port.to_string();
        command
            .args([
                "-l",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "0",
                "-m",
                "64",
                "-c",
                "1024",
            ])
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        let child = command.spawn().map_err(|err| {
            annotate(
                err,
                &format!(
                    "cannot launch {} for memcached on 127.0.0.1:{port}",
                    binary.display()
                ),
            )
        })?;
        let pid = child.id();
        self.child.set(child);
        Ok(pid)
    }

    /// Waits until the server on our port answers `version` and its
    /// `stats` report `pid`, i.e. it is our process and not another server
    /// that grabbed the port.
    ///
    /// Errors of kind [`io::ErrorKind::AddrInUse`] mean the port was taken.
    fn wait_ready(&self, pid: u32, deadline: Instant) -> io::Result<()> {
        wait_until_ready(
            deadline,
            POLL_INTERVAL,
            || self.exit_status(),
            || self.log_mentions_address_in_use(),
            || match self.probe() {
                Err(_) => Answer::Nothing,
                Ok(answering) if answering == Some(pid) => Answer::Ours,
                Ok(_) => Answer::Another("memcached"),
            },
            |kind, what| self.failure(kind, what),
            &format!("did not answer `version` within {START_TIMEOUT:?}"),
        )
    }

    /// Asks `version` (must answer `VERSION ...`), then the pid from
    /// `stats`, with short timeouts.
    fn probe(&self) -> io::Result<Option<u32>> {
        let mut conn = Conn::open(self.addr(), PROBE_TIMEOUT)?;
        conn.send(b"version\r\n")?;
        let line = conn.read_line()?;
        if !line.starts_with("VERSION ") {
            return Err(io::Error::other(format!(
                "unexpected reply to version: {line:?}"
            )));
        }
        let stats = conn.stats()?;
        Ok(stats.get("pid").and_then(|pid| pid.parse().ok()))
    }

    /// The exit status if the process was started and has exited.
    fn exit_status(&self) -> Option<ExitStatus> {
        self.child.exit_status()
    }

    /// Whether the log reports a port that could not be bound.
    fn log_mentions_address_in_use(&self) -> bool {
        fs::read_to_string(self.log_file())
            .map(|text| text.contains("Address already in use"))
            .unwrap_or(false)
    }

    /// An error about this server, with its log.
    fn failure(&self, kind: io::ErrorKind, what: &str) -> io::Error {
        let what = format!("memcached on 127.0.0.1:{} {what}", self.port);
        failure_with_logs(kind, what, &[self.log_file()])
    }
}

impl Drop for Memcached {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `/usr/bin/memcached` if present, else `memcached` from `PATH`.
fn memcached_binary() -> PathBuf {
    let system = Path::new(MEMCACHED_BINARY);
    if system.is_file() {
        system.to_path_buf()
    } else {
        PathBuf::from("memcached")
    }
}

/// Rejects keys the text protocol cannot carry.
fn check_key(key: &str) -> io::Result<()> {
    if key.is_empty()
        || key.len() > MAX_KEY_LEN
        || key
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "invalid memcached key {key:?}: must be 1 to {MAX_KEY_LEN} bytes without \
                 whitespace or control characters"
            ),
        ));
    }
    Ok(())
}

/// One text-protocol connection.
struct Conn {
    addr: SocketAddr,
    reader: BufReader<TcpStream>,
    line: String,
}

impl Conn {
    /// Connects with `timeout` for connecting, reading and writing.
    fn open(addr: SocketAddr, timeout: Duration) -> io::Result<Conn> {
        let context = |err: io::Error| annotate(err, &format!("memcached at {addr}"));
        let stream = TcpStream::connect_timeout(&addr, timeout).map_err(context)?;
        stream.set_read_timeout(Some(timeout)).map_err(context)?;
        stream.set_write_timeout(Some(timeout)).map_err(context)?;
        // Best effort: requests are single writes anyway.
        let _ = stream.set_nodelay(true);
        Ok(Conn {
            addr,
            reader: BufReader::new(stream),
            line: String::new(),
        })
    }

    /// Wraps an error with the server address.
    fn context(&self, err: io::Error) -> io::Error {
        annotate(err, &format!("memcached at {}", self.addr))
    }

    /// Writes a whole request.
    fn send(&mut self, request: &[u8]) -> io::Result<()> {
        let result = self.reader.get_mut().write_all(request);
        result.map_err(|err| self.context(err))
    }

    /// Reads one reply line without its `\r\n`; an error reply
    /// (`ERROR`, `CLIENT_ERROR ...`, `SERVER_ERROR ...`) becomes an error.
    fn read_line(&mut self) -> io::Result<&str> {
        self.line.clear();
        let read = self.reader.read_line(&mut self.line);
        match read {
            Ok(0) => {
                return Err(self.context(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed before a complete reply",
                )))
            }
            Ok(_) => {}
            Err(err) => return Err(self.context(err)),
        }
        let line = self.line.trim_end_matches(['\r', '\n']);
        if line == "ERROR" || line.starts_with("CLIENT_ERROR") || line.starts_with("SERVER_ERROR") {
            let message = format!("memcached at {} replied {line:?}", self.addr);
            return Err(io::Error::other(message));
        }
        Ok(line)
    }

    /// Reads one line and fails unless it is `expected`.
    fn expect_line(&mut self, expected: &str, what: &str) -> io::Result<()> {
        let addr = self.addr;
        let line = self.read_line()?;
        if line == expected {
            Ok(())
        } else {
            Err(io::Error::other(format!(
                "memcached at {addr}: {what}: expected {expected:?}, got {line:?}"
            )))
        }
    }

    /// Reads a `get` reply: `VALUE key flags bytes` blocks up to `END`.
    fn read_values(&mut self) -> io::Result<Vec<(String, Vec<u8>)>> {
        let addr = self.addr;
        let mut values = Vec::new();
        loop {
            let line = self.read_line()?;
            if line == "END" {
                return Ok(values);
            }
            let mut parts = line.split(' ');
            let (Some("VALUE"), Some(key), Some(_flags), Some(len)) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("memcached at {addr}: unexpected line in get reply: {line:?}"),
                ));
            };
            let key = key.to_owned();
            let len: usize = len.parse().map_err(|err| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("memcached at {addr}: bad value length in {line:?}: {err}"),
                )
            })?;
            let mut data = vec![0; len + 2];
            let read = self.reader.read_exact(&mut data);
            read.map_err(|err| self.context(err))?;
            if !data.ends_with(b"\r\n") {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("memcached at {addr}: value of {key:?} not followed by \\r\\n"),
                ));
            }
            data.truncate(len);
            values.push((key, data));
        }
    }

    /// Sends `stats` and reads the `STAT name value` lines up to `END`.
    fn stats(&mut self) -> io::Result<BTreeMap<String, String>> {
        self.send(b"stats\r\n")?;
        let addr = self.addr;
        let mut stats = BTreeMap::new();
        loop {
            let line = self.read_line()?;
            if line == "END" {
                return Ok(stats);
            }
            let Some((name, value)) = line
                .strip_prefix("STAT ")
                .and_then(|rest| rest.split_once(' '))
            else {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("memcached at {addr}: unexpected line in stats reply: {line:?}"),
                ));
            };
            stats.insert(name.to_owned(), value.to_owned());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{check_key, Memcached};
    use crate::process::ChildSlot;
    use std::io;
    use std::net::{Ipv4Addr, TcpListener};

    /// A not-yet-started server on `port`.
    fn unstarted(port: u16) -> Memcached {
        Memcached {
            dir: tempfile::tempdir().unwrap(),
            port,
            child: ChildSlot::default(),
        }
    }

    #[test]
    fn port_taken_by_a_plain_listener_is_addr_in_use() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let server = unstarted(listener.local_addr().unwrap().port());
        let err = server.launch().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
        assert!(err.to_string().contains("last lines of"), "{err}");
        assert!(!server.is_running());
    }

    #[test]
    fn port_taken_by_another_memcached_is_addr_in_use() {
        let first = Memcached::start().unwrap();
        let second = unstarted(first.port());
        let err = second.launch().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
        assert!(!second.is_running());
        first.set("k", b"v").unwrap();
    }

    #[test]
    fn keys_are_checked() {
        assert!(check_key("a:b/c").is_ok());
        assert!(check_key(&"k".repeat(250)).is_ok());
        for bad in ["", "a b", "a\tb", "a\r\nb", "a\u{7f}"] {
            assert!(check_key(bad).is_err(), "{bad:?}");
        }
        assert!(check_key(&"k".repeat(251)).is_err());
    }
}
