//! The `serverset` example CLI against a real ZooKeeper: register, watch
//! (once and streaming, filters, Finagle destinations), ls, signals, usage
//! errors and an unreachable server.
//!
//! The binary is the package's own (`CARGO_BIN_EXE_serverset`), run
//! as a child process; every child is killed if a test fails.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use serversets::zookeeper_client as zk;

/// How long any awaited output or exit may take (bounds a broken run only).
const DEADLINE: Duration = common::DEADLINE;

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
        let mut child = Command::new(binary())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
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
    Proc::spawn(&args.join(" "), args).finish()
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
