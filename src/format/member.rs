//! A serverset member: what one `member_` znode says about one service
//! instance.

use std::collections::BTreeMap;
use std::fmt;

use crate::format::endpoint::Endpoint;

/// The name prefix of member znodes; ZooKeeper appends a 10-digit sequence.
pub const MEMBER_PREFIX: &str = "member_";

/// The name prefix of Finagle weight-vector znodes.
pub const VECTOR_PREFIX: &str = "vector_";

/// A member's status. Only [`Status::Alive`] members are live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// `DEAD`
    Dead,
    /// `STARTING`
    Starting,
    /// `ALIVE`: the only live status.
    Alive,
    /// `STOPPING`
    Stopping,
    /// `STOPPED`
    Stopped,
    /// `WARNING`
    Warning,
    /// The status was missing or not one of the above (read only; not live).
    Unknown,
}

impl Status {
    /// The status as Finagle writes it (`Unknown` is written as `DEAD`).
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Dead | Status::Unknown => "DEAD",
            Status::Starting => "STARTING",
            Status::Alive => "ALIVE",
            Status::Stopping => "STOPPING",
            Status::Stopped => "STOPPED",
            Status::Warning => "WARNING",
        }
    }

    /// [`Status::Unknown`] (serde's default for a missing status).
    fn unknown() -> Status {
        Status::Unknown
    }

    /// Parses a Finagle status; anything else is [`Status::Unknown`].
    pub fn parse(s: &str) -> Status {
        match s {
            "DEAD" => Status::Dead,
            "STARTING" => Status::Starting,
            "ALIVE" => Status::Alive,
            "STOPPING" => Status::Stopping,
            "STOPPED" => Status::Stopped,
            "WARNING" => Status::Warning,
            _ => Status::Unknown,
        }
    }

    /// Whether members with this status are served.
    pub fn is_live(self) -> bool {
        self == Status::Alive
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Status::Unknown => f.write_str("UNKNOWN"),
            other => f.write_str(other.as_str()),
        }
    }
}

/// The content of one member znode (Finagle's `ServiceInstance`).
///
/// Build one to register, or get one from a watch:
///
/// ```
/// use serversets::{Endpoint, Member};
///
/// let member = Member::new(Endpoint::new("10.0.0.1", 8080))
///     .with_additional("http", Endpoint::new("10.0.0.1", 8081))
///     .with_shard(7)
///     .with_metadata("zone", "eu-1");
/// assert_eq!(member.additional("http").map(|e| e.port), Some(8081));
/// ```
///
/// With serde it is Finagle's JSON (`serviceEndpoint`,
/// `additionalEndpoints`, `status`, and `shard` and `metadata` when set), as
/// [`codec`](crate::format::codec) writes it; [`codec::decode`](crate::format::codec) is the
/// lenient reader for data from other writers.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Member {
    /// The main endpoint (`serviceEndpoint`).
    pub service_endpoint: Endpoint,
    /// Named extra endpoints (`additionalEndpoints`), e.g. `http`, `admin`.
    #[serde(default)]
    pub additional_endpoints: BTreeMap<String, Endpoint>,
    /// The status; members built with [`Member::new`] are `ALIVE`.
    #[serde(default = "Status::unknown")]
    pub status: Status,
    /// Optional shard id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<i32>,
    /// Optional string metadata.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

impl Member {
    /// An `ALIVE` member with this service endpoint and nothing else.
    pub fn new(service_endpoint: Endpoint) -> Self {
        Member {
            service_endpoint,
            additional_endpoints: BTreeMap::new(),
            status: Status::Alive,
            shard: None,
            metadata: BTreeMap::new(),
        }
    }

    /// Adds a named additional endpoint.
    pub fn with_additional(mut self, name: impl Into<String>, endpoint: Endpoint) -> Self {
        self.additional_endpoints.insert(name.into(), endpoint);
        self
    }

    /// Sets the shard id.
    pub fn with_shard(mut self, shard: i32) -> Self {
        self.shard = Some(shard);
        self
    }

