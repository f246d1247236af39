//! The ketama consistent-hash ring of Finagle's memcached client and of
//! libmemcached's weighted ketama (pylibmc with `ketama_weighted`).
//!
//! # The algorithm
//!
//! * Each node has an identifier: `host` when its port is 11211, otherwise
//!   `host:port` (no brackets around IPv6 hosts, as libmemcached writes it),
//!   or, in Finagle, the member's shard id when it has one (see
//!   [`Identifier`]).
//! * A node of weight `w` among `n` nodes of total weight `W` gets
//!   `floor(w / W * n * 40 + 1e-10)` MD5 digests: 40 with equal weights.
//!   Digest `i` is `MD5(identifier + "-" + i)` and gives 4 points, its bytes
//!   0-3, 4-7, 8-11 and 12-15 read as little-endian `u32`s: 160 points per
//!   node with equal weights.
//! * A key hashes to the first 4 bytes of `MD5(key)` as a little-endian
//!   `u32` ([`key_hash`]) and belongs to the node owning the first point
//!   `>=` that hash, wrapping to the first point of the ring.
//!
//! # Where Finagle and libmemcached differ
//!
//! [`Compatibility`] chooses between the two where they disagree:
//!
//! * **Digest count arithmetic.** Finagle computes the digest count in
//!   `f64` as `w / W * n * 40 + 1e-10`; libmemcached computes
//!   `w / W * 160 / 4 * n + 1e-10` in `f32`, where the `1e-10` is lost, so a
//!   product that should be a whole number can land just below it and lose a
//!   digest. With equal weights this happens for 25, 47, 50, 55, 61, 71, 94,
//!   100, ... nodes (207 of the node counts 1 to 2000): libmemcached gives
//!   39 digests (156 points) per node where Finagle gives 40 (160). The
//!   8-node test vector and the small sets tried (3 and 4 nodes, equal or
//!   1:2:3:4-style weights) give the same counts in both.
//! * **Duplicate points.** Two nodes can produce the same 32-bit point
//!   (about a 3% chance somewhere in a 100-node ring, near certain with 1000
//!   nodes). Finagle builds its continuum with `TreeMap.put`, so the node
//!   that comes *last* in the node list owns the point; libmemcached 1.1
//!   (`libmemcached-awesome`, Debian's) sorts points by value then host index
//!   and takes the first point `>=` the hash, so the node that comes *first*
//!   owns it. The point owns the whole arc that ends at it, so this decides
//!   a (tiny) range of keys, not only keys hashing exactly onto the point.
//!   Here a duplicated point is kept once, owned by the node the chosen
//!   rule names; [`KetamaRing::point_count`] counts distinct points.
//! * **Weights.** Finagle's weights are integers (`Double.toInt` of the
//!   serverset weight) and a node of weight 0 gets no points; libmemcached's
//!   are unsigned integers and it turns 0 into 1. Here weights are `f64`
//!   and used as given; a weight that is not a positive finite number
//!   (0, negative, NaN, infinite) gives the node no points, as Finagle
//!   does for 0 (the node still counts in `n`, as in Finagle). Pass whole
//!   numbers to get exactly what Finagle or pylibmc compute.
//!
//! # Built on `hashring`
//!
//! The ring is a [`hashring::HashRing`], a vector of points sorted by a
//! `u64` key that its `get` binary-searches for the first key `>=` the
//! looked-up one, wrapping to the first. hashring derives keys by hashing
//! values with a `BuildHasher`; ketama points are already hashes, so each
//! ring entry is a point whose `Hash` writes its precomputed `u32`, hashed
//! by an identity hasher that returns that value, and lookups pass the
//! key's ketama hash the same way. `u32` to `u64` keeps the order.
//!
//! hashring keeps equal keys (its sort is stable), but `get` uses
//! `binary_search_by`, which on an exact hit of a duplicated key may return
//! *any* of the equal entries, while a miss lands before all of them. A
//! ring with duplicate keys would therefore answer inconsistently, so the
//! points are deduplicated (by the [`Compatibility`] rule) before they are
//! handed to hashring; with distinct keys its lookup is exactly ketama's.

