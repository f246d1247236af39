//! Registering this process as a serverset member.
//!
//! A registration is a task that keeps one EPHEMERAL_SEQUENTIAL `member_`
//! znode alive for as long as its [`Registration`] handle lives: it
//! re-creates the node on a new session after expiry (exactly once), when
//! someone else deletes it, and when an optional health check recovers;
//! it deletes the node when the check fails, on [`Registration::close`]
//! and on drop.
//!
//! [`decide`](self::decide) says what to do next from what the task knows
//! (pure, unit-tested); [`driver`](self::driver) does it.

mod decide;
mod driver;

use tokio::sync::{oneshot, watch};
use tracing::{info_span, Instrument};

use crate::error::Result;
use crate::format::codec;
use crate::format::member::Member;
use crate::format::path::ServerSetPath;
use crate::set::registration::{RegisterOptions, Registration};
use crate::zk::session::Session;
use driver::Registrar;

/// Starts the registration task of `member` in `path` and waits for its
/// first creation.
pub(crate) async fn start(
    session: Session,
    path: ServerSetPath,
    member: Member,
    options: RegisterOptions,
) -> Result<Registration> {
    options.validate()?;
    let (znode_tx, znode) = watch::channel(None);
    let (stop_tx, stop) = oneshot::channel();
    let (first_tx, first) = oneshot::channel();
    let wait = session.shared.config.connect_timeout;
    let task = Registrar::new(
        session,
        path.clone(),
        codec::encode(&member),
        options,
        znode_tx,
        first_tx,
    );
    let span = info_span!("registration", path = %path);
    let handle = tokio::spawn(task.run(stop).instrument(span));
    Registration::started(path, wait, znode, stop_tx, handle, first).await
}
