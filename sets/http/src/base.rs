//! What requests need of each snapshot, made once per snapshot: each
//! endpoint's base URL and its failure-accrual tracker.
//!
//! Trackers follow endpoints, not snapshots: a new snapshot reuses the
//! tracker of every endpoint the previous one had (so a dead endpoint stays
//! dead across membership changes), makes new ones for endpoints that
//! joined and retires those of endpoints that left. Requests read the
//! current [`Endpoints`] with one atomic load, no lock; a lock is taken
//! only to make the next one, once per snapshot.
//!
//! # Base URLs
//!
//! Request URLs without a string round trip: each endpoint's base URL
//! (`scheme://host:port/`) is parsed once per snapshot, and a request's URL
//! is its path joined onto that base.
//!
//! Joining parses only the path (and query); a path of plain characters
//! only is set with `Url::set_path` on a copy of the base, the same path
//! parser without reference resolution. Parsing the whole
//! `scheme://host:port/path` string again for every request also parses
//! the scheme and the host (for a name, IDNA processing). The result is the
//! same URL: a path that starts with one `/` replaces the base's path,
//! query and fragment, with the same path, query and fragment rules as a
//! full parse (unit tests below compare the two). Where that does not
//! hold, [`BaseCache::url`] answers `None` and the caller formats and
//! parses the whole string as before:
//!
//! * paths that start with `//` or `/\` (ignoring tabs and newlines, which
//!   URL parsing drops): joined, they would name another host;
//! * endpoints whose `scheme://host:port/` does not parse to exactly that
//!   authority and the path `/` (a host with `/`, `?`, `#`, ... in it), or
//!   does not parse at all: the full parse reports the error as before.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use arc_swap::ArcSwapOption;

use reqwest::Url;
use serversets::accrual::{Accrual, Tracker};
use serversets::{Endpoint, Snapshot};

use crate::Scheme;

/// What requests need of one snapshot's endpoints, by position in the
/// snapshot: base URLs and failure-accrual trackers.
pub(crate) struct Endpoints {
    /// The snapshot these are for. Weak, so that the cache keeps no
    /// endpoint alive; while it is held, the snapshot's allocation (the
    /// address compared) cannot be reused by another snapshot.
    snapshot: Weak<Snapshot>,
    /// `Some` where a path may be joined onto the base.
    urls: Vec<Option<Url>>,
    /// One per position; entries with the same endpoint share one.
    trackers: Vec<Arc<Tracker>>,
    /// Each endpoint's tracker, to hand on to the next snapshot's (the
    /// snapshot itself may be gone by then).
    by_endpoint: HashMap<Endpoint, Arc<Tracker>>,
}

impl Endpoints {
    /// Base URLs for `snapshot`, and trackers: those of `previous` for
    /// the endpoints it had, new ones from `accrual` for the others.
    fn new(
        scheme: Scheme,
        snapshot: &Arc<Snapshot>,
        accrual: &Accrual,
        previous: Option<&Endpoints>,
    ) -> Self {
        let urls = snapshot
            .iter()
            .map(|entry| base_url(scheme, &entry.endpoint))
            .collect();
        let mut by_endpoint: HashMap<Endpoint, Arc<Tracker>> =
            HashMap::with_capacity(snapshot.len());
        let trackers = snapshot
            .iter()
            .map(|entry| {
                let endpoint = &entry.endpoint;
                if let Some(tracker) = by_endpoint.get(endpoint) {
                    return Arc::clone(tracker);
                }
                let tracker = previous
                    .and_then(|p| p.by_endpoint.get(endpoint))
                    .map_or_else(|| accrual.track(), Arc::clone);
                by_endpoint.insert(endpoint.clone(), Arc::clone(&tracker));
                tracker
            })
            .collect();
        Endpoints {
            snapshot: Arc::downgrade(snapshot),
            urls,
            trackers,
            by_endpoint,
        }
    }

    fn is_for(&self, snapshot: &Arc<Snapshot>) -> bool {
        std::ptr::eq(self.snapshot.as_ptr(), Arc::as_ptr(snapshot))
    }

    /// The tracker of the endpoint at `index`.
    pub(crate) fn tracker(&self, index: usize) -> Option<&Arc<Tracker>> {
        self.trackers.get(index)
    }

