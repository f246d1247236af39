//! The ZooKeeper runtime: the client and its one session, TLS, the
//! watch engines and registrations. Everything here does I/O around the
//! pure state machines of [`format`](crate::format) and
//! [`set`](crate::set) and of its own `watch` and `registration` folders.

pub(crate) mod client;
pub(crate) mod registration;
pub(crate) mod session;
#[cfg(feature = "tls")]
pub(crate) mod tls;
pub(crate) mod watch;
