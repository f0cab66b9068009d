//! Kademlia's record store, bounded and swept.
//!
//! libp2p's `MemoryStore` counts our own provider keys and those stored for
//! other peers against one cap (1024 by default) and never drops others'
//! records once they expire: Kademlia only removes an expired record when a
//! lookup happens to touch its key. A node holding 10,000 blobs needs room
//! for its own keys, and a long-running one must not keep every record any
//! peer ever sent. So this store keeps the two apart:
//!
//! - **Our own** provider records (one per blob held): capped by
//!   `max_provided_keys`, never swept. They carry no expiry; the announcer
//!   and Kademlia's republish job keep them alive in other nodes' stores, and
//!   `stop_providing` removes them when a blob is deleted.
//! - **Others'** provider records: capped in total (`max_other_providers`,
//!   a refusal beyond it is `Error::MaxProvidedKeys`) and per key
//!   (`max_providers_per_key`, further providers are ignored as libp2p does,
//!   against Sybil floods); their addresses are trimmed; [`ProviderStore::sweep`]
//!   drops the expired ones.
//! - Value records: shoal does not publish any, but peers may send them, so
//!   they are capped in number and size and swept too.

use std::borrow::Cow;
use std::collections::{HashMap, hash_map};
use std::iter;
use std::time::Instant;

use libp2p::PeerId;
use libp2p::kad::store::{Error, RecordStore, Result};
use libp2p::kad::{K_VALUE, ProviderRecord, Record, RecordKey};

#[cfg(test)]
mod tests;

/// Bounds of a [`ProviderStore`].
#[derive(Debug, Clone)]
pub struct ProviderStoreLimits {
    /// Keys this node provides itself: one per blob held.
    pub max_provided_keys: usize,
    /// Provider records held for other peers, over all keys.
    pub max_other_providers: usize,
    /// Other peers' provider records kept per key.
    pub max_providers_per_key: usize,
    /// Addresses kept in another peer's provider record, and their total
    /// encoded bytes: a peer chooses what it sends, so both are capped.
    pub max_addresses_per_provider: usize,
    pub max_address_bytes_per_provider: usize,
    /// Value records held (peers may send them; shoal sends none).
    pub max_records: usize,
    /// Largest value record accepted, in bytes.
    pub max_value_bytes: usize,
}

impl Default for ProviderStoreLimits {
    fn default() -> ProviderStoreLimits {
        ProviderStoreLimits {
            // A million blobs is far beyond any disk shoal runs on; the cap
            // is there so a bug cannot grow the map without end.
            max_provided_keys: 1_000_000,
            // Twenty nodes that all hold the same 10,000 blobs put 190,000
            // records of others in each store; at a typical 250 bytes each
            // that is about 50 MiB.
            max_other_providers: 200_000,
            // Kademlia's replication factor: more than k providers per key
            // are never needed to find one.
            max_providers_per_key: K_VALUE.get(),
            max_addresses_per_provider: 4,
            max_address_bytes_per_provider: 256,
            max_records: 1024,
            // Kademlia's largest message is 16 KiB, so no value is larger.
            max_value_bytes: 16 * 1024,
        }
    }
}

/// What one [`ProviderStore::sweep`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    pub records: usize,
    pub providers: usize,
}

/// The record store given to Kademlia (see the module doc).
#[derive(Debug)]
pub struct ProviderStore {
    local: PeerId,
    limits: ProviderStoreLimits,
    records: HashMap<RecordKey, Record>,
    /// Our own provider records by key.
    provided: HashMap<RecordKey, ProviderRecord>,
    /// Other peers' provider records by key; a key is removed with its last.
    others: HashMap<RecordKey, Vec<ProviderRecord>>,
    /// Number of records in `others`, kept in step so the cap is O(1).
    others_len: usize,
}

impl ProviderStore {
    pub fn new(local: PeerId, limits: ProviderStoreLimits) -> ProviderStore {
        ProviderStore {
            local,
            limits,
            records: HashMap::new(),
            provided: HashMap::new(),
            others: HashMap::new(),
            others_len: 0,
        }
    }

    /// Drops value records and other peers' provider records that expired
    /// at `now`. Our own provider records stay: they do not expire here.
    pub fn sweep(&mut self, now: Instant) -> Swept {
        let records_before = self.records.len();
        self.records.retain(|_, r| !r.is_expired(now));
        let mut providers = 0;
        self.others.retain(|_, list| {
            let before = list.len();
            list.retain(|p| !p.is_expired(now));
            providers += before - list.len();
            !list.is_empty()
        });
        self.others_len -= providers;
        Swept {
            records: records_before - self.records.len(),
            providers,
        }
    }

    /// Number of keys this node provides itself.
    pub fn provided_len(&self) -> usize {
        self.provided.len()
    }

