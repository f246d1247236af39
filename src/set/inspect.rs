//! A set's children as they are stored, for diagnosis (the CLI's `ls`).

use crate::format::codec::DecodeError;
use crate::format::member::Member;

/// One child of a set as it is stored, as
/// [`Client::inspect`](crate::Client::inspect) (or `EtcdClient::inspect`)
/// sees it.
#[derive(Debug, Clone)]
pub struct RawChild {
    /// The child's znode name (on etcd: its key below the set's prefix).
    pub name: String,
    /// Its raw data.
    pub data: Vec<u8>,
    /// The member it decodes to, or why not (`None` for non-member
    /// children such as `vector_` nodes).
    pub decoded: Option<std::result::Result<Member, DecodeError>>,
}