    /// The URL of `path` at the endpoint at `index`, joined onto its base;
    /// `None` if the caller must parse the whole URL string instead (see
    /// the module's documentation).
    pub(crate) fn url(&self, index: usize, path: &str) -> Option<Url> {
        if !joinable(path) {
            return None;
        }
        let base = self.urls.get(index)?.as_ref()?;
        if plain_path(path) {
            // The same path parser as joining, minus the reference
            // resolution and the string growing from the path's length.
            let mut url = base.clone();
            url.set_path(path);
            return Some(url);
        }
        base.join(path).ok()
    }
}

/// `scheme://endpoint/`, if a path joined onto it gives what parsing
/// `scheme://endpoint` followed by the path gives.
fn base_url(scheme: Scheme, endpoint: &serversets::Endpoint) -> Option<Url> {
    let url = Url::parse(&format!("{}://{endpoint}/", scheme.as_str())).ok()?;
    // The authority must end where the endpoint ends: then a path after it
    // is parsed from the same place in both cases.
    let exact = url.path() == "/" && url.query().is_none() && url.fragment().is_none();
    exact.then_some(url)
}

/// Whether joining `path` (which starts with `/`) onto a base keeps the
/// base's authority: not if it starts with two slashes (`\` counts as one
/// in http(s) URLs; tabs and newlines are dropped before parsing).
fn joinable(path: &str) -> bool {
    let Some(rest) = path.strip_prefix('/') else {
        return false;
    };
    !rest
        .trim_start_matches(['\t', '\n', '\r'])
        .starts_with(['/', '\\'])
}

/// Whether `path` is only a path, of characters that URL parsing takes as
/// they are (no query, fragment, percent sign, backslash, space or control
/// character to trim, drop or encode; dot segments are resolved the same
/// way by `Url::set_path`).
fn plain_path(path: &str) -> bool {
    path.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/-._~!$&'()*+,;=:@".contains(&b))
}

/// The [`Endpoints`] of the snapshot seen last: one atomic load per
/// request, no lock.
#[derive(Default)]
pub(crate) struct Cache {
    current: ArcSwapOption<Endpoints>,
    /// Taken to make the next [`Endpoints`]: one at a time, so that
    /// trackers are handed on exactly once.
    making: Mutex<()>,
}

impl Cache {
    /// The endpoints of `snapshot` if they are the current ones.
    pub(crate) fn get(&self, snapshot: &Arc<Snapshot>) -> Option<Arc<Endpoints>> {
        self.current
            .load_full()
            .filter(|endpoints| endpoints.is_for(snapshot))
    }

