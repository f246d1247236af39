//! The HTTP set against faulty servers on loopback: one that hangs, one
//! that is killed and restarted, one that cuts its reply short, callers
//! that give up, and the retry budget.
//!
//! Every answer is checked: each testkit server answers its own name, in
//! the body and in `X-Server`, so a body must equal that header and name a
//! server expected to answer.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serversets::FixedSet;
use serversets::{Changes, Endpoint, Entry, Member, Publisher, Snapshot, Source};
use serversets_http::{Error, FailureAccrual, HttpSet, RetryBudget};
use testkit::HttpServer;

fn endpoint(server: &HttpServer) -> Endpoint {
    server.endpoint().parse().expect("endpoint")
}

fn servers(names: &[&str]) -> Vec<HttpServer> {
    names
        .iter()
        .map(|name| HttpServer::start(name).expect("http server"))
        .collect()
}

/// The server's name from a response, checked: the body equals
/// `X-Server`, which is one of `expected`.
async fn answer(response: serversets_http::reqwest::Response, expected: &[&str]) -> String {
    assert!(response.status().is_success(), "{}", response.status());
    let header = response
        .headers()
        .get("x-server")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .expect("an X-Server header");
    let body = response.text().await.expect("the whole body");
    assert_eq!(body, header, "the body is the answering server's name");
    assert!(
        expected.contains(&body.as_str()),
        "{body:?} answered; expected one of {expected:?}"
    );
    body
}

/// Sends GETs until the hung endpoint is marked dead; returns the failures
/// seen on the way (each a timeout of the hung one), checking the answers.
async fn until_ejected(http: &HttpSet, live: &[&str]) -> usize {
    let mut failures = 0;
    for _ in 0..100 {
        if http.accrual_stats().ejections > 0 {
            return failures;
        }
        match http.get("/").send().await {
            Ok(response) => {
                answer(response, live).await;
            }
            Err(Error::Timeout { .. }) => failures += 1,
            Err(other) => panic!("unexpected {other}"),
        }
    }
    panic!("never ejected; {failures} failures");
}

/// Sends GETs until `name` answers one, checking every answer; returns
/// how long that took. Panics after `deadline`.
async fn until_answered_by(
    http: &HttpSet,
    name: &str,
    all: &[&str],
    deadline: Duration,
) -> Duration {
    let started = Instant::now();
    while started.elapsed() < deadline {
        match http.get("/back").send().await {
            Ok(response) => {
                if answer(response, all).await == name {
                    return started.elapsed();
                }
            }
            // The endpoint's probe may still fail (a timeout) if it was
            // sent before the endpoint answered again.
            Err(Error::Timeout { .. }) => {}
            Err(other) => panic!("unexpected {other}"),
        }
    }
    panic!("{name} did not answer within {deadline:?}");
}

/// (a) and (b): a hung endpoint is skipped after at most 5 failures; of
/// the next 1000 GETs at least 99 % succeed, quickly; once it answers
/// again it is back within its backoff.
#[tokio::test]
async fn hung_endpoint_is_skipped_then_back_once_it_answers() {
    let servers = servers(&["a", "b", "hung"]);
    servers[2].set_hanging(true);
    let attempt_timeout = Duration::from_millis(300);
    let http = HttpSet::builder(FixedSet::from_endpoints(servers.iter().map(endpoint)))
        .attempt_timeout(attempt_timeout)
        .build();
    let live = ["a", "b"];

    let failures = until_ejected(&http, &live).await;
    assert!(
        (1..=5).contains(&failures),
        "{failures} failures before it was skipped"
    );
    let hung_requests = servers[2].requests();
    assert_eq!(hung_requests, failures as u64);

    let mut times = Vec::with_capacity(1000);
    let mut ok = 0;
    for i in 0..1000 {
        let started = Instant::now();
        match http.get(&format!("/next/{i}")).send().await {
            Ok(response) => {
                answer(response, &live).await;
                ok += 1;
            }
            // Probes of the hung endpoint, after each backoff.
            Err(Error::Timeout { .. }) => {}
            Err(other) => panic!("unexpected {other}"),
        }
        times.push(started.elapsed());
    }
    times.sort();
    let p99 = times[989];
    let probes = servers[2].requests() - hung_requests;
    eprintln!(
        "{ok} of 1000 succeeded; {probes} probes; p50 {:?}, p99 {p99:?}",
        times[499]
    );
    assert!(ok >= 990, "{ok} of 1000 succeeded");
    assert_eq!(1000 - ok, probes, "only probes of the hung endpoint fail");
    assert!(
        p99 < attempt_timeout / 2,
        "p99 {p99:?}: requests wait for the hung endpoint"
    );
    let stats = http.accrual_stats();
    assert_eq!(
        stats.ejections,
        1 + probes,
        "each failed probe marks it again"
    );
    assert_eq!((stats.tracked, stats.dead), (3, 1));

    // (b) It answers again: back in rotation within its backoff (the
    // requests here are sequential, so no probe is under way now).
    servers[2].set_hanging(false);
    let took = until_answered_by(&http, "hung", &["a", "b", "hung"], Duration::from_secs(10)).await;
    eprintln!("back after {took:?}");
    assert!(
        took <= FailureAccrual::DEFAULT_MAX_BACKOFF + Duration::from_millis(500),
        "back after {took:?}"
    );
    let stats = http.accrual_stats();
    assert_eq!((stats.revivals, stats.dead), (1, 0));
    // And it gets its turns again.
    let mut names = Vec::new();
    for _ in 0..30 {
        let response = http.get("/").send().await.expect("answered");
        names.push(answer(response, &["a", "b", "hung"]).await);
    }
    for name in ["a", "b", "hung"] {
        let turns = names.iter().filter(|n| *n == name).count();
        assert_eq!(turns, 10, "{name}: {names:?}");
    }
}

