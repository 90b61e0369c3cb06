//! SQL store for SQLite and PostgreSQL: one implementation and one SQL text, instantiated per driver.
//!
//! The schema (`migrations/`) uses only TEXT and BIGINT so it is portable. Every write runs in one
//! transaction whose first statement locks the session row (`UPDATE … WHERE id = $1`; on SQLite the
//! transaction is `BEGIN IMMEDIATE`), so concurrent writers of one session are serialised and a lease check
//! and the write it guards are atomic.

pub(crate) mod step_writer;

use std::borrow::Cow;

use sqlx::AssertSqlSafe;
use sqlx::SqlSafeStr;
use sqlx::migrate::Migration;
use sqlx::migrate::MigrationType;
use sqlx::migrate::Migrator;

/// How often a schema migration is tried before its error is reported.
pub(crate) const MIGRATE_ATTEMPTS: u32 = 8;

/// The pause before retry `n` is `n` times this.
pub(crate) const RETRY_PAUSE: std::time::Duration = std::time::Duration::from_millis(50);

/// Whether a database error is SQLite's "database is locked" (`SQLITE_BUSY`), which it reports without waiting
/// in some cases (a journal-mode change while another process creates the same file), so the caller should
/// try again.
pub(crate) fn is_busy(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => {
            db.code().is_some_and(|c| c == "5" || c == "517")
                || db.message().contains("database is locked")
        }
        _ => false,
    }
}

/// The embedded schema migrations (SQL shipped in the binary).
pub(crate) fn migrator() -> Migrator {
    Migrator::with_migrations(vec![
        Migration::new(
            1,
            Cow::Borrowed("sessions"),
            MigrationType::Simple,
            AssertSqlSafe(include_str!("../migrations/0001_sessions.sql")).into_sql_str(),
            false,
        ),
        Migration::new(
            2,
            Cow::Borrowed("archives"),
            MigrationType::Simple,
            AssertSqlSafe(include_str!("../migrations/0002_archives.sql")).into_sql_str(),
            false,
        ),
        Migration::new(
            3,
            Cow::Borrowed("events"),
            MigrationType::Simple,
            AssertSqlSafe(include_str!("../migrations/0003_events.sql")).into_sql_str(),
            false,
        ),
        Migration::new(
            4,
            Cow::Borrowed("snapshots"),
            MigrationType::Simple,
            AssertSqlSafe(include_str!("../migrations/0004_snapshots.sql")).into_sql_str(),
            false,
        ),
        Migration::new(
            5,
            Cow::Borrowed("agent source"),
            MigrationType::Simple,
            AssertSqlSafe(include_str!("../migrations/0005_agent_source.sql")).into_sql_str(),
            false,
        ),
        Migration::new(
            6,
            Cow::Borrowed("reasoning tokens"),
            MigrationType::Simple,
            AssertSqlSafe(include_str!("../migrations/0006_reasoning_tokens.sql")).into_sql_str(),
            false,
        ),
        Migration::new(
            7,
            Cow::Borrowed("answers"),
            MigrationType::Simple,
            AssertSqlSafe(include_str!("../migrations/0007_answers.sql")).into_sql_str(),
            false,
        ),
    ])
}

const INSERT_SESSION: &str = "INSERT INTO sessions (id, agent_name, created_at, updated_at) \
     VALUES ($1, $2, $3, $3) ON CONFLICT (id) DO NOTHING";
const LOCK_ROW: &str = "UPDATE sessions SET lease_token = lease_token WHERE id = $1";
const SELECT_SESSION: &str = "SELECT id, agent_name, title, created_at, updated_at, task_counter, \
     message_count, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, reasoning_tokens, calls, \
     lease_token, lease_pid, lease_host, lease_acquired_at, lease_expires_at, archives, snapshot, agent_source \
     FROM sessions WHERE id = $1";
const LIST_SESSIONS: &str = "SELECT id, agent_name, title, created_at, updated_at, task_counter, \
     message_count, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, reasoning_tokens, calls, \
     lease_token, lease_pid, lease_host, lease_acquired_at, lease_expires_at, snapshot, agent_source \
     FROM sessions ORDER BY updated_at DESC, created_at DESC, id ASC";
const SET_LEASE: &str = "UPDATE sessions SET lease_token = $2, lease_pid = $3, lease_host = $4, \
     lease_acquired_at = $5, lease_expires_at = $6 WHERE id = $1";
