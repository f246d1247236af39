//! Attempt timeouts kept by one timer thread shared by every set, as
//! Finagle keeps its timeouts on a timer thread.
//!
//! A timer of the async runtime's, armed for each request, is costly on
//! the request path: the runtime then parks with a timeout, which arms a
//! kernel timer at every wait (about a microsecond per request, measured
//! on loopback in a VM: 5 % of a keep-alive GET). Here a request reads the clock when it must wait and registers
//! its deadline with the thread (a short lock, no system call as long as
//! the thread is due to wake before that deadline anyway); the thread
//! sleeps until the earliest deadline (at most [`IDLE`]) and wakes the
//! requests whose deadline has passed.
//!
//! If the thread cannot be started, [`Deadline::after`] gives `None` and
//! callers fall back to reqwest's own request timeout.

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// The longest the thread sleeps: registering a deadline later than its
/// next wake-up needs no system call.
const IDLE: Duration = Duration::from_secs(1);

/// A registration: the deadline, and a number to tell equal ones apart.
type Key = (Instant, u64);

struct Watchdog {
    state: Mutex<State>,
    wake: Condvar,
}

struct State {
    timers: BTreeMap<Key, Waker>,
    next_id: u64,
    /// When the thread wakes next.
    wakes_at: Instant,
}

