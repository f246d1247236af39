//! # serversets-memcache
//!
//! A consistent-hash memcache client over a serverset: the servers come
//! from a ZooKeeper [`Watch`](serversets::Watch) or a `serversets::FixedSet`,
//! the ring follows the set, and keys go where Finagle's memcached client
//! and libmemcached's weighted ketama (pylibmc with `ketama_weighted`) send
//! them, so Rust, JVM and Python services share one pool without misses.
//!
//! - [`ring`]: the ketama ring (MD5, 160 points per server at equal
//!   weight), reproducing the twitter/util and libmemcached test vector.
//! - [`McSet`]: the async client: `get`, `gets` + `cas`, `set`, `add`,
//!   `replace`, `delete`, `increment`, `decrement`, `touch`, and
//!   `get_multi` fanned out to the servers in parallel.
//!
//! # Correct under faults
//!
//! - **Async transport**: `async-memcached` over memcached's meta
//!   protocol, pooled per server (the `serversets-pool` pool), no thread per server
//!   and no blocking pool.
//! - **Replies match their requests**: one request per connection at a
//!   time; a connection whose request timed out, was cancelled (the
//!   caller's future dropped) or failed is closed, never reused; gets ask
//!   the server to echo the key and compare it.
//! - **One deadline per operation** ([`McSetBuilder::timeout`], default
//!   1 s) for connect, waiting for a connection and I/O together.
//! - **Failure accrual** (`serversets::accrual`, as Finagle's): after 5
//!   failures or timeouts in a row a server is marked dead for a jittered,
//!   growing backoff and its keys fail at once ([`Error::Dead`]); with
//!   [`McSetBuilder::eject_failed_hosts`] it leaves the ring instead, so
//!   its keys re-hash to the others (the ring without it equals the ring
//!   built without it), and re-enters when a probe succeeds.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use serversets_memcache::McSet;
//! use serversets::{Client, ServerSetPath};
//!
//! let zk = Client::connect("127.0.0.1:2181").await?;
//! let watch = zk.watch(&ServerSetPath::new("/discovery/prod/memcached")?).await?;
//! let cache = McSet::new(watch);
//! cache.set("greeting", b"hello", 300).await?;
//! println!("{:?} on {:?}", cache.get("greeting").await?, cache.server_for("greeting"));
//! if let Some((value, token)) = cache.gets("greeting").await? {
//!     let mut value = value;
//!     value.extend_from_slice(b", world");
//!     println!("{:?}", cache.cas("greeting", &value, 300, token).await?);
//! }
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

mod client;
mod command;
mod error;
pub mod ring;
mod server;

pub use client::{McSet, McSetBuilder, DEFAULT_MAX_VALUE_LEN};
pub use command::CasOutcome;
pub use error::{check_key, Error, MAX_KEY_LEN};
pub use ring::{Compatibility, Identifier, KetamaRing};
