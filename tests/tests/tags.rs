//! Tags: a stack allocated under two tag sets is two sites, each with exactly its own
//! bytes (exact mode), whichever thread frees the blocks; guards nest and restore; a
//! `TagSet` carries to other threads; the intern table's bound gives the overflow set,
//! counted; tagging changes nothing for untagged sites.

use leakwatch::{LeakWatch, MAX_TAG_BYTES, MAX_TAGS, OVERFLOW_TAGS, Symbolizer, TagSet, Tags};
use leakwatch_tests::run;
use std::hint::black_box;

#[global_allocator]
static ALLOC: LeakWatch = LeakWatch::system().enabled().exact();

const PER_BLOCK: u64 = 1000 + 24;

fn tags(pairs: &[(&str, &str)]) -> Tags {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Keeps `n` blocks of 1,000 bytes and their `Vec` of `n` pointers: `n * PER_BLOCK`
/// live bytes.
#[inline(never)]
fn tagged_store(n: usize) -> Vec<Vec<u8>> {
    let kept: Vec<Vec<u8>> = (0..n).map(|_| black_box(vec![7u8; 1000])).collect();
    // Work after the call: no tail call may take this frame off the stack.
    black_box(kept)
}

/// Live bytes of the sites whose stack passes through `tagged_store`, by tag set.
fn live_by_tags() -> std::collections::BTreeMap<Tags, u64> {
    let snapshot = leakwatch::snapshot();
    let mut symbolizer = Symbolizer::new();
    let stacks = leakwatch_tests::stacks_of(&snapshot, &mut symbolizer);
    let mut out = std::collections::BTreeMap::new();
    for (site, stack) in snapshot.sites.iter().zip(stacks) {
        let here = stack.iter().any(|s| {
            s.function
                .as_deref()
                .is_some_and(|f| f.ends_with("tagged_store"))
        });
        if here {
            *out.entry(site.tags.clone()).or_insert(0) += site.live_bytes;
        }
    }
    out
}

fn one_stack_under_two_sets_is_two_sites() {
    let untagged = tagged_store(3);
    let model_1 = {
        let _model = leakwatch::tag("model", "1");
        tagged_store(5)
    };
    let (model_2, nested) = {
        let _model = leakwatch::tag("model", "2");
        let model_2 = tagged_store(7);
        let _route = leakwatch::tag("route", "/v1/generate");
        (model_2, tagged_store(11))
    };
    assert_eq!(
        TagSet::current(),
        TagSet::none(),
        "the guards restored no tags"
    );
    let live = live_by_tags();
    assert_eq!(live.get(&Tags::new()), Some(&(3 * PER_BLOCK)), "{live:?}");
    assert_eq!(
        live.get(&tags(&[("model", "1")])),
        Some(&(5 * PER_BLOCK)),
        "{live:?}"
    );
    assert_eq!(
        live.get(&tags(&[("model", "2")])),
        Some(&(7 * PER_BLOCK)),
        "{live:?}"
    );
    assert_eq!(
        live.get(&tags(&[("model", "2"), ("route", "/v1/generate")])),
        Some(&(11 * PER_BLOCK)),
        "{live:?}"
    );
    // Freed on another thread, untagged: each site still loses exactly its own bytes.
    std::thread::spawn(move || {
        drop(model_2);
        drop(nested);
    })
    .join()
    .unwrap();
    let live = live_by_tags();
    assert_eq!(live.get(&tags(&[("model", "2")])), Some(&0), "{live:?}");
    assert_eq!(
        live.get(&tags(&[("model", "1")])),
        Some(&(5 * PER_BLOCK)),
        "{live:?}"
    );
    drop((untagged, model_1));
}

fn a_tag_set_carries_to_another_thread() {
    let set = TagSet::none().with("tenant", "acme");
    let kept = std::thread::spawn(move || {
        assert_eq!(TagSet::current(), TagSet::none(), "threads start untagged");
        let _guard = set.enter();
        tagged_store(2)
    })
    .join()
    .unwrap();
    let live = live_by_tags();
    assert_eq!(
        live.get(&tags(&[("tenant", "acme")])),
        Some(&(2 * PER_BLOCK)),
        "{live:?}"
    );
    drop(kept);
}

/// A task that keeps `n` blocks across `yields` awaits, so its polls run on whichever
/// worker picks it up each time.
async fn task_keeping(n: usize, yields: usize) -> Vec<Vec<u8>> {
    let mut kept = Vec::new();
    for _ in 0..yields {
        kept.extend(tagged_store(n));
        tokio::task::yield_now().await;
    }
    kept
}

fn tagged_tasks_keep_their_tags_on_every_worker() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("runtime");
    let (kept, workers_after) = runtime.block_on(async {
        let mut handles = Vec::new();
        for model in ["1", "2"] {
            for _ in 0..4 {
                let task = leakwatch::tagged([("model", model)], task_keeping(1, 5));
                handles.push(tokio::spawn(task));
            }
        }
        let mut kept = Vec::new();
        for handle in handles {
            kept.push(handle.await.expect("task"));
        }
        // An untagged task after them: the workers' own tags are none again.
        let after = tokio::spawn(async { TagSet::current() })
            .await
            .expect("task");
        (kept, after)
    });
    assert_eq!(workers_after, TagSet::none());
    let live = live_by_tags();
    // 4 tasks x 5 polls x 1 block of 1,000 bytes per model (the one-element Vec each
    // came in is freed by `extend`): exactly its own 20 blocks, wherever each poll ran.
    for model in ["1", "2"] {
        let bytes = live.get(&tags(&[("model", model)])).copied().unwrap_or(0);
        assert_eq!(bytes, 20 * 1000, "model {model} ({live:?})");
    }
    assert_eq!(live.get(&Tags::new()).copied().unwrap_or(0), 0, "{live:?}");
    drop(kept);
    drop(runtime);
}

