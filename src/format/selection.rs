//! Which endpoint of each member a watch serves (Finagle's endpoint name
//! and shard filter).

use crate::format::endpoint::Endpoint;
use crate::format::member::Member;

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
