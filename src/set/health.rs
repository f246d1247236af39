//! Health values callers can read: of the session and of each watch.

use std::fmt;

/// The state of the ZooKeeper session behind a [`Client`](crate::Client),
/// or of one [`Watch`](crate::Watch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Health {
    /// Connected; for a watch: its set is in sync with ZooKeeper.
    Connected,
    /// The connection is lost but the session may still be alive; the
    /// client reconnects by itself. A watch keeps serving its last set.
    Disconnected,
    /// The session expired (or authentication failed) and a new one is
    /// being built; registrations and watches are restored on it.
    Expired,
    /// The client was closed.
    Closed,
}

impl Health {
    /// Whether this is [`Health::Connected`].
    pub fn is_healthy(self) -> bool {
        self == Health::Connected
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Health::Connected => "connected",
            Health::Disconnected => "disconnected",
            Health::Expired => "expired",
            Health::Closed => "closed",
        })
    }
}

/// Follows a health value: the current one, and a wait for the next.
#[derive(Debug, Clone)]
pub struct HealthWatcher {
    source: Source,
}

#[derive(Debug, Clone)]
enum Source {
    Session(tokio::sync::watch::Receiver<crate::zk::session::SessionView>),
    Plain(tokio::sync::watch::Receiver<Health>),
}

impl HealthWatcher {
    pub(crate) fn new(rx: tokio::sync::watch::Receiver<Health>) -> Self {
        HealthWatcher {
            source: Source::Plain(rx),
        }
    }

    pub(crate) fn of_session(
        rx: tokio::sync::watch::Receiver<crate::zk::session::SessionView>,
    ) -> Self {
        HealthWatcher {
            source: Source::Session(rx),
        }
    }

    /// The current health.
    pub fn current(&self) -> Health {
        match &self.source {
            Source::Session(rx) => rx.borrow().health,
            Source::Plain(rx) => *rx.borrow(),
        }
    }

    /// Waits until the health differs from `from` and returns it; returns
    /// [`Health::Closed`] once the source is gone.
    pub async fn wait_change(&mut self, from: Health) -> Health {
        loop {
            let now = self.current();
            if now != from {
                return now;
            }
            let alive = match &mut self.source {
                Source::Session(rx) => rx.changed().await.is_ok(),
                Source::Plain(rx) => rx.changed().await.is_ok(),
            };
            if !alive {
                return Health::Closed;
            }
        }
    }

    /// Waits until the health is `want`, or `false` if the source closes
    /// first.
    pub async fn wait_for(&mut self, want: Health) -> bool {
        loop {
            let now = self.current();
            if now == want {
                return true;
            }
            if self.wait_change(now).await == Health::Closed {
                return want == Health::Closed;
            }
        }
    }
}
