//! # serversets
//!
//! Service discovery in the Finagle "serverset" style, over ZooKeeper or
//! (feature `etcd`) etcd.
//!
//! Services register as EPHEMERAL_SEQUENTIAL `member_` znodes holding
//! Finagle's JSON, so JVM (Finagle, Twitter commons, Aurora) and Python
//! clients see them, and Rust clients see theirs. Clients watch a set and
//! always hold its current members.
//!
//! - [`Client`]: one ZooKeeper session per process, shared by every
//!   registration and watch, rebuilt after expiry with everything restored.
//! - [`Client::register`] → [`Registration`]: keeps a member registered
//!   (optional health check); deleting it on close or drop.
//! - [`Client::watch`] → [`Watch`]: a lock-free current [`Snapshot`] and a
//!   [`Changes`] stream with deltas. One persistent recursive ZooKeeper
//!   watch per set names each child that joins or leaves: a join costs one
//!   read, a leave none, whatever the set's size ([`WatchEngine`]; servers
//!   before 3.6 get one-shot watches). Watches of one path share it.
//! - `EtcdClient` (feature `etcd`): the same registrations (kept alive by
//!   a lease) and the same [`Watch`]es over etcd v3, one connection per
//!   process, members in Finagle's JSON or etcd's gRPC naming format
//!   ([`naming`]); [`Backend`] holds either client.
//! - [`Source`]: what typed sets are built on; a [`Watch`] is one, a fixed
//!   list ([`FixedSet`]) is another.
//! - [`accrual`]: failure accrual (consecutive failures mark an endpoint
//!   dead for a jittered, growing backoff), shared by every typed set.
//! - [`codec`], [`vector`], [`Destination`], [`Selection`]: the Finagle
//!   formats, usable without a connection.
//! - [`metrics`]: the metrics recorded through the `metrics` facade (set
//!   sizes and health, session events, ZooKeeper requests, registrations,
//!   typed sets' requests and ejections), free until a recorder is
//!   installed.
//!
//! The source is in three layers: `format/` (the pure Finagle formats),
//! `set/` (the set abstraction typed sets read, the [`Watch`] and
//! [`Registration`] handles and the hub of views both runtimes feed) and
//! the runtimes `zk/` and `etcd/` (pure state machines for watches and
//! registrations, and the tasks that do their I/O).
//! - Feature `tls`: `Tls` and `ClientBuilder::tls`, to connect to
//!   ZooKeeper's secure client port.
//!
//! ```no_run
//! # async fn demo() -> Result<(), serversets::Error> {
//! use serversets::{Client, Destination, Endpoint, Member, Selection};
//!
//! let dest: Destination = "zk2!127.0.0.1:2181!/discovery/prod/users!http".parse()?;
//! let client = Client::connect(&dest.connect).await?;
//! let member = Member::new(Endpoint::new("10.0.0.1", 9090))
//!     .with_additional("http", Endpoint::new("10.0.0.1", 8080));
//! let _registration = client.register(&dest.path, member).await?;
//!
//! let watch = client
//!     .watch_with(&dest.path, Selection::service().with_endpoint(dest.endpoint))
//!     .await?;
//! if let Some(leader) = watch.current().leader() {
//!     println!("leader: {} ({})", leader.name, leader.endpoint);
//! }
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

mod backend;
mod backoff;
mod error;
#[cfg(feature = "etcd")]
mod etcd;
mod format;
pub mod metrics;
mod set;
mod zk;

pub use backend::{Backend, ETCD_SCHEME};
pub use error::{Error, Result};
#[cfg(feature = "etcd")]
pub use etcd::client::{
    EtcdClient, EtcdClientBuilder, DEFAULT_ETCD_CONNECT_TIMEOUT, DEFAULT_ETCD_REQUEST_TIMEOUT,
};
pub use format::acl::NodeAcl;
pub use format::destination::Destination;
pub use format::endpoint::Endpoint;
pub use format::member::{member_sequence, Member, Status, MEMBER_PREFIX, VECTOR_PREFIX};
pub use format::path::{Environment, ServerSetPath, DISCOVERY_ROOT};
pub use format::selection::Selection;
pub use format::{codec, naming, vector};
pub use set::fixed::{FixedEndpoint, FixedSet};
pub use set::health::{Health, HealthWatcher};
pub use set::inspect::RawChild;
pub use set::leader::Leaders;
pub use set::options::WatchOptions;
pub use set::publisher::{Changes, Publisher};
pub use set::registration::{RegisterOptions, Registration, DEFAULT_TTL};
pub use set::snapshot::{Change, Entry, Snapshot};
pub use set::source::Source;
pub use set::watch::{Watch, WatchEngine, WatchStats};
pub use set::{accrual, fixed};
pub use zk::client::{Client, ClientBuilder, DEFAULT_CONNECT_TIMEOUT, DEFAULT_SESSION_TIMEOUT};
#[cfg(feature = "tls")]
pub use zk::tls::Tls;