/// (c) A killed endpoint is skipped (its requests retried elsewhere) and
/// comes back once restarted on the same port.
#[tokio::test]
async fn killed_endpoint_restarted_on_the_same_port_comes_back() {
    let mut servers = servers(&["a", "b", "killed"]);
    let http = HttpSet::new(FixedSet::from_endpoints(servers.iter().map(endpoint)));
    for _ in 0..6 {
        let response = http.get("/").send().await.expect("answered");
        answer(response, &["a", "b", "killed"]).await;
    }
    servers[2].stop();
    // Connecting fails fast and is retried: every request is answered.
    let mut requests = 0;
    while http.accrual_stats().ejections == 0 {
        let response = http.get("/").send().await.expect("retried elsewhere");
        answer(response, &["a", "b"]).await;
        requests += 1;
        assert!(requests < 100, "never ejected");
    }
    assert!(requests <= 15, "{requests} requests to eject it");
    // Skipped now, all answered.
    for _ in 0..30 {
        let response = http.get("/").send().await.expect("answered");
        answer(response, &["a", "b"]).await;
    }

    servers[2].start_again().expect("same port");
    let took = until_answered_by(
        &http,
        "killed",
        &["a", "b", "killed"],
        Duration::from_secs(10),
    )
    .await;
    eprintln!("back after {took:?}");
    let stats = http.accrual_stats();
    assert!(stats.revivals >= 1, "{stats:?}");
    assert_eq!(stats.dead, 0);
}

/// A raw server that answers every request with headers announcing 100
/// bytes, sends 10 and closes. Counts connections.
fn start_cutting_server() -> (Endpoint, Arc<AtomicU64>) {
    start_short_server(true)
}

/// A raw server that answers every request with headers announcing 100
/// bytes and sends 10; then closes the connection (`close`) or stalls
/// until the client closes it. Counts connections.
fn start_short_server(close: bool) -> (Endpoint, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let endpoint: Endpoint = listener.local_addr().expect("addr").into();
    let connections = Arc::new(AtomicU64::new(0));
    let count = Arc::clone(&connections);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            count.fetch_add(1, Ordering::SeqCst);
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\
                  X-Server: cut\r\n\r\n0123456789",
            );
            let _ = stream.flush();
            if !close {
                // Stalls mid-reply until the client gives up.
                while matches!(stream.read(&mut buf), Ok(n) if n > 0) {}
            }
            // Dropped: closed mid-reply.
        }
    });
    (endpoint, connections)
}

