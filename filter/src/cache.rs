//! Verified-token cache in host shared data (shared by every worker VM with the same `vm_id`).
//!
//! Keys: `mcp_auth.tc.<config fingerprint>.<slot>`, where the slot is taken from
//! SHA-256(resource index ‖ token) modulo the slot count: a direct-mapped, bounded table (a new
//! entry evicts whatever shared its slot). Values: the compact encoding below, holding the full
//! hash (so a slot collision is a miss, never a wrong identity) and the identity. An entry is used
//! only while `now < exp` of its token and while its issuer still publishes the key that verified
//! it (a key removed from the JWKS revokes its tokens at the next refresh). Host access goes
//! through [`SharedStore`].
//!
//! In front of it, each worker VM keeps [`LocalTokens`]: the same number of slots, two-way
//! set-associative, in its own memory, holding the whole token, so a token the worker has seen
//! before is found without a host call or a SHA-256 (the common case: a client reuses its access
//! token).
//!
//! Value encoding (big endian): `version:u8 = 3`, `hash:[u8; 32]`, `exp:u64`, `issuer:u16`,
//! `key:[u8; 16]`, `n_scopes:u16`, `n_scopes × (len:u16, bytes)`, `n_headers:u16`, then
//! `n_headers + 2` optional strings `(present:u8, [len:u16, bytes])`: the header values, the
//! subject and the client ID.
//!
//! The decoder checks only the encoding; before an entry is used, [`EntryShape`] checks it
//! against the current configuration (identity-header count, issuer index), so an entry that
//! another configuration or filter build wrote under the same key is a miss, never an identity
//! with missing header values (which would leave a client-sent identity header in place).

use std::hash::Hasher as _;
use std::rc::Rc;

use rustc_hash::FxHasher;
use sha2::{Digest as _, Sha256};

use crate::identity::Identity;
use crate::jwks::KeyFingerprint;

const VERSION: u8 = 3;

/// Whether an issuer (configuration index) currently publishes a key.
pub type KeyPublished<'a> = &'a dyn Fn(usize, &KeyFingerprint) -> bool;

/// Host shared data as the cache sees it.
pub trait SharedStore {
    /// The current value of `key`, if any.
    fn get(&self, key: &str) -> Option<Vec<u8>>;
    /// Stores `value` under `key` (best effort).
    fn set(&self, key: &str, value: &[u8]);
}

/// What an entry must look like to belong to the current configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryShape {
    /// Number of configured identity headers (one value, present or not, for each).
    pub identity_headers: usize,
    /// Number of configured issuers (the entry's issuer index must be below it).
    pub issuers: usize,
}

impl EntryShape {
    /// Whether a decoded identity fits the configuration.
    fn fits(&self, identity: &Identity) -> bool {
        identity.header_values.len() == self.identity_headers && identity.issuer < self.issuers
    }
}

/// The cache: this worker's own table in front of the shared one (key namespace and size).
#[derive(Debug)]
pub struct TokenCache {
    prefix: String,
    slots: u32,
    shape: EntryShape,
    local: LocalTokens,
}

type Hash = [u8; 32];

/// What a cache miss already computed (the token's hash, once the shared table was consulted).
#[derive(Debug, Default)]
pub struct Miss {
    hash: Option<Hash>,
}

fn token_hash(resource: usize, token: &str) -> Hash {
    let mut h = Sha256::new();
    h.update(u64::try_from(resource).unwrap_or(u64::MAX).to_be_bytes());
    h.update(token.as_bytes());
    h.finalize().into()
}

impl TokenCache {
    /// A cache with `slots` entries (0 disables it) namespaced by the configuration fingerprint,
    /// using only shared entries of the configuration's `shape`.
    pub fn new(fingerprint: &str, slots: u32, shape: EntryShape) -> Self {
        TokenCache {
            prefix: format!("mcp_auth.tc.{fingerprint}."),
            slots,
            shape,
            local: LocalTokens::new(slots),
        }
    }

    fn slot_key(&self, hash: &Hash) -> Option<String> {
        if self.slots == 0 {
            return None;
        }
        let mut first = [0u8; 8];
        first.copy_from_slice(hash.get(..8)?);
        let slot = u64::from_be_bytes(first) % u64::from(self.slots);
        Some(format!("{}{slot}", self.prefix))
    }

