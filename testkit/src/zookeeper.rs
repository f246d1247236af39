//! One ZooKeeper server process (standalone, or a member of an [`Ensemble`]).
//!
//! [`Ensemble`]: crate::Ensemble

use std::fs::{self, File, OpenOptions};
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::install::ensure_installed;
use crate::net::on_a_free_port;
use crate::net::{four_letter_word, four_letter_word_with_timeout, free_ports};
use crate::process::{failure_with_logs, ChildSlot};
use crate::tls::{ClientAuth, TestCerts};

/// How long a server may take to start serving.
pub(crate) const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Timeout of each readiness probe: a server that is still starting may
/// accept a connection and never answer it, so probes give up quickly and
/// are retried.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// How often readiness is polled.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// How many times a start is attempted when the chosen port turns out to be
/// taken by someone else.
pub(crate) use crate::net::PORT_ATTEMPTS;

/// Directory holding Debian's ZooKeeper jars and their dependencies.
const JAVA_SHARE: &str = "/usr/share/java";

/// The ZooKeeper server entry point (standalone and quorum).
const MAIN_CLASS: &str = "org.apache.zookeeper.server.quorum.QuorumPeerMain";

/// Netty jars the server's secure client port needs besides those that
/// `zookeeper.jar`'s manifest lists (Debian's netty jars list none of
/// their own dependencies).
const NETTY_JARS: [&str; 3] = [
    "netty-codec.jar",
    "netty-resolver.jar",
    "netty-transport-native-unix-common.jar",
];

/// A ZooKeeper server running as a child `java` process on a free loopback
/// port, with its configuration, data and logs in a temporary directory.
///
/// Created by [`ZooKeeper::start`] (standalone) or as part of an
/// [`Ensemble`](crate::Ensemble). Dropping it kills the process and removes
/// the temporary directory.
///
/// The server is configured for tests: `tickTime=500` (so sessions may be
/// as short as 1 s; the negotiated range is 1 s to 60 s), every
/// four-letter-word command allowed, no admin server, no per-client
/// connection limit, no fsync. Its logs go to files in the temporary
/// directory (see [`ZooKeeper::log_file`]), never to the test's output.
#[derive(Debug)]
pub struct ZooKeeper {
    /// Holds zoo.cfg, log4j.properties, data/ and the log files.
    dir: TempDir,
    /// Canonical path of `dir`: the JVM's `user.dir`, used to recognise
    /// our own server behind the port.
    canonical_dir: PathBuf,
    /// Client port on 127.0.0.1.
    port: u16,
    /// TLS client port on 127.0.0.1, for servers started with
    /// [`ZooKeeper::start_tls`].
    secure_port: Option<u16>,
    /// Human-readable name for error messages.
    label: String,
    /// The java process while running.
    child: ChildSlot,
}

impl ZooKeeper {
    /// Starts a standalone ZooKeeper server on a free port of 127.0.0.1 and
    /// waits (up to 60 s) until it serves requests: it answers `ruok` with
    /// `imok` and `srvr` with a `Mode:` line.
    ///
    /// Installs Debian's `zookeeper` package first if it is missing (see
    /// [`ensure_installed`]). If the chosen port is taken by another
    /// process in the meantime, retries with a new port a few times.
    ///
    /// # Errors
    ///
    /// Fails if the package cannot be installed, java cannot be launched,
    /// or the server does not become ready in time; the error message then
    /// includes the tail of the server's log.
    pub fn start() -> io::Result<ZooKeeper> {
        ensure_installed(&["zookeeper"])?;
        on_a_free_port("ZooKeeper", |port| {
            let label = format!("standalone ZooKeeper on 127.0.0.1:{port}");
            let server = ZooKeeper::prepare(label, port, None, "")?;
            server.launch(Instant::now() + START_TIMEOUT, true)?;
            Ok(server)
        })
    }

