//! TLS to ZooKeeper's secure client port (feature `tls`), against a real
//! ZooKeeper with a freshly made CA.
#![cfg(feature = "tls")]

mod common;

use std::time::{Duration, Instant};

use common::*;
use serversets::{Client, Error, Health, Tls};
use testkit::{ClientAuth, TestCerts, ZooKeeper};

/// The connect timeout of clients expected to fail.
const FAILING_CONNECT_TIMEOUT: Duration = Duration::from_secs(4);

/// Extra time allowed past the connect timeout before a failure counts as
/// a hang.
const SLACK: Duration = Duration::from_secs(2);

fn tls_zookeeper(certs: &TestCerts, client_auth: ClientAuth) -> ZooKeeper {
    init_tracing();
    ZooKeeper::start_tls(certs, client_auth).expect("start ZooKeeper with TLS")
}

fn secure(server: &ZooKeeper) -> String {
    server.secure_connect_string().expect("a TLS port")
}

async fn tls_client(connect: &str, tls: Tls) -> Client {
    Client::builder(connect)
        .session_timeout(Duration::from_secs(6))
        .connect_timeout(Duration::from_secs(30))
        .tls(tls)
        .connect()
        .await
        .expect("connect over TLS")
}

/// Connects with settings that must fail; checks that it fails with
/// `Error::Connect` within the connect timeout and returns the reason.
async fn failing_connect(connect: &str, tls: Option<Tls>) -> String {
    let mut builder = Client::builder(connect)
        .session_timeout(Duration::from_secs(6))
        .connect_timeout(FAILING_CONNECT_TIMEOUT);
    if let Some(tls) = tls {
        builder = builder.tls(tls);
    }
    let started = Instant::now();
    let result = within("a failing connect", builder.connect()).await;
    let elapsed = started.elapsed();
    assert!(
        elapsed < FAILING_CONNECT_TIMEOUT + SLACK,
        "failing took {elapsed:?}"
    );
    match result {
        Err(Error::Connect {
            address, reason, ..
        }) => {
            assert_eq!(address, connect);
            reason
        }
        Err(other) => panic!("expected a connect error, got {other}"),
        Ok(_) => panic!("connected to {connect}, which must fail"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_and_watches_over_tls() {
    let certs = TestCerts::generate().unwrap();
    let server = tls_zookeeper(&certs, ClientAuth::None);
    let connect = secure(&server);
    let tls = Tls::new().ca_pem(&certs.ca_pem);
    let set = path("/discovery/prod/secure");

    let publisher = tls_client(&connect, tls.clone()).await;
    let registration = publisher.register(&set, member(7001)).await.unwrap();
    // Another process following the set, over TLS with a chroot'd connect
    // string naming the host by name.
    let localhost = connect.replace("127.0.0.1", "localhost");
    let follower = tls_client(&format!("{localhost}/discovery"), tls).await;
    let watch = follower.watch(&path("/prod/secure")).await.unwrap();
    assert_eq!(ports(&watch.current()), [7001]);

    // Plaintext clients of the same server see the same member.
    let plain = raw(&server.connect_string()).await;
    assert_eq!(member_nodes(&plain, set.as_str()).await.len(), 1);

    let second = publisher.register(&set, member(7002)).await.unwrap();
    wait_set(&watch, "second member over TLS", |s| {
        ports(s) == [7001, 7002]
    })
    .await;
    registration.close().await;
    wait_set(&watch, "first member gone", |s| ports(s) == [7002]).await;
    drop(second);
    publisher.close().await;
    wait_set(&watch, "publisher closed", |s| s.is_empty()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_sessions_survive_a_server_restart() {
    let certs = TestCerts::generate().unwrap();
    let mut server = tls_zookeeper(&certs, ClientAuth::None);
    let connect = secure(&server);
    let client = tls_client(&connect, Tls::new().ca_pem(&certs.ca_pem)).await;
    let set = path("/discovery/prod/restart");
    let _registration = client.register(&set, member(7101)).await.unwrap();
    let watch = client.watch(&set).await.unwrap();
    let session = client.session_id();

    let mut health = client.health_watcher();
    server.stop();
    within("disconnected", health.wait_for(Health::Disconnected)).await;
    server.start_again().unwrap();
    within("reconnected over TLS", health.wait_for(Health::Connected)).await;
    assert_eq!(client.session_id(), session, "the session survives");
    let added = raw(&server.connect_string()).await;
    raw_member(
        &added,
        set.as_str(),
        &serversets::codec::encode(&member(7102)),
    )
    .await;
    wait_set(&watch, "a member added after the restart", |s| {
        ports(s) == [7101, 7102]
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_ca_fails_clearly_within_the_connect_timeout() {
    let certs = TestCerts::generate().unwrap();
    let server = tls_zookeeper(&certs, ClientAuth::None);
    let connect = secure(&server);
    let other_ca = TestCerts::generate().unwrap().ca_pem;

    let reason = failing_connect(&connect, Some(Tls::new().ca_pem(other_ca))).await;
    assert!(
        reason.contains(&format!("TLS handshake with {connect} failed")),
        "{reason}"
    );
    assert!(reason.contains("invalid peer certificate"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plaintext_client_on_the_secure_port_fails_within_the_connect_timeout() {
    let certs = TestCerts::generate().unwrap();
    let server = tls_zookeeper(&certs, ClientAuth::None);
    let reason = failing_connect(&secure(&server), None).await;
    assert!(!reason.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_needs_a_client_certificate_from_the_ca() {
    let certs = TestCerts::generate().unwrap();
    let server = tls_zookeeper(&certs, ClientAuth::Need);
    let connect = secure(&server);

    // Without a client certificate, and with one from another CA.
    let reason = failing_connect(&connect, Some(Tls::new().ca_pem(&certs.ca_pem))).await;
    assert!(
        reason.contains(&format!("TLS handshake with {connect} failed")),
        "{reason}"
    );
    let stranger = TestCerts::generate().unwrap();
    let reason = failing_connect(
        &connect,
        Some(
            Tls::new()
                .ca_pem(&certs.ca_pem)
                .identity(&stranger.client_cert_pem, &stranger.client_key_pem),
        ),
    )
    .await;
    assert!(
        reason.contains(&format!("TLS handshake with {connect} failed")),
        "{reason}"
    );

    // With the CA's client certificate.
    let tls = Tls::new()
        .ca_pem(&certs.ca_pem)
        .identity(&certs.client_cert_pem, &certs.client_key_pem);
    let client = tls_client(&connect, tls).await;
    let set = path("/discovery/prod/mutual");
    let _registration = client.register(&set, member(7201)).await.unwrap();
    let watch = client.watch(&set).await.unwrap();
    assert_eq!(ports(&watch.current()), [7201]);
}

#[tokio::test]
async fn unusable_tls_settings_are_invalid_config() {
    let cases = [
        ("127.0.0.1:1", Some(Tls::new()), "no CA certificate"),
        (
            "127.0.0.1:1",
            Some(Tls::new().ca_pem("not a certificate")),
            "holds no certificate",
        ),
        (
            "127.0.0.1:1",
            Some(
                Tls::new()
                    .ca_pem(TestCerts::generate().unwrap().ca_pem)
                    .identity("", ""),
            ),
            "client certificate",
        ),
        ("tcp+tls://127.0.0.1:1", None, "no TLS settings"),
    ];
    for (connect, tls, expected) in cases {
        let mut builder = Client::builder(connect);
        if let Some(tls) = tls {
            builder = builder.tls(tls);
        }
        match builder.connect().await {
            Err(Error::InvalidConfig(message)) => {
                assert!(message.contains(expected), "{message}")
            }
            Err(other) => panic!("expected InvalidConfig, got {other}"),
            Ok(_) => panic!("connected with unusable settings"),
        }
    }
}
