//! Interactive permission and ask-user handlers, reading answers from the controlling terminal.

use std::collections::HashSet;
use std::io::BufRead;
use std::io::BufReader;
use std::sync::Arc;
use std::sync::Mutex;

use codepilot::PermissionDecision;
use codepilot::PermissionRequest;
use codepilot::RuntimeBuilder;

use crate::output;
use crate::output::Output;

/// Reads one line from /dev/tty (not stdin, which may carry the task). `None` when there is no terminal.
fn ask_tty(prompt: &str) -> Option<String> {
    let tty = std::fs::File::open("/dev/tty").ok()?;
    output::err_write(prompt);
    let mut line = String::new();
    BufReader::new(tty).read_line(&mut line).ok()?;
    Some(line.trim_end_matches(['\r', '\n']).to_owned())
}

/// Installs the CLI's handlers: `--yes` approves everything; otherwise each gated call is asked on the terminal.
pub(crate) fn install(builder: RuntimeBuilder, yes: bool, out: Arc<dyn Output>) -> RuntimeBuilder {
    let always: Arc<Mutex<HashSet<String>>> = Arc::default();
    let perm_out = Arc::clone(&out);
    let builder = builder.permission_handler(move |req: PermissionRequest| {
        let always = Arc::clone(&always);
        let out = Arc::clone(&perm_out);
        async move {
            if yes || always.lock().is_ok_and(|a| a.contains(&req.tool)) {
                return PermissionDecision::Allow;
            }
            out.suspend();
            let prompt = format!(
                "\n⚠ {} wants to: {}\n  Allow? [y]es / [n]o / [a]lways for {} : ",
                req.tool, req.description, req.tool
            );
            let answer = tokio::task::spawn_blocking(move || ask_tty(&prompt))
                .await
                .ok()
                .flatten();
            match answer
                .as_deref()
                .map(str::trim)
                .map(str::to_lowercase)
                .as_deref()
            {
                Some("y" | "yes") => PermissionDecision::Allow,
                Some("a" | "always") => {
                    if let Ok(mut a) = always.lock() {
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
    });
    builder.ask_user_handler(move |question: String| {
        let out = Arc::clone(&out);
        async move {
            out.suspend();
            let prompt = format!("\n? The agent asks: {question}\n  > ");
            tokio::task::spawn_blocking(move || ask_tty(&prompt))
                .await
                .ok()
                .flatten()
        }
    })
}
