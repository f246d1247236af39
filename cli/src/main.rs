//! `serverset`: watch, register and inspect Finagle serversets from the
//! command line.
//!
//! ```text
//! # The live members of a set, once, as a JSON array (snapshot order):
//! cargo run --release --example serverset -- watch 127.0.0.1:2181 /discovery/prod/users --once
//!
//! # Follow a set: the snapshot line, then one {"added","removed","size"} line
//! # per change, until Ctrl-C / SIGTERM. A Finagle destination works too:
//! cargo run --release --example serverset -- watch 'zk2!127.0.0.1:2181!/discovery/prod/users!http'
//! cargo run --release --example serverset -- watch 127.0.0.1:2181 /aurora/www/prod/web --shard 3
//!
//! # Register a member (prints its znode path) until Ctrl-C / SIGTERM:
//! cargo run --release --example serverset -- register 127.0.0.1:2181 /discovery/prod/users \
//!     10.0.0.1:9090 --additional http=10.0.0.1:8080 --shard 0 --metadata zone=eu-1
//!
//! # Every child of a set, raw, and whether it parses as a member:
//! cargo run --release --example serverset -- ls 127.0.0.1:2181 /discovery/prod/users
//!
//! # Which memcache server each key (one per stdin line) goes to, by the
//! # ketama ring Finagle and pylibmc (ketama_weighted) use:
//! printf 'user:1\nuser:2\n' | cargo run --release --example serverset -- \
//!     ring --servers 10.0.0.1:11211,10.0.0.2:11211:2
//! ```
//!
//! Every command takes `--session-timeout SECS`, `--connect-timeout SECS`
//! and `--digest USER:PASS`. Standard output carries only JSON lines (or,
//! for `register`, znode paths: one more line each time the member is
//! re-created after a session expiry); logs go to standard error, filtered
//! by `RUST_LOG` (default `warn`).
//!
//! Exit codes: 0 on success (also after SIGINT / SIGTERM ends `watch` or
//! `register`), 2 for usage errors, 1 for runtime errors (such as an
//! unreachable ZooKeeper), with a one-line `error: ...` on standard error.

