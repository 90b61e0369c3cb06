//! In-process store. Leases are still enforced between two opens.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::MutexGuard;
use std::time::Duration;

use async_trait::async_trait;
use codepilot_protocol::Usage;

use crate::SessionStore;
use crate::error::Result;
use crate::error::StoreError;
use crate::id::SessionId;
use crate::lease::Lease;
use crate::lease::LeaseHolder;
use crate::lease::StoreOptions;
use crate::lease::new_token;
use crate::lease::now_secs;
use crate::types::AgentSource;
use crate::types::Checkpoint;
use crate::types::SessionMeta;
use crate::types::SessionRecord;
use crate::types::SessionSummary;
use crate::types::overlap_range;
use crate::types::plan_merge;

#[derive(Debug)]
struct HeldLease {
    token: String,
    holder: LeaseHolder,
    expires_at_ms: i64,
}

#[derive(Debug)]
struct Entry {
    record: SessionRecord,
    lease: Option<HeldLease>,
    events: Vec<crate::StoredEvent>,
    answers: std::collections::BTreeMap<u64, String>,
}

type Sessions = HashMap<SessionId, Entry>;

/// Sessions kept in this process's memory; gone when it exits.
///
/// Cloning gives another handle on the same sessions with the same identity; [`MemoryStore::share`] gives one
/// with another identity (another "process", for tests).
#[derive(Debug, Clone)]
pub struct MemoryStore {
    sessions: Arc<Mutex<Sessions>>,
    opts: StoreOptions,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new(StoreOptions::default())
    }
}

impl MemoryStore {
    /// An empty store.
    #[must_use]
    pub fn new(opts: StoreOptions) -> Self {
        Self {
            sessions: Arc::new(Mutex::new(HashMap::new())),
            opts,
        }
    }