    /// Starts a standalone ZooKeeper server like [`start`](Self::start)
    /// that also serves TLS on a second port of 127.0.0.1 (its secure client
    /// port), with `certs`' server certificate; with [`ClientAuth::Need`]
    /// TLS clients must present a certificate signed by `certs`' CA.
    ///
    /// The plain client port stays open (readiness probes and
    /// four-letter words use it). Waits (up to 60 s) until the server
    /// serves requests and the secure port accepts connections.
    ///
    /// ```no_run
    /// use testkit::{ClientAuth, TestCerts, ZooKeeper};
    ///
    /// let certs = TestCerts::generate()?;
    /// let zk = ZooKeeper::start_tls(&certs, ClientAuth::None)?;
    /// let tls_hosts = zk.secure_connect_string(); // Some("127.0.0.1:PORT")
    /// # let _ = tls_hosts;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As for [`start`](Self::start), and if the certificate files cannot
    /// be written or the secure port does not open in time.
    pub fn start_tls(certs: &TestCerts, client_auth: ClientAuth) -> io::Result<ZooKeeper> {
        ensure_installed(&["zookeeper"])?;
        let mut last_error = None;
        for _ in 0..PORT_ATTEMPTS {
            let ports = free_ports(2)?;
            let (port, secure_port) = (ports[0], ports[1]);
            let label = format!(
                "standalone ZooKeeper on 127.0.0.1:{port} (TLS on 127.0.0.1:{secure_port})"
            );
            let mut server = ZooKeeper::prepare(label, port, None, "")?;
            server.enable_tls(certs, client_auth, secure_port)?;
            let deadline = Instant::now() + START_TIMEOUT;
            let result = server
                .launch(deadline, true)
                .and_then(|()| server.wait_secure_port(deadline));
            match result {
                Ok(()) => return Ok(server),
                Err(err) if err.kind() == io::ErrorKind::AddrInUse => last_error = Some(err),
                Err(err) => return Err(err),
            }
        }
        Err(last_error
            .unwrap_or_else(|| io::Error::other("no attempt to start ZooKeeper was made")))
    }