/// (d) A reply cut short is an error, never a truncated body passed off as
/// a success, and counts against the endpoint.
#[tokio::test]
async fn reply_cut_short_is_an_error_and_a_failure() {
    let (cut, _) = start_cutting_server();
    let a = HttpServer::start("a").expect("http server");
    let http = HttpSet::builder(FixedSet::from_endpoints([cut, endpoint(&a)]))
        .failure_accrual(
            FailureAccrual::new()
                .consecutive_failures(2)
                .backoff(Duration::from_secs(60), Duration::from_secs(60)),
        )
        .build();
    let mut cut_short = 0;
    for _ in 0..20 {
        let response = http.get("/").send().await.expect("headers arrive");
        let server = response
            .headers()
            .get("x-server")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if server.as_deref() == Some("cut") {
            assert_eq!(response.content_length(), Some(100));
            let err = response
                .text()
                .await
                .expect_err("a body cut short is an error");
            assert!(err.is_body() || err.is_decode(), "{err}");
            cut_short += 1;
        } else {
            answer(response, &["a"]).await;
        }
    }
    assert_eq!(cut_short, 2, "skipped after 2 failures in a row");
    let stats = http.accrual_stats();
    assert_eq!((stats.ejections, stats.dead), (1, 1));
    assert_eq!(a.requests(), 18);

    // Reading the body with `bytes()` or `chunk()` fails the same way.
    let http = HttpSet::new(FixedSet::from_endpoints([start_cutting_server().0]));
    let response = http.get("/").send().await.expect("headers");
    assert!(response.bytes().await.is_err());
    let mut response = http.get("/").send().await.expect("headers");
    let mut got = Vec::new();
    let err = loop {
        match response.chunk().await {
            Ok(Some(chunk)) => got.extend_from_slice(&chunk),
            Ok(None) => panic!("a truncated body ended as if whole: {got:?}"),
            Err(err) => break err,
        }
    };
    assert!(got.len() < 100, "{err}");
}

/// A body that stalls is cut off by the attempt timeout: an error, and a
/// failure of its endpoint.
#[tokio::test]
async fn body_stalling_times_out_and_is_a_failure() {
    let (stalling, _) = start_short_server(false);
    let a = HttpServer::start("a").expect("http server");
    let attempt_timeout = Duration::from_millis(300);
    let http = HttpSet::builder(FixedSet::from_endpoints([stalling, endpoint(&a)]))
        .attempt_timeout(attempt_timeout)
        .failure_accrual(
            FailureAccrual::new()
                .consecutive_failures(2)
                .backoff(Duration::from_secs(60), Duration::from_secs(60)),
        )
        .build();
    let mut stalled = 0;
    for _ in 0..10 {
        let started = Instant::now();
        let response = http.get("/").send().await.expect("headers arrive");
        if response
            .headers()
            .get("x-server")
            .is_some_and(|v| v == "cut")
        {
            let err = response.text().await.expect_err("a stalled body times out");
            assert!(err.is_timeout(), "{err}");
            let took = started.elapsed();
            assert!(took >= attempt_timeout, "{took:?}");
            assert!(took < attempt_timeout * 5, "{took:?}");
            stalled += 1;
        } else {
            answer(response, &["a"]).await;
        }
    }
    assert_eq!(stalled, 2, "skipped after 2 failures in a row");
    assert_eq!(http.accrual_stats().ejections, 1);
    // A request's own timeout covers the body the same way (reqwest's).
    let (stalling, _) = start_short_server(false);
    let http = HttpSet::new(FixedSet::from_endpoints([stalling]));
    let response = http
        .get("/")
        .timeout(Duration::from_millis(100))
        .send()
        .await
        .expect("headers");
    assert!(response.text().await.expect_err("times out").is_timeout());
}

/// A response is a success even when its body is not read: a response
/// dropped unread resets the failure count.
#[tokio::test]
async fn responses_are_successes_whether_read_or_not() {
    let (cut, _) = start_cutting_server();
    let a = HttpServer::start("a").expect("http server");
    let http = HttpSet::builder(FixedSet::from_endpoints([cut, endpoint(&a)]))
        .failure_accrual(FailureAccrual::new().consecutive_failures(2))
        .build();
    // Cut, dropped unread (a success), cut: never two failures in a row.
    let mut cuts = 0;
    for _ in 0..12 {
        let response = http.get("/").send().await.expect("headers");
        let cut = response
            .headers()
            .get("x-server")
            .is_some_and(|v| v == "cut");
        cuts += usize::from(cut);
        if cut && cuts % 2 == 0 {
            drop(response);
        } else if cut {
            assert!(response.text().await.is_err());
        } else {
            answer(response, &["a"]).await;
        }
    }
    assert_eq!(cuts, 6);
    assert_eq!(http.accrual_stats().ejections, 0);
}

