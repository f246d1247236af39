//! `serverset`: watch, register and inspect Finagle serversets from the
//! command line, in ZooKeeper or in etcd.
//!
//! Every command that talks to a store takes a ZooKeeper connect string
//! (`host:port[,host:port][/chroot]`), a Finagle destination
//! (`zk2!hosts!/path[!endpoint]`, always ZooKeeper) or an etcd connect
//! string (`etcd://host:port[,host:port]`); the output is the same for
//! both stores.
//!
//! ```text
//! # The live members of a set, once, as a JSON array (snapshot order):
//! serverset watch 127.0.0.1:2181 /discovery/prod/users --once
//! serverset watch etcd://127.0.0.1:2379 /services/users --once
//!
//! # Follow a set: the snapshot line, then one {"added","removed","size"} line
//! # per change, until Ctrl-C / SIGTERM. A Finagle destination works too:
//! serverset watch 'zk2!127.0.0.1:2181!/discovery/prod/users!http'
//! serverset watch 127.0.0.1:2181 /aurora/www/prod/web --shard 3
//!
//! # Register a member (prints its znode path) until Ctrl-C / SIGTERM:
//! serverset register 127.0.0.1:2181 /discovery/prod/users \
//!     10.0.0.1:9090 --additional http=10.0.0.1:8080 --shard 0 --metadata zone=eu-1
//!
//! # Register another process while its health check passes (the member is
//! # deleted while the check fails, re-created when it passes again):
//! serverset register 127.0.0.1:2181 /discovery/prod/users 10.0.0.1:9090 \
//!     --check http://10.0.0.1:9090/health --check-interval 2 --check-timeout 0.5
//! serverset register 127.0.0.1:2181 /discovery/prod/cache 10.0.0.1:11211 \
//!     --check tcp:10.0.0.1:11211
//!
//! # Every child of a set, raw, and whether it parses as a member:
//! serverset ls 127.0.0.1:2181 /discovery/prod/users
//!
//! # In etcd: members are keys below PATH/ held by a lease (--ttl, default
//! # 10 s), in Finagle's JSON (member_ keys) or, with --format etcd-naming,
//! # in etcd's gRPC naming format (PATH/HOST:PORT keys, read by Go's
//! # etcd resolver); register prints the member's key:
//! serverset register etcd://127.0.0.1:2379 /services/users 10.0.0.1:8080 \
//!     --format etcd-naming --ttl 5
//! serverset watch etcd://127.0.0.1:2379,127.0.0.1:22379 /services/users --format etcd-naming
//! serverset ls etcd://127.0.0.1:2379 /services/users --format etcd-naming
//!
//! # The discovery gateway (HTTP, Server-Sent Events, TTL registrations):
//! serverset serve etcd://127.0.0.1:2379 --listen 127.0.0.1:8080
//!
//! # Over TLS (ZooKeeper's secureClientPort), with a client certificate,
//! # and the digest from the environment rather than the command line:
//! SERVERSET_DIGEST=user:secret serverset ls zk1:2281 /discovery/prod/users \
//!     --tls-ca ca.pem --tls-cert client.pem --tls-key client.key
//!
//! # Which memcache server each key (one per stdin line) goes to, by the
//! # ketama ring Finagle and pylibmc (ketama_weighted) use:
//! printf 'user:1\nuser:2\n' | serverset ring --servers 10.0.0.1:11211,10.0.0.2:11211:2
//!
//! # Shell completions (bash, zsh, fish, elvish, powershell):
//! serverset completions bash > ~/.local/share/bash-completion/completions/serverset
//! ```
//!
//! Every store command takes `--connect-timeout SECS`. With ZooKeeper it
//! also takes `--session-timeout SECS`, `--digest USER:PASS` (default: the
//! `SERVERSET_DIGEST` environment variable, so that the password need not
//! show in `ps`; `--digest` wins), and `--tls-ca FILE` (TLS, trusting that
//! PEM CA bundle) with optionally `--tls-cert FILE --tls-key FILE` (a client
//! identity for mutual TLS); these are usage errors with `etcd://` (where
//! `SERVERSET_DIGEST` is ignored). `watch`, `register` and `ls` take
//! `--format finagle|etcd-naming` (with ZooKeeper only `finagle`), and
//! `register` takes `--ttl SECS` (etcd only); `--relative-keys` (etcd
//! only) names keys without PATH's leading `/`, as Go's etcd resolver
//! reads them. Standard output carries only
//! results: for `watch` and `ls` JSON, one compact document per line, each
//! line ending with a newline; for `register` znode paths or etcd keys (one
//! more line each time the member is re-created); for `ring`
//! `key<TAB>host:port` lines; for `completions` the script. Logs go to
//! standard error, filtered by `RUST_LOG` (default `warn`).
//! `serverset COMMAND --help` says what each command prints.
//!
//! Exit codes: 0 on success (also after SIGINT / SIGTERM ends `watch` or
//! `register`), 2 for usage errors (including unreadable or unusable TLS
//! files, ZooKeeper-only flags with etcd and etcd-only flags with
//! ZooKeeper), 1 for runtime errors (such as an unreachable ZooKeeper or
//! etcd), with a one-line `error: ...` on standard error.

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, CommandFactory, Parser, Subcommand, ValueHint};
use clap_complete::Shell;
use serde::Serialize;
use serversets::naming::Format;
use serversets::{
    Backend, Client, Destination, Endpoint, EtcdClient, Member, RawChild, RegisterOptions,
    Selection, ServerSetPath, Tls, WatchOptions,
};
use tracing::{debug, info, warn};

/// The environment variable read for the digest when `--digest` is absent.
const DIGEST_ENV: &str = "SERVERSET_DIGEST";

/// The environment variable read for the gateway's token when `--token`
/// is absent.
const TOKEN_ENV: &str = "SERVERSET_TOKEN";

/// How often a health check runs by default.
const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// The health check's default timeout (capped by the interval).
const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// The ZooKeeper session timeout by default.
const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest etcd lease TTL `--ttl` takes, in seconds.
const MAX_TTL_SECS: u64 = 3600;

