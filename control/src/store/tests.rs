//! The store's contract: indexes, fine-grained watches, group commit,
//! durability and failure.

use super::*;

#[test]
fn writes_bump_the_index_and_only_touched_tables() {
    let store = Store::in_memory().unwrap();
    assert_eq!(store.index(), 0);
    store
        .write_blocking(|txn| txn.put(Table::Services, "web", &"v1"))
        .unwrap();
    assert_eq!(store.index(), 1);
    store
        .write_blocking(|txn| txn.put(Table::Checks, "c", &"v"))
        .unwrap();
    let snap = store.snapshot().unwrap();
    assert_eq!(snap.table_index(Table::Services).unwrap(), 1);
    assert_eq!(snap.table_index(Table::Checks).unwrap(), 2);
    assert_eq!(
        snap.get::<String>(Table::Services, "web").unwrap().unwrap(),
        "v1"
    );
}

#[test]
fn failed_or_empty_transactions_change_nothing() {
    let store = Store::in_memory().unwrap();
    let result: Result<(), StoreError> = store.write_blocking(|txn| {
        txn.put(Table::Services, "web", &"v1")?;
        Err(StoreError::Backend("boom".into()))
    });
    assert!(result.is_err());
    store
        .write_blocking::<_, StoreError, _>(|_| Ok(()))
        .unwrap();
    assert_eq!(store.index(), 0);
    let snap = store.snapshot().unwrap();
    assert!(snap
        .get::<String>(Table::Services, "web")
        .unwrap()
        .is_none());
}

#[test]
fn scan_honours_prefixes_and_persists_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    {
        let store = Store::open(&path).unwrap();
        store
            .write_blocking(|txn| {
                txn.put(Table::ConfigEntries, "a/1", &1)?;
                txn.put(Table::ConfigEntries, "a/2", &2)?;
                txn.put(Table::ConfigEntries, "b/1", &3)
            })
            .unwrap();
    }
    let store = Store::open(&path).unwrap();
    assert_eq!(store.index(), 1);
    let got: Vec<u32> = store
        .snapshot()
        .unwrap()
        .scan(Table::ConfigEntries, "a/")
        .unwrap();
    assert_eq!(got, vec![1, 2]);
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Instance {
    id: String,
    name: String,
}

fn instance(id: &str, name: &str) -> Instance {
    Instance {
        id: id.into(),
        name: name.into(),
    }
}

fn by_name(i: &Instance) -> Vec<String> {
    vec![i.name.clone()]
}

fn schema() -> Schema {
    Schema::new().table::<Instance>(
        Table::Services,
        vec![("name", by_name as fn(&Instance) -> Vec<String>)],
    )
}

fn indexed(log: Box<dyn Log>) -> Store {
    Store::with_log(log, schema()).unwrap()
}

fn put(store: &Store, i: &Instance) {
    let i = i.clone();
    store
        .write_blocking(|txn| txn.put(Table::Services, &i.id.clone(), &i))
        .unwrap();
}

fn named(store: &Store, name: &str) -> Vec<String> {
    let found: Vec<Instance> = store
        .snapshot()
        .unwrap()
        .lookup(Table::Services, "name", name)
        .unwrap();
    found.into_iter().map(|i| i.id).collect()
}

#[test]
fn lookups_follow_inserts_renames_and_deletes() {
    let store = indexed(Box::new(NoLog));
    put(&store, &instance("web-1", "web"));
    put(&store, &instance("web-2", "web"));
    put(&store, &instance("db-1", "db"));
    assert_eq!(named(&store, "web"), ["web-1", "web-2"]);
    // A row whose indexed value changes moves from one to the other.
    put(&store, &instance("web-2", "db"));
    assert_eq!(named(&store, "web"), ["web-1"]);
    assert_eq!(named(&store, "db"), ["db-1", "web-2"]);
    store
        .write_blocking(|txn| txn.delete(Table::Services, "db-1"))
        .unwrap();
    assert_eq!(named(&store, "db"), ["web-2"]);
    assert!(named(&store, "nothing").is_empty());
    // A value that is a prefix of another is its own value.
    put(&store, &instance("w", "we"));
    assert_eq!(named(&store, "we"), ["w"]);
    assert_eq!(named(&store, "web"), ["web-1"]);
    let unknown = store
        .snapshot()
        .unwrap()
        .lookup::<Instance>(Table::Services, "tag", "x");
    assert!(matches!(unknown, Err(StoreError::UnknownIndex { .. })));
}

