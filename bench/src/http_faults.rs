//! `HttpSet` with a hung endpoint: three testkit HTTP servers on loopback,
//! one of which accepts connections and reads requests but never answers,
//! an attempt timeout of 1 s and the default failure accrual.
//!
//! Measured: the failures before the hung endpoint is skipped; the success
//! rate and p99 of the next requests, beside the p99 of a set of only the
//! two healthy endpoints, its requests interleaved with the others (same
//! run, same client); and, once the endpoint answers again, the time until
//! it serves requests again, beside its backoff at that point.

use std::time::{Duration, Instant};

use serversets::Endpoint;
use serversets::FixedSet;
use serversets_http::{reqwest, FailureAccrual, HttpSet};

use crate::support::{ms, p50, p99, BoxError, Row};

/// The attempt timeout: what each request to the hung endpoint costs.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);

pub async fn run(quick: bool) -> Result<Vec<Row>, BoxError> {
    let (requests, warmup) = if quick { (200, 20) } else { (1000, 200) };
    let servers: Vec<testkit::HttpServer> = ["a", "b", "hung"]
        .iter()
        .map(|name| testkit::HttpServer::start(name))
        .collect::<Result<_, _>>()?;
    let endpoints: Vec<Endpoint> = servers
        .iter()
        .map(|s| s.endpoint().parse())
        .collect::<Result<_, _>>()?;
    let client = reqwest::Client::builder()
        .connect_timeout(serversets_http::DEFAULT_CONNECT_TIMEOUT)
        .build()?;
    let policy = FailureAccrual::new();
    let set = HttpSet::builder(FixedSet::from_endpoints(endpoints.clone()))
        .client(client.clone())
        .attempt_timeout(ATTEMPT_TIMEOUT)
        .failure_accrual(policy.clone())
        .build();
    let healthy = HttpSet::builder(FixedSet::from_endpoints(endpoints[..2].to_vec()))
        .client(client.clone())
        .attempt_timeout(ATTEMPT_TIMEOUT)
        .build();
    // Connections to every server, and the code paths, warm.
    for _ in 0..warmup {
        get(&set).await?;
        get(&healthy).await?;
    }

    servers[2].set_hanging(true);
    let mut failures = 0u32;
    while set.accrual_stats().ejections == 0 {
        if get(&set).await.is_err() {
            failures += 1;
        }
        if failures > 100 {
            return Err("the hung endpoint was never skipped".into());
        }
    }

    // The next requests, each followed by one to the healthy set, so that
    // both see the same machine.
    let probes_before = servers[2].requests();
    let (mut ours, mut reference) = (Vec::new(), Vec::new());
    let mut succeeded = 0usize;
    for _ in 0..requests {
        let started = Instant::now();
        if let Ok(name) = get(&set).await {
            if name == "a" || name == "b" {
                succeeded += 1;
            }
        }
        ours.push(started.elapsed());
        let started = Instant::now();
        get(&healthy).await?;
        reference.push(started.elapsed());
    }
    let probes = servers[2].requests() - probes_before;
    let rate = succeeded as f64 * 100.0 / requests as f64;

    // It answers again (between two requests: no probe is under way).
    let level = set.accrual_stats().ejections.saturating_sub(1);
    let backoff = policy.backoff_at_level(u32::try_from(level).unwrap_or(u32::MAX));
    servers[2].set_hanging(false);
    let started = Instant::now();
    let back = loop {
        if let Ok(name) = get(&set).await {
            if name == "hung" {
                break started.elapsed();
            }
        }
        if started.elapsed() > Duration::from_secs(30) {
            return Err("the endpoint did not come back within 30 s".into());
        }
    };

    let setup = "HttpSet, 3 endpoints on loopback, 1 hung, attempt timeout 1 s";
    let (p99_ours, p99_reference) = (p99(&ours), p99(&reference));
    Ok(vec![
        Row::info(
            format!("{setup}: failures before the hung endpoint is skipped"),
            f64::from(failures),
            "",
        )
        .reference_text(format!(
            "policy: {} failures in a row",
            policy.failure_threshold()
        ))
        .target("≤ 5", failures <= 5),
        Row::info(
            format!("{setup}: success rate of the next {requests} requests"),
            rate,
            "%",
        )
        .figure_text(format!(
            "{rate:.1} % ({probes} probe(s) of the hung endpoint failed)"
        ))
        .target("≥ 99 %", rate >= 99.0),
        Row::info(format!("{setup}: p99 of those {requests}"), p99_ours, "ms")
            .figure_text(format!("{p99_ours:.3} ms (p50 {:.3} ms)", p50(&ours)))
            .against(
                "p99 with only the 2 healthy endpoints (same run)",
                p99_reference,
            )
            .target("≤ 2x", p99_ours <= 2.0 * p99_reference),
        Row::info(
            format!("{setup}: time from the endpoint answering again to it serving requests again"),
            ms(back),
            "ms",
        )
        .against("its backoff then (before jitter)", ms(backoff))
        .target(
            "≤ its backoff (+ 5 ms)",
            back <= backoff + Duration::from_millis(5),
        ),
    ])
}

/// One GET to the set, its whole body read: the answering server's name,
/// checked against `X-Server`.
async fn get(set: &HttpSet) -> Result<String, BoxError> {
    let response = set.get("/bench").send().await?;
    let server = response
        .headers()
        .get("x-server")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = response.text().await?;
    if server.as_deref() != Some(body.as_str()) {
        return Err(format!("body {body:?} from X-Server {server:?}").into());
    }
    Ok(body)
}