/// What the `--help` of every ZooKeeper command says about exit codes.
macro_rules! zk_exit_codes {
    () => {
        zk_exit_codes!("success")
    };
    ($success:literal) => {
        concat!(
            "Exit codes:\n  0  ",
            $success,
            "\n  \
         1  runtime error (ZooKeeper or etcd unreachable, TLS handshake refused, not authorized, ...)\n  \
         2  usage error (bad arguments, unreadable or unusable files, a flag the store does not take)\n\
         Errors are one `error: ...` line on stderr; logs go to stderr too (RUST_LOG, default warn)."
        )
    };
}

/// Finagle-compatible serversets in ZooKeeper or etcd: watch, register,
/// inspect, serve.
#[derive(Debug, Parser)]
#[command(
    name = "serverset",
    version,
    after_help = "Examples:\n  \
    serverset watch 127.0.0.1:2181 /discovery/prod/users --once\n  \
    serverset watch 'zk2!127.0.0.1:2181!/discovery/prod/users!http'\n  \
    serverset register 127.0.0.1:2181 /discovery/prod/users 10.0.0.1:9090 --additional http=10.0.0.1:8080\n  \
    serverset register 127.0.0.1:2181 /discovery/prod/users 10.0.0.1:9090 --check http://10.0.0.1:9090/health\n  \
    serverset ls 127.0.0.1:2181 /discovery/prod/users\n  \
    SERVERSET_DIGEST=user:secret serverset ls zk1:2281 /discovery/prod/users --tls-ca ca.pem\n  \
    serverset watch etcd://127.0.0.1:2379 /services/users --once\n  \
    serverset register etcd://127.0.0.1:2379 /services/users 10.0.0.1:8080 --format etcd-naming --ttl 5\n  \
    serverset serve etcd://127.0.0.1:2379,127.0.0.1:22379 --listen 127.0.0.1:8080\n  \
    printf 'user:1\\n' | serverset ring --servers 10.0.0.1:11211,10.0.0.2:11211:2\n  \
    serverset completions bash > ~/.local/share/bash-completion/completions/serverset\n\n\
Stores: a ZooKeeper connect string (host:port,...[/chroot]) or a Finagle destination (zk2!hosts!/path[!endpoint])\n\
is ZooKeeper; etcd://host:port[,host:port] is etcd (--format finagle|etcd-naming says how its members are stored;\n\
register --ttl SECS is the etcd lease TTL). The output is the same for both.\n\n\
Output: stdout carries only the results (JSON: one document per line); `serverset COMMAND --help` says what each prints.\n\n\
Environment:\n  \
    SERVERSET_DIGEST=USER:PASS  the ZooKeeper digest when --digest is not given (keeps the password out of `ps`; ignored with etcd)\n  \
    RUST_LOG                    the log filter for stderr (default warn)\n\n\
Exit codes: 0 success, 1 runtime error (e.g. ZooKeeper or etcd unreachable), 2 usage error."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the live members as a JSON array, then (without --once) one
    /// JSON line per change until SIGINT/SIGTERM.
    #[command(after_help = concat!(
        "Prints (stdout), one JSON document per line:\n  \
         first   the live members, a JSON array in snapshot (sequence) order, each\n          \
         {\"member\",\"host\",\"port\",\"shard\",\"weight\",\"status\",\"additional\",\"metadata\"}\n  \
         then    without --once, one {\"added\":[...],\"removed\":[...],\"size\":N} line per change\n\
         \"member\" is the znode name (ZooKeeper) or the key below PATH/ (etcd: member_..., or HOST:PORT\n\
         with --format etcd-naming).\n\n\
         STORE is a ZooKeeper connect string, etcd://host:port[,host:port], or a Finagle destination\n\
         (ZooKeeper) with PATH omitted:\n  \
         zk2!host1:2181,host2:2181!/discovery/prod/users[!endpoint]\n\n\
         Examples:\n  \
         serverset watch 127.0.0.1:2181 /discovery/prod/users --once\n  \
         serverset watch etcd://127.0.0.1:2379 /services/users --once\n  \
         serverset watch etcd://127.0.0.1:2379 /services/users --format etcd-naming\n\n\
         ",
        zk_exit_codes!("success; also when SIGINT/SIGTERM ends it or stdout is closed")
    ))]
    Watch {
        /// ZooKeeper connect string (host:port,...[/chroot]), etcd connect
        /// string (etcd://host:port,...) or a Finagle destination
        /// (zk2!hosts!/path[!endpoint], zk!...)
        #[arg(value_name = "STORE")]
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
        format: FormatArg,
        #[command(flatten)]
        connection: Connection,
    },
    /// Register a member and keep it registered until SIGINT/SIGTERM
    /// (optionally only while a health check passes); prints its znode
    /// path (etcd: its key).
    #[command(after_help = concat!(
        "Prints (stdout): the member's znode path (etcd: its key), one line, once the member exists; one\n\
         more line each time it is re-created (after a session expiry or a lost etcd lease, or when a\n\
         failing --check passes again). While --check fails the member is deleted and nothing is printed.\n\n\
         In etcd the member is a key below PATH/ attached to a lease of --ttl seconds (default 10), kept\n\
         alive while the command runs and revoked when it stops: PATH/member_<lease id> in Finagle's JSON,\n\
         or with --format etcd-naming PATH/HOST:PORT holding {\"Op\":0,\"Addr\":\"HOST:PORT\",\"Metadata\":{...}}\n\
         (etcd's gRPC naming format: only the service endpoint and the metadata are stored).\n\n\
         Examples:\n  \
         serverset register 127.0.0.1:2181 /discovery/prod/users 10.0.0.1:9090 --additional http=10.0.0.1:8080\n  \
         serverset register etcd://127.0.0.1:2379 /services/users 10.0.0.1:8080 --format etcd-naming --ttl 5\n\n\
         Health checks (--check), to register another process:\n  \
         tcp:HOST:PORT          passes when a TCP connection to HOST:PORT opens within the timeout\n  \
         http://HOST:PORT/PATH  passes when a GET is answered 2xx within the timeout (https:// too,\n                         \
         verified against the Mozilla roots; redirects not followed, no proxy)\n\
         Each check runs every --check-interval; one that fails deletes the member, one that passes\n\
         again re-creates it (with a new znode path).\n\n\
         ",
        zk_exit_codes!("success: SIGINT/SIGTERM ended it (the member is deleted first)")
    ))]
    Register {
        /// ZooKeeper connect string (host:port,...[/chroot]) or etcd
        /// connect string (etcd://host:port,...)
        #[arg(value_name = "STORE")]
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
        /// etcd only: the lease TTL in whole seconds, 1-3600 (default 10):
        /// how long the member outlives this process if it dies without
        /// deregistering. ZooKeeper members live as long as the session
        #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=MAX_TTL_SECS))]
        ttl: Option<u64>,
        #[command(flatten)]
        format: FormatArg,
        #[command(flatten)]
        check: CheckArgs,
        #[command(flatten)]
        connection: Connection,
    },
    /// Print every child of a set as a JSON line: name, raw data, and
    /// whether it parses as a member (and why not).
    #[command(after_help = concat!(
        "Prints (stdout): one JSON document per line, one line per child of PATH (etcd: per key directly\n\
         below PATH/), sorted by name:\n  \
         {\"name\":\"member_0000000001\",\"data\":\"<raw data, lossy UTF-8>\",\"parsed\":true}\n\
         \"parsed\" is false, with an \"error\", for a member whose data does not decode, and null for\n\
         children that are not members (vector_ nodes, ...; etcd: keys not in --format's naming).\n\
         Nothing for a PATH that does not exist.\n\n\
         Examples:\n  \
         serverset ls 127.0.0.1:2181 /discovery/prod/users\n  \
         serverset ls etcd://127.0.0.1:2379 /services/users --format etcd-naming\n\n\
         ",
        zk_exit_codes!()
    ))]
    Ls {
        /// ZooKeeper connect string (host:port,...[/chroot]), etcd connect
        /// string (etcd://host:port,...) or a Finagle destination
        #[arg(value_name = "STORE")]
        target: String,
        /// The serverset path (omitted with a Finagle destination)
        #[arg(value_name = "PATH")]
        path: Option<String>,
        #[command(flatten)]
        format: FormatArg,
        #[command(flatten)]
        connection: Connection,
    },
    /// Read keys from stdin, one a line, and print `key<TAB>host:port`: the
    /// memcache server the ketama ring sends each key to.
    #[command(after_help = concat!(
        "Prints (stdout): `key<TAB>host:port`, one line per stdin line, in order.\n\n\
         Exit codes:\n  \
         0  success\n  \
         1  runtime error (reading stdin or writing stdout failed)\n  \
         2  usage error (bad arguments)\n\
         Errors are one `error: ...` line on stderr."
    ))]
    Ring {
        /// The servers, `HOST:PORT[:WEIGHT],...`
        #[arg(long, value_name = "HOST:PORT[:WEIGHT],...")]
        servers: String,
        /// Follow libmemcached's (pylibmc's) float arithmetic where it
        /// differs from Finagle's for some server counts
        #[arg(long)]
        libmemcached: bool,
    },
    /// Serve the discovery gateway: HTTP and Server-Sent Events for
    /// services without a ZooKeeper or etcd client, TTL registrations, a
    /// live dashboard at /, Prometheus metrics at /metrics.
    #[command(after_help = concat!(
        "Routes (the set path is a query parameter, path=/discovery/...; every set route also takes\n\
         format=finagle|etcd-naming, how an etcd set stores its members; ZooKeeper sets are finagle):\n  \
         GET    /v1/members?path=P[&endpoint=NAME][&shard=N][&meta.KEY=VALUE]  the live members (JSON, as `watch --once`)\n  \
         GET    /v1/events?path=P[...]     Server-Sent Events: up, down, leader, current, health\n  \
         GET    /v1/leader?path=P          the oldest live member; 404 when none\n  \
         PUT    /v1/instances/ID?path=P    register {\"host\",\"port\",\"additional\",\"shard\",\"metadata\",\"ttl_secs\"}; re-PUT within ttl_secs to keep it\n  \
         DELETE /v1/instances/ID?path=P    deregister at once\n  \
         GET    /v1/paths                  the sets the gateway watches or registers in\n  \
         GET    /healthz                   200 while the ZooKeeper session is connected (etcd: etcd answers), else 503\n  \
         GET    /metrics                   Prometheus text\n  \
         GET    /                          the dashboard\n\n\
         Errors are JSON {\"error\": \"...\"} with a 4xx/5xx status. With --token (or SERVERSET_TOKEN),\n\
         PUT and DELETE need `Authorization: Bearer TOKEN`. On etcd an instance's member holds a lease\n\
         of etcd's default TTL (10 s) that the gateway keeps alive until the instance's ttl_secs runs out.\n\n\
         Examples:\n  \
         serverset serve 127.0.0.1:2181 --listen 127.0.0.1:8080\n  \
         serverset serve etcd://127.0.0.1:2379 --listen 127.0.0.1:8080\n\n\
         ",
        zk_exit_codes!("success: SIGINT/SIGTERM ended it (its instances are deleted first)")
    ))]
    Serve {
        /// ZooKeeper connect string (host:port,...[/chroot]) or etcd
        /// connect string (etcd://host:port,...)
        #[arg(value_name = "STORE")]
        connect: String,
        /// Where to listen (loopback unless told otherwise)
        #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// The bearer token writes need. Default: the SERVERSET_TOKEN
        /// environment variable; none: writes are open
        #[arg(long, value_name = "TOKEN")]
        token: Option<String>,
        #[command(flatten)]
        connection: Connection,
    },
    /// Print a shell completion script.
    #[command(after_help = concat!(
        "Prints (stdout): the completion script for SHELL. For instance:\n  \
         bash  serverset completions bash > ~/.local/share/bash-completion/completions/serverset\n  \
         zsh   serverset completions zsh > \"${fpath[1]}/_serverset\"\n  \
         fish  serverset completions fish > ~/.config/fish/completions/serverset.fish\n\n\
         Exit codes:\n  \
         0  success\n  \
         1  runtime error (writing stdout failed)\n  \
         2  usage error (an unknown shell)\n\
         Errors are one `error: ...` line on stderr."
    ))]
    Completions {
        /// The shell
        #[arg(value_name = "SHELL")]
        shell: Shell,
    },
}

