//! The `serverset` CLI against a real ZooKeeper: register, watch (once and
//! streaming, filters, Finagle destinations), ls, signals, health checks
//! (tcp and http), the digest from the environment, TLS, completions, help
//! texts, usage errors and an unreachable server.
//!
//! The binary is the package's own (`CARGO_BIN_EXE_serverset`), run
//! as a child process; every child is killed if a test fails. Every line a
//! child prints must end with a newline (checked for every process).

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use zookeeper_client as zk;

/// How long any awaited output or exit may take (bounds a broken run only).
const DEADLINE: Duration = common::DEADLINE;

/// The environment variable the CLI reads the digest from.
const DIGEST_ENV: &str = "SERVERSET_DIGEST";

/// The `serverset` binary cargo built for these tests.
fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_serverset"))
}

/// A running `serverset` process: stdout as lines, stderr collected. Killed
/// on drop if still running, so a failing test leaves nothing behind.
struct Proc {
    name: String,
    child: Child,
    lines: Receiver<String>,
    /// Set if stdout ended with a line lacking its newline.
    unterminated: Arc<AtomicBool>,
    stderr: Arc<Mutex<Vec<u8>>>,
    stderr_reader: Option<JoinHandle<()>>,
    started: Instant,
}

/// How a process ended.
#[derive(Debug)]
struct Outcome {
    status: ExitStatus,
    stdout: Vec<String>,
    stderr: String,
    elapsed: Duration,
}

impl Outcome {
    /// The `error: ...` lines on stderr (logs may surround them).
    fn error_lines(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| l.starts_with("error: "))
            .collect()
    }
}

impl Proc {
    fn spawn(name: &str, args: &[&str]) -> Proc {
        Proc::spawn_env(name, args, &[])
    }

    /// Spawns with these environment variables (and never an inherited
    /// `SERVERSET_DIGEST`).
    fn spawn_env(name: &str, args: &[&str], env: &[(&str, &str)]) -> Proc {
        let mut child = Command::new(binary())
            .args(args)
            .env_remove(DIGEST_ENV)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        let unterminated = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&unterminated);
        thread::spawn(move || {
            let mut stdout = BufReader::new(stdout);
            let mut line = Vec::new();
            loop {
                line.clear();
                match stdout.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                if line.last() == Some(&b'\n') {
                    line.pop();
                } else {
                    flag.store(true, Ordering::SeqCst);
                }
                let text = String::from_utf8_lossy(&line).into_owned();
                if tx.send(text).is_err() {
                    break;
                }
            }
        });
        let mut stderr_pipe = child.stderr.take().expect("piped stderr");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&stderr);
        let stderr_reader = thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr_pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Proc {
            name: name.to_owned(),
            child,
            lines,
            unterminated,
            stderr,
            stderr_reader: Some(stderr_reader),
            started: Instant::now(),
        }
    }

    fn stderr_now(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    /// The next stdout line, waiting up to [`DEADLINE`].
    fn line(&mut self, what: &str) -> String {
        match self.lines.recv_timeout(DEADLINE) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => panic!(
                "{}: no line ({what}) within {DEADLINE:?}; stderr:\n{}",
                self.name,
                self.stderr_now()
            ),
            Err(RecvTimeoutError::Disconnected) => {
                let status = self.child.try_wait().ok().flatten();
                panic!(
                    "{}: stdout ended before {what} (status {status:?}); stderr:\n{}",
                    self.name,
                    self.stderr_now()
                )
            }
        }
    }

    /// The next stdout line as JSON.
    fn json(&mut self, what: &str) -> Value {
        let line = self.line(what);
        serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("{}: {what}: not JSON ({e}): {line}", self.name))
    }

    /// Sends a signal (`TERM`, `INT`) with kill(1).
    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([format!("-{signal}"), self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {} failed", self.name);
    }

    /// Waits (up to [`DEADLINE`]) for the process to exit and collects the
    /// rest of its output.
    fn finish(&mut self) -> Outcome {
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            if self.started.elapsed() > DEADLINE {
                panic!(
                    "{} did not exit within {DEADLINE:?}; stderr:\n{}",
                    self.name,
                    self.stderr_now()
                );
            }
            thread::sleep(Duration::from_millis(10));
        };
        let elapsed = self.started.elapsed();
        let mut stdout = Vec::new();
        // The reader ends at EOF, now that the process is gone.
        while let Ok(line) = self.lines.recv_timeout(DEADLINE) {
            stdout.push(line);
        }
        if let Some(reader) = self.stderr_reader.take() {
            let _ = reader.join();
        }
        assert!(
            !self.unterminated.load(Ordering::SeqCst),
            "{}: the last stdout line has no newline: {stdout:?}",
            self.name
        );
        Outcome {
            status,
            stdout,
            stderr: self.stderr_now(),
            elapsed,
        }
    }

    /// Signals the process and expects a clean exit (status 0) with no
    /// further output.
    fn stop(&mut self, signal: &str) {
        self.signal(signal);
        let out = self.finish();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{} after SIG{signal}: {out:?}",
            self.name
        );
        assert!(
            out.stdout.is_empty(),
            "{}: unexpected output: {:?}",
            self.name,
            out.stdout
        );
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs a command to completion.
fn run(args: &[&str]) -> Outcome {
    run_env(args, &[])
}

/// Runs a command to completion with these environment variables.
fn run_env(args: &[&str], env: &[(&str, &str)]) -> Outcome {
    Proc::spawn_env(&args.join(" "), args, env).finish()
}

/// Every stdout line of a finished command as JSON (one document a line).
fn json_lines(out: &Outcome) -> Vec<Value> {
    out.stdout
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// Runs `watch ... --once` and returns the array it prints.
fn once(args: &[&str]) -> Vec<Value> {
    let out = run(args);
    assert_eq!(out.status.code(), Some(0), "{args:?}: {out:?}");
    assert_eq!(out.stdout.len(), 1, "{args:?}: one line expected: {out:?}");
    match serde_json::from_str(&out.stdout[0]) {
        Ok(Value::Array(members)) => members,
        other => panic!("{args:?}: not a JSON array: {other:?}"),
    }
}

/// Starts `register` and returns the process and its znode path.
fn register(args: &[&str]) -> (Proc, String) {
    let mut full = vec!["register"];
    full.extend_from_slice(args);
    let mut proc = Proc::spawn(&full.join(" "), &full);
    let znode = proc.line("the member's znode path");
    (proc, znode)
}

/// The znode name of a full path.
fn name_of(znode: &str) -> &str {
    znode.rsplit('/').next().unwrap_or(znode)
}

fn keys(value: &Value) -> BTreeSet<&str> {
    value
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {value}"))
        .keys()
        .map(String::as_str)
        .collect()
}

fn member_keys() -> BTreeSet<&'static str> {
    [
        "member",
        "host",
        "port",
        "shard",
        "weight",
        "status",
        "additional",
        "metadata",
    ]
    .into()
}

/// `(member name, port)` of each member, in order.
fn names_ports(members: &[Value]) -> Vec<(String, u64)> {
    members
        .iter()
        .map(|m| {
            let name = m["member"].as_str().unwrap_or_default().to_owned();
            (name, m["port"].as_u64().unwrap_or_default())
        })
        .collect()
}

