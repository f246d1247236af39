//! Which endpoint of each member a watch serves (Finagle's endpoint name
//! and shard filter).

use crate::endpoint::Endpoint;
use crate::member::Member;

/// Chooses the endpoint a watch serves from each live member.
///
/// ```
/// use serversets::{Endpoint, Member, Selection};
///
/// let m = Member::new(Endpoint::new("h", 1))
///     .with_additional("http", Endpoint::new("h", 2))
///     .with_shard(3);
/// assert_eq!(Selection::service().select(&m).map(|e| e.port), Some(1));
/// assert_eq!(Selection::endpoint("http").select(&m).map(|e| e.port), Some(2));
/// assert_eq!(Selection::endpoint("admin").select(&m), None);
/// assert_eq!(Selection::service().with_shard(4).select(&m), None);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Selection {
    endpoint: Option<String>,
    shard: Option<i32>,
}

impl Selection {
    /// Each member's `serviceEndpoint` (the default).
    pub fn service() -> Self {
        Selection::default()
    }

    /// Each member's `additionalEndpoints[name]`; members without it are
    /// skipped.
    pub fn endpoint(name: impl Into<String>) -> Self {
        Selection {
            endpoint: Some(name.into()),
            shard: None,
        }
    }

    /// Only members with this shard id.
    pub fn with_shard(mut self, shard: i32) -> Self {
        self.shard = Some(shard);
        self
    }

    /// Sets or clears the named endpoint.
    pub fn with_endpoint(mut self, name: Option<String>) -> Self {
        self.endpoint = name;
        self
    }

    /// The named endpoint, if any.
    pub fn endpoint_name(&self) -> Option<&str> {
        self.endpoint.as_deref()
    }

    /// The shard filter, if any.
    pub fn shard(&self) -> Option<i32> {
        self.shard
    }

    /// The endpoint this selection serves from `member`, or `None` when the
    /// member is not live, lacks the endpoint, or is in another shard.
    pub fn select<'m>(&self, member: &'m Member) -> Option<&'m Endpoint> {
        if !member.is_live() {
            return None;
        }
        if self.shard.is_some() && member.shard != self.shard {
            return None;
        }
        match &self.endpoint {
            None => Some(&member.service_endpoint),
            Some(name) => member.additional(name),
        }
    }
}

/// How a watch serves its set: which endpoint (a [`Selection`]) and
/// whether removals are held back against flapping.
///
/// ```
/// use std::time::Duration;
/// use serversets::{Selection, WatchOptions};
///
/// let options = WatchOptions::new()
///     .selection(Selection::endpoint("http"))
///     .hold_removals(Duration::from_secs(10));
/// assert_eq!(options.removal_window(), Some(Duration::from_secs(10)));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchOptions {
    selection: Selection,
    hold_removals: Option<std::time::Duration>,
}

impl WatchOptions {
    /// Service endpoints, removals published at once.
    pub fn new() -> Self {
        Self::default()
    }

    /// Serves this selection.
    pub fn selection(mut self, selection: Selection) -> Self {
        self.selection = selection;
        self
    }

    /// Holds removals back for `window` (off by default): a member that
    /// leaves stays in the set that long, and if a member with the same
    /// endpoint and data comes back meanwhile (a re-registration, under a
    /// new znode name), users see no change at all.
    pub fn hold_removals(mut self, window: std::time::Duration) -> Self {
        self.hold_removals = (!window.is_zero()).then_some(window);
        self
    }

    /// The selection served.
    pub fn served(&self) -> &Selection {
        &self.selection
    }

    /// The removal window, if removals are held back.
    pub fn removal_window(&self) -> Option<std::time::Duration> {
        self.hold_removals
    }
}

impl From<Selection> for WatchOptions {
    fn from(selection: Selection) -> Self {
        WatchOptions::new().selection(selection)
    }
}
