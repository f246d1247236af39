//! Which endpoint of each member a watch serves (Finagle's endpoint name
//! and shard filter).

use std::collections::BTreeMap;

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
///
/// // Metadata filters (go-discover's attributes): every one must match.
/// let m = m.with_metadata("zone", "eu-1");
/// assert!(Selection::service().with_metadata("zone", "eu-1").select(&m).is_some());
/// assert!(Selection::service().with_metadata("zone", "us-1").select(&m).is_none());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Selection {
    endpoint: Option<String>,
    shard: Option<i32>,
    metadata: BTreeMap<String, String>,
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
            ..Selection::default()
        }
    }

    /// Only members with this shard id.
    pub fn with_shard(mut self, shard: i32) -> Self {
        self.shard = Some(shard);
        self
    }

    /// Only members whose metadata has `key` set to `value` (added to any
    /// other metadata filter: all must match).
    pub fn with_metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(key.into(), value.into());
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

    /// The metadata filters (empty: none).
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.metadata
    }

    /// Whether this is the plain service endpoint of every live member
    /// (no named endpoint, no filter).
    pub fn is_service(&self) -> bool {
        self.endpoint.is_none() && self.shard.is_none() && self.metadata.is_empty()
    }

    /// The endpoint this selection serves from `member`, or `None` when the
    /// member is not live, lacks the endpoint, is in another shard or does
    /// not match a metadata filter.
    pub fn select<'m>(&self, member: &'m Member) -> Option<&'m Endpoint> {
        if !member.is_live() {
            return None;
        }
        if self.shard.is_some() && member.shard != self.shard {
            return None;
        }
        if self
            .metadata
            .iter()
            .any(|(key, value)| member.metadata.get(key) != Some(value))
        {
            return None;
        }
        match &self.endpoint {
            None => Some(&member.service_endpoint),
            Some(name) => member.additional(name),
        }
    }
}
