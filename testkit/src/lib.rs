//! Test support for CodePilot: [`ScriptedServer`], an in-process HTTP model server that speaks both the
//! Anthropic Messages and the OpenAI Chat Completions wire formats and replays scripted [`Turn`]s,
//! [`temp_workspace`], a real S3 server ([`moto`]) and the one rule for tests whose outside service is missing
//! ([`service`]). Tests in other languages run the scripted server as the `codepilot-testkit` binary and script it
//! over HTTP (the [`control`] endpoints).
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use codepilot_testkit::ScriptedServer;
//! use codepilot_testkit::Turn;
//! let server = ScriptedServer::start(vec![Turn::status(429, Some(1)), Turn::answer("hello")]).await?;
//! let anthropic_base = server.base_url(); // POST {base}/v1/messages
//! let openai_base = format!("{}/v1", server.base_url()); // POST {base}/chat/completions
//! # let _ = (anthropic_base, openai_base);
//! assert_eq!(server.remaining(), 2);
//! # Ok(()) }
//! ```
#![deny(missing_docs, clippy::print_stdout, clippy::print_stderr)]

use serde_json::Value;

pub mod control;
pub mod moto;
pub mod oauth;
pub mod otlp;
mod server;
pub mod service;
mod turn;
mod wire;

pub use control::TurnSpec;
pub use oauth::OAuthMcpServer;
pub use otlp::OtlpGrpcReceiver;
pub use otlp::ReceivedSpan;
pub use server::EMBEDDING_DIMS;
pub use server::RecordedRequest;
pub use server::ScriptedServer;
pub(crate) use server::Shared;
pub(crate) use server::lock;
pub use server::scripted_embedding;
pub use turn::DEFAULT_CHUNK_BYTES;
pub use turn::DEFAULT_PIECE_CHARS;
pub use turn::Turn;

/// A fresh folder outside the temporary folders a sandboxed shell may write (`/tmp`, `/var/tmp`, `/dev/shm`, the
/// system temp dir), for tests that check a write there is refused: under the current directory, unless that is
/// itself in a temporary folder (a checkout under `mktemp -d`); then under `/var/lib/codepilot-test` (made
/// world-readable, when this user may create it) or the home folder. Removed when dropped.
///
/// # Panics
/// When no such folder can be created.
#[must_use]
pub fn outside_temp_dir() -> tempfile::TempDir {
    #![allow(clippy::expect_used)]
    use std::os::unix::fs::PermissionsExt as _;
    let temp_roots = [
        std::path::PathBuf::from("/tmp"),
        std::path::PathBuf::from("/var/tmp"),
        std::path::PathBuf::from("/dev/shm"),
        std::env::temp_dir(),
    ];
    let outside = |p: &std::path::Path| !temp_roots.iter().any(|t| p.starts_with(t));
    let shared = std::path::PathBuf::from("/var/lib/codepilot-test");
    let shared_ok = std::fs::create_dir_all(&shared).is_ok()
        && std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o755)).is_ok();
    let base = std::env::current_dir()
        .ok()
        .into_iter()
        .chain(shared_ok.then_some(shared))
        .chain(std::env::var_os("HOME").map(std::path::PathBuf::from))
        .find(|p| outside(p))
        .expect(
            "a folder outside the temporary folders (the current directory, /var/lib or $HOME)",
        );
    tempfile::tempdir_in(&base).expect("creating a folder outside the temporary folders")
}

/// A temporary directory holding `files` (relative path, content); parent directories are created.
///
/// # Panics
/// When the directory or a file cannot be created, or a path is absolute or climbs out with `..`: this is a
/// test helper, and a broken fixture should stop the test.
#[must_use]
#[allow(
    clippy::expect_used,
    reason = "test fixture: failing loudly is the point"
)]
pub fn temp_workspace(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("create a temporary workspace");
    for (rel, content) in files {
        let rel_path = std::path::Path::new(rel);
        assert!(
            rel_path.components().all(|c| matches!(
                c,
                std::path::Component::Normal(_) | std::path::Component::CurDir
            )),
            "temp_workspace: `{rel}` must be a relative path inside the workspace"
        );
        let path = dir.path().join(rel_path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create workspace directories");
        }
        std::fs::write(&path, content).expect("write a workspace file");
    }
    dir
}

/// What a directory holds, for comparing trees: relative path → (kind with content digest or link target,
/// permission bits). Walks everything, `.git` and ignored files included; links are not followed.
///
/// # Panics
/// When the tree cannot be read: a test helper fails loudly.
#[must_use]
#[allow(
    clippy::expect_used,
    reason = "test helper: failing loudly is the point"
)]
pub fn tree_contents(root: &std::path::Path) -> std::collections::BTreeMap<String, (String, u32)> {
    use std::os::unix::fs::PermissionsExt as _;
    fn walk(
        root: &std::path::Path,
        dir: &std::path::Path,
        out: &mut std::collections::BTreeMap<String, (String, u32)>,
    ) {
        for entry in std::fs::read_dir(dir).expect("read a folder") {
            let path = entry.expect("read a folder entry").path();
            let rel = path
                .strip_prefix(root)
                .expect("under the root")
                .display()
                .to_string();
            let meta = std::fs::symlink_metadata(&path).expect("stat an entry");
            let mode = meta.permissions().mode() & 0o777;
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path).expect("read a link");
                out.insert(rel, (format!("link {}", target.display()), 0));
            } else if meta.is_dir() {
                out.insert(rel, ("dir".to_owned(), mode));
                walk(root, &path, out);
            } else {
                let bytes = std::fs::read(&path).expect("read a file");
                let digest = bytes
                    .iter()
                    .fold(0_u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(*b)));
                out.insert(rel, (format!("file {} {digest}", bytes.len()), mode));
            }
        }
    }
    let mut out = std::collections::BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// `len` deterministic bytes that do not compress (xorshift from `seed`): file contents for archive tests and
/// benchmarks.
#[must_use]
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[0]
        })
        .collect()
}

/// The contents of a `messages` array (as `session/resume` and `session/read` return it), one message per line.
#[must_use]
pub fn message_texts(messages: &Value) -> String {
    messages
        .as_array()
        .map(|all| {
            all.iter()
                .map(|m| m["content"].as_str().unwrap_or_default())
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

/// The text of the last user message of a recorded request body, in either wire format (string content or an
/// array of text blocks).
///
/// # Panics
/// If the body has no `messages` array or no user message: a test helper fails loudly.
#[allow(clippy::expect_used)]
#[must_use]
pub fn last_user_text(body: &Value) -> String {
    let msgs = body["messages"]
        .as_array()
        .expect("request has a messages array");
    let last = msgs
        .iter()
        .rev()
        .find(|m| m["role"] == "user")
        .expect("request has a user message");
    content_text(&last["content"])
}

/// The system prompt of a recorded request body: Anthropic's `system` blocks, or OpenAI's system message.
#[must_use]
pub fn system_text(body: &Value) -> String {
    match &body["system"] {
        Value::Null => body["messages"]
            .as_array()
            .map(|msgs| {
                msgs.iter()
                    .filter(|m| m["role"] == "system")
                    .map(|m| content_text(&m["content"]))
                    .collect()
            })
            .unwrap_or_default(),
        other => content_text(other),
    }
}

fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks.iter().filter_map(|b| b["text"].as_str()).collect(),
        _ => String::new(),
    }
}
