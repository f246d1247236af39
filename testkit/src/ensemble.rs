//! A ZooKeeper quorum of several servers on loopback.

use std::io;
use std::thread;
use std::time::{Duration, Instant};

use crate::install::ensure_installed;
use crate::net::free_ports;
use crate::zookeeper::{ZooKeeper, POLL_INTERVAL, PORT_ATTEMPTS, START_TIMEOUT};

/// N ZooKeeper servers forming a quorum on 127.0.0.1 (3 is typical).
///
/// Each server has its own client, peer and election ports and its own
/// temporary directory (see [`ZooKeeper`]); servers are numbered from 0 by
/// index (their ZooKeeper `myid` is index + 1). Dropping the ensemble kills
/// every server.
///
/// With `n == 1` the single server runs in standalone mode.
#[derive(Debug)]
pub struct Ensemble {
    servers: Vec<ZooKeeper>,
}

impl Ensemble {
    /// Starts `n` servers as one quorum and waits (up to 60 s) until every
    /// one of them serves requests (`srvr` reports `Mode: leader` or
    /// `Mode: follower`).
    ///
    /// Installs Debian's `zookeeper` package first if it is missing. If a
    /// chosen port is taken by another process in the meantime, retries
    /// with new ports a few times.
    ///
    /// # Errors
    ///
    /// Fails if `n` is 0, if the package cannot be installed, or if a
    /// server fails to start or to join the quorum in time; the error then
    /// includes the tail of that server's log.
    pub fn start(n: usize) -> io::Result<Ensemble> {
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "an ensemble needs at least one server",
            ));
        }
        ensure_installed(&["zookeeper"])?;
        let mut last_error = None;
        for _ in 0..PORT_ATTEMPTS {
            match Ensemble::try_start(n) {
                Ok(ensemble) => return Ok(ensemble),
                Err(err) if err.kind() == io::ErrorKind::AddrInUse => last_error = Some(err),
                Err(err) => return Err(err),
            }
        }
        Err(last_error
            .unwrap_or_else(|| io::Error::other("no attempt to start the ensemble was made")))
    }

    /// One attempt at starting the ensemble with fresh ports.
    fn try_start(n: usize) -> io::Result<Ensemble> {
        // Per server: client port, quorum (peer) port, election port.
        let ports = free_ports(3 * n)?;
        let mut server_lines = String::new();
        if n > 1 {
            for i in 0..n {
                server_lines.push_str(&format!(
                    "server.{id}=127.0.0.1:{peer}:{election}\n",
                    id = i + 1,
                    peer = ports[3 * i + 1],
                    election = ports[3 * i + 2],
                ));
            }
        }
        let mut servers = Vec::with_capacity(n);
        for i in 0..n {
            let port = ports[3 * i];
            let label = format!(
                "ZooKeeper ensemble server {i} of {n} (myid {}, 127.0.0.1:{port})",
                i + 1
            );
            let myid = u32::try_from(i + 1).map_err(io::Error::other)?;
            servers.push(ZooKeeper::prepare(
                label,
                port,
                (n > 1).then_some(myid),
                &server_lines,
            )?);
        }
        // Dropping `ensemble` on an error below kills whatever was spawned.
        let ensemble = Ensemble { servers };
        for server in &ensemble.servers {
            server.spawn()?;
        }
        let deadline = Instant::now() + START_TIMEOUT;
        for server in &ensemble.servers {
            server.wait_ready(deadline, true)?;
        }
        Ok(ensemble)
    }

    /// Number of servers (running or stopped).
    pub fn len(&self) -> usize {
        self.servers.len()
    }

    /// Always false: an ensemble has at least one server.
    pub fn is_empty(&self) -> bool {
        self.servers.is_empty()
    }

    /// The client connect string for all servers,
    /// `"127.0.0.1:P1,127.0.0.1:P2,..."`.
    pub fn connect_string(&self) -> String {
        self.servers
            .iter()
            .map(ZooKeeper::connect_string)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Server `i` (0-based), e.g. for its port or four-letter words.
    ///
    /// # Panics
    ///
    /// Panics if `i >= self.len()`.
    pub fn server(&self, i: usize) -> &ZooKeeper {
        &self.servers[i]
    }

    /// All servers, in index order.
    pub fn servers(&self) -> &[ZooKeeper] {
        &self.servers
    }

    /// Stops server `i` (SIGKILL, like a crash), keeping its data. Does
    /// nothing if it is already stopped.
    ///
    /// # Panics
    ///
    /// Panics if `i >= self.len()`.
    pub fn stop(&mut self, i: usize) {
        self.servers[i].stop();
    }

    /// Starts stopped server `i` again with the same ports and data. Does
    /// nothing if it is running.
    ///
    /// If a quorum of servers is running with it, waits (up to 60 s) until
    /// it serves (has joined the quorum); otherwise only until it answers
    /// `ruok`, since it cannot serve before more servers are back (use
    /// [`wait_for_leader`](Self::wait_for_leader) after restarting them).
    ///
    /// # Errors
    ///
    /// Fails if the server cannot be launched or does not become ready in
    /// time.
    ///
    /// # Panics
    ///
    /// Panics if `i >= self.len()`.
    pub fn start_again(&mut self, i: usize) -> io::Result<()> {
        let server = &self.servers[i];
        if server.is_running() {
            return Ok(());
        }
        let running_after = self.running_count() + 1;
        let quorum = self.servers.len() / 2 + 1;
        self.servers[i].launch(Instant::now() + START_TIMEOUT, running_after >= quorum)
    }

    /// Whether server `i` is running.
    ///
    /// # Panics
    ///
    /// Panics if `i >= self.len()`.
    pub fn is_running(&self, i: usize) -> bool {
        self.servers[i].is_running()
    }

    /// Index of the server that currently reports `Mode: leader` (or
    /// `Mode: standalone` for a one-server ensemble), if any.
    pub fn leader_index(&self) -> Option<usize> {
        self.servers.iter().position(|server| {
            server.is_running() && matches!(server.mode().as_deref(), Some("leader" | "standalone"))
        })
    }

    /// Waits until a quorum serves: a running server reports `leader` and a
    /// majority of all servers report `leader` or `follower`. Returns the
    /// leader's index. Useful after stopping the leader.
    ///
    /// # Errors
    ///
    /// Fails with [`io::ErrorKind::TimedOut`] if that does not happen
    /// within `timeout`.
    pub fn wait_for_leader(&self, timeout: Duration) -> io::Result<usize> {
        let deadline = Instant::now() + timeout;
        let quorum = self.servers.len() / 2 + 1;
        loop {
            let modes: Vec<Option<String>> = self
                .servers
                .iter()
                .map(|server| server.is_running().then(|| server.mode()).flatten())
                .collect();
            let leader = modes
                .iter()
                .position(|mode| matches!(mode.as_deref(), Some("leader" | "standalone")));
            let serving = modes
                .iter()
                .filter(|mode| {
                    matches!(mode.as_deref(), Some("leader" | "follower" | "standalone"))
                })
                .count();
            if let Some(leader) = leader {
                if serving >= quorum {
                    return Ok(leader);
                }
            }
            if Instant::now() >= deadline {
                let states: Vec<String> = self
                    .servers
                    .iter()
                    .zip(&modes)
                    .map(|(server, mode)| {
                        let state = match (server.is_running(), mode) {
                            (false, _) => "stopped",
                            (true, Some(mode)) => mode.as_str(),
                            (true, None) => "not serving",
                        };
                        format!("{}: {state}", server.label())
                    })
                    .collect();
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "no quorum with a leader within {timeout:?}; servers: {}",
                        states.join("; ")
                    ),
                ));
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    /// Number of running servers.
    fn running_count(&self) -> usize {
        self.servers
            .iter()
            .filter(|server| server.is_running())
            .count()
    }
}