    /// A handle on the same sessions that takes leases under `opts` (another holder identity or TTL).
    #[must_use]
    pub fn share(&self, opts: StoreOptions) -> Self {
        Self {
            sessions: Arc::clone(&self.sessions),
            opts,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Sessions> {
        // A panic while holding the lock cannot leave an entry half-written: every mutation below is
        // computed first and assigned last, so the poisoned state is still consistent.
        self.sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn owned<'a>(sessions: &'a mut Sessions, lease: &Lease) -> Result<&'a mut Entry> {
        let lost = |holder: Option<LeaseHolder>| StoreError::LeaseLost {
            session: lease.session().clone(),
            holder,
        };
        let entry = sessions
            .get_mut(lease.session())
            .ok_or_else(|| lost(None))?;
        match &entry.lease {
            Some(l) if l.token == lease.token() => Ok(entry),
            Some(l) => Err(lost(Some(l.holder.clone()))),
            None => Err(lost(None)),
        }
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    fn lease_ttl(&self) -> Duration {
        self.opts.lease_ttl
    }

    async fn open(&self, id: &SessionId, agent_name: &str) -> Result<(Lease, SessionRecord)> {
        let mut sessions = self.lock();
        let now = now_secs();
        let entry = sessions.entry(id.clone()).or_insert_with(|| Entry {
            record: SessionRecord {
                id: id.clone(),
                messages: Vec::new(),
                task_counter: 0,
                usage: Usage::default(),
                archives: Vec::new(),
                meta: SessionMeta {
                    agent_name: agent_name.to_owned(),
                    title: None,
                    created_at: now,
                    updated_at: now,
                    message_count: 0,
                    snapshot: None,
                    agent_source: None,
                },
            },
            lease: None,
            events: Vec::new(),
            answers: std::collections::BTreeMap::new(),
        });
        if let Some(held) = &entry.lease
            && !self.opts.is_stale(&held.holder, held.expires_at_ms)
        {
            return Err(StoreError::LeaseHeld {
                session: id.clone(),
                holder: held.holder.clone(),
            });
        }
        let holder = self.opts.new_holder();
        let token = new_token();
        entry.lease = Some(HeldLease {
            token: token.clone(),
            holder: holder.clone(),
            expires_at_ms: self.opts.expires_at_ms(),
        });
        Ok((Lease::new(id.clone(), holder, token), entry.record.clone()))
    }

    async fn checkpoint(&self, lease: &Lease, cp: &Checkpoint) -> Result<()> {
        let mut sessions = self.lock();
        let entry = Self::owned(&mut sessions, lease)?;
        let record = &mut entry.record;
        let stored = record.meta.message_count;
        let range = overlap_range(stored, cp);
        let start = usize::try_from(range.start).unwrap_or(usize::MAX);
        let end = usize::try_from(range.end).unwrap_or(usize::MAX);
        let overlap = record.messages.get(start..end).unwrap_or(&[]);
        let plan = plan_merge(lease.session(), stored, overlap, cp)?;
        if plan.update_counters {
            record
                .messages
                .extend(cp.messages.iter().skip(plan.skip).cloned());
            record.meta.message_count = u64::try_from(record.messages.len()).unwrap_or(u64::MAX);
            record.task_counter = cp.task_counter;
            record.usage = cp.usage;
            if cp.title.is_some() {
                record.meta.title.clone_from(&cp.title);
            }
            if let Some(archives) = &cp.archives {
                record.archives.clone_from(archives);
            }
            record.meta.updated_at = now_secs();
        }
        for a in &cp.answers {
            entry.answers.insert(a.index, a.content.clone());
        }
        Ok(())
    }

    async fn rewrite_history(&self, lease: &Lease, rewrite: &crate::HistoryRewrite) -> Result<()> {
        let mut sessions = self.lock();
        let entry = Self::owned(&mut sessions, lease)?;
        let record = &mut entry.record;
        rewrite.check(lease.session(), record.meta.message_count)?;
        record
            .messages
            .truncate(usize::try_from(rewrite.keep).unwrap_or(usize::MAX));
        record.messages.extend(rewrite.append.iter().cloned());
        record.meta.message_count = rewrite.end();
        record.archives.clone_from(&rewrite.archives);
        entry.answers.retain(|index, _| *index < rewrite.keep);
        record.meta.updated_at = now_secs();
        Ok(())
    }

    async fn load_answers(&self, id: &SessionId) -> Result<Vec<crate::RawAnswer>> {
        let sessions = self.lock();
        Ok(sessions.get(id).map_or_else(Vec::new, |e| {
            e.answers
                .iter()
                .map(|(index, content)| crate::RawAnswer {
                    index: *index,
                    content: content.clone(),
                })
                .collect()
        }))
    }

    async fn append_events(&self, lease: &Lease, events: &[crate::StoredEvent]) -> Result<()> {
        let mut sessions = self.lock();
        let entry = Self::owned(&mut sessions, lease)?;
        for event in events {
            if entry.events.last().is_none_or(|last| event.seq > last.seq) {
                entry.events.push(event.clone());
            }
        }
        Ok(())
    }

    async fn load_events(
        &self,
        id: &SessionId,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<crate::StoredEvent>> {
        let sessions = self.lock();
        let Some(entry) = sessions.get(id) else {
            return Ok(Vec::new());
        };
        let start = entry.events.partition_point(|e| e.seq <= after_seq);
        Ok(entry.events[start..].iter().take(limit).cloned().collect())
    }

    async fn last_event_seq(&self, id: &SessionId) -> Result<u64> {
        Ok(self
            .lock()
            .get(id)
            .and_then(|e| e.events.last())
            .map_or(0, |e| e.seq))
    }

    async fn set_snapshot(&self, lease: &Lease, key: &str) -> Result<()> {
        let mut sessions = self.lock();
        let entry = Self::owned(&mut sessions, lease)?;
        entry.record.meta.snapshot = Some(key.to_owned());
        Ok(())
    }

    async fn set_agent_source(&self, lease: &Lease, source: &AgentSource) -> Result<()> {
        source.to_json()?;
        let mut sessions = self.lock();
        let entry = Self::owned(&mut sessions, lease)?;
        entry.record.meta.agent_source = Some(source.clone());
        Ok(())
    }

    async fn renew(&self, lease: &Lease) -> Result<()> {
        let mut sessions = self.lock();
        let entry = Self::owned(&mut sessions, lease)?;
        if let Some(held) = &mut entry.lease {
            held.expires_at_ms = self.opts.expires_at_ms();
        }
        Ok(())
    }

    async fn release(&self, lease: Lease) -> Result<()> {
        let mut sessions = self.lock();
        if let Ok(entry) = Self::owned(&mut sessions, &lease) {
            entry.lease = None;
        }
        Ok(())
    }

    async fn load(&self, id: &SessionId) -> Result<Option<SessionRecord>> {
        Ok(self.lock().get(id).map(|e| e.record.clone()))
    }

    async fn list(&self) -> Result<Vec<SessionSummary>> {
        let mut out: Vec<SessionSummary> = self
            .lock()
            .values()
            .map(|e| {
                let holder = e
                    .lease
                    .as_ref()
                    .filter(|l| !self.opts.is_stale(&l.holder, l.expires_at_ms))
                    .map(|l| l.holder.clone());
                e.record.summary(holder)
            })
            .collect();
        crate::sort_newest_first(&mut out);
        Ok(out)
    }

    async fn delete(&self, id: &SessionId) -> Result<bool> {
        let mut sessions = self.lock();
        let Some(entry) = sessions.get(id) else {
            return Ok(false);
        };
        if let Some(held) = &entry.lease
            && !self.opts.is_stale(&held.holder, held.expires_at_ms)
        {
            return Err(StoreError::LeaseHeld {
                session: id.clone(),
                holder: held.holder.clone(),
            });
        }
        sessions.remove(id);
        Ok(true)
    }
}
