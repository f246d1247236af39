//! A headless Chromium behind chromedriver, for tests of web pages in a
//! real browser.
//!
//! The harness only manages the chromedriver process; a test talks
//! WebDriver to it with a client of its choice (e.g. `fantoccini`), asking
//! for a session with the capabilities from [`Browser::capabilities_json`]
//! (or its own, built from [`Browser::chromium_binary`] and
//! [`Browser::chromium_args`]).

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::install::ensure_installed;
use crate::net::on_a_free_port;
use crate::zookeeper::annotate;

/// Debian's Chromium binary (package `chromium`).
const CHROMIUM_BINARY: &str = "/usr/bin/chromium";

/// Debian's chromedriver binary (package `chromium-driver`).
const CHROMEDRIVER_BINARY: &str = "/usr/bin/chromedriver";

/// How long chromedriver may take to answer `GET /status` as ready.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Timeout of each readiness probe and of the shutdown request.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// How often readiness is polled.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Number of log lines included in error messages.
const LOG_TAIL_LINES: usize = 30;

/// Chromium's flags besides `--user-data-dir`: headless, and no traffic of
/// its own (updates, sync, field trials, QUIC probes...), so that a page
/// only ever talks to the servers the test points it at; on a machine
/// without a network Chromium's own connections would be refused anyway.
const CHROMIUM_FLAGS: [&str; 13] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--window-size=1280,900",
];

/// A chromedriver process on a free port of 127.0.0.1, which starts a
/// headless Chromium for each WebDriver session asked of it.
///
/// Created by [`Browser::start`], which installs Debian's `chromium` and
/// `chromium-driver` packages first if they are missing. chromedriver runs
/// in a process group of its own; dropping the value ends every session's
/// browser (chromedriver's `/shutdown`), then kills the whole group (so no
/// Chromium process outlives a failed test) and removes the temporary
/// directory holding the logs and browser profiles.
///
/// ```no_run
/// let browser = testkit::Browser::start()?;
/// let url = browser.webdriver_url(); // "http://127.0.0.1:PORT"
/// let capabilities = browser.capabilities_json()?; // {"goog:chromeOptions": ...}
/// # let _ = (url, capabilities);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct Browser {
    /// Holds chromedriver's log and the browser profiles.
    dir: TempDir,
    /// chromedriver's port on 127.0.0.1.
    port: u16,
    /// The chromedriver process (leader of its own process group).
    child: Mutex<Option<Child>>,
    /// Profiles handed out so far (each session gets a fresh one).
    profiles: AtomicUsize,
}

impl Browser {
    /// Installs Chromium and chromedriver if needed, starts chromedriver
    /// on a free port of 127.0.0.1 and waits (up to 60 s) until its
    /// `GET /status` reports it ready. Retries with another port a few
    /// times if the chosen one was taken meanwhile.
    ///
    /// # Errors
    ///
    /// Fails if the packages cannot be installed, chromedriver cannot be
    /// launched or does not become ready in time; the error then includes
    /// the tail of its log.
    pub fn start() -> io::Result<Browser> {
        ensure_installed(&["chromium", "chromium-driver"])?;
        on_a_free_port("chromedriver", |port| {
            let dir = tempfile::Builder::new()
                .prefix("testkit-browser-")
                .tempdir()
                .map_err(|err| annotate(err, "cannot create a temporary directory"))?;
            let browser = Browser {
                dir,
                port,
                child: Mutex::new(None),
                profiles: AtomicUsize::new(0),
            };
            browser.launch()?;
            Ok(browser)
        })
    }

