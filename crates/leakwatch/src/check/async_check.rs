//! Leak checks of futures ([`check_async`]) and the scope carried into tasks
//! ([`inherit`]).

use super::{__leakwatch_check_boundary, Check, CheckedCode, sealed};
use crate::future::{AroundPoll, Within};
use leakwatch_alloc::{Scope, ScopeHandle};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

/// How long, by default, a run waits for the tasks spawned through [`inherit`] that are
/// still running when its future completes ([`Check::task_timeout`]).
pub const DEFAULT_TASK_TIMEOUT: Duration = Duration::from_secs(10);

/// After a run and its tasks are done, how often the check looks again whether the
/// scope's live bytes still change, and how long it sleeps between two looks.
const SETTLE_LOOKS: usize = 50;
const SETTLE_PAUSE: Duration = Duration::from_millis(1);

/// Starts a leak check of the future that `make` returns, run to completion by
/// `block_on` (the executor's: `|future| runtime.block_on(future)`), once per run; finish
/// it as a [`check`](super::check) (the same settings and assertions), and set how long
/// a run waits for its tasks with [`Check::task_timeout`].
///
/// Each run creates the future (inside the check's scope: what `make` allocates counts)
/// and hands it to `block_on` wrapped in a [`Scoped`] future, which puts whichever
/// thread polls it in the check's scope for the duration of each poll. So every
/// allocation made while polling it counts, exactly, on any thread, and nothing else the
/// executor does: `block_on` itself runs outside the scope, and so does every other
/// task, unless the checked code spawns it through [`inherit`].
///
/// A run is over when its future has completed *and* the tasks spawned through
/// [`inherit`] during the check have all finished (been dropped): what they hold until
/// then is work in progress, not a leak. A run waits for them up to
/// [`Check::task_timeout`] (default [`DEFAULT_TASK_TIMEOUT`]); if some are still running
/// then, they count as live memory from then on (a task that never ends is a task per
/// run that leaks), later runs do not wait, and the result says so in its warnings.
/// Then the run waits until the scope's live bytes stop changing (looked at 1 ms apart,
/// at most 50 times): an executor may free a finished task's own memory on its worker
/// after waking whoever awaited the task (tokio does), so a reading taken at once could
/// still count it.
///
/// Counted as the checked code's, because they are made while polling it: the
/// executor's own allocations for the tasks it spawns (a tokio task's header and
/// future, freed when the task ends and its `JoinHandle` is dropped), and what a worker
/// thread allocates once, the first time it does something for a scoped future (a
/// tokio worker's buffer of deferred wake-ups, 64 bytes at the first `yield_now` of a
/// task on it). Warm-up runs absorb those when every worker has polled the code by
/// then; one worker's first time during the measured runs is a single step, not a leak,
/// but the first times of several look like growth. So give the runtime of a leak check
/// few workers (`worker_threads(2)`) and more warm-up runs than that.
///
/// # Examples
/// With a minimal `block_on` on `std::thread` (a runtime's, such as tokio's
/// `Runtime::block_on`, is used the same way):
/// ```
/// #[global_allocator]
/// static ALLOC: leakwatch::LeakWatch = leakwatch::LeakWatch::system();
///
/// use std::sync::{Arc, Mutex};
/// use std::task::{Context, Poll, Wake, Waker};
///
/// /// Runs a future to completion on this thread, sleeping while it waits.
/// fn block_on<F: Future>(future: F) -> F::Output {
///     struct Unpark(std::thread::Thread);
///     impl Wake for Unpark {
///         fn wake(self: Arc<Self>) {
///             self.0.unpark();
///         }
///     }
///     let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
///     let mut cx = Context::from_waker(&waker);
///     let mut future = std::pin::pin!(future);
///     loop {
///         match future.as_mut().poll(&mut cx) {
///             Poll::Ready(output) => return output,
///             Poll::Pending => std::thread::park(),
///         }
///     }
/// }
///
/// async fn handle(request: u32, log: &Mutex<Vec<String>>) -> usize {
///     let reply = format!("hello {request}");
///     let mut log = log.lock().unwrap();
///     log.truncate(10); // bounded: keeps the last ten
///     log.push(reply.clone());
///     reply.len()
/// }
///
/// let log = Mutex::new(Vec::new());
/// let mut request = 0;
/// leakwatch::check_async(
///     || {
///         request += 1;
///         handle(request, &log)
///     },
///     |future| block_on(future),
/// )
/// .warmup(20) // the bounded log fills up during warm-up
/// .iterations(100)
/// .assert_no_leaks();
/// ```
pub fn check_async<M, Fut, B>(make: M, block_on: B) -> Check<AsyncCode<M, B>>
where
    M: FnMut() -> Fut,
    Fut: Future,
    B: FnMut(Scoped<Fut>) -> Fut::Output,
{
    Check::of(AsyncCode {
        make,
        block_on,
        task_timeout: DEFAULT_TASK_TIMEOUT,
        tasks: None,
        waiting: true,
        notes: Vec::new(),
    })
}