use std::cmp::Reverse;
use std::hash::{BuildHasher, Hash, Hasher};

use hashring::HashRing;
use md5::{Digest, Md5};
use serversets::{Endpoint, Entry, Snapshot};

/// The memcached port after which the identifier is the bare host.
pub const DEFAULT_PORT: u16 = 11211;

/// MD5 digests per node when all weights are equal.
pub const DIGESTS_PER_NODE: u32 = 40;

/// Ring points each MD5 digest gives.
pub const POINTS_PER_DIGEST: usize = 4;

/// A memcached server on the ring.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// The ketama identifier hashed into the node's points.
    pub id: String,
    /// Where the server listens.
    pub endpoint: Endpoint,
    /// The node's weight; see the [module docs](self) for how it is used.
    pub weight: f64,
}

impl Node {
    /// A node identified by its host and port (see [`host_port_id`]).
    ///
    /// ```
    /// use serversets_memcache::ring::Node;
    /// use serversets::Endpoint;
    ///
    /// assert_eq!(Node::new(Endpoint::new("10.0.1.1", 11211), 1.0).id, "10.0.1.1");
    /// assert_eq!(Node::new(Endpoint::new("10.0.1.1", 11212), 1.0).id, "10.0.1.1:11212");
    /// ```
    pub fn new(endpoint: Endpoint, weight: f64) -> Self {
        Node {
            id: host_port_id(&endpoint),
            endpoint,
            weight,
        }
    }

    /// A node with an explicit ketama identifier.
    pub fn with_id(id: impl Into<String>, endpoint: Endpoint, weight: f64) -> Self {
        Node {
            id: id.into(),
            endpoint,
            weight,
        }
    }

    /// The node for a serverset entry: its endpoint and weight, identified
    /// as `identifier` says.
    pub fn from_entry(entry: &Entry, identifier: Identifier) -> Self {
        let id = match (identifier, entry.member.shard) {
            (Identifier::Shard, Some(shard)) => shard.to_string(),
            _ => host_port_id(&entry.endpoint),
        };
        Node::with_id(id, entry.endpoint.clone(), entry.weight)
    }
}

/// The ketama identifier of an endpoint: `host` when the port is 11211,
/// otherwise `host:port` (IPv6 hosts without brackets, as libmemcached
/// formats them).
pub fn host_port_id(endpoint: &Endpoint) -> String {
    if endpoint.port == DEFAULT_PORT {
        endpoint.host.clone()
    } else {
        format!("{}:{}", endpoint.host, endpoint.port)
    }
}

/// How nodes built from serverset members are identified on the ring.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Identifier {
    /// `host`, or `host:port` when the port is not 11211 (libmemcached,
    /// and Finagle for members without a shard).
    #[default]
    HostPort,
    /// The member's shard id as a decimal string when it has one, else
    /// host and port: what Finagle does, so that a replaced shard keeps
    /// its keys.
    Shard,
}

/// Whose behaviour to follow where Finagle and libmemcached differ (see
/// the [module docs](self)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Compatibility {
    /// twitter/util `ConsistentHashingDistributor`: digest counts in `f64`;
    /// a point shared by several nodes belongs to the last of them.
    #[default]
    Finagle,
    /// libmemcached's weighted ketama (pylibmc `ketama_weighted`): digest
    /// counts in `f32`; a point shared by several nodes belongs to the
    /// first of them.
    Libmemcached,
}

/// One ketama point on the hashring: its position and the index of the
/// node owning it. Hashes as its position alone.
#[derive(Debug, Clone, Copy)]
struct Point {
    value: u32,
    node: u32,
}

impl Hash for Point {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u32(self.value);
    }
}

/// A key's ketama hash, looked up on the hashring.
struct KeyHash(u32);

impl Hash for KeyHash {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u32(self.0);
    }
}

/// Builds [`PointHasher`]s: hashring's key of a [`Point`] or [`KeyHash`] is
/// its `u32` value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct PointHashBuilder;

impl BuildHasher for PointHashBuilder {
    type Hasher = PointHasher;

