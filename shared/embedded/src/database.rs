//! The SQLite file shared by the table and the queue.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use anyhow::Context;
use rusqlite::Connection;

/// One connection behind a mutex: every port operation is a short transaction, so a single
/// writer is both simplest and fastest (SQLite serializes writers anyway).
#[derive(Clone)]
pub struct Database {
    connection: Arc<Mutex<Connection>>,
}

impl Database {
    /// Opens (or creates) the database file, readable and writable by its owner only: it holds
    /// every label and member list. SQLite gives its journal files the database's mode.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        crate::private_file::create_or_restrict(path)
            .with_context(|| format!("creating the database {}", path.display()))?;
        let connection = Connection::open(path)
            .with_context(|| format!("opening the database {}", path.display()))?;
        Self::init(connection)
    }

    pub fn in_memory() -> anyhow::Result<Self> {
        Self::init(Connection::open_in_memory().context("opening an in-memory database")?)
    }

    fn init(connection: Connection) -> anyhow::Result<Self> {
        // WAL with synchronous=NORMAL: a committed transaction survives a process crash; only
        // an OS crash or power loss can lose the last moments. The exclusive locking mode takes
        // the file lock once instead of on every transaction (one process owns the data
        // directory; a second `labeling serve` on it is refused as "database is locked").
        connection
            .execute_batch(
                "PRAGMA locking_mode = EXCLUSIVE;
                 PRAGMA journal_mode = WAL;
                 PRAGMA wal_autocheckpoint = 2000;
                 PRAGMA synchronous = NORMAL;
                 PRAGMA busy_timeout = 5000;
                 CREATE TABLE IF NOT EXISTS items (
                     pk TEXT NOT NULL,
                     sk TEXT NOT NULL,
                     attrs TEXT NOT NULL,
                     PRIMARY KEY (pk, sk)
                 ) WITHOUT ROWID;
                 CREATE TABLE IF NOT EXISTS messages (
                     id TEXT PRIMARY KEY,
                     queue TEXT NOT NULL,
                     body TEXT NOT NULL,
                     visible_at INTEGER NOT NULL,
                     receipt TEXT,
                     receive_count INTEGER NOT NULL DEFAULT 0,
                     sent_at INTEGER NOT NULL
                 );
                 CREATE INDEX IF NOT EXISTS messages_by_visibility ON messages (queue, visible_at);",
            )
            .context("creating the schema")?;
        // Every statement the adapters run stays prepared.
        connection.set_prepared_statement_cache_capacity(64);
        Ok(Self {
            connection: Arc::new(Mutex::new(connection)),
        })
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Connection> {
        self.connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}
