//! The machine against a model of ZooKeeper: unit cases, then random
//! sequences of writes, lost and late events, late and failed reads,
//! disconnections and resyncs.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use futures::FutureExt;
use proptest::prelude::*;
use tokio::time::Instant;

use super::*;
use crate::format::endpoint::Endpoint;
use crate::format::member::member_sequence;
use crate::set::options::WatchOptions;
use crate::set::publisher::{Changes, Publisher};
use crate::set::view::View;

fn path() -> ServerSetPath {
    ServerSetPath::new("/d/s").unwrap()
}

fn member_data(port: u16) -> Vec<u8> {
    let member = Member::new(Endpoint::new("h", port))
        .with_additional("http", Endpoint::new("h", port + 1000));
    codec::encode(&member)
}

fn name(seq: u64) -> String {
    format!("{MEMBER_PREFIX}{seq:010}")
}

/// Feeds inputs and answers every read from `data` (missing if absent).
fn settle(machine: &mut Machine, data: &BTreeMap<String, Vec<u8>>) -> Vec<String> {
    let mut touched = Vec::new();
    loop {
        let actions = machine.take_actions();
        touched.extend(actions.touched);
        if actions.reads.is_empty() {
            return touched;
        }
        for (name, ticket) in actions.reads {
            let result = data.get(&name).cloned().map_or(Read::Missing, Read::Data);
            machine.handle(Input::Read {
                name,
                ticket,
                result,
            });
        }
    }
}

fn cached(machine: &Machine) -> Vec<String> {
    let mut names: Vec<String> = machine
        .cache()
        .names()
        .into_iter()
        .map(String::from)
        .collect();
    names.sort();
    names
}

#[test]
fn a_leave_needs_no_read_and_a_join_one() {
    let mut machine = Machine::new(path());
    let mut data = BTreeMap::new();
    data.insert(name(1), member_data(1));
    data.insert(name(2), member_data(2));
    machine.handle(Input::Listed {
        names: data.keys().cloned().collect(),
        incarnation: 1,
    });
    settle(&mut machine, &data);
    assert_eq!(cached(&machine), [name(1), name(2)]);

    machine.handle(Input::Deleted(name(1)));
    let actions = machine.take_actions();
    assert!(actions.reads.is_empty(), "a leave reads nothing");
    assert_eq!(actions.touched, [name(1)]);

    data.insert(name(3), member_data(3));
    machine.handle(Input::Created(name(3)));
    let actions = machine.take_actions();
    assert_eq!(actions.reads.len(), 1, "a join reads the new member only");
    assert!(actions.touched.is_empty(), "published once read");
}

#[test]
fn a_resync_with_nothing_changed_reads_nothing() {
    let mut machine = Machine::new(path());
    let data: BTreeMap<String, Vec<u8>> =
        (0..100).map(|i| (name(i), member_data(i as u16))).collect();
    machine.handle(Input::Listed {
        names: data.keys().cloned().collect(),
        incarnation: 1,
    });
    settle(&mut machine, &data);
    machine.handle(Input::Listed {
        names: data.keys().cloned().collect(),
        incarnation: 1,
    });
    assert_eq!(machine.take_actions(), Actions::default());
}

#[test]
fn a_path_created_again_forgets_what_it_held() {
    let mut machine = Machine::new(path());
    let old: BTreeMap<String, Vec<u8>> = [(name(1), b"not json".to_vec())].into();
    machine.handle(Input::Listed {
        names: vec![name(1)],
        incarnation: 1,
    });
    settle(&mut machine, &old);
    // Deleted and created again between two listings: the same name now
    // stands for another member, which must be read.
    let new: BTreeMap<String, Vec<u8>> = [(name(1), member_data(1))].into();
    machine.handle(Input::Listed {
        names: vec![name(1)],
        incarnation: 2,
    });
    settle(&mut machine, &new);
    let entry = machine.cache().entry(&name(1), &Selection::service());
    assert_eq!(entry.map(|e| e.endpoint.port), Some(1));
}

