//! Reporting how an attempt went to its endpoint's failure accrual.
//!
//! An attempt that fails to connect, times out, or loses its connection
//! before a response is a failure. A response, whatever its status, is a
//! success, unless reading its body fails (the connection closed before
//! the body was complete, or the attempt timed out while reading it): the
//! permit rides along in the response body and reports when the body ends,
//! fails, or is dropped (dropped unfinished: a success, the endpoint did
//! answer). A request whose future is dropped reports nothing.
//!
//! The attempt's deadline rides along in the body too: reading the body is
//! part of the attempt.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use reqwest::{Body, ResponseBuilderExt};
use serversets::accrual::Permit;

use crate::deadline::Deadline;

/// Whether a failed attempt counts against its endpoint: it could not
/// connect, timed out, or its connection broke before a response.
pub(crate) fn counts_against(error: &reqwest::Error) -> bool {
    error.is_connect() || error.is_timeout() || error.is_request()
}

/// Reports a failed attempt (errors that say nothing about the endpoint,
/// such as a request that could not be built, report nothing).
pub(crate) fn failed(permit: Option<Permit>, error: &reqwest::Error) {
    if let Some(permit) = permit {
        if counts_against(error) {
            let dead = permit.failure();
            if dead {
                tracing::debug!(%error, "endpoint marked dead (or still dead)");
            }
        }
    }
}

/// Reports an attempt that timed out before a response.
pub(crate) fn timed_out(permit: Option<Permit>) {
    if let Some(permit) = permit {
        let _ = permit.failure();
    }
}

/// The response, its body carrying `permit` to report when it ends and
/// `deadline` to end it if it takes too long.
pub(crate) fn answered(
    response: reqwest::Response,
    permit: Option<Permit>,
    deadline: Option<Deadline>,
) -> reqwest::Response {
    if permit.is_none() && deadline.is_none() {
        return response;
    }
    let url = response.url().clone();
    let (mut parts, body) = http::Response::<Body>::from(response).into_parts();
    // The URL rides in an extension reqwest reads back; it is put in the
    // response's own extensions (moved into a builder and back).
    let mut builder = http::Response::builder();
    if let Some(extensions) = builder.extensions_mut() {
        *extensions = std::mem::take(&mut parts.extensions);
    }
    match builder.url(url).body(()) {
        Ok(with_url) => parts.extensions = with_url.into_parts().0.extensions,
        Err(error) => tracing::debug!(%error, "response URL lost"),
    }
    let body = Body::wrap(Watched {
        inner: body,
        permit,
        deadline,
    });
    reqwest::Response::from(http::Response::from_parts(parts, body))
}

/// A response body that reports to its endpoint's accrual once: a
/// success at its end or when dropped, a failure if reading it fails or
/// takes past the attempt's deadline.
struct Watched {
    inner: Body,
    permit: Option<Permit>,
    deadline: Option<Deadline>,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl http_body::Body for Watched {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(None) => {
                this.deadline = None;
                if let Some(permit) = this.permit.take() {
                    permit.success();
                }
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(error))) => {
                this.deadline = None;
                if let Some(permit) = this.permit.take() {
                    tracing::debug!(%error, "response body failed");
                    let _ = permit.failure();
                }
                Poll::Ready(Some(Err(error.into())))
            }
            Poll::Ready(Some(Ok(frame))) => Poll::Ready(Some(Ok(frame))),
            Poll::Pending => {
                let Some(deadline) = &mut this.deadline else {
                    return Poll::Pending;
                };
                if deadline.poll_expired(cx).is_pending() {
                    return Poll::Pending;
                }
                let timeout = deadline.timeout();
                this.deadline = None;
                // Ends the body (and drops the connection) for good.
                this.inner = Body::from(Bytes::new());
                if let Some(permit) = this.permit.take() {
                    let _ = permit.failure();
                }
                Poll::Ready(Some(Err(Box::new(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("response body not received within the attempt timeout ({timeout:?})"),
                )))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        if let Some(permit) = self.permit.take() {
            permit.success();
        }
    }
}
