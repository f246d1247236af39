use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use futures::FutureExt;
use serversets::fixed::{parse_list, FixedSet};
use tower::balance::p2c::Balance;
use tower::load::{CompleteOnResponse, PeakEwmaDiscover, PendingRequestsDiscover};
use tower::{service_fn, Service, ServiceExt};

use super::*;

/// A change as something comparable: `+key value` or `-key`.
fn show<S: fmt::Display>(change: Change<String, S>) -> String {
    match change {
        Change::Insert(key, service) => format!("+{key} {service}"),
        Change::Remove(key) => format!("-{key}"),
    }
}

/// Everything the stream has ready now, without waiting.
fn ready<S: fmt::Display>(discovery: &mut Discovery<S>) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(next) = discovery.next().now_or_never() {
        match next {
            Some(Ok(change)) => out.push(show(change)),
            Some(Err(never)) => match never {},
            None => {
                out.push("end".to_owned());
                break;
            }
        }
    }
    out
}

/// A member's port and weight, as the "service" built for it.
fn port_and_weight(entry: &Entry) -> String {
    format!("{}@{}", entry.endpoint.port, entry.weight)
}

#[test]
fn inserts_the_current_set_first_and_lazily() {
    let set = FixedSet::parse("a:1,b:2,c:3").unwrap();
    let built = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&built);
    let mut discovery = Discovery::new(&set, move |entry| {
        counter.fetch_add(1, Ordering::SeqCst);
        port_and_weight(entry)
    });
    assert_eq!(
        built.load(Ordering::SeqCst),
        0,
        "nothing built before a poll"
    );
    assert_eq!(ready(&mut discovery), ["+a:1 1@1", "+b:2 2@1", "+c:3 3@1"]);
    assert_eq!(built.load(Ordering::SeqCst), 3);
    let mut keys: Vec<_> = discovery.keys().collect();
    keys.sort();
    assert_eq!(keys, ["a:1", "b:2", "c:3"]);
    assert!(!discovery.is_terminated());
}

#[test]
fn an_empty_set_yields_nothing_until_it_fills() {
    let set = FixedSet::new();
    let mut discovery = Discovery::new(&set, port_and_weight);
    assert!(ready(&mut discovery).is_empty());
    set.replace_endpoints(["h:7".parse().unwrap()]);
    assert_eq!(ready(&mut discovery), ["+h:7 7@1"]);
}

#[test]
fn removes_then_inserts_and_reweights_as_remove_insert() {
    let set = FixedSet::parse("a:1,b:2,c:3").unwrap();
    let mut discovery = Discovery::new(&set, port_and_weight);
    assert_eq!(ready(&mut discovery).len(), 3);

    // a leaves, c is re-weighted, d joins.
    set.replace(parse_list("b:2,c:3:2,d:4").unwrap());
    assert_eq!(
        ready(&mut discovery),
        ["-a:1", "-c:3", "+c:3 3@2", "+d:4 4@1"]
    );
    // Nothing more until the set changes again.
    assert!(ready(&mut discovery).is_empty());

    set.replace(parse_list("d:4").unwrap());
    assert_eq!(ready(&mut discovery), ["-b:2", "-c:3"]);
}

#[test]
fn changes_made_before_a_poll_are_combined() {
    let set = FixedSet::parse("a:1").unwrap();
    let mut discovery = Discovery::new(&set, port_and_weight);
    // The current set when the stream was made is what it inserts first,
    // then the combined change: b came and went, never seen.
    set.replace(parse_list("a:1,b:2").unwrap());
    set.replace(parse_list("c:3").unwrap());
    assert_eq!(ready(&mut discovery), ["+a:1 1@1", "-a:1", "+c:3 3@1"]);
}

#[test]
fn filter_map_leaves_entries_out_and_never_removes_them() {
    let set = FixedSet::parse("a:1,b:2,c:3").unwrap();
    // Only odd ports with weight 1.
    let mut discovery = Discovery::filter_map(&set, |entry| {
        (entry.endpoint.port % 2 == 1 && entry.weight == 1.0).then(|| port_and_weight(entry))
    });
    assert_eq!(ready(&mut discovery), ["+a:1 1@1", "+c:3 3@1"]);
    // b (never inserted) leaves: no remove. c gets weight 2: it is left out
    // now, so only its remove.
    set.replace(parse_list("a:1,c:3:2,e:5").unwrap());
    assert_eq!(ready(&mut discovery), ["-c:3", "+e:5 5@1"]);
}

