use std::time::Duration;

use libp2p::Multiaddr;
use libp2p::identity::Keypair;

use super::*;

fn peer() -> PeerId {
    Keypair::generate_ed25519().public().to_peer_id()
}

fn key(i: u32) -> RecordKey {
    RecordKey::new(&i.to_be_bytes())
}

fn provider(k: u32, p: PeerId, expires: Option<Instant>) -> ProviderRecord {
    ProviderRecord {
        expires,
        ..ProviderRecord::new(key(k), p, Vec::new())
    }
}

fn providers_of(store: &ProviderStore, k: u32) -> Vec<PeerId> {
    store
        .providers(&key(k))
        .iter()
        .map(|r| r.provider)
        .collect()
}

#[test]
fn ten_thousand_own_keys_are_accepted() {
    let me = peer();
    let mut store = ProviderStore::new(me, ProviderStoreLimits::default());
    for i in 0..10_000 {
        // As `start_providing` stores them: no expiry, no addresses.
        store
            .add_provider(provider(i, me, None))
            .expect("no 1024-key cap");
    }
    assert_eq!(store.provided_len(), 10_000);
    assert_eq!(store.provided().count(), 10_000);
    assert_eq!(providers_of(&store, 9_999), vec![me]);
    assert_eq!(store.others_len(), 0);
}

#[test]
fn own_keys_beyond_their_cap_are_refused() {
    let me = peer();
    let limits = ProviderStoreLimits {
        max_provided_keys: 2,
        ..ProviderStoreLimits::default()
    };
    let mut store = ProviderStore::new(me, limits);
    store.add_provider(provider(0, me, None)).expect("first");
    store.add_provider(provider(1, me, None)).expect("second");
    assert!(matches!(
        store.add_provider(provider(2, me, None)),
        Err(Error::MaxProvidedKeys)
    ));
    // Providing a key again is an update, not a new key.
    store.add_provider(provider(1, me, None)).expect("again");
    assert_eq!(store.provided_len(), 2);
}

#[test]
fn others_beyond_the_cap_are_refused_with_the_store_error() {
    let me = peer();
    let limits = ProviderStoreLimits {
        max_other_providers: 3,
        ..ProviderStoreLimits::default()
    };
    let mut store = ProviderStore::new(me, limits);
    let them = peer();
    for i in 0..3 {
        store.add_provider(provider(i, them, None)).expect("room");
    }
    let refused = store.add_provider(provider(3, them, None));
    assert!(
        matches!(refused, Err(Error::MaxProvidedKeys)),
        "{refused:?}"
    );
    // Another peer on a known key counts against the same cap.
    assert!(store.add_provider(provider(0, peer(), None)).is_err());
    assert_eq!(store.others_len(), 3);
    assert!(providers_of(&store, 3).is_empty());

    // A republished record of a peer already held is an update, even when full.
    store
        .add_provider(provider(
            0,
            them,
            Some(Instant::now() + Duration::from_secs(60)),
        ))
        .expect("update in place");
    // Our own keys are not limited by others' records.
    store.add_provider(provider(3, me, None)).expect("ours");
    assert_eq!(providers_of(&store, 3), vec![me]);

    // Room again once one is withdrawn.
    store.remove_provider(&key(1), &them);
    store
        .add_provider(provider(4, them, None))
        .expect("room again");
    assert_eq!(store.others_len(), 3);
}

#[test]
fn sweep_drops_expired_others_and_keeps_live_and_own_ones() {
    let me = peer();
    let (a, b) = (peer(), peer());
    let t0 = Instant::now();
    let soon = Some(t0 + Duration::from_secs(10));
    let later = Some(t0 + Duration::from_secs(100));
    let mut store = ProviderStore::new(me, ProviderStoreLimits::default());
    store.add_provider(provider(0, a, soon)).expect("a on 0");
    store.add_provider(provider(0, b, later)).expect("b on 0");
    store.add_provider(provider(1, a, soon)).expect("a on 1");
    // Our own record is kept even if it carries an expiry.
    store
        .add_provider(provider(2, me, soon))
        .expect("ours on 2");
    store
        .add_provider(provider(3, me, None))
        .expect("ours on 3");
    let record = |k: u32, expires| Record {
        expires,
        ..Record::new(key(k), b"v".to_vec())
    };
    store.put(record(10, soon)).expect("short record");
    store.put(record(11, None)).expect("lasting record");

    // Nothing has expired yet.
    assert_eq!(store.sweep(t0), Swept::default());

    let swept = store.sweep(t0 + Duration::from_secs(50));
    assert_eq!(
        swept,
        Swept {
            records: 1,
            providers: 2
        }
    );
    assert_eq!(providers_of(&store, 0), vec![b]);
    assert!(providers_of(&store, 1).is_empty());
    assert!(!store.others.contains_key(&key(1)), "empty key dropped");
    assert_eq!(providers_of(&store, 2), vec![me]);
    assert_eq!(providers_of(&store, 3), vec![me]);
    assert_eq!(store.provided_len(), 2);
    assert_eq!(store.others_len(), 1);
    assert!(store.get(&key(10)).is_none());
    assert!(store.get(&key(11)).is_some());

    let swept = store.sweep(t0 + Duration::from_secs(100));
    assert_eq!(swept.providers, 1);
    assert_eq!(store.others_len(), 0);
    assert!(store.others.is_empty());
    assert_eq!(store.provided_len(), 2);
}

