//! Finagle weight vectors: `vector_*` znodes beside the members.
//!
//! A vector node holds
//! `{"vector":[{"select":"member=member_0000000007","weight":2.0,"priority":1}, ...]}`.
//! An endpoint's weight is the product of the weights of every descriptor,
//! across all vector nodes, whose selector matches it; 1.0 when none does.

use serde_json::Value;

use crate::format::endpoint::Endpoint;

/// What a descriptor selects.
#[derive(Debug, Clone, PartialEq)]
pub enum Selector {
    /// `member=member_0000000007`: one member znode by name.
    Member(String),
    /// `inet=host:port`: an endpoint by address.
    Inet(Endpoint),
    /// `shard=3`: members with this shard id.
    Shard(i32),
}

/// One `{"select": ..., "weight": ...}` descriptor.
#[derive(Debug, Clone, PartialEq)]
pub struct Descriptor {
    /// What it applies to.
    pub selector: Selector,
    /// The factor applied to matching endpoints.
    pub weight: f64,
}

/// One parsed `vector_` node.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Vector {
    /// Its usable descriptors.
    pub descriptors: Vec<Descriptor>,
}

/// Parses a vector node's data. Unusable descriptors are skipped and
/// described in the returned warnings; data that is not a vector at all is
/// an error (the node then contributes no weights).
///
/// ```
/// let (v, warnings) = serversets::vector::parse(
///     br#"{"vector":[{"select":"shard=3","weight":1.5},{"select":"bogus","weight":2}]}"#,
/// )?;
/// assert_eq!(v.descriptors.len(), 1);
/// assert_eq!(warnings.len(), 1);
/// # Ok::<(), String>(())
/// ```
pub fn parse(data: &[u8]) -> Result<(Vector, Vec<String>), String> {
    let value: Value = serde_json::from_slice(data).map_err(|e| format!("invalid JSON: {e}"))?;
    let Some(items) = value.get("vector").and_then(Value::as_array) else {
        return Err("no \"vector\" array".into());
    };
    let mut vector = Vector::default();
    let mut warnings = Vec::new();
    for item in items {
        match descriptor(item) {
            Ok(d) => vector.descriptors.push(d),
            Err(why) => warnings.push(format!("descriptor {item} skipped: {why}")),
        }
    }
    Ok((vector, warnings))
}

fn descriptor(item: &Value) -> Result<Descriptor, &'static str> {
    let select = item
        .get("select")
        .and_then(Value::as_str)
        .ok_or("\"select\" is missing or not a string")?;
    let weight = item
        .get("weight")
        .and_then(Value::as_f64)
        .ok_or("\"weight\" is missing or not a number")?;
    if !weight.is_finite() || weight < 0.0 {
        return Err("\"weight\" must be a finite, non-negative number");
    }
    let (kind, arg) = select
        .split_once('=')
        .ok_or("\"select\" must be kind=value")?;
    let selector = match kind {
        "member" if !arg.is_empty() => Selector::Member(arg.to_owned()),
        "inet" => Selector::Inet(arg.parse().map_err(|_| "inet selector is not host:port")?),
        "shard" => Selector::Shard(
            arg.parse()
                .map_err(|_| "shard selector is not an integer")?,
        ),
        _ => return Err("unknown selector kind (member, inet, shard)"),
    };
    Ok(Descriptor { selector, weight })
}

impl Selector {
    /// Whether this selector matches a member (by znode name, shard) whose
    /// selected endpoint is `endpoint`.
    pub fn matches(&self, name: &str, shard: Option<i32>, endpoint: &Endpoint) -> bool {
        match self {
            Selector::Member(which) => which == name,
            Selector::Inet(addr) => addr == endpoint,
            Selector::Shard(which) => shard == Some(*which),
        }
    }
}

/// The weight of one endpoint under a set of vectors.
pub fn weight<'a>(
    vectors: impl IntoIterator<Item = &'a Vector>,
    name: &str,
    shard: Option<i32>,
    endpoint: &Endpoint,
) -> f64 {
    vectors
        .into_iter()
        .flat_map(|v| &v.descriptors)
        .filter(|d| d.selector.matches(name, shard, endpoint))
        .map(|d| d.weight)
        .product()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_finagle_example() {
        let (v, w) = parse(
            br#"{"vector":[{"select":"member=member_0000000007","weight":2.0,"priority":1},
            {"select":"inet=10.0.0.1:8080","weight":0.5},{"select":"shard=3","weight":1.5}]}"#,
        )
        .unwrap();
        assert!(w.is_empty());
        assert_eq!(
            v.descriptors[0].selector,
            Selector::Member("member_0000000007".into())
        );
        assert_eq!(
            v.descriptors[1].selector,
            Selector::Inet(Endpoint::new("10.0.0.1", 8080))
        );
        assert_eq!(v.descriptors[2].selector, Selector::Shard(3));
    }

    #[test]
    fn weights_multiply_across_vectors() {
        let (a, _) = parse(br#"{"vector":[{"select":"member=member_1","weight":2.0},{"select":"shard=3","weight":1.5}]}"#).unwrap();
        let (b, _) = parse(br#"{"vector":[{"select":"inet=h:1","weight":0.5}]}"#).unwrap();
        let e = Endpoint::new("h", 1);
        assert_eq!(weight([&a, &b], "member_1", Some(3), &e), 2.0 * 1.5 * 0.5);
        assert_eq!(
            weight([&a, &b], "member_2", None, &Endpoint::new("h", 2)),
            1.0
        );
        assert_eq!(weight([], "member_1", None, &e), 1.0);
    }

    #[test]
    fn bad_vectors() {
        assert!(parse(b"nope").is_err());
        assert!(parse(br#"{"other":1}"#).is_err());
        let (v, w) = parse(br#"{"vector":[1,{"select":"shard=x","weight":1},{"select":"member=m","weight":-1},{"select":"inet=h:1"}]}"#).unwrap();
        assert!(v.descriptors.is_empty());
        assert_eq!(w.len(), 4);
    }
}