    /// The client connect string, `"127.0.0.1:PORT"`.
    pub fn connect_string(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The client port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The client address, `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// The TLS client port on 127.0.0.1; `None` unless started with
    /// [`start_tls`](Self::start_tls).
    pub fn secure_port(&self) -> Option<u16> {
        self.secure_port
    }

    /// The connect string of the TLS client port, `"127.0.0.1:PORT"`;
    /// `None` unless started with [`start_tls`](Self::start_tls).
    pub fn secure_connect_string(&self) -> Option<String> {
        self.secure_port.map(|port| format!("127.0.0.1:{port}"))
    }

    /// The server's data directory (snapshots and transaction logs). It
    /// survives [`stop`](Self::stop) and is removed on drop.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The server's log file (log4j output). The process's own
    /// stdout/stderr go to `stdout.log` next to it.
    pub fn log_file(&self) -> PathBuf {
        self.dir.path().join("zookeeper.log")
    }

    /// Whether the java process is running (started and not stopped or
    /// exited).
    pub fn is_running(&self) -> bool {
        self.child.is_running()
    }

    /// The java process's id while it runs (to read its CPU time or memory
    /// from `/proc/PID/`); `None` when it is stopped or has exited.
    pub fn pid(&self) -> Option<u32> {
        let mut child = self.child.lock();
        let running = child.as_mut()?;
        matches!(running.try_wait(), Ok(None)).then(|| running.id())
    }

    /// Stops the server: kills the java process (SIGKILL, like a crash) and
    /// waits for it to exit. The data directory is kept, so
    /// [`start_again`](Self::start_again) brings back the same data and
    /// sessions. Does nothing if the server is not running.
    pub fn stop(&mut self) {
        self.child.kill();
    }

    /// Starts a stopped server again on the same port with the same data,
    /// and waits (up to 60 s) until it serves requests. ZooKeeper persists
    /// sessions, so sessions whose timeout has not expired survive a short
    /// stop. Does nothing if the server is running.
    ///
    /// For a member of an [`Ensemble`](crate::Ensemble), serving requires a
    /// quorum; prefer [`Ensemble::start_again`](crate::Ensemble::start_again).
    ///
    /// # Errors
    ///
    /// Fails if java cannot be launched, if the port has been taken by
    /// another process meanwhile (kind [`io::ErrorKind::AddrInUse`]), or if
    /// the server does not become ready in time.
    pub fn start_again(&mut self) -> io::Result<()> {
        if self.is_running() {
            return Ok(());
        }
        self.launch(Instant::now() + START_TIMEOUT, true)
    }

    /// Sends a four-letter-word command (`ruok`, `srvr`, `mntr`, `cons`,
    /// `stat`, ...) to this server and returns the whole reply.
    ///
    /// # Errors
    ///
    /// Fails on invalid commands and connection or I/O errors (e.g. when
    /// the server is stopped).
    pub fn four_letter(&self, cmd: &str) -> io::Result<String> {
        four_letter_word(self.addr(), cmd)
    }

    /// The server's current mode from `srvr`: `"standalone"`, `"leader"`,
    /// `"follower"` or `"observer"`; `None` if it is not reachable or not
    /// serving (e.g. during leader election).
    pub fn mode(&self) -> Option<String> {
        mode_from_srvr(&self.four_letter("srvr").ok()?)
    }

    /// Sends a four-letter word with the short readiness-probe timeout.
    fn probe(&self, cmd: &str) -> io::Result<String> {
        four_letter_word_with_timeout(self.addr(), cmd, PROBE_TIMEOUT)
    }

    /// Creates the temporary directory, data directory and configuration
    /// for a server that is not started yet.
    ///
    /// `myid` is set for ensemble members, whose `server.N` lines come in
    /// `extra_config`.
    pub(crate) fn prepare(
        label: String,
        port: u16,
        myid: Option<u32>,
        extra_config: &str,
    ) -> io::Result<ZooKeeper> {
        let dir = tempfile::Builder::new()
            .prefix("testkit-zookeeper-")
            .tempdir()
            .map_err(|err| annotate(err, "cannot create a temporary directory for ZooKeeper"))?;
        let canonical_dir = dir
            .path()
            .canonicalize()
            .map_err(|err| annotate(err, "cannot resolve the temporary directory"))?;
        let data_dir = canonical_dir.join("data");
        fs::create_dir(&data_dir)
            .map_err(|err| annotate(err, &format!("cannot create {}", data_dir.display())))?;
        if let Some(id) = myid {
            write_file(&data_dir.join("myid"), &format!("{id}\n"))?;
        }
        let config = format!(
            "# Written by testkit.\n\
             tickTime=500\n\
             initLimit=20\n\
             syncLimit=10\n\
             dataDir={data}\n\
             clientPortAddress=127.0.0.1\n\
             clientPort={port}\n\
             maxClientCnxns=0\n\
             minSessionTimeout=1000\n\
             maxSessionTimeout=60000\n\
             4lw.commands.whitelist=*\n\
             admin.enableServer=false\n\
             {extra_config}",
            data = data_dir.display(),
        );
        write_file(&canonical_dir.join("zoo.cfg"), &config)?;
        let log4j = format!(
            "# Written by testkit: everything goes to a file, nothing to the console.\n\
             log4j.rootLogger=INFO, FILE\n\
             log4j.appender.FILE=org.apache.log4j.FileAppender\n\
             log4j.appender.FILE.File={log}\n\
             log4j.appender.FILE.Append=true\n\
             log4j.appender.FILE.layout=org.apache.log4j.PatternLayout\n\
             log4j.appender.FILE.layout.ConversionPattern=%d{{ISO8601}} - %-5p [%t:%C{{1}}@%L] - %m%n\n",
            log = canonical_dir.join("zookeeper.log").display(),
        );
        write_file(&canonical_dir.join("log4j.properties"), &log4j)?;
        Ok(ZooKeeper {
            dir,
            canonical_dir,
            port,
            secure_port: None,
            label,
            child: ChildSlot::default(),
        })
    }

    /// Writes `certs`' server key and certificate and its CA into the
    /// server's directory and configures a secure client port for them
    /// (Netty connection factory, PEM key and trust stores).
    fn enable_tls(
        &mut self,
        certs: &TestCerts,
        client_auth: ClientAuth,
        secure_port: u16,
    ) -> io::Result<()> {
        let dir = &self.canonical_dir;
        // ZooKeeper's PEM key store: the private key and the certificate
        // chain in one file.
        let key_store = dir.join("server-keystore.pem");
        write_file(
            &key_store,
            &format!("{}{}", certs.server_key_pem, certs.server_cert_pem),
        )?;
        let trust_store = dir.join("ca.pem");
        write_file(&trust_store, &certs.ca_pem)?;
        let config = format!(
            "secureClientPortAddress=127.0.0.1\n\
             secureClientPort={secure_port}\n\
             serverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory\n\
             ssl.keyStore.location={key_store}\n\
             ssl.keyStore.type=PEM\n\
             ssl.trustStore.location={trust_store}\n\
             ssl.trustStore.type=PEM\n\
             ssl.clientAuth={client_auth}\n",
            key_store = key_store.display(),
            trust_store = trust_store.display(),
            client_auth = client_auth.zookeeper_value(),
        );
        let cfg = dir.join("zoo.cfg");
        let mut file = OpenOptions::new()
            .append(true)
            .open(&cfg)
            .map_err(|err| annotate(err, &format!("cannot open {}", cfg.display())))?;
        {
            use std::io::Write as _;
            file.write_all(config.as_bytes())
                .map_err(|err| annotate(err, &format!("cannot write {}", cfg.display())))?;
        }
        self.secure_port = Some(secure_port);
        Ok(())
    }

    /// Waits until the secure client port (if any) accepts TCP
    /// connections: the server opens it after the plain port.
    fn wait_secure_port(&self, deadline: Instant) -> io::Result<()> {
        let Some(secure_port) = self.secure_port else {
            return Ok(());
        };
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, secure_port));
        loop {
            let in_use = self.log_mentions_address_in_use();
            if !in_use && TcpStream::connect_timeout(&addr, PROBE_TIMEOUT).is_ok() {
                return Ok(());
            }
            let exited = self.exit_status();
            if in_use || exited.is_some() || Instant::now() >= deadline {
                let kind = if in_use {
                    io::ErrorKind::AddrInUse
                } else {
                    io::ErrorKind::TimedOut
                };
                let what = match exited {
                    Some(status) => format!("exited before opening its secure port ({status})"),
                    None => format!("did not open its secure port within {START_TIMEOUT:?}"),
                };
                let err = self.failure(kind, &what);
                self.child.kill();
                return Err(err);
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    /// Spawns the java process and waits until it is ready (see
    /// [`wait_ready`](Self::wait_ready)); kills it again if that fails.
    pub(crate) fn launch(&self, deadline: Instant, require_serving: bool) -> io::Result<()> {
        self.spawn()?;
        let result = self.wait_ready(deadline, require_serving);
        if result.is_err() {
            self.child.kill();
        }
        result
    }

    /// Spawns the java process (if not running) without waiting for it.
    pub(crate) fn spawn(&self) -> io::Result<()> {
        let mut child = self.child.lock();
        if let Some(running) = child.as_mut() {
            if matches!(running.try_wait(), Ok(None)) {
                return Ok(());
            }
        }
        let dir = &self.canonical_dir;
        let stdout_path = dir.join("stdout.log");
        let stdout = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&stdout_path)
            .map_err(|err| annotate(err, &format!("cannot open {}", stdout_path.display())))?;
        let stderr = stdout
            .try_clone()
            .map_err(|err| annotate(err, "cannot duplicate the log file handle"))?;
        let java = java_binary();
        let spawned = Command::new(&java)
            .arg("-cp")
            .arg(classpath()?)
            .args([
                "-Xmx512m",
                "-XX:+UseSerialGC",
                "-XX:TieredStopAtLevel=1",
                "-XX:-UsePerfData",
                "-Djava.net.preferIPv4Stack=true",
                "-Dzookeeper.preAllocSize=1024",
                "-Dzookeeper.forceSync=no",
            ])
            .arg(format!(
                "-Dlog4j.configuration=file:{}",
                dir.join("log4j.properties").display()
            ))
            .arg(MAIN_CLASS)
            .arg(dir.join("zoo.cfg"))
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .map_err(|err| {
                annotate(
                    err,
                    &format!("cannot launch {} for the {}", java.display(), self.label),
                )
            })?;
        *child = Some(spawned);
        Ok(())
    }

    /// Waits until the server answers `ruok` with `imok` and, if
    /// `require_serving`, `srvr` with a `Mode:` line (a quorum member only
    /// serves once it has joined a quorum).
    ///
    /// Errors of kind [`io::ErrorKind::AddrInUse`] mean one of the
    /// server's ports was taken by another process.
    pub(crate) fn wait_ready(&self, deadline: Instant, require_serving: bool) -> io::Result<()> {
        let mut identity_checked = false;
        loop {
            if let Some(status) = self.exit_status() {
                let kind = if self.log_mentions_address_in_use() {
                    io::ErrorKind::AddrInUse
                } else {
                    io::ErrorKind::Other
                };
                return Err(self.failure(kind, &format!("exited during startup ({status})")));
            }
            if matches!(self.probe("ruok"), Ok(reply) if reply.trim() == "imok") {
                if !identity_checked {
                    // Something answers on our port: make sure it is our
                    // process and not a server that grabbed the port first.
                    if !self.answering_server_is_ours() {
                        return Err(self.failure(
                            io::ErrorKind::AddrInUse,
                            "port is used by another ZooKeeper server",
                        ));
                    }
                    identity_checked = true;
                }
                if !require_serving
                    || self
                        .probe("srvr")
                        .ok()
                        .and_then(|r| mode_from_srvr(&r))
                        .is_some()
                {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                let kind = if self.log_mentions_address_in_use() {
                    io::ErrorKind::AddrInUse
                } else {
                    io::ErrorKind::TimedOut
                };
                let what = if require_serving {
                    "did not start serving (ruok -> imok and srvr -> Mode:)"
                } else {
                    "did not answer ruok"
                };
                return Err(self.failure(kind, &format!("{what} within {START_TIMEOUT:?}")));
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    /// The label used in error messages.
    pub(crate) fn label(&self) -> &str {
        &self.label
    }

    /// The exit status if the process was started and has exited.
    fn exit_status(&self) -> Option<ExitStatus> {
        self.child.exit_status()
    }

    /// Whether the server answering on our port runs in our directory
    /// (`envi` reports the JVM's `user.dir`, which we set).
    fn answering_server_is_ours(&self) -> bool {
        match self.probe("envi") {
            Ok(reply) => reply
                .lines()
                .filter_map(|line| line.strip_prefix("user.dir="))
                .any(|dir| Path::new(dir.trim()) == self.canonical_dir),
            // Could not ask: do not claim a conflict.
            Err(_) => true,
        }
    }

    /// Whether the logs report a port that could not be bound.
    fn log_mentions_address_in_use(&self) -> bool {
        ["zookeeper.log", "stdout.log"].iter().any(|name| {
            fs::read_to_string(self.canonical_dir.join(name))
                .map(|text| text.contains("Address already in use"))
                .unwrap_or(false)
        })
    }

    /// An error about this server, with the tail of its logs.
    fn failure(&self, kind: io::ErrorKind, what: &str) -> io::Error {
        let logs = ["zookeeper.log", "stdout.log"].map(|name| self.canonical_dir.join(name));
        failure_with_logs(kind, format!("{} {what}", self.label), &logs)
    }
}

impl Drop for ZooKeeper {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The `Mode:` of a `srvr` reply, if any.
fn mode_from_srvr(reply: &str) -> Option<String> {
    reply
        .lines()
        .find_map(|line| line.strip_prefix("Mode:"))
        .map(|mode| mode.trim().to_owned())
}

/// The `java` to run: `$JAVA_HOME/bin/java`, else `/usr/bin/java`, else
/// `java` from `PATH`.
fn java_binary() -> PathBuf {
    if let Some(home) = std::env::var_os("JAVA_HOME") {
        let java = Path::new(&home).join("bin").join("java");
        if java.is_file() {
            return java;
        }
    }
    let system = PathBuf::from("/usr/bin/java");
    if system.is_file() {
        system
    } else {
        PathBuf::from("java")
    }
}

/// The server classpath from Debian's jars: `zookeeper.jar` (whose manifest
/// lists its dependencies), the netty jars it misses (see [`NETTY_JARS`]),
/// plus an SLF4J binding to log4j 1.2 so that the server's logs go where our
/// log4j.properties says.
fn classpath() -> io::Result<String> {
    let share = Path::new(JAVA_SHARE);
    let zookeeper = share.join("zookeeper.jar");
    if !zookeeper.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "{} not found; install Debian's `zookeeper` package",
                zookeeper.display()
            ),
        ));
    }
    let mut entries = vec![zookeeper];
    for jar in NETTY_JARS
        .iter()
        .chain(&["slf4j-log4j12.jar", "log4j-1.2.jar"])
    {
        let path = share.join(jar);
        if path.is_file() {
            entries.push(path);
        }
    }
    let entries: Vec<String> = entries.iter().map(|p| p.display().to_string()).collect();
    Ok(entries.join(":"))
}

/// Writes `contents` to `path`, with the path in the error message.
fn write_file(path: &Path, contents: &str) -> io::Result<()> {
    let write = || -> io::Result<()> {
        use std::io::Write as _;
        let mut file = File::create(path)?;
        file.write_all(contents.as_bytes())?;
        file.sync_all()
    };
    write().map_err(|err| annotate(err, &format!("cannot write {}", path.display())))
}

/// Prefixes an error's message with some context, keeping its kind.
pub(crate) fn annotate(err: io::Error, context: &str) -> io::Error {
    io::Error::new(err.kind(), format!("{context}: {err}"))
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::net::{Ipv4Addr, SocketAddr, TcpListener};
    use std::time::{Duration, Instant};

    use super::ZooKeeper;
    use crate::net::four_letter_word_with_timeout;
    use crate::tls::{ClientAuth, TestCerts};

    #[test]
    fn port_taken_by_a_plain_listener_is_addr_in_use() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = ZooKeeper::prepare("conflicting server".into(), port, None, "").unwrap();
        let err = server
            .launch(Instant::now() + Duration::from_secs(60), true)
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
        assert!(err.to_string().contains("last lines of"), "{err}");
        assert!(!server.is_running());
    }

    #[test]
    fn port_taken_by_another_zookeeper_is_addr_in_use() {
        let first = ZooKeeper::start().unwrap();
        let second =
            ZooKeeper::prepare("conflicting server".into(), first.port(), None, "").unwrap();
        let err = second
            .launch(Instant::now() + Duration::from_secs(60), true)
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
        assert!(!second.is_running());
        assert_eq!(first.four_letter("ruok").unwrap(), "imok");
    }

    #[test]
    fn tls_server_serves_tls_on_its_secure_port_only() {
        for client_auth in [ClientAuth::None, ClientAuth::Need] {
            let certs = TestCerts::generate().unwrap();
            let server = ZooKeeper::start_tls(&certs, client_auth).unwrap();
            let secure_port = server.secure_port().unwrap();
            assert_ne!(secure_port, server.port());
            assert_eq!(
                server.secure_connect_string().unwrap(),
                format!("127.0.0.1:{secure_port}")
            );
            let config = std::fs::read_to_string(server.data_dir().join("../zoo.cfg")).unwrap();
            let expected = format!("ssl.clientAuth={}", client_auth.zookeeper_value());
            assert!(config.contains(&expected), "{config}");
            // The plain port still answers four-letter words; the secure
            // port does not answer plaintext.
            assert_eq!(server.four_letter("ruok").unwrap(), "imok");
            let secure = SocketAddr::from((Ipv4Addr::LOCALHOST, secure_port));
            let plaintext = four_letter_word_with_timeout(secure, "ruok", Duration::from_secs(5));
            assert!(!matches!(plaintext, Ok(reply) if reply == "imok"));
        }
        assert_eq!(ZooKeeper::start().unwrap().secure_port(), None);
    }
}
