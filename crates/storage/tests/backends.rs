//! Runs the shared suite (`tests/suite`) on every backend.

mod fixtures;
mod suite;

use tern_storage::{SqliteOptions, Storage};

/// One `#[tokio::test]` per suite function, for the backend built by `$open` (which returns
/// the storage and a guard to keep alive, e.g. the temporary directory).
macro_rules! backend_tests {
    ($backend:ident, $open:expr, [$($test:ident),* $(,)?]) => {
        mod $backend {
            use super::*;
            $(
                #[tokio::test]
                async fn $test() {
                    let (storage, _guard) = $open.await;
                    suite::$test(&storage).await;
                }
            )*
        }
    };
}

async fn sqlite() -> (Storage, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::sqlite(SqliteOptions::new(dir.path().join("tern.db")))
        .await
        .unwrap();
    (storage, dir)
}

macro_rules! all_backends {
    ($($test:ident),* $(,)?) => {
        backend_tests!(memory, async { (Storage::memory(), ()) }, [$($test),*]);
        backend_tests!(sqlite, super::sqlite(), [$($test),*]);
    };
}

all_backends!(
    accounts,
    account_delete_cascades,
    keyval,
    map,
    archive_filters,
    archive_paging,
    archive_order,
    archive_expire_and_delete,
);
