//! The Finagle serverset formats, pure: set paths, endpoints, members and
//! their JSON, weight vectors, destinations, endpoint selections, node
//! ACLs, and how members are stored in etcd ([`naming`]). No I/O and no runtime: usable without a connection.

pub(crate) mod acl;
pub mod codec;
pub(crate) mod destination;
pub(crate) mod endpoint;
pub(crate) mod member;
pub mod naming;
pub(crate) mod path;
pub(crate) mod selection;
pub mod vector;
