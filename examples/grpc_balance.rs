//! gRPC load balancing over a serverset: tonic servers register in
//! ZooKeeper, and a tonic balanced channel follows the set through
//! `serversets-tower`, as servers leave and join, without a failed call.
//!
//! ```text
//! cargo run --release --example grpc_balance [-- ZK_CONNECT]
//! ```
//!
//! ZooKeeper: the argument, else `$ZK`, else `127.0.0.1:2181`. The run uses
//! a set of its own (`/serversets-examples/grpc-balance-PID-MILLIS`) and
//! deletes it at the end.
//!
//! Three gRPC servers (the standard `grpc.health.v1.Health` service, from
//! `tonic-health`) on free loopback ports register themselves; four callers
//! call `Health/Check` through one `Channel::balance_channel` the whole
//! time. `server-2` then leaves as a well-behaved server does (deregisters,
//! waits until the client's balancer has dropped it, stops) and `server-4`
//! joins. Each server counts the calls it receives; the counts show that
//! every live server gets calls, the stopped one gets none after it left,
//! and the new one gets its share. Exit status 0 when every call
//! succeeded, 1 with a message otherwise. Logs: `RUST_LOG` (default
//! `warn`) on stderr.

use std::collections::BTreeSet;
use std::error::Error;
use std::io::IsTerminal;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serversets::{Client, Endpoint, Member, Registration, ServerSetPath};
use serversets_tower::Discovery;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{channel, Channel, Server};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::health_server::HealthServer;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::server::{HealthReporter, HealthService};

type BoxError = Box<dyn Error + Send + Sync>;

/// How long any awaited event of the scenario may take.
const DEADLINE: Duration = Duration::from_secs(30);
/// Concurrent callers.
const CALLERS: usize = 4;
/// Each caller's pace.
const CALL_EVERY: Duration = Duration::from_millis(2);
/// Calls every live server must receive in each phase.
const CALLS_PER_PHASE: u64 = 50;

fn main() -> ExitCode {
    init_logging();
    let connect = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("ZK").ok())
        .unwrap_or_else(|| "127.0.0.1:2181".to_owned());
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("grpc_balance: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(&connect)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("grpc_balance: {e}");
            ExitCode::from(1)
        }
    }
}

async fn run(connect: &str) -> Result<(), BoxError> {
    let started = Instant::now();
    let client = Client::builder(connect)
        .session_timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(10))
        .connect()
        .await?;
    let millis = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis();
    let path = ServerSetPath::new(format!(
        "/serversets-examples/grpc-balance-{}-{millis}",
        std::process::id()
    ))?;
    println!("ZooKeeper {connect}, set {path}");

    let outcome = scenario(&client, &path).await;

    // Leave no empty set behind (best effort: it is empty by now).
    if let Some(zk) = client.zookeeper() {
        let _ = zk.delete(path.as_str(), None).await;
    }
    client.close().await;
    let report = outcome?;
    println!(
        "{} calls by the callers in {:.1?}, {} failed",
        report.calls,
        started.elapsed(),
        report.failures.len()
    );
    if report.failures.is_empty() {
        Ok(())
    } else {
        for failure in report.failures.iter().take(10) {
            eprintln!("failed call: {failure}");
        }
        Err(format!("{} of {} calls failed", report.failures.len(), report.calls).into())
    }
}

/// What the callers did.
struct Report {
    calls: u64,
    failures: Vec<String>,
}

