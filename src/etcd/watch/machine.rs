//! What an etcd watch knows of its set, pure: the members under the
//! prefix by key, from a full get and from watch events. Inputs in,
//! touched names out; no I/O.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tracing::{debug, warn};

use crate::format::member::Member;
use crate::format::naming::Format;
use crate::format::selection::Selection;
use crate::set::snapshot::Entry;
use crate::set::view::Members;

/// One key as etcd gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Kv {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub create_revision: i64,
    pub mod_revision: i64,
}

/// What the driver feeds the machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Input {
    /// Every key under the prefix as of `revision` (a full get): replaces
    /// what is known.
    Loaded { revision: i64, kvs: Vec<Kv> },
    /// A watch event: the key was put.
    Put(Kv),
    /// A watch event: the key was deleted at `revision`.
    Deleted { key: Vec<u8>, revision: i64 },
}

/// One cached key.
#[derive(Debug)]
struct Cached {
    create_revision: i64,
    mod_revision: i64,
    /// `None`: the value is not a usable member (warned about once).
    member: Option<Arc<Member>>,
}

/// The members under one prefix.
#[derive(Debug)]
pub(crate) struct Machine {
    /// The prefix with its trailing `/`.
    prefix: String,
    format: Format,
    members: HashMap<String, Cached>,
    /// The create revision each name had when last published, for names
    /// deleted or re-created since (cleared by [`Machine::settle`]).
    retired: HashMap<String, i64>,
    touched: Vec<String>,
    revision: i64,
}

impl Machine {
    /// Knows nothing yet of the set whose keys are `prefix` + a name
    /// (`prefix` ends with `/`).
    pub(crate) fn new(prefix: String, format: Format) -> Self {
        Machine {
            prefix,
            format,
            members: HashMap::new(),
            retired: HashMap::new(),
            touched: Vec::new(),
            revision: 0,
        }
    }

    /// The prefix watched, with its trailing `/` (so `/svc` never matches
    /// `/svc2/...`).
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The last revision applied: a watch resumes after it.
    pub(crate) fn revision(&self) -> i64 {
        self.revision
    }

    /// Applies one input.
    pub(crate) fn handle(&mut self, input: Input) {
        match input {
            Input::Loaded { revision, kvs } => {
                let mut seen = HashSet::with_capacity(kvs.len());
                for kv in kvs {
                    if let Some(name) = self.name_of(&kv.key) {
                        seen.insert(name.clone());
                        self.put(name, kv);
                    }
                }
                let gone: Vec<String> = self
                    .members
                    .keys()
                    .filter(|name| !seen.contains(*name))
                    .cloned()
                    .collect();
                for name in gone {
                    self.remove(&name);
                }
                self.revision = revision;
            }
            Input::Put(kv) => {
                self.revision = self.revision.max(kv.mod_revision);
                if let Some(name) = self.name_of(&kv.key) {
                    self.put(name, kv);
                }
            }
            Input::Deleted { key, revision } => {
                self.revision = self.revision.max(revision);
                if let Some(name) = self.name_of(&key) {
                    self.remove(&name);
                }
            }
        }
    }

    /// The names touched since the last call, each once: a name touched
    /// twice in a batch (deleted and put again) is one change to the
    /// views, from the entry they serve to the one the cache holds now.
    pub(crate) fn take_touched(&mut self) -> Vec<String> {
        let mut touched = std::mem::take(&mut self.touched);
        touched.sort_unstable();
        touched.dedup();
        touched
    }

    /// The views have applied the touched names: forget retired sequence
    /// numbers.
    pub(crate) fn settle(&mut self) {
        self.retired.clear();
    }

    /// The member name of a key under the prefix; `None` (and a debug
    /// event) for keys outside it, below a deeper `/`, or not members in
    /// this format.
    fn name_of(&self, key: &[u8]) -> Option<String> {
        let Ok(key) = std::str::from_utf8(key) else {
            debug!("ignoring a key that is not UTF-8");
            return None;
        };
        let Some(name) = key.strip_prefix(self.prefix.as_str()) else {
            debug!(key, "ignoring a key outside the prefix");
            return None;
        };
        if name.is_empty() || name.contains('/') || !self.format.is_member(name) {
            debug!(key, "ignoring a key that is not a member");
            return None;
        }
        Some(name.to_owned())
    }

    fn put(&mut self, name: String, kv: Kv) {
        if let Some(old) = self.members.get(&name) {
            if old.mod_revision == kv.mod_revision && old.create_revision == kv.create_revision {
                return;
            }
        }
        let member = match self.format.decode(&name, &kv.value) {
            Ok(Some(member)) => Some(Arc::new(member)),
            Ok(None) => {
                // etcd naming's "Op":1: the endpoint is gone.
                self.remove(&name);
                return;
            }
            Err(why) => {
                warn!(
                    key = %String::from_utf8_lossy(&kv.key),
                    %why,
                    "skipping a member whose value cannot be used"
                );
                None
            }
        };
        let old = self.members.insert(
            name.clone(),
            Cached {
                create_revision: kv.create_revision,
                mod_revision: kv.mod_revision,
                member,
            },
        );
        if let Some(old) = old {
            self.retire(&name, old.create_revision);
        }
        self.touched.push(name);
    }

    fn remove(&mut self, name: &str) {
        if let Some(old) = self.members.remove(name) {
            self.retire(name, old.create_revision);
            self.touched.push(name.to_owned());
        }
    }

    fn retire(&mut self, name: &str, create_revision: i64) {
        self.retired
            .entry(name.to_owned())
            .or_insert(create_revision);
    }
}

impl Members for Machine {
    fn entry(&self, name: &str, selection: &Selection) -> Option<Arc<Entry>> {
        let cached = self.members.get(name)?;
        let member = cached.member.as_ref()?;
        let endpoint = selection.select(member)?.clone();
        Some(Arc::new(Entry::with_sequence(
            name,
            sequence(cached.create_revision),
            endpoint,
            1.0,
            Arc::clone(member),
        )))
    }

    fn names(&self) -> Vec<&str> {
        self.members.keys().map(String::as_str).collect()
    }

    fn served_sequence(&self, name: &str) -> Option<u64> {
        let revision = match self.retired.get(name) {
            Some(revision) => *revision,
            None => self.members.get(name)?.create_revision,
        };
        Some(sequence(revision))
    }
}

/// A create revision as an entry's sequence number (revisions are
/// positive).
fn sequence(revision: i64) -> u64 {
    u64::try_from(revision).unwrap_or(0)
}

#[cfg(test)]
mod tests;