#[derive(Debug, Args)]
#[command(next_help_heading = "Connection")]
struct Connection {
    /// ZooKeeper only: the session timeout (default 10)
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    session_timeout: Option<Duration>,
    /// Give up connecting (ZooKeeper or etcd) after this long
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = parse_secs)]
    connect_timeout: Duration,
    /// ZooKeeper only: authenticate with ZooKeeper's digest scheme.
    /// Default: the SERVERSET_DIGEST environment variable (USER:PASS),
    /// which keeps the password out of `ps`; --digest wins when both are
    /// given
    #[arg(long, value_name = "USER:PASS")]
    digest: Option<String>,
    /// ZooKeeper only: connect over TLS (ZooKeeper's secureClientPort),
    /// trusting the CA certificate(s) of this PEM file
    #[arg(long, value_name = "FILE", value_hint = ValueHint::FilePath)]
    tls_ca: Option<PathBuf>,
    /// ZooKeeper only: a client certificate (PEM) for mutual TLS; needs
    /// --tls-key and --tls-ca
    #[arg(long, value_name = "FILE", value_hint = ValueHint::FilePath)]
    tls_cert: Option<PathBuf>,
    /// ZooKeeper only: the private key (PEM: PKCS#8, PKCS#1 or SEC1; not
    /// encrypted) of --tls-cert
    #[arg(long, value_name = "FILE", value_hint = ValueHint::FilePath)]
    tls_key: Option<PathBuf>,
    /// etcd only: PATH names keys without its leading / (PATH
    /// /services/users is the keys below services/users/), which is what
    /// Go's etcd resolver reads for the target etcd:///services/users
    #[arg(long)]
    relative_keys: bool,
}