    /// The cached identity for this token on this resource, if still valid at `now` and its key
    /// still `published`: from this worker's table, else from shared data (then also kept in
    /// this worker's table). A miss carries what the lookup computed, for [`TokenCache::insert`].
    pub fn lookup(
        &mut self,
        store: &dyn SharedStore,
        resource: usize,
        token: &str,
        now: u64,
        published: KeyPublished<'_>,
    ) -> Result<Rc<Identity>, Miss> {
        if let Some(identity) = self.local.lookup(resource, token, now, published) {
            return Ok(Rc::clone(identity));
        }
        if self.slots == 0 {
            return Err(Miss::default());
        }
        let hash = token_hash(resource, token);
        let miss = Miss { hash: Some(hash) };
        let Some(bytes) = self.slot_key(&hash).and_then(|key| store.get(&key)) else {
            return Err(miss);
        };
        match decode(&bytes) {
            Some((stored, identity))
                if stored == hash
                    && self.shape.fits(&identity)
                    && usable(&identity, now, published) =>
            {
                let identity = Rc::new(identity);
                self.local.insert(resource, token, &identity);
                Ok(identity)
            }
            _ => Err(miss),
        }
    }

    /// Remembers a verified identity, here and in shared data. `miss` is what the lookup of the
    /// same token returned (the token's hash is computed once per request).
    pub fn insert(
        &mut self,
        store: &dyn SharedStore,
        miss: Miss,
        resource: usize,
        token: &str,
        identity: &Rc<Identity>,
    ) {
        if self.slots == 0 {
            return;
        }
        self.local.insert(resource, token, identity);
        let hash = miss.hash.unwrap_or_else(|| token_hash(resource, token));
        if let (Some(key), Some(value)) = (self.slot_key(&hash), encode(&hash, identity)) {
            store.set(&key, &value);
        }
    }
}

/// One verified token in a worker's own memory.
#[derive(Debug)]
struct LocalEntry {
    resource: usize,
    token: Box<str>,
    identity: Rc<Identity>,
}

/// How many slots of a worker's own table a token may occupy (its set).
const WAYS: usize = 2;

/// A worker VM's own verified-token table, two-way set-associative: a fast non-cryptographic
/// hash picks a set of [`WAYS`] adjacent slots, a token may be in either, and an entry is used
/// only if the whole token and the resource match. A new token takes the first slot of its set
/// and moves the one there to the second, evicting the second's: with as many live tokens as
/// slots, two tokens that share a set no longer evict each other (a direct-mapped table lost
/// about 10 % of its hits that way with 10,000 tokens in 16,384 slots).
#[derive(Debug, Default)]
pub struct LocalTokens {
    slots: Vec<Option<LocalEntry>>,
}

impl LocalTokens {
    /// A table of `slots` entries (0 disables it; with 1 it holds one token).
    pub fn new(slots: u32) -> Self {
        let mut table = Vec::new();
        table.resize_with(usize::try_from(slots).unwrap_or(0), || None);
        LocalTokens { slots: table }
    }

    /// The slots of the token's set.
    fn set(&self, resource: usize, token: &str) -> Option<std::ops::Range<usize>> {
        let ways = self.slots.len().min(WAYS);
        let sets = u64::try_from(self.slots.len().checked_div(ways)?).ok()?;
        let mut h = FxHasher::default();
        h.write_usize(resource);
        h.write(token.as_bytes());
        let first = usize::try_from(h.finish() % sets).ok()?.checked_mul(ways)?;
        Some(first..first.checked_add(ways)?)
    }

