//! # serversets-pool
//!
//! Least-request connection pools over a serverset: one pool per endpoint,
//! over any connection type you can open from an address (TCP, Thrift, a
//! database driver: see [`Connector`]), the Rust successor of
//! go.serversets' `thriftset`.
//!
//! - **least request**: a checkout goes to the endpoint with the fewest
//!   connections checked out, ties broken at random; slow endpoints hold
//!   their connections longer and so get fewer requests.
//! - **idle reuse**: a checkout takes the endpoint's newest idle
//!   connection (closing those older than the idle timeout), else opens
//!   one within the connect timeout; the guard returns it on drop.
//! - **limits**: at most `max_active` connections checked out and
//!   `max_idle` idle per endpoint; a checkout waits (up to the checkout
//!   timeout) when every endpoint is at its limit.
//! - **follows the set**: an endpoint that leaves is drained (idle
//!   connections closed at once, checked-out ones when returned), a new one
//!   is used at once; the request path reads the endpoint list without a
//!   lock.
//! - **failure accrual**: the mechanism every typed set shares,
//!   [`serversets::accrual`]. Failed or timed-out connects and connections
//!   marked broken ([`Pooled::mark_broken`]) count as failures; a
//!   connection returned healthy resets the count. After
//!   [`Options::failure_accrual()`]'s failures in a row (default 5) the
//!   endpoint is marked dead and skipped for a jittered backoff (default
//!   100 ms, doubling up to 1 s) and its idle connections are closed; then
//!   one checkout probes it with a new connection, which revives it or
//!   marks it dead again. The last live endpoint is never marked dead, and when
//!   every endpoint left to try is dead a checkout still uses one.
//!   [`PoolSet::accrual_stats`] counts markings and revivals. A failed
//!   connect is retried on other endpoints.
//! - **client-side closing**: a connection the
//!   [`Connector::is_broken`] hook reports broken (say, its operation was
//!   cancelled halfway) is closed on return and skipped on checkout,
//!   without counting as a failure; [`PoolSet::clear_idle`] closes every
//!   idle connection at once.
//!
//! Endpoint weights are not used: the load itself decides.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use serversets_pool::{Options, PoolSet, TcpConnector};
//! use tokio::io::AsyncWriteExt;
//!
//! let servers = serversets::FixedSet::parse("10.0.0.1:9090,10.0.0.2:9090")?;
//! let options = Options::new()
//!     .max_active(16)
//!     .connect_timeout(Duration::from_millis(250))
//!     .checkout_timeout(Duration::from_millis(200));
//! let pool = PoolSet::with_options(servers, TcpConnector::new(), options);
//! let mut conn = pool.checkout().await?;
//! println!("talking to {}", conn.endpoint());
//! conn.write_all(b"ping\n").await?;
//! # Ok(()) }
//! ```

#![warn(missing_docs)]
// `Pooled` moves its connection out in `Drop` and `into_inner`, which safe
// Rust allows only through `ManuallyDrop::take` (the two `unsafe` blocks in
// slot.rs); an `Option` instead would need a panicking branch in every deref.
#![allow(unsafe_code)]

mod connector;
mod error;
mod options;
mod pool;
mod slot;

pub use connector::{Connector, TcpConnector};
pub use error::{BoxError, Error};
pub use options::Options;
pub use pool::{EndpointStats, PoolSet};
pub use serversets::accrual::{AccrualStats, FailureAccrual};
pub use slot::Pooled;
