//! How members are stored under an etcd key prefix: the two formats, pure.
//!
//! - [`Format::Finagle`] (the default): keys `<prefix>/member_<unique>`,
//!   values in Finagle's JSON ([`codec`](crate::codec)), so every typed set
//!   works unchanged and a member carries its additional endpoints, shard
//!   and metadata.
//! - [`Format::EtcdNaming`]: etcd's own `naming/endpoints` format, read by
//!   its gRPC resolver: keys `<prefix>/<host:port>`, values
//!   `{"Op":0,"Addr":"host:port","Metadata":...}`. Go services registered
//!   with etcd's endpoints manager and ours see each other.
//!
//! ```
//! use serversets::{naming::Format, Endpoint, Member};
//!
//! let member = Member::new(Endpoint::new("10.0.0.1", 8080)).with_metadata("zone", "eu-1");
//! let value = Format::EtcdNaming.encode(&member);
//! assert_eq!(
//!     String::from_utf8(value.clone()).unwrap(),
//!     r#"{"Op":0,"Addr":"10.0.0.1:8080","Metadata":{"zone":"eu-1"}}"#
//! );
//! let read = Format::EtcdNaming.decode("10.0.0.1:8080", &value).unwrap();
//! assert_eq!(read, Some(member));
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde_json::Value;

use crate::error::Error;
use crate::format::codec::{self, DecodeError};
use crate::format::endpoint::Endpoint;
use crate::format::member::{Member, MEMBER_PREFIX};

/// How a set's members are stored in etcd.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Format {
    /// Finagle's JSON under `member_` keys (`finagle`).
    #[default]
    Finagle,
    /// etcd's gRPC naming format (`etcd-naming`).
    EtcdNaming,
}

impl Format {
    /// Its name on a command line: `finagle` or `etcd-naming`.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Finagle => "finagle",
            Format::EtcdNaming => "etcd-naming",
        }
    }

    /// The key name (below the prefix) a registration of `member` takes;
    /// `unique` tells registrations of one process apart (the lease id).
    pub fn name(self, member: &Member, unique: i64) -> String {
        match self {
            Format::Finagle => format!("{MEMBER_PREFIX}{unique:016x}"),
            Format::EtcdNaming => member.service_endpoint.to_string(),
        }
    }

    /// Whether a key named `name` below the prefix holds a member in this
    /// format: Finagle's members are `member_*`; etcd naming's are any
    /// other name (usually the address), so that a prefix holding both
    /// formats serves each its own members.
    pub fn is_member(self, name: &str) -> bool {
        match self {
            Format::Finagle => name.starts_with(MEMBER_PREFIX),
            Format::EtcdNaming => !name.is_empty() && !name.starts_with(MEMBER_PREFIX),
        }
    }

    /// The value a registration of `member` writes.
    pub fn encode(self, member: &Member) -> Vec<u8> {
        match self {
            Format::Finagle => codec::encode(member),
            Format::EtcdNaming => serde_json::to_vec(&NamingValue {
                op: 0,
                addr: member.service_endpoint.to_string(),
                metadata: (!member.metadata.is_empty()).then_some(&member.metadata),
            })
            .unwrap_or_default(),
        }
    }

    /// Reads the value of the key named `name`: `Ok(Some)` a member,
    /// `Ok(None)` a value that says the endpoint is gone (etcd naming's
    /// `"Op":1`), `Err` a value that is not a member (with why).
    pub fn decode(self, name: &str, value: &[u8]) -> Result<Option<Member>, DecodeError> {
        match self {
            Format::Finagle => codec::decode(value).map(|decoded| Some(decoded.member)),
            Format::EtcdNaming => decode_naming(name, value),
        }
    }
}

/// etcd naming's value as Go writes it (fields in Go's order).
#[derive(serde::Serialize)]
struct NamingValue<'a> {
    #[serde(rename = "Op")]
    op: u8,
    #[serde(rename = "Addr")]
    addr: String,
    #[serde(rename = "Metadata", skip_serializing_if = "Option::is_none")]
    metadata: Option<&'a BTreeMap<String, String>>,
}

