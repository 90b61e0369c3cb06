//! A SQLite session's checkpoints, each written in one blocking call on a connection of its own.
//!
//! sqlx runs every SQLite connection on a worker thread, and each statement is a round trip to it: two thread
//! switches. A checkpoint is a transaction of five statements, written at every agent step, so the switches cost
//! more than SQLite's work (a profile of a 300-step run: the worker's context switches were 14 % of all samples,
//! `sqlite3VdbeExec` 1 %). Here the whole transaction runs in one call on the blocking pool: one hand-off a step.
//! The statements, the lease check and the merge rules are the sqlx path's ([`super`]), and the durability too:
//! WAL, `synchronous=FULL`, one commit (one sync) per checkpoint.

use std::path::Path;
use std::sync::Arc;
use std::sync::Mutex;

use codepilot_protocol::Message;
use rusqlite::Connection;
use rusqlite::OpenFlags;
use rusqlite::ToSql;
use rusqlite::TransactionBehavior;

use crate::Checkpoint;
use crate::Lease;
use crate::SessionId;
use crate::StoreError;
use crate::types::to_i64;
use crate::types::to_u64;

/// What a checkpoint came to.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Written {
    /// Stored (or, a stale re-send, nothing to store).
    Done,
    /// The lease no longer holds the session: nothing was written.
    LeaseLost,
}

/// The connection checkpoints are written on.
#[derive(Debug, Clone)]
pub(crate) struct StepWriter {
    conn: Arc<Mutex<Connection>>,
}

impl StepWriter {
    /// Opens the database file `path` (already created and migrated through sqlx) for checkpoints, with the pool's
    /// settings: busy timeout, `synchronous=FULL`, foreign keys.
    pub(crate) fn open(path: &Path) -> rusqlite::Result<Self> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(crate::SQLITE_BUSY_TIMEOUT)?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", true)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Writes `cp` under `lease`, as [`crate::SessionStore::checkpoint`] does.
    pub(crate) async fn checkpoint(
        &self,
        lease: &Lease,
        cp: &Checkpoint,
    ) -> crate::Result<Written> {
        let conn = Arc::clone(&self.conn);
        let id = lease.session().clone();
        let token = lease.token().to_owned();
        let cp = cp.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().map_err(|_| {
                StoreError::Config("the session database writer failed earlier".into())
            })?;
            write(&mut conn, &id, &token, &cp)
        })
        .await
        .map_err(|e| StoreError::Config(format!("the session database writer stopped: {e}")))?
    }
}

/// Binds `values` to `$1`, `$2`, … of `stmt` (by name: a parameter may be used twice, or out of order).
fn bind(stmt: &mut rusqlite::Statement<'_>, values: &[&dyn ToSql]) -> rusqlite::Result<()> {
    for (i, value) in values.iter().enumerate() {
        if let Some(index) = stmt.parameter_index(&format!("${}", i + 1))? {
            stmt.raw_bind_parameter(index, value)?;
        }
    }
    Ok(())
}

/// Runs `sql` with `values`; returns the rows changed.
fn execute(
    tx: &rusqlite::Transaction<'_>,
    sql: &str,
    values: &[&dyn ToSql],
) -> rusqlite::Result<usize> {
    let mut stmt = tx.prepare_cached(sql)?;
    bind(&mut stmt, values)?;
    stmt.raw_execute()
}

fn write(
    conn: &mut Connection,
    id: &SessionId,
    token: &str,
    cp: &Checkpoint,
) -> crate::Result<Written> {
    let now = crate::lease::now_secs();
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let stored: Option<i64> = {
        let mut stmt = tx.prepare_cached(super::TOUCH_OWNED)?;
        bind(&mut stmt, &[&id.as_str(), &now, &token])?;
        stmt.raw_query().next()?.map(|row| row.get(0)).transpose()?
    };
    let Some(stored) = stored else {
        return Ok(Written::LeaseLost);
    };
    let stored = to_u64(stored);
    let range = crate::types::overlap_range(stored, cp);
    let overlap = if range.is_empty() {
        Vec::new()
    } else {
        let mut stmt = tx.prepare_cached(super::SELECT_MESSAGES)?;
        bind(
            &mut stmt,
            &[&id.as_str(), &to_i64(range.start), &to_i64(range.end)],
        )?;
        let mut rows = stmt.raw_query();
        let mut messages = Vec::new();
        while let Some(row) = rows.next()? {
            let role: String = row.get("role")?;
            let content: String = row.get("content")?;
            let encoding: String = row.get("encoding")?;
            messages.push(Message {
                role: super::parse_role(id, &role)?,
                content: super::decode_content(id, content, &encoding)?,
            });
        }
        messages
    };
    let plan = crate::types::plan_merge(id, stored, &overlap, cp)?;
    if !plan.update_counters {
        return Ok(Written::Done); // dropping `tx` rolls back the touch
    }
    let mut seq = to_i64(stored);
    for m in cp.messages.get(plan.skip..).unwrap_or(&[]) {
        let (content, encoding) = super::encode_content(&m.content);
        execute(
            &tx,
            super::INSERT_MESSAGE,
            &[
                &id.as_str(),
                &seq,
                &m.role.as_str(),
                &content.as_ref(),
                &encoding,
                &now,
            ],
        )?;
        seq = seq.saturating_add(1);
    }
    let title = cp.title.as_deref().map(|t| super::no_nul(t).into_owned());
    let archives = super::encode_archives(cp.archives.as_deref())?;
    execute(
        &tx,
        super::UPDATE_COUNTERS,
        &[
            &id.as_str(),
            &seq,
            &to_i64(cp.task_counter),
            &to_i64(cp.usage.input_tokens),
            &to_i64(cp.usage.output_tokens),
            &to_i64(cp.usage.cache_read_tokens),
            &to_i64(cp.usage.cache_write_tokens),
            &to_i64(cp.usage.calls),
            &title,
            &now,
            &archives,
            &to_i64(cp.usage.reasoning_tokens),
        ],
    )?;
    for answer in &cp.answers {
        execute(
            &tx,
            super::UPSERT_ANSWER,
            &[
                &id.as_str(),
                &to_i64(answer.index),
                &super::no_nul(&answer.content).as_ref(),
            ],
        )?;
    }
    tx.commit()?;
    Ok(Written::Done)
}