    /// The endpoints of the source's snapshot now (`current` reads it),
    /// made if they are not yet: the snapshot is read under the lock, so
    /// the cache only ever moves to newer snapshots. Trackers of endpoints
    /// that left are retired.
    pub(crate) fn refresh(
        &self,
        scheme: Scheme,
        accrual: &Accrual,
        current: impl FnOnce() -> Arc<Snapshot>,
    ) -> (Arc<Snapshot>, Arc<Endpoints>) {
        let _making = self.making.lock().unwrap_or_else(PoisonError::into_inner);
        let snapshot = current();
        let previous = self.current.load_full();
        if let Some(endpoints) = previous.as_ref().filter(|e| e.is_for(&snapshot)) {
            return (snapshot, Arc::clone(endpoints));
        }
        let endpoints = Arc::new(Endpoints::new(
            scheme,
            &snapshot,
            accrual,
            previous.as_deref(),
        ));
        // Endpoints that left: they no longer count as live for the
        // others, even while requests to them are still under way.
        for (endpoint, tracker) in previous.iter().flat_map(|p| &p.by_endpoint) {
            if !endpoints.by_endpoint.contains_key(endpoint) {
                tracker.retire();
            }
        }
        self.current.store(Some(Arc::clone(&endpoints)));
        (snapshot, endpoints)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serversets::accrual::FailureAccrual;
    use serversets::{Endpoint, Source};

    /// The endpoints of `snapshot`, made by a cache of their own.
    fn endpoints_of(scheme: Scheme, snapshot: &Arc<Snapshot>) -> Arc<Endpoints> {
        let accrual = Accrual::new(FailureAccrual::new());
        Cache::default()
            .refresh(scheme, &accrual, || Arc::clone(snapshot))
            .1
    }

    fn full(scheme: Scheme, endpoint: &Endpoint, path: &str) -> Result<Url, String> {
        Url::parse(&format!("{}://{endpoint}{path}", scheme.as_str())).map_err(|e| e.to_string())
    }

    fn snapshot(endpoints: &[Endpoint]) -> Arc<Snapshot> {
        serversets::FixedSet::from_endpoints(endpoints.iter().cloned()).current()
    }

    /// Joined URLs equal fully parsed ones wherever a joined URL is given.
    fn check(endpoints: &[Endpoint], paths: &[String]) -> (usize, usize) {
        let (mut joined, mut fallback) = (0, 0);
        for scheme in [Scheme::Http, Scheme::Https] {
            let snapshot = snapshot(endpoints);
            let cache = endpoints_of(scheme, &snapshot);
            for (index, entry) in snapshot.iter().enumerate() {
                for path in paths {
                    match cache.url(index, path) {
                        Some(url) => {
                            joined += 1;
                            let want = full(scheme, &entry.endpoint, path);
                            assert_eq!(Ok(&url), want.as_ref(), "{} {path:?}", entry.endpoint);
                            assert_eq!(url.as_str(), want.as_ref().map(Url::as_str).unwrap());
                        }
                        None => fallback += 1,
                    }
                }
            }
        }
        (joined, fallback)
    }

    fn tricky_paths() -> Vec<String> {
        let mut paths: Vec<String> = [
            "/",
            "/bench",
            "/users/1",
            "/a/b/../c/./d",
            "/a/%2e%2E/b",
            "/..",
            "/./..//x",
            "/a b/c d",
            "/a%20b?x=1&y=%zz",
            "/?",
            "/#",
            "/p?q#f",
            "/p#f?q",
            "/p?q?r#f#g",
            "/ü/ö?ä=ß#€",
            "/x y ",
            "/x\t",
            "/x\u{0}",
            "/x\u{1f} ",
            "/a\tb\nc\rd",
            "/\t/evil",
            "/\n\\evil",
            "//evil.example/x",
            "/\\evil.example/x",
            "/\\",
            "/a\\b\\..\\c",
            "/C:/x",
            "/c|/x",
            "/%",
            "/%2",
            "/<>\"`{}|^",
            "/'?'#'",
            "/@user:pw@host",
            "/:80",
            "/[::1]",
            "/?a=<b>&c=\"d\"&e='f'",
            "/echo?x=1",
            "/\u{7f}",
            "/a/%2F/b",
            "/%00",
            "/a/./b/../../c",
            "/./",
            "/../../x",
            "/a/.",
            "/a/..",
            "/~user/!$&'()*+,;=:@-_.",
            "/a//b",
            "/.well-known/x",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        // Pseudo-random paths over the characters that matter to parsing.
        let alphabet: Vec<char> = "/\\?#%.a1 \t\n\r:@[]\u{0}\u{1f}\u{7f}é%2e....///"
            .chars()
            .collect();
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..3000 {
            let mut path = String::from("/");
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = (state % 12) as usize;
            for _ in 0..len {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                path.push(alphabet[(state % alphabet.len() as u64) as usize]);
            }
            paths.push(path);
        }
        paths
    }

    #[test]
    fn joined_urls_equal_fully_parsed_ones() {
        let endpoints = [
            Endpoint::new("127.0.0.1", 8080),
            Endpoint::new("localhost", 80),
            Endpoint::new("Users-1.PROD.example.com", 443),
            Endpoint::new("::1", 9000),
            Endpoint::new("bücher.example", 8080),
            Endpoint::new("0x7f.1", 1),
        ];
        let paths = tricky_paths();
        let plain = paths.iter().filter(|p| plain_path(p)).count();
        assert!(plain > 300, "{plain} paths take Url::set_path");
        let (joined, fallback) = check(&endpoints, &paths);
        assert!(joined > 30_000, "{joined} joined");
        assert!(fallback > 0, "some paths must fall back");
    }

    #[test]
    fn odd_endpoints_fall_back_to_a_full_parse() {
        let odd = [
            Endpoint::new("a/b", 80),
            Endpoint::new("a?b", 80),
            Endpoint::new("a#b", 80),
            Endpoint::new("user@host", 80),
            Endpoint::new("a b", 80),
            Endpoint::new("", 80),
            Endpoint::new("a\tb", 80),
        ];
        // Where a base is used at all, the result is the full parse's.
        check(&odd, &tricky_paths());
        let snapshot = snapshot(&odd[..3]);
        let cache = endpoints_of(Scheme::Http, &snapshot);
        for index in 0..3 {
            assert_eq!(cache.url(index, "/x"), None);
        }
    }

    #[test]
    fn paths_that_would_name_another_host_fall_back() {
        for path in ["//h/x", "/\\h", "/\t/h", "/\n\r\\h", "x", ""] {
            assert!(!joinable(path), "{path:?}");
        }
        for path in ["/", "/x//y", "/x\\\\y", "/\tx"] {
            assert!(joinable(path), "{path:?}");
        }
    }

    #[test]
    fn follows_the_snapshot_and_hands_trackers_on() {
        let accrual = Accrual::new(FailureAccrual::new());
        let cache = Cache::default();
        let (a, b, c) = (
            Endpoint::new("10.0.0.1", 80),
            Endpoint::new("10.0.0.2", 81),
            Endpoint::new("10.0.0.3", 82),
        );
        let one = snapshot(&[a.clone(), b.clone()]);
        let two = snapshot(&[b.clone(), c.clone()]);
        assert!(cache.get(&one).is_none(), "nothing made yet");
        let (got, first) = cache.refresh(Scheme::Http, &accrual, || Arc::clone(&one));
        assert!(Arc::ptr_eq(&got, &one));
        assert!(cache.get(&one).is_some_and(|e| Arc::ptr_eq(&e, &first)));
        assert!(cache.get(&two).is_none());
        assert_eq!(
            first.url(0, "/p").map(String::from).as_deref(),
            Some("http://10.0.0.1/p")
        );
        assert_eq!(first.url(2, "/p"), None, "no such index");
        assert_eq!(accrual.stats().tracked, 2);

        // A new snapshot, read under the lock whatever the caller saw.
        let (got, second) = cache.refresh(Scheme::Http, &accrual, || Arc::clone(&two));
        assert!(Arc::ptr_eq(&got, &two));
        assert!(cache.get(&one).is_none());
        assert_eq!(
            second.url(0, "/p").map(String::from).as_deref(),
            Some("http://10.0.0.2:81/p")
        );
        // b keeps its tracker, c gets a new one, a's is retired.
        let tracker = |e: &Endpoints, i: usize| Arc::clone(e.tracker(i).expect("tracker"));
        assert!(Arc::ptr_eq(&tracker(&first, 1), &tracker(&second, 0)));
        assert!(!Arc::ptr_eq(&tracker(&first, 0), &tracker(&second, 1)));
        assert_eq!(accrual.stats().tracked, 2, "a retired, c tracked");
        drop(first);
        assert_eq!(accrual.stats().tracked, 2);

        // Even once the snapshot it came from is gone.
        drop(one);
        let three = snapshot(&[a.clone(), c.clone()]);
        let (_, third) = cache.refresh(Scheme::Http, &accrual, || Arc::clone(&three));
        assert_eq!(three.entries()[1].endpoint, c, "snapshot order");
        assert!(Arc::ptr_eq(&tracker(&second, 1), &tracker(&third, 1)));
        drop(second);
        assert_eq!(accrual.stats().tracked, 2, "b retired, a tracked anew");

        // The same endpoint twice (two members of one server): one tracker.
        let publisher = serversets::Publisher::new();
        let member = Arc::new(serversets::Member::new(a.clone()));
        publisher.replace(vec![
            Arc::new(serversets::Entry::new(
                "member_1",
                a.clone(),
                1.0,
                Arc::clone(&member),
            )),
            Arc::new(serversets::Entry::new("member_2", a.clone(), 1.0, member)),
        ]);
        let twice = publisher.current();
        let (_, fourth) = cache.refresh(Scheme::Http, &accrual, || Arc::clone(&twice));
        assert!(Arc::ptr_eq(&tracker(&fourth, 0), &tracker(&fourth, 1)));
        assert!(Arc::ptr_eq(&tracker(&third, 0), &tracker(&fourth, 0)));
        drop(third);
        assert_eq!(accrual.stats().tracked, 1);
    }
}