/// Wraps `future` so that its polls count in the check the caller is in (the scope of
/// the calling thread, [`ScopeHandle::current`]), on whichever thread polls it: pass it
/// to the executor's spawn (`tokio::spawn(leakwatch::check::inherit(task))`). Outside a
/// check it changes nothing.
///
/// Tasks spawned without it are not tracked, even by a check whose code spawns them:
/// only the spawn's own allocations are (the executor's record of the task, made while
/// polling the checked code). In a [`check_async`], a run also waits for the tasks
/// spawned through `inherit` to finish (see there).
pub fn inherit<F: Future>(future: F) -> Scoped<F> {
    let scope = ScopeHandle::current();
    let task = scope.and_then(tasks_of).map(TaskToken::new);
    Within::new(future, InScope { scope, _task: task })
}

/// A future whose polls count in a leak check's scope ([`inherit`], [`check_async`]).
pub type Scoped<F> = Within<F, InScope>;

/// What a [`Scoped`] future does around each poll: puts the polling thread in the
/// check's scope, and back where it was when the poll returns.
#[derive(Debug)]
pub struct InScope {
    scope: Option<ScopeHandle>,
    /// Counts the task in its check until the future is dropped (a field of `Within`
    /// after the future, so it is dropped after it).
    _task: Option<TaskToken>,
}

impl AroundPoll for InScope {
    fn poll_within<F: Future>(
        &mut self,
        future: Pin<&mut F>,
        cx: &mut Context<'_>,
    ) -> Poll<F::Output> {
        let _inside = self.scope.map(|scope| scope.enter());
        __leakwatch_check_boundary_poll(future, cx)
    }
}

/// [`super::__leakwatch_check_boundary`] for a poll: the stacks of what a scoped future
/// allocates end here, not in the executor's frames.
#[inline(never)]
fn __leakwatch_check_boundary_poll<F: Future>(
    future: Pin<&mut F>,
    cx: &mut Context<'_>,
) -> Poll<F::Output> {
    std::hint::black_box(future.poll(cx))
}

/// The code of a [`check_async`]: the future's maker, the executor, and the tasks
/// spawned through [`inherit`].
pub struct AsyncCode<M, B> {
    make: M,
    block_on: B,
    task_timeout: Duration,
    /// This check's task count, registered at its first run.
    tasks: Option<Registration>,
    /// Whether runs still wait for their tasks (until a wait timed out).
    waiting: bool,
    notes: Vec<String>,
}

impl<M, B> std::fmt::Debug for AsyncCode<M, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncCode")
            .field("task_timeout", &self.task_timeout)
            .field("waiting", &self.waiting)
            .finish_non_exhaustive()
    }
}

impl<M, B> Check<AsyncCode<M, B>> {
    /// How long a run waits, after its future completed, for the tasks spawned through
    /// [`inherit`] that are still running (default [`DEFAULT_TASK_TIMEOUT`]; see
    /// [`check_async`]).
    pub fn task_timeout(mut self, limit: Duration) -> Self {
        self.code.task_timeout = limit;
        self
    }
}

