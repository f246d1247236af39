//! The query string of the set routes: `path=P[&endpoint=NAME][&shard=N]
//! [&meta.KEY=VALUE...][&format=finagle|etcd-naming]`, checked.

use serversets::naming::Format;
use serversets::{Selection, ServerSetPath};

use super::error::ApiError;

/// A set and which of its members a request wants.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SetQuery {
    /// The set.
    pub path: ServerSetPath,
    /// The endpoint, shard and metadata filters.
    pub selection: Selection,
    /// How the set's members are stored (etcd; ZooKeeper sets are always
    /// Finagle's).
    pub format: Format,
}

impl SetQuery {
    /// Parses `pairs` (decoded query pairs); unknown keys are refused.
    pub fn parse(pairs: &[(String, String)]) -> Result<SetQuery, ApiError> {
        let mut path = None;
        let mut selection = Selection::service();
        let mut format = None;
        for (key, value) in pairs {
            match key.as_str() {
                "path" => {
                    if path.is_some() {
                        return Err(ApiError::bad_request("path is given more than once"));
                    }
                    path = Some(parse_path(value)?);
                }
                "format" => {
                    if format.is_some() {
                        return Err(ApiError::bad_request("format is given more than once"));
                    }
                    format = Some(parse_format(value)?);
                }
                "endpoint" if value.is_empty() => {
                    return Err(ApiError::bad_request("endpoint must not be empty"))
                }
                "endpoint" => selection = selection.with_endpoint(Some(value.clone())),
                "shard" => {
                    let shard = value.parse::<i32>().map_err(|_| {
                        ApiError::bad_request(format!("shard {value:?} is not a 32-bit integer"))
                    })?;
                    selection = selection.with_shard(shard);
                }
                other => match other.strip_prefix("meta.") {
                    Some(meta) if !meta.is_empty() => {
                        selection = selection.with_metadata(meta, value.clone())
                    }
                    _ => {
                        return Err(ApiError::bad_request(format!(
                            "unknown query parameter {other:?} (path, endpoint, shard, meta.KEY, format)"
                        )))
                    }
                },
            }
        }
        let path =
            path.ok_or_else(|| ApiError::bad_request("path is required (path=/discovery/...)"))?;
        Ok(SetQuery {
            path,
            selection,
            format: format.unwrap_or_default(),
        })
    }

    /// Only `path=P[&format=F]`: for the routes that take no filter.
    pub fn path_only(pairs: &[(String, String)]) -> Result<(ServerSetPath, Format), ApiError> {
        let query = SetQuery::parse(pairs)?;
        if query.selection != Selection::service() {
            return Err(ApiError::bad_request(
                "this route takes only path=... (and format=...)",
            ));
        }
        Ok((query.path, query.format))
    }
}

/// `finagle` or `etcd-naming`.
pub fn parse_format(value: &str) -> Result<Format, ApiError> {
    value.parse::<Format>().map_err(|_| {
        ApiError::bad_request(format!(
            "unknown format {value:?}: expected finagle or etcd-naming"
        ))
    })
}

/// A set path: absolute and legal in ZooKeeper.
pub fn parse_path(value: &str) -> Result<ServerSetPath, ApiError> {
    ServerSetPath::new(value).map_err(|e| ApiError::bad_request(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(query: &str) -> Vec<(String, String)> {
        query
            .split('&')
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    #[test]
    fn filters_are_read_and_mistakes_refused() {
        let q = SetQuery::parse(&pairs("path=/d/s&endpoint=http&shard=3&meta.zone=eu")).unwrap();
        assert_eq!(q.path.as_str(), "/d/s");
        assert_eq!(q.selection.endpoint_name(), Some("http"));
        assert_eq!(q.selection.shard(), Some(3));
        assert_eq!(
            q.selection.metadata().get("zone").map(String::as_str),
            Some("eu")
        );
        assert_eq!(q.format, Format::Finagle, "the default");
        let q = SetQuery::parse(&pairs("path=/d/s&format=etcd-naming")).unwrap();
        assert_eq!(q.format, Format::EtcdNaming);
        assert_eq!(
            SetQuery::path_only(&pairs("path=/d/s&format=finagle")).unwrap(),
            (ServerSetPath::new("/d/s").unwrap(), Format::Finagle)
        );
        assert!(SetQuery::path_only(&pairs("path=/d/s&shard=1")).is_err());
        for bad in [
            "path=/d/s&format=bogus",
            "path=/d/s&format=",
            "path=/d/s&format=finagle&format=etcd-naming",
            "endpoint=http",
            "path=relative",
            "path=/d/s&shard=x",
            "path=/d/s&color=red",
            "path=/d/s&meta.=x",
            "path=/d/s&path=/d/t",
            "path=/d/s&endpoint=",
        ] {
            let e = SetQuery::parse(&pairs(bad)).expect_err(bad);
            assert_eq!(e.status(), axum::http::StatusCode::BAD_REQUEST, "{bad}");
        }
    }
}
