//! The HTTP set against real HTTP servers on loopback.

use serversets::FixedSet;
use serversets::{Endpoint, Source};
use serversets_http::{Error, HttpSet};
use testkit::HttpServer;

fn endpoint(server: &HttpServer) -> Endpoint {
    server.endpoint().parse().expect("endpoint")
}

async fn body(set: &HttpSet, path: &str) -> String {
    let response = set.get(path).send().await.expect("request");
    assert!(response.status().is_success());
    response.text().await.expect("body")
}

#[tokio::test]
async fn spreads_exactly_round_robin_and_follows_the_set() {
    let servers: Vec<HttpServer> = ["a", "b", "c"]
        .iter()
        .map(|name| HttpServer::start(name).expect("http server"))
        .collect();
    let set = FixedSet::from_endpoints(servers.iter().map(endpoint));
    let http = HttpSet::new(set.clone());

    // Snapshot order is the rotation order.
    let order: Vec<String> = set
        .current()
        .iter()
        .map(|e| e.endpoint.to_string())
        .collect();
    let name_of = |ep: &str| {
        servers
            .iter()
            .find(|s| s.endpoint() == ep)
            .map(|s| s.name().to_owned())
            .unwrap()
    };
    let expected: Vec<String> = order.iter().map(|e| name_of(e)).collect();
    let mut seen = Vec::new();
    for i in 0..30 {
        seen.push(body(&http, &format!("/users/{i}")).await);
    }
    for (i, name) in seen.iter().enumerate() {
        assert_eq!(
            name,
            &expected[i % 3],
            "request {i} went out of turn: {seen:?}"
        );
    }
    for server in &servers {
        assert_eq!(server.requests(), 10, "exactly a third each");
    }
    let mut paths: Vec<String> = servers.iter().flat_map(|s| s.paths()).collect();
    paths.sort();
    let mut want: Vec<String> = (0..30).map(|i| format!("/users/{i}")).collect();
    want.sort();
    assert_eq!(
        paths, want,
        "each request reached exactly one server, path intact"
    );

    // A removed endpoint gets no more requests.
    let removed = &servers[0];
    set.replace_endpoints(servers[1..].iter().map(endpoint));
    let before = removed.requests();
    for _ in 0..10 {
        body(&http, "/after-remove").await;
    }
    assert_eq!(
        removed.requests(),
        before,
        "a removed endpoint got requests"
    );

    // An added one gets them on its next turn.
    let d = HttpServer::start("d").expect("http server");
    set.replace_endpoints(servers[1..].iter().map(endpoint).chain([endpoint(&d)]));
    let mut names = Vec::new();
    for _ in 0..3 {
        names.push(body(&http, "/after-add").await);
    }
    names.sort();
    assert_eq!(names, ["b", "c", "d"]);
}

#[tokio::test]
async fn dead_endpoint_is_skipped_by_the_retry() {
    let a = HttpServer::start("a").expect("http server");
    let b = HttpServer::start("b").expect("http server");
    let dead: Endpoint = testkit::dead_endpoint().expect("port").parse().unwrap();
    let set = FixedSet::from_endpoints([endpoint(&a), dead.clone(), endpoint(&b)]);
    let http = HttpSet::new(set);
    for i in 0..12 {
        let name = body(&http, &format!("/{i}")).await;
        assert!(name == "a" || name == "b");
    }
    assert_eq!(a.requests() + b.requests(), 12);

    // A server that stops is skipped too.
    let mut a = a;
    a.stop();
    for _ in 0..6 {
        assert_eq!(body(&http, "/").await, "b");
    }
}

#[tokio::test]
async fn bodies_headers_and_errors() {
    let a = HttpServer::start("a").expect("http server");
    let set = FixedSet::from_endpoints([endpoint(&a)]);
    let http = HttpSet::new(set.clone());
    let response = http
        .post("/echo?x=1")
        .header("x-test", "yes")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers().get("x-server").unwrap(), "a");
    assert_eq!(response.text().await.unwrap(), "hello");

    // Failures after connecting are returned, not retried elsewhere: this
    // endpoint accepts, reads the request and hangs up without answering.
    let rude = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let rude_endpoint: Endpoint = rude.local_addr().unwrap().into();
    std::thread::spawn(move || {
        for stream in rude.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut buf = [0u8; 1024];
            let _ = std::io::Read::read(&mut stream, &mut buf);
        }
    });
    let b = HttpServer::start("b").expect("http server");
    let mixed = HttpSet::new(FixedSet::from_endpoints([rude_endpoint, endpoint(&b)]));
    // A POST may have been processed: it is returned as failed.
    let (mut failures, mut answers) = (0, 0);
    for _ in 0..2 {
        match mixed.post("/").body("x").send().await {
            Ok(response) => {
                assert_eq!(response.text().await.unwrap(), "b");
                answers += 1;
            }
            Err(Error::Http { source, .. }) => {
                assert!(!source.is_connect(), "{source}");
                failures += 1;
            }
            Err(other) => panic!("unexpected {other}"),
        }
    }
    assert_eq!((failures, answers), (1, 1));
    assert_eq!(
        b.requests(),
        1,
        "the failed request was not sent again elsewhere"
    );
    // An idempotent GET is sent on to the next endpoint.
    for _ in 0..4 {
        let response = mixed.get("/").send().await.expect("GET retried elsewhere");
        assert_eq!(response.text().await.unwrap(), "b");
    }
    assert_eq!(b.requests(), 5);

    // No endpoints: a clear error at once.
    set.replace_endpoints([]);
    let err = http.get("/").send().await.unwrap_err();
    assert!(matches!(err, Error::NoEndpoints { .. }), "{err}");
    assert!(err.to_string().contains("no endpoints"));

    // All endpoints dead: the connect error names the endpoint tried last.
    let dead: Endpoint = testkit::dead_endpoint().unwrap().parse().unwrap();
    set.replace_endpoints([dead.clone()]);
    let err = http.get("/").send().await.unwrap_err();
    match err {
        Error::Http { endpoint, source } => {
            assert_eq!(endpoint, dead);
            assert!(source.is_connect());
        }
        other => panic!("unexpected {other}"),
    }
}

#[tokio::test]
async fn retries_keep_headers_and_timeout() {
    let a = HttpServer::start("a").expect("http server");
    let dead: Endpoint = testkit::dead_endpoint().expect("port").parse().unwrap();
    let http = HttpSet::new(FixedSet::from_endpoints([dead, endpoint(&a)]));
    for i in 0..6 {
        let response = http
            .get(&format!("/r/{i}"))
            .header("x-test", "yes")
            .timeout(std::time::Duration::from_secs(10))
            .send()
            .await
            .expect("retried on the live endpoint");
        assert_eq!(response.text().await.unwrap(), "a");
    }
    let mut paths = a.paths();
    paths.sort();
    assert_eq!(paths, (0..6).map(|i| format!("/r/{i}")).collect::<Vec<_>>());
}