#[test]
fn register_watch_once_filters_and_deregister() {
    let server = common::zookeeper();
    let zk = server.connect_string();
    let set = "/discovery/test/cli";

    let (mut a, a_path) = register(&[
        &zk,
        set,
        "127.0.0.1:9001",
        "--shard",
        "3",
        "--additional",
        "http=127.0.0.1:9002",
        "--additional",
        "admin=[::1]:9990",
        "--metadata",
        "zone=eu-1",
        "--metadata",
        "team=core",
        "--session-timeout",
        "6",
    ]);
    assert!(
        a_path.starts_with(&format!("{set}/member_")),
        "znode path: {a_path}"
    );
    let a_name = name_of(&a_path).to_owned();
    let (mut b, b_path) = register(&[&zk, set, "localhost:9011", "--shard", "4"]);
    let b_name = name_of(&b_path).to_owned();
    assert_ne!(a_name, b_name);

    // Everything, in snapshot (sequence) order, with the exact keys.
    let all = once(&["watch", &zk, set, "--once"]);
    assert_eq!(all.len(), 2, "{all:?}");
    for m in &all {
        assert_eq!(keys(m), member_keys(), "{m}");
    }
    assert_eq!(
        all[0],
        json!({
            "member": a_name,
            "host": "127.0.0.1",
            "port": 9001,
            "shard": 3,
            "weight": 1.0,
            "status": "ALIVE",
            "additional": {
                "admin": {"host": "::1", "port": 9990},
                "http": {"host": "127.0.0.1", "port": 9002},
            },
            "metadata": {"team": "core", "zone": "eu-1"},
        })
    );
    assert_eq!(
        all[1],
        json!({
            "member": b_name,
            "host": "localhost",
            "port": 9011,
            "shard": 4,
            "weight": 1.0,
            "status": "ALIVE",
            "additional": {},
            "metadata": {},
        })
    );

    // A named endpoint: its host and port; members without it are skipped.
    let http = once(&["watch", &zk, set, "--endpoint", "http", "--once"]);
    assert_eq!(http.len(), 1, "{http:?}");
    assert_eq!(
        (&http[0]["host"], &http[0]["port"]),
        (&json!("127.0.0.1"), &json!(9002))
    );
    let mut expected = all[0].clone();
    expected["port"] = json!(9002);
    assert_eq!(http[0], expected, "the rest of the member is unchanged");
    let admin = once(&[
        "watch",
        &zk,
        set,
        "--endpoint",
        "admin",
        "--shard",
        "3",
        "--once",
    ]);
    assert_eq!(
        (&admin[0]["host"], &admin[0]["port"]),
        (&json!("::1"), &json!(9990))
    );

    // Shard filters.
    let shard4 = once(&["watch", &zk, set, "--shard", "4", "--once"]);
    assert_eq!(names_ports(&shard4), [(b_name.clone(), 9011)]);
    assert!(once(&["watch", &zk, set, "--shard", "5", "--once"]).is_empty());

    // Finagle destinations, with and without an endpoint, and --endpoint
    // overriding the destination's.
    let dest = format!("zk2!{zk}!{set}!http");
    assert_eq!(
        names_ports(&once(&["watch", &dest, "--once"])),
        [(a_name.clone(), 9002)]
    );
    let dest = format!("zk!{zk}!{set}");
    assert_eq!(
        names_ports(&once(&["watch", &dest, "--once"])),
        [(a_name.clone(), 9001), (b_name.clone(), 9011)]
    );
    let dest = format!("zk2!{zk}!{set}!admin");
    assert_eq!(
        names_ports(&once(&["watch", &dest, "--endpoint", "http", "--once"])),
        [(a_name.clone(), 9002)]
    );

    // SIGTERM deregisters and exits 0; so does SIGINT.
    a.stop("TERM");
    assert_eq!(
        names_ports(&once(&["watch", &zk, set, "--once"])),
        [(b_name.clone(), 9011)]
    );
    b.stop("INT");
    assert!(once(&["watch", &zk, set, "--once"]).is_empty());
}

#[test]
fn streaming_watch_prints_snapshot_then_changes() {
    let server = common::zookeeper();
    let zk = server.connect_string();
    let set = "/discovery/test/stream";

    let (mut a, a_path) = register(&[&zk, set, "127.0.0.1:9101", "--metadata", "k=v"]);
    let a_name = name_of(&a_path).to_owned();
    let mut watch = Proc::spawn("watch", &["watch", &zk, set]);

    let snapshot = watch.json("the snapshot line");
    let snapshot = snapshot.as_array().expect("a JSON array");
    assert_eq!(names_ports(snapshot), [(a_name.clone(), 9101)]);
    assert_eq!(keys(&snapshot[0]), member_keys());

    let (mut b, b_path) = register(&[&zk, set, "127.0.0.1:9102", "--shard", "1"]);
    let b_name = name_of(&b_path).to_owned();
    let added = watch.json("b added");
    assert_eq!(keys(&added), ["added", "removed", "size"].into());
    assert_eq!(added["size"], 2, "{added}");
    assert_eq!(added["removed"], json!([]), "{added}");
    let members = added["added"].as_array().expect("added is an array");
    assert_eq!(names_ports(members), [(b_name.clone(), 9102)]);
    assert_eq!(keys(&members[0]), member_keys());
    assert_eq!(members[0]["shard"], 1);
    assert_eq!(members[0]["status"], "ALIVE");

    a.stop("TERM");
    let removed = watch.json("a removed");
    assert_eq!(removed["size"], 1, "{removed}");
    assert_eq!(removed["added"], json!([]), "{removed}");
    let members = removed["removed"].as_array().expect("removed is an array");
    assert_eq!(names_ports(members), [(a_name.clone(), 9101)]);
    assert_eq!(members[0]["metadata"], json!({"k": "v"}));

    b.stop("TERM");
    let removed = watch.json("b removed");
    assert_eq!(removed["size"], 0, "{removed}");
    assert_eq!(
        names_ports(removed["removed"].as_array().unwrap()),
        [(b_name, 9102)]
    );

    watch.stop("TERM");
}