async fn scenario(client: &Client, path: &ServerSetPath) -> Result<Report, BoxError> {
    let mut servers = Vec::new();
    for name in ["server-1", "server-2", "server-3"] {
        servers.push(GrpcServer::start(name, client, path).await?);
    }

    // The client side: a watch of the set, sent into tonic's balanced
    // channel. `balanced` records what the balancer has been sent, to show
    // it and to wait on it.
    let watch = client.watch(path).await?;
    let (channel, sender) = Channel::balance_channel::<String>(64);
    let (balanced, _) = watch::channel(BTreeSet::<String>::new());
    let balanced = Arc::new(balanced);
    let discovery = Discovery::filter_map(&watch, |entry| {
        let uri = format!("http://{}", entry.endpoint);
        match tonic::transport::Endpoint::from_shared(uri) {
            Ok(endpoint) => Some(
                endpoint
                    .connect_timeout(Duration::from_secs(2))
                    .timeout(Duration::from_secs(10)),
            ),
            Err(e) => {
                eprintln!("skipping {} ({}): {e}", entry.name, entry.endpoint);
                None
            }
        }
    });
    let record = Arc::clone(&balanced);
    let forwarder = tokio::spawn(discovery.forward_with(sender, move |change| match change {
        serversets_tower::Change::Insert(member, endpoint) => {
            println!("  balancer: + {member} {}", endpoint.uri());
            record.send_modify(|keys| {
                keys.insert(member.clone());
            });
            channel::Change::Insert(member, endpoint)
        }
        serversets_tower::Change::Remove(member) => {
            println!("  balancer: - {member}");
            record.send_modify(|keys| {
                keys.remove(&member);
            });
            channel::Change::Remove(member)
        }
    }));
    let mut in_balancer = balanced.subscribe();
    wait_until(
        &mut in_balancer,
        "the balancer to hold the three servers",
        |keys| keys.len() == 3,
    )
    .await?;

    let callers = Callers::start(&channel);
    println!("{CALLERS} callers calling grpc.health.v1.Health/Check through the balanced channel");
    let live: Vec<&GrpcServer> = servers.iter().collect();
    wait_for_calls(&live, CALLS_PER_PHASE).await?;
    print_counts("every server answers:", &servers);

    // server-2 leaves: deregister, wait until the balancer has dropped it,
    // then stop.
    let mut leaving = servers.remove(1);
    println!("{} leaving: deregistering", leaving.name);
    leaving.deregister().await;
    wait_until(
        &mut in_balancer,
        "the balancer to drop the leaving server",
        |keys| !keys.contains(&leaving.member),
    )
    .await?;
    // One call through the channel after the removal was sent: the balancer
    // takes it in before dispatching that call, so no later call can go to
    // the leaving server.
    check(&channel).await?;
    let served = leaving.stop().await?;
    println!("{} stopped after {served} calls", leaving.name);

    let live: Vec<&GrpcServer> = servers.iter().collect();
    wait_for_calls(&live, CALLS_PER_PHASE).await?;
    print_counts("the others go on:", &servers);

    // server-4 joins.
    servers.push(GrpcServer::start("server-4", client, path).await?);
    let live: Vec<&GrpcServer> = servers.iter().collect();
    wait_for_calls(&live, CALLS_PER_PHASE).await?;
    print_counts("server-4 gets its share:", &servers);

    let report = callers.stop().await;
    // Dropping the channel ends the balancer, and so the forwarding.
    drop(channel);
    let stopped = within("the forwarding to stop", forwarder).await??;
    println!("forwarding stopped: {stopped:?}");

    println!("calls received:");
    for server in &servers {
        println!(
            "  {:<9} {:<18} {:>6}",
            server.name,
            server.member,
            server.calls()
        );
    }
    let after = leaving.calls();
    println!(
        "  {:<9} {:<18} {:>6}  (stopped; {} since it left)",
        leaving.name,
        leaving.member,
        after,
        after - served
    );
    if after != served {
        return Err(format!("{} got calls after it stopped", leaving.name).into());
    }
    for server in servers {
        server.leave().await?;
    }
    Ok(report)
}

/// A tonic server with the health service on a free loopback port,
/// registered in the set, counting the calls it receives.
struct GrpcServer {
    name: &'static str,
    /// Its member znode name: the balancer's key for it.
    member: String,
    calls: Arc<watch::Sender<u64>>,
    registration: Option<Registration>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), tonic::transport::Error>>>,
}