    fn find<'a>(
        set: &'a [Option<LocalEntry>],
        resource: usize,
        token: &str,
    ) -> Option<&'a LocalEntry> {
        set.iter().flatten().find(|entry| {
            entry.resource == resource && same_bytes(entry.token.as_bytes(), token.as_bytes())
        })
    }

    /// The identity of this token on this resource, if this worker verified or looked it up
    /// before, it is still valid at `now` and its key still `published`.
    pub fn lookup(
        &self,
        resource: usize,
        token: &str,
        now: u64,
        published: KeyPublished<'_>,
    ) -> Option<&Rc<Identity>> {
        let set = self.slots.get(self.set(resource, token)?)?;
        let entry = Self::find(set, resource, token)?;
        usable(&entry.identity, now, published).then_some(&entry.identity)
    }

    /// Remembers a verified identity: in place of the same token's entry if its set holds one
    /// (a token verified again), otherwise in the set's first slot, the entry there moving to
    /// the second and the one in the second leaving (first in, first out).
    pub fn insert(&mut self, resource: usize, token: &str, identity: &Rc<Identity>) {
        let Some(set) = self
            .set(resource, token)
            .and_then(|range| self.slots.get_mut(range))
        else {
            return;
        };
        let same = set.iter().position(|slot| {
            slot.as_ref().is_some_and(|entry| {
                entry.resource == resource && same_bytes(entry.token.as_bytes(), token.as_bytes())
            })
        });
        let at = match same {
            Some(i) => i,
            None => {
                set.rotate_right(1);
                0
            }
        };
        if let Some(slot) = set.get_mut(at) {
            *slot = Some(LocalEntry {
                resource,
                token: token.into(),
                identity: Rc::clone(identity),
            });
        }
    }
}

/// `a == b`, eight bytes at a time: every hit compares the whole token (hundreds to thousands of
/// bytes), and on wasm32 the slice comparison is a byte-by-byte `memcmp` loop. From the end:
/// tokens of one issuer share their first bytes (the encoded JOSE header and early claims) and
/// differ at once in the signature, so the other token of a set is told apart at the first word.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let (words_a, words_b) = (a.rchunks_exact(8), b.rchunks_exact(8));
    let word = |w: &[u8]| w.try_into().map_or(0, u64::from_ne_bytes);
    words_a.remainder() == words_b.remainder()
        && words_a.zip(words_b).all(|(x, y)| word(x) == word(y))
}

fn usable(identity: &Identity, now: u64, published: KeyPublished<'_>) -> bool {
    now < identity.exp && published(identity.issuer, &identity.key)
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) -> Option<()> {
    out.extend_from_slice(&u16::try_from(b.len()).ok()?.to_be_bytes());
    out.extend_from_slice(b);
    Some(())
}

fn put_optional(out: &mut Vec<u8>, value: &Option<String>) -> Option<()> {
    match value {
        None => out.push(0),
        Some(v) => {
            out.push(1);
            put_bytes(out, v.as_bytes())?;
        }
    }
    Some(())
}

/// Encodes an entry; `None` if a field is too long to encode.
pub fn encode(hash: &Hash, id: &Identity) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(64);
    out.push(VERSION);
    out.extend_from_slice(hash);
    out.extend_from_slice(&id.exp.to_be_bytes());
    out.extend_from_slice(&u16::try_from(id.issuer).ok()?.to_be_bytes());
    out.extend_from_slice(&id.key);
    out.extend_from_slice(&u16::try_from(id.scopes.len()).ok()?.to_be_bytes());
    for s in &id.scopes {
        put_bytes(&mut out, s.as_bytes())?;
    }
    out.extend_from_slice(&u16::try_from(id.header_values.len()).ok()?.to_be_bytes());
    for v in &id.header_values {
        put_optional(&mut out, v)?;
    }
    put_optional(&mut out, &id.subject)?;
    put_optional(&mut out, &id.client_id)?;
    Some(out)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1)?.first().copied()
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }
    fn string(&mut self) -> Option<String> {
        let len = usize::from(self.u16()?);
        String::from_utf8(self.take(len)?.to_vec()).ok()
    }
}

