//! The `Table` port on SQLite: conditions are evaluated inside the same SQLite transaction as
//! the write, so they are exactly as atomic as DynamoDB's.

use async_trait::async_trait;
use labeling_core::ports::table::{
    MAX_BATCH_GET, MAX_QUERY_PAGE_BYTES, check_item_size, check_transaction,
};
use labeling_core::ports::{
    Attrs, Condition, Item, Key, Page, Query, SkRange, Table, TableError, Update, Write,
};
use rusqlite::{Connection, OptionalExtension, params};

use crate::Database;

pub struct SqliteTable {
    database: Database,
}

impl SqliteTable {
    pub fn new(database: Database) -> Self {
        Self { database }
    }
}

fn unavailable(error: impl std::error::Error + Send + Sync + 'static) -> TableError {
    TableError::Unavailable(Box::new(error))
}

fn read(connection: &Connection, key: &Key) -> Result<Option<Attrs>, TableError> {
    let text: Option<String> = connection
        .prepare_cached("SELECT attrs FROM items WHERE pk = ?1 AND sk = ?2")
        .map_err(unavailable)?
        .query_row(params![key.pk, key.sk], |row| row.get(0))
        .optional()
        .map_err(unavailable)?;
    text.map(|text| serde_json::from_str(&text).map_err(unavailable))
        .transpose()
}

fn write_attrs(connection: &Connection, key: &Key, attrs: &Attrs) -> Result<(), TableError> {
    let text = serde_json::to_string(attrs).map_err(unavailable)?;
    connection
        .prepare_cached("INSERT OR REPLACE INTO items (pk, sk, attrs) VALUES (?1, ?2, ?3)")
        .map_err(unavailable)?
        .execute(params![key.pk, key.sk, text])
        .map_err(unavailable)?;
    Ok(())
}

fn remove(connection: &Connection, key: &Key) -> Result<(), TableError> {
    connection
        .prepare_cached("DELETE FROM items WHERE pk = ?1 AND sk = ?2")
        .map_err(unavailable)?
        .execute(params![key.pk, key.sk])
        .map_err(unavailable)?;
    Ok(())
}

fn condition_holds(condition: Option<&Condition>, current: Option<&Attrs>) -> bool {
    condition.is_none_or(|c| c.holds(current))
}

/// Applies one write inside an open transaction; returns the item after it (for updates).
fn apply(
    connection: &Connection,
    write: &Write,
    index: usize,
) -> Result<Option<Attrs>, TableError> {
    // Unconditional puts and deletes do not need the current item.
    match write {
        Write::Put {
            item,
            condition: None,
        } => {
            write_attrs(connection, &item.key, &item.attrs)?;
            return Ok(Some(item.attrs.clone()));
        }
        Write::Delete {
            key,
            condition: None,
        } => {
            remove(connection, key)?;
            return Ok(None);
        }
        _ => {}
    }
    let current = read(connection, write.key())?;
    let failed = TableError::ConditionFailed { index };
    match write {
        Write::Put { item, condition } => {
            if !condition_holds(condition.as_ref(), current.as_ref()) {
                return Err(failed);
            }
            write_attrs(connection, &item.key, &item.attrs)?;
            Ok(Some(item.attrs.clone()))
        }
        Write::Update {
            key,
            update,
            condition,
        } => {
            if !condition_holds(condition.as_ref(), current.as_ref()) {
                return Err(failed);
            }
            let after = update.apply(current.as_ref());
            check_item_size(&Item::new(key.clone(), after.clone()))?;
            write_attrs(connection, key, &after)?;
            Ok(Some(after))
        }
        Write::Delete { key, condition } => {
            if !condition_holds(condition.as_ref(), current.as_ref()) {
                return Err(failed);
            }
            remove(connection, key)?;
            Ok(None)
        }
        Write::Check { condition, .. } => {
            if !condition.holds(current.as_ref()) {
                return Err(failed);
            }
            Ok(current)
        }
    }
}

/// Runs `writes` atomically: a single write is one statement (atomic by itself, and the
/// connection mutex keeps its read-check-write free of interleaving); several run inside one
/// SQLite transaction, all or nothing. Statements are cached, so no SQL is parsed per call.
fn transact(connection: &mut Connection, writes: &[Write]) -> Result<Option<Attrs>, TableError> {
    if let [write] = writes {
        return apply(connection, write, 0);
    }
    run_cached(connection, "BEGIN IMMEDIATE")?;
    let mut last = None;
    for (index, write) in writes.iter().enumerate() {
        match apply(connection, write, index) {
            Ok(after) => last = after,
            Err(error) => {
                run_cached(connection, "ROLLBACK")?;
                return Err(error);
            }
        }
    }
    if let Err(error) = run_cached(connection, "COMMIT") {
        let _ = run_cached(connection, "ROLLBACK");
        return Err(error);
    }
    Ok(last)
}

fn run_cached(connection: &Connection, sql: &str) -> Result<(), TableError> {
    connection
        .prepare_cached(sql)
        .map_err(unavailable)?
        .execute([])
        .map_err(unavailable)?;
    Ok(())
}