#[test]
fn stale_reads_are_ignored() {
    let mut machine = Machine::new(path());
    machine.handle(Input::Listed {
        names: vec![],
        incarnation: 1,
    });
    machine.handle(Input::Created(name(1)));
    let (read, ticket) = machine.take_actions().reads.remove(0);
    // Deleted before its read came back: the read's data is stale.
    machine.handle(Input::Deleted(name(1)));
    machine.handle(Input::Read {
        name: read,
        ticket,
        result: Read::Data(member_data(1)),
    });
    assert!(cached(&machine).is_empty());
    assert_eq!(machine.pending(), 0);
}

#[test]
fn grandchildren_and_strangers_are_ignored() {
    let mut machine = Machine::new(path());
    machine.handle(Input::Listed {
        names: vec!["lock".into(), name(1)],
        incarnation: 1,
    });
    let actions = machine.take_actions();
    assert_eq!(actions.reads.len(), 1, "only the member is read");
    machine.handle(Input::Created("other_0000000001".into()));
    assert!(machine.take_actions().reads.is_empty());
}

// ---------------------------------------------------------------------------
// The model.

/// One random step.
#[derive(Debug, Clone)]
enum Op {
    /// Another client registers a member (port, or unusable data).
    Join(Option<u16>),
    /// The i-th live member leaves.
    Leave(usize),
    /// The i-th live member's data is rewritten.
    Rewrite(usize, u16),
    /// A weight vector is written (created, or its data set), naming the
    /// i-th live member.
    Vector(usize, u8),
    /// The weight vector is deleted.
    VectorGone,
    /// The set path is deleted (when empty) or created.
    TogglePath,
    /// The next k queued events reach the watch.
    Deliver(usize),
    /// The i-th read in flight is answered.
    Answer(usize),
    /// The connection drops: events from now on are lost, reads fail.
    Disconnect,
    /// The connection is back: the driver lists the set again.
    Reconnect,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => prop::option::weighted(0.85, 1u16..50).prop_map(Op::Join),
        3 => (0usize..64).prop_map(Op::Leave),
        1 => (0usize..64, 1u16..50).prop_map(|(i, p)| Op::Rewrite(i, p)),
        1 => (0usize..64, 1u8..4).prop_map(|(i, w)| Op::Vector(i, w)),
        1 => Just(Op::VectorGone),
        1 => Just(Op::TogglePath),
        5 => (1usize..6).prop_map(Op::Deliver),
        5 => (0usize..8).prop_map(Op::Answer),
        1 => Just(Op::Disconnect),
        1 => Just(Op::Reconnect),
    ]
}

/// A queued watch event, as the persistent driver turns it into input.
#[derive(Debug, Clone)]
enum Event {
    Input(Input),
    /// The set path was created or deleted: the driver lists again.
    Relist,
}

/// Which driver the model stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Engine {
    /// Every child event, named; lost while disconnected.
    Persistent,
    /// A children change only says "list again" (lost while disconnected);
    /// weight vectors have data watches, which ZooKeeper fires on
    /// reconnection for what was missed; members are never rewritten.
    OneShot,
}

/// ZooKeeper's side, and the driver's queues.
struct World {
    engine: Engine,
    exists: bool,
    /// Counts creations of the set path (its `czxid`).
    incarnation: i64,
    children: BTreeMap<String, Vec<u8>>,
    next_sequence: u64,
    vector: Option<String>,
    connected: bool,
    events: VecDeque<Event>,
    inflight: Vec<(String, Ticket)>,
}

impl World {
    fn new(engine: Engine) -> Self {
        World {
            engine,
            exists: true,
            incarnation: 1,
            children: BTreeMap::new(),
            next_sequence: 0,
            vector: None,
            connected: true,
            events: VecDeque::new(),
            inflight: Vec::new(),
        }
    }

