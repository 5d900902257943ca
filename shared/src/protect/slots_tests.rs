use std::sync::atomic::{AtomicU64, Ordering};

use super::*;
use crate::protect::memory::MemoryShared;

const EKS: ActionType = ActionType::AwsEksCluster;

fn slots(cap: u32, time: &Arc<AtomicU64>, store: &Arc<MemoryShared>) -> Slots {
    let clock = time.clone();
    Slots::new(
        store.clone(),
        Settings {
            caps: BTreeMap::from([(EKS, cap)]),
            lease: 600,
        },
        Arc::new(move || clock.load(Ordering::SeqCst)),
    )
}

fn fixture(cap: u32) -> (Slots, Arc<AtomicU64>, Arc<MemoryShared>) {
    let time = Arc::new(AtomicU64::new(10_000));
    let store = Arc::new(MemoryShared::default());
    (slots(cap, &time, &store), time, store)
}

#[tokio::test]
async fn over_the_cap_an_action_waits_naming_the_holders_until_a_slot_is_given_back() {
    let (slots, _, _) = fixture(1);
    assert_eq!(slots.take(EKS, "r-1#cluster").await.unwrap(), Slot::Held);
    assert_eq!(
        slots.take(EKS, "r-2#cluster").await.unwrap(),
        Slot::Busy {
            cap: 1,
            holders: vec!["r-1#cluster".to_string()]
        }
    );
    // The holder renews its own slot on every call.
    assert_eq!(slots.take(EKS, "r-1#cluster").await.unwrap(), Slot::Held);
    slots.release(EKS, "r-1#cluster").await.unwrap();
    assert_eq!(slots.take(EKS, "r-2#cluster").await.unwrap(), Slot::Held);
    // Giving back what one does not hold changes nothing.
    slots.release(EKS, "r-1#cluster").await.unwrap();
    assert!(matches!(
        slots.take(EKS, "r-3#cluster").await.unwrap(),
        Slot::Busy { .. }
    ));
}

#[tokio::test]
async fn a_cap_of_k_lets_k_run_and_other_types_are_not_capped() {
    let (slots, _, store) = fixture(2);
    assert_eq!(slots.take(EKS, "a").await.unwrap(), Slot::Held);
    assert_eq!(slots.take(EKS, "b").await.unwrap(), Slot::Held);
    assert!(matches!(
        slots.take(EKS, "c").await.unwrap(),
        Slot::Busy { cap: 2, .. }
    ));
    let writes = store.writes();
    assert_eq!(
        slots.take(ActionType::AwsNetwork, "a").await.unwrap(),
        Slot::Uncapped
    );
    slots.release(ActionType::AwsNetwork, "a").await.unwrap();
    assert_eq!(store.writes(), writes);
}

#[tokio::test]
async fn the_lease_of_a_holder_that_died_expires_and_renewing_keeps_it() {
    let (slots, time, _) = fixture(1);
    slots.take(EKS, "dead").await.unwrap();
    time.fetch_add(599, Ordering::SeqCst);
    assert!(matches!(
        slots.take(EKS, "next").await.unwrap(),
        Slot::Busy { .. }
    ));
    time.fetch_add(1, Ordering::SeqCst);
    assert_eq!(slots.take(EKS, "next").await.unwrap(), Slot::Held);
    // The new holder keeps its slot as long as it keeps calling.
    for _ in 0..3 {
        time.fetch_add(500, Ordering::SeqCst);
        assert_eq!(slots.take(EKS, "next").await.unwrap(), Slot::Held);
        assert!(matches!(
            slots.take(EKS, "other").await.unwrap(),
            Slot::Busy { .. }
        ));
    }
}

#[tokio::test]
async fn instances_racing_for_the_last_slot_give_it_to_one() {
    let (first, time, store) = fixture(1);
    let second = slots(1, &time, &store);
    let (a, b) = tokio::join!(first.take(EKS, "a"), second.take(EKS, "b"));
    let held = [a.unwrap(), b.unwrap()]
        .iter()
        .filter(|slot| **slot == Slot::Held)
        .count();
    assert_eq!(held, 1);
}

#[tokio::test]
async fn a_store_that_fails_is_an_error_not_a_slot() {
    let (slots, _, store) = fixture(1);
    store.fail(true);
    assert!(slots.take(EKS, "a").await.is_err());
}

#[test]
fn caps_are_read_by_type_and_nonsense_is_refused() {
    let env = |value: &'static str| {
        Env(move |name: &str| (name == Settings::CAPS).then(|| value.to_string()))
    };
    let settings = Settings::read(&env("aws-eks-cluster=1, aws-rds-postgres = 10")).unwrap();
    assert_eq!(
        settings.caps,
        BTreeMap::from([(EKS, 1), (ActionType::AwsRdsPostgres, 10)])
    );
    assert_eq!(settings.lease, 900);
    assert!(Settings::read(&env("")).unwrap().caps.is_empty());
    for bad in [
        "aws-eks-cluster",
        "eks=1",
        "aws-eks-cluster=0",
        "aws-eks-cluster=many",
    ] {
        let err = Settings::read(&env(bad)).unwrap_err().to_string();
        assert!(err.contains(Settings::CAPS), "{bad}: {err}");
    }
}
