//! What a registration does next, decided without I/O.
//!
//! The driver knows the session's generation, whether the health check
//! passes, the member node it owns (and in which session it made it),
//! whether a create's answer was lost, and whether it is closing. From
//! that alone, [`decide`] says what to do; the driver does it, updates
//! what it knows, and asks again until the answer is to wait.

/// The member node a registration owns, and in which session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Owned {
    /// The session generation that created it.
    pub generation: u64,
    /// Its full path.
    pub znode: String,
}

/// What the registration knows when it decides.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Facts<'a> {
    /// The current session's generation.
    pub generation: u64,
    /// Whether the health check passes (always, without one).
    pub healthy: bool,
    /// The node it owns, if any.
    pub owned: Option<&'a Owned>,
    /// The generation in which a create's outcome is unknown, if any.
    pub uncertain: Option<u64>,
    /// Closing: whatever it owns must go.
    pub closing: bool,
}

/// The next step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// The owned node died with an older session: forget it.
    Forget,
    /// Check that the owned node still exists (and watch it).
    Check(String),
    /// Look for the node a create whose answer was lost may have made, and
    /// adopt it: never create a second one.
    Recover,
    /// Create the member node.
    Create,
    /// Delete the owned node.
    Delete(String),
    /// Nothing to do until something changes.
    Wait,
    /// Closing, and nothing of ours is left.
    Done,
}

/// Decides the next step.
pub(crate) fn decide(facts: Facts<'_>) -> Action {
    if let Some(owned) = facts.owned {
        if owned.generation != facts.generation {
            return Action::Forget;
        }
    }
    let wanted = facts.healthy && !facts.closing;
    let uncertain = facts.uncertain == Some(facts.generation);
    match facts.owned {
        Some(owned) if wanted => Action::Check(owned.znode.clone()),
        Some(owned) => Action::Delete(owned.znode.clone()),
        // Wanted or not, a node that may exist must be found first.
        None if uncertain => Action::Recover,
        None if wanted => Action::Create,
        None if facts.closing => Action::Done,
        None => Action::Wait,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owned(generation: u64) -> Owned {
        Owned {
            generation,
            znode: "/s/member_0000000001".into(),
        }
    }

    fn facts(owned: Option<&Owned>) -> Facts<'_> {
        Facts {
            generation: 2,
            healthy: true,
            owned,
            uncertain: None,
            closing: false,
        }
    }

    #[test]
    fn a_healthy_registration_creates_once_then_checks() {
        assert_eq!(decide(facts(None)), Action::Create);
        let mine = owned(2);
        assert_eq!(
            decide(facts(Some(&mine))),
            Action::Check(mine.znode.clone())
        );
    }

    #[test]
    fn a_node_of_an_older_session_is_forgotten_not_checked() {
        let old = owned(1);
        assert_eq!(decide(facts(Some(&old))), Action::Forget);
        // ... also when closing: it went with its session.
        let closing = Facts {
            closing: true,
            ..facts(Some(&old))
        };
        assert_eq!(decide(closing), Action::Forget);
    }

    #[test]
    fn a_lost_create_answer_is_recovered_before_anything_else() {
        let lost = Facts {
            uncertain: Some(2),
            ..facts(None)
        };
        assert_eq!(decide(lost), Action::Recover, "never a second create");
        let unhealthy = Facts {
            healthy: false,
            ..lost
        };
        assert_eq!(decide(unhealthy), Action::Recover, "nor a node left behind");
        let closing = Facts {
            closing: true,
            ..lost
        };
        assert_eq!(decide(closing), Action::Recover);
        // Uncertain in an older session: that node went with it.
        let older = Facts {
            uncertain: Some(1),
            ..facts(None)
        };
        assert_eq!(decide(older), Action::Create);
    }

    #[test]
    fn failing_health_or_closing_deletes_then_waits_or_ends() {
        let mine = owned(2);
        let unhealthy = Facts {
            healthy: false,
            ..facts(Some(&mine))
        };
        assert_eq!(decide(unhealthy), Action::Delete(mine.znode.clone()));
        assert_eq!(
            decide(Facts {
                owned: None,
                ..unhealthy
            }),
            Action::Wait
        );
        let closing = Facts {
            closing: true,
            ..facts(Some(&mine))
        };
        assert_eq!(decide(closing), Action::Delete(mine.znode.clone()));
        assert_eq!(
            decide(Facts {
                owned: None,
                ..closing
            }),
            Action::Done
        );
    }
}