#[test]
fn ls_shows_raw_children_and_parse_errors() {
    let server = common::zookeeper();
    let zk = server.connect_string();
    let set = "/discovery/test/ls";

    let (mut good, good_path) = register(&[&zk, set, "127.0.0.1:9201", "--digest", "alice:secret"]);
    let good_name = name_of(&good_path).to_owned();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let raw = runtime.block_on(common::raw(&zk));
    let bad = runtime.block_on(common::raw_member(&raw, set, b"{not json"));
    let empty = runtime.block_on(common::raw_member(&raw, set, b""));
    let binary_data = runtime.block_on(common::raw_member(&raw, set, &[0xff, b'a']));
    let persistent = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    runtime
        .block_on(raw.create(&format!("{set}/config"), b"x=1", &persistent))
        .expect("create config");

    let out = run(&["ls", &zk, set, "--digest", "alice:secret"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let children: Vec<Value> = out
        .stdout
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let names: Vec<&str> = children
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    let mut sorted = vec![
        "config",
        good_name.as_str(),
        name_of(&bad),
        name_of(&empty),
        name_of(&binary_data),
    ];
    sorted.sort();
    assert_eq!(names, sorted, "one line per child, sorted by name");
    let child = |name: &str| children.iter().find(|c| c["name"] == name).unwrap();

    let g = child(&good_name);
    assert_eq!(keys(g), ["name", "data", "parsed"].into(), "{g}");
    assert_eq!(g["parsed"], true);
    let data: Value = serde_json::from_str(g["data"].as_str().unwrap()).expect("member JSON");
    assert_eq!(
        data["serviceEndpoint"],
        json!({"host": "127.0.0.1", "port": 9201})
    );
    assert_eq!(data["status"], "ALIVE");

    let b = child(name_of(&bad));
    assert_eq!(b["parsed"], false, "{b}");
    assert_eq!(b["data"], "{not json");
    let error = b["error"].as_str().expect("an error string");
    assert!(error.starts_with("invalid JSON"), "{error}");

    let e = child(name_of(&empty));
    assert_eq!(e["parsed"], false, "{e}");
    assert_eq!(e["data"], "");
    assert_eq!(e["error"], "the member has no data");

    let x = child(name_of(&binary_data));
    assert_eq!(x["parsed"], false, "{x}");
    assert_eq!(x["data"], "\u{fffd}a", "lossy UTF-8");
    assert!(x["error"].is_string());

    assert_eq!(
        *child("config"),
        json!({"name": "config", "data": "x=1", "parsed": null})
    );

    // The destination form, and a path that does not exist.
    let dest = format!("zk2!{zk}!{set}");
    let out = run(&["ls", &dest]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(out.stdout.len(), 5, "{out:?}");
    let out = run(&["ls", &zk, "/discovery/test/nothing-here"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");

    good.stop("INT");
    drop(raw);
}

#[test]
fn usage_errors_exit_2_and_unreachable_zookeeper_exits_1() {
    // Usage errors are found before any connection (port 1 is never tried).
    let z = "127.0.0.1:1";
    let cases: &[(&[&str], Option<&str>)] = &[
        (&[], None),
        (&["bogus"], None),
        (&["watch"], None),
        (&["register", z, "/a"], None),
        (&["ls", z, "/a", "--session-timeout", "0"], None),
        (&["watch", z, "/a", "--shard", "x"], None),
        (&["watch", z], Some("missing <PATH>")),
        (&["watch", z, "relative"], Some("\"relative\"")),
        (&["ls", z, "relative"], Some("\"relative\"")),
        (&["register", z, "relative", "h:1"], Some("\"relative\"")),
        (&["watch", "zk2!127.0.0.1:1!relative"], Some("\"relative\"")),
        (&["watch", "zk3!127.0.0.1:1!/a"], Some("zk3")),
        (&["watch", "zk2!127.0.0.1:1!/a", "/b"], Some("\"/b\"")),
        (&["register", z, "/a", "nohost"], Some("\"nohost\"")),
        (&["register", z, "/a", "h:99999"], Some("\"h:99999\"")),
        (
            &["register", z, "/a", "h:1", "--additional", "http"],
            Some("NAME=HOST:PORT"),
        ),
        (
            &["register", z, "/a", "h:1", "--additional", "http=nohost"],
            Some("\"nohost\""),
        ),
        (
            &["register", z, "/a", "h:1", "--metadata", "novalue"],
            Some("K=V"),
        ),
        (&["ls", z, "/a", "--digest", "nocolon"], Some("USER:PASS")),
    ];
    for (args, message) in cases {
        let out = run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        assert!(out.stdout.is_empty(), "{args:?}: {out:?}");
        assert!(
            out.elapsed < Duration::from_secs(5),
            "{args:?} took {:?}",
            out.elapsed
        );
        if let Some(message) = message {
            let errors = out.error_lines();
            assert_eq!(errors.len(), 1, "{args:?}: one error line: {out:?}");
            assert!(errors[0].contains(message), "{args:?}: {out:?}");
            assert_eq!(
                out.stderr.lines().last(),
                Some(errors[0]),
                "{args:?}: {out:?}"
            );
        }
    }

    let help = run(&["--help"]);
    assert_eq!(help.status.code(), Some(0), "{help:?}");
    let text = help.stdout.join("\n");
    for word in ["watch", "register", "ls"] {
        assert!(text.contains(word), "--help lacks {word}: {text}");
    }

    // Nobody listens on this port: every command fails with exit 1 within
    // the connect timeout (the default one for the first), naming it.
    let port = testkit::free_port().expect("free port");
    let addr = format!("127.0.0.1:{port}");
    let commands: Vec<Vec<&str>> = vec![
        vec!["watch", &addr, "/a", "--once"],
        vec!["watch", &addr, "/a", "--connect-timeout", "2"],
        vec![
            "register",
            &addr,
            "/a",
            "127.0.0.1:1",
            "--connect-timeout",
            "2",
        ],
        vec!["ls", &addr, "/a", "--connect-timeout", "2"],
    ];
    let mut procs: Vec<Proc> = commands
        .iter()
        .map(|args| Proc::spawn(&args.join(" "), args))
        .collect();
    for (proc, args) in procs.iter_mut().zip(&commands) {
        let out = proc.finish();
        assert_eq!(out.status.code(), Some(1), "{args:?}: {out:?}");
        assert!(out.elapsed < Duration::from_secs(30), "{args:?}: {out:?}");
        assert!(out.stdout.is_empty(), "{args:?}: {out:?}");
        let errors = out.error_lines();
        assert_eq!(errors.len(), 1, "{args:?}: one error line: {out:?}");
        assert!(
            errors[0].contains(&addr),
            "{args:?}: names the address: {out:?}"
        );
    }
}

#[test]
fn ring_prints_the_ketama_server_for_each_key() {
    // The shared twitter/util + libmemcached test vector: key keyhash point server.
    let vector = include_str!("../../sets/memcache/tests/data/ketama_results");
    let servers = "10.0.1.1:11211:600,10.0.1.2:11211:300,10.0.1.3:11211:200,10.0.1.4:11211:350,\
                   10.0.1.5:11211:1000,10.0.1.6:11211:800,10.0.1.7:11211:950,10.0.1.8:11211:100";
    let rows: Vec<(&str, &str)> = vector
        .lines()
        .filter_map(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            Some((*fields.first()?, *fields.get(3)?))
        })
        .collect();
    assert_eq!(rows.len(), 99);
    let input: String = rows.iter().map(|(key, _)| format!("{key}\n")).collect();
    let mut child = Command::new(binary())
        .args(["ring", "--servers", servers])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ring");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write keys");
    let output = child.wait_with_output().expect("ring output");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).expect("utf-8");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 99);
    for (line, (key, server)) in lines.iter().zip(&rows) {
        assert_eq!(*line, format!("{key}\t{server}:11211"));
    }

    // Usage errors exit 2.
    for bad in [
        vec!["ring"],
        vec!["ring", "--servers", "nohost"],
        vec!["ring", "--servers", ""],
    ] {
        assert_eq!(run(&bad).status.code(), Some(2), "{bad:?}");
    }
}

/// Runs a command that must fail with a usage error (exit 2, fast, no
/// output) whose one `error:` line, the last of stderr, contains each of
/// `needles`; returns that line.
fn usage_error(args: &[&str], env: &[(&str, &str)], needles: &[&str]) -> String {
    let out = run_env(args, env);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
    assert!(out.stdout.is_empty(), "{args:?}: {out:?}");
    assert!(
        out.elapsed < Duration::from_secs(5),
        "{args:?} took {:?}",
        out.elapsed
    );
    let errors = out.error_lines();
    assert_eq!(errors.len(), 1, "{args:?}: one error line: {out:?}");
    assert_eq!(
        out.stderr.lines().last(),
        Some(errors[0]),
        "{args:?}: {out:?}"
    );
    for needle in needles {
        assert!(
            errors[0].contains(needle),
            "{args:?}: lacks {needle:?}: {out:?}"
        );
    }
    errors[0].to_owned()
}

/// A fresh directory for a test's files.
fn scratch_dir(test: &str) -> PathBuf {
    static COUNT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "cli-{test}-{}-{}",
        std::process::id(),
        COUNT.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create a scratch directory");
    dir
}

/// Writes `text` to `dir/name` and returns the path as a string.
fn write_file(dir: &std::path::Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write a test file");
    path.to_str().expect("a UTF-8 path").to_owned()
}

#[test]
fn tls_check_and_digest_usage_errors_exit_2() {
    // Found before any connection (port 1 is never tried).
    let z = "127.0.0.1:1";
    let dir = scratch_dir("usage");
    let missing = dir.join("missing-ca.pem");
    let missing = missing.to_str().unwrap();
    let not_pem = write_file(&dir, "not-pem.txt", "hello\n");
    let binary_file = dir.join("ca.der");
    std::fs::write(&binary_file, [0x30, 0x82, 0xff, 0xfe]).unwrap();
    let binary_file = binary_file.to_str().unwrap();
    // Looks like PEM, is not: the library refuses it when connecting,
    // still a usage error.
    let garbage = write_file(
        &dir,
        "garbage.pem",
        "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n",
    );
    let key = write_file(
        &dir,
        "key.pem",
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    );
    let encrypted = write_file(
        &dir,
        "encrypted.pem",
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
    );
    let dirname = dir.to_str().unwrap();

    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        // A certificate without its key, and the other way round.
        (
            vec![
                "watch",
                z,
                "/a",
                "--tls-ca",
                &garbage,
                "--tls-cert",
                &garbage,
            ],
            vec!["--tls-cert needs --tls-key"],
        ),
        (
            vec!["ls", z, "/a", "--tls-ca", &garbage, "--tls-key", &key],
            vec!["--tls-key needs --tls-cert"],
        ),
        (
            vec!["ls", z, "/a", "--tls-cert", &garbage, "--tls-key", &key],
            vec!["need --tls-ca"],
        ),
        // Files that cannot be read or are not what they should be, named.
        (
            vec!["watch", z, "/a", "--tls-ca", missing, "--once"],
            vec!["--tls-ca", missing, "cannot read"],
        ),
        (
            vec!["ls", z, "/a", "--tls-ca", dirname],
            vec!["--tls-ca", dirname, "cannot read"],
        ),
        (
            vec!["ls", z, "/a", "--tls-ca", &not_pem],
            vec!["--tls-ca", &not_pem, "no PEM certificate"],
        ),
        (
            vec!["ls", z, "/a", "--tls-ca", binary_file],
            vec!["--tls-ca", binary_file, "not a PEM file"],
        ),
        (
            vec![
                "register",
                z,
                "/a",
                "h:1",
                "--tls-ca",
                &garbage,
                "--tls-cert",
                &garbage,
                "--tls-key",
                missing,
            ],
            vec!["--tls-key", missing, "cannot read"],
        ),
        (
            vec![
                "ls",
                z,
                "/a",
                "--tls-ca",
                &garbage,
                "--tls-cert",
                &key,
                "--tls-key",
                &key,
            ],
            vec!["--tls-cert", &key, "no PEM certificate"],
        ),
        (
            vec![
                "ls",
                z,
                "/a",
                "--tls-ca",
                &garbage,
                "--tls-cert",
                &garbage,
                "--tls-key",
                &garbage,
            ],
            vec!["--tls-key", &garbage, "no PEM private key"],
        ),
        (
            vec![
                "ls",
                z,
                "/a",
                "--tls-ca",
                &garbage,
                "--tls-cert",
                &garbage,
                "--tls-key",
                &encrypted,
            ],
            vec!["--tls-key", &encrypted, "encrypted"],
        ),
        // PEM markers around garbage: refused by the TLS library.
        (vec!["ls", z, "/a", "--tls-ca", &garbage], vec!["TLS", "CA"]),
        // Health checks.
        (
            vec!["register", z, "/a", "h:1", "--check", "ping"],
            vec!["\"ping\"", "tcp:HOST:PORT", "http://"],
        ),
        (
            vec!["register", z, "/a", "h:1", "--check", "tcp:nohost"],
            vec!["\"tcp:nohost\""],
        ),
        (
            vec!["register", z, "/a", "h:1", "--check", "tcp:h:99999"],
            vec!["\"tcp:h:99999\""],
        ),
        (
            vec!["register", z, "/a", "h:1", "--check", "http://"],
            vec!["\"http://\""],
        ),
        (
            vec!["register", z, "/a", "h:1", "--check-interval", "2"],
            vec!["--check-interval needs --check"],
        ),
        (
            vec!["register", z, "/a", "h:1", "--check-timeout", "2"],
            vec!["--check-timeout needs --check"],
        ),
        (
            vec![
                "register",
                z,
                "/a",
                "h:1",
                "--check",
                "tcp:h:1",
                "--check-interval",
                "1",
                "--check-timeout",
                "2",
            ],
            vec!["--check-timeout", "--check-interval"],
        ),
    ];
    for (args, needles) in &cases {
        usage_error(args, &[], needles);
    }
    // clap's own errors (exit 2 too).
    for args in [
        vec!["register", z, "/a", "h:1", "--check-interval", "0"],
        vec!["register", z, "/a", "h:1", "--check"],
        vec!["watch", z, "/a", "--check", "tcp:h:1"],
        vec!["ls", z, "/a", "--tls-ca"],
        vec!["completions"],
        vec!["completions", "tcsh"],
    ] {
        let out = run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        assert!(out.stdout.is_empty(), "{args:?}: {out:?}");
    }

    // A malformed SERVERSET_DIGEST is named, and its value (a password)
    // is not echoed; an empty one counts as unset.
    let line = usage_error(
        &["ls", z, "/a"],
        &[(DIGEST_ENV, "hunter2")],
        &[DIGEST_ENV, "USER:PASS"],
    );
    assert!(!line.contains("hunter2"), "{line}");
    let line = usage_error(
        &["ls", z, "/a", "--digest", "hunter2"],
        &[(DIGEST_ENV, "alice:secret")],
        &["--digest", "USER:PASS"],
    );
    assert!(!line.contains("hunter2"), "{line}");
    let out = run_env(
        &["ls", z, "/a", "--connect-timeout", "1"],
        &[(DIGEST_ENV, "")],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "reaches the connection: {out:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn completions_for_each_shell() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = run(&["completions", shell]);
        assert_eq!(out.status.code(), Some(0), "{shell}: {out:?}");
        assert!(out.stderr.is_empty(), "{shell}: {out:?}");
        let script = out.stdout.join("\n");
        assert!(script.len() > 500, "{shell}: too short: {script}");
        for word in [
            "serverset",
            "watch",
            "register",
            "ls",
            "ring",
            "completions",
            // Flags (fish writes them without the dashes).
            "tls-ca",
            "check-interval",
        ] {
            assert!(script.contains(word), "{shell}: lacks {word}:\n{script}");
        }
    }
    let bash = run(&["completions", "bash"]).stdout.join("\n");
    assert!(bash.contains("complete -F _serverset"), "{bash}");
    let zsh = run(&["completions", "zsh"]).stdout;
    assert_eq!(zsh.first().map(String::as_str), Some("#compdef serverset"));
    let fish = run(&["completions", "fish"]).stdout.join("\n");
    assert!(fish.contains("complete -c serverset"), "{fish}");
    // A shell that bash can load: it defines the completion function.
    if Command::new("bash").arg("--version").output().is_ok() {
        let script = scratch_dir("bash").join("serverset.bash");
        std::fs::write(&script, &bash).unwrap();
        let status = Command::new("bash")
            .args([
                "--norc",
                "-c",
                "source \"$0\" && declare -F _serverset",
                script.to_str().unwrap(),
            ])
            .stdout(Stdio::null())
            .status()
            .expect("run bash");
        assert!(status.success(), "bash cannot load the script");
    }
}

