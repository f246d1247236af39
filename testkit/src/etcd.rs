//! One etcd server process (a single-node cluster) on free loopback ports,
//! plus thin `etcdctl` helpers to seed and inspect its contents.

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::install::ensure_installed;
use crate::net::{free_ports, on_a_free_port};
use crate::process::{failure_with_logs, wait_until_ready, Answer, ChildSlot};
use crate::zookeeper::annotate;

/// How long etcd may take to report itself healthy after being spawned.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Timeout of each readiness probe: a server that is still starting may
/// accept a connection and never answer it.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// How often readiness is polled.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// The Debian location of the etcd server binary (package `etcd-server`).
const ETCD_BINARY: &str = "/usr/bin/etcd";

/// The Debian location of etcdctl (package `etcd-client`).
const ETCDCTL_BINARY: &str = "/usr/bin/etcdctl";

/// Raft heartbeat interval in milliseconds. Much shorter than etcd's
/// default (100 ms) so that the single member elects itself quickly,
/// especially on a restart with existing data.
const HEARTBEAT_INTERVAL_MS: &str = "20";

/// Raft election timeout in milliseconds (etcd's default: 1000 ms); see
/// [`HEARTBEAT_INTERVAL_MS`].
const ELECTION_TIMEOUT_MS: &str = "200";

/// An etcd server running as a child process: a single-node cluster with
/// its client and peer ports on free ports of 127.0.0.1, and its data and
/// log in a temporary directory.
///
/// Created by [`Etcd::start`]; dropping it kills the process and removes
/// the temporary directory. The server speaks plain HTTP (no TLS, no
/// authentication), keeps the default v3 API only, never compacts on its
/// own, and uses short raft timings (20 ms heartbeat, 200 ms election
/// timeout) so that it starts and restarts quickly. Its log (zap, JSON
/// lines) goes to [`log_file`](Self::log_file), never to the test's output.
///
/// The helpers ([`etcdctl`](Self::etcdctl), [`put`](Self::put),
/// [`get_prefix`](Self::get_prefix), ...) run Debian's `etcdctl` against
/// the server, so they check from the outside what a client under test
/// stored.
///
/// ```no_run
/// let mut etcd = testkit::Etcd::start()?;
/// let endpoint = etcd.endpoint(); // "127.0.0.1:PORT", for the client under test
/// etcd.put("/services/users/10.0.0.1:8080", r#"{"Op":0,"Addr":"10.0.0.1:8080"}"#)?;
/// let entries = etcd.get_prefix("/services/")?;
/// assert_eq!(entries.len(), 1);
/// etcd.stop(); // like a crash
/// etcd.start_again()?; // same ports, same data
/// # let _ = endpoint;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct Etcd {
    /// Holds `data/` and `etcd.log`.
    dir: TempDir,
    /// The member name (unique: derived from `dir`), used to recognise our
    /// own server behind the port.
    name: String,
    /// Client port on 127.0.0.1.
    port: u16,
    /// Peer (raft) port on 127.0.0.1.
    peer_port: u16,
    /// The etcd process while running.
    child: ChildSlot,
}

impl Etcd {
    /// Starts a single-node etcd cluster on free ports of 127.0.0.1 and
    /// waits (up to 30 s) until it is healthy (`GET /health` on the client
    /// port answers `{"health":"true"}`, i.e. it has elected itself
    /// leader) and its member list names our member.
    ///
    /// Installs Debian's `etcd-server` and `etcd-client` packages first if
    /// they are missing (see [`ensure_installed`]). If a chosen port is
    /// taken by another process in the meantime, retries with new ports a
    /// few times.
    ///
    /// # Errors
    ///
    /// Fails if the packages cannot be installed, etcd cannot be launched,
    /// it exits during startup, or it does not become healthy in time; the
    /// error message then includes the tail of its log.
    pub fn start() -> io::Result<Etcd> {
        ensure_installed(&["etcd-server", "etcd-client"])?;
        on_a_free_port("etcd", |port| {
            // Two ports free at the same time: at most one is `port`.
            let peer_port = free_ports(2)?
                .into_iter()
                .find(|&candidate| candidate != port)
                .ok_or_else(|| io::Error::other("no free peer port for etcd"))?;
            let dir = tempfile::Builder::new()
                .prefix("testkit-etcd-")
                .tempdir()
                .map_err(|err| annotate(err, "cannot create a temporary directory for etcd"))?;
            let name = dir
                .path()
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_else(|| format!("testkit-etcd-{port}"));
            let server = Etcd {
                dir,
                name,
                port,
                peer_port,
                child: ChildSlot::default(),
            };
            server.launch()?;
            Ok(server)
        })
    }

