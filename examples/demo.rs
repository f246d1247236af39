//! The serversets demo: a throwaway local ZooKeeper, a few registered
//! endpoints, a watch following them, one leaving and one joining.
//!
//! ```text
//! cargo run --release --example demo
//! ```
//!
//! It installs Debian's `zookeeper` package if it is missing, starts a
//! server on a free loopback port with a temporary data directory, and
//! stops it at the end.

use std::time::Duration;

use serversets::{
    Change, Client, Destination, Endpoint, Environment, Member, Selection, ServerSetPath,
};

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();

    println!("== starting a throwaway ZooKeeper on loopback");
    let server = tokio::task::spawn_blocking(testkit::ZooKeeper::start).await??;
    let connect = server.connect_string();
    println!("   ZooKeeper at {connect}");

    // One client = one ZooKeeper session for everything below.
    let client = Client::builder(&connect)
        .session_timeout(Duration::from_secs(10))
        .connect()
        .await?;
    let path = ServerSetPath::discovery(Environment::Local, "users")?;

    println!("\n== registering three instances of {path} (Finagle JSON)");
    let mut registrations = Vec::new();
    for i in 1..=3u16 {
        let member = Member::new(Endpoint::new("127.0.0.1", 9000 + i))
            .with_additional("http", Endpoint::new("127.0.0.1", 8000 + i))
            .with_shard(i32::from(i))
            .with_metadata("zone", if i % 2 == 0 { "eu-1" } else { "us-1" });
        let registration = client.register(&path, member).await?;
        println!("   registered {}", registration.znode().unwrap_or_default());
        registrations.push(registration);
    }

    // What a JVM service would paste: zk2!hosts!/path!endpoint.
    let dest: Destination = format!("zk2!{connect}!{path}!http").parse()?;
    let watch = client
        .watch_with(
            &dest.path,
            Selection::service().with_endpoint(dest.endpoint.clone()),
        )
        .await?;
    println!("\n== watching {dest:?}");
    print_set("   current set", &watch.current());
    let mut changes = watch.changes();

    println!("\n== instance 1 leaves");
    registrations.remove(0).close().await;
    print_change(&next(&mut changes).await?);

    println!("\n== instance 4 joins");
    let member = Member::new(Endpoint::new("127.0.0.1", 9004))
        .with_additional("http", Endpoint::new("127.0.0.1", 8004));
    registrations.push(client.register(&path, member).await?);
    print_change(&next(&mut changes).await?);

    println!("\n== raw view of the set (what `serverset ls` prints)");
    for child in client.inspect(&path).await? {
        println!("   {} {}", child.name, String::from_utf8_lossy(&child.data));
    }

    for registration in registrations {
        registration.close().await;
    }
    client.close().await;
    drop(server);
    println!("\n== done: ZooKeeper stopped, nothing left behind");
    Ok(())
}

async fn next(changes: &mut serversets::Changes) -> Result<Change, Box<dyn std::error::Error>> {
    match tokio::time::timeout(Duration::from_secs(30), changes.next()).await {
        Ok(Some(change)) => Ok(change),
        Ok(None) => Err("the watch ended".into()),
        Err(_) => Err("no change within 30 s".into()),
    }
}

fn print_set(title: &str, snapshot: &serversets::Snapshot) {
    println!("{title} ({} live):", snapshot.len());
    for entry in snapshot.iter() {
        let leader = if snapshot.leader().map(|l| &l.name) == Some(&entry.name) {
            "  <- leader (oldest)"
        } else {
            ""
        };
        println!(
            "     {}  http={}  shard={:?}  weight={}{leader}",
            entry.name, entry.endpoint, entry.member.shard, entry.weight
        );
    }
}

fn print_change(change: &Change) {
    for entry in &change.added {
        println!("   + {} {}", entry.name, entry.endpoint);
    }
    for entry in &change.removed {
        println!("   - {} {}", entry.name, entry.endpoint);
    }
    print_set("   now", &change.snapshot);
}
