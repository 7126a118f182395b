//! No silent pass: without leakwatch's global allocator a leak check cannot see any
//! allocation, so it must fail, and say how to install the allocator.

use std::panic::{AssertUnwindSafe, catch_unwind};

#[test]
fn a_check_without_the_allocator_fails_and_says_how_to_install_it() {
    let payload = catch_unwind(AssertUnwindSafe(|| {
        let mut kept = Vec::new();
        leakwatch::check(|| kept.push(vec![0u8; 100])).assert_no_leaks();
    }))
    .expect_err("the check must not pass");
    let message = payload
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert!(message.contains("leakwatch::check cannot run"), "{message}");
    assert!(
        message.contains("#[global_allocator] static ALLOC: leakwatch::LeakWatch"),
        "{message}"
    );
}