    /// The client endpoint, `"127.0.0.1:PORT"`.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The client URL, `"http://127.0.0.1:PORT"`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The client port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The peer (raft) port on 127.0.0.1; clients never use it.
    pub fn peer_port(&self) -> u16 {
        self.peer_port
    }

    /// The client address, `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// The server's data directory (`--data-dir`). It survives
    /// [`stop`](Self::stop) and is removed on drop.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The log file receiving etcd's stdout and stderr (its zap log), from
    /// every start of this server.
    pub fn log_file(&self) -> PathBuf {
        self.dir.path().join("etcd.log")
    }

    /// The etcd process's id while it runs; `None` when it is stopped or
    /// has exited.
    pub fn pid(&self) -> Option<u32> {
        let mut child = self.child.lock();
        let running = child.as_mut()?;
        matches!(running.try_wait(), Ok(None)).then(|| running.id())
    }

    /// Whether the etcd process is running (started and not stopped or
    /// exited).
    pub fn is_running(&self) -> bool {
        self.child.is_running()
    }

    /// Stops the server: kills the etcd process (SIGKILL, like a crash) and
    /// waits for it to exit. The data directory is kept, so
    /// [`start_again`](Self::start_again) brings back the same data and
    /// leases. Does nothing if the server is not running.
    pub fn stop(&mut self) {
        self.child.kill();
    }

    /// Starts a stopped server again on the same ports with the same data,
    /// and waits (up to 30 s) until it is healthy. Leases survive too, with
    /// their full TTL again: etcd refreshes every lease when a member
    /// becomes leader. Does nothing if the server is running.
    ///
    /// # Errors
    ///
    /// Fails if etcd cannot be launched, if one of its ports has been taken
    /// by another process meanwhile (kind [`io::ErrorKind::AddrInUse`]), or
    /// if it does not become healthy in time.
    pub fn start_again(&mut self) -> io::Result<()> {
        if self.is_running() {
            return Ok(());
        }
        self.launch()
    }

    /// Stalls the server (SIGSTOP): it keeps its connections and its
    /// listening sockets (the kernel still accepts connections) but
    /// answers nothing until [`resume`](Self::resume).
    ///
    /// # Errors
    ///
    /// Fails if the server is not running or the signal cannot be sent.
    pub fn pause(&self) -> io::Result<()> {
        self.child.signal("STOP")
    }

    /// Lets a [paused](Self::pause) server go on (SIGCONT); it then answers
    /// what it was sent meanwhile.
    ///
    /// # Errors
    ///
    /// Fails if the server is not running or the signal cannot be sent.
    pub fn resume(&self) -> io::Result<()> {
        self.child.signal("CONT")
    }

