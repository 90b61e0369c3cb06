//! `codepilot serve`: the daemon (SPEC §13) on the listeners asked for, until SIGTERM or Ctrl-C.

use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use codepilot_server::Daemon;
use codepilot_server::DaemonConfig;
use codepilot_server::Listen;

use crate::Exit;
use crate::Failure;
use crate::cli::ServeArgs;
use crate::output;
use crate::secrets::EnvSnapshot;
use crate::usage;

/// `$XDG_RUNTIME_DIR/codepilot/runtime.sock`, else `$CODEPILOT_HOME/runtime.sock`.
pub(crate) fn default_socket() -> Result<PathBuf, Failure> {
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => Ok(PathBuf::from(dir).join("codepilot").join("runtime.sock")),
        None => Ok(crate::codepilot_home()?.join("runtime.sock")),
    }
}

/// The token in `path`, created (32 random bytes, hex, mode 0600) when the file does not exist.
fn token(path: &Path) -> anyhow::Result<String> {
    use std::io::Read as _;
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    if let Ok(text) = std::fs::read_to_string(path) {
        let token = text.trim().to_owned();
        anyhow::ensure!(
            token.len() >= 16,
            "{}: the token must be at least 16 characters",
            path.display()
        );
        return Ok(token);
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("reading /dev/urandom for a token")?;
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating the token file {}", path.display()))?;
    file.write_all(token.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(token)
}

pub(crate) async fn run(args: ServeArgs, env: EnvSnapshot) -> Result<Exit, Failure> {
    let mut listen = Vec::new();
    for url in &args.listen {
        listen.push(
            url.parse::<Listen>()
                .map_err(|e| usage(format!("--listen: {e}")))?,
        );
    }
    if listen.is_empty() {
        listen.push(Listen::Unix(default_socket()?));
    }
    let store = match &args.db_url {
        Some(url) => {
            codepilot::store::parse_db_url(url).map_err(|e| usage(format!("--db-url: {e}")))?
        }
        None => codepilot::StoreConfig::sqlite_file(crate::codepilot_home()?.join("sessions.db")),
    };
    let wants_token = listen.iter().any(|l| matches!(l, Listen::Ws(_)));
    let token = if wants_token {
        let path = match &args.token_file {
            Some(p) => p.clone(),
            None => crate::codepilot_home()?.join("serve.token"),
        };
        Some(token(&path)?)
    } else {
        None
    };
    if args.lease_ttl_s == 0 {
        return Err(usage("--lease-ttl-s must be at least 1"));
    }
    let mut store_options =
        codepilot::store::StoreOptions::new().lease_ttl(Duration::from_secs(args.lease_ttl_s));
    if let Some(node) = args.node.as_deref().filter(|n| !n.trim().is_empty()) {
        store_options = store_options.holder_identity(std::process::id(), node.trim());
    }
    let snapshots = crate::snapshots::store(&args.snapshot, &env)?;
    let config = DaemonConfig {
        store,
        snapshots,
        store_options,
        env: Some(Arc::new(move |var: &str| env.get(var))),
        request_timeout: Duration::from_secs(args.request_timeout_s),
        token: token.clone(),
        allowed_origins: args.allow_origin.clone(),
        ..DaemonConfig::default()
    };
    let daemon = Daemon::start(config).await.context("starting the daemon")?;
    let serving = daemon.clone();
    let listeners = listen.clone();
    let mut served = tokio::spawn(async move { serving.serve(listeners).await });
    let stdio = listen.contains(&Listen::Stdio);
    for l in &listen {
        match l {
            Listen::Unix(path) => output::err_line(&format!(
                "codepilot serve: listening on unix://{}",
                path.display()
            )),
            Listen::Stdio => {}
            Listen::Ws(_) => {}
        }
    }
    if let (true, Some(token)) = (wants_token, &token) {
        let addrs = tokio::select! {
            addrs = daemon.http_addrs() => addrs,
            result = &mut served => return finish(result),
        };
        for addr in addrs {
            output::err_line(&format!(
                "codepilot serve: listening on ws://{addr} — web UI: http://{addr}/?token={token}"
            ));
        }
    }
    let mut signals = crate::signals::Signals::new();
    tokio::select! {
        result = &mut served => finish(result),
        _ = signals.next(), if !stdio => {
            output::err_line("codepilot serve: stopping (closing sessions)");
            daemon.shutdown().await;
            let _ = tokio::time::timeout(Duration::from_secs(5), served).await;
            Ok(Exit::Completed)
        }
    }
}

fn finish(
    result: Result<Result<(), codepilot_server::ServeError>, tokio::task::JoinError>,
) -> Result<Exit, Failure> {
    match result {
        Ok(Ok(())) => Ok(Exit::Completed),
        Ok(Err(e)) => Err(e.into()),
        Err(e) => Err(anyhow::anyhow!("the daemon stopped unexpectedly: {e}").into()),
    }
}
