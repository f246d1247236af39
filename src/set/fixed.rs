//! A serverset [`Source`] from a static list: for tests, local development
//! and deployments without ZooKeeper. Replacing the list notifies
//! subscribers exactly as a ZooKeeper change would, so every typed set
//! (memcache, HTTP, balancing) works the same over either.
//!
//! ```
//! use serversets::{FixedSet, Source};
//!
//! let set = FixedSet::parse("10.0.0.1:11211,10.0.0.2:11211:2.5")?;
//! assert_eq!(set.current().len(), 2);
//! assert_eq!(set.current().entries()[1].weight, 2.5);
//!
//! let mut changes = set.changes();
//! set.replace_endpoints(["10.0.0.1:11211".parse()?]);
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let change = changes.next().await.unwrap();
//! assert_eq!(change.removed.len(), 1);
//! # });
//! # Ok::<(), serversets::Error>(())
//! ```

use std::sync::Arc;

use crate::error::Error;
use crate::set::publisher::{Changes, Publisher};
use crate::set::snapshot::{Entry, Snapshot};
use crate::set::source::Source;
use crate::{Endpoint, Member};

/// A set of endpoints given by the program. Cloning shares the set.
#[derive(Debug, Clone, Default)]
pub struct FixedSet {
    publisher: Arc<Publisher>,
}

/// One endpoint of a fixed set, with its weight (1.0 unless given).
#[derive(Debug, Clone, PartialEq)]
pub struct FixedEndpoint {
    /// The endpoint.
    pub endpoint: Endpoint,
    /// Its weight.
    pub weight: f64,
    /// Optional shard id (used by shard-keyed hashing).
    pub shard: Option<i32>,
}

impl From<Endpoint> for FixedEndpoint {
    fn from(endpoint: Endpoint) -> Self {
        FixedEndpoint {
            endpoint,
            weight: 1.0,
            shard: None,
        }
    }
}

impl FixedSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// A set of these endpoints, each of weight 1.0.
    pub fn from_endpoints(endpoints: impl IntoIterator<Item = Endpoint>) -> Self {
        let set = Self::new();
        set.replace_endpoints(endpoints);
        set
    }

    /// Parses `HOST:PORT[:WEIGHT],...` (IPv6 hosts in brackets).
    pub fn parse(list: &str) -> Result<Self, Error> {
        let set = Self::new();
        set.replace(parse_list(list)?);
        Ok(set)
    }

    /// Replaces the list with endpoints of weight 1.0, notifying
    /// subscribers of what changed.
    pub fn replace_endpoints(&self, endpoints: impl IntoIterator<Item = Endpoint>) {
        self.replace(endpoints.into_iter().map(FixedEndpoint::from));
    }

    /// Replaces the list, notifying subscribers of what changed. Entries
    /// are keyed by `host:port`; a repeated endpoint keeps its first
    /// occurrence.
    pub fn replace(&self, endpoints: impl IntoIterator<Item = FixedEndpoint>) {
        let mut seen = std::collections::HashSet::new();
        let entries = endpoints
            .into_iter()
            .filter(|e| seen.insert(e.endpoint.clone()))
            .map(|e| {
                let mut member = Member::new(e.endpoint.clone());
                member.shard = e.shard;
                Arc::new(Entry::new(
                    &e.endpoint.to_string(),
                    e.endpoint,
                    e.weight,
                    Arc::new(member),
                ))
            })
            .collect();
        self.publisher.replace(entries);
    }
}

impl Source for FixedSet {
    fn current(&self) -> Arc<Snapshot> {
        self.publisher.current()
    }

    fn changes(&self) -> Changes {
        self.publisher.subscribe()
    }

    fn version(&self) -> u64 {
        self.publisher.version()
    }
}

/// Parses `HOST:PORT[:WEIGHT],...`.
///
/// ```
/// let list = serversets::fixed::parse_list("[::1]:80:2,localhost:81")?;
/// assert_eq!(list[0].endpoint.to_string(), "[::1]:80");
/// assert_eq!(list[0].weight, 2.0);
/// assert_eq!(list[1].weight, 1.0);
/// # Ok::<(), serversets::Error>(())
/// ```
pub fn parse_list(list: &str) -> Result<Vec<FixedEndpoint>, Error> {
    list.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(parse_item)
        .collect()
}

fn parse_item(item: &str) -> Result<FixedEndpoint, Error> {
    if let Ok(endpoint) = item.parse::<Endpoint>() {
        return Ok(endpoint.into());
    }
    // HOST:PORT:WEIGHT
    let bad = || Error::InvalidEndpoint {
        input: item.to_owned(),
        reason: "expected HOST:PORT or HOST:PORT:WEIGHT (weight a positive number)",
    };
    let (address, weight) = item.rsplit_once(':').ok_or_else(bad)?;
    let endpoint: Endpoint = address.parse().map_err(|_| bad())?;
    let weight: f64 = weight.parse().map_err(|_| bad())?;
    if !weight.is_finite() || weight <= 0.0 {
        return Err(bad());
    }
    Ok(FixedEndpoint {
        endpoint,
        weight,
        shard: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lists() {
        let list = parse_list("a:1, b:2:0.5 ,[::1]:3").unwrap();
        assert_eq!(list.len(), 3);
        assert_eq!(list[1].weight, 0.5);
        assert_eq!(list[2].endpoint.host, "::1");
        for bad in ["a", "a:b", "a:1:x", "a:1:0", "a:1:-2", "a:1:NaN"] {
            assert!(parse_list(bad).is_err(), "{bad}");
        }
        assert!(parse_list("").unwrap().is_empty());
    }

    #[tokio::test]
    async fn replacing_notifies_with_deltas() {
        let set = FixedSet::parse("a:1,b:2").unwrap();
        let mut changes = set.changes();
        set.replace(parse_list("b:2,c:3").unwrap());
        let change = changes.next().await.unwrap();
        let names = |v: &[Arc<Entry>]| v.iter().map(|e| e.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(&change.added), ["c:3"]);
        assert_eq!(names(&change.removed), ["a:1"]);
        assert_eq!(change.snapshot.len(), 2);
        // Same list again: no change is published.
        let version = set.current().version();
        set.replace(parse_list("c:3,b:2").unwrap());
        assert_eq!(set.current().version(), version);
        // A weight change is a change.
        set.replace(parse_list("b:2:3,c:3").unwrap());
        let change = changes.next().await.unwrap();
        assert_eq!(names(&change.added), ["b:2"]);
        assert_eq!(change.added[0].weight, 3.0);
    }

    #[test]
    fn duplicates_keep_the_first() {
        let set = FixedSet::parse("a:1:2,a:1:5").unwrap();
        assert_eq!(set.current().len(), 1);
        assert_eq!(set.current().entries()[0].weight, 2.0);
    }
}