    /// The WebDriver endpoint: `http://127.0.0.1:PORT`.
    pub fn webdriver_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// chromedriver's address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// The Chromium binary sessions should run (`goog:chromeOptions`'
    /// `binary`).
    pub fn chromium_binary(&self) -> &'static str {
        CHROMIUM_BINARY
    }

    /// Chromium's command-line flags for one session (`goog:chromeOptions`'
    /// `args`): headless, no sandbox, no network traffic of its own, and a
    /// fresh `--user-data-dir` inside this value's temporary directory
    /// (each call makes a new one, so sessions never share a profile).
    ///
    /// # Errors
    ///
    /// Fails if the profile directory cannot be created.
    pub fn chromium_args(&self) -> io::Result<Vec<String>> {
        let n = self.profiles.fetch_add(1, Ordering::Relaxed);
        let profile = self.dir.path().join(format!("profile-{n}"));
        fs::create_dir(&profile)
            .map_err(|err| annotate(err, &format!("cannot create {}", profile.display())))?;
        let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|&f| f.to_owned()).collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        Ok(args)
    }

    /// The capabilities of a new session as a JSON object:
    /// `{"goog:chromeOptions": {"binary": ..., "args": [...]}}`, with
    /// [`chromium_args`](Self::chromium_args) (a fresh profile).
    ///
    /// # Errors
    ///
    /// Fails if the profile directory cannot be created.
    pub fn capabilities_json(&self) -> io::Result<String> {
        let args = self
            .chromium_args()?
            .iter()
            .map(|arg| json_string(arg))
            .collect::<Vec<_>>()
            .join(",");
        Ok(format!(
            r#"{{"goog:chromeOptions":{{"binary":{},"args":[{args}]}}}}"#,
            json_string(CHROMIUM_BINARY)
        ))
    }

    /// chromedriver's log file (its own log and the browsers' output).
    pub fn log_file(&self) -> PathBuf {
        self.dir.path().join("chromedriver.log")
    }

    /// The last lines of chromedriver's log, for failure messages.
    pub fn log_tail(&self) -> String {
        log_tail(&self.log_file())
    }

    /// Spawns chromedriver and waits until it is ready; kills it again if
    /// that fails.
    fn launch(&self) -> io::Result<()> {
        self.spawn()?;
        let result = self.wait_ready(Instant::now() + START_TIMEOUT);
        if result.is_err() {
            self.kill();
        }
        result
    }

    fn spawn(&self) -> io::Result<()> {
        let log_path = self.log_file();
        let log = File::create(&log_path)
            .map_err(|err| annotate(err, &format!("cannot create {}", log_path.display())))?;
        let log_err = log
            .try_clone()
            .map_err(|err| annotate(err, "cannot duplicate the log file handle"))?;
        let child = Command::new(CHROMEDRIVER_BINARY)
            .arg(format!("--port={}", self.port))
            .arg(format!(
                "--log-path={}",
                self.dir.path().join("driver.log").display()
            ))
            .current_dir(self.dir.path())
            // A group of its own: dropping kills chromedriver and every
            // browser it started.
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|err| {
                annotate(
                    err,
                    &format!(
                        "cannot launch {CHROMEDRIVER_BINARY} on 127.0.0.1:{}",
                        self.port
                    ),
                )
            })?;
        *self.lock() = Some(child);
        Ok(())
    }

    /// Waits until `GET /status` answers `"ready": true` while our process
    /// runs. Errors of kind [`io::ErrorKind::AddrInUse`] mean the port was
    /// taken.
    fn wait_ready(&self, deadline: Instant) -> io::Result<()> {
        loop {
            if let Some(status) = self.exit_status() {
                let kind = if self.log_mentions_port_taken() {
                    io::ErrorKind::AddrInUse
                } else {
                    io::ErrorKind::Other
                };
                return Err(self.failure(kind, &format!("exited during startup ({status})")));
            }
            if let Ok(body) = http_get(self.addr(), "/status") {
                let compact: String = body.chars().filter(|c| !c.is_whitespace()).collect();
                if compact.contains(r#""ready":true"#) {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                return Err(self.failure(
                    io::ErrorKind::TimedOut,
                    &format!("was not ready within {START_TIMEOUT:?}"),
                ));
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Child>> {
        self.child
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn exit_status(&self) -> Option<ExitStatus> {
        self.lock()
            .as_mut()
            .and_then(|child| child.try_wait().ok().flatten())
    }

    fn log_mentions_port_taken(&self) -> bool {
        let text = fs::read_to_string(self.log_file()).unwrap_or_default()
            + &fs::read_to_string(self.dir.path().join("driver.log")).unwrap_or_default();
        text.contains("Address already in use") || text.contains("bind() failed")
    }

    fn failure(&self, kind: io::ErrorKind, what: &str) -> io::Error {
        io::Error::new(
            kind,
            format!(
                "chromedriver on 127.0.0.1:{} {what}; last lines of {}:\n{}",
                self.port,
                self.log_file().display(),
                self.log_tail()
            ),
        )
    }

    /// Ends every session's browser, then kills chromedriver's whole
    /// process group and reaps chromedriver.
    fn kill(&self) {
        let Some(mut child) = self.lock().take() else {
            return;
        };
        if matches!(child.try_wait(), Ok(None)) {
            // Quits the browsers of sessions left open (a failed test).
            let _ = http_get(self.addr(), "/shutdown");
        }
        // The group id is chromedriver's pid; browsers that already
        // exited make no difference, and errors mean nothing is left.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", child.id())])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `GET path` over HTTP/1.1 (chromedriver refuses 1.0), one request per
/// connection, with short timeouts; the body of a 200 response.
///
/// chromedriver keeps connections open whatever the request says, so the
/// body is read by its `Content-Length` (or up to the end of the stream if
/// there is none).
fn http_get(addr: SocketAddr, path: &str) -> io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, PROBE_TIMEOUT)?;
    stream.set_read_timeout(Some(PROBE_TIMEOUT))?;
    stream.set_write_timeout(Some(PROBE_TIMEOUT))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = find(&response, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&response[..end]).into_owned();
            let length = head.lines().find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.trim()
                    .eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse::<usize>().ok())
                    .flatten()
            });
            if length.is_some_and(|n| response.len() >= end + 4 + n) {
                let body = &response[end + 4..end + 4 + length.unwrap_or(0)];
                return http_body(&head, body);
            }
        }
        let n = stream.read(&mut buf)?;
        if n == 0 {
            let end = find(&response, b"\r\n\r\n")
                .ok_or_else(|| io::Error::other("incomplete HTTP response"))?;
            let head = String::from_utf8_lossy(&response[..end]).into_owned();
            return http_body(&head, &response[end + 4..]);
        }
        response.extend_from_slice(&buf[..n]);
    }
}

