//! One shard's keyspace: byte-string keys and values with optional expiry,
//! and the operations a command runs on the shard that owns its keys
//! ([`ShardOp`], applied by [`Store::apply`]).
//!
//! Sans-IO: the caller passes the clock (milliseconds on a monotonic clock
//! of the shard's worker) to every call; the store makes no syscalls. A key
//! past its deadline is removed when touched (lazy expiry) and by
//! [`Store::sweep`], which removes at most a given number of expired keys
//! per call, oldest deadline first.
//!
//! Keys are placed on shards by [`shard_of`]: Redis Cluster's hash slot
//! (CRC16/XMODEM of the key, or of its `{hash tag}`, modulo 16384) modulo
//! the shard count, so keys sharing a tag share a shard.

use std::collections::{BTreeSet, HashMap};

/// Redis Cluster's key space: 16384 hash slots.
pub const SLOTS: u16 = 16384;

/// CRC16/XMODEM (polynomial 0x1021, initial 0), as Redis Cluster uses.
pub fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in bytes {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The key's Redis Cluster hash slot: the CRC16 of its first non-empty
/// `{...}` tag if it has one, else of the whole key, modulo [`SLOTS`].
pub fn slot_of(key: &[u8]) -> u16 {
    let tagged = key.iter().position(|&b| b == b'{').and_then(|open| {
        let rest = &key[open + 1..];
        let close = rest.iter().position(|&b| b == b'}')?;
        (close > 0).then(|| &rest[..close])
    });
    crc16(tagged.unwrap_or(key)) % SLOTS
}

/// The shard (worker) that owns `key` among `shards`.
pub fn shard_of(key: &[u8], shards: usize) -> usize {
    usize::from(slot_of(key)) % shards.max(1)
}

/// What a SET does when the key exists or not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetCondition {
    /// Always.
    Always,
    /// Only if the key does not exist (`NX`).
    IfMissing,
    /// Only if the key exists (`XX`).
    IfExists,
}

/// What a SET does with the key's time to live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetExpiry {
    /// Clears it (a plain SET).
    Clear,
    /// Keeps it (`KEEPTTL`).
    Keep,
    /// Expires this many milliseconds from the shard's now (`EX`, `PX`;
    /// positive).
    In(i64),
}

/// One command's part on one shard, with owned keys and values (it may be
/// sent to another worker).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShardOp {
    /// GET key.
    Get(Vec<u8>),
    /// SET key value.
    Set {
        /// The key.
        key: Vec<u8>,
        /// The value.
        value: Vec<u8>,
        /// NX / XX.
        condition: SetCondition,
        /// EX / PX / KEEPTTL.
        expiry: SetExpiry,
        /// `GET`: answer the old value.
        get: bool,
    },
    /// DEL keys: how many existed.
    Del(Vec<Vec<u8>>),
    /// EXISTS keys: how many exist (a key named twice counts twice).
    Exists(Vec<Vec<u8>>),
    /// INCR key.
    Incr(Vec<u8>),
    /// MGET keys: their values in order.
    MGet(Vec<Vec<u8>>),
    /// MSET pairs, in order.
    MSet(Vec<(Vec<u8>, Vec<u8>)>),
    /// EXPIRE key seconds.
    Expire(Vec<u8>, i64),
    /// TTL key.
    Ttl(Vec<u8>),
    /// DBSIZE.
    DbSize,
    /// FLUSHALL.
    FlushAll,
}

/// The result of a [`ShardOp`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShardReply {
    /// Done (`+OK`).
    Ok,
    /// A number.
    Integer(i64),
    /// A value or nil.
    Value(Option<Vec<u8>>),
    /// Values or nils, in the op's key order.
    Values(Vec<Option<Vec<u8>>>),
    /// SET's condition failed (nil), or with `GET`, the old value.
    NotSet,
    /// An error's text after `ERR `.
    Error(&'static str),
}

/// INCR on a value that is not a 64-bit decimal integer.
pub const NOT_AN_INTEGER: &str = "value is not an integer or out of range";
/// INCR past `i64::MAX`.
pub const OVERFLOW: &str = "increment or decrement would overflow";
/// EXPIRE whose deadline overflows.
pub const INVALID_EXPIRE: &str = "invalid expire time in 'expire' command";
/// SET whose deadline overflows.
pub const INVALID_SET_EXPIRE: &str = "invalid expire time in 'set' command";