    fn build_hasher(&self) -> PointHasher {
        PointHasher(0)
    }
}

/// An identity hasher: `finish` returns the last `u32` written.
#[derive(Debug, Clone, Copy, Default)]
struct PointHasher(u64);

impl Hasher for PointHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u32` is used; keep anything else order-preserving
        // and well defined anyway.
        for &byte in bytes {
            self.0 = (self.0 << 8) | u64::from(byte);
        }
    }

    fn write_u32(&mut self, value: u32) {
        self.0 = u64::from(value);
    }
}

/// An immutable ketama ring over a list of memcached nodes.
///
/// Build a new ring when the set changes; building 1000 nodes takes a few
/// milliseconds. Lookups hash the key with MD5 and binary-search the
/// points, with no allocation.
///
/// ```
/// use serversets_memcache::ring::{KetamaRing, Node};
/// use serversets::Endpoint;
///
/// // The shared Finagle / libmemcached test vector.
/// let weights = [600.0, 300.0, 200.0, 350.0, 1000.0, 800.0, 950.0, 100.0];
/// let nodes = weights
///     .iter()
///     .enumerate()
///     .map(|(i, &w)| Node::new(Endpoint::new(format!("10.0.1.{}", i + 1), 11211), w))
///     .collect();
/// let ring = KetamaRing::new(nodes);
///
/// assert_eq!(ring.len(), 8);
/// assert_eq!(ring.point_count(), 1264);
/// assert_eq!(ring.pick(b"SVa_]_V41)").map(|n| n.id.as_str()), Some("10.0.1.7"));
/// assert_eq!(ring.pick_index(b"30C1*Z*S/_"), Some(1)); // 10.0.1.2
/// assert!(KetamaRing::new(Vec::new()).pick(b"any").is_none());
/// ```
#[derive(Debug, Clone)]
pub struct KetamaRing {
    nodes: Vec<Node>,
    /// Distinct points owned by each node.
    node_points: Vec<usize>,
    ring: HashRing<Point, PointHashBuilder>,
    compatibility: Compatibility,
}

impl Default for KetamaRing {
    fn default() -> Self {
        KetamaRing::new(Vec::new())
    }
}

impl KetamaRing {
    /// A Finagle-compatible ring over these nodes, in this order (the order
    /// only matters for points two nodes share).
    ///
    /// Never fails: nodes whose weight is not a positive finite number get
    /// no points but stay in [`nodes`](Self::nodes); a ring without points
    /// picks nothing.
    pub fn new(nodes: Vec<Node>) -> Self {
        KetamaRing::with_compatibility(nodes, Compatibility::Finagle)
    }

    /// A ring following `compatibility` where Finagle and libmemcached
    /// differ.
    pub fn with_compatibility(nodes: Vec<Node>, compatibility: Compatibility) -> Self {
        let counts = digest_counts(&nodes, compatibility);
        let total: usize = counts.iter().map(|&c| c as usize).sum();
        let mut points: Vec<(u32, u32)> = Vec::with_capacity(total * POINTS_PER_DIGEST);
        for ((index, node), &count) in nodes.iter().enumerate().zip(&counts) {
            let Ok(index) = u32::try_from(index) else {
                break;
            };
            push_points(&node.id, count, index, &mut points);
        }

        // Order by position, the owner of a shared position first, and keep
        // one point per position.
        match compatibility {
            Compatibility::Finagle => points.sort_unstable_by_key(|&(v, n)| (v, Reverse(n))),
            Compatibility::Libmemcached => points.sort_unstable(),
        }
        points.dedup_by_key(|&mut (value, _)| value);

        let mut node_points = vec![0; nodes.len()];
        for &(_, node) in &points {
            if let Some(count) = node_points.get_mut(node as usize) {
                *count += 1;
            }
        }

        let mut ring = HashRing::with_hasher(PointHashBuilder);
        ring.batch_add(
            points
                .into_iter()
                .map(|(value, node)| Point { value, node })
                .collect(),
        );
        KetamaRing {
            nodes,
            node_points,
            ring,
            compatibility,
        }
    }