/// Decodes an entry; `None` for anything malformed (treated as a miss).
pub fn decode(bytes: &[u8]) -> Option<(Hash, Identity)> {
    let mut r = Reader(bytes);
    if r.u8()? != VERSION {
        return None;
    }
    let hash: Hash = r.take(32)?.try_into().ok()?;
    let exp = r.u64()?;
    let issuer = usize::from(r.u16()?);
    let key: KeyFingerprint = r.take(16)?.try_into().ok()?;
    let n_scopes = r.u16()?;
    let scopes = (0..n_scopes)
        .map(|_| r.string())
        .collect::<Option<Vec<_>>>()?;
    let n_headers = r.u16()?;
    let mut header_values = Vec::new();
    for _ in 0..usize::from(n_headers) + 2 {
        header_values.push(match r.u8()? {
            0 => None,
            1 => Some(r.string()?),
            _ => return None,
        });
    }
    let client_id = header_values.pop()?;
    let subject = header_values.pop()?;
    if !r.0.is_empty() {
        return None;
    }
    Some((
        hash,
        Identity {
            exp,
            issuer,
            key,
            scopes,
            header_values,
            subject,
            client_id,
        },
    ))
}

/// Shared data in memory: the store of the unit tests of the cache and of the decisions that
/// consult it, and of the fuzzing entry point that runs the whole request path.
#[cfg(any(test, feature = "fuzzing"))]
#[derive(Default)]
pub(crate) struct MemStore(
    pub(crate) std::cell::RefCell<std::collections::HashMap<String, Vec<u8>>>,
);