#[async_trait]
impl Table for SqliteTable {
    async fn get(&self, key: &Key) -> Result<Option<Item>, TableError> {
        let connection = self.database.lock();
        Ok(read(&connection, key)?.map(|attrs| Item::new(key.clone(), attrs)))
    }

    async fn batch_get(&self, keys: &[Key]) -> Result<Vec<Item>, TableError> {
        if keys.len() > MAX_BATCH_GET {
            return Err(TableError::TooManyWrites(keys.len()));
        }
        // DynamoDB answers a key given twice once.
        let keys: std::collections::BTreeSet<&Key> = keys.iter().collect();
        let connection = self.database.lock();
        let mut items = Vec::with_capacity(keys.len());
        for key in keys {
            if let Some(attrs) = read(&connection, key)? {
                items.push(Item::new(key.clone(), attrs));
            }
        }
        Ok(items)
    }

    async fn put(&self, item: Item, condition: Option<Condition>) -> Result<(), TableError> {
        check_item_size(&item)?;
        let mut connection = self.database.lock();
        transact(&mut connection, &[Write::Put { item, condition }]).map(|_| ())
    }

    async fn update(
        &self,
        key: &Key,
        update: Update,
        condition: Option<Condition>,
    ) -> Result<Item, TableError> {
        let mut connection = self.database.lock();
        let write = Write::Update {
            key: key.clone(),
            update,
            condition,
        };
        let attrs = transact(&mut connection, std::slice::from_ref(&write))?.unwrap_or_default();
        Ok(Item::new(key.clone(), attrs))
    }

    async fn delete(&self, key: &Key, condition: Option<Condition>) -> Result<(), TableError> {
        let mut connection = self.database.lock();
        transact(
            &mut connection,
            &[Write::Delete {
                key: key.clone(),
                condition,
            }],
        )
        .map(|_| ())
    }

    async fn transact(&self, writes: Vec<Write>) -> Result<(), TableError> {
        check_transaction(&writes)?;
        let mut connection = self.database.lock();
        transact(&mut connection, &writes).map(|_| ())
    }

    async fn query(&self, query: Query) -> Result<Page, TableError> {
        let (low, high) = match &query.range {
            SkRange::All => (String::new(), None),
            SkRange::BeginsWith(prefix) => (prefix.clone(), prefix_end(prefix)),
            SkRange::LessThan(bound) => (String::new(), Some(bound.clone())),
            SkRange::Between(low, high) => (low.clone(), Some(format!("{high}\u{0}"))),
        };
        let low = match &query.start_after {
            Some(after) => format!("{after}\u{0}").max(low),
            None => low,
        };
        // One fixed statement per shape: a bound value tested in SQL (`?3 IS NULL`) makes
        // SQLite re-plan the statement on every run.
        let limit = query.limit.max(1);
        let fetch = (limit + 1) as i64;
        let connection = self.database.lock();
        let collect =
            |rows: rusqlite::MappedRows<'_, _>| rows.collect::<Result<Vec<(String, String)>, _>>();
        let read_row =
            |row: &rusqlite::Row<'_>| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?));
        let rows = match high {
            Some(high) => {
                let sql = "SELECT sk, attrs FROM items WHERE pk = ?1 AND sk >= ?2 AND sk < ?3 ORDER BY sk LIMIT ?4";
                let mut statement = connection.prepare_cached(sql).map_err(unavailable)?;
                let rows = statement
                    .query_map(params![query.pk, low, high, fetch], read_row)
                    .map_err(unavailable)?;
                collect(rows)
            }
            None => {
                let sql = "SELECT sk, attrs FROM items WHERE pk = ?1 AND sk >= ?2 ORDER BY sk LIMIT ?3";
                let mut statement = connection.prepare_cached(sql).map_err(unavailable)?;
                let rows = statement
                    .query_map(params![query.pk, low, fetch], read_row)
                    .map_err(unavailable)?;
                collect(rows)
            }
        }
        .map_err(unavailable)?;
        drop(connection);
        let mut page = Page::default();
        let mut bytes = 0usize;
        for (sk, text) in rows {
            if !query.range.contains(&sk) {
                continue;
            }
            let attrs: Attrs = serde_json::from_str(&text).map_err(unavailable)?;
            let item = Item::new(Key::new(query.pk.clone(), sk), attrs);
            // The item that would take the page past 1 MB starts the next page, as on DynamoDB.
            let size = item.size_bytes();
            if page.items.len() == limit
                || (!page.items.is_empty() && bytes + size > MAX_QUERY_PAGE_BYTES)
            {
                page.last_evaluated = page.items.last().map(|item| item.key.sk.clone());
                break;
            }
            bytes += size;
            page.items.push(item);
        }
        Ok(page)
    }
}

/// The smallest string greater than every string starting with `prefix`.
fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        if let Some(next) = char::from_u32(last as u32 + 1) {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}
