//! Holding removals back, so that flapping members do not churn users
//! (Finagle's stabilizer).
//!
//! A member that leaves the set is kept in the published set for a window.
//! If a member with the same endpoint and the same data comes back within
//! it (a re-registration gets a new znode name), the kept entry goes on
//! standing for it and users see no change. If nothing comes back, the
//! removal is published when the window ends.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::format::endpoint::Endpoint;
use crate::set::snapshot::Entry;

/// A removed entry still published.
#[derive(Debug)]
struct Ghost {
    /// What users keep seeing.
    entry: Arc<Entry>,
    /// The live entry it stands for, once the member came back.
    alias: Option<Arc<Entry>>,
    /// When it goes, unless it came back (`None` while it has an alias).
    deadline: Option<Instant>,
}

/// The removals held back for one watch.
#[derive(Debug)]
pub(crate) struct Stabilizer {
    window: Duration,
    ghosts: HashMap<Endpoint, Ghost>,
}

impl Stabilizer {
    pub(crate) fn new(window: Duration) -> Self {
        Stabilizer {
            window,
            ghosts: HashMap::new(),
        }
    }

    /// Takes note of a change of the raw set.
    pub(crate) fn observe(&mut self, added: &[Arc<Entry>], removed: &[Arc<Entry>], now: Instant) {
        let deadline = now + self.window;
        // A name both removed and added changed its data (a new weight):
        // that is a real change, not a flap.
        let changed = |e: &Arc<Entry>| added.iter().any(|a| a.name == e.name);
        for gone in removed.iter().filter(|e| !changed(e)) {
            if let Some(ghost) = self
                .ghosts
                .values_mut()
                .find(|g| g.alias.as_ref().is_some_and(|a| a.name == gone.name))
            {
                ghost.alias = None;
                ghost.deadline = Some(deadline);
            } else {
                self.ghosts
                    .entry(gone.endpoint.clone())
                    .or_insert_with(|| Ghost {
                        entry: Arc::clone(gone),
                        alias: None,
                        deadline: Some(deadline),
                    });
            }
        }
        for new in added {
            let Some(ghost) = self.ghosts.get_mut(&new.endpoint) else {
                continue;
            };
            if ghost.alias.is_some() {
                continue;
            }
            if ghost.entry.weight == new.weight && ghost.entry.member == new.member {
                ghost.alias = Some(Arc::clone(new));
                ghost.deadline = None;
            } else {
                // Back, but different: publish it as it is.
                self.ghosts.remove(&new.endpoint);
            }
        }
    }

    /// Drops the ghosts whose window has ended; `true` if any did.
    pub(crate) fn expire(&mut self, now: Instant) -> bool {
        let before = self.ghosts.len();
        self.ghosts
            .retain(|_, g| !matches!(g.deadline, Some(deadline) if deadline <= now));
        self.ghosts.len() != before
    }

    /// Removals held back now: ghosts of members that left and have not
    /// come back.
    pub(crate) fn held(&self) -> usize {
        self.ghosts.values().filter(|g| g.alias.is_none()).count()
    }

    /// When the next ghost goes.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.ghosts.values().filter_map(|g| g.deadline).min()
    }

    /// What to publish: the raw entries, with ghosts standing in for their
    /// aliases and kept for members that left.
    pub(crate) fn view<'a>(&self, raw: impl Iterator<Item = &'a Arc<Entry>>) -> Vec<Arc<Entry>> {
        let aliased: std::collections::HashSet<&str> = self
            .ghosts
            .values()
            .filter_map(|g| g.alias.as_ref().map(|a| a.name.as_str()))
            .collect();
        raw.filter(|e| !aliased.contains(e.name.as_str()))
            .cloned()
            .chain(self.ghosts.values().map(|g| Arc::clone(&g.entry)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::member::Member;

    fn entry(seq: u64, port: u16) -> Arc<Entry> {
        let endpoint = Endpoint::new("h", port);
        Arc::new(Entry::new(
            &format!("member_{seq:010}"),
            endpoint.clone(),
            1.0,
            Arc::new(Member::new(endpoint)),
        ))
    }

    fn names(v: &[Arc<Entry>]) -> Vec<String> {
        let mut n: Vec<String> = v.iter().map(|e| e.name.clone()).collect();
        n.sort();
        n
    }

    #[test]
    fn a_flap_within_the_window_is_invisible() {
        let now = Instant::now();
        let mut s = Stabilizer::new(Duration::from_secs(5));
        let (a, b) = (entry(1, 80), entry(2, 81));
        s.observe(&[], &[Arc::clone(&a)], now);
        assert_eq!(
            names(&s.view([&b].into_iter())),
            names(&[a.clone(), b.clone()])
        );
        // a comes back as a new znode with the same endpoint and data.
        let a2 = entry(3, 80);
        s.observe(&[Arc::clone(&a2)], &[], now + Duration::from_secs(1));
        assert_eq!(
            names(&s.view([&b, &a2].into_iter())),
            names(&[a.clone(), b.clone()])
        );
        assert_eq!(
            s.held(),
            0,
            "a ghost standing for a live member is not held"
        );
        assert!(
            !s.expire(now + Duration::from_secs(60)),
            "aliased ghosts do not expire"
        );
        // It leaves again and does not come back: gone after the window.
        s.observe(&[], &[Arc::clone(&a2)], now + Duration::from_secs(61));
        assert_eq!(
            names(&s.view([&b].into_iter())),
            names(&[a.clone(), b.clone()])
        );
        assert_eq!(s.held(), 1);
        assert!(!s.expire(now + Duration::from_secs(62)));
        assert!(s.expire(now + Duration::from_secs(67)));
        assert_eq!(s.held(), 0);
        assert_eq!(names(&s.view([&b].into_iter())), names(&[b]));
        assert_eq!(s.next_deadline(), None);
    }

    #[test]
    fn different_data_or_weight_changes_pass_through() {
        let now = Instant::now();
        let mut s = Stabilizer::new(Duration::from_secs(5));
        let a = entry(1, 80);
        s.observe(&[], &[Arc::clone(&a)], now);
        let endpoint = Endpoint::new("h", 80);
        let other = Arc::new(Entry::new(
            "member_0000000009",
            endpoint.clone(),
            1.0,
            Arc::new(Member::new(endpoint).with_shard(3)),
        ));
        s.observe(&[Arc::clone(&other)], &[], now);
        assert_eq!(
            names(&s.view([&other].into_iter())),
            names(std::slice::from_ref(&other))
        );
        // A re-weighted entry (same name in both lists) is no flap.
        let mut s = Stabilizer::new(Duration::from_secs(5));
        let heavier = Arc::new(Entry {
            weight: 2.0,
            ..(*a).clone()
        });
        s.observe(&[Arc::clone(&heavier)], &[Arc::clone(&a)], now);
        assert_eq!(s.next_deadline(), None);
        assert_eq!(s.view([&heavier].into_iter())[0].weight, 2.0);
    }
}
