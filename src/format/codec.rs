//! The Finagle member JSON codec.
//!
//! Writing always produces `serviceEndpoint`, `additionalEndpoints` (`{}`
//! when empty) and `status`, plus `shard` and `metadata` when set, so Java
//! and Python commons readers accept it. Reading is lenient in the way
//! Finagle's serverset2 is: unknown fields are ignored, a malformed
//! additional endpoint is dropped, a non-integer shard is treated as unset,
//! a missing or unknown status is read as [`Status::Unknown`] (not live).
//! Only a member whose JSON is unusable, or whose service endpoint is
//! malformed, is rejected with a [`DecodeError`].

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::format::endpoint::Endpoint;
use crate::format::member::{Member, Status};

/// Why a member's data could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The znode holds no data.
    #[error("the member has no data")]
    Empty,
    /// The data is not valid UTF-8 JSON.
    #[error("invalid JSON: {0}")]
    Json(String),
    /// The JSON is not an object.
    #[error("the member JSON is not an object")]
    NotAnObject,
    /// `serviceEndpoint` is missing or malformed.
    #[error("serviceEndpoint: {0}")]
    ServiceEndpoint(&'static str),
    /// An etcd naming value (`{"Op":0,"Addr":...}`) that is not usable.
    #[error("{0}")]
    Naming(String),
}

/// Encodes a member as Finagle JSON.
///
/// ```
/// use serversets::{codec, Endpoint, Member};
///
/// let json = codec::encode(&Member::new(Endpoint::new("10.0.0.1", 8080)));
/// assert_eq!(
///     String::from_utf8_lossy(&json),
///     r#"{"serviceEndpoint":{"host":"10.0.0.1","port":8080},"additionalEndpoints":{},"status":"ALIVE"}"#
/// );
/// ```
pub fn encode(member: &Member) -> Vec<u8> {
    // `Member`'s `Serialize` is Finagle's JSON. Serializing plain strings,
    // integers and maps cannot fail.
    serde_json::to_vec(member).unwrap_or_default()
}

/// A decoded member and the non-fatal problems found while reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// The member.
    pub member: Member,
    /// What was dropped or defaulted (for a warning naming the znode).
    pub warnings: Vec<String>,
}

/// Decodes Finagle member JSON leniently (see the module docs).
///
/// ```
/// use serversets::{codec, Status};
///
/// let d = codec::decode(br#"{"serviceEndpoint":{"host":"::1","port":80},
///     "additionalEndpoints":{"http":{"host":"::1","port":"x"}},
///     "status":"ALIVE","shard":"7","member_id":"ignored"}"#)?;
/// assert_eq!(d.member.service_endpoint.to_string(), "[::1]:80");
/// assert!(d.member.additional_endpoints.is_empty()); // port was a string
/// assert_eq!(d.member.shard, None); // shard was not an integer
/// assert_eq!(d.member.status, Status::Alive);
/// assert_eq!(d.warnings.len(), 2);
/// # Ok::<(), serversets::codec::DecodeError>(())
/// ```
pub fn decode(data: &[u8]) -> Result<Decoded, DecodeError> {
    if data.iter().all(u8::is_ascii_whitespace) {
        return Err(DecodeError::Empty);
    }
    let value: Value =
        serde_json::from_slice(data).map_err(|e| DecodeError::Json(e.to_string()))?;
    let Value::Object(object) = value else {
        return Err(DecodeError::NotAnObject);
    };
    let mut warnings = Vec::new();
    let service_endpoint = match object.get("serviceEndpoint") {
        None | Some(Value::Null) => return Err(DecodeError::ServiceEndpoint("missing")),
        Some(value) => endpoint(value).map_err(DecodeError::ServiceEndpoint)?,
    };
    let mut additional_endpoints = BTreeMap::new();
    match object.get("additionalEndpoints") {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            for (name, value) in map {
                match endpoint(value) {
                    Ok(e) => {
                        additional_endpoints.insert(name.clone(), e);
                    }
                    Err(why) => {
                        warnings.push(format!("additional endpoint {name:?} dropped: {why}"))
                    }
                }
            }
        }
        Some(_) => warnings.push("additionalEndpoints is not an object; ignored".into()),
    }
    let status = match object.get("status") {
        Some(Value::String(s)) => {
            let status = Status::parse(s);
            if status == Status::Unknown {
                warnings.push(format!("unknown status {s:?}; not live"));
            }
            status
        }
        _ => {
            warnings.push("status missing or not a string; not live".into());
            Status::Unknown
        }
    };
    let shard = match object.get("shard") {
        None | Some(Value::Null) => None,
        Some(value) => {
            let shard = value.as_i64().and_then(|n| i32::try_from(n).ok());
            if shard.is_none() {
                warnings.push(format!(
                    "shard {value} is not a 32-bit integer; treated as unset"
                ));
            }
            shard
        }
    };
    let metadata = string_map(&object, "metadata", &mut warnings);
    Ok(Decoded {
        member: Member {
            service_endpoint,
            additional_endpoints,
            status,
            shard,
            metadata,
        },
        warnings,
    })
}

