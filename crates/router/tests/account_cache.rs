//! AccountCache: values are kept only for online accounts, never from a load that raced with
//! a write, and dropped when the account's last session closes.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;

use tern_router::{AccountCache, BareJid, FullJid, LocalRegistry, Router, SessionHandle};
use tern_storage::Storage;

fn router() -> Arc<Router> {
    Router::builder(Storage::memory(), Arc::new(LocalRegistry::default()))
        .host("example.com")
        .build()
}

fn online(r: &Router, jid: &str) -> SessionHandle {
    let (tx, _rx) = mpsc::channel(1);
    let h = SessionHandle::new(FullJid::new(jid).unwrap(), tx);
    r.sessions().try_insert(h.clone()).unwrap();
    h
}

#[tokio::test]
async fn caches_online_accounts_until_invalidated_or_offline() {
    let r = router();
    let cache: AccountCache<u32> = AccountCache::new(10);
    let alice = BareJid::new("alice@example.com").unwrap();
    let loads = AtomicUsize::new(0);
    let load = |v: u32| {
        loads.fetch_add(1, Ordering::Relaxed);
        async move { v }
    };

    // Offline: loaded every time, never kept.
    assert_eq!(*cache.get_or_load(&r, &alice, || load(1)).await, 1);
    assert_eq!(*cache.get_or_load(&r, &alice, || load(2)).await, 2);
    assert!(cache.is_empty());

    // Online: the first load is kept.
    let h = online(&r, "alice@example.com/phone");
    assert_eq!(*cache.get_or_load(&r, &alice, || load(3)).await, 3);
    assert_eq!(*cache.get_or_load(&r, &alice, || load(4)).await, 3);
    assert_eq!(loads.load(Ordering::Relaxed), 3);

    // A write invalidates: the next read loads again.
    cache.invalidate(&alice);
    assert_eq!(*cache.get_or_load(&r, &alice, || load(5)).await, 5);

    // A load that started before an invalidation is not kept.
    cache.invalidate(&alice);
    let generation_before = {
        // Simulates get_or_load's read of the generation, then a concurrent write.
        let v = cache.get_or_load(&r, &alice, || async {
            cache.invalidate(&alice);
            6
        });
        *v.await
    };
    assert_eq!(generation_before, 6);
    assert!(cache.is_empty(), "stale load was cached");

    // The last session closing drops the value.
    assert_eq!(*cache.get_or_load(&r, &alice, || load(7)).await, 7);
    assert_eq!(cache.len(), 1);
    r.sessions().remove(&h);
    cache.session_closed(&r, &alice);
    assert!(cache.is_empty());
}