pub(crate) const SELECT_MESSAGES: &str = "SELECT role, content, encoding FROM messages \
     WHERE session_id = $1 AND seq >= $2 AND seq < $3 ORDER BY seq";
/// Touches the session row when `lease_token` still holds it; returns its `message_count` (no row: the lease is lost).
pub(crate) const TOUCH_OWNED: &str = "UPDATE sessions SET updated_at = $2 WHERE id = $1 AND lease_token = $3 RETURNING message_count";
pub(crate) const UPDATE_COUNTERS: &str = "UPDATE sessions SET message_count = $2, task_counter = $3, \
     input_tokens = $4, output_tokens = $5, cache_read_tokens = $6, cache_write_tokens = $7, calls = $8, \
     title = COALESCE($9, title), updated_at = $10, archives = COALESCE($11, archives), reasoning_tokens = $12 \
     WHERE id = $1";
/// One message (the SQLite step writer's, [`step_writer`]; the sqlx path inserts many rows at once).
pub(crate) const INSERT_MESSAGE: &str = "INSERT INTO messages (session_id, seq, role, content, encoding, created_at) \
     VALUES ($1, $2, $3, $4, $5, $6)";
const DELETE_MESSAGES_FROM: &str = "DELETE FROM messages WHERE session_id = $1 AND seq >= $2";
const SET_HISTORY: &str =
    "UPDATE sessions SET message_count = $2, archives = $3, updated_at = $4 WHERE id = $1";
const SET_SNAPSHOT: &str = "UPDATE sessions SET snapshot = $2 WHERE id = $1";
/// Not through `begin_owned`: recording the agent does not make the session "updated".
const SET_AGENT_SOURCE: &str =
    "UPDATE sessions SET agent_source = $2 WHERE id = $1 AND lease_token = $3";
const RENEW: &str = "UPDATE sessions SET lease_expires_at = $3 WHERE id = $1 AND lease_token = $2";
const RELEASE: &str = "UPDATE sessions SET lease_token = '', lease_pid = 0, lease_host = '', \
     lease_acquired_at = 0, lease_expires_at = 0 WHERE id = $1 AND lease_token = $2";
const DELETE_MESSAGES: &str = "DELETE FROM messages WHERE session_id = $1";
const DELETE_SESSION: &str = "DELETE FROM sessions WHERE id = $1";
const DELETE_EVENTS: &str = "DELETE FROM events WHERE session_id = $1";
const INSERT_EVENT: &str = "INSERT INTO events (session_id, seq, body) VALUES ($1, $2, $3) ON CONFLICT (session_id, seq) DO NOTHING";
const SELECT_EVENTS: &str =
    "SELECT seq, body FROM events WHERE session_id = $1 AND seq > $2 ORDER BY seq LIMIT $3";
const SELECT_LAST_EVENT: &str = "SELECT COALESCE(MAX(seq), 0) FROM events WHERE session_id = $1";
pub(crate) const UPSERT_ANSWER: &str = "INSERT INTO answers (session_id, idx, content) VALUES ($1, $2, $3) \
     ON CONFLICT (session_id, idx) DO UPDATE SET content = excluded.content";
const SELECT_ANSWERS: &str = "SELECT idx, content FROM answers WHERE session_id = $1 ORDER BY idx";
const DELETE_ANSWERS_FROM: &str = "DELETE FROM answers WHERE session_id = $1 AND idx >= $2";
const DELETE_ANSWERS: &str = "DELETE FROM answers WHERE session_id = $1";

/// The `archives` column's text for a checkpoint: `None` keeps the stored list.
pub(crate) fn encode_archives(
    archives: Option<&[codepilot_protocol::ArchiveEntry]>,
) -> crate::Result<Option<String>> {
    match archives {
        None => Ok(None),
        Some([]) => Ok(Some(String::new())),
        Some(list) => {
            let json = serde_json::to_string(list)
                .map_err(|e| crate::StoreError::Encode(format!("the session's archives: {e}")))?;
            Ok(Some(no_nul(&json).into_owned()))
        }
    }
}

