//! The serversets-http use case: HTTP services register in ZooKeeper with a named
//! `http` endpoint, and a client sends requests round-robin to whatever the
//! set holds, following it as instances leave and join.
//!
//! ```text
//! cargo run --release --example http_cluster [-- ZK_CONNECT]
//! ```
//!
//! ZooKeeper: the argument, else `$ZK`, else a throwaway local server.
//! The HTTP servers are real ones started on loopback for the run.

#[path = "common/mod.rs"]
mod common;

use std::time::Duration;

use serversets::{Endpoint, Environment, Member, Selection, ServerSetPath};
use serversets_http::HttpSet;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    common::init_logging();
    let zk = common::ZooKeeper::from_args().await?;
    let client = zk.client().await?;
    let path = ServerSetPath::discovery(Environment::Local, "web")?;

    let mut servers = Vec::new();
    let mut registrations = Vec::new();
    for name in ["web-1", "web-2", "web-3"] {
        let server = testkit::HttpServer::start(name)?;
        let http: Endpoint = server.endpoint().parse()?;
        // The service endpoint would be its thrift port; http is named.
        let member = Member::new(Endpoint::new(http.host.clone(), 9999))
            .with_additional("http", http.clone());
        registrations.push(client.register(&path, member).await?);
        println!("{name} serving on {http}");
        servers.push(server);
    }

    let watch = client
        .watch_with(&path, Selection::endpoint("http"))
        .await?;
    let web = HttpSet::new(watch.clone());
    print!("6 requests:");
    for i in 0..6 {
        let body = web.get(&format!("/page/{i}")).send().await?.text().await?;
        print!(" {body}");
    }
    println!();

    println!("web-1 leaves (deregisters and stops)");
    registrations.remove(0).close().await;
    servers[0].stop();
    let mut changes = watch.changes();
    while watch.current().len() != 2 {
        tokio::time::timeout(Duration::from_secs(30), changes.next()).await?;
    }
    print!("4 requests:");
    for _ in 0..4 {
        print!(" {}", web.get("/").send().await?.text().await?);
    }
    println!();

    println!("web-4 joins");
    let server = testkit::HttpServer::start("web-4")?;
    let http: Endpoint = server.endpoint().parse()?;
    registrations.push(
        client
            .register(
                &path,
                Member::new(Endpoint::new(http.host.clone(), 9999)).with_additional("http", http),
            )
            .await?,
    );
    servers.push(server);
    while watch.current().len() != 3 {
        tokio::time::timeout(Duration::from_secs(30), changes.next()).await?;
    }
    print!("6 requests:");
    for _ in 0..6 {
        print!(" {}", web.get("/").send().await?.text().await?);
    }
    println!();

    for registration in registrations {
        registration.close().await;
    }
    client.close().await;
    Ok(())
}