    fn notify(&mut self, event: Event) {
        let event = match (self.engine, event) {
            (
                Engine::OneShot,
                Event::Input(Input::Created(n) | Input::Deleted(n) | Input::DataChanged(n)),
            ) if n.starts_with(VECTOR_PREFIX) => {
                // A data watch: delivered, late if need be.
                self.events.push_back(Event::Input(Input::DataChanged(n)));
                return;
            }
            (Engine::OneShot, _) => Event::Relist,
            (Engine::Persistent, event) => event,
        };
        if self.connected {
            self.events.push_back(event);
        }
    }

    fn members(&self) -> Vec<String> {
        self.children
            .keys()
            .filter(|n| n.starts_with(MEMBER_PREFIX))
            .cloned()
            .collect()
    }

    fn create(&mut self, prefix: &str, data: Vec<u8>) -> String {
        let name = format!("{prefix}{:010}", self.next_sequence);
        self.next_sequence += 1;
        self.children.insert(name.clone(), data);
        self.notify(Event::Input(Input::Created(name.clone())));
        name
    }

    fn listing(&self) -> Input {
        if self.exists {
            Input::Listed {
                names: self.children.keys().cloned().collect(),
                incarnation: self.incarnation,
            }
        } else {
            Input::Missing
        }
    }

    /// Applies one operation; returns an input for the machine, if the
    /// operation delivers one.
    fn step(&mut self, op: &Op) -> Vec<Input> {
        match op {
            Op::Join(port) if self.exists => {
                let data = port.map_or_else(|| b"not json".to_vec(), member_data);
                self.create(MEMBER_PREFIX, data);
            }
            Op::Leave(i) => {
                let members = self.members();
                if let Some(name) = members.get(i % members.len().max(1)) {
                    self.children.remove(name);
                    self.notify(Event::Input(Input::Deleted(name.clone())));
                }
            }
            // Members are written once; one rewritten in place is seen only
            // through its event (a listing shows names, not data).
            Op::Rewrite(i, port) if self.connected && self.engine == Engine::Persistent => {
                let members = self.members();
                if let Some(name) = members.get(i % members.len().max(1)) {
                    self.children.insert(name.clone(), member_data(*port));
                    self.notify(Event::Input(Input::DataChanged(name.clone())));
                }
            }
            Op::Vector(i, weight) if self.exists => {
                let members = self.members();
                let target = members
                    .get(i % members.len().max(1))
                    .cloned()
                    .unwrap_or_default();
                let data =
                    format!(r#"{{"vector":[{{"select":"member={target}","weight":{weight}}}]}}"#)
                        .into_bytes();
                match self.vector.clone() {
                    Some(vector) => {
                        self.children.insert(vector.clone(), data);
                        self.notify(Event::Input(Input::DataChanged(vector)));
                    }
                    None => self.vector = Some(self.create(VECTOR_PREFIX, data)),
                }
            }
            Op::VectorGone => {
                if let Some(vector) = self.vector.take() {
                    self.children.remove(&vector);
                    self.notify(Event::Input(Input::Deleted(vector)));
                }
            }
            Op::TogglePath => {
                if !self.exists {
                    self.exists = true;
                    self.incarnation += 1;
                    self.next_sequence = 0;
                    self.notify(Event::Relist);
                } else if self.children.is_empty() {
                    self.exists = false;
                    self.notify(Event::Relist);
                }
            }
            Op::Deliver(k) => {
                let mut inputs = Vec::new();
                for _ in 0..*k {
                    match self.events.pop_front() {
                        Some(Event::Input(input)) => inputs.push(input),
                        Some(Event::Relist) => inputs.push(self.listing()),
                        None => break,
                    }
                }
                return inputs;
            }
            Op::Answer(i) => {
                if !self.inflight.is_empty() {
                    let (name, ticket) = self.inflight.remove(i % self.inflight.len());
                    return vec![self.answer(name, ticket)];
                }
            }
            Op::Disconnect => self.connected = false,
            Op::Reconnect => {
                if !self.connected {
                    self.connected = true;
                    let mut inputs = Vec::new();
                    if self.engine == Engine::Persistent {
                        // What the server sent before the connection
                        // dropped reaches the driver before the
                        // disconnection does (its select polls the watcher
                        // first, and the client queues both in order); the
                        // old watcher is dropped once the new one is added,
                        // so nothing of it follows the new listing (which
                        // may be of a set path deleted and re-created
                        // meanwhile, its names reused).
                        while let Some(event) = self.events.pop_front() {
                            match event {
                                Event::Input(input) => inputs.push(input),
                                Event::Relist => inputs.push(self.listing()),
                            }
                        }
                    }
                    inputs.push(self.listing());
                    return inputs;
                }
            }
            Op::Join(_) | Op::Vector(..) | Op::Rewrite(..) => {}
        }
        Vec::new()
    }

    fn answer(&self, name: String, ticket: Ticket) -> Input {
        let result = if !self.connected {
            Read::Failed
        } else {
            self.children
                .get(&name)
                .cloned()
                .map_or(Read::Missing, Read::Data)
        };
        Input::Read {
            name,
            ticket,
            result,
        }
    }
}

/// A view and what it published, checked change by change.
struct Watched {
    view: View,
    publisher: Arc<Publisher>,
    changes: Changes,
    last: Arc<crate::set::snapshot::Snapshot>,
}

impl Watched {
    fn new(selection: Selection) -> Self {
        let publisher = Arc::new(Publisher::new());
        let view = View::new(
            WatchOptions::new().selection(selection),
            Arc::clone(&publisher),
        );
        let changes = publisher.subscribe();
        Watched {
            view,
            last: publisher.current(),
            publisher,
            changes,
        }
    }