#[test]
fn help_of_every_command_says_what_it_prints_and_the_exit_codes() {
    let top = run(&["--help"]);
    assert_eq!(top.status.code(), Some(0), "{top:?}");
    let text = top.stdout.join("\n");
    for word in [
        "completions",
        DIGEST_ENV,
        "Exit codes",
        "0 success",
        "2 usage",
    ] {
        assert!(text.contains(word), "--help lacks {word}: {text}");
    }
    for command in ["watch", "register", "ls", "ring", "completions"] {
        let out = run(&[command, "--help"]);
        assert_eq!(out.status.code(), Some(0), "{command}: {out:?}");
        let text = out.stdout.join("\n");
        for word in [
            "Prints (stdout)",
            "Exit codes:",
            "0  success",
            "1  runtime error",
            "2  usage error",
        ] {
            assert!(
                text.contains(word),
                "{command} --help lacks {word:?}:\n{text}"
            );
        }
        if command != "ring" && command != "completions" {
            for flag in [
                "--tls-ca",
                "--tls-cert",
                "--tls-key",
                "--digest",
                DIGEST_ENV,
            ] {
                assert!(
                    text.contains(flag),
                    "{command} --help lacks {flag}:\n{text}"
                );
            }
        }
    }
    let register = run(&["register", "--help"]).stdout.join("\n");
    for word in [
        "--check <CHECK>",
        "tcp:HOST:PORT",
        "http://HOST:PORT/PATH",
        "--check-interval",
        "--check-timeout",
    ] {
        assert!(
            register.contains(word),
            "register --help lacks {word}:\n{register}"
        );
    }
}

