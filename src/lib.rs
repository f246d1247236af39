//! # serversets
//!
//! Service discovery in the Finagle "serverset" style, over ZooKeeper.
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
//!   [`Changes`] stream with deltas; a change costs ZooKeeper reads of the
//!   changed members only.
//! - [`Source`]: what typed sets are built on; a [`Watch`] is one, a fixed
//!   list ([`FixedSet`]) is another.
//! - [`accrual`]: failure accrual (consecutive failures mark an endpoint
//!   dead for a jittered, growing backoff), shared by every typed set.
//! - [`codec`], [`vector`], [`Destination`], [`Selection`]: the Finagle
//!   formats, usable without a connection.
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

pub mod accrual;
mod acl;
mod client;
pub mod codec;
mod destination;
mod endpoint;
mod error;
pub mod fixed;
mod health;
mod member;
mod path;
mod publisher;
mod registration;
mod selection;
mod served;
mod session;
mod snapshot;
mod source;
mod stabilizer;
#[cfg(feature = "tls")]
mod tls;
pub mod vector;
mod watch;

pub use acl::NodeAcl;
pub use client::{
    Client, ClientBuilder, RawChild, DEFAULT_CONNECT_TIMEOUT, DEFAULT_SESSION_TIMEOUT,
};
pub use destination::Destination;
pub use endpoint::Endpoint;
pub use error::{Error, Result};
pub use fixed::{FixedEndpoint, FixedSet};
pub use health::{Health, HealthWatcher};
pub use member::{member_sequence, Member, Status, MEMBER_PREFIX, VECTOR_PREFIX};
pub use path::{Environment, ServerSetPath, DISCOVERY_ROOT};
pub use publisher::{Changes, Publisher};
pub use registration::{RegisterOptions, Registration};
pub use selection::{Selection, WatchOptions};
pub use snapshot::{Change, Entry, Snapshot};
pub use source::Source;
#[cfg(feature = "tls")]
pub use tls::Tls;
pub use watch::Watch;
