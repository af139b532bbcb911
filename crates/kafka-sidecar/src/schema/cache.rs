//! A bounded map whose misses load once: concurrent lookups of one missing key wait for a single
//! load instead of each asking the registry. Entries are evicted oldest first past the bound, and
//! may carry the time they were loaded so that callers can expire them (latest-of-subject).

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use tokio::sync::OnceCell;

/// A loaded value and when it was loaded.
#[derive(Debug, Clone)]
pub struct Loaded<V> {
    /// The value.
    pub value: V,
    /// When the load finished.
    pub at: Instant,
}

type Slot<V> = Arc<OnceCell<Loaded<V>>>;

struct Entries<K, V> {
    slots: HashMap<K, Slot<V>>,
    order: VecDeque<K>,
}

/// The cache. `V` is cloned out on every hit, so make it cheap (an `Arc` or an id).
pub struct LoadOnceCache<K, V> {
    entries: Mutex<Entries<K, V>>,
    capacity: usize,
}

impl<K: Eq + Hash + Clone, V: Clone> LoadOnceCache<K, V> {
    /// An empty cache holding at most `capacity` entries.
    pub fn new(capacity: usize) -> Self {
        Self { entries: Mutex::new(Entries { slots: HashMap::new(), order: VecDeque::new() }), capacity }
    }

    /// The value for `key` if it is loaded, without loading it.
    pub fn peek(&self, key: &K) -> Option<Loaded<V>> {
        self.lock().slots.get(key).and_then(|slot| slot.get().cloned())
    }

    /// Stores a value loaded some other way (e.g. a schema that came with a registration).
    pub fn insert(&self, key: K, value: V) {
        let slot = Arc::new(OnceCell::new_with(Some(Loaded { value, at: Instant::now() })));
        let mut entries = self.lock();
        if entries.slots.insert(key.clone(), slot).is_none() {
            entries.order.push_back(key);
            self.evict(&mut entries);
        }
    }

    /// The value for `key`, loading it with `load` on a miss, and whether this call asked the
    /// registry (`false` for a hit and for a lookup that waited on someone else's load). A failed
    /// load leaves the key missing, so a later lookup tries again.
    pub async fn get_or_load<E, F, Fut>(&self, key: K, load: F) -> (Result<Loaded<V>, E>, bool)
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<V, E>>,
    {
        let slot = {
            let mut entries = self.lock();
            match entries.slots.get(&key) {
                Some(slot) => slot.clone(),
                None => {
                    let slot = Slot::default();
                    entries.slots.insert(key.clone(), slot.clone());
                    entries.order.push_back(key.clone());
                    self.evict(&mut entries);
                    slot
                }
            }
        };
        if let Some(loaded) = slot.get() {
            return (Ok(loaded.clone()), false);
        }
        let mut loaded_here = false;
        let result = slot
            .get_or_try_init(|| {
                loaded_here = true;
                async { load().await.map(|value| Loaded { value, at: Instant::now() }) }
            })
            .await
            .cloned();
        if result.is_err() {
            // An empty slot must not hold a place under the bound: drop it unless someone else's
            // load has filled or replaced it since.
            let mut entries = self.lock();
            if entries.slots.get(&key).is_some_and(|current| Arc::ptr_eq(current, &slot) && current.get().is_none()) {
                entries.slots.remove(&key);
                entries.order.retain(|queued| queued != &key);
            }
        }
        (result, loaded_here)
    }

    /// Forgets `key` if it still holds the value loaded at `at`: a caller that saw an expired
    /// value must not throw away a newer load someone else started meanwhile.
    pub fn remove_if_loaded_at(&self, key: &K, at: Instant) {
        let mut entries = self.lock();
        if entries.slots.get(key).and_then(|slot| slot.get()).is_some_and(|loaded| loaded.at == at) {
            entries.slots.remove(key);
            entries.order.retain(|queued| queued != key);
        }
    }

    fn evict(&self, entries: &mut Entries<K, V>) {
        while entries.slots.len() > self.capacity {
            let Some(oldest) = entries.order.pop_front() else { break };
            entries.slots.remove(&oldest);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries<K, V>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn concurrent_misses_load_once() {
        let cache = Arc::new(LoadOnceCache::<u32, u32>::new(10));
        let loads = Arc::new(AtomicUsize::new(0));
        let lookups = (0..20).map(|_| {
            let (cache, loads) = (cache.clone(), loads.clone());
            tokio::spawn(async move {
                let (result, _) = cache
                    .get_or_load(7, || async move {
                        loads.fetch_add(1, Ordering::SeqCst);
                        tokio::task::yield_now().await;
                        Ok::<_, ()>(49)
                    })
                    .await;
                result.map(|loaded| loaded.value)
            })
        });
        for lookup in futures::future::join_all(lookups).await {
            assert_eq!(lookup.expect("task"), Ok(49));
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        let (hit, asked) = cache.get_or_load(7, || async { Err::<u32, ()>(()) }).await;
        assert!(!asked, "a hit asks nobody");
        assert_eq!(hit.map(|loaded| loaded.value), Ok(49));
    }

    #[tokio::test]
    async fn failures_are_not_cached_and_the_bound_evicts_oldest() {
        let cache = LoadOnceCache::<u32, u32>::new(2);
        let (failed, _) = cache.get_or_load(1, || async { Err::<u32, &str>("down") }).await;
        assert_eq!(failed.map(|loaded| loaded.value), Err("down"));
        assert!(cache.entries.lock().expect("lock").slots.is_empty(), "a failed load leaves no slot");
        let (loaded, asked) = cache.get_or_load(1, || async { Ok::<_, &str>(10) }).await;
        assert_eq!((loaded.map(|loaded| loaded.value), asked), (Ok(10), true));
        let at = cache.peek(&1).expect("loaded").at;
        cache.remove_if_loaded_at(&1, Instant::now());
        assert!(cache.peek(&1).is_some(), "a newer load is kept");
        cache.remove_if_loaded_at(&1, at);
        assert!(cache.peek(&1).is_none());
        cache.insert(1, 10);
        cache.insert(2, 20);
        cache.insert(3, 30);
        assert!(cache.peek(&1).is_none(), "the oldest entry is evicted past the bound");
        assert_eq!(cache.peek(&3).map(|loaded| loaded.value), Some(30));
    }
}
