//! The session's conversation state: what the step loop owns while it runs, and what readers see meanwhile.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::MutexGuard;

use codepilot_protocol::Message;
use codepilot_protocol::Usage;
use codepilot_store::Checkpoint;
use codepilot_store::HistoryRewrite;
use codepilot_store::Lease;
use codepilot_store::SessionId;
use codepilot_store::SessionRecord;
use codepilot_store::SessionStore;
use codepilot_store::StoreError;

use crate::context::ContextBook;
use crate::context::ContextParams;

/// The conversation state the step loop owns while it runs.
pub(crate) struct SessionState {
    pub(crate) id: SessionId,
    pub(crate) messages: Vec<Message>,
    /// How many of `messages` the store has.
    stored_len: u64,
    pub(crate) task_counter: u64,
    pub(crate) usage: Usage,
    pub(crate) title: Option<String>,
    /// What the model sees of `messages`; shared with the context tools while a block runs (a leaf lock).
    pub(crate) context: Arc<Mutex<ContextBook>>,
    /// Answers as the model gave them, for messages stored compacted, not yet in the store.
    pending_answers: Vec<codepilot_store::RawAnswer>,
}

impl SessionState {
    /// The state of a session as the store returned it.
    pub(crate) fn from_record(id: SessionId, record: SessionRecord, params: ContextParams) -> Self {
        let book = ContextBook::new(params, &record.messages, record.archives);
        Self {
            id,
            stored_len: record.messages.len() as u64,
            messages: record.messages,
            task_counter: record.task_counter,
            usage: record.usage,
            title: record.meta.title,
            context: Arc::new(Mutex::new(book)),
            pending_answers: Vec::new(),
        }
    }

    /// Adds the model's answer to the history as `stored` (compacted or capped); when that differs from what the
    /// model gave, the answer itself is stored beside it for replays (SPEC §23).
    pub(crate) fn push_answer(&mut self, answer: &str, stored: String) {
        if stored != answer {
            self.pending_answers.push(codepilot_store::RawAnswer {
                index: self.messages.len() as u64,
                content: answer.to_owned(),
            });
        }
        self.messages.push(Message::assistant(stored));
    }

    /// This state after the store applied `rewrite` (a rewind): the history cut and appended to, the archives
    /// replaced, the rest kept.
    pub(crate) fn rewritten(&self, rewrite: HistoryRewrite, params: ContextParams) -> Self {
        let keep = usize::try_from(rewrite.keep)
            .unwrap_or(usize::MAX)
            .min(self.messages.len());
        let mut messages = self.messages[..keep].to_vec();
        messages.extend(rewrite.append);
        let book = ContextBook::new(params, &messages, rewrite.archives);
        Self {
            id: self.id.clone(),
            stored_len: messages.len() as u64,
            messages,
            task_counter: self.task_counter,
            usage: self.usage,
            title: self.title.clone(),
            context: Arc::new(Mutex::new(book)),
            pending_answers: Vec::new(),
        }
    }

    /// The context book, brought up to date with `messages`.
    pub(crate) fn book(&self) -> MutexGuard<'_, ContextBook> {
        let mut book = match self.context.lock() {
            Ok(b) => b,
            Err(poisoned) => poisoned.into_inner(),
        };
        book.ingest(&self.messages);
        book
    }
}

/// What has been checkpointed, readable while a run holds the session.
#[derive(Default)]
struct Published {
    session_id: String,
    messages: Vec<Message>,
    usage: Usage,
}

/// The session: its state (held by one run at a time) and the checkpointed copy readers see.
pub(crate) struct SessionCell {
    store: Arc<dyn SessionStore>,
    state: tokio::sync::Mutex<SessionState>,
    published: Mutex<Published>,
}

impl SessionCell {
    pub(crate) fn new(store: Arc<dyn SessionStore>, state: SessionState) -> Self {
        let published = Published {
            session_id: state.id.to_string(),
            messages: state.messages.clone(),
            usage: state.usage,
        };
        Self {
            store,
            state: tokio::sync::Mutex::new(state),
            published: Mutex::new(published),
        }
    }

    pub(crate) fn store(&self) -> &Arc<dyn SessionStore> {
        &self.store
    }

    /// The state, if no run holds it.
    pub(crate) fn try_lock(&self) -> Option<tokio::sync::MutexGuard<'_, SessionState>> {
        self.state.try_lock().ok()
    }

    /// The state, once the run holding it (if any) lets go.
    pub(crate) async fn lock(&self) -> tokio::sync::MutexGuard<'_, SessionState> {
        self.state.lock().await
    }

    /// Stores the messages added since the last checkpoint, with the counters, and publishes them. Does nothing
    /// when nothing was added.
    pub(crate) async fn checkpoint(
        &self,
        state: &mut SessionState,
        lease: &Lease,
    ) -> Result<(), StoreError> {
        let total = state.messages.len() as u64;
        let archives = state.book().take_changed_archives();
        if total == state.stored_len && archives.is_none() {
            return Ok(());
        }
        let start = usize::try_from(state.stored_len)
            .unwrap_or(usize::MAX)
            .min(state.messages.len());
        let cp = Checkpoint {
            base_len: state.stored_len,
            messages: state.messages[start..].to_vec(),
            task_counter: state.task_counter,
            usage: state.usage,
            title: state.title.clone(),
            archives,
            answers: std::mem::take(&mut state.pending_answers),
        };
        if let Err(e) = self.store.checkpoint(lease, &cp).await {
            if cp.archives.is_some() {
                state.book().mark_archives_changed();
            }
            state.pending_answers = cp.answers;
            return Err(e);
        }
        state.stored_len = total;
        if let Ok(mut p) = self.published.lock() {
            p.messages.extend(cp.messages);
            p.usage = state.usage;
        }
        Ok(())
    }

    /// Switches to another session (after [`crate::AsyncRuntime::reset`]); readers see it at once.
    pub(crate) fn replace(&self, state: &mut SessionState, new: SessionState) {
        *state = new;
        if let Ok(mut p) = self.published.lock() {
            *p = Published {
                session_id: state.id.to_string(),
                messages: state.messages.clone(),
                usage: state.usage,
            };
        }
    }

    pub(crate) fn session_id(&self) -> String {
        self.published
            .lock()
            .map(|p| p.session_id.clone())
            .unwrap_or_default()
    }

    pub(crate) fn history(&self) -> Vec<Message> {
        self.published
            .lock()
            .map(|p| p.messages.clone())
            .unwrap_or_default()
    }

    pub(crate) fn usage(&self) -> Usage {
        self.published.lock().map(|p| p.usage).unwrap_or_default()
    }
}