    /// Runs `etcdctl --endpoints=127.0.0.1:PORT ARGS...` with the v3 API
    /// (`ETCDCTL_API=3`; other `ETCDCTL_*` variables of this process are
    /// not passed on) and returns its stdout.
    ///
    /// etcdctl gives up after its own timeouts (2 s to connect, 5 s per
    /// command; pass e.g. `--command-timeout=1s` in `args` to shorten).
    ///
    /// ```no_run
    /// # let etcd = testkit::Etcd::start()?;
    /// etcd.etcdctl(&["put", "/services/users/10.0.0.1:8080", r#"{"Op":0,"Addr":"10.0.0.1:8080"}"#])?;
    /// let listing = etcd.etcdctl(&["get", "--prefix", "/services/"])?;
    /// # let _ = listing;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// Fails if etcdctl cannot be run or exits unsuccessfully; the message
    /// then includes its stderr.
    pub fn etcdctl(&self, args: &[&str]) -> io::Result<String> {
        let binary = binary(ETCDCTL_BINARY, "etcdctl");
        let mut command = Command::new(&binary);
        // etcdctl refuses to run when a variable such as ETCDCTL_ENDPOINTS
        // shadows a flag we pass.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("ETCDCTL_") {
                command.env_remove(&key);
            }
        }
        let shown = format!("etcdctl {}", args.join(" "));
        let output = command
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.endpoint()))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|err| {
                annotate(
                    err,
                    &format!("cannot run {} for `{shown}`", binary.display()),
                )
            })?;
        if !output.status.success() {
            return Err(io::Error::other(format!(
                "`{shown}` against etcd on {} failed ({}): {}",
                self.endpoint(),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim_end()
            )));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Stores `value` under `key` (no lease), replacing any previous value.
    ///
    /// # Errors
    ///
    /// Fails if etcdctl fails (see [`etcdctl`](Self::etcdctl)).
    pub fn put(&self, key: &str, value: &str) -> io::Result<()> {
        // `--` so that keys and values starting with `-` are not flags.
        self.etcdctl(&["put", "--", key, value]).map(drop)
    }

    /// Deletes `key`; returns whether it existed.
    ///
    /// # Errors
    ///
    /// Fails if etcdctl fails (see [`etcdctl`](Self::etcdctl)) or prints
    /// something other than the number of deleted keys.
    pub fn delete(&self, key: &str) -> io::Result<bool> {
        let output = self.etcdctl(&["del", "--", key])?;
        let deleted: u64 = output.trim().parse().map_err(|err| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("etcdctl del: unexpected output {output:?}: {err}"),
            )
        })?;
        Ok(deleted > 0)
    }

    /// Every key starting with `prefix` (all keys for `""`) with its value,
    /// sorted by key, as `etcdctl get --prefix -w json` reports them (keys
    /// and values are decoded from base64, so values may contain
    /// newlines).
    ///
    /// # Errors
    ///
    /// Fails if etcdctl fails (see [`etcdctl`](Self::etcdctl)), or with
    /// kind [`io::ErrorKind::InvalidData`] if its output cannot be parsed
    /// or a key or value is not UTF-8 (use [`etcdctl`](Self::etcdctl) for
    /// binary data).
    pub fn get_prefix(&self, prefix: &str) -> io::Result<Vec<(String, String)>> {
        let output = self.etcdctl(&["get", "--prefix", "-w", "json", "--", prefix])?;
        parse_kvs(&output)
    }

    /// The store's current revision (the header of `etcdctl endpoint status
    /// -w json`).
    ///
    /// # Errors
    ///
    /// Fails if etcdctl fails (see [`etcdctl`](Self::etcdctl)) or its
    /// output has no revision.
    pub fn revision(&self) -> io::Result<i64> {
        let output = self.etcdctl(&["endpoint", "status", "-w", "json"])?;
        json_integer(&output, "revision").ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("etcdctl endpoint status: no revision in {output:?}"),
            )
        })
    }

    /// Compacts the key-value history up to revision `rev` (`etcdctl
    /// compact REV`): older revisions can no longer be read or watched.
    ///
    /// # Errors
    ///
    /// Fails if etcdctl fails (see [`etcdctl`](Self::etcdctl)), e.g. when
    /// `rev` is already compacted or is in the future.
    pub fn compact(&self, rev: i64) -> io::Result<()> {
        self.etcdctl(&["compact", &rev.to_string()]).map(drop)
    }

    /// The number of leases currently granted (first line of `etcdctl lease
    /// list`: `found N leases`).
    ///
    /// # Errors
    ///
    /// Fails if etcdctl fails (see [`etcdctl`](Self::etcdctl)) or prints
    /// something unexpected.
    pub fn lease_count(&self) -> io::Result<usize> {
        let output = self.etcdctl(&["lease", "list"])?;
        output
            .lines()
            .next()
            .and_then(|line| line.strip_prefix("found "))
            .and_then(|rest| rest.split(' ').next())
            .and_then(|count| count.parse().ok())
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("etcdctl lease list: unexpected output {output:?}"),
                )
            })
    }

    /// Spawns etcd on our ports and waits until it is ready; kills it again
    /// if that fails.
    fn launch(&self) -> io::Result<()> {
        self.spawn()?;
        let result = self.wait_ready(Instant::now() + START_TIMEOUT);
        if result.is_err() {
            self.child.kill();
        }
        result
    }

    /// Spawns the etcd process without waiting for it.
    fn spawn(&self) -> io::Result<()> {
        let log_path = self.log_file();
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|err| annotate(err, &format!("cannot open {}", log_path.display())))?;
        let log_err = log
            .try_clone()
            .map_err(|err| annotate(err, "cannot duplicate the log file handle"))?;
        let client_url = self.url();
        let peer_url = format!("http://127.0.0.1:{}", self.peer_port);
        let binary = binary(ETCD_BINARY, "etcd");
        // etcd creates the data directory itself, with the permissions it
        // insists on (0700). With existing data, the --initial-* flags are
        // ignored.
        let child = Command::new(&binary)
            .arg("--name")
            .arg(&self.name)
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .arg("--initial-cluster")
            .arg(format!("{}={peer_url}", self.name))
            .args(["--initial-cluster-state", "new"])
            .arg("--initial-cluster-token")
            .arg(&self.name)
            .args(["--heartbeat-interval", HEARTBEAT_INTERVAL_MS])
            .args(["--election-timeout", ELECTION_TIMEOUT_MS])
            .args(["--logger", "zap", "--log-outputs", "stderr"])
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|err| {
                annotate(
                    err,
                    &format!(
                        "cannot launch {} for etcd on {client_url}",
                        binary.display()
                    ),
                )
            })?;
        self.child.set(child);
        Ok(())
    }

    /// Waits until the server on our client port is healthy and its member
    /// list names our member, i.e. it is our process and not another etcd
    /// that grabbed the port.
    ///
    /// Errors of kind [`io::ErrorKind::AddrInUse`] mean a port was taken.
    fn wait_ready(&self, deadline: Instant) -> io::Result<()> {
        wait_until_ready(
            deadline,
            POLL_INTERVAL,
            || self.exit_status(),
            || self.log_mentions_address_in_use(),
            || {
                if !self.probe_health() {
                    Answer::Nothing
                } else if self.answering_server_is_ours() {
                    Answer::Ours
                } else {
                    Answer::Another("etcd")
                }
            },
            |kind, what| self.failure(kind, what),
            &format!("did not become healthy (GET /health) within {START_TIMEOUT:?}"),
        )
    }

    /// Whether `GET /health` answers 200 with `"health":"true"`.
    fn probe_health(&self) -> bool {
        match http_request(self.addr(), "GET", "/health", None) {
            Ok((status, body)) => status == 200 && body.contains(r#""health":"true""#),
            Err(_) => false,
        }
    }

    /// Whether the member list of the server answering on our port (from
    /// the gRPC gateway's `/v3/cluster/member/list`) names our member.
    fn answering_server_is_ours(&self) -> bool {
        match http_request(self.addr(), "POST", "/v3/cluster/member/list", Some("{}")) {
            Ok((200, body)) => body.contains(&format!(r#""name":"{}""#, self.name)),
            // Could not ask: do not claim a conflict.
            _ => true,
        }
    }

    /// The exit status if the process was started and has exited.
    fn exit_status(&self) -> Option<ExitStatus> {
        self.child.exit_status()
    }

    /// Whether the log reports a port that could not be bound (etcd
    /// writes `bind: address already in use`).
    fn log_mentions_address_in_use(&self) -> bool {
        fs::read_to_string(self.log_file())
            .map(|text| text.to_ascii_lowercase().contains("address already in use"))
            .unwrap_or(false)
    }

    /// An error about this server, with the tail of its log.
    fn failure(&self, kind: io::ErrorKind, what: &str) -> io::Error {
        let what = format!(
            "etcd on 127.0.0.1:{} (peer port {}) {what}",
            self.port, self.peer_port
        );
        failure_with_logs(kind, what, &[self.log_file()])
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `system` (the Debian location) if present, else `name` from `PATH`.
fn binary(system: &str, name: &str) -> PathBuf {
    let system = Path::new(system);
    if system.is_file() {
        system.to_path_buf()
    } else {
        PathBuf::from(name)
    }
}

/// Sends one small HTTP/1.0 request (so the reply is never chunked and the
/// connection closes after it) with short timeouts; returns the status code
/// and the body.
fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, PROBE_TIMEOUT)?;
    stream.set_read_timeout(Some(PROBE_TIMEOUT))?;
    stream.set_write_timeout(Some(PROBE_TIMEOUT))?;
    let body = body.unwrap_or("");
    let request = format!(
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes())?;
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply)?;
    let reply = String::from_utf8_lossy(&reply);
    let (head, body) = reply
        .split_once("\r\n\r\n")
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "incomplete HTTP reply"))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad HTTP status line in {head:?}"),
            )
        })?;
    Ok((status, body.to_owned()))
}

