//! memcached: start, protocol helpers, stop, start again.

use std::io;
use std::path::Path;
use std::time::Instant;

use testkit::Memcached;

#[test]
fn start_set_get_stop_start_again() {
    let started = Instant::now();
    let mut mc = Memcached::start().unwrap();
    eprintln!("memcached started in {:?}", started.elapsed());

    assert!(mc.is_running());
    let port = mc.port();
    assert_eq!(mc.endpoint(), format!("127.0.0.1:{port}"));
    assert_eq!(mc.addr().to_string(), mc.endpoint());

    assert_eq!(mc.get("missing").unwrap(), None);
    mc.set("greeting", b"hello\r\nworld").unwrap();
    assert_eq!(
        mc.get("greeting").unwrap().as_deref(),
        Some(&b"hello\r\nworld"[..])
    );
    mc.set("greeting", b"").unwrap();
    assert_eq!(mc.get("greeting").unwrap().as_deref(), Some(&b""[..]));
    assert_eq!(mc.curr_items().unwrap(), 1);

    // More keys than one multi-key get carries; every third one is stored.
    let keys: Vec<String> = (0..250).map(|i| format!("key:{i}")).collect();
    for key in keys.iter().step_by(3) {
        mc.set(key, key.as_bytes()).unwrap();
    }
    let key_refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let present = mc.keys_present(&key_refs).unwrap();
    let expected: Vec<String> = keys.iter().step_by(3).cloned().collect();
    assert_eq!(present, expected);
    assert_eq!(mc.curr_items().unwrap(), 1 + expected.len() as u64);
    assert!(mc.keys_present(&[]).unwrap().is_empty());

    let stats = mc.stats().unwrap();
    let pid: u32 = stats["pid"].parse().unwrap();

    mc.flush_all().unwrap();
    assert_eq!(mc.get("greeting").unwrap(), None);
    assert!(mc.keys_present(&key_refs).unwrap().is_empty());

    let err = mc.get("bad key").unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    assert!(mc.set(&"k".repeat(251), b"x").is_err());

    mc.set("before-stop", b"1").unwrap();
    mc.stop();
    assert!(!mc.is_running());
    assert!(mc.get("before-stop").is_err());
    assert!(!Path::new(&format!("/proc/{pid}")).exists());
    mc.stop(); // idempotent

    mc.start_again().unwrap();
    assert!(mc.is_running());
    assert_eq!(mc.port(), port);
    assert_eq!(mc.get("before-stop").unwrap(), None, "cache starts empty");
    mc.set("after", b"2").unwrap();
    assert_eq!(mc.get("after").unwrap().as_deref(), Some(&b"2"[..]));
    mc.start_again().unwrap(); // no-op while running

    let pid: u32 = mc.stats().unwrap()["pid"].parse().unwrap();
    drop(mc);
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "process killed on drop"
    );
}

#[test]
fn two_servers_are_independent() {
    let a = Memcached::start().unwrap();
    let b = Memcached::start().unwrap();
    assert_ne!(a.port(), b.port());
    a.set("only-a", b"a").unwrap();
    assert_eq!(a.keys_present(&["only-a"]).unwrap(), vec!["only-a"]);
    assert!(b.keys_present(&["only-a"]).unwrap().is_empty());
}
