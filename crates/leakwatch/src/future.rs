//! Futures that take something along into each of their polls.
//!
//! A future runs in pieces: each call to `poll` runs it until it waits, on whichever
//! thread the executor chose. Per-thread state that should follow the future (a leak
//! check's scope, see [`check::inherit`](crate::check::inherit)) must therefore be set
//! for each poll and taken back when the poll returns, so that the thread is itself
//! again when it goes on to poll other tasks. [`Within`] does that around the future it
//! wraps, for anything that implements [`AroundPoll`]; [`tagged`] uses it to keep a
//! task's tags (`leakwatch::tag`) in force on every poll.
//!
//! ```
//! use leakwatch::future::{AroundPoll, Within};
//! use std::future::Future;
//! use std::pin::Pin;
//! use std::task::{Context, Poll};
//!
//! /// Counts the polls of a future.
//! #[derive(Debug, Default)]
//! struct CountPolls(u32);
//!
//! impl AroundPoll for CountPolls {
//!     fn poll_within<F: Future>(&mut self, future: Pin<&mut F>, cx: &mut Context<'_>) -> Poll<F::Output> {
//!         self.0 += 1;
//!         future.poll(cx)
//!     }
//! }
//!
//! let mut future = Box::pin(Within::new(async { 7 }, CountPolls::default()));
//! let mut cx = Context::from_waker(std::task::Waker::noop());
//! assert_eq!(future.as_mut().poll(&mut cx), Poll::Ready(7));
//! assert_eq!(future.around().0, 1);
//! ```

use leakwatch_alloc::TagSet;
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// What a [`Within`] future does around each poll of the future it wraps.
pub trait AroundPoll {
    /// Polls `future` once, with whatever this sets up around it, and returns what the
    /// poll returned. Called on the thread that polls the [`Within`] future, once per
    /// poll.
    fn poll_within<F: Future>(
        &mut self,
        future: Pin<&mut F>,
        cx: &mut Context<'_>,
    ) -> Poll<F::Output>;
}

pin_project! {
    /// A future that runs each poll of `future` through `around`
    /// ([`AroundPoll::poll_within`]), on whichever thread polls it.
    ///
    /// Only polls go through `around`: `future` is dropped (when the executor drops the
    /// `Within`) without it, and `around` is dropped after `future`.
    #[must_use = "futures do nothing unless polled"]
    pub struct Within<F, A> {
        #[pin]
        future: F,
        around: A,
    }
}

impl<F, A> Within<F, A> {
    /// `future`, each of its polls run through `around`.
    pub fn new(future: F, around: A) -> Self {
        Within { future, around }
    }

    /// What runs around the polls.
    pub fn around(&self) -> &A {
        &self.around
    }
}

impl<F: Future, A: AroundPoll> Future for Within<F, A> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        this.around.poll_within(this.future, cx)
    }
}

impl<F, A: std::fmt::Debug> std::fmt::Debug for Within<F, A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Within")
            .field("around", &self.around)
            .finish_non_exhaustive()
    }
}

/// Runs each poll with a tag set in force: what [`tagged`] wraps a future with.
#[derive(Debug, Clone, Copy)]
pub struct WithTags(TagSet);

impl WithTags {
    /// The tag set in force during each poll.
    pub fn tags(&self) -> TagSet {
        self.0
    }
}

impl AroundPoll for WithTags {
    fn poll_within<F: Future>(
        &mut self,
        future: Pin<&mut F>,
        cx: &mut Context<'_>,
    ) -> Poll<F::Output> {
        let _tags = self.0.enter();
        future.poll(cx)
    }
}

/// `future` with `tags` added to the tags in force where this is called, in force for
/// every poll on whichever thread polls it (a task on a multi-threaded runtime moves
/// between worker threads; a thread-local guard would tag the wrong work). The tag set
/// is interned once, here; each poll costs a swap of the thread's current set.
///
/// ```
/// # async fn handle_request() {}
/// let request = leakwatch::tagged([("route", "/v1/generate"), ("model", "2")], handle_request());
/// // tokio::spawn(request);
/// # drop(request);
/// ```
pub fn tagged<'a, F: Future>(
    tags: impl IntoIterator<Item = (&'a str, &'a str)>,
    future: F,
) -> Within<F, WithTags> {
    Within::new(future, WithTags(TagSet::current().with_all(tags)))
}

/// `future` with the tag set `tags` in force for every poll (see [`tagged`]).
pub fn with_tags<F: Future>(tags: TagSet, future: F) -> Within<F, WithTags> {
    Within::new(future, WithTags(tags))
}
