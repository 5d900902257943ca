use std::sync::atomic::{AtomicU64, Ordering};

use super::*;
use crate::protect::memory::MemoryShared;

const TARGET: &str = "api.example.com:443";

struct Fixture {
    store: Arc<MemoryShared>,
    time: Arc<AtomicU64>,
    breakers: Breakers,
}

fn fixture(failures: u32) -> Fixture {
    let store = Arc::new(MemoryShared::default());
    let time = Arc::new(AtomicU64::new(1_000));
    let clock = time.clone();
    let breakers = Breakers::new(
        store.clone(),
        Settings {
            failures,
            window: 60,
            open_seconds: 30,
        },
        Arc::new(move || clock.load(Ordering::SeqCst)),
    );
    Fixture {
        store,
        time,
        breakers,
    }
}

impl Fixture {
    fn pass(&self, seconds: u64) {
        self.time.fetch_add(seconds, Ordering::SeqCst);
    }

    /// One call to the target, which fails or succeeds; `None` when the
    /// breaker refused it (the target was not called).
    async fn call(&self, succeeds: bool) -> Option<Settled> {
        let ticket = self.breakers.admit(TARGET).await.ok()?;
        let outcome = if succeeds {
            Outcome::Succeeded
        } else {
            Outcome::Failed
        };
        Some(self.breakers.settle(ticket, outcome).await)
    }
}

#[tokio::test]
async fn failures_in_a_row_open_the_breaker_and_the_next_call_never_reaches_the_target() {
    let f = fixture(3);
    assert_eq!(f.call(false).await, Some(Settled::Unchanged));
    assert_eq!(f.call(false).await, Some(Settled::Unchanged));
    assert_eq!(f.call(false).await, Some(Settled::Opened(30)));
    let open = f.breakers.admit(TARGET).await.unwrap_err();
    assert_eq!(
        open,
        Open {
            target: TARGET.to_string(),
            failures: 3,
            seconds: 30,
            probing: false
        }
    );
    assert!(
        open.to_string().contains("open after 3 failures in a row"),
        "{open}"
    );
    f.pass(29);
    assert_eq!(f.breakers.admit(TARGET).await.unwrap_err().seconds, 1);
    // Other targets are not affected.
    assert!(f.breakers.admit("other.example.com:443").await.is_ok());
}

#[tokio::test]
async fn one_probe_closes_it_again_and_only_one_caller_probes() {
    let f = fixture(2);
    f.call(false).await;
    f.call(false).await;
    f.pass(30);
    let probe = f.breakers.admit(TARGET).await.unwrap();
    // While the probe is out, others are refused, saying so.
    let waiting = f.breakers.admit(TARGET).await.unwrap_err();
    assert!(waiting.probing, "{waiting:?}");
    assert_eq!(waiting.seconds, PROBE_LEASE);
    assert_eq!(
        f.breakers.settle(probe, Outcome::Succeeded).await,
        Settled::Closed
    );
    assert_eq!(f.call(true).await, Some(Settled::Unchanged));
    // The count starts again from nothing.
    assert_eq!(f.call(false).await, Some(Settled::Unchanged));
    assert!(f.breakers.admit(TARGET).await.is_ok());
}

#[tokio::test]
async fn a_failed_probe_opens_it_for_another_period() {
    let f = fixture(2);
    f.call(false).await;
    f.call(false).await;
    f.pass(31);
    assert_eq!(f.call(false).await, Some(Settled::Opened(30)));
    let open = f.breakers.admit(TARGET).await.unwrap_err();
    assert_eq!((open.seconds, open.failures, open.probing), (30, 2, false));
}

#[tokio::test]
async fn a_probe_whose_caller_died_is_given_up_after_its_lease() {
    let f = fixture(1);
    f.call(false).await;
    f.pass(30);
    let _lost = f.breakers.admit(TARGET).await.unwrap();
    f.pass(PROBE_LEASE - 1);
    assert!(f.breakers.admit(TARGET).await.is_err());
    f.pass(1);
    let probe = f.breakers.admit(TARGET).await.unwrap();
    assert_eq!(
        f.breakers.settle(probe, Outcome::Succeeded).await,
        Settled::Closed
    );
}