#[test]
fn indexes_are_rebuilt_from_the_log_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    {
        let store = indexed(Box::new(RedbBackend::open(&path).unwrap()));
        put(&store, &instance("web-1", "web"));
        put(&store, &instance("db-1", "db"));
        put(&store, &instance("web-2", "web"));
    }
    let store = indexed(Box::new(RedbBackend::open(&path).unwrap()));
    assert_eq!(store.index(), 3);
    assert_eq!(named(&store, "web"), ["web-1", "web-2"]);
    assert_eq!(
        store
            .snapshot()
            .unwrap()
            .table_index(Table::Services)
            .unwrap(),
        3
    );
}

#[test]
fn a_snapshot_does_not_see_later_writes() {
    let store = indexed(Box::new(NoLog));
    put(&store, &instance("web-1", "web"));
    let before = store.snapshot().unwrap();
    put(&store, &instance("web-2", "web"));
    let old: Vec<Instance> = before.lookup(Table::Services, "name", "web").unwrap();
    assert_eq!(old.len(), 1);
    assert_eq!(named(&store, "web").len(), 2);
}

#[tokio::test]
async fn a_write_wakes_only_the_watchers_of_what_it_changed() {
    let store = indexed(Box::new(NoLog));
    put(&store, &instance("web-1", "web"));
    put(&store, &instance("db-1", "db"));
    // What a `health/service/web` query reads.
    let snap = store.recording_snapshot();
    let _: Vec<Instance> = snap.lookup(Table::Services, "name", "web").unwrap();
    let web_index = snap.watch_index();
    assert_eq!(web_index, 1);
    let keys = snap.watch_set();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    let wait = store.wait_for_change(&keys, snap.state_index(), deadline);
    tokio::pin!(wait);
    assert!(futures_util::FutureExt::now_or_never(wait.as_mut()).is_none());
    assert_eq!(store.inner.shared.watches.slot_count(), 1);

    // Another service changes: durable and published, and still asleep.
    let other = instance("db-2", "db");
    store
        .write(move |txn| txn.put(Table::Services, "db-2", &other))
        .await
        .unwrap();
    assert!(futures_util::FutureExt::now_or_never(wait.as_mut()).is_none());
    // A new instance of web wakes it, and its index moves.
    let web = instance("web-2", "web");
    store
        .write(move |txn| txn.put(Table::Services, "web-2", &web))
        .await
        .unwrap();
    let woken = tokio::time::timeout(std::time::Duration::from_secs(10), wait)
        .await
        .expect("woken");
    assert!(woken);
    assert_eq!(store.inner.shared.watches.slot_count(), 0);
    let again = store.recording_snapshot();
    let _: Vec<Instance> = again.lookup(Table::Services, "name", "web").unwrap();
    assert_eq!(again.watch_index(), 4);
}

#[tokio::test]
async fn a_change_before_the_wait_begins_is_not_missed() {
    let store = indexed(Box::new(NoLog));
    let snap = store.recording_snapshot();
    let _: Option<Instance> = snap.get(Table::Services, "web-1").unwrap();
    put(&store, &instance("web-1", "web"));
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    let woken = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        store.wait_for_change(&snap.watch_set(), snap.state_index(), deadline),
    )
    .await
    .expect("returns at once");
    assert!(woken);
}

/// Polls `condition` until it holds (bounded).
async fn until(condition: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition never held"
        );
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
}

/// A log that counts its transactions and can be held shut or made to fail.
#[derive(Clone, Default)]
struct Gate {
    entered: Arc<std::sync::atomic::AtomicUsize>,
    appends: Arc<std::sync::atomic::AtomicUsize>,
    held: Arc<(Mutex<bool>, std::sync::Condvar)>,
    fail: Arc<std::sync::atomic::AtomicBool>,
}

impl Gate {
    fn hold(&self, held: bool) {
        *self.held.0.lock().unwrap() = held;
        self.held.1.notify_all();
    }
}

