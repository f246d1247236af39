//! The round-robin overhead of `HttpSet` versus plain reqwest: keep-alive
//! GETs on loopback, one after another, against testkit's HTTP servers.
//!
//! Requests alternate between the clients one by one, so drift and noise
//! hit all alike; each is timed on its own and the medians compared (the
//! means are shown too).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serversets::Endpoint;
use serversets::FixedSet;
use serversets_http::reqwest;
use serversets_http::HttpSet;

use crate::support::{BoxError, Row};

pub async fn run(quick: bool) -> Result<Vec<Row>, BoxError> {
    let (requests, warmup) = if quick { (1000, 100) } else { (20_000, 500) };
    let server = testkit::HttpServer::start("a")?;
    let endpoint: Endpoint = server.endpoint().parse()?;
    let url = format!("{}/bench", server.url());

    let plain = reqwest::Client::new();
    // The sets send with the same reqwest client, so every comparison is
    // on the same keep-alive connections (each served by a thread of its
    // own, whose scheduling differs from one to the next).
    let one = HttpSet::builder(FixedSet::from_endpoints([endpoint]))
        .client(plain.clone())
        .build();
    let servers: Vec<testkit::HttpServer> = (0..3)
        .map(|i| testkit::HttpServer::start(&format!("s{i}")))
        .collect::<Result<_, _>>()?;
    let three = HttpSet::builder(FixedSet::from_endpoints(
        servers
            .iter()
            .map(|s| s.endpoint().parse())
            .collect::<Result<Vec<Endpoint>, _>>()?,
    ))
    .client(plain.clone())
    .build();
    let urls: Vec<String> = servers
        .iter()
        .map(|s| format!("{}/bench", s.url()))
        .collect();

    // Warm up connections and code paths.
    for _ in 0..warmup {
        plain.get(&url).send().await?.bytes().await?;
        one.get("/bench").send().await?.bytes().await?;
        three.get("/bench").send().await?.bytes().await?;
        for url in &urls {
            plain.get(url).send().await?.bytes().await?;
        }
    }

    // Each pair of requests goes to one server, the client going first
    // alternating: the first of a pair finds that server's thread idle,
    // the second finds it just used. Round-robin over 3: the plain client
    // goes to the server the set went to (or will go to next: its rotation
    // is learned as it goes).
    let url_of: HashMap<String, String> = servers
        .iter()
        .map(|s| (s.name().to_owned(), format!("{}/bench", s.url())))
        .collect();
    let mut next_of: HashMap<String, String> = HashMap::new();
    let mut last = String::new();
    for _ in 0..6 {
        let (_, name) = timed(|| three.get("/bench").send()).await?;
        next_of.insert(std::mem::take(&mut last), name.clone());
        last = name;
    }
    let (mut t_plain, mut t_one) = (Vec::new(), Vec::new());
    let (mut t_plain3, mut t_three) = (Vec::new(), Vec::new());
    for i in 0..requests {
        let set_first = i % 2 == 0;
        if set_first {
            let (t, name) = timed(|| three.get("/bench").send()).await?;
            t_three.push(t);
            let target = url_of.get(&name).ok_or("unknown server")?;
            t_plain3.push(timed(|| plain.get(target).send()).await?.0);
            next_of.insert(std::mem::take(&mut last), name.clone());
            last = name;
        } else {
            let predicted = next_of.get(&last).and_then(|n| url_of.get(n));
            let target = predicted.unwrap_or(&urls[i % urls.len()]);
            t_plain3.push(timed(|| plain.get(target).send()).await?.0);
            let (t, name) = timed(|| three.get("/bench").send()).await?;
            t_three.push(t);
            next_of.insert(std::mem::take(&mut last), name.clone());
            last = name;
        }
        if set_first {
            t_one.push(timed(|| one.get("/bench").send()).await?.0);
            t_plain.push(timed(|| plain.get(&url).send()).await?.0);
        } else {
            t_plain.push(timed(|| plain.get(&url).send()).await?.0);
            t_one.push(timed(|| one.get("/bench").send()).await?.0);
        }
    }
    let round_robin = overhead(
        format!("HttpSet round-robin over 3 endpoints vs plain reqwest rotating the same 3 hosts, {requests} GETs"),
        &t_three,
        &t_plain3,
    );
    let met = round_robin.value < 3.0;
    Ok(vec![
        round_robin.target("< 3 %", met),
        overhead(
            format!("HttpSet with 1 endpoint vs plain reqwest to that host, {requests} GETs"),
            &t_one,
            &t_plain,
        ),
    ])
}

/// Times one request until its whole body is in; returns the body (the
/// server's name) too.
/// `send` builds and sends the request: reqwest's `send()` does part of
/// its work before the future is first polled.
async fn timed<S, F, E>(send: S) -> Result<(Duration, String), BoxError>
where
    S: FnOnce() -> F,
    F: std::future::Future<Output = Result<reqwest::Response, E>>,
    E: std::error::Error + Send + Sync + 'static,
{
    let started = Instant::now();
    let body = send().await?.bytes().await?;
    let took = started.elapsed();
    Ok((took, String::from_utf8_lossy(&body).into_owned()))
}

/// A row of the overhead: the paired differences (each HttpSet request
/// minus the plain request on the same connection next to it), relative
/// to the plain requests' median.
fn overhead(measurement: String, ours: &[Duration], plain: &[Duration]) -> Row {
    let micros = |d: &Duration| d.as_secs_f64() * 1e6;
    // Pairs alternate which client goes first: the median difference of
    // each order, averaged, so that going first or second cancels out.
    let differences = |first: usize| -> Vec<f64> {
        ours.iter()
            .zip(plain)
            .skip(first)
            .step_by(2)
            .map(|(o, p)| micros(o) - micros(p))
            .collect()
    };
    let extra =
        (crate::support::median(&differences(0)) + crate::support::median(&differences(1))) / 2.0;
    let plain_median = micros(&crate::support::percentile(plain, 0.5));
    let ours_median = micros(&crate::support::percentile(ours, 0.5));
    let relative = extra / plain_median * 100.0;
    let mut row = Row::info(measurement, relative, "%").figure_text(format!(
        "{relative:+.1} % ({extra:+.1} µs per request; median {ours_median:.1} µs)"
    ));
    row.reference = format!("plain reqwest, same connections: median {plain_median:.1} µs");
    row.reference_value = None;
    row.ratio = Some((plain_median + extra) / plain_median);
    row
}
