//! Single-node etcd: start, etcdctl helpers, stop, start again, pause.

use std::time::Instant;

use testkit::Etcd;

#[test]
fn start_put_get_stop_start_again() {
    let started = Instant::now();
    let mut etcd = Etcd::start().unwrap();
    eprintln!("etcd started in {:?}", started.elapsed());

    assert!(etcd.is_running());
    assert!(etcd.pid().is_some());
    assert_eq!(etcd.endpoint(), format!("127.0.0.1:{}", etcd.port()));
    assert_eq!(etcd.url(), format!("http://127.0.0.1:{}", etcd.port()));
    assert_eq!(etcd.addr().port(), etcd.port());
    assert_ne!(etcd.peer_port(), etcd.port());
    assert!(etcd.log_file().is_file());

    // Raw etcdctl.
    let value = r#"{"Op":0,"Addr":"10.0.0.1:8080"}"#;
    etcd.etcdctl(&["put", "/services/users/10.0.0.1:8080", value])
        .unwrap();
    let listing = etcd.etcdctl(&["get", "--prefix", "/services/"]).unwrap();
    assert_eq!(listing, format!("/services/users/10.0.0.1:8080\n{value}\n"));
    assert!(etcd.etcdctl(&["no-such-command"]).is_err());

    // Helpers.
    etcd.put("/services/users/10.0.0.2:8080", "multi\nline")
        .unwrap();
    etcd.put("/other", "-starts-with-dash").unwrap();
    assert_eq!(
        etcd.get_prefix("/services/").unwrap(),
        [
            ("/services/users/10.0.0.1:8080".to_owned(), value.to_owned()),
            (
                "/services/users/10.0.0.2:8080".to_owned(),
                "multi\nline".to_owned()
            ),
        ]
    );
    assert_eq!(etcd.get_prefix("").unwrap().len(), 3);
    assert!(etcd.get_prefix("/nothing/").unwrap().is_empty());
    assert!(etcd.delete("/other").unwrap());
    assert!(!etcd.delete("/other").unwrap());

    let revision = etcd.revision().unwrap();
    assert_eq!(revision, 5, "3 puts and 1 delete after revision 1");
    etcd.compact(revision).unwrap();
    assert!(etcd.compact(revision - 1).is_err(), "already compacted");
    let old = etcd.etcdctl(&["get", "--rev=2", "/services/users/10.0.0.1:8080"]);
    assert!(old.is_err(), "compacted revision is readable: {old:?}");

    assert_eq!(etcd.lease_count().unwrap(), 0);
    let granted = etcd.etcdctl(&["lease", "grant", "600"]).unwrap();
    assert!(granted.starts_with("lease "), "{granted}");
    assert_eq!(etcd.lease_count().unwrap(), 1);

    // Stop and start again: same port, same data.
    let port = etcd.port();
    etcd.stop();
    assert!(!etcd.is_running());
    assert!(etcd.pid().is_none());
    assert!(etcd
        .etcdctl(&["--dial-timeout=200ms", "get", "/x"])
        .is_err());
    assert!(etcd.data_dir().join("member").is_dir());
    etcd.stop(); // idempotent

    let restarted = Instant::now();
    etcd.start_again().unwrap();
    eprintln!("etcd restarted in {:?}", restarted.elapsed());
    assert!(etcd.is_running());
    assert_eq!(etcd.port(), port);
    assert_eq!(etcd.get_prefix("/services/").unwrap().len(), 2);
    assert_eq!(etcd.revision().unwrap(), revision);
    assert_eq!(etcd.lease_count().unwrap(), 1);
    etcd.start_again().unwrap(); // no-op while running

    let dir = etcd.data_dir();
    drop(etcd);
    assert!(!dir.exists(), "temporary directory removed on drop");
}

#[test]
fn pause_and_resume() {
    let etcd = Etcd::start().unwrap();
    etcd.put("k", "v").unwrap();

    etcd.pause().unwrap();
    assert!(etcd.is_running());
    let paused = Instant::now();
    let result = etcd.etcdctl(&["--command-timeout=1s", "get", "k"]);
    assert!(result.is_err(), "a paused server answered: {result:?}");
    eprintln!(
        "etcdctl against a paused etcd failed after {:?}",
        paused.elapsed()
    );

    etcd.resume().unwrap();
    assert_eq!(
        etcd.get_prefix("k").unwrap(),
        [("k".to_owned(), "v".to_owned())]
    );
    etcd.put("k", "w").unwrap();
}

#[test]
fn two_servers_get_different_ports() {
    let a = Etcd::start().unwrap();
    let b = Etcd::start().unwrap();
    let mut ports = vec![a.port(), a.peer_port(), b.port(), b.peer_port()];
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), 4, "{ports:?}");
    a.put("which", "a").unwrap();
    b.put("which", "b").unwrap();
    assert_eq!(a.get_prefix("which").unwrap()[0].1, "a");
    assert_eq!(b.get_prefix("which").unwrap()[0].1, "b");
}