#[derive(Debug)]
struct Entry {
    value: Vec<u8>,
    /// The deadline (ms), if any; then `(deadline, key)` is in `deadlines`.
    expires_at: Option<i64>,
}

/// One shard's keys.
#[derive(Debug, Default)]
pub struct Store {
    map: HashMap<Vec<u8>, Entry>,
    /// `(deadline, key)` for every key with a deadline, exactly.
    deadlines: BTreeSet<(i64, Vec<u8>)>,
}

impl Store {
    /// An empty store.
    pub fn new() -> Store {
        Store::default()
    }

    /// How many keys it holds (some may be expired but not yet removed).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// How many keys have a deadline.
    pub fn expiring(&self) -> usize {
        self.deadlines.len()
    }

    /// Removes up to `budget` keys whose deadline is at or before `now`;
    /// returns how many.
    pub fn sweep(&mut self, now: i64, budget: usize) -> usize {
        let mut removed = 0;
        while removed < budget {
            match self.deadlines.first() {
                Some((deadline, _)) if *deadline <= now => {}
                _ => break,
            }
            if let Some((_, key)) = self.deadlines.pop_first() {
                self.map.remove(&key);
                removed += 1;
            }
        }
        removed
    }

    /// The live entry of `key`, removing it first if it has expired.
    fn live(&mut self, key: &[u8], now: i64) -> Option<&mut Entry> {
        let expired = self
            .map
            .get(key)?
            .expires_at
            .is_some_and(|deadline| deadline <= now);
        if expired {
            self.remove(key);
            return None;
        }
        self.map.get_mut(key)
    }

    fn remove(&mut self, key: &[u8]) -> Option<Entry> {
        let entry = self.map.remove(key)?;
        if let Some(deadline) = entry.expires_at {
            self.deadlines.remove(&(deadline, key.to_vec()));
        }
        Some(entry)
    }

    fn set_deadline(&mut self, key: &[u8], deadline: Option<i64>) {
        let Some(entry) = self.map.get_mut(key) else {
            return;
        };
        let old = std::mem::replace(&mut entry.expires_at, deadline);
        if old == deadline {
            return;
        }
        if let Some(old) = old {
            self.deadlines.remove(&(old, key.to_vec()));
        }
        if let Some(new) = deadline {
            self.deadlines.insert((new, key.to_vec()));
        }
    }

    /// Stores `value` under `key` with `deadline`.
    fn put(&mut self, key: Vec<u8>, value: Vec<u8>, deadline: Option<i64>) {
        match self.map.get_mut(&key) {
            Some(entry) => {
                entry.value = value;
                self.set_deadline(&key, deadline);
            }
            None => {
                if let Some(deadline) = deadline {
                    self.deadlines.insert((deadline, key.clone()));
                }
                self.map.insert(
                    key,
                    Entry {
                        value,
                        expires_at: deadline,
                    },
                );
            }
        }
    }

