//! The scope protocol, checked over every interleaving: threads open and close scopes
//! while another changes the tracking mode, and whenever a thread is inside a scope (its
//! open finished, its close not begun) the state word must say a scope is open.
//!
//! Each step of a thread is one atomic operation on the shared words, applied to plain
//! values; a depth-first search visits every reachable combination of shared words and
//! thread positions, so every interleaving of those atomic steps is covered. The
//! protocol in use applies the real transitions ([`opened`], [`closed`], `moded`) as
//! its single steps; the one it replaced (a count in a word of its own, then a flag set
//! or cleared) is checked too, to show that the search finds its race.

use super::{closed, opened};
use crate::state::{EXACT, FREE_CHECK, OFF, SAMPLED, SCOPES, scoped};
use crate::tracker::moded;
use std::collections::HashSet;

/// The old protocol's flag bit, in its own byte.
const OLD_SCOPED: u8 = 8;

/// The words the threads share, as plain values.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
struct Shared {
    /// The state word (the old protocol keeps its flag in the low byte).
    state: u32,
    /// The old protocol's separate open count (unused by the current one).
    open: u32,
}

/// What a scope thread does next.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
struct Thread {
    /// Operations done: even = outside a scope (next: open), odd = inside (next: close).
    done: u8,
    /// Steps of the current operation done.
    step: u8,
    /// The value the operation's first step read, for its second.
    seen: u32,
}

/// A scope protocol as a sequence of atomic steps per operation.
trait Protocol {
    /// Runs step `thread.step` of opening (`done` even) or closing a scope; returns
    /// whether the operation is complete.
    fn step(shared: &mut Shared, thread: &mut Thread) -> bool;
    /// Whether the state word says a scope is open.
    fn says_scoped(shared: &Shared) -> bool;
}

/// The protocol in use: one read-modify-write of the state word per operation.
struct OneWord;

impl Protocol for OneWord {
    fn step(shared: &mut Shared, thread: &mut Thread) -> bool {
        shared.state = if thread.done % 2 == 0 {
            opened(shared.state)
        } else {
            closed(shared.state)
        };
        true
    }

    fn says_scoped(shared: &Shared) -> bool {
        scoped(shared.state)
    }
}

/// The replaced protocol: `OPEN.fetch_add(1) == 0` then `STATE.fetch_or(SCOPED)`;
/// `OPEN.fetch_sub(1) == 1` then `STATE.fetch_and(!SCOPED)`.
struct TwoWords;

impl Protocol for TwoWords {
    fn step(shared: &mut Shared, thread: &mut Thread) -> bool {
        let opening = thread.done % 2 == 0;
        if thread.step == 0 {
            thread.seen = shared.open;
            shared.open = if opening {
                shared.open + 1
            } else {
                shared.open - 1
            };
            return false;
        }
        if opening && thread.seen == 0 {
            shared.state |= u32::from(OLD_SCOPED | FREE_CHECK as u8);
        } else if !opening && thread.seen == 1 {
            shared.state &= !u32::from(OLD_SCOPED);
        }
        true
    }

    fn says_scoped(shared: &Shared) -> bool {
        shared.state & u32::from(OLD_SCOPED) != 0
    }
}

/// Modes the mode-changing thread switches through, one atomic step each.
const MODES: [u32; 3] = [SAMPLED, OFF, EXACT];

/// A state of the whole system: the shared words, each scope thread, and how many mode
/// changes the mode thread has made.
type Node<const N: usize> = (Shared, [Thread; N], usize);

/// Explores every interleaving of `N` threads that each open and close a scope `rounds`
/// times, and one thread that changes the mode `MODES.len()` times. Returns the first
/// violation found (a thread inside a scope while the word says none is open, or a
/// count left behind once all are closed), with the number of states visited.
fn explore<P: Protocol, const N: usize>(rounds: u8) -> (Option<String>, usize) {
    let start: Node<N> = (
        Shared {
            state: OFF,
            open: 0,
        },
        [Thread {
            done: 0,
            step: 0,
            seen: 0,
        }; N],
        0,
    );
    let mut seen = HashSet::new();
    let mut stack = vec![start];
    while let Some(node) = stack.pop() {
        if !seen.insert(node) {
            continue;
        }
        let (shared, threads, modes) = node;
        for (i, t) in threads.iter().enumerate() {
            let inside = t.done % 2 == 1 && t.step == 0;
            if inside && !P::says_scoped(&shared) {
                return (
                    Some(format!(
                        "thread {i} is in a scope, the word says none: {node:?}"
                    )),
                    seen.len(),
                );
            }
        }
        let finished = threads.iter().all(|t| t.done == 2 * rounds) && modes == MODES.len();
        if finished && (P::says_scoped(&shared) || shared.state & SCOPES != 0) {
            return (
                Some(format!(
                    "all scopes closed, the word says one is open: {node:?}"
                )),
                seen.len(),
            );
        }
        for i in 0..N {
            if threads[i].done == 2 * rounds {
                continue;
            }
            let (mut next_shared, mut next_threads) = (shared, threads);
            let t = &mut next_threads[i];
            if P::step(&mut next_shared, t) {
                t.done += 1;
                t.step = 0;
            } else {
                t.step += 1;
            }
            stack.push((next_shared, next_threads, modes));
        }
        if modes < MODES.len() {
            let mut next_shared = shared;
            next_shared.state = moded(next_shared.state, MODES[modes]);
            stack.push((next_shared, threads, modes + 1));
        }
    }
    (None, seen.len())
}

#[test]
fn one_word_never_leaves_an_open_scope_unseen() {
    // Four threads, two scopes each, interleaved with three mode changes in every way.
    let (violation, states) = explore::<OneWord, 4>(2);
    assert_eq!(violation, None);
    // Every combination of positions was reached: each scope thread at one of its five
    // (0 to 4 operations done), the mode thread at one of its four.
    assert_eq!(states, 5usize.pow(4) * (MODES.len() + 1));
}

#[test]
fn the_two_word_protocol_loses_a_scope() {
    // The search that passes the protocol in use finds the race of the one it replaced
    // (close's decrement, open's increment and flag, close's clearing): two threads,
    // one scope each, are enough.
    let (violation, _) = explore::<TwoWords, 2>(1);
    let violation = violation.expect("the race is found");
    assert!(violation.contains("is in a scope"), "{violation}");
}

#[test]
fn mode_changes_keep_the_scope_count() {
    let two_open = opened(opened(OFF));
    for mode in MODES {
        let s = moded(two_open, mode);
        assert_eq!(s & SCOPES, two_open & SCOPES);
        assert_eq!(s & crate::state::MODE_MASK, mode);
    }
    assert!(scoped(closed(moded(two_open, EXACT))));
    assert!(!scoped(closed(closed(moded(two_open, SAMPLED)))));
    // FREE_CHECK, once set, stays set.
    assert_ne!(moded(closed(closed(two_open)), OFF) & FREE_CHECK, 0);
}