use std::collections::BTreeMap;
use std::error::Error as StdError;
use std::future::Future;
use std::io::{self, IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde::Serialize;
use serversets::{
    Client, Destination, Endpoint, Entry, Member, RawChild, Selection, ServerSetPath,
};
use tracing::{debug, info, warn};

/// Finagle-compatible ZooKeeper serversets: watch, register, inspect.
#[derive(Debug, Parser)]
#[command(
    name = "serverset",
    version,
    after_help = "Examples:\n  \
    serverset watch 127.0.0.1:2181 /discovery/prod/users --once\n  \
    serverset watch 'zk2!127.0.0.1:2181!/discovery/prod/users!http'\n  \
    serverset register 127.0.0.1:2181 /discovery/prod/users 10.0.0.1:9090 --additional http=10.0.0.1:8080\n  \
    serverset ls 127.0.0.1:2181 /discovery/prod/users\n  \
    printf 'user:1\\n' | serverset ring --servers 10.0.0.1:11211,10.0.0.2:11211:2\n\n\
Logs go to stderr (RUST_LOG, default warn). Exit codes: 0 ok, 1 runtime error, 2 usage error."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the live members as a JSON array, then (without --once) one
    /// JSON line per change until SIGINT/SIGTERM.
    #[command(
        after_help = "ZK may be a Finagle destination instead, with PATH omitted:\n  \
                      zk2!host1:2181,host2:2181!/discovery/prod/users[!endpoint]"
    )]
    Watch {
        /// ZooKeeper connect string (host:port,...[/chroot]) or a Finagle
        /// destination (zk2!hosts!/path[!endpoint], zk!...)
        #[arg(value_name = "ZK")]
        target: String,
        /// The serverset path (omitted with a Finagle destination)
        #[arg(value_name = "PATH")]
        path: Option<String>,
        /// Serve this named additional endpoint instead of the service
        /// endpoint (overrides a destination's endpoint)
        #[arg(long, value_name = "NAME")]
        endpoint: Option<String>,
        /// Only members of this shard
        #[arg(long, value_name = "N", allow_negative_numbers = true)]
        shard: Option<i32>,
        /// Print the current members and exit
        #[arg(long)]
        once: bool,
        #[command(flatten)]
        connection: Connection,
    },
    /// Register a member and keep it registered until SIGINT/SIGTERM;
    /// prints its znode path.
    Register {
        /// ZooKeeper connect string (host:port,...[/chroot])
        #[arg(value_name = "ZK")]
        connect: String,
        /// The serverset path
        #[arg(value_name = "PATH")]
        path: String,
        /// The member's service endpoint
        #[arg(value_name = "HOST:PORT")]
        endpoint: String,
        /// The member's shard id
        #[arg(long, value_name = "N", allow_negative_numbers = true)]
        shard: Option<i32>,
        /// A named additional endpoint (repeatable)
        #[arg(long, value_name = "NAME=HOST:PORT")]
        additional: Vec<String>,
        /// A metadata entry (repeatable)
        #[arg(long, value_name = "K=V")]
        metadata: Vec<String>,
        #[command(flatten)]
        connection: Connection,
    },
    /// Print every child of a set as a JSON line: name, raw data, and
    /// whether it parses as a member (and why not).
    Ls {
        /// ZooKeeper connect string (host:port,...[/chroot]) or a Finagle
        /// destination
        #[arg(value_name = "ZK")]
        target: String,
        /// The serverset path (omitted with a Finagle destination)
        #[arg(value_name = "PATH")]
        path: Option<String>,
        #[command(flatten)]
        connection: Connection,
    },
    /// Read keys from stdin, one a line, and print `key<TAB>host:port`: the
    /// memcache server the ketama ring sends each key to.
    Ring {
        /// The servers, HOST:PORT[:WEIGHT],...
        #[arg(long, value_name = "HOST:PORT[:WEIGHT],...")]
        servers: String,
        /// Follow libmemcached's (pylibmc's) float arithmetic where it
        /// differs from Finagle's for some server counts
        #[arg(long)]
        libmemcached: bool,
    },
}

#[derive(Debug, Args)]
struct Connection {
    /// ZooKeeper session timeout
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = parse_secs)]
    session_timeout: Duration,
    /// Give up connecting after this long
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = parse_secs)]
    connect_timeout: Duration,
    /// Authenticate with ZooKeeper's digest scheme
    #[arg(long, value_name = "USER:PASS")]
    digest: Option<String>,
}

fn parse_secs(input: &str) -> Result<Duration, String> {
    let secs: f64 = input
        .trim()
        .parse()
        .map_err(|_| format!("{input:?} is not a number of seconds"))?;
    if secs.is_nan() || secs <= 0.0 {
        return Err("it must be above zero".into());
    }
    Duration::try_from_secs_f64(secs).map_err(|e| format!("{input:?}: {e}"))
}

/// How to reach ZooKeeper, validated.
#[derive(Debug)]
struct Connect {
    address: String,
    session_timeout: Duration,
    connect_timeout: Duration,
    digest: Option<(String, String)>,
}

/// A validated command.
#[derive(Debug)]
enum Plan {
    Watch {
        connect: Connect,
        path: ServerSetPath,
        selection: Selection,
        once: bool,
    },
    Register {
        connect: Connect,
        path: ServerSetPath,
        member: Member,
    },
    Ls {
        connect: Connect,
        path: ServerSetPath,
    },
    Ring(serversets_memcache::KetamaRing),
}