    /// A Finagle-compatible ring over a serverset snapshot: one node per
    /// entry (its selected endpoint and weight), in snapshot order.
    ///
    /// Finagle truncates serverset weights to integers; pass whole-number
    /// weights (or build the nodes yourself) to get exactly its ring.
    pub fn from_snapshot(snapshot: &Snapshot, identifier: Identifier) -> Self {
        KetamaRing::new(
            snapshot
                .iter()
                .map(|entry| Node::from_entry(entry, identifier))
                .collect(),
        )
    }

    /// The node owning `key`, or `None` when the ring has no points.
    pub fn pick(&self, key: &[u8]) -> Option<&Node> {
        self.pick_index(key).and_then(|index| self.nodes.get(index))
    }

    /// The index in [`nodes`](Self::nodes) of the node owning `key`, or
    /// `None` when the ring has no points.
    pub fn pick_index(&self, key: &[u8]) -> Option<usize> {
        self.index_for_hash(key_hash(key))
    }

    /// The index of the node owning a [`key_hash`]: the owner of the first
    /// point `>=` `hash`, wrapping to the first point.
    pub fn index_for_hash(&self, hash: u32) -> Option<usize> {
        self.locate(hash).map(|point| point.node as usize)
    }

    /// The point a hash maps to.
    fn locate(&self, hash: u32) -> Option<Point> {
        self.ring.get(&KeyHash(hash)).copied()
    }

    /// The nodes, in the order given.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// The number of nodes (with or without points).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether there are no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The number of distinct points on the ring.
    pub fn point_count(&self) -> usize {
        self.ring.len()
    }

    /// The number of points node `index` owns (0 for an unknown index).
    pub fn points_of(&self, index: usize) -> usize {
        self.node_points.get(index).copied().unwrap_or(0)
    }

    /// Whose rules the ring follows.
    pub fn compatibility(&self) -> Compatibility {
        self.compatibility
    }
}

/// A key's ketama hash: the first 4 bytes of `MD5(key)`, little-endian.
pub fn key_hash(key: &[u8]) -> u32 {
    match *Md5::digest(key).as_slice() {
        [a, b, c, d, ..] => u32::from_le_bytes([a, b, c, d]),
        _ => 0, // an MD5 digest always has 16 bytes
    }
}

/// Whether a weight gives points.
fn usable(weight: f64) -> bool {
    weight.is_finite() && weight > 0.0
}

/// The number of MD5 digests of each node.
fn digest_counts(nodes: &[Node], compatibility: Compatibility) -> Vec<u32> {
    let weights: Vec<f64> = nodes
        .iter()
        .map(|n| if usable(n.weight) { n.weight } else { 0.0 })
        .collect();
    let mut total: f64 = weights.iter().sum();
    let mut scale = 1.0;
    let too_large = match compatibility {
        Compatibility::Finagle => !total.is_finite(),
        Compatibility::Libmemcached => !(total as f32).is_finite(),
    };
    if too_large {
        // Only reachable with absurd weights: rescale so the sum is finite.
        let max = weights.iter().copied().fold(0.0, f64::max);
        scale = 1.0 / max;
        total = weights.iter().map(|w| w * scale).sum();
    }
    if total <= 0.0 {
        return vec![0; nodes.len()];
    }
    let n = nodes.len();
    weights
        .iter()
        .map(|&w| {
            let w = w * scale;
            if w <= 0.0 {
                return 0;
            }
            // `as` saturates (and maps NaN to 0); the value is at most
            // n * 40 anyway.
            match compatibility {
                Compatibility::Finagle => {
                    (w / total * n as f64 * f64::from(DIGESTS_PER_NODE) + 1e-10).floor() as u32
                }
                Compatibility::Libmemcached => {
                    let pct = w as f32 / total as f32;
                    (pct * 160.0 / 4.0 * n as f32 + 1e-10_f32).floor() as u32
                }
            }
        })
        .collect()
}