    /// Every publication leads exactly from the previous snapshot to the
    /// next one.
    fn check_delta(&mut self) {
        let now = self.publisher.current();
        if now.version() == self.last.version() {
            return;
        }
        assert_eq!(
            now.version(),
            self.last.version() + 1,
            "one publication per flush"
        );
        if now.entries() == self.last.entries() {
            // The first publication of an empty set: no delta to stream.
            self.last = now;
            return;
        }
        let change = self
            .changes
            .next()
            .now_or_never()
            .flatten()
            .expect("a change per publication");
        assert_eq!(change.snapshot.version(), now.version());
        let mut expected: Vec<_> = self.last.iter().cloned().collect();
        for removed in &change.removed {
            let at = expected
                .iter()
                .position(|e| e == removed)
                .expect("a removed entry was there");
            expected.remove(at);
        }
        for added in &change.added {
            assert!(!expected.contains(added), "an added entry was not there");
            expected.push(Arc::clone(added));
        }
        let mut got: Vec<_> = now.iter().cloned().collect();
        let key = |e: &Arc<Entry>| (e.name.clone(), e.endpoint.clone());
        expected.sort_by_key(key);
        got.sort_by_key(key);
        assert_eq!(expected, got, "previous + delta = next");
        self.last = now;
    }
}

/// What a view of `selection` should serve, from ZooKeeper's side.
fn truth(world: &World, selection: &Selection) -> Vec<(String, u16, f64)> {
    let mut vectors = Vec::new();
    if let Some(vector) = &world.vector {
        if let Some(Ok((v, _))) = world.children.get(vector).map(|d| vector::parse(d)) {
            vectors.push(v);
        }
    }
    let mut out = Vec::new();
    for (name, data) in &world.children {
        if !name.starts_with(MEMBER_PREFIX) {
            continue;
        }
        let Ok(decoded) = codec::decode(data) else {
            continue;
        };
        let member = decoded.member;
        let Some(endpoint) = selection.select(&member) else {
            continue;
        };
        let weight = vector::weight(vectors.iter(), name, member.shard, endpoint);
        out.push((name.clone(), endpoint.port, weight));
    }
    out.sort_by_key(|a| member_sequence(&a.0));
    out
}

fn served(watched: &Watched) -> Vec<(String, u16, f64)> {
    watched
        .publisher
        .current()
        .iter()
        .map(|e| (e.name.clone(), e.endpoint.port, e.weight))
        .collect()
}

/// Runs the machine and two views through `ops`, then lets everything
/// queued arrive, and compares with ZooKeeper's side.
fn run_model(engine: Engine, ops: &[Op]) {
    let mut world = World::new(engine);
    let mut machine = Machine::new(path());
    machine.reread_vectors_when_listed(engine == Engine::Persistent);
    let mut views = [
        Watched::new(Selection::service()),
        Watched::new(Selection::endpoint("http")),
    ];
    let now = Instant::now();
    let flush = |machine: &mut Machine, world: &mut World, views: &mut [Watched]| {
        let actions = machine.take_actions();
        for watched in views.iter_mut() {
            if actions.reweigh {
                watched.view.rebuild(machine.cache(), now);
            } else {
                watched.view.apply(
                    actions.touched.iter().map(String::as_str),
                    machine.cache(),
                    now,
                );
            }
            watched.check_delta();
        }
        world.inflight.extend(actions.reads);
        actions.relist
    };
    // The initial load.
    machine.handle(world.listing());
    for watched in views.iter_mut() {
        watched.view.rebuild(machine.cache(), now);
        watched.check_delta();
    }
    let mut relist = flush(&mut machine, &mut world, &mut views);
    for op in ops {
        if relist && world.connected {
            machine.handle(world.listing());
        }
        let inputs = world.step(op);
        if std::env::var_os("MODEL_TRACE").is_some() {
            eprintln!("{op:?} -> {inputs:?} inflight {:?}", world.inflight);
        }
        let listing = inputs
            .iter()
            .any(|i| matches!(i, Input::Listed { .. } | Input::Missing));
        if engine == Engine::OneShot && listing && matches!(op, Op::Deliver(_)) {
            // Woken by a children change: the read-ahead goes first.
            machine.guess_joins();
        }
        for input in inputs {
            machine.handle(input);
        }
        relist = flush(&mut machine, &mut world, &mut views);
    }
    // Quiesce: reconnect, then deliver and answer everything.
    if !world.connected {
        for input in world.step(&Op::Reconnect) {
            machine.handle(input);
        }
        relist = flush(&mut machine, &mut world, &mut views);
    }
    let trace = std::env::var_os("MODEL_TRACE").is_some();
    for _ in 0..10_000 {
        let inputs = if relist {
            vec![world.listing()]
        } else if !world.events.is_empty() {
            world.step(&Op::Deliver(1))
        } else if !world.inflight.is_empty() {
            world.step(&Op::Answer(0))
        } else {
            break;
        };
        if trace {
            eprintln!("quiesce -> {inputs:?}");
        }
        for input in inputs {
            machine.handle(input);
        }
        relist = flush(&mut machine, &mut world, &mut views);
    }
    assert!(
        world.events.is_empty() && world.inflight.is_empty(),
        "quiesced"
    );
    for watched in &views {
        let selection = watched.view.options().served();
        assert_eq!(
            served(watched),
            truth(&world, selection),
            "converged to the truth"
        );
    }
    assert_eq!(machine.pending(), 0, "no read left pending");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn every_delta_is_exact_and_the_watch_converges(ops in prop::collection::vec(op(), 0..160)) {
        run_model(Engine::Persistent, &ops);
    }

    #[test]
    fn the_one_shot_engine_converges_too(ops in prop::collection::vec(op(), 0..160)) {
        run_model(Engine::OneShot, &ops);
    }
}
