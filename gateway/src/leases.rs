//! TTL leases of the gateway's registrations, pure: who holds what until
//! when. A lease is renewed by its holder re-sending it within its TTL;
//! one not renewed in time expires. No clock of its own: "now" comes in.

use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;
use std::time::Duration;

use tokio::time::Instant;

/// What a renewal changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewal {
    /// No lease was held under this key: register it.
    New,
    /// The same data, renewed: nothing to write.
    Renewed,
    /// Other data under the same key: replace the registration.
    Replaced,
}

#[derive(Debug)]
struct Lease<D> {
    data: D,
    deadline: Instant,
    /// Changes when the lease is taken or its data replaced.
    generation: u64,
}

/// Leases by key, each with its data and deadline.
#[derive(Debug)]
pub struct Leases<K, D> {
    leases: HashMap<K, Lease<D>>,
    /// Deadlines in order, to find the expired ones without a scan.
    deadlines: BTreeSet<(Instant, K)>,
    generations: u64,
}

impl<K: Hash + Eq + Ord + Clone, D: PartialEq> Leases<K, D> {
    /// None held.
    pub fn new() -> Self {
        Leases {
            leases: HashMap::new(),
            deadlines: BTreeSet::new(),
            generations: 0,
        }
    }

    /// Takes or renews the lease of `key` for `ttl` from `now`, with
    /// `data`, and says what that changed.
    pub fn renew(&mut self, key: K, data: D, ttl: Duration, now: Instant) -> Renewal {
        let deadline = now + ttl;
        let (renewal, generation) = match self.leases.get(&key) {
            None => (Renewal::New, None),
            Some(lease) if lease.data == data => (Renewal::Renewed, Some(lease.generation)),
            Some(_) => (Renewal::Replaced, None),
        };
        let generation = generation.unwrap_or_else(|| {
            self.generations += 1;
            self.generations
        });
        let lease = Lease {
            data,
            deadline,
            generation,
        };
        if let Some(old) = self.leases.insert(key.clone(), lease) {
            self.deadlines.remove(&(old.deadline, key.clone()));
        }
        self.deadlines.insert((deadline, key));
        renewal
    }

    /// Gives the lease of `key` up; `true` if one was held.
    pub fn release(&mut self, key: &K) -> bool {
        match self.leases.remove(key) {
            Some(lease) => {
                self.deadlines.remove(&(lease.deadline, key.clone()));
                true
            }
            None => false,
        }
    }

    /// Takes out the leases whose deadline is `now` or earlier.
    pub fn expire(&mut self, now: Instant) -> Vec<K> {
        let mut expired = Vec::new();
        while let Some((deadline, _)) = self.deadlines.first() {
            if *deadline > now {
                break;
            }
            if let Some((_, key)) = self.deadlines.pop_first() {
                self.leases.remove(&key);
                expired.push(key);
            }
        }
        expired
    }

    /// When the next lease expires.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.first().map(|(deadline, _)| *deadline)
    }

    /// The generation of `key`'s lease, if it is held: it changes when the
    /// lease is taken anew or its data replaced, not when it is renewed.
    pub fn generation(&self, key: &K) -> Option<u64> {
        self.leases.get(key).map(|lease| lease.generation)
    }

    /// When `key`'s lease expires, if it is held.
    #[cfg(test)]
    pub fn deadline(&self, key: &K) -> Option<Instant> {
        self.leases.get(key).map(|lease| lease.deadline)
    }

    /// The keys held.
    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.leases.keys()
    }

    /// How many are held.
    pub fn len(&self) -> usize {
        self.leases.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(10);

    #[test]
    fn renewals_with_the_same_data_write_nothing_and_push_the_deadline() {
        let mut leases = Leases::new();
        let t0 = Instant::now();
        assert_eq!(leases.renew("a", 1, TTL, t0), Renewal::New);
        let first = leases.generation(&"a");
        let t5 = t0 + Duration::from_secs(5);
        assert_eq!(leases.renew("a", 1, TTL, t5), Renewal::Renewed);
        assert_eq!(
            leases.generation(&"a"),
            first,
            "a renewal keeps the generation"
        );
        assert_eq!(leases.deadline(&"a"), Some(t5 + TTL));
        assert!(leases.expire(t0 + TTL).is_empty(), "renewed in time");
        assert_eq!(leases.renew("a", 2, TTL, t5), Renewal::Replaced);
        assert_ne!(leases.generation(&"a"), first, "new data, a new generation");
        assert_eq!(leases.expire(t5 + TTL), ["a"]);
        assert_eq!(leases.len(), 0);
    }

    #[test]
    fn expiry_takes_only_what_is_due_in_order() {
        let mut leases = Leases::new();
        let t0 = Instant::now();
        leases.renew("late", (), Duration::from_secs(30), t0);
        leases.renew("early", (), Duration::from_secs(1), t0);
        leases.renew("gone", (), Duration::from_secs(1), t0);
        assert!(leases.release(&"gone"));
        assert!(!leases.release(&"gone"));
        assert_eq!(leases.next_deadline(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(leases.expire(t0 + Duration::from_secs(2)), ["early"]);
        assert_eq!(leases.keys().collect::<Vec<_>>(), [&"late"]);
        assert_eq!(leases.expire(t0 + Duration::from_secs(30)), ["late"]);
        assert_eq!(leases.next_deadline(), None);
    }
}