/// Reads the `archives` column ('' is none).
pub(crate) fn decode_archives(
    session: &crate::SessionId,
    text: &str,
) -> crate::Result<Vec<codepilot_protocol::ArchiveEntry>> {
    if text.is_empty() {
        return Ok(Vec::new());
    }
    serde_json::from_str(text).map_err(|e| crate::StoreError::CorruptRow {
        session: session.clone(),
        reason: format!("the archives column is not a list of archives: {e}"),
    })
}

/// Rows per multi-row INSERT (6 parameters each, well under SQLite's and Postgres' limits).
const INSERT_CHUNK: usize = 200;

/// `INSERT INTO messages … VALUES ($1..$6), ($7..$12), …` for `rows` rows.
fn insert_messages_sql(rows: usize) -> String {
    use std::fmt::Write as _;
    let mut sql = String::from(
        "INSERT INTO messages (session_id, seq, role, content, encoding, created_at) VALUES ",
    );
    for r in 0..rows {
        let b = r * 6;
        if r > 0 {
            sql.push_str(", ");
        }
        let _ = write!(
            sql,
            "(${}, ${}, ${}, ${}, ${}, ${})",
            b + 1,
            b + 2,
            b + 3,
            b + 4,
            b + 5,
            b + 6
        );
    }
    sql
}

/// Content as stored, and its `encoding`: text holding NUL is stored as a JSON string literal.
pub(crate) fn encode_content(content: &str) -> (Cow<'_, str>, &'static str) {
    if content.contains('\0') {
        match serde_json::to_string(content) {
            Ok(json) => (Cow::Owned(json), "json"),
            // Serialising a &str cannot fail; keep the text (Postgres would then report the NUL).
            Err(_) => (Cow::Borrowed(content), ""),
        }
    } else {
        (Cow::Borrowed(content), "")
    }
}

pub(crate) fn decode_content(
    session: &crate::SessionId,
    content: String,
    encoding: &str,
) -> crate::Result<String> {
    match encoding {
        "" => Ok(content),
        "json" => serde_json::from_str(&content).map_err(|e| crate::StoreError::CorruptRow {
            session: session.clone(),
            reason: format!("message content is not a JSON string: {e}"),
        }),
        other => Err(crate::StoreError::CorruptRow {
            session: session.clone(),
            reason: format!("unknown content encoding {other:?}"),
        }),
    }
}

/// Text for a TEXT column that is not message content: NUL characters are dropped.
pub(crate) fn no_nul(text: &str) -> Cow<'_, str> {
    if text.contains('\0') {
        Cow::Owned(text.replace('\0', ""))
    } else {
        Cow::Borrowed(text)
    }
}

pub(crate) fn parse_role(
    session: &crate::SessionId,
    role: &str,
) -> crate::Result<codepilot_protocol::Role> {
    match role {
        "user" => Ok(codepilot_protocol::Role::User),
        "assistant" => Ok(codepilot_protocol::Role::Assistant),
        other => Err(crate::StoreError::CorruptRow {
            session: session.clone(),
            reason: format!("unknown message role {other:?}"),
        }),
    }
}

/// The lease columns of a session row.
struct RowLease {
    token: String,
    holder: crate::LeaseHolder,
    expires_at_ms: i64,
}

