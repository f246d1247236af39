//! Standalone ZooKeeper: start, four-letter words, stop, start again.

use std::time::Instant;

use testkit::ZooKeeper;

#[test]
fn standalone_start_stop_start_again() {
    let started = Instant::now();
    let mut zk = ZooKeeper::start().unwrap();
    eprintln!("standalone ZooKeeper started in {:?}", started.elapsed());

    assert!(zk.is_running());
    assert_eq!(zk.connect_string(), format!("127.0.0.1:{}", zk.port()));
    assert_eq!(zk.four_letter("ruok").unwrap(), "imok");
    assert_eq!(zk.mode().as_deref(), Some("standalone"));
    let mntr = zk.four_letter("mntr").unwrap();
    assert!(mntr.contains("zk_server_state\tstandalone"), "{mntr}");
    assert!(zk.four_letter("cons").is_ok());
    assert!(zk.four_letter("bad").is_err());
    assert!(zk.log_file().is_file());

    let port = zk.port();
    zk.stop();
    assert!(!zk.is_running());
    assert!(zk.four_letter("ruok").is_err());
    assert!(zk.data_dir().join("version-2").is_dir());
    zk.stop(); // idempotent

    let restarted = Instant::now();
    zk.start_again().unwrap();
    eprintln!(
        "standalone ZooKeeper restarted in {:?}",
        restarted.elapsed()
    );
    assert!(zk.is_running());
    assert_eq!(zk.port(), port);
    assert_eq!(zk.four_letter("ruok").unwrap(), "imok");
    zk.start_again().unwrap(); // no-op while running

    let dir = zk.data_dir();
    drop(zk);
    assert!(!dir.exists(), "temporary directory removed on drop");
}

#[test]
fn two_servers_get_different_ports() {
    let a = ZooKeeper::start().unwrap();
    let b = ZooKeeper::start().unwrap();
    assert_ne!(a.port(), b.port());
    assert_eq!(a.four_letter("ruok").unwrap(), "imok");
    assert_eq!(b.four_letter("ruok").unwrap(), "imok");
}

#[test]
fn drop_kills_server_after_panic() {
    let port = std::sync::Mutex::new(0);
    let result = std::panic::catch_unwind(|| {
        let zk = ZooKeeper::start().unwrap();
        *port.lock().unwrap() = zk.port();
        // Unwinds like a failing test, without printing a panic message.
        std::panic::resume_unwind(Box::new("test failure while the server runs"));
    });
    assert!(result.is_err());
    let port = *port.lock().unwrap();
    assert_ne!(port, 0);
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    assert!(testkit::four_letter_word(addr, "ruok").is_err());
}

/// Minimal ZooKeeper handshake (jute `ConnectRequest`/`ConnectResponse`):
/// returns (negotiated timeout ms, session id, password).
fn handshake(zk: &ZooKeeper, session_id: i64, password: &[u8]) -> (i32, i64, Vec<u8>) {
    use std::io::{Read, Write};
    let mut body = Vec::new();
    body.extend_from_slice(&0i32.to_be_bytes()); // protocolVersion
    body.extend_from_slice(&0i64.to_be_bytes()); // lastZxidSeen
    body.extend_from_slice(&10_000i32.to_be_bytes()); // timeOut
    body.extend_from_slice(&session_id.to_be_bytes());
    body.extend_from_slice(&(password.len() as i32).to_be_bytes());
    body.extend_from_slice(password);
    body.push(0); // readOnly
    let mut stream = std::net::TcpStream::connect(zk.addr()).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(&(body.len() as i32).to_be_bytes())
        .unwrap();
    stream.write_all(&body).unwrap();
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).unwrap();
    let mut reply = vec![0u8; i32::from_be_bytes(len) as usize];
    stream.read_exact(&mut reply).unwrap();
    let int = |at: usize| i32::from_be_bytes(reply[at..at + 4].try_into().unwrap());
    let timeout = int(4);
    let session = i64::from_be_bytes(reply[8..16].try_into().unwrap());
    let password_len = int(16) as usize;
    (timeout, session, reply[20..20 + password_len].to_vec())
}

#[test]
fn session_survives_a_short_restart() {
    let mut zk = ZooKeeper::start().unwrap();
    let (timeout, session, password) = handshake(&zk, 0, &[0; 16]);
    assert_eq!(timeout, 10_000);
    assert_ne!(session, 0);

    zk.stop();
    zk.start_again().unwrap();

    let (timeout, resumed, _) = handshake(&zk, session, &password);
    assert_eq!(resumed, session);
    assert!(timeout > 0, "session expired across the restart");

    // A made-up session is rejected (timeout 0), so the check above is real.
    let (timeout, _, _) = handshake(&zk, session + 1, &password);
    assert_eq!(timeout, 0);
}
