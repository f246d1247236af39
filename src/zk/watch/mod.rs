//! Watching a serverset on ZooKeeper.
//!
//! The parts, each in its own module:
//! - [`machine`]: what the watch knows of the set, pure (inputs in,
//!   reads and deltas out), property-tested;
//! - [`engine`]: the task shared by every watch of one path through one
//!   client: the machine and the [`Hub`] of views and handles;
//! - [`persistent`] (default) and [`oneshot`] (fallback): the drivers
//!   that do the I/O, on a persistent recursive watch or on one-shot child
//!   watches;
//! - [`read`]: batched reads of the nodes the machine asks for.
//!
//! While ZooKeeper is unreachable the last good set is kept.
//!
//! [`Hub`]: crate::set::watch::hub::Hub

use crate::error::Result;
use crate::format::path::ServerSetPath;
use crate::set::options::WatchOptions;
use crate::set::watch::Watch;
use crate::zk::session::Session;

pub(crate) mod engine;
pub(crate) mod machine;
mod oneshot;
mod persistent;
mod read;

/// Watches `path` through `session`: joins the engine of that path if one
/// runs, or starts one, and waits for the set's first load.
pub(crate) async fn start(
    session: Session,
    path: ServerSetPath,
    options: WatchOptions,
) -> Result<Watch> {
    let wait = session.shared.config.connect_timeout;
    let handle = engine::Engine::subscribe(&session, &path, options);
    Watch::subscribed(handle, &path, wait).await
}
