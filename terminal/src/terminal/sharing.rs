//! The terminal's multiplexer side: raw output kept as scrollback and fanned out to attached
//! clients (each with a bounded backlog), bytes those clients type (held back while an agent
//! command is being submitted), and the commands humans run at the prompt, queued for
//! [`crate::TerminalManager::take_human_input`].

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::Phase;
use super::State;
use super::Terminal;
use super::lock;

/// A command a human ran in a shared terminal while the agent was not running one.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HumanInput {
    /// Terminal name.
    pub terminal: String,
    /// The command line as it appeared on screen.
    pub command: String,
}

/// Longest human-input queue kept; older entries are dropped.
const MAX_HUMAN_INPUTS: usize = 100;
/// Most bytes held back from humans while an agent command is being submitted.
const MAX_GATED: usize = 64 * 1024;

/// Raw PTY output kept for newly attached clients, and the attached clients' queues.
pub(crate) struct Mux {
    inner: Mutex<MuxInner>,
}

struct MuxInner {
    scrollback: VecDeque<u8>,
    cap: usize,
    clients: Vec<ClientSlot>,
}

struct ClientSlot {
    tx: mpsc::UnboundedSender<Arc<[u8]>>,
    queued: Arc<AtomicUsize>,
    kicked: CancellationToken,
}

/// The receiving side of one attached client.
pub(crate) struct ClientFeed {
    /// Output chunks, in order.
    pub(crate) rx: mpsc::UnboundedReceiver<Arc<[u8]>>,
    /// Bytes queued and not yet written; the client task subtracts what it wrote.
    pub(crate) queued: Arc<AtomicUsize>,
    /// Cancelled when the client fell more than [`CLIENT_BACKLOG_BYTES`] behind.
    pub(crate) kicked: CancellationToken,
}

/// Bytes a client may fall behind before it is dropped.
pub(crate) const CLIENT_BACKLOG_BYTES: usize = 4 * 1024 * 1024;

impl Mux {
    /// An empty scrollback of at most `cap` bytes, with no clients.
    pub(super) fn new(cap: usize) -> Self {
        Self {
            inner: Mutex::new(MuxInner {
                scrollback: VecDeque::with_capacity(cap.min(64 * 1024)),
                cap,
                clients: Vec::new(),
            }),
        }
    }

    /// Appends `chunk` to the scrollback and queues it for every client, dropping clients
    /// that would fall more than [`CLIENT_BACKLOG_BYTES`] behind.
    pub(super) fn publish(&self, chunk: &[u8]) {
        let mut inner = lock(&self.inner);
        let cap = inner.cap;
        if chunk.len() >= cap {
            inner.scrollback.clear();
            inner.scrollback.extend(&chunk[chunk.len() - cap..]);
        } else {
            let overflow = (inner.scrollback.len() + chunk.len()).saturating_sub(cap);
            inner.scrollback.drain(..overflow);
            inner.scrollback.extend(chunk);
        }
        if inner.clients.is_empty() {
            return;
        }
        let shared: Arc<[u8]> = Arc::from(chunk);
        inner.clients.retain(|client| {
            let queued = client.queued.load(Ordering::Acquire);
            if queued + shared.len() > CLIENT_BACKLOG_BYTES {
                client.kicked.cancel();
                return false;
            }
            client.queued.fetch_add(shared.len(), Ordering::AcqRel);
            client.tx.send(Arc::clone(&shared)).is_ok()
        });
    }

    /// The scrollback and a feed of everything after it, taken atomically.
    pub(crate) fn subscribe(&self) -> (Vec<u8>, ClientFeed) {
        let mut inner = lock(&self.inner);
        let (tx, rx) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let kicked = CancellationToken::new();
        inner.clients.push(ClientSlot {
            tx,
            queued: Arc::clone(&queued),
            kicked: kicked.clone(),
        });
        (
            inner.scrollback.iter().copied().collect(),
            ClientFeed { rx, queued, kicked },
        )
    }
}

impl Terminal {
    /// Bytes typed by an attached client.
    pub(crate) async fn human_input(&self, bytes: Vec<u8>) {
        let send = {
            let mut st = self.state();
            match st.phase {
                Phase::Submitting => {
                    let room = MAX_GATED.saturating_sub(st.gated.len());
                    st.gated.extend_from_slice(&bytes[..bytes.len().min(room)]);
                    None
                }
                Phase::Idle => {
                    match bytes.iter().rposition(|b| matches!(b, b'\r' | b'\n')) {
                        Some(pos) => {
                            st.human_enter_pending = true;
                            st.human_partial = pos + 1 < bytes.len();
                        }
                        None => st.human_partial = true,
                    }
                    Some(bytes)
                }
                Phase::Running => Some(bytes),
            }
        };
        if let Some(bytes) = send {
            let _ = self.input.send(bytes).await;
        }
    }
}

impl State {
    /// A command line started at the prompt without the agent: reads it off the screen, from
    /// the end of the prompt to the cursor. Skipped after the agent's own `send_input` text.
    pub(super) fn human_command_started(&mut self) {
        if !self.agent_raw_cycle {
            let (start_row, start_col) = self.prompt_pos;
            let (row, col) = self.screen.screen().cursor_position();
            let text = self
                .screen
                .screen()
                .contents_between(start_row, start_col, row, col);
            self.human_cycle = Some(text.trim().to_owned());
        }
    }

    /// The prompt came back: queues the human's command line, if one was running.
    pub(super) fn human_command_done(
        &mut self,
        terminal: &str,
        human: &Mutex<VecDeque<HumanInput>>,
    ) {
        if let Some(command) = self.human_cycle.take()
            && !command.is_empty()
        {
            let mut queue = lock(human);
            if queue.len() >= MAX_HUMAN_INPUTS {
                queue.pop_front();
            }
            queue.push_back(HumanInput {
                terminal: terminal.to_owned(),
                command,
            });
        }
    }
}
