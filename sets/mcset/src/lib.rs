//! # mcset
//!
//! A consistent-hash memcache client over a serverset: the servers come
//! from a ZooKeeper [`Watch`](serversets::Watch) or a `fixedset::FixedSet`,
//! the ring follows the set, and keys go where Finagle's memcached client
//! and libmemcached's weighted ketama (pylibmc with `ketama_weighted`) send
//! them, so Rust, JVM and Python services share one pool without misses.
//!
//! - [`ring`]: the ketama ring (MD5, 160 points per server at equal
//!   weight), reproducing the twitter/util and libmemcached test vector.
//! - [`McSet`]: the async client: `get`, `set`, `add`, `replace`, `delete`,
//!   `increment`, `decrement`, `touch`, and `get_multi` fanned out to the
//!   servers in parallel.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use mcset::McSet;
//! use serversets::{Client, ServerSetPath};
//!
//! let zk = Client::connect("127.0.0.1:2181").await?;
//! let watch = zk.watch(&ServerSetPath::new("/discovery/prod/memcached")?).await?;
//! let cache = McSet::new(watch);
//! cache.set("greeting", b"hello", 300).await?;
//! println!("{:?} on {:?}", cache.get("greeting").await?, cache.server_for("greeting"));
//! # Ok(()) }
//! ```

mod client;
mod error;
pub mod ring;

pub use client::{McSet, Options};
pub use error::{check_key, Error, MAX_KEY_LEN};
pub use ring::{Compatibility, Identifier, KetamaRing};