/// `--format`: how an etcd set stores its members.
#[derive(Debug, Args)]
struct FormatArg {
    /// How the set's members are stored in etcd: finagle (Finagle's JSON
    /// under member_ keys) or etcd-naming (etcd's gRPC naming format,
    /// PATH/HOST:PORT keys). ZooKeeper sets are always finagle
    #[arg(
        long = "format",
        value_name = "FORMAT",
        default_value = "finagle",
        value_parser = PossibleValuesParser::new(["finagle", "etcd-naming"])
            .try_map(|name| name.parse::<Format>())
    )]
    format: Format,
}

#[derive(Debug, Args)]
#[command(next_help_heading = "Health check")]
struct CheckArgs {
    /// Keep the member registered only while this check passes:
    /// tcp:HOST:PORT or http://HOST:PORT/PATH
    #[arg(long, value_name = "CHECK")]
    check: Option<String>,
    /// Run the check this often (default 1)
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    check_interval: Option<Duration>,
    /// A check that takes longer fails (default 1, at most the interval)
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    check_timeout: Option<Duration>,
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

/// How to reach the store, validated.
#[derive(Debug)]
struct Connect {
    connect_timeout: Duration,
    store: Store,
}

/// The store and what only it takes.
#[derive(Debug)]
enum Store {
    ZooKeeper {
        address: String,
        session_timeout: Duration,
        digest: Option<(String, String)>,
        tls: Option<Tls>,
    },
    Etcd {
        /// `host:port[,host:port]` (the connect string without `etcd://`).
        endpoints: String,
        /// `--relative-keys`.
        relative_keys: bool,
    },
}

impl Connect {
    fn is_etcd(&self) -> bool {
        matches!(self.store, Store::Etcd { .. })
    }

    /// A storage format other than Finagle's is for etcd only.
    fn check_format(&self, format: Format) -> Result<(), String> {
        if !self.is_etcd() && format != Format::Finagle {
            return Err(format!(
                "--format {format} is for etcd (etcd://host:port): ZooKeeper sets are in Finagle's format (--format finagle)"
            ));
        }
        Ok(())
    }

    /// How long closing (and deregistering) may take: a ZooKeeper session
    /// ends within its timeout; an etcd lease revocation is one request
    /// (bounded by the connect timeout).
    fn close_limit(&self) -> Duration {
        let wait = match &self.store {
            Store::ZooKeeper {
                session_timeout, ..
            } => *session_timeout,
            Store::Etcd { .. } => self.connect_timeout,
        };
        wait + Duration::from_secs(2)
    }
}

/// A validated command.
#[derive(Debug)]
enum Plan {
    Watch {
        connect: Connect,
        path: ServerSetPath,
        options: WatchOptions,
        once: bool,
    },
    Register {
        connect: Connect,
        path: ServerSetPath,
        member: Member,
        check: Option<HealthCheck>,
        /// The etcd lease TTL and the storage format (boxed: the largest
        /// part of a plan).
        options: Box<RegisterOptions>,
    },
    Ls {
        connect: Connect,
        path: ServerSetPath,
        format: Format,
    },
    Serve {
        connect: Connect,
        options: serversets_gateway::Options,
    },
    Ring(serversets_memcache::KetamaRing),
    Completions(Shell),
}

/// What a health check probes.
#[derive(Debug, Clone)]
enum Probe {
    /// A TCP connection opens.
    Tcp(Endpoint),
    /// A GET is answered 2xx.
    Http(reqwest::Url),
}

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Probe::Tcp(endpoint) => write!(f, "tcp:{endpoint}"),
            Probe::Http(url) if url.password().is_some() => {
                // user:password@ is sent as basic auth; never shown.
                let mut shown = url.clone();
                let _ = shown.set_password(Some("***"));
                write!(f, "{shown}")
            }
            Probe::Http(url) => write!(f, "{url}"),
        }
    }
}

/// A validated `--check`.
#[derive(Debug, Clone)]
struct HealthCheck {
    probe: Probe,
    interval: Duration,
    timeout: Duration,
}