#[test]
fn a_key_with_own_and_others_records() {
    let me = peer();
    let limits = ProviderStoreLimits {
        max_providers_per_key: 2,
        ..ProviderStoreLimits::default()
    };
    let mut store = ProviderStore::new(me, limits);
    let (a, b, c) = (peer(), peer(), peer());
    let t0 = Instant::now();
    store.add_provider(provider(0, a, Some(t0))).expect("a");
    store.add_provider(provider(0, b, None)).expect("b");
    // The key's others are full; ours still goes in, and comes first.
    store.add_provider(provider(0, me, None)).expect("ours");
    assert_eq!(providers_of(&store, 0), vec![me, a, b]);
    assert_eq!(store.provided().count(), 1);
    assert_eq!(store.others_len(), 2);

    // Our record does not expire in the sweep; a's does.
    store.sweep(t0 + Duration::from_secs(1));
    assert_eq!(providers_of(&store, 0), vec![me, b]);

    // Withdrawing ours leaves theirs, and the other way round.
    store.remove_provider(&key(0), &me);
    assert_eq!(providers_of(&store, 0), vec![b]);
    assert_eq!(store.provided().count(), 0);
    store
        .add_provider(provider(0, me, None))
        .expect("ours again");
    store.remove_provider(&key(0), &b);
    assert_eq!(providers_of(&store, 0), vec![me]);
    assert_eq!(store.others_len(), 0);
    // c fits again now that b is gone.
    store.add_provider(provider(0, c, None)).expect("c");
    assert_eq!(providers_of(&store, 0), vec![me, c]);
}

#[test]
fn a_full_key_ignores_newcomers_but_replaces_the_expired() {
    let me = peer();
    let limits = ProviderStoreLimits {
        max_providers_per_key: 2,
        ..ProviderStoreLimits::default()
    };
    let mut store = ProviderStore::new(me, limits);
    let (a, b, c, d) = (peer(), peer(), peer(), peer());
    let past = Instant::now().checked_sub(Duration::from_secs(1));
    store.add_provider(provider(0, a, None)).expect("a");
    store.add_provider(provider(0, b, None)).expect("b");
    // Ignored, as libp2p does, so a flood cannot push out known providers.
    store
        .add_provider(provider(0, c, None))
        .expect("ignored, not refused");
    assert_eq!(providers_of(&store, 0), vec![a, b]);

    store
        .add_provider(provider(0, b, past))
        .expect("b republished");
    store.add_provider(provider(0, d, None)).expect("d");
    assert_eq!(providers_of(&store, 0), vec![a, d]);
    assert_eq!(store.others_len(), 2);
}

#[test]
fn addresses_of_others_are_trimmed() {
    let limits = ProviderStoreLimits {
        max_addresses_per_provider: 2,
        max_address_bytes_per_provider: 20,
        ..ProviderStoreLimits::default()
    };
    let mut store = ProviderStore::new(peer(), limits);
    let addr = |s: &str| s.parse::<Multiaddr>().expect("multiaddr");
    // 8 bytes: /ip4 (code + 4) /tcp (code + 2), each code one byte.
    let small = addr("/ip4/10.0.0.1/tcp/4001");
    let mut record = ProviderRecord::new(key(0), peer(), vec![small.clone(); 3]);
    store
        .add_provider(record.clone())
        .expect("trimmed by count");
    assert_eq!(
        store.providers(&key(0))[0].addresses,
        vec![small.clone(); 2]
    );

    let long = addr("/dns/a-rather-long-host-name.example/tcp/4001");
    record.key = key(1);
    record.addresses = vec![long, small.clone()];
    store.add_provider(record).expect("trimmed by bytes");
    assert_eq!(store.providers(&key(1))[0].addresses, vec![small]);
}

#[test]
fn records_put_get_remove() {
    let limits = ProviderStoreLimits {
        max_records: 2,
        max_value_bytes: 4,
        ..ProviderStoreLimits::default()
    };
    let mut store = ProviderStore::new(peer(), limits);
    let record = |k: u32, v: &[u8]| Record::new(key(k), v.to_vec());
    store.put(record(0, b"one")).expect("put");
    assert_eq!(
        store.get(&key(0)).map(|r| r.value.clone()),
        Some(b"one".to_vec())
    );
    store.put(record(0, b"two")).expect("replace");
    assert_eq!(
        store.get(&key(0)).map(|r| r.value.clone()),
        Some(b"two".to_vec())
    );
    store.put(record(1, b"")).expect("second");
    assert!(matches!(store.put(record(2, b"")), Err(Error::MaxRecords)));
    assert!(matches!(
        store.put(record(0, b"12345")),
        Err(Error::ValueTooLarge)
    ));
    store.put(record(1, b"1234")).expect("replace when full");
    assert_eq!(store.records().count(), 2);
    store.remove(&key(0));
    assert!(store.get(&key(0)).is_none());
    assert_eq!(store.records_len(), 1);
    store.put(record(2, b"")).expect("room again");
}