/// The first integer value of the JSON field `name` in `json` (a string
/// search: enough for etcdctl's output, whose field names are unique per
/// object).
fn json_integer(json: &str, name: &str) -> Option<i64> {
    let start = json.find(&format!("\"{name}\":"))? + name.len() + 3;
    let rest = &json[start..];
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '-'))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// The first string value of the JSON field `name` in `object`, which must
/// not need unescaping (etcdctl's base64 fields never do).
fn json_plain_string<'a>(object: &'a str, name: &str) -> Option<&'a str> {
    let start = object.find(&format!("\"{name}\":\""))? + name.len() + 4;
    let rest = &object[start..];
    rest.find('"').map(|end| &rest[..end])
}

/// The keys and values of `etcdctl get -w json` output. Each key-value
/// object is flat and its strings are base64, so objects are delimited by
/// braces; an empty value is omitted from the object.
fn parse_kvs(json: &str) -> io::Result<Vec<(String, String)>> {
    let invalid = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
    let Some(start) = json.find("\"kvs\":[") else {
        // No key matched: etcdctl omits the empty list.
        return Ok(Vec::new());
    };
    let mut rest = &json[start + "\"kvs\":[".len()..];
    let mut kvs = Vec::new();
    while let Some(open) = rest.find('{') {
        if rest[..open].contains(']') {
            break;
        }
        let close = rest[open..]
            .find('}')
            .ok_or_else(|| invalid(format!("unterminated key-value object in {json:?}")))?
            + open;
        let object = &rest[open..=close];
        let key = json_plain_string(object, "key")
            .ok_or_else(|| invalid(format!("key-value object without key: {object:?}")))?;
        let value = json_plain_string(object, "value").unwrap_or("");
        let decode = |field: &str| {
            let bytes = decode_base64(field)
                .ok_or_else(|| invalid(format!("bad base64 {field:?} in {object:?}")))?;
            String::from_utf8(bytes)
                .map_err(|err| invalid(format!("non-UTF-8 data in {object:?}: {err}")))
        };
        kvs.push((decode(key)?, decode(value)?));
        rest = &rest[close + 1..];
    }
    Ok(kvs)
}

