//! Three-server ensemble: quorum, leader, failover, rejoin.

use std::time::{Duration, Instant};

use testkit::Ensemble;

#[test]
fn three_node_ensemble_elects_new_leader() {
    let started = Instant::now();
    let mut ensemble = Ensemble::start(3).unwrap();
    eprintln!("3-node ensemble started in {:?}", started.elapsed());

    assert_eq!(ensemble.len(), 3);
    let connect = ensemble.connect_string();
    assert_eq!(connect.split(',').count(), 3, "{connect}");
    for i in 0..3 {
        assert!(connect.contains(&ensemble.server(i).connect_string()));
        assert_eq!(ensemble.server(i).four_letter("ruok").unwrap(), "imok");
    }

    let leader = ensemble.leader_index().expect("a leader");
    let followers = (0..3)
        .filter(|&i| ensemble.server(i).mode().as_deref() == Some("follower"))
        .count();
    assert_eq!(followers, 2);

    ensemble.stop(leader);
    assert!(!ensemble.is_running(leader));
    let failover = Instant::now();
    let new_leader = ensemble.wait_for_leader(Duration::from_secs(30)).unwrap();
    eprintln!("new leader elected in {:?}", failover.elapsed());
    assert_ne!(new_leader, leader);
    assert_eq!(ensemble.leader_index(), Some(new_leader));

    let rejoin = Instant::now();
    ensemble.start_again(leader).unwrap();
    eprintln!("old leader rejoined in {:?}", rejoin.elapsed());
    assert_eq!(ensemble.server(leader).mode().as_deref(), Some("follower"));
    assert_eq!(ensemble.leader_index(), Some(new_leader));
}

#[test]
fn whole_ensemble_restarts() {
    let mut ensemble = Ensemble::start(3).unwrap();
    for i in 0..3 {
        ensemble.stop(i);
    }
    assert_eq!(ensemble.leader_index(), None);
    assert!(ensemble
        .wait_for_leader(Duration::from_millis(300))
        .is_err());
    // The first restarted server cannot serve alone; the second makes a quorum.
    ensemble.start_again(0).unwrap();
    assert!(ensemble.is_running(0));
    ensemble.start_again(1).unwrap();
    ensemble.start_again(2).unwrap();
    let leader = ensemble.wait_for_leader(Duration::from_secs(30)).unwrap();
    assert_eq!(ensemble.leader_index(), Some(leader));
}

#[test]
fn single_server_ensemble_is_standalone() {
    let ensemble = Ensemble::start(1).unwrap();
    assert_eq!(
        ensemble.connect_string(),
        ensemble.server(0).connect_string()
    );
    assert_eq!(ensemble.leader_index(), Some(0));
    assert_eq!(ensemble.server(0).mode().as_deref(), Some("standalone"));
}

#[test]
fn zero_servers_is_an_error() {
    assert!(Ensemble::start(0).is_err());
}