/// Checks what clap cannot: paths, endpoints, `K=V` pairs, destinations.
/// The error is a one-line message for a usage error (exit 2).
fn plan(command: Command) -> Result<Plan, String> {
    Ok(match command {
        Command::Watch {
            target,
            path,
            endpoint,
            shard,
            once,
            connection,
        } => {
            let (address, path, dest_endpoint) = target_and_path(&target, path)?;
            let endpoint = match endpoint {
                Some(name) if name.is_empty() => return Err("--endpoint must not be empty".into()),
                Some(name) => Some(name),
                None => dest_endpoint,
            };
            let mut selection = Selection::service().with_endpoint(endpoint);
            if let Some(shard) = shard {
                selection = selection.with_shard(shard);
            }
            Plan::Watch {
                connect: connection.validate(address)?,
                path,
                selection,
                once,
            }
        }
        Command::Register {
            connect,
            path,
            endpoint,
            shard,
            additional,
            metadata,
            connection,
        } => {
            let path = parse_path(&path)?;
            let endpoint: Endpoint = endpoint.parse().map_err(|e| format!("{e}"))?;
            let mut member = Member::new(endpoint);
            if let Some(shard) = shard {
                member = member.with_shard(shard);
            }
            for pair in &additional {
                let (name, endpoint) = split_pair("--additional", "NAME=HOST:PORT", pair)?;
                let endpoint: Endpoint = endpoint
                    .parse()
                    .map_err(|e| format!("--additional {pair:?}: {e}"))?;
                if member.additional_endpoints.contains_key(name) {
                    return Err(format!("--additional {name:?} is given more than once"));
                }
                member = member.with_additional(name, endpoint);
            }
            for pair in &metadata {
                let (key, value) = split_pair("--metadata", "K=V", pair)?;
                if member.metadata.contains_key(key) {
                    return Err(format!("--metadata {key:?} is given more than once"));
                }
                member = member.with_metadata(key, value);
            }
            Plan::Register {
                connect: connection.validate(connect)?,
                path,
                member,
            }
        }
        Command::Ls {
            target,
            path,
            connection,
        } => {
            let (address, path, _) = target_and_path(&target, path)?;
            Plan::Ls {
                connect: connection.validate(address)?,
                path,
            }
        }
        Command::Ring {
            servers,
            libmemcached,
        } => {
            let servers =
                serversets::fixed::parse_list(&servers).map_err(|e| format!("--servers: {e}"))?;
            if servers.is_empty() {
                return Err("--servers: give at least one HOST:PORT".into());
            }
            let nodes = servers
                .into_iter()
                .map(|s| serversets_memcache::ring::Node::new(s.endpoint, s.weight))
                .collect();
            let compatibility = if libmemcached {
                serversets_memcache::Compatibility::Libmemcached
            } else {
                serversets_memcache::Compatibility::Finagle
            };
            Plan::Ring(serversets_memcache::KetamaRing::with_compatibility(
                nodes,
                compatibility,
            ))
        }
    })
}

/// `ring`: one `key<TAB>host:port` line per stdin line.
fn ring(ring: &serversets_memcache::KetamaRing) -> Result<(), BoxError> {
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    for line in io::stdin().lines() {
        let key = line?;
        let key = key.strip_suffix('\r').unwrap_or(&key);
        match ring.pick(key.as_bytes()) {
            Some(node) => writeln!(out, "{key}\t{}", node.endpoint)?,
            None => return Err("no server has a positive weight".into()),
        }
    }
    out.flush()?;
    Ok(())
}

/// `<ZK> <PATH>`, or a Finagle destination alone.
fn target_and_path(
    target: &str,
    path: Option<String>,
) -> Result<(String, ServerSetPath, Option<String>), String> {
    if target.contains('!') {
        let dest: Destination = target.parse().map_err(|e| format!("{e}"))?;
        if let Some(extra) = path {
            return Err(format!(
                "unexpected argument {extra:?}: the Finagle destination already names the path"
            ));
        }
        return Ok((dest.connect, dest.path, dest.endpoint));
    }
    let Some(path) = path else {
        return Err(
            "missing <PATH> (give <ZK> <PATH>, or a Finagle destination zk2!hosts!/path[!endpoint])"
                .into(),
        );
    };
    Ok((target.to_owned(), parse_path(&path)?, None))
}