fn endpoint(value: &Value) -> Result<Endpoint, &'static str> {
    let Value::Object(object) = value else {
        return Err("not an object");
    };
    let host = match object.get("host") {
        Some(Value::String(host)) if !host.is_empty() => host,
        Some(Value::String(_)) => return Err("host is empty"),
        Some(_) => return Err("host is not a string"),
        None => return Err("host is missing"),
    };
    let port = match object.get("port") {
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .ok_or("port is not an integer from 0 to 65535")?,
        Some(_) => return Err("port is not an integer"),
        None => return Err("port is missing"),
    };
    Ok(Endpoint::new(host.clone(), port))
}

fn string_map(
    object: &Map<String, Value>,
    key: &str,
    warnings: &mut Vec<String>,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    match object.get(key) {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            for (k, v) in map {
                match v {
                    Value::String(s) => {
                        out.insert(k.clone(), s.clone());
                    }
                    other => warnings.push(format!("{key}.{k} = {other} is not a string; dropped")),
                }
            }
        }
        Some(_) => warnings.push(format!("{key} is not an object; ignored")),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full_member() -> Member {
        Member::new(Endpoint::new("10.0.0.1", 8080))
            .with_additional("http", Endpoint::new("10.0.0.1", 8081))
            .with_additional("admin", Endpoint::new("::1", 9990))
            .with_shard(7)
            .with_metadata("k", "v")
    }

    #[test]
    fn round_trip() {
        let member = full_member();
        let bytes = encode(&member);
        let decoded = decode(&bytes).unwrap();
        assert_eq!(decoded.member, member);
        assert!(decoded.warnings.is_empty());
    }

    #[test]
    fn writes_finagle_shape() {
        let v: Value = serde_json::from_slice(&encode(&full_member())).unwrap();
        assert_eq!(v["serviceEndpoint"]["host"], "10.0.0.1");
        assert_eq!(v["serviceEndpoint"]["port"], 8080);
        assert_eq!(v["additionalEndpoints"]["http"]["port"], 8081);
        assert_eq!(v["additionalEndpoints"]["admin"]["host"], "::1");
        assert_eq!(v["status"], "ALIVE");
        assert_eq!(v["shard"], 7);
        assert_eq!(v["metadata"]["k"], "v");
        let bare: Value =
            serde_json::from_slice(&encode(&Member::new(Endpoint::new("h", 1)))).unwrap();
        assert_eq!(bare["additionalEndpoints"], serde_json::json!({}));
        assert!(bare.get("shard").is_none() && bare.get("metadata").is_none());
    }

    #[test]
    fn reads_python_commons_member() {
        let data = br#"{"serviceEndpoint": {"host": "10.1.2.3", "port": 31337},
            "additionalEndpoints": {"aurora": {"host": "10.1.2.3", "port": 31338}},
            "status": "ALIVE", "shard": 0, "member_id": "x", "inet": "10.1.2.3"}"#;
        let d = decode(data).unwrap();
        assert_eq!(d.member.shard, Some(0));
        assert_eq!(d.member.additional("aurora").unwrap().port, 31338);
        assert!(d.warnings.is_empty());
    }

    #[test]
    fn rejects_unusable_members() {
        let cases: [(&[u8], DecodeError); 7] = [
            (b"", DecodeError::Empty),
            (b"  ", DecodeError::Empty),
            (b"[1,2]", DecodeError::NotAnObject),
            (
                br#"{"status":"ALIVE"}"#,
                DecodeError::ServiceEndpoint("missing"),
            ),
            (
                br#"{"serviceEndpoint":{"port":1}}"#,
                DecodeError::ServiceEndpoint("host is missing"),
            ),
            (
                br#"{"serviceEndpoint":{"host":"h","port":"80"}}"#,
                DecodeError::ServiceEndpoint("port is not an integer"),
            ),
            (
                br#"{"serviceEndpoint":{"host":"h","port":70000}}"#,
                DecodeError::ServiceEndpoint("port is not an integer from 0 to 65535"),
            ),
        ];
        for (data, want) in cases {
            assert_eq!(
                decode(data).unwrap_err(),
                want,
                "{:?}",
                String::from_utf8_lossy(data)
            );
        }
        assert!(matches!(decode(b"{not json"), Err(DecodeError::Json(_))));
        assert!(matches!(decode(&[0xff, 0xfe]), Err(DecodeError::Json(_))));
    }

    #[test]
    fn lenient_fields() {
        let d = decode(br#"{"serviceEndpoint":{"host":"h","port":1},"status":"BOGUS","shard":1.5,"metadata":{"a":"b","n":1}}"#).unwrap();
        assert_eq!(d.member.status, Status::Unknown);
        assert_eq!(d.member.shard, None);
        assert_eq!(d.member.metadata.len(), 1);
        assert_eq!(d.warnings.len(), 3);
        let d = decode(br#"{"serviceEndpoint":{"host":"h","port":1}}"#).unwrap();
        assert!(!d.member.is_live());
    }
}
