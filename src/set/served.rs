//! A view's served entries, in snapshot order, and the buffers its
//! snapshots are published in.
//!
//! A snapshot owns its entries, so publishing one means a vector of the
//! whole set. Filling a fresh one touches every entry's reference count:
//! at 100,000 members, 100,000 cache misses per change, and as many again
//! when the old snapshot is dropped. Instead, the snapshot published two
//! changes ago is recycled: by the time the next change comes, its readers
//! (change streams release the snapshot they saw before at their next
//! call) have moved on, so it is ours alone; the inserts and removals made
//! since it was published are replayed into it (a binary search and a
//! move each) and it is published again. A change then costs the change,
//! not the set. If someone still holds it, a fresh copy is made.

use std::sync::Arc;

use crate::set::snapshot::{Entry, Snapshot};

/// One edit of the served entries, kept to bring an older buffer up to
/// date.
#[derive(Debug)]
enum Edit {
    Insert(Arc<Entry>),
    Remove(Arc<Entry>),
}

/// A published snapshot and the edits made since it was published.
#[derive(Debug)]
struct Published {
    snapshot: Arc<Snapshot>,
    edits: Vec<Edit>,
}

/// How many edits a published snapshot may lag behind before it is not
/// worth replaying them into it (a fresh copy is then cheaper).
const MAX_EDITS: usize = 1024;

/// Entries sorted as in a snapshot, and the last two snapshots published.
#[derive(Debug, Default)]
pub(crate) struct Served {
    entries: Vec<Arc<Entry>>,
    /// The current snapshot and the one before it (oldest first).
    published: Vec<Published>,
}

impl Served {
    /// Removes the entry with this order key.
    pub(crate) fn remove(&mut self, key: (u64, &str)) -> Option<Arc<Entry>> {
        let at = self.position(key).ok()?;
        let removed = self.entries.remove(at);
        self.log(|| Edit::Remove(Arc::clone(&removed)));
        Some(removed)
    }

    /// Inserts an entry; `false` if one with its order key is there.
    pub(crate) fn insert(&mut self, entry: &Arc<Entry>) -> bool {
        let Err(at) = self.position(entry.order_key()) else {
            return false;
        };
        self.entries.insert(at, Arc::clone(entry));
        self.log(|| Edit::Insert(Arc::clone(entry)));
        true
    }

    fn log(&mut self, edit: impl Fn() -> Edit) {
        self.published.retain_mut(|p| {
            p.edits.push(edit());
            p.edits.len() <= MAX_EDITS
        });
    }

    /// Where the entry with this order key is, or would be inserted.
    fn position(&self, key: (u64, &str)) -> Result<usize, usize> {
        position(&self.entries, key)
    }

    /// Replaces every entry; returns the old ones.
    pub(crate) fn replace(&mut self, entries: Vec<Arc<Entry>>) -> Vec<Arc<Entry>> {
        self.published.clear();
        std::mem::replace(&mut self.entries, entries)
    }

    /// The entries, in order.
    pub(crate) fn iter(&self) -> std::slice::Iter<'_, Arc<Entry>> {
        self.entries.iter()
    }

    /// The entries for the next snapshot: the oldest snapshot kept, brought
    /// up to date, if no one else holds it; else a copy.
    pub(crate) fn publishable(&mut self) -> Vec<Arc<Entry>> {
        if self.published.len() == 2 {
            let oldest = self.published.remove(0);
            if let Ok(snapshot) = Arc::try_unwrap(oldest.snapshot) {
                let mut entries = snapshot.into_entries();
                for edit in oldest.edits {
                    match edit {
                        Edit::Insert(entry) => {
                            if let Err(at) = position(&entries, entry.order_key()) {
                                entries.insert(at, entry);
                            }
                        }
                        Edit::Remove(entry) => {
                            if let Ok(at) = position(&entries, entry.order_key()) {
                                entries.remove(at);
                            }
                        }
                    }
                }
                return entries;
            }
        }
        self.entries.clone()
    }

    /// Takes note of the snapshot published from [`Served::publishable`]'s
    /// entries, to recycle it two changes later.
    pub(crate) fn published(&mut self, snapshot: Arc<Snapshot>) {
        if self.published.len() == 2 {
            self.published.remove(0);
        }
        self.published.push(Published {
            snapshot,
            edits: Vec::new(),
        });
    }
}

fn position(entries: &[Arc<Entry>], key: (u64, &str)) -> Result<usize, usize> {
    entries.binary_search_by(|e| e.order_key().cmp(&key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: u64) -> Arc<Entry> {
        crate::set::snapshot::test_entry(seq, 1.0)
    }

    fn names(entries: &[Arc<Entry>]) -> Vec<u64> {
        entries.iter().filter_map(|e| e.sequence).collect()
    }

    fn publish(served: &mut Served, version: u64) -> Arc<Snapshot> {
        let snapshot = Arc::new(Snapshot::new(version, served.publishable()));
        served.published(Arc::clone(&snapshot));
        snapshot
    }

    #[test]
    fn old_snapshots_are_recycled_with_every_edit_replayed() {
        let mut served = Served::default();
        assert!(served.insert(&entry(3)));
        assert!(served.insert(&entry(4)));
        assert!(!served.insert(&entry(4)), "no duplicates");
        let first = publish(&mut served, 1);
        assert!(served.remove((3, "member_0000000003")).is_some());
        assert!(served.remove((9, "member_0000000009")).is_none());
        let second = publish(&mut served, 2);
        assert!(served.insert(&entry(1)));
        // The first snapshot is ours alone again: it is recycled.
        let first_buffer = first.entries().as_ptr();
        drop(first);
        let third = publish(&mut served, 3);
        assert_eq!(
            third.entries().as_ptr(),
            first_buffer,
            "recycled, not copied"
        );
        assert_eq!(names(third.entries()), [1, 4]);
        // Someone still holds the second: a copy, equal all the same.
        assert!(served.insert(&entry(0)));
        let fourth = publish(&mut served, 4);
        assert_ne!(fourth.entries().as_ptr(), second.entries().as_ptr());
        assert_eq!(names(fourth.entries()), [0, 1, 4]);
        assert_eq!(
            names(second.entries()),
            [4],
            "a held snapshot never changes"
        );
        served.replace(vec![entry(5)]);
        assert_eq!(names(&served.publishable()), [5]);
        assert_eq!(served.iter().count(), 1);
    }
}
