//! Benchmark: the round-robin overhead of `HttpSet` versus plain reqwest
//! to one host, on loopback, keep-alive, requests one after another.
//!
//! ```text
//! cargo run --release -p httpset --example http_bench [-- --requests 20000]
//! ```
//!
//! Requests alternate between the clients one by one, so machine noise
//! hits all alike; medians and means of the per-request times are shown.

use std::time::{Duration, Instant};

use fixedset::FixedSet;
use httpset::HttpSet;
use serversets::Endpoint;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), BoxError> {
    let requests: usize = std::env::args()
        .skip_while(|a| a != "--requests")
        .nth(1)
        .map(|r| r.parse())
        .transpose()?
        .unwrap_or(20_000);
    let server = testkit::HttpServer::start("a")?;
    let endpoint: Endpoint = server.endpoint().parse()?;
    let url = format!("{}/bench", server.url());

    let plain = reqwest::Client::new();
    let one = HttpSet::new(FixedSet::from_endpoints([endpoint.clone()]));
    let servers: Vec<testkit::HttpServer> = (0..3)
        .map(|i| testkit::HttpServer::start(&format!("s{i}")))
        .collect::<Result<_, _>>()?;
    let three = HttpSet::new(FixedSet::from_endpoints(
        servers
            .iter()
            .map(|s| s.endpoint().parse())
            .collect::<Result<Vec<Endpoint>, _>>()?,
    ));

    // Warm up connections and code paths.
    for _ in 0..500 {
        plain.get(&url).send().await?.bytes().await?;
        one.get("/bench").send().await?.bytes().await?;
        three.get("/bench").send().await?.bytes().await?;
        for server in &servers {
            plain
                .get(format!("{}/bench", server.url()))
                .send()
                .await?
                .bytes()
                .await?;
        }
    }

    // Requests alternate between the clients one by one, so drift and
    // noise hit all alike; each is timed on its own and the medians and
    // means compared.
    let urls: Vec<String> = servers
        .iter()
        .map(|s| format!("{}/bench", s.url()))
        .collect();
    let (mut t_plain, mut t_one, mut t_three) = (Vec::new(), Vec::new(), Vec::new());
    let mut t_plain3 = Vec::new();
    for i in 0..requests {
        let started = Instant::now();
        plain
            .get(&urls[i % urls.len()])
            .send()
            .await?
            .bytes()
            .await?;
        t_plain3.push(started.elapsed());
        let started = Instant::now();
        plain.get(&url).send().await?.bytes().await?;
        t_plain.push(started.elapsed());
        let started = Instant::now();
        one.get("/bench").send().await?.bytes().await?;
        t_one.push(started.elapsed());
        let started = Instant::now();
        three.get("/bench").send().await?.bytes().await?;
        t_three.push(started.elapsed());
    }
    let stats = |times: &mut Vec<Duration>| {
        times.sort();
        let median = times[times.len() / 2].as_secs_f64() * 1e6;
        let mean = times.iter().map(Duration::as_secs_f64).sum::<f64>() * 1e6 / times.len() as f64;
        (median, mean)
    };
    let (plain_median, plain_mean) = stats(&mut t_plain);
    let (one_median, one_mean) = stats(&mut t_one);
    let (three_median, three_mean) = stats(&mut t_three);
    let (plain3_median, plain3_mean) = stats(&mut t_plain3);
    let pct = |x: f64, base: f64| (x / base - 1.0) * 100.0;
    println!("{requests} sequential keep-alive GETs per client, interleaved one by one:");
    println!();
    println!("| client | median | mean | overhead (median / mean) |");
    println!("| --- | ---: | ---: | ---: |");
    println!("| plain reqwest, one host | {plain_median:.1} µs | {plain_mean:.1} µs | - |");
    println!(
        "| HttpSet, 1 endpoint | {one_median:.1} µs | {one_mean:.1} µs | {:+.1} % / {:+.1} % |",
        pct(one_median, plain_median),
        pct(one_mean, plain_mean)
    );
    println!("| plain reqwest, rotating 3 hosts by hand | {plain3_median:.1} µs | {plain3_mean:.1} µs | - |");
    println!(
        "| HttpSet, 3 endpoints round-robin | {three_median:.1} µs | {three_mean:.1} µs | {:+.1} % / {:+.1} % |",
        pct(three_median, plain3_median),
        pct(three_mean, plain3_mean)
    );
    Ok(())
}
