//! The etcd runtime (feature `etcd`): the client and its one connection,
//! watches of key prefixes and lease-backed registrations. It feeds the
//! same hub of views, [`Watch`](crate::Watch) and
//! [`Registration`](crate::Registration) as the ZooKeeper runtime, around
//! pure state machines of its own (`watch::machine`,
//! `registration::decide`).

pub(crate) mod client;
pub(crate) mod registration;
pub(crate) mod watch;