/// Appends the `4 * count` points of node `index` identified by `id`.
fn push_points(id: &str, count: u32, index: u32, points: &mut Vec<(u32, u32)>) {
    if count == 0 {
        return;
    }
    let mut prefix = Md5::new();
    prefix.update(id.as_bytes());
    prefix.update(b"-");
    let mut digits = [0u8; 10];
    for i in 0..count {
        let mut md5 = prefix.clone();
        md5.update(decimal(i, &mut digits));
        let digest = md5.finalize();
        for chunk in digest.chunks_exact(4) {
            if let [a, b, c, d] = *chunk {
                points.push((u32::from_le_bytes([a, b, c, d]), index));
            }
        }
    }
}

/// `value` in decimal ASCII, written at the end of `buffer`.
fn decimal(mut value: u32, buffer: &mut [u8; 10]) -> &[u8] {
    // A u32 has at most 10 digits, so the buffer never runs out.
    let mut start = buffer.len();
    while let Some(slot) = start.checked_sub(1).and_then(|i| buffer.get_mut(i)) {
        *slot = b'0' + (value % 10) as u8;
        start -= 1;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    buffer.get(start..).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::Arc;

    use serversets::Member;

    use super::*;

    /// The shared twitter/util + libmemcached test vector:
    /// `key keyhash point server`.
    const KETAMA_RESULTS: &str = include_str!("../tests/data/ketama_results");

    const VECTOR_WEIGHTS: [f64; 8] = [600.0, 300.0, 200.0, 350.0, 1000.0, 800.0, 950.0, 100.0];

    fn vector_nodes() -> Vec<Node> {
        VECTOR_WEIGHTS
            .iter()
            .enumerate()
            .map(|(i, &w)| Node::new(Endpoint::new(format!("10.0.1.{}", i + 1), 11211), w))
            .collect()
    }

    fn equal_nodes(count: usize) -> Vec<Node> {
        (0..count)
            .map(|i| {
                Node::new(
                    Endpoint::new(format!("10.1.{}.{}", i / 250, i % 250), 11211),
                    1.0,
                )
            })
            .collect()
    }

    /// Deterministic pseudo-random keys (splitmix64).
    fn keys(count: usize, seed: u64) -> Vec<String> {
        let mut state = seed;
        (0..count)
            .map(|_| {
                state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let mut z = state;
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                format!("key:{:016x}", z ^ (z >> 31))
            })
            .collect()
    }

    #[test]
    fn reproduces_the_shared_ketama_vector() {
        for compatibility in [Compatibility::Finagle, Compatibility::Libmemcached] {
            let ring = KetamaRing::with_compatibility(vector_nodes(), compatibility);
            let mut checked = 0;
            for line in KETAMA_RESULTS.lines().filter(|l| !l.trim().is_empty()) {
                let fields: Vec<&str> = line.split(' ').collect();
                assert_eq!(fields.len(), 4, "bad line {line:?}");
                let (key, hash, point, server) = (fields[0], fields[1], fields[2], fields[3]);
                let hash: u32 = hash.parse().unwrap();
                let point: u32 = point.parse().unwrap();
                assert_eq!(key_hash(key.as_bytes()), hash, "hash of {key:?}");
                let found = ring.locate(hash).unwrap();
                assert_eq!(found.value, point, "point for {key:?}");
                assert_eq!(
                    ring.pick(key.as_bytes()).unwrap().id,
                    server,
                    "server for {key:?}"
                );
                checked += 1;
            }
            assert_eq!(checked, 99);
        }
    }

    #[test]
    fn vector_point_counts() {
        let ring = KetamaRing::new(vector_nodes());
        // floor(w / 4300 * 8 * 40 + 1e-10) digests each.
        let digests = [44, 22, 14, 26, 74, 59, 70, 7];
        for (i, d) in digests.iter().enumerate() {
            assert_eq!(ring.points_of(i), d * 4, "node {i}");
        }
        assert_eq!(ring.point_count(), digests.iter().sum::<usize>() * 4);
    }

    #[test]
    fn equal_weights_give_160_points_per_node() {
        for count in [1, 2, 3, 5, 8, 10, 24, 50, 100] {
            let ring = KetamaRing::new(equal_nodes(count));
            for i in 0..count {
                assert_eq!(ring.points_of(i), 160, "{count} nodes, node {i}");
            }
            assert_eq!(ring.point_count(), 160 * count);
        }
        // Any common weight, not only 1.
        let nodes = (0..4)
            .map(|i| Node::new(Endpoint::new(format!("h{i}"), 11211), 2.5))
            .collect();
        let ring = KetamaRing::new(nodes);
        assert_eq!(ring.point_count(), 640);
    }

    #[test]
    fn libmemcached_float_arithmetic_loses_a_digest_for_some_node_counts() {
        for (count, libmemcached_points) in [(3, 160), (4, 160), (8, 160), (24, 160), (25, 156)] {
            let finagle = KetamaRing::new(equal_nodes(count));
            let libmemcached =
                KetamaRing::with_compatibility(equal_nodes(count), Compatibility::Libmemcached);
            for i in 0..count {
                assert_eq!(finagle.points_of(i), 160);
                assert_eq!(
                    libmemcached.points_of(i),
                    libmemcached_points,
                    "{count} nodes"
                );
            }
        }
        // The equal-weight node counts up to 100 where f32 loses a digest.
        let lossy: Vec<usize> = (1..=100)
            .filter(|&n| {
                let counts = digest_counts(&equal_nodes(n), Compatibility::Libmemcached);
                counts.iter().any(|&c| c != 40)
            })
            .collect();
        assert_eq!(lossy, [25, 47, 50, 55, 61, 71, 94, 100]);
    }

    #[test]
    fn identifiers() {
        assert_eq!(host_port_id(&Endpoint::new("10.0.0.1", 11211)), "10.0.0.1");
        assert_eq!(
            host_port_id(&Endpoint::new("10.0.0.1", 11212)),
            "10.0.0.1:11212"
        );
        assert_eq!(
            host_port_id(&Endpoint::new("cache-1", 22122)),
            "cache-1:22122"
        );
        assert_eq!(host_port_id(&Endpoint::new("::1", 11211)), "::1");
        assert_eq!(host_port_id(&Endpoint::new("::1", 11212)), "::1:11212");
        assert_eq!(Node::with_id("x", Endpoint::new("h", 1), 1.0).id, "x");

        let entry = |port: u16, shard: Option<i32>| {
            let endpoint = Endpoint::new("10.0.0.1", port);
            let mut member = Member::new(endpoint.clone());
            member.shard = shard;
            Entry::new(
                &format!("member_{port:010}"),
                endpoint,
                1.0,
                Arc::new(member),
            )
        };
        let sharded = entry(11211, Some(7));
        let plain = entry(11212, None);
        assert_eq!(
            Node::from_entry(&sharded, Identifier::HostPort).id,
            "10.0.0.1"
        );
        assert_eq!(Node::from_entry(&sharded, Identifier::Shard).id, "7");
        assert_eq!(
            Node::from_entry(&plain, Identifier::Shard).id,
            "10.0.0.1:11212"
        );
        assert_eq!(Identifier::default(), Identifier::HostPort);

        let snapshot = Snapshot::new(1, vec![Arc::new(sharded), Arc::new(plain)]);
        let by_shard = KetamaRing::from_snapshot(&snapshot, Identifier::Shard);
        let ids: Vec<&str> = by_shard.nodes().iter().map(|n| n.id.as_str()).collect();
        assert_eq!(ids, ["7", "10.0.0.1:11212"]);
        assert_eq!(by_shard.point_count(), 320);
        // The shard id, not the address, places the node.
        let by_id = KetamaRing::new(vec![
            Node::with_id("7", Endpoint::new("10.9.9.9", 11211), 1.0),
            Node::new(Endpoint::new("10.0.0.1", 11212), 1.0),
        ]);
        for key in keys(1000, 1) {
            assert_eq!(
                by_shard.pick_index(key.as_bytes()),
                by_id.pick_index(key.as_bytes())
            );
        }
    }

    #[test]
    fn adding_a_server_moves_about_its_share_only_to_it() {
        let n = 10;
        let old = KetamaRing::new(equal_nodes(n));
        let new = KetamaRing::new(equal_nodes(n + 1));
        let keys = keys(10_000, 2);
        let mut moved = 0;
        for key in &keys {
            let before = old.pick_index(key.as_bytes()).unwrap();
            let after = new.pick_index(key.as_bytes()).unwrap();
            if before != after {
                assert_eq!(after, n, "{key} moved between two old servers");
                moved += 1;
            }
        }
        let share = moved as f64 / keys.len() as f64;
        let expected = 1.0 / (n + 1) as f64;
        assert!(
            (share - expected).abs() < 0.35 * expected,
            "moved {moved} of {} keys",
            keys.len()
        );
    }

    #[test]
    fn removing_a_server_moves_only_its_keys() {
        let nodes = equal_nodes(10);
        let removed = 3;
        let old = KetamaRing::new(nodes.clone());
        let mut rest = nodes;
        rest.remove(removed);
        let new = KetamaRing::new(rest);
        let mut moved = 0;
        for key in keys(10_000, 3) {
            let before = old.pick(key.as_bytes()).unwrap();
            let after = new.pick(key.as_bytes()).unwrap();
            if before.id != after.id {
                assert_eq!(
                    before.id,
                    old.nodes()[removed].id,
                    "{key} moved off a kept server"
                );
                moved += 1;
            } else {
                assert_ne!(before.id, old.nodes()[removed].id);
            }
        }
        assert!((700..1300).contains(&moved), "moved {moved}");
    }

    #[test]
    fn empty_rings_pick_nothing() {
        let ring = KetamaRing::new(Vec::new());
        assert!(ring.is_empty());
        assert_eq!(ring.len(), 0);
        assert_eq!(ring.point_count(), 0);
        assert_eq!(ring.pick(b"key"), None);
        assert_eq!(ring.pick_index(b""), None);
        assert_eq!(ring.index_for_hash(u32::MAX), None);
        assert_eq!(ring.points_of(0), 0);
        assert!(KetamaRing::default().pick(b"key").is_none());
        let snapshot = Snapshot::new(0, Vec::new());
        assert!(KetamaRing::from_snapshot(&snapshot, Identifier::Shard)
            .pick(b"key")
            .is_none());
    }

    #[test]
    fn unusable_weights_give_no_points_and_never_panic() {
        let bad = [0.0, -1.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.0];
        for compatibility in [Compatibility::Finagle, Compatibility::Libmemcached] {
            // Only unusable weights: nodes, but no points.
            let nodes = bad
                .iter()
                .enumerate()
                .map(|(i, &w)| Node::new(Endpoint::new(format!("h{i}"), 11211), w))
                .collect();
            let ring = KetamaRing::with_compatibility(nodes, compatibility);
            assert_eq!(ring.len(), bad.len());
            assert_eq!(ring.point_count(), 0);
            assert_eq!(ring.pick(b"key"), None);

            // Mixed with good ones: only the good ones get keys, and the bad
            // ones still count in n, as in Finagle.
            let mut nodes: Vec<Node> = bad
                .iter()
                .enumerate()
                .map(|(i, &w)| Node::new(Endpoint::new(format!("h{i}"), 11211), w))
                .collect();
            nodes.push(Node::new(Endpoint::new("good1", 11211), 1.0));
            nodes.push(Node::new(Endpoint::new("good2", 11211), 3.0));
            let ring = KetamaRing::with_compatibility(nodes, compatibility);
            let n = bad.len() + 2;
            assert_eq!(ring.points_of(n - 2), n * 40);
            assert_eq!(ring.points_of(n - 1), n * 120);
            for key in keys(500, 4) {
                assert!(ring.pick_index(key.as_bytes()).unwrap() >= bad.len());
            }

            // Huge weights whose sum overflows are rescaled.
            let nodes = vec![
                Node::new(Endpoint::new("a", 11211), f64::MAX),
                Node::new(Endpoint::new("b", 11211), f64::MAX),
                Node::new(Endpoint::new("c", 11211), 1e-300),
            ];
            let ring = KetamaRing::with_compatibility(nodes, compatibility);
            assert_eq!(ring.points_of(0), 240);
            assert_eq!(ring.points_of(1), 240);
            assert_eq!(ring.points_of(2), 0);
        }
    }

    #[test]
    fn wraps_past_the_last_point() {
        let ring = KetamaRing::new(vector_nodes());
        let first = ring.locate(0).unwrap();
        assert_eq!(ring.locate(u32::MAX).unwrap().value, first.value);
        assert_eq!(ring.locate(first.value).unwrap().value, first.value);
        let next = ring.locate(first.value + 1).unwrap();
        assert!(next.value > first.value);
    }

    /// `node601` and `node1174` both have the point 2608162388 (digest 31,
    /// bytes 8-11 and digest 1, bytes 12-15).
    #[test]
    fn duplicate_points_follow_the_compatibility_rule() {
        const SHARED: u32 = 2_608_162_388;
        let nodes = || {
            vec![
                Node::with_id("node601", Endpoint::new("10.0.0.1", 11211), 1.0),
                Node::with_id("node1174", Endpoint::new("10.0.0.2", 11211), 1.0),
            ]
        };
        let finagle = KetamaRing::new(nodes());
        let libmemcached = KetamaRing::with_compatibility(nodes(), Compatibility::Libmemcached);
        for ring in [&finagle, &libmemcached] {
            // 320 points, one of them shared: 319 distinct.
            assert_eq!(ring.point_count(), 319);
            assert_eq!(ring.points_of(0) + ring.points_of(1), 319);
            let point = ring.locate(SHARED).unwrap();
            assert_eq!(point.value, SHARED);
            // The whole arc ending at the shared point goes to its owner.
            let previous = ring.locate(SHARED - 1).unwrap();
            assert_eq!(previous.value, SHARED);
        }
        // Finagle: the last node put into its TreeMap owns the point.
        assert_eq!(finagle.index_for_hash(SHARED), Some(1));
        assert_eq!(finagle.index_for_hash(SHARED - 1), Some(1));
        assert_eq!((finagle.points_of(0), finagle.points_of(1)), (159, 160));
        // libmemcached: sorted by (value, host index), first >= wins.
        assert_eq!(libmemcached.index_for_hash(SHARED), Some(0));
        assert_eq!(libmemcached.index_for_hash(SHARED - 1), Some(0));
        assert_eq!(
            (libmemcached.points_of(0), libmemcached.points_of(1)),
            (160, 159)
        );
        // Swapping the order swaps the owner.
        let mut swapped = nodes();
        swapped.reverse();
        assert_eq!(KetamaRing::new(swapped).index_for_hash(SHARED), Some(1));
    }

    #[test]
    fn duplicate_identifiers_collapse_onto_one_node() {
        let ring = KetamaRing::new(vec![
            Node::new(Endpoint::new("10.0.0.1", 11211), 1.0),
            Node::new(Endpoint::new("10.0.0.1", 11211), 1.0),
        ]);
        assert_eq!(ring.point_count(), 160);
        assert_eq!((ring.points_of(0), ring.points_of(1)), (0, 160));
    }

    #[test]
    fn decimal_digits() {
        let mut buffer = [0u8; 10];
        for value in [0, 7, 10, 39, 100, 12345, u32::MAX] {
            assert_eq!(decimal(value, &mut buffer), value.to_string().as_bytes());
        }
    }

    #[test]
    fn distinct_points_are_sorted_and_unique() {
        let ring = KetamaRing::new(equal_nodes(50));
        let mut seen = HashSet::new();
        let mut hash = 0u32;
        let mut last = None;
        // Walk the ring point by point.
        while let Some(point) = ring.locate(hash) {
            if last.is_some_and(|l: u32| point.value <= l) {
                break; // wrapped
            }
            assert!(seen.insert(point.value));
            last = Some(point.value);
            match point.value.checked_add(1) {
                Some(next) => hash = next,
                None => break,
            }
        }
        assert_eq!(seen.len(), ring.point_count());
    }

    #[test]
    fn ring_is_send_and_sync() {
        fn check<T: Send + Sync + Clone + std::fmt::Debug>() {}
        check::<KetamaRing>();
        check::<Node>();
    }
}