/// etcd naming's value: `Addr` required; `Op` 0 (or absent) adds, 1
/// deletes; `Metadata` kept when it is an object (strings as they are,
/// other values as JSON text), ignored otherwise.
fn decode_naming(name: &str, value: &[u8]) -> Result<Option<Member>, DecodeError> {
    let bad = |why: String| DecodeError::Naming(why);
    let value: Value =
        serde_json::from_slice(value).map_err(|e| DecodeError::Json(e.to_string()))?;
    let Value::Object(object) = value else {
        return Err(DecodeError::NotAnObject);
    };
    match object.get("Op") {
        None | Some(Value::Null) => {}
        Some(op) => match op.as_u64() {
            Some(0) => {}
            Some(1) => return Ok(None),
            _ => return Err(bad(format!("unknown Op {op}"))),
        },
    }
    let addr = match object.get("Addr") {
        Some(Value::String(addr)) if !addr.is_empty() => addr,
        Some(Value::String(_)) | None | Some(Value::Null) => {
            return Err(bad(format!("no Addr (key {name:?})")))
        }
        Some(other) => return Err(bad(format!("Addr is not a string: {other}"))),
    };
    let endpoint: Endpoint = addr.parse().map_err(|e: Error| bad(e.to_string()))?;
    let mut member = Member::new(endpoint);
    if let Some(Value::Object(metadata)) = object.get("Metadata") {
        member.metadata = metadata
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.clone(), v)
            })
            .collect::<BTreeMap<_, _>>();
    }
    Ok(Some(member))
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Format {
    type Err = Error;

    /// `finagle` or `etcd-naming`.
    fn from_str(input: &str) -> Result<Self, Error> {
        match input {
            "finagle" => Ok(Format::Finagle),
            "etcd-naming" => Ok(Format::EtcdNaming),
            other => Err(Error::InvalidConfig(format!(
                "unknown format {other:?}: expected finagle or etcd-naming"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn naming_values_written_by_go_are_read_exactly() {
        let f = Format::EtcdNaming;
        // etcd 3.4's naming.Update and 3.5's endpoints.Endpoint.
        let m = f
            .decode(
                "10.0.0.1:8080",
                br#"{"Op":0,"Addr":"10.0.0.1:8080","Metadata":null}"#,
            )
            .unwrap()
            .unwrap();
        assert_eq!(m, Member::new(Endpoint::new("10.0.0.1", 8080)));
        let m = f
            .decode("x", br#"{"Addr":"[::1]:9","Metadata":{"zone":"eu","w":2}}"#)
            .unwrap()
            .unwrap();
        assert_eq!(m.service_endpoint, Endpoint::new("::1", 9));
        assert_eq!(m.metadata["zone"], "eu");
        assert_eq!(m.metadata["w"], "2");
        assert_eq!(f.decode("x", br#"{"Op":1,"Addr":"a:1"}"#), Ok(None));
    }

    #[test]
    fn bad_naming_values_say_why() {
        let f = Format::EtcdNaming;
        for (value, why) in [
            (&b"not json"[..], "invalid JSON"),
            (b"[1]", "not an object"),
            (br#"{"Op":0}"#, "no Addr"),
            (br#"{"Addr":""}"#, "no Addr"),
            (br#"{"Addr":7}"#, "not a string"),
            (br#"{"Addr":"nohost"}"#, "host:port"),
            (br#"{"Addr":"h:99999"}"#, "port"),
            (br#"{"Op":7,"Addr":"h:1"}"#, "unknown Op"),
        ] {
            let error = f.decode("k", value).unwrap_err().to_string();
            assert!(error.contains(why), "{error} for {value:?}");
        }
    }

    #[test]
    fn round_trips_and_names() {
        let member = Member::new(Endpoint::new("h", 1))
            .with_additional("http", Endpoint::new("h", 2))
            .with_shard(3);
        let f = Format::Finagle;
        assert_eq!(
            f.decode("member_1", &f.encode(&member)),
            Ok(Some(member.clone()))
        );
        assert_eq!(f.name(&member, 255), "member_00000000000000ff");
        assert!(f.is_member("member_00000000000000ff"));
        assert!(!f.is_member("vector_1"));
        assert!(!Format::EtcdNaming.is_member("member_00000000000000ff"));
        assert!(Format::EtcdNaming.is_member("10.0.0.1:80"));
        assert_eq!(Format::EtcdNaming.name(&member, 255), "h:1");
        assert_eq!("etcd-naming".parse::<Format>().unwrap(), Format::EtcdNaming);
        assert!("zk".parse::<Format>().is_err());
    }
}
