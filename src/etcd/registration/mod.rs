//! Registering a member in etcd: its key is written with a lease of
//! [`RegisterOptions::ttl`] that the task keeps alive. A failing health
//! check revokes the lease (the member leaves) and a passing one registers
//! it again; a lease etcd lost (a partition or an outage longer than the
//! TTL) is replaced once the client is heard again, and the member put
//! again, exactly once; closing revokes the lease.
//!
//! [`decide`](self::decide) says what to do next (pure, unit-tested);
//! [`driver`](self::driver) does it.

use std::sync::Arc;

use tokio::sync::{oneshot, watch};
use tracing::{info_span, Instrument};

use crate::error::Result;
use crate::etcd::client::Shared;
use crate::format::member::Member;
use crate::format::path::ServerSetPath;
use crate::metrics::Creations;
use crate::set::registration::{RegisterOptions, Registration};

mod decide;
mod driver;

use decide::Facts;
use driver::Registrar;

/// Starts the registration task of `member` in `path` and waits for its
/// first put.
pub(crate) async fn start(
    shared: Arc<Shared>,
    path: ServerSetPath,
    member: Member,
    options: RegisterOptions,
) -> Result<Registration> {
    options.validate()?;
    let (key_tx, key) = watch::channel(None);
    let (stop_tx, stop) = oneshot::channel();
    let (first_tx, first) = oneshot::channel();
    let wait = shared.config.connect_timeout;
    let registrar = Registrar {
        creations: Creations::new(path.as_str()),
        check: options
            .health_check
            .clone()
            .map(|check| (check, options.interval)),
        format: options.format,
        ttl: options.ttl,
        shared,
        path: path.clone(),
        member,
        key: key_tx,
        first: Some(first_tx),
        facts: Facts {
            lease: None,
            written: false,
            healthy: true,
            closing: false,
        },
        keeper: None,
    };
    let span = info_span!("registration", path = %path, format = %options.format);
    let task = tokio::spawn(registrar.run(stop).instrument(span));
    Registration::started(path, wait, key, stop_tx, task, first).await
}
