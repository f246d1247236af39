//! An immutable, sorted view of a serverset at one moment, and the changes
//! between two of them.

use std::cmp::Ordering;
use std::sync::Arc;

use crate::format::endpoint::Endpoint;
use crate::format::member::{member_sequence, Member};

/// One live member as a watch serves it: the selected endpoint, its weight
/// and the member's full data.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Entry {
    /// The member's znode name (`member_0000000007`); on etcd, its key
    /// below the set's prefix.
    pub name: String,
    /// The sequence number ZooKeeper gave the member, if the name has one;
    /// on etcd, the key's create revision.
    pub sequence: Option<u64>,
    /// The selected endpoint (service endpoint or a named one).
    pub endpoint: Endpoint,
    /// The product of matching `vector_` weights; 1.0 by default.
    pub weight: f64,
    /// Everything the member's znode says.
    pub member: Arc<Member>,
}

impl Entry {
    /// The order of entries in a snapshot: by sequence number, then name.
    pub(crate) fn order_key(&self) -> (u64, &str) {
        (self.sequence.unwrap_or(u64::MAX), &self.name)
    }

    /// An entry named `name` (a member znode name, or any stable key such
    /// as `host:port` for a fixed list); the sequence number is read from
    /// `member_NNNNNNNNNN` names.
    pub fn new(name: &str, endpoint: Endpoint, weight: f64, member: Arc<Member>) -> Self {
        Entry {
            name: name.to_owned(),
            sequence: member_sequence(name),
            endpoint,
            weight,
            member,
        }
    }
}

#[cfg(feature = "etcd")]
impl Entry {
    /// An entry whose sequence number is `sequence` whatever its name says
    /// (etcd: the key's create revision, so the oldest key leads).
    pub(crate) fn with_sequence(
        name: &str,
        sequence: u64,
        endpoint: Endpoint,
        weight: f64,
        member: Arc<Member>,
    ) -> Self {
        Entry {
            name: name.to_owned(),
            sequence: Some(sequence),
            endpoint,
            weight,
            member,
        }
    }
}

/// The live members of a set at one moment, sorted by sequence number
/// (oldest first), so equal sets always compare and print the same.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    version: u64,
    entries: Vec<Arc<Entry>>,
}

impl Snapshot {
    /// A snapshot of these entries (sorted here).
    pub fn new(version: u64, mut entries: Vec<Arc<Entry>>) -> Self {
        entries.sort_by(|a, b| a.order_key().cmp(&b.order_key()));
        Snapshot { version, entries }
    }

    /// A snapshot of entries already in snapshot order.
    pub(crate) fn from_sorted(version: u64, entries: Vec<Arc<Entry>>) -> Self {
        debug_assert!(entries
            .windows(2)
            .all(|w| w[0].order_key() <= w[1].order_key()));
        Snapshot { version, entries }
    }

    /// Its entries, taken out.
    pub(crate) fn into_entries(self) -> Vec<Arc<Entry>> {
        self.entries
    }

    /// Increases by one with every published change; 0 before the first
    /// load.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The entries, oldest member first.
    pub fn entries(&self) -> &[Arc<Entry>] {
        &self.entries
    }

    /// Iterates over the entries.
    pub fn iter(&self) -> std::slice::Iter<'_, Arc<Entry>> {
        self.entries.iter()
    }

    /// The selected endpoints, in snapshot order.
    pub fn endpoints(&self) -> impl Iterator<Item = &Endpoint> + '_ {
        self.entries.iter().map(|e| &e.endpoint)
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The leader: the live member with the lowest sequence number (the
    /// oldest instance).
    pub fn leader(&self) -> Option<&Arc<Entry>> {
        self.entries.first()
    }

    /// The entry for a member znode name.
    pub fn get(&self, name: &str) -> Option<&Arc<Entry>> {
        self.entries.iter().find(|e| e.name == name)
    }
}

impl<'a> IntoIterator for &'a Snapshot {
    type Item = &'a Arc<Entry>;
    type IntoIter = std::slice::Iter<'a, Arc<Entry>>;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.iter()
    }
}

/// One change of a set: the new snapshot and what differs from the
/// previous one a subscriber saw. An entry whose weight changed appears in
/// both lists (removed with the old weight, added with the new).
#[derive(Debug, Clone)]
pub struct Change {
    /// The set after the change.
    pub snapshot: Arc<Snapshot>,
    /// Entries now present that were not before.
    pub added: Vec<Arc<Entry>>,
    /// Entries present before that are gone or changed.
    pub removed: Vec<Arc<Entry>>,
}

/// The difference between two snapshots: `(added, removed)`.
pub(crate) fn diff(old: &Snapshot, new: &Snapshot) -> (Vec<Arc<Entry>>, Vec<Arc<Entry>>) {
    let (mut added, mut removed) = (Vec::new(), Vec::new());
    let (mut a, mut b) = (old.entries.iter().peekable(), new.entries.iter().peekable());
    loop {
        match (a.peek(), b.peek()) {
            (None, None) => break,
            (Some(x), None) => {
                removed.push(Arc::clone(x));
                a.next();
            }
            (None, Some(y)) => {
                added.push(Arc::clone(y));
                b.next();
            }
            (Some(x), Some(y)) => match x.order_key().cmp(&y.order_key()) {
                Ordering::Less => {
                    removed.push(Arc::clone(x));
                    a.next();
                }
                Ordering::Greater => {
                    added.push(Arc::clone(y));
                    b.next();
                }
                Ordering::Equal => {
                    if !Arc::ptr_eq(x, y) && x != y {
                        removed.push(Arc::clone(x));
                        added.push(Arc::clone(y));
                    }
                    a.next();
                    b.next();
                }
            },
        }
    }
    (added, removed)
}

