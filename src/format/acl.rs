//! Who may do what to the znodes serversets creates.

use zookeeper_client as zk;

/// The ACL of znodes a registration creates: its member node, or the set
/// path's parents.
///
/// ZooKeeper checks DELETE on the parent: to stop other identities from
/// deleting members, protect the set path too (see
/// [`NodeAcl::protected_set`]).
///
/// ```
/// use serversets::{NodeAcl, RegisterOptions};
///
/// // With a client authenticated by `ClientBuilder::digest`: others may
/// // read the member and register their own, but not change or delete ours.
/// let options = RegisterOptions::new()
///     .acl(NodeAcl::creator_all_anyone_read())
///     .path_acl(NodeAcl::protected_set());
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct NodeAcl(Vec<zk::Acl>);

impl Default for NodeAcl {
    fn default() -> Self {
        NodeAcl::open()
    }
}

impl NodeAcl {
    /// Anyone may do anything (`world:anyone` ALL): what Finagle and
    /// Twitter commons write. The default.
    pub fn open() -> Self {
        NodeAcl(vec![zk::Acl::new(
            zk::Permission::ALL,
            zk::AuthId::anyone(),
        )])
    }

    /// The session's authenticated identities may do anything, anyone may
    /// read. Needs an authenticated session ([`crate::ClientBuilder::digest`]).
    pub fn creator_all_anyone_read() -> Self {
        NodeAcl(vec![
            zk::Acl::new(zk::Permission::ALL, zk::AuthId::authed()),
            zk::Acl::new(zk::Permission::READ, zk::AuthId::anyone()),
        ])
    }

    /// For a set path: the creator may do anything; anyone may read it and
    /// create members in it, but not delete members (nor change the path).
    pub fn protected_set() -> Self {
        NodeAcl(vec![
            zk::Acl::new(zk::Permission::ALL, zk::AuthId::authed()),
            zk::Acl::new(
                zk::Permission::READ | zk::Permission::CREATE,
                zk::AuthId::anyone(),
            ),
        ])
    }

    /// Any ACL list (must not be empty).
    pub fn custom(acls: Vec<zk::Acl>) -> Self {
        NodeAcl(acls)
    }

    /// The ACL entries.
    pub fn entries(&self) -> &[zk::Acl] {
        &self.0
    }
}