/// Decodes standard base64 with padding; `None` if malformed.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    fn sextet(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for (index, chunk) in bytes.chunks(4).enumerate() {
        let last = index + 1 == bytes.len() / 4;
        let padding = chunk.iter().rev().take_while(|&&c| c == b'=').count();
        if padding > 2 || (padding > 0 && !last) {
            return None;
        }
        let mut group = 0;
        for &c in &chunk[..4 - padding] {
            group = (group << 6) | sextet(c)?;
        }
        group <<= 6 * padding;
        let decoded = [(group >> 16) as u8, (group >> 8) as u8, group as u8];
        out.extend_from_slice(&decoded[..3 - padding]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::net::{Ipv4Addr, TcpListener};

    use super::{decode_base64, json_integer, parse_kvs, Etcd};
    use crate::process::ChildSlot;

    /// A not-yet-started server on `port` and `peer_port`.
    fn unstarted(port: u16, peer_port: u16) -> Etcd {
        Etcd {
            dir: tempfile::tempdir().unwrap(),
            name: format!("unstarted-{port}"),
            port,
            peer_port,
            child: ChildSlot::default(),
        }
    }

    #[test]
    fn port_taken_by_a_plain_listener_is_addr_in_use() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let taken = listener.local_addr().unwrap().port();
        let free = crate::net::free_ports(2).unwrap();
        let free = free.into_iter().find(|&port| port != taken).unwrap();
        for (port, peer_port) in [(taken, free), (free, taken)] {
            let server = unstarted(port, peer_port);
            let err = server.launch().unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
            assert!(err.to_string().contains("last lines of"), "{err}");
            assert!(!server.is_running());
        }
    }

    #[test]
    fn client_port_taken_by_another_etcd_is_addr_in_use() {
        let first = Etcd::start().unwrap();
        let peer_port = crate::net::free_port().unwrap();
        let second = unstarted(first.port(), peer_port);
        let err = second.launch().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
        assert!(!second.is_running());
        first.put("k", "v").unwrap();
    }

    #[test]
    fn base64_decodes() {
        assert_eq!(decode_base64("").unwrap(), b"");
        assert_eq!(decode_base64("YQ==").unwrap(), b"a");
        assert_eq!(decode_base64("YWI=").unwrap(), b"ab");
        assert_eq!(decode_base64("YWJj").unwrap(), b"abc");
        assert_eq!(decode_base64("YQpi").unwrap(), b"a\nb");
        assert_eq!(decode_base64("+/+/").unwrap(), [0xfb, 0xff, 0xbf]);
        for bad in ["Y", "YQ=", "Y===", "YQ==YQ==", "Y!==", "YQ=a"] {
            assert!(decode_base64(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn etcdctl_json_is_parsed() {
        let json = r#"{"header":{"cluster_id":324952591200643719,"member_id":3319814642761637952,"revision":4,"raft_term":2},"kvs":[{"key":"LWs=","create_revision":2,"mod_revision":2,"version":1,"value":"LXY="},{"key":"ZW1wdHk=","create_revision":3,"mod_revision":3,"version":1},{"key":"bmw=","create_revision":4,"mod_revision":4,"version":1,"value":"YQpi","lease":7587}],"count":3}"#;
        assert_eq!(
            parse_kvs(json).unwrap(),
            [
                ("-k".to_owned(), "-v".to_owned()),
                ("empty".to_owned(), String::new()),
                ("nl".to_owned(), "a\nb".to_owned()),
            ]
        );
        assert_eq!(json_integer(json, "revision"), Some(4));
        assert_eq!(json_integer(json, "missing"), None);
        let empty = r#"{"header":{"cluster_id":1,"member_id":2,"revision":2,"raft_term":2}}"#;
        assert!(parse_kvs(empty).unwrap().is_empty());
        assert!(parse_kvs(r#"{"kvs":[{"key":"%%%%"}]}"#).is_err());
        assert!(parse_kvs(r#"{"kvs":[{"value":"YQ=="}]}"#).is_err());
    }
}
