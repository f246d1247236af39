//! A watch's served entries, in snapshot order, with a copy kept ready to
//! publish.
//!
//! A snapshot owns its entries, so publishing one means a fresh vector of
//! the whole set: at 10,000 members, 10,000 reference counts touched,
//! mostly cache misses after the watch sat idle. The copy is made while the
//! watch is idle, kept in step with every insert and removal (a binary
//! search and a move), and handed over when a change is published, so that
//! publishing costs the change, not the set.

use std::sync::Arc;

use crate::set::snapshot::Entry;

/// Entries sorted as in a snapshot, and a ready copy of them.
#[derive(Debug, Default)]
pub(crate) struct Served {
    entries: Vec<Arc<Entry>>,
    /// Equal to `entries` when present.
    ready: Option<Vec<Arc<Entry>>>,
}

impl Served {
    /// Removes the entry with this order key.
    pub(crate) fn remove(&mut self, key: (u64, &str)) -> Option<Arc<Entry>> {
        let at = self.position(key).ok()?;
        if let Some(ready) = &mut self.ready {
            ready.remove(at);
        }
        Some(self.entries.remove(at))
    }

    /// Inserts an entry; `false` if one with its order key is there.
    pub(crate) fn insert(&mut self, entry: &Arc<Entry>) -> bool {
        let Err(at) = self.position(entry.order_key()) else {
            return false;
        };
        if let Some(ready) = &mut self.ready {
            ready.insert(at, Arc::clone(entry));
        }
        self.entries.insert(at, Arc::clone(entry));
        true
    }

    /// Where the entry with this order key is, or would be inserted.
    fn position(&self, key: (u64, &str)) -> Result<usize, usize> {
        self.entries.binary_search_by(|e| e.order_key().cmp(&key))
    }

    /// Replaces every entry; returns the old ones.
    pub(crate) fn replace(&mut self, entries: Vec<Arc<Entry>>) -> Vec<Arc<Entry>> {
        self.ready = None;
        std::mem::replace(&mut self.entries, entries)
    }

    /// The entries, in order.
    pub(crate) fn iter(&self) -> std::slice::Iter<'_, Arc<Entry>> {
        self.entries.iter()
    }

    /// The entries for a snapshot: the ready copy, or a copy made now.
    pub(crate) fn publishable(&mut self) -> Vec<Arc<Entry>> {
        self.ready.take().unwrap_or_else(|| self.entries.clone())
    }

    /// Makes the ready copy, if there is none (call when idle).
    pub(crate) fn prepare(&mut self) {
        if self.ready.is_none() {
            self.ready = Some(self.entries.clone());
        }
    }
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

    #[test]
    fn the_ready_copy_follows_every_change() {
        let mut served = Served::default();
        assert!(served.insert(&entry(3)));
        served.prepare();
        assert!(served.insert(&entry(1)));
        assert!(served.insert(&entry(2)));
        assert!(!served.insert(&entry(2)), "no duplicates");
        assert!(served.remove((3, "member_0000000003")).is_some());
        assert!(served.remove((9, "member_0000000009")).is_none());
        let published = served.publishable();
        assert_eq!(names(&published), [1, 2]);
        // Taken: the next one is a fresh copy, then a ready one again.
        assert!(served.insert(&entry(0)));
        assert_eq!(names(&served.publishable()), [0, 1, 2]);
        served.prepare();
        served.replace(vec![entry(5)]);
        assert_eq!(names(&served.publishable()), [5]);
        assert_eq!(served.iter().count(), 1);
    }
}