fn parse_path(path: &str) -> Result<ServerSetPath, String> {
    ServerSetPath::new(path).map_err(|e| format!("{e}"))
}

/// Splits `a=b`, requiring a non-empty `a`.
fn split_pair<'a>(flag: &str, shape: &str, input: &'a str) -> Result<(&'a str, &'a str), String> {
    match input.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key, value)),
        _ => Err(format!("{flag} {input:?}: expected {shape}")),
    }
}

impl Connection {
    fn validate(self, address: String) -> Result<Connect, String> {
        if address.trim().is_empty() {
            return Err("the ZooKeeper connect string is empty".into());
        }
        let digest = match self.digest {
            None => None,
            Some(digest) => match digest.split_once(':') {
                Some((user, pass)) if !user.is_empty() => Some((user.to_owned(), pass.to_owned())),
                _ => return Err("--digest: expected USER:PASS".into()),
            },
        };
        Ok(Connect {
            address,
            session_timeout: self.session_timeout,
            connect_timeout: self.connect_timeout,
            digest,
        })
    }
}

type BoxError = Box<dyn StdError + Send + Sync>;

fn main() -> ExitCode {
    let cli = Cli::parse(); // usage errors: clap prints them and exits 2
    init_logging();
    let plan = match plan(cli.command) {
        Ok(Plan::Ring(r)) => {
            return match ring(&r) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {}", one_line(&e.to_string()));
                    ExitCode::from(1)
                }
            };
        }
        Ok(plan) => plan,
        Err(message) => {
            eprintln!("error: {}", one_line(&message));
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!(
                "error: cannot start the async runtime: {}",
                one_line(&e.to_string())
            );
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(run(plan));
    runtime.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(&e.to_string()));
            ExitCode::from(1)
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .with_ansi(io::stderr().is_terminal())
        .try_init();
}

fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

async fn run(plan: Plan) -> Result<(), BoxError> {
    // Installed before anything else, so a signal at any time is handled.
    let mut signals = Signals::new()?;
    match plan {
        Plan::Watch {
            connect,
            path,
            selection,
            once,
        } => watch(&mut signals, connect, path, selection, once).await,
        Plan::Register {
            connect,
            path,
            member,
        } => register(&mut signals, connect, path, member).await,
        Plan::Ls { connect, path } => ls(&mut signals, connect, path).await,
        Plan::Ring(r) => ring(&r),
    }
}

/// SIGINT and SIGTERM (Ctrl-C elsewhere).
struct Signals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> io::Result<Signals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Signals {
                interrupt: signal(SignalKind::interrupt())?,
                terminate: signal(SignalKind::terminate())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    /// Waits for the next signal; returns its name.
    async fn recv(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.interrupt.recv() => "SIGINT",
                _ = self.terminate.recv() => "SIGTERM",
            }
        }
        #[cfg(not(unix))]
        {
            match tokio::signal::ctrl_c().await {
                Ok(()) => "Ctrl-C",
                Err(_) => std::future::pending().await,
            }
        }
    }

    /// Runs `work` unless a signal comes first (`Err(signal name)`).
    async fn or_signal<T>(&mut self, work: impl Future<Output = T>) -> Result<T, &'static str> {
        tokio::select! {
            result = work => Ok(result),
            signal = self.recv() => Err(signal),
        }
    }
}

