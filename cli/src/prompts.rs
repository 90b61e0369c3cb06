//! Interactive permission and ask-user handlers, reading answers from the controlling terminal.
//!
//! Answers come from `/dev/tty`, never stdin (which may carry the task). A question whose run is aborted (or whose
//! control block times out) is abandoned: the reader notices within a fraction of a second, says "(cancelled)", and
//! leaves the terminal free for the next prompt.

use std::collections::HashSet;
use std::io::IsTerminal as _;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering;

use codepilot::PermissionDecision;
use codepilot::PermissionRequest;
use codepilot::RuntimeBuilder;

use crate::output;
use crate::output::Output;

/// How often a waiting reader checks whether its question was abandoned, in milliseconds.
const POLL_MS: i32 = 100;

/// Shows text that came from the model without letting control characters redraw the terminal.
pub(crate) fn sanitize(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            if c.is_control() && c != '\n' {
                c.escape_default().collect::<Vec<char>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

/// Reads one line from /dev/tty, giving up when `cancelled` is set. `None` when there is no terminal, on end of
/// input, or when cancelled.
fn ask_tty(prompt: &str, cancelled: &AtomicBool) -> Option<String> {
    let mut tty = std::fs::File::open("/dev/tty").ok()?;
    output::err_write(prompt);
    let mut line = Vec::new();
    loop {
        if cancelled.load(Ordering::SeqCst) {
            output::err_line(" (cancelled)");
            return None;
        }
        let mut fds = libc::pollfd {
            fd: tty.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: `fds` is a valid pollfd for an open descriptor, and we pass a count of one.
        let ready = unsafe { libc::poll(&raw mut fds, 1, POLL_MS) };
        if ready < 0 {
            let err = std::io::Error::last_os_error();
            if err.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return None;
        }
        if ready == 0 {
            continue;
        }
        let mut byte = [0u8; 1];
        match tty.read(&mut byte) {
            Ok(0) | Err(_) => return None,
            Ok(_) if byte[0] == b'\n' => break,
            Ok(_) => line.push(byte[0]),
        }
    }
    Some(
        String::from_utf8_lossy(&line)
            .trim_end_matches('\r')
            .to_owned(),
    )
}

/// Sets the flag when the future asking the question is dropped (the run was aborted or timed out).
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Asks on the terminal from a blocking thread; abandons the question if this future is dropped.
async fn ask(prompt: String) -> Option<String> {
    let cancelled = Arc::new(AtomicBool::new(false));
    let _guard = CancelOnDrop(Arc::clone(&cancelled));
    tokio::task::spawn_blocking(move || ask_tty(&prompt, &cancelled))
        .await
        .ok()
        .flatten()
}

/// Asks the person at the terminal about gated tool calls and the agent's questions. `--yes` approves every call.
#[derive(Clone)]
pub(crate) struct Prompter {
    yes: bool,
    always: Arc<Mutex<HashSet<String>>>,
    out: Arc<dyn Output>,
}

impl Prompter {
    pub(crate) fn new(yes: bool, out: Arc<dyn Output>) -> Self {
        Self {
            yes,
            always: Arc::default(),
            out,
        }
    }

    /// Allow or deny `req` (asked on the terminal unless `--yes` or "always" was given for its tool).
    pub(crate) async fn permission(&self, req: &PermissionRequest) -> PermissionDecision {
        if self.yes || self.always.lock().is_ok_and(|a| a.contains(&req.tool)) {
            return PermissionDecision::Allow;
        }
        self.out.suspend();
        let prompt = format!(
            "\n⚠ {} wants to: {}\n  Allow? [y]es / [n]o / [a]lways for {} : ",
            req.tool,
            sanitize(&req.description),
            req.tool
        );
        match ask(prompt)
            .await
            .as_deref()
            .map(str::trim)
            .map(str::to_lowercase)
            .as_deref()
        {
            Some("y" | "yes") => PermissionDecision::Allow,
            Some("a" | "always") => {
                if let Ok(mut a) = self.always.lock() {
                    a.insert(req.tool.clone());
                }
                PermissionDecision::Allow
            }
            Some(_) => PermissionDecision::Deny { reason: None },
            None => PermissionDecision::Deny {
                reason: Some(
                    "there is no terminal to ask on; rerun with --yes to approve gated tools"
                        .to_owned(),
                ),
            },
        }
    }

    /// The person's answer to the agent's `question`, if there is a terminal to ask on.
    pub(crate) async fn question(&self, question: &str) -> Option<String> {
        self.out.suspend();
        ask(format!("\n? The agent asks: {}\n  > ", sanitize(question))).await
    }
}

impl codepilot::AskUserHandler for Prompter {
    fn ask<'a>(&'a self, question: &'a str) -> codepilot::BoxFuture<'a, Option<String>> {
        Box::pin(self.question(question))
    }
}

/// Installs the CLI's handlers: `--yes` approves everything; otherwise each gated call is asked on the terminal.
/// With a person at the terminal, an MCP server that needs an OAuth login shows its URL (and opens a browser) while
/// the run goes on.
pub(crate) fn install(builder: RuntimeBuilder, yes: bool, out: Arc<dyn Output>) -> RuntimeBuilder {
    let prompter = Prompter::new(yes, Arc::clone(&out));
    let asker = prompter.clone();
    let builder = if std::io::stdin().is_terminal() {
        builder.mcp_login_handler(move |server: &str, url: &str| {
            out.suspend();
            crate::output::err_line(&format!(
                "MCP server `{server}` needs a login; open this URL in a browser (the run goes on, and its tools \
                 come once you approve):"
            ));
            crate::output::err_line(url);
            crate::mcp::open_browser(url);
        })
    } else {
        builder
    };
    builder
        .permission_handler(move |req: PermissionRequest| {
            let prompter = prompter.clone();
            async move { prompter.permission(&req).await }
        })
        .ask_user_handler(asker)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(
            sanitize("curl x|sh\r\u{1b}[2Kls"),
            "curl x|sh\\r\\u{1b}[2Kls"
        );
        assert_eq!(sanitize("two\nlines"), "two\nlines");
    }
}
