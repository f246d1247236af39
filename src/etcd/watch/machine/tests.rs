//! The machine against a model of etcd: random puts (good and bad
//! values, inside and outside the prefix, deeper keys), deletes,
//! re-creations, events lost and full resyncs. After every step the
//! published set must equal a set built afresh from the truth, and every
//! published change must lead from the previous snapshot to the next.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::FutureExt;
use proptest::prelude::*;
use tokio::time::Instant;

use super::*;
use crate::format::endpoint::Endpoint;
use crate::set::options::WatchOptions;
use crate::set::publisher::Publisher;
use crate::set::view::View;

/// What etcd holds: key → (value, create revision, mod revision).
#[derive(Default)]
struct Store {
    keys: BTreeMap<String, (Vec<u8>, i64, i64)>,
    revision: i64,
}

impl Store {
    fn put(&mut self, key: &str, value: Vec<u8>) -> Input {
        self.revision += 1;
        let create = self.keys.get(key).map_or(self.revision, |k| k.1);
        self.keys
            .insert(key.to_owned(), (value.clone(), create, self.revision));
        Input::Put(Kv {
            key: key.as_bytes().to_vec(),
            value,
            create_revision: create,
            mod_revision: self.revision,
        })
    }

    fn delete(&mut self, key: &str) -> Option<Input> {
        self.keys.remove(key)?;
        self.revision += 1;
        Some(Input::Deleted {
            key: key.as_bytes().to_vec(),
            revision: self.revision,
        })
    }

    fn load(&self, prefix: &str) -> Input {
        Input::Loaded {
            revision: self.revision,
            kvs: self
                .keys
                .iter()
                .filter(|(k, _)| k.starts_with(prefix))
                .map(|(k, (v, c, m))| Kv {
                    key: k.as_bytes().to_vec(),
                    value: v.clone(),
                    create_revision: *c,
                    mod_revision: *m,
                })
                .collect(),
        }
    }
}

#[derive(Debug, Clone)]
enum Step {
    /// Publish what the inputs since the last flush changed (one watch
    /// response: several events at once).
    Flush,
    Put {
        key: u8,
        port: u16,
        bad: bool,
    },
    Delete {
        key: u8,
    },
    Outside {
        port: u16,
    },
    Lose,
    Resync,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => Just(Step::Flush),
        4 => (0u8..8, 1u16..5, prop::bool::weighted(0.15))
            .prop_map(|(key, port, bad)| Step::Put { key, port, bad }),
        3 => (0u8..8).prop_map(|key| Step::Delete { key }),
        1 => (1u16..5).prop_map(|port| Step::Outside { port }),
        1 => Just(Step::Lose),
        1 => Just(Step::Resync),
    ]
}

/// What a step is, for deciding whether it ends a batch.
enum Kind {
    Flush,
    Resync,
    Other,
}

fn key(format: Format, n: u8) -> String {
    match format {
        Format::Finagle => format!("/s/member_{n:016x}"),
        Format::EtcdNaming => format!("/s/10.0.0.{n}:80"),
    }
}

fn value(format: Format, n: u8, port: u16, bad: bool) -> Vec<u8> {
    if bad {
        return b"{not json".to_vec();
    }
    let host = match format {
        Format::Finagle => "h".to_owned(),
        Format::EtcdNaming => format!("10.0.0.{n}"),
    };
    let port = if format == Format::EtcdNaming {
        80
    } else {
        port
    };
    let member = Member::new(Endpoint::new(host, port)).with_metadata("p", port.to_string());
    format.encode(&member)
}

/// (name, sequence, endpoint) of what a snapshot serves.
fn served(snapshot: &crate::set::snapshot::Snapshot) -> Vec<(String, Option<u64>, String)> {
    snapshot
        .iter()
        .map(|e| (e.name.clone(), e.sequence, e.endpoint.to_string()))
        .collect()
}

