//! The outage's leak as a `leakwatch::check` leak test: the request handler's whole work
//! (`generate_text`), in process, a new session each run, after a model update.
//!
//! The warm-up opens more sessions than the store's budget holds, so the fixed store is
//! evicting by the time the measured runs start: what it keeps is bounded, and the check
//! passes. The leaky store misses every eviction after the model update, and the check
//! fails naming `open_session`, where each session's cache is allocated. Release builds
//! name inlined frames without their module path, so sites are matched by the function's
//! name alone.

#[global_allocator]
static ALLOC: leakwatch::LeakWatch = leakwatch::LeakWatch::system();

use model_server::server::{
    ApiError, AppState, Config, GenerateRequest, GenerateResponse, generate_text,
};
use model_server::sessions::Eviction;
use std::sync::Arc;

/// Context words per session (the default): a session's cache is 128 x 32 x 2 x 4 B.
const CONTEXT: usize = 128;
const SESSION_BYTES: usize = CONTEXT * 32 * 2 * 4;
/// Sessions the store's budget holds.
const SESSIONS: usize = 8;
/// Warm-up runs: well past the point where the store is full.
const WARMUP: usize = 3 * SESSIONS;
const ITERATIONS: usize = 40;

/// A service's state with a small store, after a model update.
fn updated_service(eviction: Eviction) -> Arc<AppState> {
    let mut config = Config::default();
    config.store.eviction = eviction;
    config.store.context_tokens = CONTEXT;
    config.store.budget_bytes = SESSIONS * SESSION_BYTES;
    let state = AppState::new(config, "127.0.0.1:0".parse().unwrap(), None);
    let swapped = state.swap_model(None);
    assert_eq!(swapped, Ok((1, 2)));
    state
}

/// A check of one generation per run, each for a new session.
fn check_generation(
    state: &AppState,
) -> leakwatch::check::Check<impl FnMut() -> Result<GenerateResponse, ApiError> + '_> {
    let mut n = 0u64;
    leakwatch::check(move || {
        n += 1;
        let response = generate_text(
            state,
            GenerateRequest {
                session_id: format!("session-{n}"),
                prompt: "the baker sold bread to the".to_string(),
                max_tokens: Some(4),
            },
        );
        assert!(response.is_ok(), "generate_text failed: {response:?}");
        response
    })
    .warmup(WARMUP)
    .iterations(ITERATIONS)
}

fn names_open_session(label: &str) -> bool {
    label.contains("open_session")
}

#[test]
fn the_leaky_store_leaks_in_open_session_after_a_model_update() {
    let state = updated_service(Eviction::Leaky);
    let result = check_generation(&state).run();
    let leaks: Vec<_> = result.leaks().collect();
    assert!(
        !leaks.is_empty(),
        "the leaky store should leak after a model update: {result:#?}"
    );
    assert!(
        names_open_session(&leaks[0].label),
        "the largest leak should be open_session's, not {:?}: {leaks:#?}",
        leaks[0].label
    );
    // Each run keeps one session's cache: a keys and a values vector of half of it each
    // (in one site or two, depending on how the build labels the two lines).
    let per_run: f64 = leaks
        .iter()
        .filter(|s| names_open_session(&s.label))
        .map(|s| s.bytes_per_run)
        .sum();
    assert!(
        per_run >= SESSION_BYTES as f64,
        "open_session should keep {SESSION_BYTES} B per run, not {per_run}: {leaks:#?}"
    );
    // The store believes it is within budget; it holds every session.
    let stats = state.store_stats();
    assert_eq!(stats.sessions, WARMUP + ITERATIONS, "{stats:?}");
    assert!(
        stats.accounted_bytes <= SESSIONS * SESSION_BYTES,
        "{stats:?}"
    );
}

#[test]
#[should_panic(expected = "open_session")]
fn assert_no_leaks_fails_on_the_leaky_store_naming_open_session() {
    let state = updated_service(Eviction::Leaky);
    check_generation(&state).assert_no_leaks();
}

#[test]
fn the_fixed_store_does_not_leak_after_a_model_update() {
    let state = updated_service(Eviction::Fixed);
    check_generation(&state).assert_no_leaks();
    let stats = state.store_stats();
    assert_eq!(stats.sessions, SESSIONS, "{stats:?}");
    assert_eq!(stats.held_bytes, SESSIONS * SESSION_BYTES, "{stats:?}");
}

#[test]
fn the_fixed_store_check_sees_the_sessions_it_evicts() {
    // The passing check above means something only if the check saw open_session
    // allocate: it did, every run, and freed as much.
    let state = updated_service(Eviction::Fixed);
    let result = check_generation(&state).run();
    assert_eq!(result.leaks().count(), 0, "{result:#?}");
    let opened: Vec<_> = result
        .sites
        .iter()
        .filter(|s| names_open_session(&s.label))
        .collect();
    assert!(
        !opened.is_empty(),
        "the check should see open_session allocate: {result:#?}"
    );
    assert!(
        result.allocations > 0 && result.peak_bytes >= SESSION_BYTES as i64,
        "{result:#?}"
    );
}

#[test]
fn the_leaky_store_does_not_leak_before_any_model_update() {
    // The bug needs the model update: until then, evictions find their sessions.
    let mut config = Config::default();
    config.store.eviction = Eviction::Leaky;
    config.store.budget_bytes = SESSIONS * SESSION_BYTES;
    let state = AppState::new(config, "127.0.0.1:0".parse().unwrap(), None);
    check_generation(&state).assert_no_leaks();
    assert_eq!(state.store_stats().sessions, SESSIONS);
}