#[test]
fn ends_when_the_source_is_gone_and_stays_ended() {
    let set = FixedSet::parse("a:1").unwrap();
    let mut discovery = Discovery::new(&set, port_and_weight);
    drop(set);
    // The set as it was is still inserted, then the stream ends.
    assert_eq!(ready(&mut discovery), ["+a:1 1@1", "end"]);
    assert!(discovery.is_terminated());
    assert_eq!(ready(&mut discovery), ["end"], "fused");
}

#[tokio::test]
async fn forwards_into_a_channel_until_the_source_ends() {
    let set = FixedSet::parse("a:1,b:2,c:3").unwrap();
    // Capacity 1: the forwarder waits for room.
    let (sender, mut receiver) = tokio::sync::mpsc::channel(1);
    let task = tokio::spawn(Discovery::new(&set, port_and_weight).forward(sender));
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(show(receiver.recv().await.unwrap()));
    }
    assert_eq!(seen, ["+a:1 1@1", "+b:2 2@1", "+c:3 3@1"]);

    set.replace(parse_list("b:2,d:4").unwrap());
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(show(receiver.recv().await.unwrap()));
    }
    assert_eq!(seen, ["-a:1", "-c:3", "+d:4 4@1"]);

    drop(set);
    assert_eq!(task.await.unwrap(), Stopped::SourceEnded);
    assert!(receiver.recv().await.is_none(), "the sender is dropped");
}

#[tokio::test]
async fn forwarding_stops_when_the_receiver_is_dropped_even_if_idle() {
    let set = FixedSet::parse("a:1").unwrap();
    let (sender, mut receiver) = tokio::sync::mpsc::channel(8);
    let task = tokio::spawn(Discovery::new(&set, port_and_weight).forward(sender));
    assert_eq!(show(receiver.recv().await.unwrap()), "+a:1 1@1");
    // The set does not change: the forwarder notices the drop by itself.
    drop(receiver);
    let stopped = tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("the forwarder stops")
        .unwrap();
    assert_eq!(stopped, Stopped::ReceiverDropped);
}

#[tokio::test]
async fn forward_with_converts_and_forward_takes_any_try_stream() {
    #[derive(Debug, PartialEq)]
    enum Mine {
        Up(String, u16),
        Down(String),
    }
    let set = FixedSet::parse("a:1,b:2").unwrap();
    let (sender, mut receiver) = tokio::sync::mpsc::channel(8);
    let discovery = Discovery::new(&set, |entry| entry.endpoint.port);
    let task = tokio::spawn(discovery.forward_with(sender, |change| match change {
        Change::Insert(key, port) => Mine::Up(key, port),
        Change::Remove(key) => Mine::Down(key),
    }));
    assert_eq!(receiver.recv().await, Some(Mine::Up("a:1".into(), 1)));
    assert_eq!(receiver.recv().await, Some(Mine::Up("b:2".into(), 2)));
    set.replace_endpoints(["b:2".parse().unwrap()]);
    assert_eq!(receiver.recv().await, Some(Mine::Down("a:1".into())));
    drop(set);
    assert_eq!(task.await.unwrap(), Stopped::SourceEnded);

    // The free function forwards any stream of results, and returns its
    // error.
    let (sender, mut receiver) = tokio::sync::mpsc::channel(8);
    let items = vec![
        Ok(Change::Insert("k", 1)),
        Ok(Change::Remove("k")),
        Err("broken"),
        Ok(Change::Insert("never", 2)),
    ];
    let result = forward(futures::stream::iter(items), sender).await;
    assert_eq!(result, Err("broken"));
    assert!(matches!(
        receiver.recv().await,
        Some(Change::Insert("k", 1))
    ));
    assert!(matches!(receiver.recv().await, Some(Change::Remove("k"))));
    assert!(receiver.recv().await.is_none());
}

/// Calls each member's service received, by port.
type Calls = Arc<Mutex<HashMap<u16, usize>>>;

fn calls_of(calls: &Calls) -> HashMap<u16, usize> {
    calls.lock().unwrap().clone()
}