fn a_sites_ages_add_up_to_its_live_bytes() {
    // A snapshot first: the blocks after it are at most as old as it.
    let _ = leakwatch::snapshot();
    let kept = tagged_store(6);
    let snapshot = leakwatch::snapshot();
    let mut symbolizer = Symbolizer::new();
    let stacks = leakwatch_tests::stacks_of(&snapshot, &mut symbolizer);
    let mut seen = 0;
    for (site, stack) in snapshot.sites.iter().zip(stacks) {
        let here = stack.iter().any(|s| {
            s.function
                .as_deref()
                .is_some_and(|f| f.ends_with("tagged_store"))
        });
        if here && site.tags.is_empty() && site.live_bytes > 0 {
            seen += 1;
            assert_eq!(
                site.age_bytes.len(),
                leakwatch::AGE_BOUNDS_SECONDS.len() + 1
            );
            // Exact mode, nothing allocating there meanwhile: every live byte is in a
            // bucket, and all of them are seconds old at most.
            assert_eq!(
                site.age_bytes.iter().sum::<u64>(),
                site.live_bytes,
                "{site:?}"
            );
            assert_eq!(site.age_bytes[0], site.live_bytes, "{site:?}");
        }
    }
    assert!(seen >= 1, "no untagged live site of tagged_store");
    drop(kept);
}

fn sets_are_interned_once_and_keys_cut() {
    let a = TagSet::none().with("model", "2").with("route", "/a");
    let b = TagSet::none().with("route", "/a").with("model", "2");
    assert_eq!(a, b, "the same tags in another order are the same set");
    assert_eq!(a.with("model", "2"), a);
    assert_ne!(a.with("model", "3"), a);
    let long = "k".repeat(MAX_TAG_BYTES + 10);
    let cut = TagSet::none().with(&long, "é".repeat(MAX_TAG_BYTES).as_str());
    let (key, value) = cut.tags().into_iter().next().unwrap();
    assert_eq!(key.len(), MAX_TAG_BYTES);
    assert!(value.len() <= MAX_TAG_BYTES && value.chars().all(|c| c == 'é'));
}

fn too_many_tags_or_sets_give_the_overflow_set_and_are_counted() {
    let before = leakwatch::snapshot().overflow.tag_sets_full;
    let mut set = TagSet::none();
    for i in 0..MAX_TAGS {
        set = set.with(&format!("k{i}"), "v");
    }
    assert_eq!(set.tags().len(), MAX_TAGS);
    let over = set.with("one-more", "v");
    assert!(over.tags().contains_key(OVERFLOW_TAGS), "{:?}", over.tags());
    // Replacing a value of a full set is not one too many.
    assert_eq!(set.with("k0", "w").tags().len(), MAX_TAGS);
    // More distinct sets than the table holds.
    let mut overflowed = 0;
    for i in 0..leakwatch::MAX_TAG_SETS + 10 {
        let s = TagSet::none().with("request", &i.to_string());
        if s.tags().contains_key(OVERFLOW_TAGS) {
            overflowed += 1;
        }
    }
    assert!(overflowed >= 10, "{overflowed}");
    let snapshot = leakwatch::snapshot();
    assert!(
        snapshot.overflow.tag_sets_full >= before + 1 + overflowed,
        "{:?}",
        snapshot.overflow
    );
    assert!(snapshot.tracker.tag_sets as usize <= leakwatch::MAX_TAG_SETS);
    assert!(
        snapshot.warnings.iter().any(|w| w.starts_with("tags:")),
        "{:?}",
        snapshot.warnings
    );
    // Allocations under the overflow set are still counted, under it.
    let kept = {
        let _guard = over.enter();
        tagged_store(4)
    };
    let live = live_by_tags();
    assert_eq!(
        live.get(&tags(&[(OVERFLOW_TAGS, "tag sets full")])),
        Some(&(4 * PER_BLOCK)),
        "{live:?}"
    );
    drop(kept);
}

fn main() {
    run(&[
        (
            "one_stack_under_two_sets_is_two_sites",
            one_stack_under_two_sets_is_two_sites,
        ),
        (
            "a_tag_set_carries_to_another_thread",
            a_tag_set_carries_to_another_thread,
        ),
        (
            "tagged_tasks_keep_their_tags_on_every_worker",
            tagged_tasks_keep_their_tags_on_every_worker,
        ),
        (
            "a_sites_ages_add_up_to_its_live_bytes",
            a_sites_ages_add_up_to_its_live_bytes,
        ),
        (
            "sets_are_interned_once_and_keys_cut",
            sets_are_interned_once_and_keys_cut,
        ),
        (
            "too_many_tags_or_sets_give_the_overflow_set_and_are_counted",
            too_many_tags_or_sets_give_the_overflow_set_and_are_counted,
        ),
    ]);
}