#[cfg(any(test, feature = "fuzzing"))]
impl SharedStore for MemStore {
    fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.0.borrow().get(key).cloned()
    }
    fn set(&self, key: &str, value: &[u8]) {
        self.0.borrow_mut().insert(key.to_string(), value.to_vec());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: KeyFingerprint = [9; 16];
    const SHAPE: EntryShape = EntryShape {
        identity_headers: 3,
        issuers: 2,
    };

    fn published(issuer: usize, key: &KeyFingerprint) -> bool {
        issuer == 1 && *key == KEY
    }

    fn identity(exp: u64) -> Rc<Identity> {
        Rc::new(Identity {
            exp,
            issuer: 1,
            key: KEY,
            scopes: vec!["mcp:tools".into(), "mcp:admin".into()],
            header_values: vec![Some("alice".into()), None, Some("".into())],
            subject: Some("alice".into()),
            client_id: None,
        })
    }

    #[test]
    fn the_token_comparison_sees_every_byte_and_the_length() {
        let token: Vec<u8> = (0..40u8).map(|i| b'a' + i % 26).collect();
        for len in 0..token.len() {
            let a = token.get(..len).expect("in range");
            assert!(same_bytes(a, a), "{len}");
            for at in 0..len {
                let mut b = a.to_vec();
                b[at] ^= 1;
                assert!(!same_bytes(a, &b), "{len} bytes, differing at {at}");
            }
            assert!(!same_bytes(a, token.get(..len + 1).expect("in range")));
        }
    }

    #[test]
    fn encoding_round_trips_and_rejects_corruption() {
        let hash = [7u8; 32];
        let bytes = encode(&hash, &identity(1234)).expect("encodes");
        assert_eq!(decode(&bytes), Some((hash, (*identity(1234)).clone())));
        for cut in 0..bytes.len() {
            assert_eq!(decode(&bytes[..cut]), None, "truncated at {cut}");
        }
        let mut extra = bytes.clone();
        extra.push(0);
        assert_eq!(decode(&extra), None);
        let mut wrong_version = bytes.clone();
        wrong_version[0] = 2;
        assert_eq!(decode(&wrong_version), None);
        assert_eq!(decode(b""), None);
    }

    #[test]
    fn hit_until_the_token_expires_then_miss() {
        let store = MemStore::default();
        let mut cache = TokenCache::new("abcd", 16, SHAPE);
        cache.insert(&store, Miss::default(), 0, "tok", &identity(1000));
        assert_eq!(
            cache.lookup(&store, 0, "tok", 999, &published).ok(),
            Some(identity(1000))
        );
        assert_eq!(cache.lookup(&store, 0, "tok", 1000, &published).ok(), None);
        assert_eq!(cache.lookup(&store, 0, "other", 10, &published).ok(), None);
        assert_eq!(
            cache.lookup(&store, 1, "tok", 10, &published).ok(),
            None,
            "entries are per resource"
        );
    }

    #[test]
    fn bounded_by_the_slot_count() {
        let store = MemStore::default();
        let mut cache = TokenCache::new("f", 4, SHAPE);
        for i in 0..100 {
            cache.insert(
                &store,
                Miss::default(),
                0,
                &format!("token-{i}"),
                &identity(1000),
            );
        }
        assert!(store.0.borrow().len() <= 4);
        assert!(
            store
                .0
                .borrow()
                .keys()
                .all(|k| k.starts_with("mcp_auth.tc.f."))
        );
        // Another worker (empty table of its own) finds at most the 4 shared entries.
        let mut other = TokenCache::new("f", 4, SHAPE);
        let hits = (0..100)
            .filter(|i| {
                other
                    .lookup(&store, 0, &format!("token-{i}"), 1, &published)
                    .is_ok()
            })
            .count();
        assert!((1..=4).contains(&hits), "{hits}");
    }

    #[test]
    fn zero_slots_disables_the_cache() {
        let store = MemStore::default();
        let mut cache = TokenCache::new("f", 0, SHAPE);
        cache.insert(&store, Miss::default(), 0, "tok", &identity(1000));
        assert!(store.0.borrow().is_empty());
        assert_eq!(cache.lookup(&store, 0, "tok", 1, &published).ok(), None);
    }

    #[test]
    fn another_workers_entry_is_found_in_shared_data_then_kept_locally() {
        let store = MemStore::default();
        let mut verifier = TokenCache::new("f", 16, SHAPE);
        let mut other = TokenCache::new("f", 16, SHAPE);
        verifier.insert(&store, Miss::default(), 0, "tok", &identity(1000));
        assert_eq!(
            other.lookup(&store, 0, "tok", 1, &published).ok(),
            Some(identity(1000))
        );
        store.0.borrow_mut().clear();
        assert_eq!(
            other.lookup(&store, 0, "tok", 1, &published).ok(),
            Some(identity(1000)),
            "answered from the worker's own table"
        );
        assert_eq!(
            other.lookup(&store, 0, "tok", 1000, &published).ok(),
            None,
            "expired"
        );
        let mut third = TokenCache::new("f", 16, SHAPE);
        assert_eq!(third.lookup(&store, 0, "tok", 1, &published).ok(), None);
    }

    #[test]
    fn a_stale_shared_entry_is_not_kept_locally() {
        let store = MemStore::default();
        let mut verifier = TokenCache::new("f", 16, SHAPE);
        let mut other = TokenCache::new("f", 16, SHAPE);
        verifier.insert(&store, Miss::default(), 0, "tok", &identity(1000));
        assert_eq!(other.lookup(&store, 0, "tok", 1000, &published).ok(), None);
        store.0.borrow_mut().clear();
        assert_eq!(other.lookup(&store, 0, "tok", 1, &published).ok(), None);
    }

    #[test]
    fn local_table_matches_the_whole_token_and_resource_until_expiry() {
        let mut local = LocalTokens::new(8);
        local.insert(0, "tok", &identity(1000));
        assert_eq!(
            local.lookup(0, "tok", 999, &published),
            Some(&identity(1000))
        );
        assert_eq!(local.lookup(0, "tok", 1000, &published), None, "expired");
        assert_eq!(
            local.lookup(1, "tok", 10, &published),
            None,
            "entries are per resource"
        );
        assert_eq!(local.lookup(0, "tok2", 10, &published), None);
        assert_eq!(local.lookup(0, "to", 10, &published), None);
    }

    #[test]
    fn local_table_is_bounded_and_a_slot_collision_is_a_miss() {
        let mut local = LocalTokens::new(1);
        local.insert(0, "first", &identity(1000));
        local.insert(0, "second", &identity(2000));
        assert_eq!(
            local.lookup(0, "first", 1, &published),
            None,
            "evicted by the other token"
        );
        assert_eq!(
            local.lookup(0, "second", 1, &published),
            Some(&identity(2000))
        );
        let mut local = LocalTokens::new(4);
        for i in 0..100 {
            local.insert(0, &format!("token-{i}"), &identity(1000));
        }
        let hits = (0..100)
            .filter(|i| {
                local
                    .lookup(0, &format!("token-{i}"), 1, &published)
                    .is_some()
            })
            .count();
        assert!((1..=4).contains(&hits), "{hits}");
        let mut off = LocalTokens::new(0);
        off.insert(0, "tok", &identity(1000));
        assert_eq!(off.lookup(0, "tok", 1, &published), None);
    }

    #[test]
    fn two_tokens_of_one_set_are_both_kept_and_a_third_evicts_the_first() {
        let mut local = LocalTokens::new(64);
        let set_of = |local: &LocalTokens, t: &str| local.set(0, t).expect("enabled");
        let tokens: Vec<String> = (0..1000).map(|i| format!("token-{i}")).collect();
        let target = set_of(&local, &tokens[0]);
        let same: Vec<&String> = tokens
            .iter()
            .filter(|t| set_of(&local, t) == target)
            .take(3)
            .collect();
        let [a, b, c] = same[..] else {
            panic!("three tokens of one set among 1000")
        };
        local.insert(0, a, &identity(1000));
        local.insert(0, b, &identity(2000));
        assert_eq!(local.lookup(0, a, 1, &published), Some(&identity(1000)));
        assert_eq!(local.lookup(0, b, 1, &published), Some(&identity(2000)));
        // Verified again: replaced in place, the other one stays.
        local.insert(0, a, &identity(3000));
        assert_eq!(local.lookup(0, a, 1, &published), Some(&identity(3000)));
        assert_eq!(local.lookup(0, b, 1, &published), Some(&identity(2000)));
        local.insert(0, c, &identity(4000));
        assert_eq!(local.lookup(0, c, 1, &published), Some(&identity(4000)));
        assert_eq!(
            local.lookup(0, a, 1, &published),
            None,
            "the first one in is evicted"
        );
        assert_eq!(local.lookup(0, b, 1, &published), Some(&identity(2000)));
        assert_eq!(
            local.slots.iter().flatten().count(),
            2,
            "the set holds two entries and nothing else was touched"
        );
    }

    #[test]
    fn an_entry_whose_key_is_no_longer_published_is_a_miss() {
        let store = MemStore::default();
        let mut verifier = TokenCache::new("f", 16, SHAPE);
        verifier.insert(&store, Miss::default(), 0, "tok", &identity(1000));
        let removed = |_: usize, _: &KeyFingerprint| false;
        let other_issuer = |issuer: usize, key: &KeyFingerprint| issuer == 0 && *key == KEY;
        for gone in [&removed as KeyPublished<'_>, &other_issuer] {
            assert_eq!(
                verifier.lookup(&store, 0, "tok", 1, gone).ok(),
                None,
                "own table"
            );
            let mut other = TokenCache::new("f", 16, SHAPE);
            assert_eq!(
                other.lookup(&store, 0, "tok", 1, gone).ok(),
                None,
                "shared data"
            );
        }
        assert_eq!(
            verifier.lookup(&store, 0, "tok", 1, &published).ok(),
            Some(identity(1000)),
            "published again (a JWKS refresh that brought the key back)"
        );
    }

    #[test]
    fn garbage_in_the_store_is_a_miss() {
        let store = MemStore::default();
        let mut cache = TokenCache::new("f", 1, SHAPE);
        store.set("mcp_auth.tc.f.0", b"\x03garbage");
        assert_eq!(cache.lookup(&store, 0, "tok", 1, &published).ok(), None);
    }

    #[test]
    fn a_shared_entry_that_does_not_fit_the_configuration_is_a_miss() {
        let store = MemStore::default();
        let mut writer = TokenCache::new("f", 16, SHAPE);
        writer.insert(&store, Miss::default(), 0, "tok", &identity(1000));
        let more_headers = EntryShape {
            identity_headers: 4,
            ..SHAPE
        };
        let fewer_headers = EntryShape {
            identity_headers: 2,
            ..SHAPE
        };
        let one_issuer = EntryShape {
            issuers: 1,
            ..SHAPE
        };
        for shape in [more_headers, fewer_headers, one_issuer] {
            let mut reader = TokenCache::new("f", 16, shape);
            assert_eq!(
                reader.lookup(&store, 0, "tok", 1, &published).ok(),
                None,
                "{shape:?}"
            );
        }
        let mut same = TokenCache::new("f", 16, SHAPE);
        assert_eq!(
            same.lookup(&store, 0, "tok", 1, &published).ok(),
            Some(identity(1000))
        );
    }
}