#[tokio::test]
async fn a_p2c_balancer_spreads_calls_and_follows_the_set() {
    let set = FixedSet::parse("10.0.0.1:1,10.0.0.2:2,10.0.0.3:3").unwrap();
    let calls: Calls = Arc::default();
    let counter = Arc::clone(&calls);
    // One tower service per member, answering with its port.
    let discovery = Discovery::new(&set, move |entry| {
        let port = entry.endpoint.port;
        let calls = Arc::clone(&counter);
        service_fn(move |request: u32| {
            *calls.lock().unwrap().entry(port).or_default() += 1;
            async move { Ok::<_, Infallible>((port, request)) }
        })
    });
    let mut balance = Balance::new(PendingRequestsDiscover::new(
        discovery,
        CompleteOnResponse::default(),
    ));

    async fn call_n<B>(balance: &mut B, n: u32) -> HashMap<u16, usize>
    where
        B: Service<u32, Response = (u16, u32)>,
        B::Error: fmt::Debug,
    {
        let mut answers = HashMap::new();
        for i in 0..n {
            let (port, echoed) = balance.ready().await.unwrap().call(i).await.unwrap();
            assert_eq!(echoed, i);
            *answers.entry(port).or_default() += 1;
        }
        answers
    }

    // Three members: each gets a fair share (about 100 of 300).
    let answers = call_n(&mut balance, 300).await;
    assert_eq!(answers, calls_of(&calls), "every answer is a served call");
    for port in [1, 2, 3] {
        assert!(
            answers.get(&port).copied().unwrap_or(0) >= 30,
            "{answers:?}"
        );
    }

    // Member 2 leaves, member 4 joins: 2 gets no more calls, 4 gets some.
    set.replace(parse_list("10.0.0.1:1,10.0.0.3:3,10.0.0.4:4").unwrap());
    let before = calls_of(&calls);
    let answers = call_n(&mut balance, 300).await;
    assert_eq!(answers.get(&2), None, "{answers:?}");
    assert_eq!(calls_of(&calls)[&2], before[&2]);
    for port in [1, 3, 4] {
        assert!(
            answers.get(&port).copied().unwrap_or(0) >= 30,
            "{answers:?}"
        );
    }

    // Down to one member: it gets everything.
    set.replace(parse_list("10.0.0.4:4").unwrap());
    let answers = call_n(&mut balance, 50).await;
    assert_eq!(answers, HashMap::from([(4, 50)]));
}

#[tokio::test]
async fn pending_requests_steer_calls_away_from_a_stuck_member() {
    let set = FixedSet::parse("10.0.0.1:1,10.0.0.2:2,10.0.0.3:3").unwrap();
    let calls: Calls = Arc::default();
    let counter = Arc::clone(&calls);
    // Member 1 never answers; the others answer at once.
    let discovery = Discovery::new(&set, move |entry| {
        let port = entry.endpoint.port;
        let calls = Arc::clone(&counter);
        service_fn(move |_request: ()| {
            *calls.lock().unwrap().entry(port).or_default() += 1;
            async move {
                if port == 1 {
                    futures::future::pending::<()>().await;
                }
                Ok::<_, Infallible>(port)
            }
        })
    });
    let mut balance = Balance::new(PendingRequestsDiscover::new(
        discovery,
        CompleteOnResponse::default(),
    ));
    let mut stuck = Vec::new();
    for _ in 0..100 {
        let mut response = Box::pin(balance.ready().await.unwrap().call(()));
        match response.as_mut().now_or_never() {
            Some(answer) => assert_ne!(answer.unwrap(), 1),
            // Still pending: its member now has one pending request.
            None => stuck.push(response),
        }
    }
    // Once member 1 holds a pending request it is never picked again: the
    // other member of each random pair has fewer.
    let calls = calls_of(&calls);
    assert_eq!(calls.get(&1), Some(&1), "{calls:?}");
    assert_eq!(stuck.len(), 1);
    assert_eq!(calls.values().sum::<usize>(), 100);
}

#[tokio::test]
async fn works_under_peak_ewma_too() {
    let set = FixedSet::parse("10.0.0.1:1,10.0.0.2:2").unwrap();
    let discovery = Discovery::new(&set, |entry| {
        let port = entry.endpoint.port;
        service_fn(move |_request: ()| async move { Ok::<_, Infallible>(port) })
    });
    let mut balance = Balance::new(PeakEwmaDiscover::new(
        discovery,
        Duration::from_millis(10),
        Duration::from_secs(1),
        CompleteOnResponse::default(),
    ));
    let mut seen = HashMap::<u16, usize>::new();
    for _ in 0..100 {
        let port = balance.ready().await.unwrap().call(()).await.unwrap();
        *seen.entry(port).or_default() += 1;
    }
    // Answers measured in microseconds make a member look far better than
    // the other's default 10 ms estimate: it may take every call. Keep only
    // the member that got the fewest; the balancer follows.
    let fewest = if seen.get(&1).copied().unwrap_or(0) <= seen.get(&2).copied().unwrap_or(0) {
        1
    } else {
        2
    };
    set.replace_endpoints([format!("10.0.0.{fewest}:{fewest}").parse().unwrap()]);
    for _ in 0..20 {
        assert_eq!(
            balance.ready().await.unwrap().call(()).await.unwrap(),
            fewest
        );
    }
}
