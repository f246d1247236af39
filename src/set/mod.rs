//! The set abstraction every backend feeds and every typed set reads:
//! snapshots and their changes, the publisher that swaps them atomically,
//! the [`Source`](crate::Source) trait, fixed sets, the served view of a
//! member cache (selection, weights, held removals), the watch handle
//! every backend returns and the hub of views behind it, health, and
//! failure accrual.

pub mod accrual;
pub mod fixed;
pub(crate) mod health;
pub(crate) mod inspect;
pub(crate) mod leader;
pub(crate) mod options;
pub(crate) mod publisher;
pub(crate) mod registration;
pub(crate) mod served;
pub(crate) mod snapshot;
pub(crate) mod source;
pub(crate) mod stabilizer;
pub(crate) mod view;
pub(crate) mod watch;
