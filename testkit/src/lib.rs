//! Test and demo harness: real servers on free loopback ports.
//!
//! Everything here is synchronous (plain `std`), so it can be used from any
//! test, async or not. Servers are child processes owned by the value that
//! started them; dropping that value kills the process and removes its
//! temporary directory, so a panicking test never leaks a server.
//!
//! * [`ZooKeeper`]: one standalone ZooKeeper server (Debian's `zookeeper`
//!   package, launched directly with `java`), optionally with a TLS client
//!   port ([`ZooKeeper::start_tls`], certificates from [`TestCerts`]).
//! * [`Ensemble`]: N ZooKeeper servers forming a quorum on loopback.
//! * [`Etcd`]: one etcd server (Debian's `etcd-server`, a single-node
//!   cluster), with `etcdctl` helpers to seed and inspect its keys.
//! * [`Memcached`]: one memcached server, with direct text-protocol helpers
//!   to seed and inspect its contents.
//! * [`HttpServer`]: a tiny in-process HTTP/1.1 server (keep-alive, `/echo`,
//!   request counting) that can be stopped and restarted on the same port.
//! * [`Proxy`]: a TCP proxy that can black-hole traffic (a partition).
//! * [`Browser`]: chromedriver driving headless Chromium (Debian's
//!   `chromium` and `chromium-driver`), for tests of web pages.
//! * [`ensure_installed`]: install missing Debian packages with `apt-get`.
//! * [`free_port`], [`free_ports`], [`dead_endpoint`], [`four_letter_word`],
//!   [`connections_to`]:
//!   small network helpers.
//!
//! ```no_run
//! let mut zk = testkit::ZooKeeper::start()?;
//! assert_eq!(zk.four_letter("ruok")?, "imok");
//! let addr = zk.connect_string(); // "127.0.0.1:PORT"
//! zk.stop();
//! zk.start_again()?; // same port, same data
//! # let _ = addr;
//! # Ok::<(), std::io::Error>(())
//! ```

#![warn(missing_docs)]

mod browser;
mod ensemble;
mod etcd;
mod http;
mod install;
mod memcached;
mod net;
mod process;
mod proxy;
mod tls;
mod zookeeper;

pub use browser::Browser;
pub use ensemble::Ensemble;
pub use etcd::Etcd;
pub use http::HttpServer;
pub use install::ensure_installed;
pub use memcached::Memcached;
pub use net::{connections_to, dead_endpoint, four_letter_word, free_port, free_ports};
pub use proxy::Proxy;
pub use tls::{ClientAuth, TestCerts};
pub use zookeeper::ZooKeeper;