/// (e) A caller that gives up on a request (its future dropped) reports
/// nothing against the endpoint, and its next requests are answered
/// correctly, by a connection of their own.
#[tokio::test]
async fn callers_that_give_up_report_nothing_and_get_correct_answers() {
    let servers = servers(&["a", "hung"]);
    servers[1].set_hanging(true);
    let http = HttpSet::new(FixedSet::from_endpoints(servers.iter().map(endpoint)));
    let (mut dropped, mut answered) = (0, 0);
    for _ in 0..20 {
        match tokio::time::timeout(Duration::from_millis(300), http.get("/").send()).await {
            Ok(response) => {
                answer(response.expect("answered"), &["a"]).await;
                answered += 1;
            }
            Err(_) => dropped += 1,
        }
    }
    assert_eq!((dropped, answered), (10, 10), "strict turns");
    let stats = http.accrual_stats();
    assert_eq!(
        (stats.ejections, stats.dead),
        (0, 0),
        "10 requests given up are not 10 failures"
    );
    // The server answers again: requests given up stay unanswered, and no
    // new request is sent on their connections.
    servers[1].set_hanging(false);
    let mut names = Vec::new();
    for _ in 0..10 {
        let response = tokio::time::timeout(Duration::from_secs(5), http.get("/").send())
            .await
            .expect("not sent on a hung connection")
            .expect("answered");
        names.push(answer(response, &["a", "hung"]).await);
    }
    assert_eq!(
        names.iter().filter(|n| *n == "hung").count(),
        5,
        "{names:?}"
    );
}

/// (f) Without any caller timeout, a GET to a set whose only endpoint
/// hangs fails once the attempt timeout is over.
#[tokio::test]
async fn only_endpoint_hanging_fails_within_the_attempt_timeout() {
    let hung = HttpServer::start("hung").expect("http server");
    hung.set_hanging(true);
    let attempt_timeout = Duration::from_millis(300);
    let own = HttpSet::builder(FixedSet::from_endpoints([endpoint(&hung)]))
        .attempt_timeout(attempt_timeout)
        .build();
    // With a client of the caller's too (which has no timeout).
    let given = HttpSet::builder(FixedSet::from_endpoints([endpoint(&hung)]))
        .client(serversets_http::reqwest::Client::new())
        .attempt_timeout(attempt_timeout)
        .build();
    for http in [&own, &given, &own, &given] {
        let started = Instant::now();
        // The outer timeout only keeps this test from hanging if the
        // attempt timeout did not work.
        let result = tokio::time::timeout(Duration::from_secs(30), http.get("/").send())
            .await
            .expect("the attempt timeout ends the request");
        let took = started.elapsed();
        match result {
            Err(err @ Error::Timeout { .. }) => {
                assert!(err.is_timeout());
                let Error::Timeout { endpoint, timeout } = err else {
                    unreachable!()
                };
                assert_eq!(endpoint.to_string(), hung.endpoint());
                assert_eq!(timeout, attempt_timeout);
            }
            Err(other) => panic!("unexpected {other}"),
            Ok(response) => panic!("answered: {}", response.status()),
        }
        assert!(took >= attempt_timeout, "{took:?}");
        assert!(took < attempt_timeout * 5, "{took:?}");
    }
    for http in [&own, &given] {
        // The only endpoint is never marked dead.
        assert_eq!(http.accrual_stats().ejections, 0);
        // A request's own timeout wins over the attempt timeout.
        let started = Instant::now();
        let err = http
            .get("/")
            .timeout(Duration::from_millis(50))
            .send()
            .await
            .expect_err("hung");
        assert!(started.elapsed() < attempt_timeout, "{err}");
        assert!(err.is_timeout(), "{err}");
        assert!(
            matches!(err, Error::Http { .. }),
            "reqwest's timeout: {err}"
        );
    }
}

/// A source over a publisher, to serve entries a fixed set would merge.
struct Published(Publisher);

impl Source for Published {
    fn current(&self) -> Arc<Snapshot> {
        self.0.current()
    }

    fn changes(&self) -> Changes {
        self.0.subscribe()
    }
}

fn entry(name: &str, endpoint: &Endpoint) -> Arc<Entry> {
    Arc::new(Entry::new(
        name,
        endpoint.clone(),
        1.0,
        Arc::new(Member::new(endpoint.clone())),
    ))
}