impl Log for Gate {
    fn load(&mut self, _row: &mut RowSink<'_>) -> Result<(), StoreError> {
        Ok(())
    }

    fn append(&mut self, _ops: &[&Op]) -> Result<(), StoreError> {
        self.entered
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let mut held = self.held.0.lock().unwrap();
        while *held {
            held = self.held.1.wait(held).unwrap();
        }
        self.appends
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(StoreError::Backend("disk full".into()));
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_share_one_commit_and_are_acknowledged_only_once_durable() {
    let gate = Gate::default();
    let store = indexed(Box::new(gate.clone()));
    gate.hold(true);
    // The first write reaches the log and waits there.
    let first = tokio::spawn({
        let store = store.clone();
        async move {
            let i = instance("web-0", "web");
            store
                .write(move |txn| txn.put(Table::Services, "web-0", &i))
                .await
        }
    });
    until(|| gate.entered.load(std::sync::atomic::Ordering::SeqCst) == 1).await;
    let mut writes = Vec::new();
    for n in 1..=50 {
        let store = store.clone();
        writes.push(tokio::spawn(async move {
            let i = instance(&format!("web-{n}"), "web");
            let id = i.id.clone();
            store
                .write(move |txn| txn.put(Table::Services, &id, &i))
                .await
        }));
    }
    // Every write is applied to the head and queued, none acknowledged nor
    // visible to readers while the log holds.
    until(|| store.inner.shared.head.lock().unwrap().state.index == 51).await;
    assert!(!first.is_finished());
    assert!(writes.iter().all(|w| !w.is_finished()));
    assert_eq!(store.index(), 0);
    assert!(named(&store, "web").is_empty());
    gate.hold(false);
    first.await.unwrap().unwrap();
    for w in writes {
        w.await.unwrap().unwrap();
    }
    assert_eq!(named(&store, "web").len(), 51);
    assert_eq!(store.index(), 51);
    // The one held commit, then the 50 queued behind it together.
    assert_eq!(gate.appends.load(std::sync::atomic::Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_commit_fails_its_writes_and_leaves_no_trace() {
    let gate = Gate::default();
    let store = indexed(Box::new(gate.clone()));
    put(&store, &instance("web-1", "web"));
    gate.fail.store(true, std::sync::atomic::Ordering::SeqCst);
    let i = instance("web-2", "web");
    let failed = store
        .write(move |txn| txn.put(Table::Services, "web-2", &i))
        .await;
    assert!(matches!(failed, Err(StoreError::Backend(ref m)) if m.contains("disk full")));
    assert_eq!(named(&store, "web"), ["web-1"]);
    assert_eq!(store.index(), 1);
    gate.fail.store(false, std::sync::atomic::Ordering::SeqCst);
    // Later writes build on the durable state, not on the failed one.
    let i = instance("web-3", "web");
    store
        .write(move |txn| txn.put(Table::Services, "web-3", &i))
        .await
        .unwrap();
    assert_eq!(named(&store, "web"), ["web-1", "web-3"]);
    assert_eq!(store.index(), 2);
}

#[test]
fn index_values_are_the_distinct_values_and_change_only_at_first_and_last_row() {
    let store = indexed(Box::new(NoLog));
    let values = |store: &Store| {
        store
            .snapshot()
            .unwrap()
            .index_values(Table::Services, "name")
            .unwrap()
    };
    let values_index = |store: &Store| {
        let snap = store.recording_snapshot();
        snap.index_values(Table::Services, "name").unwrap();
        snap.watch_index()
    };
    put(&store, &instance("web-1", "web"));
    put(&store, &instance("db-1", "db"));
    assert_eq!(values(&store), ["db", "web"]);
    let before = values_index(&store);
    // A second instance of a known name: the set of names is unchanged.
    put(&store, &instance("web-2", "web"));
    assert_eq!(values_index(&store), before);
    // The last instance of db goes: db goes, and the set changed.
    store
        .write_blocking(|txn| txn.delete(Table::Services, "db-1"))
        .unwrap();
    assert_eq!(values(&store), ["web"]);
    assert!(values_index(&store) > before);
}

#[test]
fn deleted_rows_and_emptied_index_values_keep_the_index_of_their_deletion() {
    let store = indexed(Box::new(NoLog));
    put(&store, &instance("web-1", "web"));
    put(&store, &instance("db-1", "db"));
    let at = |store: &Store, key: WatchKey| store.snapshot().unwrap().changed_at(&key);
    let row = || WatchKey::Key(Table::Services, "web-1".into());
    let web = || WatchKey::Index(Table::Services, "name", "web".into());
    assert_eq!(at(&store, row()), 1);
    assert_eq!(at(&store, web()), 1);
    store
        .write_blocking(|txn| txn.delete(Table::Services, "web-1"))
        .unwrap();
    assert_eq!(at(&store, row()), 3);
    assert_eq!(at(&store, web()), 3);
    // Never written: the index at start-up stands in.
    assert_eq!(at(&store, WatchKey::Key(Table::Services, "nope".into())), 0);
    put(&store, &instance("web-1", "web"));
    assert_eq!(at(&store, row()), 4);
    assert_eq!(at(&store, web()), 4);
    // The db instance was not touched by any of it.
    assert_eq!(
        at(
            &store,
            WatchKey::Index(Table::Services, "name", "db".into())
        ),
        2
    );
}

mod model {
    //! The state against a plain model: any sequence of puts and deletes
    //! (in transactions of several writes, some failing midway) leaves
    //! rows, lookups and index values exactly as a `BTreeMap` says.

    use std::collections::{BTreeMap, BTreeSet};

    use proptest::prelude::*;

    use super::*;

    #[derive(Debug, Clone)]
    enum Write {
        Put { id: u8, name: u8 },
        Delete { id: u8 },
    }

    fn write() -> impl Strategy<Value = Write> {
        prop_oneof![
            (0u8..12, 0u8..4).prop_map(|(id, name)| Write::Put { id, name }),
            (0u8..12).prop_map(|id| Write::Delete { id }),
        ]
    }

    fn id(n: u8) -> String {
        format!("i{n:02}")
    }

    fn name(n: u8) -> String {
        // "a" is a prefix of "ab": index ranges must not mix them.
        ["a", "ab", "b", "c"][n as usize % 4].to_owned()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn rows_lookups_and_values_match_a_model(
            txns in proptest::collection::vec(
                (proptest::collection::vec(write(), 1..5), any::<bool>()),
                1..25,
            )
        ) {
            let store = indexed(Box::new(NoLog));
            let mut model: BTreeMap<String, String> = BTreeMap::new();
            for (writes, fail) in txns {
                let applied = writes.clone();
                let result: Result<(), StoreError> = store.write_blocking(move |txn| {
                    for w in &applied {
                        match w {
                            Write::Put { id: i, name: n } => {
                                txn.put(Table::Services, &id(*i), &instance(&id(*i), &name(*n)))?
                            }
                            Write::Delete { id: i } => {
                                txn.delete(Table::Services, &id(*i))?;
                            }
                        }
                    }
                    if fail {
                        return Err(StoreError::Backend("abandoned".into()));
                    }
                    Ok(())
                });
                prop_assert_eq!(result.is_err(), fail);
                if !fail {
                    for w in writes {
                        match w {
                            Write::Put { id: i, name: n } => {
                                model.insert(id(i), name(n));
                            }
                            Write::Delete { id: i } => {
                                model.remove(&id(i));
                            }
                        }
                    }
                }
                let snap = store.snapshot().unwrap();
                let rows: Vec<Instance> = snap.scan(Table::Services, "").unwrap();
                let got: BTreeMap<String, String> =
                    rows.into_iter().map(|i| (i.id, i.name)).collect();
                prop_assert_eq!(&got, &model);
                for n in 0..4 {
                    let wanted: Vec<String> = model
                        .iter()
                        .filter(|(_, v)| **v == name(n))
                        .map(|(k, _)| k.clone())
                        .collect();
                    prop_assert_eq!(named(&store, &name(n)), wanted);
                }
                let values: BTreeSet<String> = model.values().cloned().collect();
                let got_values = snap.index_values(Table::Services, "name").unwrap();
                prop_assert_eq!(got_values, values.into_iter().collect::<Vec<_>>());
            }
        }
    }
}