/// A member entry `member_<seq>` at `h:<seq>` with this weight, for unit
/// tests.
#[cfg(test)]
pub(crate) fn test_entry(seq: u64, weight: f64) -> Arc<Entry> {
    let endpoint = crate::format::endpoint::Endpoint::new("h", seq as u16);
    Arc::new(Entry::new(
        &format!("member_{seq:010}"),
        endpoint.clone(),
        weight,
        Arc::new(crate::format::member::Member::new(endpoint)),
    ))
}

/// An entry as the `serverset watch` command prints it, one flat object:
/// `member` (the znode name), `host`, `port` (the selected endpoint),
/// `shard`, `weight`, `status`, `additional` (named endpoints as
/// `{"host", "port"}`) and `metadata`.
impl serde::Serialize for Entry {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut out = serializer.serialize_struct("Entry", 8)?;
        out.serialize_field("member", &self.name)?;
        out.serialize_field("host", &self.endpoint.host)?;
        out.serialize_field("port", &self.endpoint.port)?;
        out.serialize_field("shard", &self.member.shard)?;
        out.serialize_field("weight", &self.weight)?;
        out.serialize_field("status", &self.member.status)?;
        out.serialize_field("additional", &self.member.additional_endpoints)?;
        out.serialize_field("metadata", &self.member.metadata)?;
        out.end()
    }
}

/// `{"version": N, "members": [entry, ...]}`, entries as [`Entry`]
/// serializes them, oldest first.
impl serde::Serialize for Snapshot {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut out = serializer.serialize_struct("Snapshot", 2)?;
        out.serialize_field("version", &self.version)?;
        out.serialize_field("members", &self.entries)?;
        out.end()
    }
}

/// `{"added": [...], "removed": [...], "size": N}`: the delta and the size
/// of the set after it, as `serverset watch` prints each change.
impl serde::Serialize for Change {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut out = serializer.serialize_struct("Change", 3)?;
        out.serialize_field("added", &self.added)?;
        out.serialize_field("removed", &self.removed)?;
        out.serialize_field("size", &self.snapshot.len())?;
        out.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: u64, weight: f64) -> Arc<Entry> {
        test_entry(seq, weight)
    }

    #[test]
    fn serde_shapes() {
        let e = entry(7, 2.0);
        let json = serde_json::to_value(&*e).expect("entry");
        assert_eq!(json["member"], e.name.as_str());
        assert_eq!(json["host"], e.endpoint.host.as_str());
        assert_eq!(json["port"], e.endpoint.port);
        assert_eq!(json["weight"], 2.0);
        assert_eq!(json["status"], "ALIVE");
        assert!(json["shard"].is_null());
        assert!(json["additional"].as_object().is_some_and(|a| a.is_empty()));
        let snapshot = Arc::new(Snapshot::new(4, vec![entry(9, 1.0), e.clone()]));
        let json = serde_json::to_value(&*snapshot).expect("snapshot");
        assert_eq!(json["version"], 4);
        assert_eq!(
            json["members"][0]["member"],
            e.name.as_str(),
            "oldest first"
        );
        let change = Change {
            snapshot,
            added: vec![e],
            removed: Vec::new(),
        };
        let json = serde_json::to_value(&change).expect("change");
        assert_eq!(json["size"], 2);
        assert_eq!(json["added"].as_array().map(Vec::len), Some(1));
        assert_eq!(json["removed"].as_array().map(Vec::len), Some(0));
    }

    #[test]
    fn sorted_and_leader() {
        let s = Snapshot::new(1, vec![entry(9, 1.0), entry(2, 1.0), entry(5, 1.0)]);
        let seqs: Vec<_> = s.iter().map(|e| e.sequence.unwrap()).collect();
        assert_eq!(seqs, [2, 5, 9]);
        assert_eq!(s.leader().unwrap().name, "member_0000000002");
        assert!(s.get("member_0000000005").is_some());
    }

    #[test]
    fn diffs() {
        let old = Snapshot::new(1, vec![entry(1, 1.0), entry(2, 1.0), entry(3, 1.0)]);
        let new = Snapshot::new(2, vec![entry(2, 1.0), entry(3, 2.0), entry(4, 1.0)]);
        let (added, removed) = diff(&old, &new);
        let names = |v: &[Arc<Entry>]| v.iter().map(|e| e.sequence.unwrap()).collect::<Vec<_>>();
        assert_eq!(names(&added), [3, 4]);
        assert_eq!(names(&removed), [1, 3]);
        let (added, removed) = diff(&new, &new);
        assert!(added.is_empty() && removed.is_empty());
    }
}
