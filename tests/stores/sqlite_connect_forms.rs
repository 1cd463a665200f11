//! `SqliteStore::connect` on a new file from many tasks at once, in the forms a user may write
//! the URL (an outside reader found `?cache=shared` failing). None may fail with "database is
//! locked".

use std::sync::Arc;

use mcp_oauth::backends::SqliteStore;
use tokio::sync::Barrier;

const RACERS: usize = 32;
const NEW_FILES: usize = 8;

/// `RACERS` tasks connect to one new file at once, through `url_of(path)`; every error seen.
async fn race_connects(url_of: fn(&std::path::Path) -> String) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap().keep();
    let mut errors = Vec::new();
    for n in 0..NEW_FILES {
        let url = Arc::new(url_of(&dir.join(format!("race-{n}.db"))));
        let barrier = Arc::new(Barrier::new(RACERS));
        let tasks: Vec<_> = (0..RACERS)
            .map(|_| {
                let (url, barrier) = (Arc::clone(&url), Arc::clone(&barrier));
                tokio::spawn(async move {
                    barrier.wait().await;
                    SqliteStore::connect(&url).await
                })
            })
            .collect();
        for task in tasks {
            if let Err(error) = task.await.unwrap() {
                errors.push(error.to_string());
            }
        }
    }
    errors
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_tasks_connecting_to_a_new_file_all_succeed() {
    let errors = race_connects(|path| format!("sqlite://{}", path.display())).await;
    assert!(
        errors.is_empty(),
        "{} of {} connects failed, first: {:?}",
        errors.len(),
        RACERS * NEW_FILES,
        errors.first()
    );
}

/// The same with SQLite's shared cache, which sqlx accepts in the URL (`?cache=shared`): there a
/// lock conflict is `SQLITE_LOCKED`, not `SQLITE_BUSY`, and no busy timeout waits for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_tasks_connecting_to_a_new_file_with_a_shared_cache_all_succeed() {
    let errors = race_connects(|path| format!("sqlite://{}?cache=shared", path.display())).await;
    assert!(
        errors.is_empty(),
        "{} of {} connects failed, first: {:?}",
        errors.len(),
        RACERS * NEW_FILES,
        errors.first()
    );
}
