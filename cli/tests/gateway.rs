//! `serverset serve` against a real ZooKeeper, through HTTP: every route,
//! TTL registrations seen by a library watch, members of another client
//! reaching an SSE subscriber, expiry, tokens, and every bad input (each
//! checked to register nothing). Then the same gateway on a real etcd, in
//! both of its storage formats.

mod common;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use serversets::{codec, Client, Endpoint, Member, ServerSetPath};

/// The gateway binary, killed on drop.
struct Gateway {
    child: Child,
    base: String,
}

impl Gateway {
    async fn start(connect: &str, token: Option<&str>) -> Gateway {
        Gateway::start_with(connect, token, &[]).await
    }

    /// Starts it with these extra flags.
    async fn start_with(connect: &str, token: Option<&str>, extra: &[&str]) -> Gateway {
        let port = testkit::free_port().expect("free port");
        let mut command = Command::new(env!("CARGO_BIN_EXE_serverset"));
        command
            .args(["serve", connect, "--listen", &format!("127.0.0.1:{port}")])
            .args(extra)
            .env_remove("SERVERSET_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        if let Some(token) = token {
            command.args(["--token", token]);
        }
        let child = command.spawn().expect("start the gateway");
        let gateway = Gateway {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        within("the gateway to answer", async {
            loop {
                if let Ok(r) = http().get(gateway.url("/healthz")).send().await {
                    if r.status() == 200 {
                        return;
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        gateway
    }

    fn url(&self, route: &str) -> String {
        format!("{}{route}", self.base)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, f)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

async fn get_json(url: &str) -> (u16, Value) {
    let r = http().get(url).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

/// Ports of a JSON member array.
fn ports(members: &Value) -> Vec<u64> {
    members
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["port"].as_u64().unwrap())
        .collect()
}

async fn wait_ports(gateway: &Gateway, query: &str, want: &[u64]) -> Value {
    within("the members", async {
        loop {
            let (status, body) = get_json(&gateway.url(&format!("/v1/members?{query}"))).await;
            assert_eq!(status, 200, "{body}");
            if ports(&body) == want {
                return body;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_leader_paths_health_and_metrics() {
    let server = zookeeper();
    let connect = server.connect_string();
    let gateway = Gateway::start(&connect, None).await;
    let other = raw(&connect).await;
    let dir = "/discovery/prod/users";
    mkdir(&other, dir).await;

    let (status, body) = get_json(&gateway.url(&format!("/v1/leader?path={dir}"))).await;
    assert_eq!(status, 404, "no leader in an empty set");
    assert!(body["error"].as_str().unwrap().contains(dir));

    let first = Member::new(Endpoint::new("10.0.0.1", 9001))
        .with_additional("http", Endpoint::new("10.0.0.1", 8001))
        .with_shard(1)
        .with_metadata("zone", "eu-1");
    let second = Member::new(Endpoint::new("10.0.0.2", 9002))
        .with_shard(2)
        .with_metadata("zone", "us-1");
    raw_member(&other, dir, &codec::encode(&first)).await;
    raw_member(&other, dir, &codec::encode(&second)).await;

    let all = wait_ports(&gateway, &format!("path={dir}"), &[9001, 9002]).await;
    let m = &all[0];
    assert_eq!(m["member"], "member_0000000000");
    assert_eq!(m["host"], "10.0.0.1");
    assert_eq!(m["shard"], 1);
    assert_eq!(m["weight"], 1.0);
    assert_eq!(m["status"], "ALIVE");
    assert_eq!(m["additional"]["http"]["port"], 8001);
    assert_eq!(m["metadata"]["zone"], "eu-1");
    wait_ports(&gateway, &format!("path={dir}&endpoint=http"), &[8001]).await;
    wait_ports(&gateway, &format!("path={dir}&shard=2"), &[9002]).await;
    wait_ports(&gateway, &format!("path={dir}&meta.zone=us-1"), &[9002]).await;
    wait_ports(&gateway, &format!("path={dir}&meta.zone=nowhere"), &[]).await;

    let (status, leader) = get_json(&gateway.url(&format!("/v1/leader?path={dir}"))).await;
    assert_eq!(status, 200);
    assert_eq!(leader["port"], 9001, "the oldest member leads");

    let (status, paths) = get_json(&gateway.url("/v1/paths")).await;
    assert_eq!(status, 200);
    assert_eq!(paths, json!([dir]));

    let (status, health) = get_json(&gateway.url("/healthz")).await;
    assert_eq!((status, health), (200, json!({"session": "Connected"})));

    let metrics = http().get(gateway.url("/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), 200);
    let text = metrics.text().await.unwrap();
    for line in [
        format!("serversets_set_size{{path=\"{dir}\"}} 2"),
        format!("serversets_set_size{{path=\"{dir}\",selection=\"endpoint=http\"}} 1"),
        format!("serversets_set_health{{path=\"{dir}\"}} 1"),
        "serversets_session_events_total{state=\"connected\"} 1".to_owned(),
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
    }
    let page = http().get(gateway.url("/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("serversets"));
    let (status, body) = get_json(&gateway.url("/v2/nothing")).await;
    assert_eq!(status, 404);
    assert!(body["error"].is_string());

    // ZooKeeper sets are Finagle's: format=finagle is fine, another is
    // refused on every set route, and a bad one too.
    let all_again = wait_ports(
        &gateway,
        &format!("path={dir}&format=finagle"),
        &[9001, 9002],
    )
    .await;
    assert_eq!(all_again, all);
    for route in ["members", "leader", "events"] {
        let (status, body) =
            get_json(&gateway.url(&format!("/v1/{route}?path={dir}&format=etcd-naming"))).await;
        assert_eq!(status, 400, "{route}: {body}");
        let error = body["error"].as_str().expect("an error");
        assert!(error.contains("Finagle"), "{route}: {error}");
        let (status, body) =
            get_json(&gateway.url(&format!("/v1/{route}?path={dir}&format=bogus"))).await;
        assert_eq!(status, 400, "{route}: {body}");
        assert!(body["error"].as_str().expect("an error").contains("bogus"));
    }
    let (status, body) = put(
        &gateway,
        "a",
        &format!("{dir}&format=etcd-naming"),
        &json!({"host": "10.0.0.9", "port": 9009}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]
        .as_str()
        .expect("an error")
        .contains("Finagle"));
    let r = http()
        .delete(gateway.url(&format!("/v1/instances/a?path={dir}&format=etcd-naming")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        other.list_children(dir).await.unwrap().len(),
        2,
        "nothing registered"
    );
}

async fn put(gateway: &Gateway, id: &str, path: &str, body: &Value) -> (u16, Value) {
    let r = http()
        .put(gateway.url(&format!("/v1/instances/{id}?path={path}")))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_registrations_are_finagle_members_renewed_without_writes() {
    let server = zookeeper();
    let connect = server.connect_string();
    let gateway = Gateway::start(&connect, None).await;
    let library = Client::connect(&connect).await.unwrap();
    let dir = "/discovery/prod/python";
    let path = ServerSetPath::new(dir).unwrap();
    let watch = library.watch(&path).await.unwrap();
    let observer = raw(&connect).await;

    let body = json!({
        "host": "10.1.0.1", "port": 8080,
        "additional": {"admin": {"host": "10.1.0.1", "port": 9990}},
        "shard": 4, "metadata": {"lang": "python"}, "ttl_secs": 10
    });
    let (status, created) = put(&gateway, "py-1", dir, &body).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["renewed"], false);
    let znode = created["znode"].as_str().unwrap().to_owned();

    // The library sees a Finagle member with exactly that data.
    within("the library to see it", async {
        while watch.current().len() != 1 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let entry = watch.current().entries()[0].clone();
    assert_eq!(entry.endpoint, Endpoint::new("10.1.0.1", 8080));
    assert_eq!(
        entry.member.additional("admin"),
        Some(&Endpoint::new("10.1.0.1", 9990))
    );
    assert_eq!(entry.member.shard, Some(4));
    assert_eq!(
        entry.member.metadata.get("lang").map(String::as_str),
        Some("python")
    );
    let (data, stat) = observer.get_data(&znode).await.unwrap();
    assert!(codec::decode(&data).is_ok());

    // Renewals with the same data write nothing.
    let (_, parent) = observer.get_data(dir).await.unwrap();
    for _ in 0..5 {
        let (status, renewed) = put(&gateway, "py-1", dir, &body).await;
        assert_eq!((status, &renewed["renewed"]), (200, &json!(true)));
        assert_eq!(renewed["znode"], znode.as_str());
    }
    let (_, stat_after) = observer.get_data(&znode).await.unwrap();
    assert_eq!(stat_after.mzxid, stat.mzxid, "no write to the member");
    let (_, parent_after) = observer.get_data(dir).await.unwrap();
    assert_eq!(
        parent_after.cversion, parent.cversion,
        "no child created or deleted"
    );

    // Other data replaces the member.
    let moved = json!({"host": "10.1.0.2", "port": 8081, "ttl_secs": 10});
    let (status, replaced) = put(&gateway, "py-1", dir, &moved).await;
    assert_eq!(status, 200, "{replaced}");
    let new_znode = replaced["znode"].as_str().unwrap().to_owned();
    assert_ne!(new_znode, znode);
    within("the replacement", async {
        loop {
            let now = watch.current();
            if now.len() == 1 && now.entries()[0].endpoint == Endpoint::new("10.1.0.2", 8081) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(
        observer.get_data(&znode).await.is_err(),
        "the old member is gone"
    );

    // DELETE removes it at once; a second DELETE finds nothing.
    let r = http()
        .delete(gateway.url(&format!("/v1/instances/py-1?path={dir}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert!(observer.get_data(&new_znode).await.is_err());
    let r = http()
        .delete(gateway.url(&format!("/v1/instances/py-1?path={dir}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // Not renewed: it expires and is deleted from ZooKeeper.
    let short = json!({"host": "10.1.0.3", "port": 8082, "ttl_secs": 1});
    let (status, created) = put(&gateway, "py-2", dir, &short).await;
    assert_eq!(status, 201);
    let znode = created["znode"].as_str().unwrap().to_owned();
    within("the expiry", async {
        while observer.get_data(&znode).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    within("the library to see the expiry", async {
        while !watch.current().is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

/// One server-sent event.
#[derive(Debug, Clone)]
struct Sse {
    event: String,
    id: String,
    data: Value,
}

/// Reads events off a streaming response.
struct SseReader {
    response: reqwest::Response,
    buffer: String,
}

impl SseReader {
    async fn open(url: &str) -> SseReader {
        let response = reqwest::Client::new().get(url).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        SseReader {
            response,
            buffer: String::new(),
        }
    }

    async fn next(&mut self) -> Sse {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut fields = BTreeMap::new();
                for line in block.lines() {
                    if let Some((key, value)) = line.split_once(": ").or(line.split_once(':')) {
                        if !key.is_empty() {
                            fields.insert(key.to_owned(), value.to_owned());
                        }
                    }
                }
                let Some(event) = fields.get("event") else {
                    continue; // a heartbeat comment
                };
                return Sse {
                    event: event.clone(),
                    id: fields.get("id").cloned().unwrap_or_default(),
                    data: serde_json::from_str(&fields["data"]).unwrap(),
                };
            }
            let chunk = within("an event", self.response.chunk())
                .await
                .unwrap()
                .expect("the stream goes on");
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sse_subscriber_gets_the_set_then_every_change() {
    let server = zookeeper();
    let connect = server.connect_string();
    let gateway = Gateway::start(&connect, None).await;
    let other = raw(&connect).await;
    let dir = "/discovery/prod/events";
    mkdir(&other, dir).await;
    let first = raw_member(&other, dir, &codec::encode(&member(7001))).await;

    let mut events = SseReader::open(&gateway.url(&format!("/v1/events?path={dir}"))).await;
    let up = events.next().await;
    assert_eq!((up.event.as_str(), &up.data["port"]), ("up", &json!(7001)));
    let leader = events.next().await;
    assert_eq!(
        (leader.event.as_str(), &leader.data["port"]),
        ("leader", &json!(7001))
    );
    let current = events.next().await;
    assert_eq!(current.event, "current");
    assert_eq!(ports(&current.data), [7001]);
    let health = events.next().await;
    assert_eq!(health.event, "health");
    assert_eq!(
        health.data,
        json!({"watch": "Connected", "session": "Connected"})
    );
    let ids: Vec<u64> = [&up, &leader, &current, &health]
        .iter()
        .map(|e| e.id.parse().unwrap())
        .collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "increasing ids {ids:?}"
    );

    // Another client's member joins, then the leader leaves.
    raw_member(&other, dir, &codec::encode(&member(7002))).await;
    let up = events.next().await;
    assert_eq!((up.event.as_str(), &up.data["port"]), ("up", &json!(7002)));
    other.delete(&first, None).await.unwrap();
    let down = events.next().await;
    assert_eq!(
        (down.event.as_str(), &down.data["port"]),
        ("down", &json!(7001))
    );
    let leader = events.next().await;
    assert_eq!(
        (leader.event.as_str(), &leader.data["port"]),
        ("leader", &json!(7002))
    );

    // Filters apply to the stream too.
    let mut none = SseReader::open(&gateway.url(&format!("/v1/events?path={dir}&shard=9"))).await;
    let leader = none.next().await;
    assert_eq!(
        (leader.event.as_str(), &leader.data),
        ("leader", &Value::Null)
    );
}

fn member(port: u16) -> Member {
    Member::new(Endpoint::new("127.0.0.1", port))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_and_registers_nothing() {
    let server = zookeeper();
    let connect = server.connect_string();
    let gateway = Gateway::start(&connect, Some("s3cret")).await;
    let observer = raw(&connect).await;
    let dir = "/discovery/prod/bad";
    let url = |id: &str, path: &str| gateway.url(&format!("/v1/instances/{id}?path={path}"));
    let good = json!({"host": "10.0.0.1", "port": 80});
    let cases: Vec<(&str, String, reqwest::RequestBuilder)> = vec![
        (
            "no token",
            "401".into(),
            http().put(url("a", dir)).json(&good),
        ),
        (
            "a wrong token",
            "401".into(),
            http().put(url("a", dir)).bearer_auth("guess").json(&good),
        ),
        (
            "malformed JSON",
            "400".into(),
            http()
                .put(url("a", dir))
                .bearer_auth("s3cret")
                .body("{\"host\":"),
        ),
        (
            "port 0",
            "400".into(),
            http()
                .put(url("a", dir))
                .bearer_auth("s3cret")
                .json(&json!({"host": "h", "port": 0})),
        ),
        (
            "port 70000",
            "400".into(),
            http()
                .put(url("a", dir))
                .bearer_auth("s3cret")
                .json(&json!({"host": "h", "port": 70000})),
        ),
        (
            "an empty host",
            "400".into(),
            http()
                .put(url("a", dir))
                .bearer_auth("s3cret")
                .json(&json!({"host": " ", "port": 80})),
        ),
        (
            "a relative path",
            "400".into(),
            http()
                .put(url("a", "discovery/x"))
                .bearer_auth("s3cret")
                .json(&good),
        ),
        (
            "an illegal path",
            "400".into(),
            http()
                .put(url("a", "/discovery//x"))
                .bearer_auth("s3cret")
                .json(&good),
        ),
        (
            "unknown fields",
            "400".into(),
            http()
                .put(url("a", dir))
                .bearer_auth("s3cret")
                .json(&json!({"host": "h", "port": 80, "colour": "red"})),
        ),
        (
            "a body over 64 KB",
            "413".into(),
            http()
                .put(url("a", dir))
                .bearer_auth("s3cret")
                .json(&json!({"host": "h", "port": 80, "metadata": {"x": "y".repeat(70_000)}})),
        ),
        (
            "ttl_secs 0",
            "400".into(),
            http()
                .put(url("a", dir))
                .bearer_auth("s3cret")
                .json(&json!({"host": "h", "port": 80, "ttl_secs": 0})),
        ),
        (
            "ttl_secs 3601",
            "400".into(),
            http()
                .put(url("a", dir))
                .bearer_auth("s3cret")
                .json(&json!({"host": "h", "port": 80, "ttl_secs": 3601})),
        ),
        (
            "a bad id",
            "400".into(),
            http()
                .put(url("a%2Fb", dir))
                .bearer_auth("s3cret")
                .json(&good),
        ),
        (
            "DELETE without a token",
            "401".into(),
            http().delete(url("a", dir)),
        ),
    ];
    for (what, want, request) in cases {
        let r = request.send().await.unwrap();
        let status = r.status().as_u16().to_string();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        assert_eq!(status, want, "{what}: {body}");
        assert!(
            body["error"].is_string(),
            "{what}: a JSON error, got {body}"
        );
    }
    // Nothing was registered.
    assert!(observer
        .list_children(dir)
        .await
        .map_or(true, |c| c.is_empty()));
    // Reads need no token; a good write with it works.
    let (status, _) = get_json(&gateway.url(&format!("/v1/members?path={dir}"))).await;
    assert_eq!(status, 200);
    let (status, body) = get_json(&gateway.url("/v1/members?path=relative")).await;
    assert_eq!(status, 400, "{body}");
    let r = http()
        .put(url("a", dir))
        .bearer_auth("s3cret")
        .json(&good)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(observer.list_children(dir).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_falls_behind_gets_a_snapshot_not_a_backlog() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = zookeeper();
    let connect = server.connect_string();
    let gateway = Gateway::start(&connect, None).await;
    let other = raw(&connect).await;
    let dir = "/discovery/prod/slow";
    mkdir(&other, dir).await;

    // A subscriber that reads nothing, with a small receive window: the
    // gateway's socket fills up (its send buffer is at most 4 MB here).
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let address = gateway.base.trim_start_matches("http://").parse().unwrap();
    let mut slow = socket.connect(address).await.unwrap();
    slow.write_all(
        format!("GET /v1/events?path={dir} HTTP/1.1\r\nHost: gateway\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();

    // 400 joins of 16 KB each: 6.4 MB of `up` events, more than fits.
    let bulky =
        |i: u16| codec::encode(&member(10_000 + i).with_metadata("blob", "x".repeat(16 * 1024)));
    let joins = (0..400u16).map(|i| {
        let other = &other;
        async move { raw_member(other, dir, &bulky(i)).await }
    });
    futures::future::join_all(joins).await;
    within("the gateway to see the 400", async {
        loop {
            let (_, body) = get_json(&gateway.url(&format!("/v1/members?path={dir}"))).await;
            if body.as_array().map_or(0, Vec::len) == 400 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;

    // Now read, applying the events as a client does: it catches up with
    // the 400 through at least one fresh `current`, having been sent far
    // fewer than 400 `up`s.
    let mut raw_bytes: Vec<u8> = Vec::new();
    let mut buffer = vec![0u8; 1 << 16];
    let mut body: Vec<u8> = Vec::new();
    let mut view = std::collections::BTreeSet::new();
    let (mut ups, mut currents) = (0, 0);
    let mut headers_done = false;
    within("the subscriber to catch up", async {
        while view.len() != 400 {
            let n = slow.read(&mut buffer).await.unwrap();
            assert!(n > 0, "the stream ended");
            raw_bytes.extend_from_slice(&buffer[..n]);
            if !headers_done {
                let Some(end) = find(&raw_bytes, b"\r\n\r\n") else {
                    continue;
                };
                raw_bytes.drain(..end + 4);
                headers_done = true;
            }
            // De-chunk what is complete (Transfer-Encoding: chunked).
            while let Some(line_end) = find(&raw_bytes, b"\r\n") {
                let size_text = String::from_utf8_lossy(&raw_bytes[..line_end]).to_string();
                let size = usize::from_str_radix(size_text.trim(), 16).unwrap();
                if raw_bytes.len() < line_end + 2 + size + 2 {
                    break;
                }
                body.extend_from_slice(&raw_bytes[line_end + 2..line_end + 2 + size]);
                raw_bytes.drain(..line_end + 2 + size + 2);
            }
            while let Some(end) = find(&body, b"\n\n") {
                let block = String::from_utf8_lossy(&body[..end]).to_string();
                body.drain(..end + 2);
                let event = block.lines().find_map(|l| l.strip_prefix("event: "));
                let data = block.lines().find_map(|l| l.strip_prefix("data: "));
                let (Some(event), Some(data)) = (event, data) else {
                    continue;
                };
                let data: Value = serde_json::from_str(data).unwrap();
                let name = |m: &Value| m["member"].as_str().unwrap().to_owned();
                match event {
                    "up" => {
                        ups += 1;
                        view.insert(name(&data));
                    }
                    "down" => {
                        view.remove(&name(&data));
                    }
                    "current" => {
                        currents += 1;
                        view = data.as_array().unwrap().iter().map(name).collect();
                    }
                    _ => {}
                }
            }
        }
    })
    .await;
    assert!(
        currents >= 2,
        "a fresh snapshot after the initial one ({currents})"
    );
    assert!(
        ups < 400,
        "a backlog of {ups} `up` events was sent instead of a snapshot"
    );
    eprintln!("caught up with {currents} snapshots and {ups} up events");
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_puts_of_one_id_leave_exactly_the_last_one() {
    let server = zookeeper();
    let connect = server.connect_string();
    let gateway = Gateway::start(&connect, None).await;
    let observer = raw(&connect).await;
    let dir = "/discovery/prod/race";
    // 20 PUTs of one id with different data, all at once, then one more.
    let racing = (0..20u16).map(|i| {
        let gateway = &gateway;
        async move {
            put(
                gateway,
                "racer",
                dir,
                &json!({"host": "10.2.0.1", "port": 1000 + i}),
            )
            .await
        }
    });
    for (status, body) in futures::future::join_all(racing).await {
        assert!([200, 201, 409].contains(&status), "{status} {body}");
    }
    let (status, last) = put(
        &gateway,
        "racer",
        dir,
        &json!({"host": "10.2.0.1", "port": 2000}),
    )
    .await;
    assert!([200, 201].contains(&status), "{status} {last}");
    // Whatever order they finished in: one member, the last data.
    within("one member with the last data", async {
        loop {
            let nodes = observer.list_children(dir).await.unwrap_or_default();
            if nodes.len() == 1 {
                let (data, _) = observer
                    .get_data(&format!("{dir}/{}", nodes[0]))
                    .await
                    .unwrap();
                let member = codec::decode(&data).unwrap().member;
                if member.service_endpoint.port == 2000 {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

// ---------------------------------------------------------------------------
// The gateway on etcd.

/// Runs a blocking testkit call (etcdctl) off the async workers.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// The keys below `prefix`, as etcdctl sees them.
fn keys_below(etcd: &testkit::Etcd, prefix: &str) -> Vec<String> {
    blocking(|| etcd_keys(etcd, prefix))
}

/// Waits until the members of `query` have these ports, in any order.
async fn wait_port_set(gateway: &Gateway, query: &str, want: &[u64]) -> Value {
    let mut want = want.to_vec();
    want.sort_unstable();
    within("the members", async {
        loop {
            let (status, body) = get_json(&gateway.url(&format!("/v1/members?{query}"))).await;
            assert_eq!(status, 200, "{body}");
            let mut got = ports(&body);
            got.sort_unstable();
            if got == want {
                return body;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

async fn delete(gateway: &Gateway, id: &str, query: &str) -> (u16, Value) {
    let r = http()
        .delete(gateway.url(&format!("/v1/instances/{id}?{query}")))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn wait_health(gateway: &Gateway, status: u16, session: &str) {
    within(&format!("/healthz {status}"), async {
        loop {
            let (now, body) = get_json(&gateway.url("/healthz")).await;
            if now == status {
                assert_eq!(body, json!({ "session": session }));
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_gateway_serves_sets_and_registers_instances_in_both_formats() {
    let mut etcd = etcd();
    let connect = format!("etcd://{}", etcd.endpoint());
    let gateway = Gateway::start_with(&connect, None, &["--connect-timeout", "3"]).await;
    let dir = "/services/users";
    let (status, health) = get_json(&gateway.url("/healthz")).await;
    assert_eq!((status, health), (200, json!({"session": "Connected"})));

    // Another client's member (no lease), in Finagle's JSON.
    let other = String::from_utf8(codec::encode(&member(7001))).unwrap();
    blocking(|| etcd.put(&format!("{dir}/member_other"), &other)).expect("put");
    let all = wait_port_set(&gateway, &format!("path={dir}"), &[7001]).await;
    assert_eq!(all[0]["member"], "member_other");
    assert_eq!(all[0]["status"], "ALIVE");

    // A Finagle instance: a member_ key on a lease of etcd's default TTL
    // (10 s, whatever ttl_secs says: the gateway keeps it alive).
    let body = json!({
        "host": "127.0.0.1", "port": 9100,
        "additional": {"admin": {"host": "127.0.0.1", "port": 9990}},
        "shard": 1, "metadata": {"lang": "python"}, "ttl_secs": 30
    });
    let (status, created) = put(&gateway, "a", dir, &body).await;
    assert_eq!(status, 201, "{created}");
    let a_key = created["znode"].as_str().expect("the key").to_owned();
    assert!(a_key.starts_with(&format!("{dir}/member_")), "{a_key}");
    let members = wait_port_set(&gateway, &format!("path={dir}"), &[7001, 9100]).await;
    let a = members
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["port"] == 9100)
        .unwrap();
    assert_eq!(a["member"], a_key.rsplit('/').next().unwrap());
    assert_eq!(a["shard"], 1);
    assert_eq!(a["metadata"], json!({"lang": "python"}));
    assert_eq!(a["additional"]["admin"]["port"], 9990);
    let stored = blocking(|| etcd.get_prefix(&a_key)).expect("get_prefix");
    assert_eq!(stored.len(), 1, "{stored:?}");
    let decoded = codec::decode(stored[0].1.as_bytes()).expect("Finagle JSON");
    assert_eq!(
        decoded.member.service_endpoint,
        Endpoint::new("127.0.0.1", 9100)
    );
    assert_eq!(blocking(|| granted_ttl(&etcd, &a_key)), 10);
    let (status, renewed) = put(&gateway, "a", dir, &body).await;
    assert_eq!(
        (status, &renewed["renewed"]),
        (200, &json!(true)),
        "{renewed}"
    );
    assert_eq!(renewed["znode"], a_key.as_str());

    // An etcd-naming instance: key PATH/HOST:PORT, etcd's naming value.
    let naming = format!("path={dir}&format=etcd-naming");
    let mut events = SseReader::open(&gateway.url(&format!("/v1/events?{naming}"))).await;
    let current = events.next().await;
    assert_eq!(current.event, "leader", "an empty set: no up first");
    assert_eq!(current.data, Value::Null);
    assert_eq!(events.next().await.event, "current");
    let health = events.next().await;
    assert_eq!(
        (health.event.as_str(), &health.data),
        (
            "health",
            &json!({"watch": "Connected", "session": "Connected"})
        )
    );
    let (status, created) = put(
        &gateway,
        "b",
        &format!("{dir}&format=etcd-naming"),
        &json!({"host": "127.0.0.1", "port": 9101, "metadata": {"zone": "eu"}}),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let b_key = format!("{dir}/127.0.0.1:9101");
    assert_eq!(created["znode"], b_key.as_str());
    let stored = blocking(|| etcd.get_prefix(&b_key)).expect("get_prefix");
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert!(
        stored[0].1.contains(r#""Addr":"127.0.0.1:9101""#),
        "{stored:?}"
    );
    let value: Value = serde_json::from_str(&stored[0].1).unwrap();
    assert_eq!(
        value,
        json!({"Op": 0, "Addr": "127.0.0.1:9101", "Metadata": {"zone": "eu"}})
    );
    let up = events.next().await;
    assert_eq!((up.event.as_str(), &up.data["port"]), ("up", &json!(9101)));
    assert_eq!(up.data["member"], "127.0.0.1:9101");
    let leader = events.next().await;
    assert_eq!(
        (leader.event.as_str(), &leader.data["port"]),
        ("leader", &json!(9101))
    );
    let members = wait_port_set(&gateway, &naming, &[9101]).await;
    assert_eq!(members[0]["metadata"], json!({"zone": "eu"}));
    let (status, leader) = get_json(&gateway.url(&format!("/v1/leader?{naming}"))).await;
    assert_eq!((status, &leader["port"]), (200, &json!(9101)), "{leader}");
    // The formats are separate sets of keys.
    wait_port_set(&gateway, &format!("path={dir}"), &[7001, 9100]).await;
    wait_port_set(
        &gateway,
        &format!("path={dir}&format=finagle"),
        &[7001, 9100],
    )
    .await;
    // The library's own etcd client agrees.
    let library = serversets::EtcdClient::connect(&etcd.endpoint())
        .await
        .unwrap();
    let path = ServerSetPath::new(dir).unwrap();
    let watch = library
        .watch_with(
            &path,
            serversets::WatchOptions::new().format(serversets::naming::Format::EtcdNaming),
        )
        .await
        .unwrap();
    let seen: Vec<Endpoint> = watch
        .current()
        .entries()
        .iter()
        .map(|e| e.endpoint.clone())
        .collect();
    assert_eq!(seen, [Endpoint::new("127.0.0.1", 9101)]);
    let (status, paths) = get_json(&gateway.url("/v1/paths")).await;
    assert_eq!((status, paths), (200, json!([dir])));

    // Bad formats: 400 everywhere, nothing registered.
    let before = keys_below(&etcd, "/");
    for route in ["members", "leader", "events"] {
        let (status, body) =
            get_json(&gateway.url(&format!("/v1/{route}?path={dir}&format=bogus"))).await;
        assert_eq!(status, 400, "{route}: {body}");
        assert!(body["error"].as_str().expect("an error").contains("bogus"));
    }
    let (status, body) = put(
        &gateway,
        "c",
        &format!("{dir}&format=zk"),
        &json!({"host": "127.0.0.1", "port": 9102}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().expect("an error").contains("\"zk\""));
    let (status, body) = delete(&gateway, "a", &format!("path={dir}&format=bogus")).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(keys_below(&etcd, "/"), before, "nothing written");

    // DELETE revokes the lease: the key is gone by the 204, long before
    // the lease's TTL (10 s) could run out.
    let (status, body) = delete(&gateway, "a", &format!("path={dir}")).await;
    assert_eq!(status, 204, "{body}");
    assert!(
        !keys_below(&etcd, &a_key).contains(&a_key),
        "revoked by the 204"
    );
    wait_port_set(&gateway, &format!("path={dir}"), &[7001]).await;
    let (status, _) = delete(&gateway, "b", &naming).await;
    assert_eq!(status, 204);
    assert!(
        !keys_below(&etcd, &b_key).contains(&b_key),
        "revoked by the 204"
    );
    let down = events.next().await;
    assert_eq!(
        (down.event.as_str(), &down.data["port"]),
        ("down", &json!(9101))
    );
    let (status, _) = delete(&gateway, "b", &naming).await;
    assert_eq!(status, 404);
    wait_port_set(&gateway, &naming, &[]).await;

    // Not renewed within ttl_secs: the gateway deletes it from etcd.
    let (status, created) = put(
        &gateway,
        "short",
        dir,
        &json!({"host": "127.0.0.1", "port": 9103, "ttl_secs": 1}),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let short_key = created["znode"].as_str().expect("the key").to_owned();
    assert!(keys_below(&etcd, dir).contains(&short_key));
    within("the expiry", async {
        while keys_below(&etcd, dir).contains(&short_key) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    wait_port_set(&gateway, &format!("path={dir}"), &[7001]).await;
    assert_eq!(keys_below(&etcd, dir), [format!("{dir}/member_other")]);

    // etcd down: /healthz says so, the last set is still served, a new
    // set or a registration is 503; etcd back: healthy again.
    blocking(|| etcd.stop());
    wait_health(&gateway, 503, "Disconnected").await;
    let (status, body) = get_json(&gateway.url(&format!("/v1/members?path={dir}"))).await;
    assert_eq!((status, ports(&body)), (200, vec![7001]), "{body}");
    let (status, body) = get_json(&gateway.url("/v1/members?path=/services/new")).await;
    assert_eq!(status, 503, "{body}");
    assert!(body["error"].is_string(), "{body}");
    let (status, body) = put(
        &gateway,
        "down",
        dir,
        &json!({"host": "127.0.0.1", "port": 9104}),
    )
    .await;
    assert_eq!(status, 503, "{body}");
    blocking(|| etcd.start_again()).expect("etcd restarts");
    wait_health(&gateway, 200, "Connected").await;
    let (status, created) = put(
        &gateway,
        "again",
        dir,
        &json!({"host": "127.0.0.1", "port": 9105}),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    wait_port_set(&gateway, &format!("path={dir}"), &[7001, 9105]).await;
    library.close().await;
}
