//! What an etcd registration does next, pure: from what it holds (a lease,
//! whether its key is written) and wants (registered while healthy, or
//! gone when closing) to one action.
//!
//! The member's key is derived from its lease ([`Format::name`]), so a put
//! retried after a lost answer rewrites the same key: never a duplicate.
//! A lease is only given up when etcd says it is gone (a keep-alive
//! answered with TTL 0): then its key is gone too, and the member is put
//! again exactly once under a new lease.
//!
//! [`Format::name`]: crate::naming::Format::name

/// What the registration knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Facts {
    /// The lease held, if any (granted and not known to be gone).
    pub lease: Option<i64>,
    /// Whether the member's key is written under that lease.
    pub written: bool,
    /// Whether the health check passes (always, without one).
    pub healthy: bool,
    /// Whether the registration is closing.
    pub closing: bool,
}

/// The next step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// Grant a lease.
    Grant,
    /// Put the member's key under this lease.
    Put(i64),
    /// Keep this lease alive (at the keep-alive interval).
    KeepAlive(i64),
    /// Revoke this lease: the key goes with it.
    Revoke(i64),
    /// Nothing to hold (unhealthy): wait for the check.
    Idle,
    /// Closed and nothing left: the task ends.
    Done,
}

/// The action for these facts.
pub(crate) fn decide(facts: Facts) -> Action {
    match facts {
        Facts {
            closing: true,
            lease: Some(id),
            ..
        } => Action::Revoke(id),
        Facts {
            closing: true,
            lease: None,
            ..
        } => Action::Done,
        Facts {
            lease: Some(id),
            healthy: false,
            ..
        } => Action::Revoke(id),
        Facts {
            lease: None,
            healthy: false,
            ..
        } => Action::Idle,
        Facts { lease: None, .. } => Action::Grant,
        Facts {
            lease: Some(id),
            written: false,
            ..
        } => Action::Put(id),
        Facts {
            lease: Some(id),
            written: true,
            ..
        } => Action::KeepAlive(id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(lease: Option<i64>, written: bool, healthy: bool, closing: bool) -> Facts {
        Facts {
            lease,
            written,
            healthy,
            closing,
        }
    }

    #[test]
    fn registers_keeps_alive_and_revokes() {
        assert_eq!(decide(facts(None, false, true, false)), Action::Grant);
        assert_eq!(decide(facts(Some(7), false, true, false)), Action::Put(7));
        assert_eq!(
            decide(facts(Some(7), true, true, false)),
            Action::KeepAlive(7)
        );
        // A failing check deregisters; a lease granted but not written yet
        // is revoked too (nothing may stay behind).
        assert_eq!(
            decide(facts(Some(7), true, false, false)),
            Action::Revoke(7)
        );
        assert_eq!(
            decide(facts(Some(7), false, false, false)),
            Action::Revoke(7)
        );
        assert_eq!(decide(facts(None, false, false, false)), Action::Idle);
        // Closing wins over everything.
        assert_eq!(decide(facts(Some(7), true, true, true)), Action::Revoke(7));
        assert_eq!(decide(facts(None, false, true, true)), Action::Done);
    }

    /// Walks every path from a lost lease: exactly one new grant and one
    /// put, whatever order the check and the loss come in.
    #[test]
    fn a_lost_lease_is_replaced_once() {
        // Registered, then etcd answers TTL 0: lease and key are gone.
        let mut f = facts(Some(1), true, true, false);
        f.lease = None;
        f.written = false;
        let mut grants = 0;
        let mut puts = 0;
        for _ in 0..10 {
            match decide(f) {
                Action::Grant => {
                    grants += 1;
                    f.lease = Some(2);
                }
                Action::Put(id) => {
                    assert_eq!(id, 2);
                    puts += 1;
                    f.written = true;
                }
                Action::KeepAlive(2) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!((grants, puts), (1, 1));
    }
}
