//! Terminal configuration and environment normalisation.

use std::ffi::OsString;
use std::path::PathBuf;

/// How terminals are started. `Default` gives bash in the current directory, 220×50.
#[derive(Debug, Clone)]
pub struct TerminalConfig {
    /// Working directory every new shell starts in. Default: the current directory.
    pub work_dir: PathBuf,
    /// PTY width in columns. Default: 220.
    pub cols: u16,
    /// PTY height in rows. Default: 50.
    pub rows: u16,
    /// Extra environment variables, applied after normalisation (so they may override it).
    pub env: Vec<(String, String)>,
    /// More variable names that must not reach the shell, besides those [`is_secret`] recognises (e.g. the agent
    /// file's `model.api_key_env`, whatever it is called). Default: none.
    pub hidden_vars: Vec<String>,
    /// The shell binary; must be bash (the completion protocol uses bash features). Default: `bash`.
    pub shell: PathBuf,
    /// Directory for the multiplexer sockets and the token file. `None`: a fresh private
    /// directory under `$XDG_RUNTIME_DIR` (or `/tmp`), removed on shutdown.
    pub socket_dir: Option<PathBuf>,
    /// Maximum characters of command output handed back (head + tail kept, marker between).
    /// Default: 10 000; values are kept within 512..=1 000 000.
    pub max_output_chars: usize,
    /// Bytes of raw PTY output kept per terminal for replay to newly attached clients.
    /// Default: 256 KiB.
    pub scrollback_bytes: usize,
    /// The sandbox every shell runs in (`codepilot-sandbox`). `None`: no sandbox. The terminal's private
    /// directory is added to the policy's always-writable folders (the shell integration writes there).
    pub sandbox: Option<codepilot_sandbox::Policy>,
    /// The session's resource limits (SPEC §24): every shell joins them before it starts, and a command that
    /// runs into one is stopped (processes, disk) and names it in its result. `None`: no limits.
    pub limits: Option<std::sync::Arc<codepilot_sandbox::resources::SessionLimits>>,
}

impl Default for TerminalConfig {
    fn default() -> Self {
        Self {
            work_dir: std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/")),
            cols: 220,
            rows: 50,
            env: Vec::new(),
            hidden_vars: Vec::new(),
            shell: PathBuf::from("bash"),
            socket_dir: None,
            max_output_chars: 10_000,
            scrollback_bytes: 256 * 1024,
            sandbox: None,
            limits: None,
        }
    }
}

impl TerminalConfig {
    /// A default configuration rooted at `work_dir`.
    #[must_use]
    pub fn new(work_dir: impl Into<PathBuf>) -> Self {
        Self {
            work_dir: work_dir.into(),
            ..Self::default()
        }
    }
}

/// True for variable names that must not reach the shell: the name, upper-cased, contains
/// `KEY`, `TOKEN`, `SECRET`, `PASSWORD`, `PASSWD` or `CREDENTIAL` (this covers every `*_API_KEY`), or is one of the
/// OpenTelemetry exporter's `OTEL_EXPORTER_OTLP*_HEADERS` (where a trace backend's key goes).
#[must_use]
pub fn is_secret_var(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    ["KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL"]
        .iter()
        .any(|word| upper.contains(word))
        // A trace backend's API key travels in the OTLP headers (`x-honeycomb-team=…`).
        || (upper.starts_with("OTEL_EXPORTER_OTLP") && upper.ends_with("_HEADERS"))
}

/// True for values that carry credentials inside a URL, such as `postgres://user:password@host/db`
/// (`DATABASE_URL`-style variables): a `scheme://` whose user-info part (before `@`, within the authority) has a
/// password.
#[must_use]
pub fn has_url_credentials(value: &str) -> bool {
    // A password in the query (`?password=…`, which database drivers read) counts too.
    if value.contains("://")
        && value
            .split(['?', '&'])
            .skip(1)
            .any(|pair| pair.to_ascii_lowercase().starts_with("password="))
    {
        return true;
    }
    let mut rest = value;
    while let Some(at) = rest.find("://") {
        let after = &rest[at + 3..];
        let authority = after.split(['/', '?', '#']).next().unwrap_or(after);
        if let Some((userinfo, _host)) = authority.rsplit_once('@')
            && let Some((_user, password)) = userinfo.split_once(':')
            && !password.is_empty()
        {
            return true;
        }
        rest = after;
    }
    false
}

/// True for a variable that must not reach an agent's shell: a secret-looking name ([`is_secret_var`]), one of
/// `hidden` (configured names such as the agent's `api_key_env`), or a value with a password in a URL
/// ([`has_url_credentials`]).
#[must_use]
pub fn is_secret(name: &str, value: &str, hidden: &[String]) -> bool {
    is_secret_var(name) || hidden.iter().any(|h| h == name) || has_url_credentials(value)
}

/// Variables removed because they would interfere with the shell integration or the PTY size.
const CONTROLLED_VARS: &[&str] = &[
    "PROMPT_COMMAND",
    "PS0",
    "PS1",
    "PS2",
    "PS4",
    "BASH_ENV",
    "ENV",
    "HISTFILE",
    "COLUMNS",
    "LINES",
    "INPUTRC",
];

/// Builds the shell's environment from `base` (normally the process environment):
/// secrets ([`is_secret`], with `hidden` as the extra names) and variables that would break the shell
/// integration are removed; `TERM=xterm-256color`, `PAGER=cat`, `GIT_PAGER=cat` are set; `LANG=C.UTF-8`
/// is set when neither `LANG` nor `LC_ALL` is; then `extra` is applied verbatim.
#[must_use]
pub fn normalised_env(
    base: impl IntoIterator<Item = (OsString, OsString)>,
    extra: &[(String, String)],
    hidden: &[String],
    terminal: &str,
) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = base
        .into_iter()
        .filter(|(name, value)| {
            let name = name.to_string_lossy();
            !is_secret(&name, &value.to_string_lossy(), hidden)
                && !CONTROLLED_VARS.contains(&name.as_ref())
                && !name.starts_with("BASH_FUNC_")
        })
        .collect();
    let mut set = |name: &str, value: &str| {
        env.retain(|(n, _)| n != name);
        env.push((OsString::from(name), OsString::from(value)));
    };
    set("TERM", "xterm-256color");
    set("PAGER", "cat");
    set("GIT_PAGER", "cat");
    set("CODEPILOT_TERMINAL", terminal);
    if !env.iter().any(|(n, _)| n == "LANG" || n == "LC_ALL") {
        env.push((OsString::from("LANG"), OsString::from("C.UTF-8")));
    }
    for (name, value) in extra {
        env.retain(|(n, _)| n != name.as_str());
        env.push((OsString::from(name), OsString::from(value)));
    }
    env
}

/// Validates a terminal name: `[A-Za-z0-9_-]{1,64}`.
#[must_use]
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}