#[tokio::test]
async fn failures_spread_wider_than_the_window_or_broken_by_a_success_do_not_open_it() {
    let f = fixture(3);
    f.call(false).await;
    f.call(false).await;
    f.pass(61);
    // The window passed: this failure counts as the first of a new run.
    assert_eq!(f.call(false).await, Some(Settled::Unchanged));
    assert_eq!(f.call(false).await, Some(Settled::Unchanged));
    assert_eq!(f.call(true).await, Some(Settled::Unchanged));
    assert_eq!(f.call(false).await, Some(Settled::Unchanged));
    assert_eq!(f.call(false).await, Some(Settled::Unchanged));
    assert!(f.breakers.admit(TARGET).await.is_ok());
}

#[tokio::test]
async fn a_success_with_nothing_counted_writes_nothing() {
    let f = fixture(3);
    for _ in 0..5 {
        f.call(true).await;
    }
    assert_eq!(f.store.writes(), 0);
}

#[tokio::test]
async fn an_unreadable_store_lets_calls_through_and_zero_turns_breakers_off() {
    let f = fixture(1);
    f.store.fail(true);
    assert_eq!(f.call(false).await, Some(Settled::Unchanged));
    assert_eq!(f.call(false).await, Some(Settled::Unchanged));
    f.store.fail(false);
    let off = fixture(0);
    for _ in 0..10 {
        assert_eq!(off.call(false).await, Some(Settled::Unchanged));
    }
    assert_eq!(off.store.writes(), 0);
}

#[tokio::test]
async fn instances_sharing_the_store_share_the_breaker() {
    let f = fixture(2);
    let other = Breakers::new(
        f.store.clone(),
        Settings {
            failures: 2,
            window: 60,
            open_seconds: 30,
        },
        Arc::new(|| 1_000),
    );
    f.call(false).await;
    let ticket = other.admit(TARGET).await.unwrap();
    assert_eq!(
        other.settle(ticket, Outcome::Failed).await,
        Settled::Opened(30)
    );
    assert!(f.breakers.admit(TARGET).await.is_err());
}

#[test]
fn settings_read_with_defaults_and_refuse_what_is_not_a_number() {
    let env = Env(|name: &str| match name {
        "PAO_BREAKER_FAILURES" => Some("3".to_string()),
        _ => None,
    });
    assert_eq!(
        Settings::read(&env).unwrap(),
        Settings {
            failures: 3,
            window: 60,
            open_seconds: 30
        }
    );
    let bad = Env(|name: &str| (name == "PAO_BREAKER_WINDOW_SECONDS").then(|| "soon".to_string()));
    assert!(Settings::read(&bad).is_err());
}

#[tokio::test]
async fn a_call_refused_before_it_left_neither_counts_nor_keeps_the_probe() {
    let f = fixture(2);
    f.call(false).await;
    let ticket = f.breakers.admit(TARGET).await.unwrap();
    assert_eq!(
        f.breakers.settle(ticket, Outcome::NotCalled).await,
        Settled::Unchanged
    );
    // Still one failure counted: one more opens it.
    assert_eq!(f.call(false).await, Some(Settled::Opened(30)));
    f.pass(30);
    let probe = f.breakers.admit(TARGET).await.unwrap();
    f.breakers.settle(probe, Outcome::NotCalled).await;
    // The probe's claim is given up: the next call probes at once, and the
    // breaker stayed open until a probe reached the target.
    let probe = f.breakers.admit(TARGET).await.unwrap();
    assert_eq!(
        f.breakers.settle(probe, Outcome::Succeeded).await,
        Settled::Closed
    );
}

#[tokio::test]
async fn a_late_failure_of_a_call_let_through_before_it_opened_does_not_reopen_it() {
    let f = fixture(2);
    let late = f.breakers.admit(TARGET).await.unwrap();
    f.call(false).await;
    f.call(false).await;
    f.pass(30);
    let probe = f.breakers.admit(TARGET).await.unwrap();
    assert_eq!(
        f.breakers.settle(late, Outcome::Failed).await,
        Settled::Unchanged
    );
    assert_eq!(
        f.breakers.settle(probe, Outcome::Succeeded).await,
        Settled::Closed
    );
}
