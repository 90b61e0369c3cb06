//! Listeners: Unix sockets and stdio (one JSON-RPC message per line).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::path::PathBuf;

use crate::Daemon;
use crate::serve_connection;

/// Where the daemon listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    /// A Unix socket (0600, in a 0700 directory created if missing).
    Unix(PathBuf),
    /// This process's stdin and stdout: one client; the daemon stops when stdin closes.
    Stdio,
    /// HTTP on this address: JSON-RPC over WebSocket at `/rpc`, terminals, `/healthz`, the web UI.
    Ws(std::net::SocketAddr),
}

impl std::str::FromStr for Listen {
    type Err = String;

    /// `unix://PATH`, `stdio://` or `ws://HOST:PORT`.
    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(addr) = s.strip_prefix("ws://") {
            let addr = addr.trim_end_matches('/');
            return std::net::ToSocketAddrs::to_socket_addrs(addr)
                .ok()
                .and_then(|mut a| a.next())
                .map(Listen::Ws)
                .ok_or_else(|| {
                    format!("cannot listen on {s:?}: use ws://HOST:PORT, e.g. ws://127.0.0.1:7878")
                });
        }
        if let Some(path) = s.strip_prefix("unix://") {
            if path.is_empty() {
                return Err(
                    "unix:// needs a path, e.g. unix:///run/codepilot/runtime.sock".to_owned(),
                );
            }
            Ok(Listen::Unix(PathBuf::from(path)))
        } else if s == "stdio://" || s == "stdio" {
            Ok(Listen::Stdio)
        } else {
            Err(format!(
                "cannot listen on {s:?}: use unix://PATH or stdio://"
            ))
        }
    }
}

/// Why the daemon could not serve.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The session store could not be opened.
    #[error("session store: {0}")]
    Store(#[source] codepilot::store::StoreError),
    /// A listener could not be set up.
    #[error("{what} {}: {source}", path.display())]
    Listen {
        /// What was being done.
        what: &'static str,
        /// The socket path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A `ws://` listener without a token.
    #[error("a ws:// listener needs a token (--token-file)")]
    NoToken,
    /// A TCP address could not be bound.
    #[error("binding {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Another daemon already serves on the socket.
    #[error("another daemon is serving on {}; stop it or pick another --listen path", .0.display())]
    InUse(PathBuf),
}

fn listen_error<'a>(
    what: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> ServeError + 'a {
    move |source| ServeError::Listen {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Binds `path`: a private directory, a stale socket replaced, a live one refused.
fn bind_unix(path: &Path) -> Result<tokio::net::UnixListener, ServeError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(listen_error("creating the socket directory", dir))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(listen_error("making the socket directory private", dir))?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(ServeError::InUse(path.to_path_buf()));
        }
        std::fs::remove_file(path).map_err(listen_error("removing the stale socket", path))?;
    }
    let listener = tokio::net::UnixListener::bind(path).map_err(listen_error("binding", path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(listen_error("making the socket private", path))?;
    Ok(listener)
}

impl Daemon {
    /// Serves every listener until the daemon shuts down (or, with stdio, until stdin closes). Bind errors are
    /// reported before anything is served.
    ///
    /// # Errors
    /// A listener that cannot be set up.
    pub async fn serve(&self, listen: Vec<Listen>) -> Result<(), ServeError> {
        let mut tasks = tokio::task::JoinSet::new();
        let mut unix = Vec::new();
        for l in &listen {
            if let Listen::Unix(path) = l {
                unix.push((bind_unix(path)?, path.clone()));
            }
        }
        for l in &listen {
            let Listen::Ws(addr) = l else { continue };
            let token = self.config().token.clone().ok_or(ServeError::NoToken)?;
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| ServeError::Bind {
                    addr: *addr,
                    source,
                })?;
            let bound = listener.local_addr().map_err(|source| ServeError::Bind {
                addr: *addr,
                source,
            })?;
            let state = std::sync::Arc::new(crate::web::WebState {
                daemon: self.clone(),
                token,
                origins: self.config().allowed_origins.clone(),
                addr: bound,
            });
            let app = crate::web::router(state);
            // Events are small writes that must go out at once, not wait (Nagle) for the peer's delayed ACK.
            let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
                let _ = tcp.set_nodelay(true);
            });
            let shutdown = self.shutdown_token();
            tracing::info!("serving http://{bound}");
            self.note_bound(bound);
            tasks.spawn(async move {
                let served = axum::serve(listener, app)
                    .with_graceful_shutdown(async move { shutdown.cancelled().await })
                    .await;
                if let Err(e) = served {
                    tracing::warn!("the HTTP listener on {bound} stopped: {e}");
                }
            });
        }
        for (listener, path) in unix {
            let daemon = self.clone();
            tasks.spawn(async move {
                let shutdown = daemon.shutdown_token();
                loop {
                    let accepted = tokio::select! {
                        () = shutdown.cancelled() => break,
                        accepted = listener.accept() => accepted,
                    };
                    match accepted {
                        Ok((stream, _)) => {
                            let (read, write) = stream.into_split();
                            tokio::spawn(serve_connection(daemon.clone(), read, write));
                        }
                        Err(e) => tracing::warn!("accepting on {}: {e}", path.display()),
                    }
                }
                let _ = std::fs::remove_file(&path);
            });
        }
        if listen.contains(&Listen::Stdio) {
            let daemon = self.clone();
            tasks.spawn(async move {
                serve_connection(daemon.clone(), tokio::io::stdin(), tokio::io::stdout()).await;
                daemon.shutdown().await;
            });
        }
        while tasks.join_next().await.is_some() {}
        Ok(())
    }
}
