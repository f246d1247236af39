//! gRPC balancing over a watched serverset, end to end: real tonic servers
//! register in a real ZooKeeper, a tonic balanced channel follows the set
//! through `serversets-tower`, and callers call through it the whole time while a
//! server leaves and another joins.

mod common;

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use serversets::{Client, Endpoint, Member, Registration, ServerSetPath};
use serversets_tower::{Discovery, Stopped};
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

/// A tonic health server on a free loopback port, registered in the set,
/// counting the calls it receives.
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
    async fn start(name: &'static str, client: &Client, set: &ServerSetPath) -> GrpcServer {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let calls = Arc::new(watch::channel(0u64).0);
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
        let registration = client
            .register(set, Member::new(Endpoint::from(addr)))
            .await
            .unwrap();
        let member = registration
            .znode()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap()
            .to_owned();
        GrpcServer {
            name,
            member,
            calls,
            registration: Some(registration),
            shutdown: Some(shutdown),
            task: Some(task),
        }
    }

    fn calls(&self) -> u64 {
        *self.calls.borrow()
    }

    /// Waits until it has received `more` calls from now on.
    async fn wait_for_calls(&self, more: u64) {
        let target = self.calls() + more;
        let mut calls = self.calls.subscribe();
        within(&format!("{more} more calls to {}", self.name), async {
            calls.wait_for(|n| *n >= target).await.unwrap();
        })
        .await;
    }

    /// Deletes its member; returns once ZooKeeper no longer has it.
    async fn deregister(&mut self) {
        if let Some(registration) = self.registration.take() {
            within("deregistration", registration.close()).await;
        }
    }

    /// Shuts down gracefully (calls in flight are answered) and waits.
    async fn stop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            within("a server to stop", task)
                .await
                .unwrap()
                .expect("the server ran without error");
        }
    }
}

/// One `Health/Check` call through the balanced channel.
async fn check(channel: &Channel) -> Result<(), String> {
    let response = HealthClient::new(channel.clone())
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .map_err(|status| status.to_string())?;
    match response.into_inner().status() {
        ServingStatus::Serving => Ok(()),
        other => Err(format!("status {other:?}")),
    }
}

/// Callers calling through the channel, each as fast as its pace allows,
/// until stopped; they return the failures they saw.
fn start_callers(
    channel: &Channel,
    n: usize,
    calls: &Arc<AtomicU64>,
) -> (watch::Sender<bool>, Vec<JoinHandle<Vec<String>>>) {
    let (stop, stopped) = watch::channel(false);
    let tasks = (0..n)
        .map(|_| {
            let (channel, stopped, calls) = (channel.clone(), stopped.clone(), Arc::clone(calls));
            tokio::spawn(async move {
                let mut failures = Vec::new();
                let mut pace = tokio::time::interval(Duration::from_millis(2));
                pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                while !*stopped.borrow() {
                    pace.tick().await;
                    calls.fetch_add(1, Ordering::Relaxed);
                    if let Err(e) = check(&channel).await {
                        failures.push(e);
                    }
                }
                failures
            })
        })
        .collect();
    (stop, tasks)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_balanced_channel_follows_the_set_without_failed_calls() {
    let server = zookeeper();
    let client = client(&server.connect_string()).await;
    let set = path("/discovery/test/grpc");

    let mut servers = Vec::new();
    for name in ["server-1", "server-2", "server-3"] {
        servers.push(GrpcServer::start(name, &client, &set).await);
    }
    let watch = client.watch(&set).await.unwrap();
    wait_set(&watch, "three members", |s| s.len() == 3).await;

    // The watch, sent into tonic's balanced channel; `balanced` is what the
    // balancer has been sent.
    let (channel, sender) = Channel::balance_channel::<String>(16);
    let balanced = Arc::new(watch::channel(BTreeSet::<String>::new()).0);
    let record = Arc::clone(&balanced);
    let discovery = Discovery::filter_map(&watch, |entry| {
        let endpoint =
            tonic::transport::Endpoint::from_shared(format!("http://{}", entry.endpoint))
                .ok()?
                .connect_timeout(Duration::from_secs(5))
                .timeout(Duration::from_secs(30));
        Some(endpoint)
    });
    let forwarder = tokio::spawn(discovery.forward_with(sender, move |change| {
        record.send_modify(|keys| match &change {
            serversets_tower::Change::Insert(key, _) => {
                keys.insert(key.clone());
            }
            serversets_tower::Change::Remove(key) => {
                keys.remove(key);
            }
        });
        match change {
            serversets_tower::Change::Insert(key, endpoint) => {
                channel::Change::Insert(key, endpoint)
            }
            serversets_tower::Change::Remove(key) => channel::Change::Remove(key),
        }
    }));
    let mut in_balancer = balanced.subscribe();
    let members: BTreeSet<String> = servers.iter().map(|s| s.member.clone()).collect();
    within("the balancer to get the three servers", async {
        in_balancer.wait_for(|keys| *keys == members).await.unwrap();
    })
    .await;

    let calls = Arc::new(AtomicU64::new(0));
    let (stop_callers, callers) = start_callers(&channel, 4, &calls);

    // Every live server receives calls.
    for server in &servers {
        server.wait_for_calls(20).await;
    }

    // server-2 leaves as a well-behaved server does: deregisters, waits
    // until the client's balancer has been told, then stops.
    let mut leaving = servers.remove(1);
    leaving.deregister().await;
    within("the balancer to drop server-2", async {
        in_balancer
            .wait_for(|keys| !keys.contains(&leaving.member))
            .await
            .unwrap();
    })
    .await;
    // The balancer takes pending changes in before it dispatches a call:
    // once this call is answered, no call can go to server-2 any more.
    check(&channel)
        .await
        .expect("a call right after the removal");
    leaving.stop().await;
    let served = leaving.calls();
    assert!(served >= 20);

    // The others go on receiving calls...
    for server in &servers {
        server.wait_for_calls(20).await;
    }
    // ... and so does a new server, once it registers.
    servers.push(GrpcServer::start("server-4", &client, &set).await);
    let joined = servers[2].member.clone();
    within("the balancer to get server-4", async {
        in_balancer
            .wait_for(|keys| keys.contains(&joined))
            .await
            .unwrap();
    })
    .await;
    for server in &servers {
        server.wait_for_calls(20).await;
    }

    let _ = stop_callers.send(true);
    let mut failures = Vec::new();
    for caller in callers {
        failures.extend(within("a caller to stop", caller).await.unwrap());
    }
    let total = calls.load(Ordering::Relaxed);
    assert!(
        failures.is_empty(),
        "{} of {total} calls failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert_eq!(leaving.calls(), served, "server-2 got calls after it left");
    let received: u64 = servers.iter().map(GrpcServer::calls).sum::<u64>() + served;
    // Every call the callers made, and the one after the removal, was
    // received by exactly one server.
    assert_eq!(received, total + 1);

    // Dropping the channel ends the balancer, and so the forwarding.
    drop(channel);
    let stopped = within("the forwarding to stop", forwarder).await.unwrap();
    assert_eq!(stopped, Stopped::ReceiverDropped);

    for mut server in servers {
        server.deregister().await;
        server.stop().await;
    }
    client.close().await;
}