/// Checks what clap cannot: paths, endpoints, `K=V` pairs, destinations,
/// TLS files, the digest, health checks, flags the store does not take.
/// The error is a one-line message for a usage error (exit 2).
fn plan(command: Command) -> Result<Plan, String> {
    Ok(match command {
        Command::Watch {
            target,
            path,
            endpoint,
            shard,
            once,
            format: FormatArg { format },
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
            let connect = connection.validate(address)?;
            connect.check_format(format)?;
            Plan::Watch {
                connect,
                path,
                options: WatchOptions::new().selection(selection).format(format),
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
            ttl,
            format: FormatArg { format },
            check,
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
            let connect = connection.validate(connect)?;
            connect.check_format(format)?;
            let mut options = RegisterOptions::new().format(format);
            match ttl {
                Some(_) if !connect.is_etcd() => {
                    return Err(
                        "--ttl is an etcd lease TTL (etcd://host:port): ZooKeeper members live as long as the session"
                            .into(),
                    )
                }
                Some(secs) => options = options.ttl(Duration::from_secs(secs)),
                None => {}
            }
            Plan::Register {
                check: check.validate()?,
                connect,
                path,
                member,
                options: Box::new(options),
            }
        }
        Command::Ls {
            target,
            path,
            format: FormatArg { format },
            connection,
        } => {
            let (address, path, _) = target_and_path(&target, path)?;
            let connect = connection.validate(address)?;
            connect.check_format(format)?;
            Plan::Ls {
                connect,
                path,
                format,
            }
        }
        Command::Serve {
            connect,
            listen,
            token,
            connection,
        } => {
            let token = token.or_else(|| std::env::var(TOKEN_ENV).ok());
            if token.as_deref().is_some_and(str::is_empty) {
                return Err("--token must not be empty".into());
            }
            Plan::Serve {
                connect: connection.validate(connect)?,
                options: match token {
                    Some(token) => serversets_gateway::Options::new(listen).token(token),
                    None => serversets_gateway::Options::new(listen),
                },
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
        Command::Completions { shell } => Plan::Completions(shell),
    })
}

impl CheckArgs {
    fn validate(self) -> Result<Option<HealthCheck>, String> {
        let Some(check) = self.check else {
            if self.check_interval.is_some() {
                return Err("--check-interval needs --check".into());
            }
            if self.check_timeout.is_some() {
                return Err("--check-timeout needs --check".into());
            }
            return Ok(None);
        };
        let probe = parse_probe(&check)?;
        let interval = self.check_interval.unwrap_or(DEFAULT_CHECK_INTERVAL);
        let timeout = match self.check_timeout {
            Some(timeout) if timeout > interval => {
                return Err(format!(
                    "--check-timeout ({}s) must not exceed --check-interval ({}s): a check still running at the next one counts as failed",
                    timeout.as_secs_f64(),
                    interval.as_secs_f64()
                ))
            }
            Some(timeout) => timeout,
            None => DEFAULT_CHECK_TIMEOUT.min(interval),
        };
        Ok(Some(HealthCheck {
            probe,
            interval,
            timeout,
        }))
    }
}

/// `tcp:HOST:PORT`, `http://...` or `https://...`.
fn parse_probe(input: &str) -> Result<Probe, String> {
    let expected = "expected tcp:HOST:PORT or http://HOST:PORT/PATH";
    let lower = input.to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        let url = reqwest::Url::parse(input).map_err(|e| format!("--check {input:?}: {e}"))?;
        if url.host_str().is_none_or(str::is_empty) {
            return Err(format!("--check {input:?}: the URL has no host"));
        }
        return Ok(Probe::Http(url));
    }
    if lower.starts_with("tcp:") {
        // "tcp:" is ASCII in `input` too: byte 4 is a char boundary.
        let rest = input.get("tcp:".len()..).unwrap_or_default();
        let rest = rest.strip_prefix("//").unwrap_or(rest);
        let endpoint: Endpoint = rest
            .parse()
            .map_err(|e| format!("--check {input:?}: {e}"))?;
        return Ok(Probe::Tcp(endpoint));
    }
    Err(format!("--check {input:?}: {expected}"))
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

/// `completions`: the script for `shell` on stdout.
fn completions(shell: Shell) -> Result<(), BoxError> {
    // Into memory first: the generators panic on write errors.
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "serverset", &mut script);
    let mut out = io::stdout().lock();
    match out.write_all(&script).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(format!("writing to stdout: {e}").into()),
    }
}
/// `<ZK> <PATH>`, or a Finagle destination alone.
fn target_and_path(
    target: &str,
    path: Option<String>,
) -> Result<(String, ServerSetPath, Option<String>), String> {
    if target.contains('!') && Backend::etcd_endpoints(target).is_none() {
        let dest: Destination = target.parse().map_err(|e| format!("{e}"))?;
        if Backend::etcd_endpoints(&dest.connect).is_some() {
            return Err(format!(
                "{target:?}: a Finagle destination names a ZooKeeper ensemble; for etcd give etcd://host:port PATH"
            ));
        }
        if let Some(extra) = path {
            return Err(format!(
                "unexpected argument {extra:?}: the Finagle destination already names the path"
            ));
        }
        return Ok((dest.connect, dest.path, dest.endpoint));
    }
    let Some(path) = path else {
        return Err(
            "missing <PATH> (give <STORE> <PATH>, or a Finagle destination zk2!hosts!/path[!endpoint])"
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
        if let Some(endpoints) = Backend::etcd_endpoints(&address) {
            return self.validate_etcd(endpoints);
        }
        if self.relative_keys {
            return Err(
                "--relative-keys is for etcd (etcd://host:port): ZooKeeper paths are absolute"
                    .into(),
            );
        }
        let digest = match self.digest {
            Some(digest) => Some(parse_digest("--digest", &digest)?),
            None => match std::env::var_os(DIGEST_ENV) {
                None => None,
                Some(value) if value.is_empty() => None,
                Some(value) => match value.to_str() {
                    Some(digest) => Some(parse_digest(DIGEST_ENV, digest)?),
                    None => return Err(format!("{DIGEST_ENV} is not valid UTF-8")),
                },
            },
        };
        let tls = match (self.tls_ca, self.tls_cert, self.tls_key) {
            (None, None, None) => None,
            (_, Some(_), None) => {
                return Err("--tls-cert needs --tls-key (the client certificate's private key)".into())
            }
            (_, None, Some(_)) => {
                return Err("--tls-key needs --tls-cert (the client certificate)".into())
            }
            (None, _, _) => {
                return Err(
                    "--tls-cert and --tls-key need --tls-ca (the CA that signed the servers' certificates)"
                        .into(),
                )
            }
            (Some(ca), cert, key) => {
                let mut tls = Tls::new().ca_pem(read_pem("--tls-ca", &ca, Pem::Certificate)?);
                if let (Some(cert), Some(key)) = (cert, key) {
                    tls = tls.identity(
                        read_pem("--tls-cert", &cert, Pem::Certificate)?,
                        read_pem("--tls-key", &key, Pem::PrivateKey)?,
                    );
                }
                Some(tls)
            }
        };
        Ok(Connect {
            connect_timeout: self.connect_timeout,
            store: Store::ZooKeeper {
                address,
                session_timeout: self.session_timeout.unwrap_or(DEFAULT_SESSION_TIMEOUT),
                digest,
                tls,
            },
        })
    }

    /// `etcd://` takes none of ZooKeeper's flags (and ignores
    /// `SERVERSET_DIGEST`, which may be set for other commands).
    fn validate_etcd(self, endpoints: &str) -> Result<Connect, String> {
        let zookeeper_only = [
            ("--session-timeout", self.session_timeout.is_some()),
            ("--digest", self.digest.is_some()),
            ("--tls-ca", self.tls_ca.is_some()),
            ("--tls-cert", self.tls_cert.is_some()),
            ("--tls-key", self.tls_key.is_some()),
        ];
        if let Some((flag, _)) = zookeeper_only.iter().find(|(_, given)| *given) {
            return Err(format!(
                "{flag} is a ZooKeeper setting: an etcd:// connect string takes only --connect-timeout"
            ));
        }
        check_etcd_endpoints(endpoints)?;
        Ok(Connect {
            connect_timeout: self.connect_timeout,
            store: Store::Etcd {
                endpoints: endpoints.to_owned(),
                relative_keys: self.relative_keys,
            },
        })
    }
}

/// `host:port[,host:port]` (each optionally `http://host:port`), checked
/// before connecting.
fn check_etcd_endpoints(endpoints: &str) -> Result<(), String> {
    let expected = "expected etcd://host:port[,host:port]";
    // `split` yields at least one (maybe empty) endpoint.
    for endpoint in endpoints.split(',').map(str::trim) {
        if endpoint.is_empty() {
            return Err(format!(
                "etcd://{endpoints}: an empty endpoint ({expected})"
            ));
        }
        let authority = endpoint.strip_prefix("http://").unwrap_or(endpoint);
        authority
            .parse::<Endpoint>()
            .map_err(|e| format!("etcd://{endpoints}: {e} ({expected})"))?;
    }
    Ok(())
}

/// `USER:PASS` from `source` (never echoed: it holds a password).
fn parse_digest(source: &str, digest: &str) -> Result<(String, String), String> {
    match digest.split_once(':') {
        Some((user, pass)) if !user.is_empty() => Ok((user.to_owned(), pass.to_owned())),
        _ => Err(format!("{source}: expected USER:PASS")),
    }
}

/// What a PEM file given to a TLS flag must hold.
#[derive(Debug, Clone, Copy)]
enum Pem {
    Certificate,
    PrivateKey,
}

/// Reads a PEM file for `flag`, checking that it holds what it should;
/// errors name the flag and the file. The library checks the contents
/// in depth when connecting.
fn read_pem(flag: &str, path: &Path, kind: Pem) -> Result<String, String> {
    let name = path.display();
    let bytes = std::fs::read(path).map_err(|e| format!("{flag} {name:?}: cannot read it: {e}"))?;
    let Ok(text) = String::from_utf8(bytes) else {
        return Err(format!(
            "{flag} {name:?}: not a PEM file (binary data; a DER file must be converted to PEM)"
        ));
    };
    let ok = match kind {
        Pem::Certificate => text.contains("-----BEGIN CERTIFICATE-----"),
        Pem::PrivateKey => {
            if text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
                return Err(format!(
                    "{flag} {name:?}: the private key is encrypted; give an unencrypted one"
                ));
            }
            text.lines()
                .any(|l| l.starts_with("-----BEGIN ") && l.ends_with("PRIVATE KEY-----"))
        }
    };
    if !ok {
        let what = match kind {
            Pem::Certificate => "no PEM certificate (-----BEGIN CERTIFICATE-----)",
            Pem::PrivateKey => "no PEM private key (-----BEGIN PRIVATE KEY-----)",
        };
        return Err(format!("{flag} {name:?}: {what} in it"));
    }
    Ok(text)
}

type BoxError = Box<dyn StdError + Send + Sync>;

/// A usage error found only at run time (settings the library refuses,
/// such as an unusable TLS certificate): exit 2.
#[derive(Debug)]
struct UsageError(String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl StdError for UsageError {}

/// Prints `error: MESSAGE` (one line) on stderr and returns `code`.
fn fail(message: &str, code: u8) -> ExitCode {
    // Nothing better to do if stderr is gone.
    let _ = writeln!(io::stderr().lock(), "error: {}", one_line(message));
    ExitCode::from(code)
}

/// The exit code of a runtime failure: 2 for a [`UsageError`], else 1.
fn exit_code(error: &BoxError) -> u8 {
    if error.is::<UsageError>() {
        2
    } else {
        1
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse(); // usage errors: clap prints them and exits 2
    init_logging();
    let plan = match plan(cli.command) {
        Ok(plan) => plan,
        Err(message) => return fail(&message, 2),
    };
    let result = match plan {
        Plan::Ring(r) => ring(&r),
        Plan::Completions(shell) => completions(shell),
        plan => {
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => return fail(&format!("cannot start the async runtime: {e}"), 1),
            };
            let result = runtime.block_on(run(plan));
            runtime.shutdown_timeout(Duration::from_secs(1));
            result
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e.to_string(), exit_code(&e)),
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
            options,
            once,
        } => watch(&mut signals, connect, path, options, once).await,
        Plan::Register {
            connect,
            path,
            member,
            check,
            options,
        } => register(&mut signals, connect, path, member, check, *options).await,
        Plan::Ls {
            connect,
            path,
            format,
        } => ls(&mut signals, connect, path, format).await,
        Plan::Serve { connect, options } => serve(&mut signals, connect, options).await,
        Plan::Ring(r) => ring(&r),
        Plan::Completions(shell) => completions(shell),
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

/// Connects to ZooKeeper or etcd; `Ok(Err(signal))` if a signal came
/// first.
async fn connect(
    signals: &mut Signals,
    connect: &Connect,
) -> Result<Result<Backend, &'static str>, BoxError> {
    let connecting = async {
        match &connect.store {
            Store::ZooKeeper {
                address,
                session_timeout,
                digest,
                tls,
            } => {
                let mut builder = Client::builder(address.as_str())
                    .session_timeout(*session_timeout)
                    .connect_timeout(connect.connect_timeout);
                if let Some((user, pass)) = digest {
                    builder = builder.digest(user, pass);
                }
                if let Some(tls) = tls {
                    builder = builder.tls(tls.clone());
                }
                builder.connect().await.map(Backend::from)
            }
            Store::Etcd {
                endpoints,
                relative_keys,
            } => EtcdClient::builder(endpoints.as_str())
                .connect_timeout(connect.connect_timeout)
                .relative_keys(*relative_keys)
                .connect()
                .await
                .map(Backend::from),
        }
    };
    match signals.or_signal(connecting).await {
        // Settings the library refuses (an unusable certificate) are the
        // user's to fix: a usage error.
        Ok(Err(serversets::Error::InvalidConfig(message))) => Err(Box::new(UsageError(message))),
        Ok(client) => Ok(Ok(client?)),
        Err(signal) => {
            info!(signal, "interrupted while connecting");
            Ok(Err(signal))
        }
    }
}

/// Closes the session (its ephemeral nodes go at once) or the etcd
/// client, bounded in time.
async fn close(backend: Backend, connect: &Connect) {
    let store = backend.store();
    if tokio::time::timeout(connect.close_limit(), backend.close())
        .await
        .is_err()
    {
        warn!(store, "closing the connection timed out");
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

/// Prints a watch line; `Ok(false)` when stdout is closed (stop quietly).
fn emit(value: &(impl Serialize + ?Sized)) -> Result<bool, BoxError> {
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
    options: WatchOptions,
    once: bool,
) -> Result<(), BoxError> {
    let client = match self::connect(signals, &connect).await? {
        Ok(client) => client,
        Err(signal) if once => return Err(interrupted(signal, "the set was read")),
        Err(_) => return Ok(()),
    };
    let result = follow(signals, &client, &path, options, once).await;
    close(client, &connect).await;
    result
}

async fn follow(
    signals: &mut Signals,
    client: &Backend,
    path: &ServerSetPath,
    options: WatchOptions,
    once: bool,
) -> Result<(), BoxError> {
    let watch = match signals.or_signal(client.watch_with(path, options)).await {
        Ok(watch) => watch?,
        Err(signal) if once => return Err(interrupted(signal, "the set was read")),
        Err(_) => return Ok(()),
    };
    // Subscribing first: the printed snapshot is where the changes start.
    let mut changes = watch.changes();
    let snapshot = Arc::clone(changes.snapshot());
    // Entries, changes: the library's own JSON (serversets' `Serialize`).
    if !emit(snapshot.entries())? || once {
        return Ok(());
    }
    loop {
        tokio::select! {
            change = changes.next() => {
                let Some(change) = change else {
                    return Err(format!("the watch of {path} ended").into());
                };
                if !emit(&change)? {
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

/// The gateway, until a signal; its instances are deleted before the
/// session closes.
async fn serve(
    signals: &mut Signals,
    connect: Connect,
    options: serversets_gateway::Options,
) -> Result<(), BoxError> {
    // Before connecting: the session's metrics are made with the client.
    let options = match serversets_gateway::install_recorder() {
        Ok(handle) => options.prometheus(handle),
        Err(e) => {
            warn!(error = %e, "no Prometheus recorder: /metrics answers 503");
            options
        }
    };
    let Ok(client) = self::connect(signals, &connect).await? else {
        return Ok(());
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let stop = async move {
        let _ = stop_rx.await;
    };
    let gateway = tokio::spawn(serversets_gateway::run(client.clone(), options, stop));
    let mut gateway = std::pin::pin!(gateway);
    let result = tokio::select! {
        signal = signals.recv() => {
            info!(signal, "stopping the gateway");
            let _ = stop_tx.send(());
            gateway.await
        }
        ended = &mut gateway => ended,
    };
    close(client, &connect).await;
    match result {
        Ok(served) => Ok(served?),
        Err(e) => Err(format!("the gateway task failed: {e}").into()),
    }
}

async fn register(
    signals: &mut Signals,
    connect: Connect,
    path: ServerSetPath,
    member: Member,
    check: Option<HealthCheck>,
    options: RegisterOptions,
) -> Result<(), BoxError> {
    let options = match check {
        None => options,
        Some(check) => {
            let checker = Arc::new(Checker::new(check.clone())?);
            options
                .health_check(move || {
                    let checker = Arc::clone(&checker);
                    async move { checker.check().await }
                })
                .health_check_interval(check.interval)
        }
    };
    let Ok(client) = self::connect(signals, &connect).await? else {
        return Ok(());
    };
    let result = stay_registered(signals, &client, &connect, &path, member, options).await;
    close(client, &connect).await;
    result
}

async fn stay_registered(
    signals: &mut Signals,
    client: &Backend,
    connect: &Connect,
    path: &ServerSetPath,
    member: Member,
    options: RegisterOptions,
) -> Result<(), BoxError> {
    let registering = client.register_with(path, member, options);
    let mut registration = match signals.or_signal(registering).await {
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
    if tokio::time::timeout(connect.close_limit(), registration.close())
        .await
        .is_err()
    {
        warn!("deregistering timed out; the member goes with the session (etcd: its lease)");
    }
    Ok(())
}

/// Runs a `--check` and logs why it fails when it starts failing.
struct Checker {
    check: HealthCheck,
    /// For `http://` and `https://` checks.
    http: Option<reqwest::Client>,
    /// The last outcome: [`UNKNOWN`], [`PASSING`] or [`FAILING`].
    last: AtomicU8,
}

const UNKNOWN: u8 = 0;
const PASSING: u8 = 1;
const FAILING: u8 = 2;

impl Checker {
    fn new(check: HealthCheck) -> Result<Checker, BoxError> {
        let http = match check.probe {
            Probe::Tcp(_) => None,
            Probe::Http(_) => Some(
                reqwest::Client::builder()
                    // Each check opens a new connection, as a TCP check does.
                    .pool_max_idle_per_host(0)
                    .redirect(reqwest::redirect::Policy::none())
                    .no_proxy()
                    .timeout(check.timeout)
                    .user_agent(concat!("serverset/", env!("CARGO_PKG_VERSION")))
                    .build()
                    .map_err(|e| format!("cannot set up the HTTP health check: {}", chain(&e)))?,
            ),
        };
        Ok(Checker {
            check,
            http,
            last: AtomicU8::new(UNKNOWN),
        })
    }

    /// Whether the check passes now (the library deletes the member when
    /// it does not).
    async fn check(&self) -> bool {
        let outcome = match tokio::time::timeout(self.check.timeout, self.probe()).await {
            Ok(outcome) => outcome,
            Err(_) => Err(format!(
                "{}: no answer within {:?}",
                self.check.probe, self.check.timeout
            )),
        };
        let now = if outcome.is_ok() { PASSING } else { FAILING };
        let before = self.last.swap(now, Ordering::Relaxed);
        let probe = &self.check.probe;
        match (before, outcome) {
            (UNKNOWN, Err(why)) => {
                warn!(check = %probe, reason = %why, "health check fails; the member is registered once it passes")
            }
            (PASSING, Err(why)) => {
                warn!(check = %probe, reason = %why, "health check failed; deleting the member")
            }
            (FAILING, Ok(())) => info!(check = %probe, "health check passes again"),
            (_, Err(why)) => debug!(check = %probe, reason = %why, "health check still fails"),
            (_, Ok(())) => debug!(check = %probe, "health check passes"),
        }
        now == PASSING
    }

    async fn probe(&self) -> Result<(), String> {
        let probe = &self.check.probe;
        match probe {
            Probe::Tcp(endpoint) => {
                tokio::net::TcpStream::connect((endpoint.host.as_str(), endpoint.port))
                    .await
                    .map(drop)
                    .map_err(|e| format!("cannot connect to {endpoint}: {e}"))
            }
            Probe::Http(url) => {
                let Some(http) = &self.http else {
                    return Err("no HTTP client".into());
                };
                let response = http.get(url.clone()).send().await.map_err(|e| {
                    if e.is_timeout() {
                        format!("GET {probe}: no answer within {:?}", self.check.timeout)
                    } else {
                        // reqwest names the URL without its credentials.
                        chain(&e)
                    }
                })?;
                let status = response.status();
                if status.is_success() {
                    Ok(())
                } else {
                    Err(format!("GET {probe} answered {status}"))
                }
            }
        }
    }
}

/// An error and its sources, `a: b: c`.
fn chain(error: &dyn StdError) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let next = e.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = e.source();
    }
    text
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

async fn ls(
    signals: &mut Signals,
    connect: Connect,
    path: ServerSetPath,
    format: Format,
) -> Result<(), BoxError> {
    let client = match self::connect(signals, &connect).await? {
        Ok(client) => client,
        Err(signal) => return Err(interrupted(signal, "the set was read")),
    };
    let result = match signals.or_signal(client.inspect(&path, format)).await {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_parse() {
        let tcp = parse_probe("tcp:10.0.0.1:11211").unwrap();
        assert!(matches!(&tcp, Probe::Tcp(e) if e.host == "10.0.0.1" && e.port == 11211));
        let tcp = parse_probe("TCP://[::1]:80").unwrap();
        assert_eq!(tcp.to_string(), "tcp:[::1]:80");
        let http = parse_probe("http://h:8080/health?x=1").unwrap();
        assert_eq!(http.to_string(), "http://h:8080/health?x=1");
        assert!(matches!(
            parse_probe("HTTPS://h/").unwrap(),
            Probe::Http(u) if u.scheme() == "https"
        ));
        let secret = parse_probe("http://u:secret@h/").unwrap();
        assert_eq!(secret.to_string(), "http://u:***@h/");
        for bad in ["", "h:1", "tcp:", "tcp:h", "udp:h:1", "http://", "ftp://h/"] {
            assert!(parse_probe(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn check_timeout_defaults_to_one_second_at_most_the_interval() {
        let args = |interval: Option<f64>, timeout: Option<f64>| CheckArgs {
            check: Some("tcp:h:1".into()),
            check_interval: interval.map(Duration::from_secs_f64),
            check_timeout: timeout.map(Duration::from_secs_f64),
        };
        let check = args(None, None).validate().unwrap().unwrap();
        assert_eq!(
            (check.interval, check.timeout),
            (Duration::from_secs(1), Duration::from_secs(1))
        );
        let check = args(Some(0.2), None).validate().unwrap().unwrap();
        assert_eq!(check.timeout, Duration::from_secs_f64(0.2));
        let check = args(Some(5.0), Some(0.5)).validate().unwrap().unwrap();
        assert_eq!(check.timeout, Duration::from_secs_f64(0.5));
        assert!(args(Some(1.0), Some(2.0)).validate().is_err());
    }

    #[test]
    fn digests_parse_without_echoing_the_password() {
        assert_eq!(
            parse_digest("--digest", "u:p:q").unwrap(),
            ("u".to_owned(), "p:q".to_owned())
        );
        assert_eq!(
            parse_digest("--digest", "u:").unwrap(),
            ("u".to_owned(), String::new())
        );
        for bad in ["secret", ":secret", ""] {
            let err = parse_digest(DIGEST_ENV, bad).unwrap_err();
            assert!(err.starts_with(DIGEST_ENV), "{err}");
            assert!(!err.contains("secret"), "{err}");
        }
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }
}