/// The body as text if the status line of `head` says 200.
fn http_body(head: &str, body: &[u8]) -> io::Result<String> {
    if !head.starts_with("HTTP/1.") || head.split(' ').nth(1) != Some("200") {
        return Err(io::Error::other(format!(
            "unexpected response: {}",
            head.lines().next().unwrap_or("")
        )));
    }
    Ok(String::from_utf8_lossy(body).into_owned())
}

/// The position of `needle` in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// `text` as a JSON string literal.
fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The last lines of the chromedriver log at `path` and of the driver's
/// verbose log beside it.
fn log_tail(path: &Path) -> String {
    let tail = |path: &Path| {
        let text = fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
    };
    let driver = path.with_file_name("driver.log");
    format!(
        "{}\n--- {}:\n{}\n",
        tail(path),
        driver.display(),
        tail(&driver)
    )
}

#[cfg(test)]
mod tests {
    use super::{http_get, json_string, Browser};

    #[test]
    fn chromedriver_starts_and_is_killed_on_drop() {
        let browser = Browser::start().unwrap();
        assert!(http_get(browser.addr(), "/status")
            .unwrap()
            .contains("ready"));
        assert!(browser.webdriver_url().starts_with("http://127.0.0.1:"));
        let caps = browser.capabilities_json().unwrap();
        assert!(caps.contains("--user-data-dir=") && caps.contains("profile-0"));
        assert!(browser.capabilities_json().unwrap().contains("profile-1"));
        let pid = browser.lock().as_ref().unwrap().id();
        let addr = browser.addr();
        drop(browser);
        assert!(http_get(addr, "/status").is_err());
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    }

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_string("a\"b\\c\n"), r#""a\"b\\c\u000a""#);
        assert_eq!(json_string("/tmp/x"), r#""/tmp/x""#);
    }
}
