//! Watching a set on etcd: a prefix get, then a watch from the get's
//! revision + 1, events applied incrementally. A broken watch resumes from
//! the last revision applied; one etcd compacted past or cancelled loads
//! the set again (a get and a diff). The last good set is kept while etcd
//! is unreachable.
//!
//! - [`machine`]: the members under the prefix, pure, property-tested;
//! - [`engine`]: the task shared by every watch of one prefix and format
//!   through one client: the I/O around the machine and the
//!   [`Hub`](crate::set::watch::hub::Hub) of views.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::etcd::client::Shared;
use crate::format::path::ServerSetPath;
use crate::set::options::WatchOptions;
use crate::set::watch::Watch;

pub(crate) mod engine;
pub(crate) mod machine;

use machine::Kv;

/// How many keys one get returns at most: a set of any size is read in
/// pages of this many (each well under gRPC's 4 MB message limit), all at
/// the first page's revision.
const PAGE: i64 = 2_000;

/// Watches `path` through `shared`: joins the engine of that prefix and
/// format if one runs, or starts one, and waits for the first load.
pub(crate) async fn start(
    shared: Arc<Shared>,
    path: ServerSetPath,
    options: WatchOptions,
) -> Result<Watch> {
    let wait = shared.config.connect_timeout;
    let handle = engine::subscribe(&shared, &path, options);
    Watch::subscribed(handle, &path, wait).await
}

/// Every key under `prefix` at one revision, read in pages; returns that
/// revision and the keys (sorted by key).
pub(crate) async fn get_all(shared: &Shared, prefix: &str) -> Result<(i64, Vec<Kv>)> {
    let end = prefix_end(prefix.as_bytes());
    let mut kv = shared
        .etcd
        .kv_client()
        .max_decoding_message_size(engine::MAX_MESSAGE);
    let mut from = prefix.as_bytes().to_vec();
    let mut revision = 0;
    let mut all = Vec::new();
    loop {
        let mut options = etcd_client::GetOptions::new()
            .with_range(end.clone())
            .with_limit(PAGE);
        if revision > 0 {
            options = options.with_revision(revision);
        }
        let get = kv.get(from.clone(), Some(options));
        let mut response = match tokio::time::timeout(shared.config.request_timeout, get).await {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => return Err(Error::etcd("get", prefix, &e)),
            Err(_) => {
                return Err(Error::Timeout {
                    what: format!("etcd get of {prefix}"),
                    after: shared.config.request_timeout,
                })
            }
        };
        if revision == 0 {
            revision = response.header().map_or(0, |h| h.revision());
        }
        let more = response.more();
        let kvs = response.take_kvs();
        let Some(last) = kvs.last() else {
            break;
        };
        from = last.key().to_vec();
        from.push(0);
        all.extend(kvs.into_iter().map(|kv| Kv {
            key: kv.key().to_vec(),
            value: kv.value().to_vec(),
            create_revision: kv.create_revision(),
            mod_revision: kv.mod_revision(),
        }));
        if !more {
            break;
        }
    }
    Ok((revision, all))
}

/// The end of the key range of `prefix`: the prefix with its last byte
/// incremented (etcd's `GetPrefixRangeEnd`).
pub(crate) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // All 0xff: to the end of the keyspace.
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"/s/"), b"/s0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff"), b"\0");
    }
}