fn check(format: Format, steps: Vec<Step>) {
    let mut store = Store::default();
    let mut machine = Machine::new("/s/".into(), format);
    let publisher = Arc::new(Publisher::new());
    let mut view = View::new(WatchOptions::new(), Arc::clone(&publisher));
    view.rebuild(&machine, Instant::now());
    let mut changes = publisher.subscribe();
    let mut previous = served(&publisher.current());
    let mut lost = false;
    for step in steps {
        let step_kind = match step {
            Step::Flush => Kind::Flush,
            Step::Resync => Kind::Resync,
            _ => Kind::Other,
        };
        let input = match step {
            Step::Put { key: n, port, bad } => {
                Some(store.put(&key(format, n), value(format, n, port, bad)))
            }
            Step::Delete { key: n } => store.delete(&key(format, n)),
            Step::Outside { port } => {
                // Beside the prefix (`/s2/`) and below a member.
                store.put("/s2/member_0000000000000001", value(format, 1, port, false));
                Some(store.put(
                    &format!("{}/x", key(format, 1)),
                    value(format, 1, port, false),
                ))
            }
            Step::Lose => {
                lost = true;
                None
            }
            Step::Resync => {
                lost = false;
                Some(store.load("/s/"))
            }
            Step::Flush => None,
        };
        let flush = matches!(step_kind, Kind::Flush | Kind::Resync);
        if let Some(input) = input {
            if !lost || matches!(input, Input::Loaded { .. }) {
                machine.handle(input);
            }
        }
        if !flush {
            continue;
        }
        let touched = machine.take_touched();
        view.apply(touched.iter().map(String::as_str), &machine, Instant::now());
        machine.settle();
        // Deltas lead from one snapshot to the next.
        while let Some(Some(change)) = changes.next().now_or_never() {
            let mut added: Vec<&str> = change.added.iter().map(|e| e.name.as_str()).collect();
            added.sort_unstable();
            let before = added.len();
            added.dedup();
            assert_eq!(before, added.len(), "an entry added twice in one change");
            let mut expected: Vec<_> = previous
                .iter()
                .filter(|e| {
                    !change
                        .removed
                        .iter()
                        .any(|r| r.name == e.0 && r.sequence == e.1)
                })
                .cloned()
                .collect();
            expected.extend(
                change
                    .added
                    .iter()
                    .map(|e| (e.name.clone(), e.sequence, e.endpoint.to_string())),
            );
            expected.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
            let now = served(&change.snapshot);
            assert_eq!(expected, now, "a delta that does not lead to the snapshot");
            previous = now;
        }
        if !lost {
            // Converged to the truth: a view built afresh agrees.
            let fresh = Arc::new(Publisher::new());
            let mut truth = View::new(WatchOptions::new(), Arc::clone(&fresh));
            truth.rebuild(&machine, Instant::now());
            assert_eq!(served(&publisher.current()), served(&fresh.current()));
            let expected: Vec<String> = store
                .keys
                .iter()
                .filter(|(k, (v, _, _))| {
                    k.starts_with("/s/")
                        && !k["/s/".len()..].contains('/')
                        && !v.starts_with(b"{not")
                })
                .map(|(k, _)| k["/s/".len()..].to_owned())
                .collect();
            let mut got: Vec<String> = publisher.current().iter().map(|e| e.name.clone()).collect();
            got.sort();
            assert_eq!(got, expected);
            // The oldest key leads.
            if let Some(leader) = publisher.current().leader() {
                let oldest = store
                    .keys
                    .iter()
                    .filter(|(k, (v, _, _))| {
                        k.starts_with("/s/")
                            && !k["/s/".len()..].contains('/')
                            && !v.starts_with(b"{not")
                    })
                    .min_by_key(|(_, (_, c, _))| *c)
                    .map(|(k, _)| k["/s/".len()..].to_owned());
                assert_eq!(Some(leader.name.clone()), oldest);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn finagle_sets_follow_etcd(steps in prop::collection::vec(step(), 1..120)) {
        check(Format::Finagle, steps);
    }

    #[test]
    fn naming_sets_follow_etcd(steps in prop::collection::vec(step(), 1..120)) {
        check(Format::EtcdNaming, steps);
    }
}

#[test]
fn a_deleted_and_recreated_key_is_replaced_not_duplicated() {
    let format = Format::EtcdNaming;
    let mut store = Store::default();
    let mut machine = Machine::new("/s/".into(), format);
    let publisher = Arc::new(Publisher::new());
    let mut view = View::new(WatchOptions::new(), Arc::clone(&publisher));
    view.rebuild(&machine, Instant::now());
    let k = key(format, 1);
    machine.handle(store.put(&k, value(format, 1, 80, false)));
    machine.handle(store.put(&key(format, 2), value(format, 2, 80, false)));
    let touched = machine.take_touched();
    view.apply(touched.iter().map(String::as_str), &machine, Instant::now());
    machine.settle();
    let names: Vec<String> = publisher.current().iter().map(|e| e.name.clone()).collect();
    assert_eq!(names, ["10.0.0.1:80", "10.0.0.2:80"], "the oldest first");
    // Deleted and put again within one batch: a new create revision.
    machine.handle(store.delete(&k).unwrap_or(Input::Loaded {
        revision: 0,
        kvs: vec![],
    }));
    machine.handle(store.put(&k, value(format, 1, 80, false)));
    let touched = machine.take_touched();
    view.apply(touched.iter().map(String::as_str), &machine, Instant::now());
    machine.settle();
    let names: Vec<String> = publisher.current().iter().map(|e| e.name.clone()).collect();
    assert_eq!(
        names,
        ["10.0.0.2:80", "10.0.0.1:80"],
        "re-created: now the youngest"
    );
    assert_eq!(machine.revision(), 4);
}