    /// Runs `op` at time `now` (ms).
    pub fn apply(&mut self, op: ShardOp, now: i64) -> ShardReply {
        match op {
            ShardOp::Get(key) => ShardReply::Value(self.live(&key, now).map(|e| e.value.clone())),
            ShardOp::Set {
                key,
                value,
                condition,
                expiry,
                get,
            } => {
                let deadline = match expiry {
                    SetExpiry::In(ms) => match now.checked_add(ms) {
                        Some(deadline) => Some(Some(deadline)),
                        None => return ShardReply::Error(INVALID_SET_EXPIRE),
                    },
                    SetExpiry::Clear => Some(None),
                    SetExpiry::Keep => None,
                };
                let old = self.live(&key, now);
                let existed = old.is_some();
                let kept = old.as_ref().and_then(|e| e.expires_at);
                let old_value = if get {
                    old.map(|e| e.value.clone())
                } else {
                    None
                };
                let allowed = match condition {
                    SetCondition::Always => true,
                    SetCondition::IfMissing => !existed,
                    SetCondition::IfExists => existed,
                };
                if allowed {
                    self.put(key, value, deadline.unwrap_or(kept));
                }
                match (get, allowed) {
                    (true, _) => ShardReply::Value(old_value),
                    (false, true) => ShardReply::Ok,
                    (false, false) => ShardReply::NotSet,
                }
            }
            ShardOp::Del(keys) => {
                let mut count = 0;
                for key in keys {
                    if self.live(&key, now).is_some() {
                        self.remove(&key);
                        count += 1;
                    }
                }
                ShardReply::Integer(count)
            }
            ShardOp::Exists(keys) => {
                let count = keys
                    .iter()
                    .filter(|key| self.live(key, now).is_some())
                    .count();
                ShardReply::Integer(count as i64)
            }
            ShardOp::Incr(key) => {
                let (current, deadline) = match self.live(&key, now) {
                    None => (0, None),
                    Some(entry) => match crate::resp::parse_i64(&entry.value) {
                        Some(n) => (n, entry.expires_at),
                        None => return ShardReply::Error(NOT_AN_INTEGER),
                    },
                };
                let Some(next) = current.checked_add(1) else {
                    return ShardReply::Error(OVERFLOW);
                };
                // INCR keeps the key's time to live.
                self.put(key, next.to_string().into_bytes(), deadline);
                ShardReply::Integer(next)
            }
            ShardOp::MGet(keys) => ShardReply::Values(
                keys.iter()
                    .map(|key| self.live(key, now).map(|e| e.value.clone()))
                    .collect(),
            ),
            ShardOp::MSet(pairs) => {
                for (key, value) in pairs {
                    self.put(key, value, None);
                }
                ShardReply::Ok
            }
            ShardOp::Expire(key, seconds) => {
                let Some(deadline) = seconds.checked_mul(1000).and_then(|ms| ms.checked_add(now))
                else {
                    return ShardReply::Error(INVALID_EXPIRE);
                };
                if self.live(&key, now).is_none() {
                    return ShardReply::Integer(0);
                }
                if deadline <= now {
                    self.remove(&key);
                } else {
                    self.set_deadline(&key, Some(deadline));
                }
                ShardReply::Integer(1)
            }
            ShardOp::Ttl(key) => ShardReply::Integer(match self.live(&key, now) {
                None => -2,
                Some(Entry {
                    expires_at: None, ..
                }) => -1,
                // Rounded to the nearest second, as redis-server does.
                Some(Entry {
                    expires_at: Some(deadline),
                    ..
                }) => (*deadline - now + 500) / 1000,
            }),
            ShardOp::DbSize => ShardReply::Integer(self.map.len() as i64),
            ShardOp::FlushAll => {
                self.map.clear();
                self.deadlines.clear();
                ShardReply::Ok
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(s: &str) -> Vec<u8> {
        s.as_bytes().to_vec()
    }

    fn set(key: &str, value: &str, expiry: SetExpiry, condition: SetCondition) -> ShardOp {
        ShardOp::Set {
            key: k(key),
            value: k(value),
            condition,
            expiry,
            get: false,
        }
    }

    fn value(s: &str) -> ShardReply {
        ShardReply::Value(Some(k(s)))
    }

    #[test]
    fn crc16_and_slots_match_the_redis_cluster_spec() {
        // The spec's check value, and slots redis-cli CLUSTER KEYSLOT gives.
        assert_eq!(crc16(b"123456789"), 0x31c3);
        assert_eq!(slot_of(b"foo"), 12182);
        assert_eq!(slot_of(b"bar"), 5061);
        assert_eq!(slot_of(b"{user1000}.following"), slot_of(b"user1000"));
        assert_eq!(slot_of(b"foo{}{bar}"), crc16(b"foo{}{bar}") % SLOTS);
        assert_eq!(slot_of(b"foo{{bar}}zap"), slot_of(b"{bar"));
        assert_eq!(shard_of(b"foo", 1), 0);
        assert_eq!(shard_of(b"foo", 2), 0);
        assert_eq!(shard_of(b"bar", 2), 1);
    }

    #[test]
    fn get_set_with_conditions() {
        let mut s = Store::new();
        assert_eq!(s.apply(ShardOp::Get(k("a")), 0), ShardReply::Value(None));
        let always = SetCondition::Always;
        assert_eq!(
            s.apply(set("a", "1", SetExpiry::Clear, always), 0),
            ShardReply::Ok
        );
        assert_eq!(s.apply(ShardOp::Get(k("a")), 0), value("1"));
        let nx = SetCondition::IfMissing;
        let xx = SetCondition::IfExists;
        assert_eq!(
            s.apply(set("a", "2", SetExpiry::Clear, nx), 0),
            ShardReply::NotSet
        );
        assert_eq!(
            s.apply(set("b", "2", SetExpiry::Clear, xx), 0),
            ShardReply::NotSet
        );
        assert_eq!(
            s.apply(set("a", "3", SetExpiry::Clear, xx), 0),
            ShardReply::Ok
        );
        assert_eq!(
            s.apply(set("b", "4", SetExpiry::Clear, nx), 0),
            ShardReply::Ok
        );
        assert_eq!(s.apply(ShardOp::Get(k("a")), 0), value("3"));
        assert_eq!(s.apply(ShardOp::Get(k("b")), 0), value("4"));
        let get = ShardOp::Set {
            key: k("a"),
            value: k("5"),
            condition: nx,
            expiry: SetExpiry::Clear,
            get: true,
        };
        // GET answers the old value even when NX refuses.
        assert_eq!(s.apply(get, 0), value("3"));
        assert_eq!(s.apply(ShardOp::Get(k("a")), 0), value("3"));
    }

    #[test]
    fn expiry_is_lazy_and_swept() {
        let mut s = Store::new();
        let always = SetCondition::Always;
        s.apply(set("a", "1", SetExpiry::In(1000), always), 100);
        s.apply(set("b", "1", SetExpiry::In(2000), always), 100);
        s.apply(set("c", "1", SetExpiry::Clear, always), 100);
        assert_eq!(s.apply(ShardOp::Ttl(k("a")), 100), ShardReply::Integer(1));
        assert_eq!(s.apply(ShardOp::Ttl(k("a")), 700), ShardReply::Integer(0));
        assert_eq!(s.apply(ShardOp::Ttl(k("b")), 100), ShardReply::Integer(2));
        assert_eq!(s.apply(ShardOp::Ttl(k("c")), 100), ShardReply::Integer(-1));
        assert_eq!(s.apply(ShardOp::Ttl(k("z")), 100), ShardReply::Integer(-2));
        assert_eq!(s.apply(ShardOp::Get(k("a")), 1099), value("1"));
        // Lazy: touched at its deadline, it is gone.
        assert_eq!(s.apply(ShardOp::Get(k("a")), 1100), ShardReply::Value(None));
        assert_eq!(s.len(), 2);
        assert_eq!(s.expiring(), 1);
        // Swept: b is removed without being touched, within the budget.
        assert_eq!(s.sweep(2099, 10), 0);
        assert_eq!(s.sweep(2100, 10), 1);
        assert_eq!((s.len(), s.expiring()), (1, 0));
        // The budget bounds one sweep.
        for i in 0..10 {
            s.apply(set(&format!("t{i}"), "", SetExpiry::In(1), always), 0);
        }
        assert_eq!(s.sweep(5, 3), 3);
        assert_eq!(s.sweep(5, 100), 7);
        assert_eq!(s.apply(ShardOp::DbSize, 5), ShardReply::Integer(1));
    }

    #[test]
    fn set_clears_or_keeps_the_ttl() {
        let mut s = Store::new();
        let always = SetCondition::Always;
        s.apply(set("a", "1", SetExpiry::In(5000), always), 0);
        s.apply(set("a", "2", SetExpiry::Keep, always), 0);
        assert_eq!(s.apply(ShardOp::Ttl(k("a")), 0), ShardReply::Integer(5));
        s.apply(set("a", "3", SetExpiry::Clear, always), 0);
        assert_eq!(s.apply(ShardOp::Ttl(k("a")), 0), ShardReply::Integer(-1));
        assert_eq!(s.expiring(), 0);
        s.apply(set("a", "3", SetExpiry::In(1000), always), 0);
        s.apply(set("a", "3", SetExpiry::In(3000), always), 0);
        assert_eq!(s.expiring(), 1);
        assert_eq!(s.sweep(1000, 10), 0);
        assert_eq!(
            s.apply(set("a", "", SetExpiry::In(i64::MAX), always), 1),
            ShardReply::Error(INVALID_SET_EXPIRE)
        );
    }

    #[test]
    fn expire_sets_deletes_or_reports_missing() {
        let mut s = Store::new();
        s.apply(set("a", "1", SetExpiry::Clear, SetCondition::Always), 0);
        assert_eq!(
            s.apply(ShardOp::Expire(k("z"), 10), 0),
            ShardReply::Integer(0)
        );
        assert_eq!(
            s.apply(ShardOp::Expire(k("a"), 10), 0),
            ShardReply::Integer(1)
        );
        assert_eq!(s.apply(ShardOp::Ttl(k("a")), 0), ShardReply::Integer(10));
        assert_eq!(
            s.apply(ShardOp::Expire(k("a"), 20), 0),
            ShardReply::Integer(1)
        );
        assert_eq!(s.expiring(), 1);
        assert_eq!(s.apply(ShardOp::Ttl(k("a")), 0), ShardReply::Integer(20));
        // Zero or negative: the key goes at once.
        assert_eq!(
            s.apply(ShardOp::Expire(k("a"), 0), 0),
            ShardReply::Integer(1)
        );
        assert_eq!(
            s.apply(ShardOp::Exists(vec![k("a")]), 0),
            ShardReply::Integer(0)
        );
        assert_eq!(s.expiring(), 0);
        assert_eq!(
            s.apply(ShardOp::Expire(k("a"), i64::MAX / 100), 0),
            ShardReply::Error(INVALID_EXPIRE)
        );
    }

    #[test]
    fn incr_counts_and_refuses_non_integers_and_overflow() {
        let mut s = Store::new();
        assert_eq!(s.apply(ShardOp::Incr(k("n")), 0), ShardReply::Integer(1));
        assert_eq!(s.apply(ShardOp::Incr(k("n")), 0), ShardReply::Integer(2));
        assert_eq!(s.apply(ShardOp::Get(k("n")), 0), value("2"));
        s.apply(set("n", "-5", SetExpiry::In(3000), SetCondition::Always), 0);
        assert_eq!(s.apply(ShardOp::Incr(k("n")), 0), ShardReply::Integer(-4));
        assert_eq!(s.apply(ShardOp::Ttl(k("n")), 0), ShardReply::Integer(3));
        for bad in ["x", "1.5", " 1", "01", ""] {
            s.apply(set("b", bad, SetExpiry::Clear, SetCondition::Always), 0);
            assert_eq!(
                s.apply(ShardOp::Incr(k("b")), 0),
                ShardReply::Error(NOT_AN_INTEGER),
                "{bad:?}"
            );
        }
        let max = i64::MAX.to_string();
        s.apply(set("m", &max, SetExpiry::Clear, SetCondition::Always), 0);
        assert_eq!(
            s.apply(ShardOp::Incr(k("m")), 0),
            ShardReply::Error(OVERFLOW)
        );
        assert_eq!(s.apply(ShardOp::Get(k("m")), 0), value(&max));
    }

    #[test]
    fn multi_key_ops_on_one_shard() {
        let mut s = Store::new();
        let pairs = vec![(k("a"), k("1")), (k("b"), k("2")), (k("a"), k("3"))];
        assert_eq!(s.apply(ShardOp::MSet(pairs), 0), ShardReply::Ok);
        assert_eq!(
            s.apply(ShardOp::MGet(vec![k("a"), k("x"), k("b")]), 0),
            ShardReply::Values(vec![Some(k("3")), None, Some(k("2"))])
        );
        assert_eq!(
            s.apply(ShardOp::Exists(vec![k("a"), k("a"), k("x")]), 0),
            ShardReply::Integer(2)
        );
        assert_eq!(s.apply(ShardOp::DbSize, 0), ShardReply::Integer(2));
        assert_eq!(
            s.apply(ShardOp::Del(vec![k("a"), k("a"), k("x")]), 0),
            ShardReply::Integer(1)
        );
        assert_eq!(s.apply(ShardOp::FlushAll, 0), ShardReply::Ok);
        assert_eq!(s.apply(ShardOp::DbSize, 0), ShardReply::Integer(0));
    }
}