impl GrpcServer {
    async fn start(
        name: &'static str,
        client: &Client,
        path: &ServerSetPath,
    ) -> Result<GrpcServer, BoxError> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr: SocketAddr = listener.local_addr()?;
        let (calls, _) = watch::channel(0u64);
        let calls = Arc::new(calls);
        let counter = Arc::clone(&calls);
        let health = HealthServer::with_interceptor(
            HealthService::from_health_reporter(HealthReporter::new()),
            move |request| {
                counter.send_modify(|n| *n += 1);
                Ok(request)
            },
        );
        let (shutdown, stop) = oneshot::channel::<()>();
        let task = tokio::spawn(
            Server::builder()
                .add_service(health)
                .serve_with_incoming_shutdown(TcpIncoming::from(listener), async {
                    let _ = stop.await;
                }),
        );
        // Listening (connections wait in the backlog): now announce it.
        let registration = client
            .register(path, Member::new(Endpoint::from(addr)))
            .await?;
        let member = registration
            .znode()
            .and_then(|znode| znode.rsplit('/').next().map(str::to_owned))
            .ok_or("the registration has no member znode")?;
        println!("{name} serving on {addr}, registered as {member}");
        Ok(GrpcServer {
            name,
            member,
            calls,
            registration: Some(registration),
            shutdown: Some(shutdown),
            task: Some(task),
        })
    }

    fn calls(&self) -> u64 {
        *self.calls.borrow()
    }

    /// Deletes its member and waits until it is gone from ZooKeeper.
    async fn deregister(&mut self) {
        if let Some(registration) = self.registration.take() {
            registration.close().await;
        }
    }

    /// Shuts the server down gracefully (in-flight calls are answered) and
    /// returns how many calls it received.
    async fn stop(&mut self) -> Result<u64, BoxError> {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            within("a server to stop", task).await???;
        }
        Ok(self.calls())
    }

    async fn leave(mut self) -> Result<u64, BoxError> {
        self.deregister().await;
        self.stop().await
    }
}

/// Callers calling through the channel until stopped.
struct Callers {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<Vec<String>>>,
    calls: Arc<AtomicU64>,
}

impl Callers {
    fn start(channel: &Channel) -> Callers {
        let (stop, stopped) = watch::channel(false);
        let calls = Arc::new(AtomicU64::new(0));
        let tasks = (0..CALLERS)
            .map(|_| {
                let channel = channel.clone();
                let stopped = stopped.clone();
                let calls = Arc::clone(&calls);
                tokio::spawn(async move {
                    let mut failures = Vec::new();
                    let mut pace = tokio::time::interval(CALL_EVERY);
                    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    while !*stopped.borrow() {
                        pace.tick().await;
                        calls.fetch_add(1, Ordering::Relaxed);
                        if let Err(e) = check(&channel).await {
                            failures.push(e.to_string());
                        }
                    }
                    failures
                })
            })
            .collect();
        Callers { stop, tasks, calls }
    }

    async fn stop(self) -> Report {
        let _ = self.stop.send(true);
        let mut failures = Vec::new();
        for task in self.tasks {
            match task.await {
                Ok(mut f) => failures.append(&mut f),
                Err(e) => failures.push(format!("a caller died: {e}")),
            }
        }
        Report {
            calls: self.calls.load(Ordering::Relaxed),
            failures,
        }
    }
}

/// One `Health/Check` call through the balanced channel.
async fn check(channel: &Channel) -> Result<(), BoxError> {
    let response = HealthClient::new(channel.clone())
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await?;
    match response.into_inner().status() {
        ServingStatus::Serving => Ok(()),
        other => Err(format!("health status {other:?}").into()),
    }
}

/// Waits until each server has received `more` calls from now on.
async fn wait_for_calls(servers: &[&GrpcServer], more: u64) -> Result<(), BoxError> {
    for server in servers {
        let target = server.calls() + more;
        let what = format!("{more} calls to {}", server.name);
        wait_until(&mut server.calls.subscribe(), &what, |n| *n >= target).await?;
    }
    Ok(())
}

fn print_counts(what: &str, servers: &[GrpcServer]) {
    let counts: Vec<String> = servers
        .iter()
        .map(|s| format!("{} {}", s.name, s.calls()))
        .collect();
    println!("{what} {}", counts.join(", "));
}

/// Waits until the value `receiver` follows satisfies `done`.
async fn wait_until<T>(
    receiver: &mut watch::Receiver<T>,
    what: &str,
    done: impl FnMut(&T) -> bool,
) -> Result<(), BoxError> {
    match within(what, receiver.wait_for(done)).await? {
        Ok(_) => Ok(()),
        Err(_) => Err(format!("gave up waiting for {what}: nothing left to wait on").into()),
    }
}

/// Bounds a wait by [`DEADLINE`].
async fn within<T>(what: &str, wait: impl std::future::Future<Output = T>) -> Result<T, BoxError> {
    match tokio::time::timeout(DEADLINE, wait).await {
        Ok(value) => Ok(value),
        Err(_) => Err(format!("timed out after {DEADLINE:?} waiting for {what}").into()),
    }
}

/// Logs to stderr, filtered by `RUST_LOG` (default `warn`).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}