/// Connects; `Ok(Err(signal))` if a signal came first.
async fn connect(
    signals: &mut Signals,
    connect: &Connect,
) -> Result<Result<Client, &'static str>, BoxError> {
    let mut builder = Client::builder(connect.address.as_str())
        .session_timeout(connect.session_timeout)
        .connect_timeout(connect.connect_timeout);
    if let Some((user, pass)) = &connect.digest {
        builder = builder.digest(user, pass);
    }
    match signals.or_signal(builder.connect()).await {
        Ok(client) => Ok(Ok(client?)),
        Err(signal) => {
            info!(signal, "interrupted while connecting");
            Ok(Err(signal))
        }
    }
}

/// Closes the session (its ephemeral nodes go at once), bounded in time.
async fn close(client: Client, connect: &Connect) {
    let limit = connect.session_timeout + Duration::from_secs(2);
    if tokio::time::timeout(limit, client.close()).await.is_err() {
        warn!("closing the ZooKeeper session timed out");
    }
}

/// Writes one line to stdout and flushes it.
fn print_line(line: &str) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(line.as_bytes())?;
    out.write_all(b"\n")?;
    out.flush()
}

fn interrupted(signal: &str, before: &str) -> BoxError {
    format!("interrupted by {signal} before {before}").into()
}

#[derive(Serialize)]
struct EndpointJson<'a> {
    host: &'a str,
    port: u16,
}

impl<'a> From<&'a Endpoint> for EndpointJson<'a> {
    fn from(e: &'a Endpoint) -> Self {
        EndpointJson {
            host: &e.host,
            port: e.port,
        }
    }
}

/// One live member as `watch` prints it.
#[derive(Serialize)]
struct MemberJson<'a> {
    member: &'a str,
    host: &'a str,
    port: u16,
    shard: Option<i32>,
    weight: f64,
    status: String,
    additional: BTreeMap<&'a str, EndpointJson<'a>>,
    metadata: &'a BTreeMap<String, String>,
}

impl<'a> From<&'a Entry> for MemberJson<'a> {
    fn from(entry: &'a Entry) -> Self {
        MemberJson {
            member: &entry.name,
            host: &entry.endpoint.host,
            port: entry.endpoint.port,
            shard: entry.member.shard,
            weight: entry.weight,
            status: entry.member.status.to_string(),
            additional: entry
                .member
                .additional_endpoints
                .iter()
                .map(|(name, e)| (name.as_str(), e.into()))
                .collect(),
            metadata: &entry.member.metadata,
        }
    }
}

fn members(entries: &[Arc<Entry>]) -> Vec<MemberJson<'_>> {
    entries.iter().map(|e| MemberJson::from(&**e)).collect()
}

#[derive(Serialize)]
struct ChangeJson<'a> {
    added: Vec<MemberJson<'a>>,
    removed: Vec<MemberJson<'a>>,
    size: usize,
}

/// Prints a watch line; `Ok(false)` when stdout is closed (stop quietly).
fn emit(value: &impl Serialize) -> Result<bool, BoxError> {
    let line = serde_json::to_string(value)?;
    match print_line(&line) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
            debug!("stdout closed; stopping");
            Ok(false)
        }
        Err(e) => Err(format!("writing to stdout: {e}").into()),
    }
}

async fn watch(
    signals: &mut Signals,
    connect: Connect,
    path: ServerSetPath,
    selection: Selection,
    once: bool,
) -> Result<(), BoxError> {
    let client = match self::connect(signals, &connect).await? {
        Ok(client) => client,
        Err(signal) if once => return Err(interrupted(signal, "the set was read")),
        Err(_) => return Ok(()),
    };
    let result = follow(signals, &client, &path, selection, once).await;
    close(client, &connect).await;
    result
}