    /// Number of provider records held for other peers.
    pub fn others_len(&self) -> usize {
        self.others_len
    }

    /// Number of value records held.
    pub fn records_len(&self) -> usize {
        self.records.len()
    }

    fn add_own(&mut self, record: ProviderRecord) -> Result<()> {
        let full = self.provided.len() >= self.limits.max_provided_keys;
        match self.provided.entry(record.key.clone()) {
            hash_map::Entry::Occupied(mut e) => {
                e.insert(record);
            }
            hash_map::Entry::Vacant(_) if full => return Err(Error::MaxProvidedKeys),
            hash_map::Entry::Vacant(e) => {
                e.insert(record);
            }
        }
        Ok(())
    }

    fn add_other(&mut self, mut record: ProviderRecord) -> Result<()> {
        self.trim_addresses(&mut record);
        let now = Instant::now();
        if let Some(list) = self.others.get_mut(&record.key) {
            if let Some(p) = list.iter_mut().find(|p| p.provider == record.provider) {
                // A republished record: new expiry and addresses.
                *p = record;
                return Ok(());
            }
            if list.len() >= self.limits.max_providers_per_key {
                // Make room from the dead before turning the living away.
                let before = list.len();
                list.retain(|p| !p.is_expired(now));
                self.others_len -= before - list.len();
            }
            if list.len() >= self.limits.max_providers_per_key {
                // Enough providers are known for this key: the newcomer is
                // ignored, not an error, so a flood of fake providers cannot
                // push out the ones already known.
                return Ok(());
            }
        }
        if self.others_len >= self.limits.max_other_providers {
            return Err(Error::MaxProvidedKeys);
        }
        self.others
            .entry(record.key.clone())
            .or_default()
            .push(record);
        self.others_len += 1;
        Ok(())
    }

    /// Keeps the first addresses that fit both address limits.
    fn trim_addresses(&self, record: &mut ProviderRecord) {
        let mut bytes = 0;
        let mut kept = 0;
        record.addresses.retain(|a| {
            let fits = kept < self.limits.max_addresses_per_provider
                && bytes + a.len() <= self.limits.max_address_bytes_per_provider;
            if fits {
                kept += 1;
                bytes += a.len();
            }
            fits
        });
    }
}

type RecordsIter<'a> =
    iter::Map<hash_map::Values<'a, RecordKey, Record>, fn(&'a Record) -> Cow<'a, Record>>;
type ProvidedIter<'a> = iter::Map<
    hash_map::Values<'a, RecordKey, ProviderRecord>,
    fn(&'a ProviderRecord) -> Cow<'a, ProviderRecord>,
>;

impl RecordStore for ProviderStore {
    type RecordsIter<'a> = RecordsIter<'a>;
    type ProvidedIter<'a> = ProvidedIter<'a>;

    fn get(&self, k: &RecordKey) -> Option<Cow<'_, Record>> {
        self.records.get(k).map(Cow::Borrowed)
    }

    fn put(&mut self, r: Record) -> Result<()> {
        if r.value.len() > self.limits.max_value_bytes {
            return Err(Error::ValueTooLarge);
        }
        let full = self.records.len() >= self.limits.max_records;
        match self.records.entry(r.key.clone()) {
            hash_map::Entry::Occupied(mut e) => {
                e.insert(r);
            }
            hash_map::Entry::Vacant(_) if full => return Err(Error::MaxRecords),
            hash_map::Entry::Vacant(e) => {
                e.insert(r);
            }
        }
        Ok(())
    }

    fn remove(&mut self, k: &RecordKey) {
        self.records.remove(k);
    }

    fn records(&self) -> Self::RecordsIter<'_> {
        self.records.values().map(Cow::Borrowed)
    }

    fn add_provider(&mut self, record: ProviderRecord) -> Result<()> {
        if record.provider == self.local {
            self.add_own(record)
        } else {
            self.add_other(record)
        }
    }

    /// Ours first (Kademlia fills in our addresses), then others'.
    fn providers(&self, key: &RecordKey) -> Vec<ProviderRecord> {
        let others = self.others.get(key).map_or(&[][..], Vec::as_slice);
        self.provided
            .get(key)
            .into_iter()
            .chain(others)
            .cloned()
            .collect()
    }

    fn provided(&self) -> Self::ProvidedIter<'_> {
        self.provided.values().map(Cow::Borrowed)
    }

    fn remove_provider(&mut self, k: &RecordKey, p: &PeerId) {
        if *p == self.local {
            self.provided.remove(k);
            return;
        }
        if let hash_map::Entry::Occupied(mut e) = self.others.entry(k.clone()) {
            let list = e.get_mut();
            if let Some(i) = list.iter().position(|r| &r.provider == p) {
                list.swap_remove(i);
                self.others_len -= 1;
            }
            if list.is_empty() {
                e.remove();
            }
        }
    }
}
