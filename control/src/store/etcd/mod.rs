//! The cluster's state in etcd v3, shared by every agent of the cluster.
//!
//! Rows live under the cluster's prefix ([`keys`]); the cluster's index
//! (`X-Consul-Index`) is a row of its own that every write transaction
//! compares and bumps, so writes from all agents form one order and each
//! record's `ModifyIndex` is known before it commits. etcd's revision is
//! not used as the index: leases and elections share it, so the revision a
//! write will get cannot be known in advance.
//!
//! The client runs on a runtime of its own (one thread), so the store's
//! blocking start-up writes can wait for it from anywhere.

mod follow;
pub mod keys;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, GetOptions, Identity, TlsOptions, Txn,
    TxnOp,
};

use super::log::{Op, RowSink};
use super::shared_log::{Applier, CommitDone, SharedLog};
use super::{encode_index, StoreError, Table, GLOBAL_INDEX_KEY};
pub use keys::EtcdKeys;

/// How long a committed write may take to come back through this agent's
/// watch before the writer is told something is wrong.
const APPLY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a write waits for etcd's answer before it is told etcd is
/// unreachable (the write may still commit; its watch would then bring it).
const COMMIT_TIMEOUT: Duration = Duration::from_secs(10);
/// Rows per page when reading the whole state.
const PAGE: i64 = 1000;
/// etcd's default cap on operations in one transaction (`--max-txn-ops`).
const ETCD_DEFAULT_MAX_TXN_OPS: usize = 128;

/// Where the cluster's etcd is and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdSettings {
    /// `http://host:port` or `https://host:port`, one per etcd member.
    pub endpoints: Vec<String>,
    /// Every key of the cluster starts with this (no trailing slash).
    pub prefix: String,
    pub tls: Option<EtcdTls>,
}

/// TLS to etcd: the CA that signed etcd's certificates, and a client
/// certificate when etcd requires one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdTls {
    pub ca_file: PathBuf,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

fn etcd_err(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("etcd: {what}: {e}"))
}

/// The shared log in etcd.
pub struct EtcdLog {
    /// `None` only while dropping.
    runtime: Option<tokio::runtime::Runtime>,
    client: Client,
    keys: EtcdKeys,
    index_key: String,
    /// The etcd revision the state was read at; the follower watches from
    /// the next one.
    read_revision: Arc<AtomicI64>,
    applier: OnceLock<Applier>,
}

impl Drop for EtcdLog {
    fn drop(&mut self) {
        // Dropping a runtime from async code would panic.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl EtcdLog {
    /// Connects to etcd as agent `node` (blocking; for start-up).
    pub fn connect(settings: &EtcdSettings, node: &str) -> Result<Arc<EtcdLog>, StoreError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("etcd")
            .enable_all()
            .build()
            .map_err(|e| etcd_err("starting its client thread", e))?;
        let options = connect_options(settings)?;
        let endpoints = settings.endpoints.clone();
        let client = run_on(&runtime, async move {
            Client::connect(endpoints, Some(options)).await
        })
        .map_err(|e| etcd_err("connecting", e))?;
        let keys = EtcdKeys::new(&settings.prefix, node);
        let index_key = keys.key(Table::Meta, GLOBAL_INDEX_KEY);
        let log = EtcdLog {
            runtime: Some(runtime),
            client,
            keys,
            index_key,
            read_revision: Arc::new(AtomicI64::new(0)),
            applier: OnceLock::new(),
        };
        // Fail at start-up, with the reason, when etcd is not there.
        let mut client = log.client.clone();
        log.run(async move { client.status().await })
            .map_err(|e| etcd_err("asking for its status", e))?;
        Ok(Arc::new(log))
    }

    fn handle(&self) -> &tokio::runtime::Handle {
        self.runtime
            .as_ref()
            .expect("running until dropped")
            .handle()
    }

    /// Runs `fut` on the client's runtime and waits for it (blocking).
    fn run<T: Send + 'static>(
        &self,
        fut: impl std::future::Future<Output = T> + Send + 'static,
    ) -> T {
        run_on(self.runtime.as_ref().expect("running until dropped"), fut)
    }

    /// A handle for other etcd work of this agent (membership, election).
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// The runtime the client runs on, for tasks that use [`EtcdLog::client`].
    pub fn runtime(&self) -> tokio::runtime::Handle {
        self.handle().clone()
    }

    fn txn_ops(&self, ops: Vec<Op>) -> Vec<TxnOp> {
        // etcd refuses a transaction that names a key twice; a later
        // change to a key replaces an earlier one.
        let mut last: HashMap<String, usize> = HashMap::new();
        let mut keyed = Vec::with_capacity(ops.len());
        for op in ops {
            let key = match &op {
                Op::Put { table, key, .. } | Op::Delete { table, key } => {
                    self.keys.key(*table, key)
                }
            };
            last.insert(key.clone(), keyed.len());
            keyed.push((key, op));
        }
        keyed
            .into_iter()
            .enumerate()
            .filter(|(i, (key, _))| last.get(key) == Some(i))
            .map(|(_, (key, op))| match op {
                Op::Put { bytes, .. } => TxnOp::put(key, bytes, None),
                Op::Delete { .. } => TxnOp::delete(key, None),
            })
            .collect()
    }
}

fn run_on<T: Send + 'static>(
    runtime: &tokio::runtime::Runtime,
    fut: impl std::future::Future<Output = T> + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    runtime.spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv()
        .expect("the etcd runtime runs until the log is dropped")
}

