//! The serversets-memcache use case: memcached nodes register themselves in ZooKeeper
//! with a health check that pings them, and a memcache client follows the
//! watched set with a ketama ring (the one Finagle and pylibmc use).
//!
//! ```text
//! cargo run --release --example memcache_cluster [-- ZK_CONNECT]
//! ```
//!
//! ZooKeeper: the argument, else `$ZK`, else a throwaway local server.
//! The memcached servers are real ones started on loopback for the run.

#[path = "common/mod.rs"]
mod common;

use std::time::Duration;

use serversets::{Endpoint, Environment, Member, RegisterOptions, ServerSetPath};
use serversets_memcache::McSet;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A memcached health check: connect and ask `version`.
async fn ping(endpoint: Endpoint) -> bool {
    let check = async {
        let stream =
            tokio::net::TcpStream::connect((endpoint.host.as_str(), endpoint.port)).await?;
        let (read, mut write) = stream.into_split();
        write.write_all(b"version\r\n").await?;
        let mut line = String::new();
        BufReader::new(read).read_line(&mut line).await?;
        Ok::<bool, std::io::Error>(line.starts_with("VERSION"))
    };
    matches!(
        tokio::time::timeout(Duration::from_millis(500), check).await,
        Ok(Ok(true))
    )
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    common::init_logging();
    let zk = common::ZooKeeper::from_args().await?;
    let client = zk.client().await?;
    let path = ServerSetPath::discovery(Environment::Local, "memcached")?;

    // Three memcached nodes, each registered while its ping succeeds.
    let mut nodes = Vec::new();
    let mut registrations = Vec::new();
    for _ in 0..3 {
        let node = tokio::task::spawn_blocking(testkit::Memcached::start).await??;
        let endpoint: Endpoint = node.endpoint().parse()?;
        let check_endpoint = endpoint.clone();
        let options = RegisterOptions::new()
            .health_check(move || ping(check_endpoint.clone()))
            .health_check_interval(Duration::from_millis(250));
        let registration = client
            .register_with(&path, Member::new(endpoint.clone()), options)
            .await?;
        println!(
            "memcached {endpoint} registered as {}",
            registration.znode().unwrap_or_default()
        );
        nodes.push(node);
        registrations.push(registration);
    }

    // The client: a ketama ring over the watched set.
    let watch = client.watch(&path).await?;
    let cache = McSet::new(watch.clone());
    for i in 0..9 {
        let key = format!("user:{i}");
        cache
            .set(&key, format!("profile {i}").as_bytes(), 300)
            .await?;
        println!(
            "  set {key:8} -> {}",
            cache
                .server_for(&key)
                .map(|e| e.to_string())
                .unwrap_or_default()
        );
    }
    let keys: Vec<String> = (0..9).map(|i| format!("user:{i}")).collect();
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    println!(
        "get_multi found {} of {} keys",
        cache.get_multi(&refs).await?.len(),
        keys.len()
    );

    // A node dies: its health check fails, it leaves the set, the ring follows.
    let dead = nodes[0].endpoint();
    println!("\nkilling memcached {dead}");
    nodes[0].stop();
    let mut changes = watch.changes();
    while watch.current().len() != 2 {
        tokio::time::timeout(Duration::from_secs(30), changes.next()).await?;
    }
    while cache.servers().len() != 2 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!(
        "the set now has {} servers: {:?}",
        cache.servers().len(),
        cache
            .servers()
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
    );
    let found = cache.get_multi(&refs).await?.len();
    println!(
        "get_multi found {found} of {} keys (the dead node's keys are misses now)",
        keys.len()
    );
    for key in &keys {
        if cache.get(key).await?.is_none() {
            cache.set(key, b"refilled", 300).await?;
        }
    }
    println!(
        "refilled; get_multi finds {} of {}",
        cache.get_multi(&refs).await?.len(),
        keys.len()
    );

    for registration in registrations {
        registration.close().await;
    }
    client.close().await;
    Ok(())
}