#[test]
fn digest_comes_from_the_environment_and_the_flag_wins() {
    let server = common::zookeeper();
    let zk = server.connect_string();
    let set = "/discovery/test/locked";

    // A set only the digest identity alice:secret may read and write.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let admin = common::raw(&zk).await;
        common::mkdir(&admin, "/discovery/test").await;
        let alice = zk::Client::connector()
            .with_auth("digest", b"alice:secret")
            .connect(&zk)
            .await
            .expect("connect as alice");
        alice
            .create(
                set,
                b"",
                &zk::CreateMode::Persistent.with_acls(zk::Acls::creator_all()),
            )
            .await
            .expect("create the locked set");
    });
    let right = [(DIGEST_ENV, "alice:secret")];
    let wrong = [(DIGEST_ENV, "alice:guess")];

    // Without the digest, registering is refused; with it from the
    // environment, it works.
    let out = run(&[
        "register",
        &zk,
        set,
        "127.0.0.1:9301",
        "--connect-timeout",
        "5",
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.error_lines()[0].contains("not authorized"), "{out:?}");
    let mut reg = Proc::spawn_env(
        "register with the digest from the environment",
        &["register", &zk, set, "127.0.0.1:9301"],
        &right,
    );
    let znode = reg.line("the member's znode path");
    assert!(znode.starts_with(&format!("{set}/member_")), "{znode}");

    // ls and watch: refused without it or with a wrong one, fine with it.
    let refused = |args: &[&str], env: &[(&str, &str)]| {
        let out = run_env(args, env);
        assert_eq!(out.status.code(), Some(1), "{args:?} {env:?}: {out:?}");
        assert!(out.stdout.is_empty(), "{args:?}: {out:?}");
        let errors = out.error_lines();
        assert_eq!(errors.len(), 1, "{out:?}");
        assert!(errors[0].contains(set), "{out:?}");
    };
    let ls = ["ls", zk.as_str(), set];
    let watch = ["watch", zk.as_str(), set, "--once"];
    refused(&ls, &[]);
    refused(&ls, &wrong);
    refused(&watch, &wrong);
    let listed = |args: &[&str], env: &[(&str, &str)]| {
        let out = run_env(args, env);
        assert_eq!(out.status.code(), Some(0), "{args:?} {env:?}: {out:?}");
        json_lines(&out)
    };
    let children = listed(&ls, &right);
    assert_eq!(children.len(), 1, "{children:?}");
    assert_eq!(children[0]["name"], name_of(&znode));
    assert_eq!(children[0]["parsed"], true);
    let members = listed(&watch, &right);
    assert_eq!(members.len(), 1, "{members:?}");
    assert_eq!(
        names_ports(members[0].as_array().expect("an array")),
        [(name_of(&znode).to_owned(), 9301)]
    );

    // --digest wins over the environment, both ways.
    let children = listed(&["ls", &zk, set, "--digest", "alice:secret"], &wrong);
    assert_eq!(children.len(), 1, "{children:?}");
    refused(&["ls", &zk, set, "--digest", "alice:guess"], &right);

    reg.stop("TERM");
    assert!(listed(&watch, &right)[0]
        .as_array()
        .expect("an array")
        .is_empty());
}

/// A TCP listener on a fixed loopback port that accepts (and drops)
/// connections until stopped, and can listen again on the same port. With
/// [`Listener::answer`] set, it reads an HTTP request head from each
/// connection first (recording it) and answers with that status line.
struct Listener {
    port: u16,
    answer: Arc<Mutex<Option<String>>>,
    heads: Arc<Mutex<Vec<String>>>,
    running: Option<(Arc<AtomicBool>, JoinHandle<()>)>,
}

impl Listener {
    fn start() -> Listener {
        let mut listener = Listener {
            port: testkit::free_port().expect("a free port"),
            answer: Arc::default(),
            heads: Arc::default(),
            running: None,
        };
        listener.listen();
        listener
    }

    /// From now on, answer HTTP requests with this status (`"503 Busy"`).
    fn answer(&self, status: &str) {
        *self.answer.lock().unwrap() = Some(status.to_owned());
    }

