//! How a watch serves its set: which endpoint of each member, and whether
//! removals are held back.

use crate::format::naming::Format;
use crate::format::selection::Selection;

/// How a watch serves its set: which endpoint (a [`Selection`]) and
/// whether removals are held back against flapping.
///
/// ```
/// use std::time::Duration;
/// use serversets::{Selection, WatchOptions};
///
/// let options = WatchOptions::new()
///     .selection(Selection::endpoint("http"))
///     .hold_removals(Duration::from_secs(10));
/// assert_eq!(options.removal_window(), Some(Duration::from_secs(10)));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchOptions {
    selection: Selection,
    hold_removals: Option<std::time::Duration>,
    format: Format,
}

impl WatchOptions {
    /// Service endpoints, removals published at once.
    pub fn new() -> Self {
        Self::default()
    }

    /// Serves this selection.
    pub fn selection(mut self, selection: Selection) -> Self {
        self.selection = selection;
        self
    }

    /// Holds removals back for `window` (off by default): a member that
    /// leaves stays in the set that long, and if a member with the same
    /// endpoint and data comes back meanwhile (a re-registration, under a
    /// new znode name), users see no change at all.
    pub fn hold_removals(mut self, window: std::time::Duration) -> Self {
        self.hold_removals = (!window.is_zero()).then_some(window);
        self
    }

    /// How members are stored (etcd only; default [`Format::Finagle`]).
    /// ZooKeeper sets are always in Finagle's format.
    pub fn format(mut self, format: Format) -> Self {
        self.format = format;
        self
    }

    /// The storage format read (etcd only).
    pub fn stored_as(&self) -> Format {
        self.format
    }

    /// The selection served.
    pub fn served(&self) -> &Selection {
        &self.selection
    }

    /// The removal window, if removals are held back.
    pub fn removal_window(&self) -> Option<std::time::Duration> {
        self.hold_removals
    }
}

impl From<Selection> for WatchOptions {
    fn from(selection: Selection) -> Self {
        WatchOptions::new().selection(selection)
    }
}