    /// Adds one metadata entry.
    pub fn with_metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

    /// A named additional endpoint, if the member has it.
    pub fn additional(&self, name: &str) -> Option<&Endpoint> {
        self.additional_endpoints.get(name)
    }

    /// Whether the member is live (status `ALIVE`).
    pub fn is_live(&self) -> bool {
        self.status.is_live()
    }
}

/// The sequence number of a `member_NNNNNNNNNN` znode name, if it has one.
pub fn member_sequence(name: &str) -> Option<u64> {
    name.strip_prefix(MEMBER_PREFIX)?.parse().ok()
}

/// The number ZooKeeper appended to a sequential znode's name (ten
/// digits, any prefix), if the name ends with one.
pub fn sequential_suffix(name: &str) -> Option<u64> {
    let start = name.len().checked_sub(10)?;
    let digits = name.get(start..)?;
    if digits.bytes().all(|b| b.is_ascii_digit()) {
        digits.parse().ok()
    } else {
        None
    }
}

/// Finagle's string (`"ALIVE"`, ...).
impl serde::Serialize for Status {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// Any string: Finagle's statuses, anything else [`Status::Unknown`].
impl<'de> serde::Deserialize<'de> for Status {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Status, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Ok(Status::parse(&s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_is_finagles_json() {
        let full = Member::new(Endpoint::new("10.0.0.1", 9090))
            .with_additional("http", Endpoint::new("10.0.0.1", 8080))
            .with_shard(3)
            .with_metadata("zone", "eu-1");
        let json = serde_json::to_string(&full).expect("serialize");
        assert_eq!(
            json,
            r#"{"serviceEndpoint":{"host":"10.0.0.1","port":9090},"additionalEndpoints":{"http":{"host":"10.0.0.1","port":8080}},"status":"ALIVE","shard":3,"metadata":{"zone":"eu-1"}}"#
        );
        for member in [Member::new(Endpoint::new("::1", 1)), full] {
            let ours = serde_json::to_value(&member).expect("serialize");
            // The lenient reader reads it back the same.
            let decoded =
                crate::format::codec::decode(ours.to_string().as_bytes()).expect("decode");
            assert_eq!(decoded.member, member);
            let back: Member = serde_json::from_value(ours).expect("deserialize");
            assert_eq!(back, member);
        }
        // Missing optional fields; an unknown status.
        let lean: Member = serde_json::from_str(
            r#"{"serviceEndpoint":{"host":"h","port":1},"status":"SLEEPING"}"#,
        )
        .expect("lean member");
        assert_eq!(lean.status, Status::Unknown);
        assert!(lean.additional_endpoints.is_empty() && lean.shard.is_none());
    }

    #[test]
    fn sequential_suffixes() {
        assert_eq!(sequential_suffix("member_0000000007"), Some(7));
        assert_eq!(sequential_suffix("vector_0000000012"), Some(12));
        assert_eq!(sequential_suffix("0000000003"), Some(3));
        assert_eq!(sequential_suffix("member_"), None);
        assert_eq!(sequential_suffix("not_a_member"), None);
        assert_eq!(sequential_suffix("member_00000000x1"), None);
        assert_eq!(sequential_suffix("ü-ñ-日本"), None);
    }

    #[test]
    fn sequences() {
        assert_eq!(member_sequence("member_0000000007"), Some(7));
        assert_eq!(member_sequence("member_"), None);
        assert_eq!(member_sequence("vector_0000000001"), None);
    }

    #[test]
    fn statuses_round_trip() {
        for s in [
            "DEAD", "STARTING", "ALIVE", "STOPPING", "STOPPED", "WARNING",
        ] {
            assert_eq!(Status::parse(s).as_str(), s);
        }
        assert_eq!(Status::parse("alive"), Status::Unknown);
        assert!(!Status::Unknown.is_live());
        assert!(Status::Alive.is_live());
    }
}