    /// The HTTP request heads received so far.
    fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }

    fn listen(&mut self) {
        let socket = TcpListener::bind(("127.0.0.1", self.port)).expect("bind the listener");
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let answer = Arc::clone(&self.answer);
        let heads = Arc::clone(&self.heads);
        let thread = thread::spawn(move || {
            for stream in socket.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let status = answer.lock().unwrap().clone();
                if let (Ok(stream), Some(status)) = (stream, status) {
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                    let mut reader = BufReader::new(&stream);
                    let mut head = String::new();
                    let mut line = String::new();
                    while matches!(reader.read_line(&mut line), Ok(n) if n > 0) && line != "\r\n" {
                        head.push_str(&line);
                        line.clear();
                    }
                    heads.lock().unwrap().push(head);
                    let _ = (&stream).write_all(
                        format!(
                            "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        )
                        .as_bytes(),
                    );
                }
            }
        });
        self.running = Some((stop, thread));
    }

    /// Closes the listening socket: connections are refused from now on.
    fn stop(&mut self) {
        if let Some((stop, thread)) = self.running.take() {
            stop.store(true, Ordering::SeqCst);
            // Wakes the accept loop, which then drops the socket.
            let _ = std::net::TcpStream::connect(("127.0.0.1", self.port));
            let _ = thread.join();
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The next watch line, which must be a change adding exactly one member
/// with this port; returns its name.
fn added_one(watch: &mut Proc, port: u64, size: u64, what: &str) -> String {
    let change = watch.json(what);
    assert_eq!(
        keys(&change),
        ["added", "removed", "size"].into(),
        "{change}"
    );
    assert_eq!(change["removed"], json!([]), "{what}: {change}");
    assert_eq!(change["size"], size, "{what}: {change}");
    let added = change["added"].as_array().expect("added is an array");
    assert_eq!(added.len(), 1, "{what}: {change}");
    assert_eq!(keys(&added[0]), member_keys(), "{change}");
    assert_eq!(added[0]["port"], port, "{what}: {change}");
    added[0]["member"].as_str().expect("a name").to_owned()
}

/// The next watch line, which must be a change removing exactly `name`.
fn removed_one(watch: &mut Proc, name: &str, size: u64, what: &str) {
    let change = watch.json(what);
    assert_eq!(change["added"], json!([]), "{what}: {change}");
    assert_eq!(change["size"], size, "{what}: {change}");
    let removed = change["removed"].as_array().expect("removed is an array");
    assert_eq!(removed.len(), 1, "{what}: {change}");
    assert_eq!(removed[0]["member"], name, "{what}: {change}");
}

/// Waits (up to [`DEADLINE`]) until the process's stderr contains `text`.
fn wait_stderr(proc: &Proc, text: &str) {
    let started = Instant::now();
    while !proc.stderr_now().contains(text) {
        assert!(
            started.elapsed() < DEADLINE,
            "{}: no {text:?} on stderr within {DEADLINE:?}:\n{}",
            proc.name,
            proc.stderr_now()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn tcp_check_deletes_and_recreates_the_member() {
    let server = common::zookeeper();
    let zk = server.connect_string();
    let set = "/discovery/test/tcp-check";
    let mut listener = Listener::start();
    let check = format!("tcp:127.0.0.1:{}", listener.port);

    // Passing at once: registered at once.
    let (mut reg, first) = register(&[
        &zk,
        set,
        "127.0.0.1:9401",
        "--check",
        &check,
        "--check-interval",
        "0.2",
    ]);
    let mut watch = Proc::spawn("watch", &["watch", &zk, set]);
    let snapshot = watch.json("the snapshot");
    assert_eq!(
        names_ports(snapshot.as_array().expect("an array")),
        [(name_of(&first).to_owned(), 9401)]
    );

    // The listener goes: so does the member (the process stays).
    listener.stop();
    removed_one(&mut watch, name_of(&first), 0, "member deleted");
    wait_stderr(&reg, "health check failed");
    assert!(reg.child.try_wait().unwrap().is_none(), "register exited");

    // It listens again: the member is back, under a new name, printed.
    listener.listen();
    let second = reg.line("the re-created member's path");
    assert_ne!(second, first);
    assert!(second.starts_with(&format!("{set}/member_")), "{second}");
    let name = added_one(&mut watch, 9401, 1, "member re-created");
    assert_eq!(name, name_of(&second));

    // Once more.
    listener.stop();
    removed_one(&mut watch, &name, 0, "member deleted again");
    listener.listen();
    let third = reg.line("the member's path, third time");
    assert_eq!(
        added_one(&mut watch, 9401, 1, "back again"),
        name_of(&third)
    );

    reg.stop("TERM");
    removed_one(&mut watch, name_of(&third), 0, "deregistered");
    watch.stop("TERM");
}

#[test]
fn check_failing_at_start_registers_once_it_passes() {
    let server = common::zookeeper();
    let zk = server.connect_string();
    let set = "/discovery/test/late";
    let mut listener = Listener::start();
    listener.stop();
    let check = format!("tcp:127.0.0.1:{}", listener.port);

    let mut reg = Proc::spawn(
        "register",
        &[
            "register",
            &zk,
            set,
            "127.0.0.1:9501",
            "--check",
            &check,
            "--check-interval",
            "0.2",
        ],
    );
    wait_stderr(&reg, "health check fails");
    let stderr = reg.stderr_now();
    assert!(stderr.contains("refused"), "the reason: {stderr}");
    assert!(once(&["watch", &zk, set, "--once"]).is_empty());

    listener.listen();
    let znode = reg.line("the member's path once the check passes");
    assert_eq!(
        names_ports(&once(&["watch", &zk, set, "--once"])),
        [(name_of(&znode).to_owned(), 9501)]
    );
    reg.stop("INT");
    assert!(once(&["watch", &zk, set, "--once"]).is_empty());
}

#[test]
fn http_check_deletes_and_recreates_the_member() {
    let server = common::zookeeper();
    let zk = server.connect_string();
    let set = "/discovery/test/http-check";
    let mut http = testkit::HttpServer::start("health").expect("start the HTTP server");
    let check = format!("{}/health?deep=1", http.url());

    let (mut reg, first) = register(&[
        &zk,
        set,
        &http.endpoint(),
        "--check",
        &check,
        "--check-interval",
        "0.3",
        "--check-timeout",
        "0.25",
    ]);
    let port = u64::from(http.port());
    let mut watch = Proc::spawn("watch", &["watch", &zk, set]);
    let snapshot = watch.json("the snapshot");
    assert_eq!(
        names_ports(snapshot.as_array().expect("an array")),
        [(name_of(&first).to_owned(), port)]
    );
    let paths = http.paths();
    assert!(!paths.is_empty());
    assert!(paths.iter().all(|p| p == "/health?deep=1"), "{paths:?}");

    // The server goes away, and comes back.
    http.stop();
    removed_one(&mut watch, name_of(&first), 0, "member deleted");
    http.start_again().expect("restart the HTTP server");
    let second = reg.line("the re-created member's path");
    assert_ne!(second, first);
    let name = added_one(&mut watch, port, 1, "member re-created");
    assert_eq!(name, name_of(&second));

    // A server that accepts but does not answer fails the check by its
    // timeout; answering again passes it.
    http.set_hanging(true);
    removed_one(&mut watch, &name, 0, "member deleted (no answer)");
    wait_stderr(&reg, "no answer within");
    http.set_hanging(false);
    let third = reg.line("the member's path, third time");
    assert_eq!(
        added_one(&mut watch, port, 1, "back again"),
        name_of(&third)
    );

    reg.stop("TERM");
    removed_one(&mut watch, name_of(&third), 0, "deregistered");
    watch.stop("TERM");
}

#[test]
fn json_output_is_one_document_per_line() {
    let server = common::zookeeper();
    let zk = server.connect_string();
    let set = "/discovery/test/lines";
    // Values with newlines, tabs, quotes and non-ASCII must stay on one line.
    let tricky = "line one\nline two\t\"quoted\" é\r\n";

    let (mut a, a_path) = register(&[
        &zk,
        set,
        "127.0.0.1:9601",
        "--metadata",
        &format!("note={tricky}"),
        "--additional",
        "http=127.0.0.1:9602",
    ]);
    let out = run(&["watch", &zk, set, "--once"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 1, "one line: {out:?}");
    let members = lines[0].as_array().expect("an array");
    assert_eq!(members.len(), 1);
    assert_eq!(members[0]["member"], name_of(&a_path));
    assert_eq!(members[0]["metadata"], json!({ "note": tricky }));
    assert_eq!(
        members[0]["additional"],
        json!({"http": {"host": "127.0.0.1", "port": 9602}})
    );

    let out = run(&["ls", &zk, set]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let children = json_lines(&out);
    assert_eq!(children.len(), 1, "{out:?}");
    assert_eq!(children[0]["name"], name_of(&a_path));
    let data: Value =
        serde_json::from_str(children[0]["data"].as_str().expect("data")).expect("member JSON");
    assert_eq!(data["metadata"], json!({ "note": tricky }));

    // Streaming: the snapshot, then each change, one line each.
    let mut watch = Proc::spawn("watch", &["watch", &zk, set]);
    let snapshot = watch.json("the snapshot");
    assert_eq!(snapshot.as_array().map(Vec::len), Some(1), "{snapshot}");
    let (mut b, b_path) = register(&[
        &zk,
        set,
        "127.0.0.1:9603",
        "--metadata",
        &format!("note={tricky}"),
    ]);
    let name = added_one(&mut watch, 9603, 2, "b added");
    assert_eq!(name, name_of(&b_path));
    a.stop("TERM");
    removed_one(&mut watch, name_of(&a_path), 1, "a removed");
    b.stop("TERM");
    removed_one(&mut watch, name_of(&b_path), 0, "b removed");
    watch.stop("TERM");
}

#[test]
fn watch_and_register_over_tls_with_a_client_certificate() {
    let certs = testkit::TestCerts::generate().expect("certificates");
    common::init_tracing();
    let server = testkit::ZooKeeper::start_tls(&certs, testkit::ClientAuth::Need)
        .expect("start ZooKeeper with TLS");
    let secure = server.secure_connect_string().expect("a TLS port");
    let dir = scratch_dir("tls");
    let ca = write_file(&dir, "ca.pem", &certs.ca_pem);
    let cert = write_file(&dir, "client.pem", &certs.client_cert_pem);
    let key = write_file(&dir, "client.key", &certs.client_key_pem);
    let tls = [
        "--tls-ca",
        ca.as_str(),
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
    ];
    let set = "/discovery/test/tls";

    let mut args = vec![secure.as_str(), set, "127.0.0.1:9701"];
    args.extend(tls);
    let (mut reg, znode) = register(&args);
    assert!(znode.starts_with(&format!("{set}/member_")), "{znode}");

    let mut args = vec!["watch", &secure, set, "--once"];
    args.extend(tls);
    assert_eq!(
        names_ports(&once(&args)),
        [(name_of(&znode).to_owned(), 9701)]
    );
    // The same set through the plain port, for comparison.
    assert_eq!(
        names_ports(&once(&["watch", &server.connect_string(), set, "--once"])),
        [(name_of(&znode).to_owned(), 9701)]
    );

    // Without the client certificate the server refuses us: a runtime
    // error naming the address, within the connect timeout.
    let out = run(&[
        "watch",
        &secure,
        set,
        "--once",
        "--tls-ca",
        &ca,
        "--connect-timeout",
        "3",
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    let errors = out.error_lines();
    assert_eq!(errors.len(), 1, "{out:?}");
    assert!(errors[0].contains(&secure), "{out:?}");

    reg.stop("TERM");
    let mut args = vec!["ls", &secure, set];
    args.extend(tls);
    let out = run(&args);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn http_check_needs_a_2xx_answer() {
    let server = common::zookeeper();
    let zk = server.connect_string();
    let set = "/discovery/test/http-status";
    let listener = Listener::start();
    listener.answer("503 Service Unavailable");
    // Credentials in the URL go as basic auth, and are never shown.
    let check = format!("http://probe:pa55word@127.0.0.1:{}/ready", listener.port);

    let mut reg = Proc::spawn(
        "register",
        &[
            "register",
            &zk,
            set,
            "127.0.0.1:9801",
            "--check",
            &check,
            "--check-interval",
            "0.2",
        ],
    );
    wait_stderr(&reg, "answered 503 Service Unavailable");
    assert!(once(&["watch", &zk, set, "--once"]).is_empty());
    let heads = listener.heads();
    let head = heads[0].to_ascii_lowercase();
    assert!(head.starts_with("get /ready http/1.1\r\n"), "{head}");
    // base64("probe:pa55word")
    assert!(
        head.contains(
            "authorization: basic cHJvYmU6cGE1NXdvcmQ="
                .to_ascii_lowercase()
                .as_str()
        ),
        "{head}"
    );

    listener.answer("204 No Content");
    let znode = reg.line("the member's path once the check passes");
    let mut watch = Proc::spawn("watch", &["watch", &zk, set]);
    let snapshot = watch.json("the snapshot");
    assert_eq!(
        names_ports(snapshot.as_array().expect("an array")),
        [(name_of(&znode).to_owned(), 9801)]
    );

    // A redirect is not followed: it fails the check.
    listener.answer("302 Found\r\nLocation: /elsewhere");
    removed_one(&mut watch, name_of(&znode), 0, "deleted on a redirect");
    wait_stderr(&reg, "answered 302 Found");
    assert!(
        listener
            .heads()
            .iter()
            .all(|h| h.starts_with("GET /ready ")),
        "never followed the redirect"
    );

    reg.stop("TERM");
    watch.stop("TERM");
    assert!(
        !reg.stderr_now().contains("pa55word"),
        "{}",
        reg.stderr_now()
    );
}

// ---------------------------------------------------------------------------
// etcd: the same commands with an `etcd://host:port` connect string.

/// `etcd://127.0.0.1:PORT` of a test server.
fn etcd_url(etcd: &testkit::Etcd) -> String {
    format!("etcd://{}", etcd.endpoint())
}

#[test]
fn etcd_register_watch_ls_and_deregister() {
    let etcd = common::etcd();
    let ep = etcd_url(&etcd);
    let set = "/services/users";

    let (mut a, a_key) = register(&[
        &ep,
        set,
        "127.0.0.1:9090",
        "--ttl",
        "5",
        "--shard",
        "2",
        "--additional",
        "http=127.0.0.1:8080",
        "--metadata",
        "zone=eu",
    ]);
    assert!(
        a_key.starts_with(&format!("{set}/member_")),
        "etcd key: {a_key}"
    );
    let a_name = name_of(&a_key).to_owned();
    // etcd holds exactly that key, in Finagle's JSON, on a 5 s lease.
    let stored = etcd.get_prefix(&format!("{set}/")).expect("get_prefix");
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0].0, a_key);
    let data: Value = serde_json::from_str(&stored[0].1).expect("Finagle JSON");
    assert_eq!(
        data["serviceEndpoint"],
        json!({"host": "127.0.0.1", "port": 9090}),
        "{data}"
    );
    assert_eq!(data["status"], "ALIVE", "{data}");
    assert_eq!(common::granted_ttl(&etcd, &a_key), 5);

    // watch --once: the ZooKeeper schema exactly.
    let all = once(&["watch", &ep, set, "--once"]);
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(keys(&all[0]), member_keys(), "{}", all[0]);
    assert_eq!(
        all[0],
        json!({
            "member": a_name,
            "host": "127.0.0.1",
            "port": 9090,
            "shard": 2,
            "weight": 1.0,
            "status": "ALIVE",
            "additional": {"http": {"host": "127.0.0.1", "port": 8080}},
            "metadata": {"zone": "eu"},
        })
    );
    let http = once(&["watch", &ep, set, "--endpoint", "http", "--once"]);
    assert_eq!(names_ports(&http), [(a_name.clone(), 8080)]);
    assert!(once(&["watch", &ep, set, "--shard", "3", "--once"]).is_empty());
    // --format finagle is the default, and may be given.
    let explicit = once(&["watch", &ep, set, "--format", "finagle", "--once"]);
    assert_eq!(explicit, all);

    // A register without --ttl gets the default lease (10 s); a key of
    // another set, and one further down, are not members.
    let (mut b, b_key) = register(&[&ep, set, "127.0.0.1:9091"]);
    assert_eq!(common::granted_ttl(&etcd, &b_key), 10);
    let b_name = name_of(&b_key).to_owned();
    etcd.put("/services/users2/member_x", &stored[0].1)
        .expect("put");
    etcd.put(&format!("{set}/sub/member_y"), &stored[0].1)
        .expect("put");
    etcd.put(&format!("{set}/config"), "x=1").expect("put");
    etcd.put(&format!("{set}/member_bad"), "{not json")
        .expect("put");
    let mut want = vec![(a_name.clone(), 9090), (b_name.clone(), 9091)];
    want.sort();
    let mut got = names_ports(&once(&["watch", &ep, set, "--once"]));
    got.sort();
    assert_eq!(got, want, "only the well-formed members of {set}");

    // ls: one line per key directly below the set, sorted by name.
    // SERVERSET_DIGEST (a ZooKeeper setting) is ignored with etcd.
    let out = run_env(&["ls", &ep, set], &[(DIGEST_ENV, "not-a-digest")]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let children = json_lines(&out);
    let names: Vec<&str> = children
        .iter()
        .map(|c| c["name"].as_str().expect("a name"))
        .collect();
    let mut sorted = vec!["config", "member_bad", a_name.as_str(), b_name.as_str()];
    sorted.sort();
    assert_eq!(names, sorted, "{out:?}");
    let child = |name: &str| children.iter().find(|c| c["name"] == name).unwrap();
    let a_child = child(&a_name);
    assert_eq!(
        keys(a_child),
        ["name", "data", "parsed"].into(),
        "{a_child}"
    );
    assert_eq!(a_child["parsed"], true);
    assert_eq!(a_child["data"], stored[0].1.as_str());
    let bad = child("member_bad");
    assert_eq!(bad["parsed"], false, "{bad}");
    assert!(
        bad["error"]
            .as_str()
            .expect("an error")
            .starts_with("invalid JSON"),
        "{bad}"
    );
    assert_eq!(
        *child("config"),
        json!({"name": "config", "data": "x=1", "parsed": null})
    );
    let out = run(&["ls", &ep, "/services/nothing-here"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");

    // Streaming: the snapshot, then each change.
    let mut watch = Proc::spawn("watch etcd", &["watch", &ep, set]);
    let snapshot = watch.json("the snapshot");
    assert_eq!(snapshot.as_array().map(Vec::len), Some(2), "{snapshot}");
    let (mut c, c_key) = register(&[&ep, set, "127.0.0.1:9092", "--ttl", "3"]);
    assert_eq!(added_one(&mut watch, 9092, 3, "c added"), name_of(&c_key));

    // SIGTERM deregisters (revokes the lease) before exiting 0.
    a.stop("TERM");
    assert!(
        !common::etcd_keys(&etcd, &format!("{set}/")).contains(&a_key),
        "{a_key} is gone once register exits"
    );
    removed_one(&mut watch, &a_name, 2, "a removed");
    b.stop("INT");
    assert!(!common::etcd_keys(&etcd, &format!("{set}/")).contains(&b_key));
    removed_one(&mut watch, &b_name, 1, "b removed");
    c.stop("TERM");
    removed_one(&mut watch, name_of(&c_key), 0, "c removed");
    watch.stop("TERM");
    assert!(once(&["watch", &ep, set, "--once"]).is_empty());
    let mut left = common::etcd_keys(&etcd, &format!("{set}/"));
    left.sort();
    assert_eq!(
        left,
        [
            format!("{set}/config"),
            format!("{set}/member_bad"),
            format!("{set}/sub/member_y"),
        ],
        "only what the test put itself"
    );
}

#[test]
fn etcd_naming_format_is_read_and_written_exactly() {
    let etcd = common::etcd();
    let ep = etcd_url(&etcd);
    let set = "/services/users";
    // As Go's etcd endpoints manager writes them.
    etcd.put(
        "/services/users/10.0.0.1:8080",
        r#"{"Op":0,"Addr":"10.0.0.1:8080","Metadata":{"zone":"eu"}}"#,
    )
    .expect("put");
    etcd.put("/services/users2/x:1", r#"{"Op":0,"Addr":"x:1"}"#)
        .expect("put");

    let naming = once(&["watch", &ep, set, "--once", "--format", "etcd-naming"]);
    assert_eq!(
        naming,
        [json!({
            "member": "10.0.0.1:8080",
            "host": "10.0.0.1",
            "port": 8080,
            "shard": null,
            "weight": 1.0,
            "status": "ALIVE",
            "additional": {},
            "metadata": {"zone": "eu"},
        })],
        "exactly the naming entry of {set}, not {set}2's"
    );
    // In Finagle's format the naming keys are not members.
    assert!(once(&["watch", &ep, set, "--once"]).is_empty());
    // Where Go services usually register (target etcd:///services/users:
    // keys without the leading /): read with --relative-keys only.
    etcd.put(
        "services/users/10.0.0.5:8080",
        r#"{"Op":0,"Addr":"10.0.0.5:8080"}"#,
    )
    .expect("put");
    let relative = once(&[
        "watch",
        &ep,
        set,
        "--once",
        "--format",
        "etcd-naming",
        "--relative-keys",
    ]);
    assert_eq!(names_ports(&relative), [("10.0.0.5:8080".to_owned(), 8080)]);

    let (mut reg, key) = register(&[
        &ep,
        set,
        "127.0.0.1:9091",
        "--format",
        "etcd-naming",
        "--metadata",
        "zone=us",
        "--ttl",
        "5",
    ]);
    assert_eq!(key, "/services/users/127.0.0.1:9091");
    let stored = etcd.get_prefix(&key).expect("get_prefix");
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert!(
        stored[0].1.contains(r#""Addr":"127.0.0.1:9091""#),
        "{stored:?}"
    );
    let value: Value = serde_json::from_str(&stored[0].1).expect("JSON");
    assert_eq!(
        value,
        json!({"Op": 0, "Addr": "127.0.0.1:9091", "Metadata": {"zone": "us"}})
    );
    assert_eq!(common::granted_ttl(&etcd, &key), 5);

    let both = once(&["watch", &ep, set, "--format", "etcd-naming", "--once"]);
    let mut got = names_ports(&both);
    got.sort();
    assert_eq!(
        got,
        [
            ("10.0.0.1:8080".to_owned(), 8080),
            ("127.0.0.1:9091".to_owned(), 9091)
        ]
    );
    let ours = both
        .iter()
        .find(|m| m["port"] == 9091)
        .expect("the registered member");
    assert_eq!(keys(ours), member_keys());
    assert_eq!(ours["host"], "127.0.0.1");
    assert_eq!(ours["metadata"], json!({"zone": "us"}));

    // ls in the naming format: both parsed; in Finagle's: not members.
    let out = run(&["ls", &ep, set, "--format", "etcd-naming"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let children = json_lines(&out);
    assert_eq!(children.len(), 2, "{out:?}");
    assert_eq!(children[0]["name"], "10.0.0.1:8080");
    assert_eq!(children[1]["name"], "127.0.0.1:9091");
    assert!(children.iter().all(|c| c["parsed"] == true), "{out:?}");
    let out = run(&["ls", &ep, set]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        json_lines(&out).iter().all(|c| c["parsed"].is_null()),
        "{out:?}"
    );

    // A streaming watch sees the registration leave; etcd no longer has it.
    let mut watch = Proc::spawn(
        "watch etcd-naming",
        &["watch", &ep, set, "--format", "etcd-naming"],
    );
    let snapshot = watch.json("the snapshot");
    assert_eq!(snapshot.as_array().map(Vec::len), Some(2), "{snapshot}");
    reg.stop("TERM");
    assert!(etcd.get_prefix(&key).expect("get_prefix").is_empty());
    removed_one(&mut watch, "127.0.0.1:9091", 1, "the registration left");
    watch.stop("INT");
}

#[test]
fn etcd_usage_errors_exit_2_and_unreachable_etcd_exits_1() {
    // Found before any connection (nothing listens on port 1).
    let e = "etcd://127.0.0.1:1";
    let z = "127.0.0.1:1";
    usage_error(
        &["register", z, "/a", "127.0.0.1:1", "--ttl", "5"],
        &[],
        &["--ttl", "etcd"],
    );
    usage_error(
        &["watch", z, "/a", "--relative-keys"],
        &[],
        &["--relative-keys", "etcd"],
    );
    usage_error(
        &["watch", z, "/a", "--format", "etcd-naming"],
        &[],
        &["--format etcd-naming", "Finagle"],
    );
    usage_error(
        &["ls", z, "/a", "--format", "etcd-naming"],
        &[],
        &["Finagle"],
    );
    usage_error(
        &["register", z, "/a", "h:1", "--format", "etcd-naming"],
        &[],
        &["Finagle"],
    );
    for flag in [
        &["--tls-ca", "x"][..],
        &["--tls-cert", "x"],
        &["--tls-key", "x"],
        &["--digest", "u:p"],
        &["--session-timeout", "5"],
    ] {
        for command in [
            &["watch", e, "/a"][..],
            &["ls", e, "/a"],
            &["register", e, "/a", "h:1"],
            &["serve", e],
        ] {
            let mut args = command.to_vec();
            args.extend_from_slice(flag);
            usage_error(&args, &[], &[flag[0], "ZooKeeper", "etcd://"]);
        }
    }
    usage_error(&["ls", "etcd://", "/a"], &[], &["etcd://"]);
    usage_error(&["watch", "etcd://h:1/chroot", "/a"], &[], &["etcd://"]);
    usage_error(&["watch", "etcd://h:1,,h:2", "/a"], &[], &["empty"]);
    usage_error(&["watch", "zk2!etcd://h:1!/a"], &[], &["ZooKeeper"]);
    usage_error(&["watch", e], &[], &["missing <PATH>"]);
    usage_error(&["register", e, "relative", "h:1"], &[], &["\"relative\""]);
    // clap's own errors (several lines): exit 2, nothing on stdout.
    for args in [
        &["watch", e, "/a", "--format", "bogus"][..],
        &["register", e, "/a", "h:1", "--ttl", "0"],
        &["register", e, "/a", "h:1", "--ttl", "3601"],
        &["register", e, "/a", "h:1", "--ttl", "1.5"],
        &["ls", e, "/a", "--ttl", "5"],
        &["watch", e, "/a", "--ttl", "5"],
        &["serve", e, "--format", "finagle"],
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        assert!(out.stdout.is_empty(), "{args:?}: {out:?}");
    }
    let out = run(&["watch", e, "/a", "--format", "bogus"]);
    assert!(
        out.stderr.contains("finagle") && out.stderr.contains("etcd-naming"),
        "the possible values are named: {out:?}"
    );

    // Nobody listens on this port: exit 1 naming the address.
    let port = testkit::free_port().expect("free port");
    let addr = format!("127.0.0.1:{port}");
    let url = format!("etcd://{addr}");
    let commands: Vec<Vec<&str>> = vec![
        vec!["watch", &url, "/a", "--once", "--connect-timeout", "2"],
        vec!["watch", &url, "/a", "--connect-timeout", "2"],
        vec![
            "register",
            &url,
            "/a",
            "127.0.0.1:1",
            "--connect-timeout",
            "2",
        ],
        vec!["ls", &url, "/a", "--connect-timeout", "2"],
        vec![
            "serve",
            &url,
            "--listen",
            "127.0.0.1:0",
            "--connect-timeout",
            "2",
        ],
    ];
    for args in &commands {
        let out = run(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {out:?}");
        assert!(out.elapsed < Duration::from_secs(30), "{args:?}: {out:?}");
        assert!(out.stdout.is_empty(), "{args:?}: {out:?}");
        let errors = out.error_lines();
        assert_eq!(errors.len(), 1, "{args:?}: one error line: {out:?}");
        assert!(
            errors[0].contains("etcd") && errors[0].contains(&addr),
            "{args:?}: names the store and address: {out:?}"
        );
    }

    // The help says how to use etcd.
    let top = run(&["--help"]).stdout.join("\n");
    assert!(top.contains("etcd://127.0.0.1:2379"), "{top}");
    for command in ["watch", "register", "ls", "serve"] {
        let out = run(&[command, "--help"]);
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        let text = out.stdout.join("\n");
        assert!(text.contains("etcd://"), "{command} --help: {text}");
        if command != "serve" {
            assert!(text.contains("--format <FORMAT>"), "{command}: {text}");
            assert!(text.contains("etcd-naming"), "{command}: {text}");
        }
    }
    let register = run(&["register", "--help"]).stdout.join("\n");
    assert!(register.contains("--ttl <SECS>"), "{register}");
}