impl<M, Fut, B> sealed::RunOnce for AsyncCode<M, B>
where
    M: FnMut() -> Fut,
    Fut: Future,
    B: FnMut(Scoped<Fut>) -> Fut::Output,
{
    fn run_once(&mut self, scope: &Scope) {
        let handle = scope.handle();
        let tasks = Arc::clone(
            &self
                .tasks
                .get_or_insert_with(|| Registration::new(handle))
                .tasks,
        );
        let future = {
            let _inside = handle.enter();
            __leakwatch_check_boundary(&mut self.make)
        };
        let around = InScope {
            scope: Some(handle),
            _task: None,
        };
        let output = (self.block_on)(Within::new(future, around));
        {
            let _inside = handle.enter();
            drop(std::hint::black_box(output));
        }
        if self.waiting {
            let running = tasks.wait_until_none(self.task_timeout);
            if running > 0 {
                self.waiting = false;
                self.notes.push(format!(
                    "{running} task(s) spawned through leakwatch::check::inherit were still running {:?} after a run's future completed: what they hold counts as live, and later runs did not wait for their tasks (Check::task_timeout)",
                    self.task_timeout
                ));
            }
        }
        settle(scope);
    }

    fn notes(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notes)
    }
}

impl<M, Fut, B> CheckedCode for AsyncCode<M, B>
where
    M: FnMut() -> Fut,
    Fut: Future,
    B: FnMut(Scoped<Fut>) -> Fut::Output,
{
}

/// Waits until the scope's live bytes stop changing: frees that other threads make
/// after the run's future completed (bounded: [`SETTLE_LOOKS`] looks).
fn settle(scope: &Scope) {
    let mut last = scope.live_bytes();
    for _ in 0..SETTLE_LOOKS {
        std::thread::sleep(SETTLE_PAUSE);
        let now = scope.live_bytes();
        if now == last {
            return;
        }
        last = now;
    }
}

/// The tasks of one async check that are still running.
#[derive(Debug, Default)]
struct Tasks {
    running: Mutex<usize>,
    finished: Condvar,
}

impl Tasks {
    /// Waits until no task is running, at most `limit`; returns how many still are.
    fn wait_until_none(&self, limit: Duration) -> usize {
        let running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        let (running, _) = self
            .finished
            .wait_timeout_while(running, limit, |n| *n > 0)
            .unwrap_or_else(PoisonError::into_inner);
        *running
    }
}

/// One running task of a check.
#[derive(Debug)]
struct TaskToken(Arc<Tasks>);

impl TaskToken {
    fn new(tasks: Arc<Tasks>) -> TaskToken {
        *tasks.running.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        TaskToken(tasks)
    }
}

impl Drop for TaskToken {
    fn drop(&mut self) {
        let mut running = self
            .0
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *running = running.saturating_sub(1);
        self.0.finished.notify_all();
    }
}

/// The async checks running now, by scope: where [`inherit`] finds its check's tasks.
static ASYNC_CHECKS: Mutex<Vec<(ScopeHandle, Arc<Tasks>)>> = Mutex::new(Vec::new());

/// The task count of the async check whose scope is `scope`, if it is one.
fn tasks_of(scope: ScopeHandle) -> Option<Arc<Tasks>> {
    let checks = ASYNC_CHECKS.lock().unwrap_or_else(PoisonError::into_inner);
    checks
        .iter()
        .find(|(s, _)| *s == scope)
        .map(|(_, tasks)| Arc::clone(tasks))
}

/// An async check's entry in [`ASYNC_CHECKS`], removed when the check ends (or unwinds).
struct Registration {
    scope: ScopeHandle,
    tasks: Arc<Tasks>,
}

impl Registration {
    fn new(scope: ScopeHandle) -> Registration {
        let tasks = Arc::new(Tasks::default());
        ASYNC_CHECKS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((scope, Arc::clone(&tasks)));
        Registration { scope, tasks }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        ASYNC_CHECKS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|(s, _)| *s != self.scope);
    }
}