impl Watchdog {
    /// The shared watchdog, its thread started on first use; `None` if it
    /// could not be started.
    fn get() -> Option<&'static Watchdog> {
        static WATCHDOG: OnceLock<Option<Arc<Watchdog>>> = OnceLock::new();
        WATCHDOG
            .get_or_init(|| {
                let watchdog = Arc::new(Watchdog {
                    state: Mutex::new(State {
                        timers: BTreeMap::new(),
                        next_id: 0,
                        wakes_at: Instant::now(),
                    }),
                    wake: Condvar::new(),
                });
                let thread = Arc::clone(&watchdog);
                let spawned = std::thread::Builder::new()
                    .name("httpset-timeouts".to_owned())
                    .spawn(move || thread.run());
                match spawned {
                    Ok(_) => Some(watchdog),
                    Err(error) => {
                        tracing::warn!(%error, "cannot start the timeout thread; using reqwest's timeouts");
                        None
                    }
                }
            })
            .as_deref()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wakes requests past their deadline, then sleeps until the next one.
    fn run(&self) {
        let mut due = Vec::new();
        let mut state = self.lock();
        loop {
            let now = Instant::now();
            while let Some(entry) = state.timers.first_entry() {
                if entry.key().0 > now {
                    break;
                }
                due.push(entry.remove());
            }
            let next = state
                .timers
                .first_key_value()
                .map_or(now + IDLE, |((at, _), _)| (*at).min(now + IDLE));
            state.wakes_at = next;
            if !due.is_empty() {
                drop(state);
                due.drain(..).for_each(Waker::wake);
                state = self.lock();
                continue;
            }
            state = self
                .wake
                .wait_timeout(state, next.saturating_duration_since(now))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    fn register(&self, at: Instant, waker: Waker) -> Key {
        let mut state = self.lock();
        let key = (at, state.next_id);
        state.next_id = state.next_id.wrapping_add(1);
        state.timers.insert(key, waker);
        if at < state.wakes_at {
            state.wakes_at = at;
            self.wake.notify_one();
        }
        key
    }

    /// Wakes `waker` instead at `key`'s deadline (again, if it has passed
    /// meanwhile).
    fn update(&self, key: Key, waker: &Waker) {
        let mut state = self.lock();
        state.timers.insert(key, waker.clone());
        if key.0 < state.wakes_at {
            state.wakes_at = key.0;
            self.wake.notify_one();
        }
    }

    fn deregister(&self, key: Key) {
        self.lock().timers.remove(&key);
    }
}

/// When an attempt times out. Poll it with [`Deadline::poll_expired`]
/// whenever the attempt must wait.
pub(crate) struct Deadline {
    at: Instant,
    timeout: Duration,
    watchdog: &'static Watchdog,
    /// Registered with the watchdog, and for which waker.
    registered: Option<(Key, Waker)>,
}

impl Deadline {
    /// A deadline `timeout` from now; `None` if the timer thread is not
    /// available or the deadline is too far to tell.
    pub(crate) fn after(timeout: Duration) -> Option<Deadline> {
        let watchdog = Watchdog::get()?;
        Some(Deadline {
            at: Instant::now().checked_add(timeout)?,
            timeout,
            watchdog,
            registered: None,
        })
    }

    /// The timeout this deadline was set with.
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// `Ready` once the deadline has passed; else arranges for the task to
    /// be woken then.
    pub(crate) fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.at {
            self.cancel();
            return Poll::Ready(());
        }
        match &mut self.registered {
            Some((_, waker)) if waker.will_wake(cx.waker()) => {}
            Some((key, waker)) => {
                waker.clone_from(cx.waker());
                self.watchdog.update(*key, waker);
            }
            None => {
                let key = self.watchdog.register(self.at, cx.waker().clone());
                self.registered = Some((key, cx.waker().clone()));
            }
        }
        Poll::Pending
    }

    /// No longer needs waking.
    pub(crate) fn cancel(&mut self) {
        if let Some((key, _)) = self.registered.take() {
            self.watchdog.deregister(key);
        }
    }
}

impl Drop for Deadline {
    fn drop(&mut self) {
        self.cancel();
    }
}

/// Polls `future` until it is ready or `deadline` passes (`Err(())`).
pub(crate) async fn within<F>(future: F, deadline: Option<&mut Deadline>) -> Result<F::Output, ()>
where
    F: std::future::Future + Unpin,
{
    let Some(deadline) = deadline else {
        return Ok(future.await);
    };
    let mut future = future;
    std::future::poll_fn(move |cx| {
        if let Poll::Ready(output) = std::pin::Pin::new(&mut future).poll(cx) {
            return Poll::Ready(Ok(output));
        }
        deadline.poll_expired(cx).map(Err)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn wakes_at_the_deadline_and_not_before() {
        let mut deadline = Deadline::after(Duration::from_millis(100)).expect("thread");
        let started = Instant::now();
        let never = std::future::pending::<()>();
        let result = within(never, Some(&mut deadline)).await;
        assert_eq!(result, Err(()));
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(100), "{took:?}");
        assert!(took < Duration::from_secs(1), "{took:?}");
        assert_eq!(deadline.timeout(), Duration::from_millis(100));

        // Ready first: the deadline is cancelled with it.
        let mut deadline = Deadline::after(Duration::from_secs(60)).expect("thread");
        let ready = within(std::future::ready(7), Some(&mut deadline)).await;
        assert_eq!(ready, Ok(7));
        assert_eq!(within(std::future::ready(8), None).await, Ok(8));
    }

    #[tokio::test]
    async fn many_deadlines_in_any_order() {
        let started = Instant::now();
        let waits: Vec<_> = [300u64, 50, 200, 50, 10, 150]
            .into_iter()
            .map(|ms| {
                tokio::spawn(async move {
                    let mut deadline = Deadline::after(Duration::from_millis(ms)).expect("thread");
                    let _ = within(std::future::pending::<()>(), Some(&mut deadline)).await;
                    (ms, started.elapsed())
                })
            })
            .collect();
        for wait in waits {
            let (ms, took) = wait.await.expect("task");
            assert!(took >= Duration::from_millis(ms), "{ms}: {took:?}");
            assert!(took < Duration::from_millis(ms + 500), "{ms}: {took:?}");
        }
        // Given up before the deadline: deregistered, nothing woken later.
        let mut deadline = Deadline::after(Duration::from_millis(50)).expect("thread");
        let gave_up = tokio::time::timeout(
            Duration::from_millis(10),
            within(std::future::pending::<()>(), Some(&mut deadline)),
        )
        .await;
        assert!(gave_up.is_err());
        assert!(deadline.registered.is_some(), "registered while waiting");
        deadline.cancel();
        assert!(deadline.registered.is_none());
    }
}