/// (g) The retry budget: none allows no retry, the default retries.
#[tokio::test]
async fn retry_budget_none_returns_the_connect_failure_the_default_retries() {
    let a = HttpServer::start("a").expect("http server");
    let dead: Endpoint = testkit::dead_endpoint().expect("port").parse().unwrap();
    let endpoints = [dead.clone(), endpoint(&a)];

    let none = HttpSet::builder(FixedSet::from_endpoints(endpoints.clone()))
        .retry_budget(RetryBudget::none())
        .build();
    let (mut refused, mut answered) = (0, 0);
    for _ in 0..4 {
        match none.get("/").send().await {
            Ok(response) => {
                answer(response, &["a"]).await;
                answered += 1;
            }
            Err(Error::Http { endpoint, source }) => {
                assert_eq!(endpoint, dead);
                assert!(source.is_connect(), "{source}");
                refused += 1;
            }
            Err(other) => panic!("unexpected {other}"),
        }
    }
    assert_eq!((refused, answered), (2, 2), "no retries");

    let default = HttpSet::new(FixedSet::from_endpoints(endpoints));
    for _ in 0..4 {
        let response = default.get("/").send().await.expect("retried");
        answer(response, &["a"]).await;
    }
    assert_eq!(a.requests(), 6);

    // A budget spent stops retries; the minimum refills it over time.
    let small = HttpSet::builder(FixedSet::from_endpoints([dead.clone(), endpoint(&a)]))
        .retry_budget(RetryBudget::new().ratio(0.0).min_retries_per_second(1))
        .failure_accrual(FailureAccrual::disabled())
        .build();
    let mut refused = 0;
    for _ in 0..40 {
        match small.get("/").send().await {
            Ok(response) => {
                answer(response, &["a"]).await;
            }
            Err(Error::Http { source, .. }) => {
                assert!(source.is_connect(), "{source}");
                refused += 1;
            }
            Err(other) => panic!("unexpected {other}"),
        }
    }
    // 10 retries are in the budget (1 per second over 10 s): the first 10
    // requests start at the dead endpoint and are retried (a retry takes
    // a turn); of the 30 others, every other one starts there and fails.
    assert_eq!(refused, 15);
}

/// A retry goes to neither a dead endpoint nor one tried already, even
/// under another entry (two members of one server).
#[tokio::test]
async fn retries_skip_endpoints_tried_or_dead() {
    // Accepts and closes at once: a GET is retried elsewhere.
    let rude = TcpListener::bind("127.0.0.1:0").expect("bind");
    let rude_endpoint: Endpoint = rude.local_addr().expect("addr").into();
    let connections = Arc::new(AtomicU64::new(0));
    let count = Arc::clone(&connections);
    std::thread::spawn(move || {
        for stream in rude.incoming() {
            count.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    let a = HttpServer::start("a").expect("http server");
    let publisher = Publisher::new();
    publisher.replace(vec![
        entry("member_0000000001", &rude_endpoint),
        entry("member_0000000002", &rude_endpoint),
        entry("member_0000000003", &endpoint(&a)),
    ]);
    let http = HttpSet::builder(Published(publisher))
        .failure_accrual(FailureAccrual::disabled())
        .build();
    for _ in 0..30 {
        let before = connections.load(Ordering::SeqCst);
        let response = http.get("/").send().await.expect("retried on a");
        answer(response, &["a"]).await;
        let tried = connections.load(Ordering::SeqCst) - before;
        assert!(tried <= 1, "the rude endpoint was tried {tried} times");
    }
    // Half the requests start at the rude endpoint (a retry takes a turn
    // too).
    assert_eq!(connections.load(Ordering::SeqCst), 15);
    assert_eq!(a.requests(), 30);

    // Marked dead: no request, first or retry, goes to it.
    let dead = testkit::dead_endpoint().expect("port").parse().unwrap();
    let http = HttpSet::builder(FixedSet::from_endpoints([
        rude_endpoint.clone(),
        dead,
        endpoint(&a),
    ]))
    .failure_accrual(
        FailureAccrual::new()
            .consecutive_failures(1)
            .backoff(Duration::from_secs(60), Duration::from_secs(60)),
    )
    .max_attempts(3)
    .build();
    for _ in 0..6 {
        let response = http.get("/").send().await.expect("answered");
        answer(response, &["a"]).await;
    }
    let stats = http.accrual_stats();
    assert_eq!((stats.ejections, stats.dead), (2, 2));
    let before = connections.load(Ordering::SeqCst);
    for _ in 0..30 {
        let response = http.get("/").send().await.expect("answered");
        answer(response, &["a"]).await;
    }
    assert_eq!(connections.load(Ordering::SeqCst), before);
}