async fn follow(
    signals: &mut Signals,
    client: &Client,
    path: &ServerSetPath,
    selection: Selection,
    once: bool,
) -> Result<(), BoxError> {
    let watch = match signals.or_signal(client.watch_with(path, selection)).await {
        Ok(watch) => watch?,
        Err(signal) if once => return Err(interrupted(signal, "the set was read")),
        Err(_) => return Ok(()),
    };
    // Subscribing first: the printed snapshot is where the changes start.
    let mut changes = watch.changes();
    let snapshot = Arc::clone(changes.snapshot());
    if !emit(&members(snapshot.entries()))? || once {
        return Ok(());
    }
    loop {
        tokio::select! {
            change = changes.next() => {
                let Some(change) = change else {
                    return Err(format!("the watch of {path} ended").into());
                };
                let line = ChangeJson {
                    added: members(&change.added),
                    removed: members(&change.removed),
                    size: change.snapshot.len(),
                };
                if !emit(&line)? {
                    return Ok(());
                }
            }
            signal = signals.recv() => {
                info!(signal, "stopping the watch");
                return Ok(());
            }
        }
    }
}

async fn register(
    signals: &mut Signals,
    connect: Connect,
    path: ServerSetPath,
    member: Member,
) -> Result<(), BoxError> {
    let Ok(client) = self::connect(signals, &connect).await? else {
        return Ok(());
    };
    let result = stay_registered(signals, &client, &connect, &path, member).await;
    close(client, &connect).await;
    result
}

async fn stay_registered(
    signals: &mut Signals,
    client: &Client,
    connect: &Connect,
    path: &ServerSetPath,
    member: Member,
) -> Result<(), BoxError> {
    let mut registration = match signals.or_signal(client.register(path, member)).await {
        Ok(registration) => registration?,
        Err(signal) => {
            info!(signal, "interrupted while registering");
            return Ok(());
        }
    };
    let mut printed: Option<String> = None;
    let mut show = |znode: String| {
        if printed.as_ref() != Some(&znode) {
            if let Err(e) = print_line(&znode) {
                warn!(error = %e, %znode, "cannot write the member path to stdout");
            }
            printed = Some(znode);
        }
    };
    if let Some(znode) = registration.znode() {
        show(znode);
    }
    loop {
        tokio::select! {
            signal = signals.recv() => {
                info!(signal, "deregistering");
                break;
            }
            changed = registration.changed() => match changed {
                Some(znode) => show(znode),
                None => {
                    debug!(path = %path, "member absent for now; the library re-creates it");
                    // `changed` returns at once if the registration ended: pace it.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            },
        }
    }
    let limit = connect.session_timeout + Duration::from_secs(2);
    if tokio::time::timeout(limit, registration.close())
        .await
        .is_err()
    {
        warn!("deregistering timed out; the member goes with the session");
    }
    Ok(())
}

/// One child as `ls` prints it.
#[derive(Serialize)]
struct ChildJson<'a> {
    name: &'a str,
    data: String,
    /// `None` for children that are not members (`vector_` nodes, ...).
    parsed: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl<'a> From<&'a RawChild> for ChildJson<'a> {
    fn from(child: &'a RawChild) -> Self {
        let (parsed, error) = match &child.decoded {
            None => (None, None),
            Some(Ok(_)) => (Some(true), None),
            Some(Err(e)) => (Some(false), Some(e.to_string())),
        };
        ChildJson {
            name: &child.name,
            data: String::from_utf8_lossy(&child.data).into_owned(),
            parsed,
            error,
        }
    }
}

async fn ls(signals: &mut Signals, connect: Connect, path: ServerSetPath) -> Result<(), BoxError> {
    let client = match self::connect(signals, &connect).await? {
        Ok(client) => client,
        Err(signal) => return Err(interrupted(signal, "the set was read")),
    };
    let result = match signals.or_signal(client.inspect(&path)).await {
        Ok(Ok(children)) => children
            .iter()
            .map(ChildJson::from)
            .try_for_each(|child| emit(&child).map(drop)),
        Ok(Err(e)) => Err(e.into()),
        Err(signal) => Err(interrupted(signal, "the set was read")),
    };
    close(client, &connect).await;
    result
}