/// Generates a `SessionStore` over one sqlx driver. Where it expands, `begin(&pool)` must be in scope, and
/// `open_writer(&pool)` and `write_checkpoint(&writer, lease, cp)` for `$writer`, which may write checkpoints its own
/// way (`None` from `write_checkpoint`: through sqlx).
macro_rules! sql_store {
    ($(#[$doc:meta])* $name:ident, $pool:ty, $row:ty, $db:ty, $writer:ty) => {
        $(#[$doc])*
        #[derive(Debug, Clone)]
        pub struct $name {
            pool: $pool,
            opts: $crate::StoreOptions,
            writer: $writer,
        }

        impl $name {
            /// Wraps `pool` after applying the embedded migrations.
            ///
            /// # Errors
            /// [`StoreError::Migrate`](crate::StoreError::Migrate) when the schema cannot be applied.
            pub async fn new(pool: $pool, opts: $crate::StoreOptions) -> $crate::Result<Self> {
                // Two processes opening a fresh database at once race on the migration (SQLite has no migration
                // lock): the loser is told the database is locked, or finds the schema applied under it. A later
                // run finds the migration applied and does nothing; a real problem fails every attempt.
                let mut attempt = 1;
                loop {
                    match $crate::sql::migrator().run(&pool).await {
                        Ok(()) => break,
                        Err(e) if attempt < $crate::sql::MIGRATE_ATTEMPTS => {
                            tracing::debug!("schema migration attempt {attempt} failed ({e}); trying again");
                            tokio::time::sleep($crate::sql::RETRY_PAUSE * attempt).await;
                            attempt += 1;
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
                let writer = open_writer(&pool)?;
                Ok(Self { pool, opts, writer })
            }

            /// A transaction in which `lease` is confirmed to hold its session (the row touched at `now`), with
            /// the session's stored message count; or the lease-lost error naming the new holder.
            async fn begin_owned(
                &self,
                lease: &$crate::Lease,
                now: i64,
            ) -> $crate::Result<(sqlx::Transaction<'static, $db>, i64)> {
                let mut tx = begin(&self.pool).await?;
                let count: Option<i64> = sqlx::query_scalar($crate::sql::TOUCH_OWNED)
                    .bind(lease.session().as_str())
                    .bind(now)
                    .bind(lease.token())
                    .fetch_optional(&mut *tx)
                    .await?;
                let Some(count) = count else {
                    drop(tx);
                    return Err(self.lease_lost(lease).await);
                };
                Ok((tx, count))
            }

            /// Stores `messages` of session `id` from position `seq` on, in chunks; returns the position after them.
            async fn insert_messages(
                tx: &mut sqlx::Transaction<'static, $db>,
                id: &$crate::SessionId,
                mut seq: i64,
                messages: &[codepilot_protocol::Message],
                now: i64,
            ) -> $crate::Result<i64> {
                for chunk in messages.chunks($crate::sql::INSERT_CHUNK) {
                    let sql = $crate::sql::insert_messages_sql(chunk.len());
                    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
                    for m in chunk {
                        let (content, encoding) = $crate::sql::encode_content(&m.content);
                        q = q
                            .bind(id.as_str())
                            .bind(seq)
                            .bind(m.role.as_str())
                            .bind(content)
                            .bind(encoding)
                            .bind(now);
                        seq = seq.saturating_add(1);
                    }
                    q.execute(&mut **tx).await?;
                }
                Ok(seq)
            }

            /// The underlying pool.
            #[must_use]
            pub fn pool(&self) -> &$pool {
                &self.pool
            }

            fn meta(
                row: &$row,
            ) -> $crate::Result<(
                $crate::SessionId,
                $crate::SessionMeta,
                u64,
                codepilot_protocol::Usage,
                Option<$crate::sql::RowLease>,
            )> {
                use sqlx::Row as _;
                use $crate::types::to_u64;
                let raw_id: String = row.try_get("id")?;
                let id = $crate::SessionId::new(raw_id)?;
                let meta = $crate::SessionMeta {
                    agent_name: row.try_get("agent_name")?,
                    title: row.try_get("title")?,
                    created_at: row.try_get("created_at")?,
                    updated_at: row.try_get("updated_at")?,
                    message_count: to_u64(row.try_get("message_count")?),
                    snapshot: Some(row.try_get::<String, _>("snapshot")?).filter(|s| !s.is_empty()),
                    agent_source: match row.try_get::<String, _>("agent_source")?.as_str() {
                        "" => None,
                        text => Some($crate::AgentSource::from_json(&id, text)?),
                    },
                };
                let usage = codepilot_protocol::Usage {
                    input_tokens: to_u64(row.try_get("input_tokens")?),
                    output_tokens: to_u64(row.try_get("output_tokens")?),
                    cache_read_tokens: to_u64(row.try_get("cache_read_tokens")?),
                    cache_write_tokens: to_u64(row.try_get("cache_write_tokens")?),
                    reasoning_tokens: to_u64(row.try_get("reasoning_tokens")?),
                    calls: to_u64(row.try_get("calls")?),
                };
                let token: String = row.try_get("lease_token")?;
                let lease = if token.is_empty() {
                    None
                } else {
                    let pid: i64 = row.try_get("lease_pid")?;
                    Some($crate::sql::RowLease {
                        token,
                        holder: $crate::LeaseHolder {
                            pid: u32::try_from(pid).unwrap_or(0),
                            host: row.try_get("lease_host")?,
                            acquired_at: row.try_get("lease_acquired_at")?,
                        },
                        expires_at_ms: row.try_get("lease_expires_at")?,
                    })
                };
                Ok((id, meta, to_u64(row.try_get("task_counter")?), usage, lease))
            }

            fn messages(
                session: &$crate::SessionId,
                rows: &[$row],
            ) -> $crate::Result<Vec<codepilot_protocol::Message>> {
                use sqlx::Row as _;
                rows.iter()
                    .map(|r| {
                        let role: String = r.try_get("role")?;
                        let encoding: String = r.try_get("encoding")?;
                        Ok(codepilot_protocol::Message {
                            role: $crate::sql::parse_role(session, &role)?,
                            content: $crate::sql::decode_content(session, r.try_get("content")?, &encoding)?,
                        })
                    })
                    .collect()
            }

            /// Reads a whole record with `exec` (a connection or transaction).
            async fn read_record(
                exec: &mut <<$pool as $crate::sql::PoolDb>::Db as sqlx::Database>::Connection,
                id: &$crate::SessionId,
            ) -> $crate::Result<Option<($crate::SessionRecord, Option<$crate::sql::RowLease>)>> {
                let Some(row) = sqlx::query($crate::sql::SELECT_SESSION)
                    .bind(id.as_str())
                    .fetch_optional(&mut *exec)
                    .await?
                else {
                    return Ok(None);
                };
                let (id, meta, task_counter, usage, lease) = Self::meta(&row)?;
                let rows = sqlx::query($crate::sql::SELECT_MESSAGES)
                    .bind(id.as_str())
                    .bind(0_i64)
                    .bind($crate::types::to_i64(meta.message_count))
                    .fetch_all(&mut *exec)
                    .await?;
                let messages = Self::messages(&id, &rows)?;
                let archives = $crate::sql::decode_archives(&id, &sqlx::Row::try_get::<String, _>(&row, "archives")?)?;
                if u64::try_from(messages.len()).ok() != Some(meta.message_count) {
                    return Err($crate::StoreError::CorruptRow {
                        reason: format!(
                            "message_count is {} but {} messages are stored",
                            meta.message_count,
                            messages.len()
                        ),
                        session: id,
                    });
                }
                Ok(Some((
                    $crate::SessionRecord {
                        id,
                        messages,
                        task_counter,
                        usage,
                        archives,
                        meta,
                    },
                    lease,
                )))
            }

            async fn lease_lost(&self, lease: &$crate::Lease) -> $crate::StoreError {
                let holder = match sqlx::query($crate::sql::SELECT_SESSION)
                    .bind(lease.session().as_str())
                    .fetch_optional(&self.pool)
                    .await
                {
                    Ok(Some(row)) => Self::meta(&row).ok().and_then(|m| m.4).map(|l| l.holder),
                    _ => None,
                };
                $crate::StoreError::LeaseLost {
                    session: lease.session().clone(),
                    holder,
                }
            }
        }

        #[async_trait::async_trait]
        impl $crate::SessionStore for $name {
            fn lease_ttl(&self) -> std::time::Duration {
                self.opts.lease_ttl
            }

            async fn open(
                &self,
                id: &$crate::SessionId,
                agent_name: &str,
            ) -> $crate::Result<($crate::Lease, $crate::SessionRecord)> {
                let now = $crate::lease::now_secs();
                let mut tx = begin(&self.pool).await?;
                sqlx::query($crate::sql::INSERT_SESSION)
                    .bind(id.as_str())
                    .bind($crate::sql::no_nul(agent_name).into_owned())
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query($crate::sql::LOCK_ROW)
                    .bind(id.as_str())
                    .execute(&mut *tx)
                    .await?;
                let (record, current) = Self::read_record(&mut *tx, id)
                    .await?
                    .ok_or_else(|| $crate::StoreError::NotFound { session: id.clone() })?;
                if let Some(cur) = &current {
                    if !self.opts.is_stale(&cur.holder, cur.expires_at_ms) {
                        return Err($crate::StoreError::LeaseHeld {
                            session: id.clone(),
                            holder: cur.holder.clone(),
                        });
                    }
                    tracing::info!(session = %id, holder = %cur.holder, token = %cur.token, "taking over a stale lease");
                }
                let holder = self.opts.new_holder();
                let token = $crate::lease::new_token();
                sqlx::query($crate::sql::SET_LEASE)
                    .bind(id.as_str())
                    .bind(token.as_str())
                    .bind(i64::from(holder.pid))
                    .bind(holder.host.as_str())
                    .bind(holder.acquired_at)
                    .bind(self.opts.expires_at_ms())
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(($crate::Lease::new(id.clone(), holder, token), record))
            }

            async fn checkpoint(
                &self,
                lease: &$crate::Lease,
                cp: &$crate::Checkpoint,
            ) -> $crate::Result<()> {
                use $crate::types::to_i64;
                match write_checkpoint(&self.writer, lease, cp).await {
                    Some(Ok($crate::sql::step_writer::Written::Done)) => return Ok(()),
                    Some(Ok($crate::sql::step_writer::Written::LeaseLost)) => return Err(self.lease_lost(lease).await),
                    Some(Err(e)) => return Err(e),
                    None => {}
                }
                let id = lease.session();
                let now = $crate::lease::now_secs();
                let (mut tx, stored) = self.begin_owned(lease, now).await?;
                let stored = $crate::types::to_u64(stored);
                let range = $crate::types::overlap_range(stored, cp);
                let overlap = if range.is_empty() {
                    Vec::new()
                } else {
                    let rows = sqlx::query($crate::sql::SELECT_MESSAGES)
                        .bind(id.as_str())
                        .bind(to_i64(range.start))
                        .bind(to_i64(range.end))
                        .fetch_all(&mut *tx)
                        .await?;
                    Self::messages(id, &rows)?
                };
                let plan = $crate::types::plan_merge(id, stored, &overlap, cp)?;
                if !plan.update_counters {
                    return Ok(()); // dropping `tx` rolls back the touch
                }
                let new = cp.messages.get(plan.skip..).unwrap_or(&[]);
                let seq = Self::insert_messages(&mut tx, id, to_i64(stored), new, now).await?;
                sqlx::query($crate::sql::UPDATE_COUNTERS)
                    .bind(id.as_str())
                    .bind(seq)
                    .bind(to_i64(cp.task_counter))
                    .bind(to_i64(cp.usage.input_tokens))
                    .bind(to_i64(cp.usage.output_tokens))
                    .bind(to_i64(cp.usage.cache_read_tokens))
                    .bind(to_i64(cp.usage.cache_write_tokens))
                    .bind(to_i64(cp.usage.calls))
                    .bind(cp.title.as_deref().map(|t| $crate::sql::no_nul(t).into_owned()))
                    .bind(now)
                    .bind($crate::sql::encode_archives(cp.archives.as_deref())?)
                    .bind(to_i64(cp.usage.reasoning_tokens))
                    .execute(&mut *tx)
                    .await?;
                for answer in &cp.answers {
                    sqlx::query($crate::sql::UPSERT_ANSWER)
                        .bind(id.as_str())
                        .bind(to_i64(answer.index))
                        .bind($crate::sql::no_nul(&answer.content).into_owned())
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn load_answers(
                &self,
                id: &$crate::SessionId,
            ) -> $crate::Result<Vec<$crate::RawAnswer>> {
                let rows: Vec<(i64, String)> = sqlx::query_as($crate::sql::SELECT_ANSWERS)
                    .bind(id.as_str())
                    .fetch_all(&self.pool)
                    .await?;
                Ok(rows
                    .into_iter()
                    .map(|(index, content)| $crate::RawAnswer {
                        index: $crate::types::to_u64(index),
                        content,
                    })
                    .collect())
            }

            async fn append_events(
                &self,
                lease: &$crate::Lease,
                events: &[$crate::StoredEvent],
            ) -> $crate::Result<()> {
                let id = lease.session();
                let (mut tx, _) = self.begin_owned(lease, $crate::lease::now_secs()).await?;
                for event in events {
                    sqlx::query($crate::sql::INSERT_EVENT)
                        .bind(id.as_str())
                        .bind($crate::types::to_i64(event.seq))
                        .bind(event.body.as_str())
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn load_events(
                &self,
                id: &$crate::SessionId,
                after_seq: u64,
                limit: usize,
            ) -> $crate::Result<Vec<$crate::StoredEvent>> {
                let rows: Vec<(i64, String)> = sqlx::query_as($crate::sql::SELECT_EVENTS)
                    .bind(id.as_str())
                    .bind($crate::types::to_i64(after_seq))
                    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                    .fetch_all(&self.pool)
                    .await?;
                Ok(rows
                    .into_iter()
                    .map(|(seq, body)| $crate::StoredEvent {
                        seq: $crate::types::to_u64(seq),
                        body,
                    })
                    .collect())
            }

            async fn last_event_seq(&self, id: &$crate::SessionId) -> $crate::Result<u64> {
                let last: i64 = sqlx::query_scalar($crate::sql::SELECT_LAST_EVENT)
                    .bind(id.as_str())
                    .fetch_one(&self.pool)
                    .await?;
                Ok($crate::types::to_u64(last))
            }

            async fn rewrite_history(
                &self,
                lease: &$crate::Lease,
                rewrite: &$crate::HistoryRewrite,
            ) -> $crate::Result<()> {
                use $crate::types::to_i64;
                let id = lease.session();
                let now = $crate::lease::now_secs();
                let (mut tx, stored) = self.begin_owned(lease, now).await?;
                rewrite.check(id, $crate::types::to_u64(stored))?;
                sqlx::query($crate::sql::DELETE_MESSAGES_FROM)
                    .bind(id.as_str())
                    .bind(to_i64(rewrite.keep))
                    .execute(&mut *tx)
                    .await?;
                sqlx::query($crate::sql::DELETE_ANSWERS_FROM)
                    .bind(id.as_str())
                    .bind(to_i64(rewrite.keep))
                    .execute(&mut *tx)
                    .await?;
                let seq =
                    Self::insert_messages(&mut tx, id, to_i64(rewrite.keep), &rewrite.append, now)
                        .await?;
                sqlx::query($crate::sql::SET_HISTORY)
                    .bind(id.as_str())
                    .bind(seq)
                    .bind(
                        $crate::sql::encode_archives(Some(&rewrite.archives))?
                            .unwrap_or_default(),
                    )
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn set_snapshot(&self, lease: &$crate::Lease, key: &str) -> $crate::Result<()> {
                let (mut tx, _) = self.begin_owned(lease, $crate::lease::now_secs()).await?;
                sqlx::query($crate::sql::SET_SNAPSHOT)
                    .bind(lease.session().as_str())
                    .bind($crate::sql::no_nul(key).into_owned())
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn set_agent_source(
                &self,
                lease: &$crate::Lease,
                source: &$crate::AgentSource,
            ) -> $crate::Result<()> {
                let set = sqlx::query($crate::sql::SET_AGENT_SOURCE)
                    .bind(lease.session().as_str())
                    .bind(source.to_json()?)
                    .bind(lease.token())
                    .execute(&self.pool)
                    .await?;
                if set.rows_affected() == 0 {
                    return Err(self.lease_lost(lease).await);
                }
                Ok(())
            }

            async fn renew(&self, lease: &$crate::Lease) -> $crate::Result<()> {
                let r = sqlx::query($crate::sql::RENEW)
                    .bind(lease.session().as_str())
                    .bind(lease.token())
                    .bind(self.opts.expires_at_ms())
                    .execute(&self.pool)
                    .await?;
                if r.rows_affected() == 0 {
                    return Err(self.lease_lost(lease).await);
                }
                Ok(())
            }

            async fn release(&self, lease: $crate::Lease) -> $crate::Result<()> {
                sqlx::query($crate::sql::RELEASE)
                    .bind(lease.session().as_str())
                    .bind(lease.token())
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn load(
                &self,
                id: &$crate::SessionId,
            ) -> $crate::Result<Option<$crate::SessionRecord>> {
                let mut conn = self.pool.acquire().await?;
                Ok(Self::read_record(&mut *conn, id).await?.map(|(r, _)| r))
            }

            async fn list(&self) -> $crate::Result<Vec<$crate::SessionSummary>> {
                let rows = sqlx::query($crate::sql::LIST_SESSIONS)
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter()
                    .map(|row| {
                        let (id, meta, task_counter, usage, lease) = Self::meta(row)?;
                        Ok($crate::SessionSummary {
                            id,
                            meta,
                            task_counter,
                            usage,
                            holder: lease
                                .filter(|l| !self.opts.is_stale(&l.holder, l.expires_at_ms))
                                .map(|l| l.holder),
                        })
                    })
                    .collect()
            }

            async fn delete(&self, id: &$crate::SessionId) -> $crate::Result<bool> {
                let mut tx = begin(&self.pool).await?;
                let locked = sqlx::query($crate::sql::LOCK_ROW)
                    .bind(id.as_str())
                    .execute(&mut *tx)
                    .await?;
                if locked.rows_affected() == 0 {
                    return Ok(false);
                }
                let row = sqlx::query($crate::sql::SELECT_SESSION)
                    .bind(id.as_str())
                    .fetch_one(&mut *tx)
                    .await?;
                if let (_, _, _, _, Some(cur)) = Self::meta(&row)?
                    && !self.opts.is_stale(&cur.holder, cur.expires_at_ms)
                {
                    return Err($crate::StoreError::LeaseHeld {
                        session: id.clone(),
                        holder: cur.holder,
                    });
                }
                sqlx::query($crate::sql::DELETE_MESSAGES)
                    .bind(id.as_str())
                    .execute(&mut *tx)
                    .await?;
                sqlx::query($crate::sql::DELETE_EVENTS)
                    .bind(id.as_str())
                    .execute(&mut *tx)
                    .await?;
                sqlx::query($crate::sql::DELETE_ANSWERS)
                    .bind(id.as_str())
                    .execute(&mut *tx)
                    .await?;
                sqlx::query($crate::sql::DELETE_SESSION)
                    .bind(id.as_str())
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(true)
            }
        }
    };
}

/// Maps a pool type to its driver.
pub(crate) trait PoolDb {
    type Db: sqlx::Database;
}

impl PoolDb for sqlx::SqlitePool {
    type Db = sqlx::Sqlite;
}

impl PoolDb for sqlx::PgPool {
    type Db = sqlx::Postgres;
}

pub(crate) mod sqlite {
    //! SQLite instantiation.

    use sqlx::SqlitePool;
    use sqlx::Transaction;

    use crate::sql::step_writer::StepWriter;
    use crate::sql::step_writer::Written;

    /// `BEGIN IMMEDIATE`: take the write lock up front so a writer never fails to upgrade a read snapshot.
    async fn begin(pool: &SqlitePool) -> crate::Result<Transaction<'static, sqlx::Sqlite>> {
        Ok(pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    /// The step writer for a database file; `None` for a database in memory, which another connection would not
    /// see (its name is no file on disk: the pool created the file before migrating it).
    fn open_writer(pool: &SqlitePool) -> crate::Result<Option<StepWriter>> {
        let options = pool.connect_options();
        let file = options.get_filename();
        if !file.is_file() {
            return Ok(None);
        }
        Ok(Some(StepWriter::open(file)?))
    }

    async fn write_checkpoint(
        writer: &Option<StepWriter>,
        lease: &crate::Lease,
        cp: &crate::Checkpoint,
    ) -> Option<crate::Result<Written>> {
        Some(writer.as_ref()?.checkpoint(lease, cp).await)
    }

    sql_store!(
        /// Sessions in SQLite (WAL mode, busy timeout). Built by [`open_store`](crate::open_store). Checkpoints of
        /// a database file are written on a connection of their own: one blocking call a step instead of a round
        /// trip to sqlx's worker thread per statement.
        SqliteStore,
        sqlx::SqlitePool,
        sqlx::sqlite::SqliteRow,
        sqlx::Sqlite,
        Option<StepWriter>
    );
}

pub(crate) mod postgres {
    //! PostgreSQL instantiation.

    use sqlx::PgPool;
    use sqlx::Transaction;

    async fn begin(pool: &PgPool) -> crate::Result<Transaction<'static, sqlx::Postgres>> {
        Ok(pool.begin().await?)
    }

    #[allow(clippy::unnecessary_wraps)] // the macro's signature: SQLite's counterpart can fail
    fn open_writer(_pool: &PgPool) -> crate::Result<()> {
        Ok(())
    }

    /// Postgres checkpoints go through sqlx.
    #[allow(clippy::unused_async)] // the macro's signature: SQLite's counterpart awaits
    async fn write_checkpoint(
        (): &(),
        _lease: &crate::Lease,
        _cp: &crate::Checkpoint,
    ) -> Option<crate::Result<crate::sql::step_writer::Written>> {
        None
    }

    sql_store!(
        /// Sessions in PostgreSQL. Built by [`open_store`](crate::open_store).
        PgStore,
        sqlx::PgPool,
        sqlx::postgres::PgRow,
        sqlx::Postgres,
        ()
    );
}