fn connect_options(settings: &EtcdSettings) -> Result<ConnectOptions, StoreError> {
    let mut options = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(5))
        .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5))
        .with_keep_alive_while_idle(true);
    if let Some(tls) = &settings.tls {
        let read = |path: &PathBuf| {
            std::fs::read(path).map_err(|e| etcd_err(&format!("reading {}", path.display()), e))
        };
        let mut config =
            TlsOptions::new().ca_certificate(Certificate::from_pem(read(&tls.ca_file)?));
        match (&tls.cert_file, &tls.key_file) {
            (Some(cert), Some(key)) => {
                config = config.identity(Identity::from_pem(read(cert)?, read(key)?));
            }
            (None, None) => {}
            _ => {
                return Err(StoreError::Backend(
                    "etcd: a client certificate needs both --etcd-cert-file and --etcd-key-file"
                        .into(),
                ))
            }
        }
        options = options.with_tls(config);
    }
    Ok(options)
}

/// Reads every row under the cluster's prefix as of one revision (page by
/// page, every page at that revision) and returns the revision.
async fn read_all(
    mut client: Client,
    keys: EtcdKeys,
    mut row: impl FnMut(Table, &str, &[u8]) -> Result<(), StoreError>,
) -> Result<i64, StoreError> {
    let prefix = keys.data_prefix().to_owned();
    let end = EtcdKeys::range_end(&prefix);
    let mut from = prefix.clone().into_bytes();
    let mut revision = 0;
    loop {
        let mut options = GetOptions::new().with_range(end.clone()).with_limit(PAGE);
        if revision > 0 {
            options = options.with_revision(revision);
        }
        let response = client
            .get(from.clone(), Some(options))
            .await
            .map_err(|e| etcd_err("reading the cluster's state", e))?;
        if revision == 0 {
            revision = response.header().map(|h| h.revision()).unwrap_or_default();
        }
        for kv in response.kvs() {
            let Ok(key) = kv.key_str() else { continue };
            if let Some((table, key)) = keys.row(key) {
                row(table, &key, kv.value())?;
            }
        }
        match response.kvs().last() {
            Some(last) if response.more() => {
                from = last.key().to_vec();
                from.push(0);
            }
            _ => return Ok(revision),
        }
    }
}

impl SharedLog for EtcdLog {
    fn load(&self, row: &mut RowSink<'_>) -> Result<(), StoreError> {
        // Rows are collected on the client's runtime and handed over here:
        // `row` is not Send.
        let client = self.client.clone();
        let keys = self.keys.clone();
        let (rows, revision) = self.run(async move {
            let mut rows = Vec::new();
            let revision = read_all(client, keys, |table, key, bytes| {
                rows.push((table, key.to_owned(), bytes.to_vec()));
                Ok(())
            })
            .await?;
            Ok::<_, StoreError>((rows, revision))
        })?;
        for (table, key, bytes) in rows {
            row(table, &key, &bytes)?;
        }
        self.read_revision.store(revision, Ordering::SeqCst);
        Ok(())
    }

    fn follow(&self, applier: Applier) {
        if self.applier.set(applier.clone()).is_err() {
            return;
        }
        let follower = follow::Follower {
            client: self.client.clone(),
            keys: self.keys.clone(),
            index_key: self.index_key.clone(),
            applier,
            next_revision: self.read_revision.load(Ordering::SeqCst) + 1,
        };
        self.handle().spawn(follower.run());
    }

    fn commit(&self, expected: u64, ops: Vec<Op>, done: CommitDone) {
        let Some(applier) = self.applier.get().cloned() else {
            done(Err(StoreError::Task(
                "the etcd log is not following yet".into(),
            )));
            return;
        };
        let ops = self.txn_ops(ops);
        if ops.len() > ETCD_DEFAULT_MAX_TXN_OPS {
            tracing::debug!(
                ops = ops.len(),
                "a write larger than etcd's default --max-txn-ops (128); etcd must allow it"
            );
        }
        let compare = if expected == 0 {
            Compare::version(self.index_key.clone(), CompareOp::Equal, 0)
        } else {
            Compare::value(
                self.index_key.clone(),
                CompareOp::Equal,
                encode_index(expected),
            )
        };
        let txn = Txn::new().when(vec![compare]).and_then(ops);
        let mut client = self.client.clone();
        self.handle().spawn(async move {
            let answered = tokio::time::timeout(COMMIT_TIMEOUT, client.txn(txn)).await;
            let result = match answered {
                Err(_) => Err(StoreError::Backend(format!(
                    "etcd: committing a write: no answer within {}s",
                    COMMIT_TIMEOUT.as_secs()
                ))),
                Ok(Ok(response)) if response.succeeded() => {
                    if applier.wait_for(expected + 1, APPLY_TIMEOUT).await {
                        Ok(())
                    } else {
                        Err(StoreError::Backend(format!(
                            "etcd committed the write, but this agent did not see it within {}s",
                            APPLY_TIMEOUT.as_secs()
                        )))
                    }
                }
                Ok(Ok(_)) => {
                    // Run again once the write that won is applied here.
                    if applier.wait_for(expected + 1, APPLY_TIMEOUT).await {
                        Err(StoreError::Conflict)
                    } else {
                        Err(StoreError::Backend(
                            "another agent's write committed first and has not reached this agent"
                                .into(),
                        ))
                    }
                }
                Ok(Err(e)) => Err(etcd_err("committing a write", e)),
            };
            done(result);
        });
    }
}
