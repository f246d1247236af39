//! Small loopback networking helpers.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

/// Timeout for connecting, writing and reading in [`four_letter_word`].
const FOUR_LETTER_TIMEOUT: Duration = Duration::from_secs(5);

/// Returns a TCP port on 127.0.0.1 that was free a moment ago.
///
/// The port is found by binding `127.0.0.1:0` and dropping the listener, so
/// another process may grab it before the caller binds it; callers that
/// start servers should retry with a new port on "address in use".
///
/// # Errors
///
/// Fails if binding a loopback socket fails.
pub fn free_port() -> io::Result<u16> {
    Ok(free_ports(1)?[0])
}

/// Returns `n` distinct TCP ports on 127.0.0.1 that were free a moment ago.
///
/// All listeners are held at the same time, so the ports are distinct; see
/// [`free_port`] for the inherent race.
///
/// # Errors
///
/// Fails if binding a loopback socket fails.
pub fn free_ports(n: usize) -> io::Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))
        .collect::<io::Result<Vec<_>>>()
        .map_err(|err| io::Error::new(err.kind(), format!("cannot bind 127.0.0.1:0: {err}")))?;
    listeners
        .iter()
        .map(|listener| listener.local_addr().map(|addr| addr.port()))
        .collect()
}

/// Returns `"127.0.0.1:PORT"` for a port nothing listens on (it was free a
/// moment ago), for tests of unreachable servers: connecting to it is
/// refused.
///
/// Like [`free_port`], the port might be taken by someone else later.
///
/// # Errors
///
/// Fails if binding a loopback socket fails.
pub fn dead_endpoint() -> io::Result<String> {
    Ok(format!("127.0.0.1:{}", free_port()?))
}

/// Sends a ZooKeeper four-letter-word command (`ruok`, `srvr`, `mntr`,
/// `cons`, `stat`, ...) to `addr` and returns the whole reply.
///
/// The server must allow the command (`4lw.commands.whitelist`); servers
/// started by this crate allow all of them.
///
/// # Errors
///
/// Fails if `cmd` is not four ASCII letters, or on connection or I/O errors
/// (each step has a 5 s timeout).
pub fn four_letter_word(addr: SocketAddr, cmd: &str) -> io::Result<String> {
    four_letter_word_with_timeout(addr, cmd, FOUR_LETTER_TIMEOUT)
}

/// [`four_letter_word`] with a custom timeout for each step.
///
/// Readiness probes use a short one: a server that is still starting may
/// accept a connection and never answer it.
pub(crate) fn four_letter_word_with_timeout(
    addr: SocketAddr,
    cmd: &str,
    timeout: Duration,
) -> io::Result<String> {
    if cmd.len() != 4 || !cmd.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("four-letter word must be 4 ASCII letters, got {cmd:?}"),
        ));
    }
    let with_context = |err: io::Error| {
        io::Error::new(
            err.kind(),
            format!("four-letter word {cmd} to {addr}: {err}"),
        )
    };
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(with_context)?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(with_context)?;
    stream
        .set_write_timeout(Some(timeout))
        .map_err(with_context)?;
    stream.write_all(cmd.as_bytes()).map_err(with_context)?;
    // The server closes the connection after replying; a failing half-close
    // does not matter.
    let _ = stream.shutdown(Shutdown::Write);
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).map_err(with_context)?;
    Ok(String::from_utf8_lossy(&reply).into_owned())
}

/// How many fresh ports a server start tries before giving up.
pub(crate) const PORT_ATTEMPTS: usize = 5;

/// Runs `start` on a fresh free port of 127.0.0.1, again on another one
/// (up to [`PORT_ATTEMPTS`] times) when the port was taken meanwhile
/// (`AddrInUse`); any other failure is returned at once. `what` names
/// the server in the error when no attempt was made.
pub(crate) fn on_a_free_port<T>(
    what: &str,
    mut start: impl FnMut(u16) -> io::Result<T>,
) -> io::Result<T> {
    let mut last_error = None;
    for _ in 0..PORT_ATTEMPTS {
        match start(free_port()?) {
            Ok(started) => return Ok(started),
            Err(err) if err.kind() == io::ErrorKind::AddrInUse => last_error = Some(err),
            Err(err) => return Err(err),
        }
    }
    Err(last_error
        .unwrap_or_else(|| io::Error::other(format!("no attempt to start {what} was made"))))
}

/// How many established TCP connections (IPv4, from `/proc/net/tcp`) this
/// process has to `port` on any address: to check that a client keeps one
/// connection per server.
pub fn connections_to(port: u16) -> io::Result<usize> {
    let mut ours = std::collections::HashSet::new();
    for entry in std::fs::read_dir("/proc/self/fd")? {
        let Ok(link) = std::fs::read_link(entry?.path()) else {
            continue; // closed meanwhile
        };
        let link = link.to_string_lossy();
        if let Some(inode) = link
            .strip_prefix("socket:[")
            .and_then(|rest| rest.strip_suffix(']'))
        {
            ours.insert(inode.to_owned());
        }
    }
    let remote = format!(":{port:04X}");
    let table = std::fs::read_to_string("/proc/net/tcp")?;
    Ok(table
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // remote address, state (01 = ESTABLISHED), inode
            fields.len() > 9
                && fields[2].ends_with(&remote)
                && fields[3] == "01"
                && ours.contains(fields[9])
        })
        .count())
}
