//! Attempt timeouts on tokio's timer, armed only when an attempt has to
//! wait.
//!
//! Most of what a timer costs on the request path is arming it: an attempt
//! whose response is ready when first polled never arms one, and an
//! attempt that waits arms one tokio timer, once. Should there be no tokio
//! runtime, [`Deadline::after`] gives `None` and callers fall back to
//! reqwest's own request timeout.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// When an attempt times out. Poll it with [`Deadline::poll_expired`]
/// whenever the attempt must wait.
pub(crate) struct Deadline {
    at: Instant,
    timeout: Duration,
    /// Armed at the first wait.
    timer: Option<Pin<Box<Sleep>>>,
}

impl Deadline {
    /// A deadline `timeout` from now; `None` outside a tokio runtime or if
    /// the deadline is too far to tell.
    pub(crate) fn after(timeout: Duration) -> Option<Deadline> {
        tokio::runtime::Handle::try_current().ok()?;
        Some(Deadline {
            at: Instant::now().checked_add(timeout)?,
            timeout,
            timer: None,
        })
    }

    /// The timeout this deadline was set with.
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// `Ready` once the deadline has passed; else arranges for the task to
    /// be woken then.
    pub(crate) fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let at = self.at;
        self.timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)))
            .as_mut()
            .poll(cx)
    }
}

/// Polls `future` until it is ready or `deadline` passes (`Err(())`).
pub(crate) async fn within<F>(future: F, deadline: Option<&mut Deadline>) -> Result<F::Output, ()>
where
    F: Future + Unpin,
{
    let Some(deadline) = deadline else {
        return Ok(future.await);
    };
    let mut future = future;
    std::future::poll_fn(move |cx| {
        if let Poll::Ready(output) = Pin::new(&mut future).poll(cx) {
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
        let started = std::time::Instant::now();
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
        let started = std::time::Instant::now();
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
        // Given up before the deadline.
        let mut deadline = Deadline::after(Duration::from_millis(50)).expect("thread");
        let gave_up = tokio::time::timeout(
            Duration::from_millis(10),
            within(std::future::pending::<()>(), Some(&mut deadline)),
        )
        .await;
        assert!(gave_up.is_err());
        assert!(deadline.timer.is_some(), "armed while waiting");
    }
}
