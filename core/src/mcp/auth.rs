//! MCP authorization (OAuth 2.1, SPEC §18): a server's tokens kept in a 0600 file under `CODEPILOT_HOME`, the login
//! flow (discovery from the server's challenge, registration, authorization code with PKCE, the exchange), and the
//! authorized transport that refreshes tokens on its own. rmcp's `auth` module does the protocol; this module
//! decides where tokens live and who approves.

use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;

use rmcp::transport::auth::AuthError;
use rmcp::transport::auth::AuthorizationManager;
use rmcp::transport::auth::AuthorizationRequest;
use rmcp::transport::auth::AuthorizationSession;
use rmcp::transport::auth::CredentialStore;
use rmcp::transport::auth::StoredCredentials;

use crate::handlers::BoxFuture;

/// The redirect a login uses when the agent file names no port.
pub const DEFAULT_REDIRECT_PORT: u16 = 8976;

/// Who approves an authorization: given its URL, returns the URL the authorization server redirected back to
/// (`…/callback?code=…&state=…`). A person with a browser (`codepilot mcp login`), or a test that follows the
/// redirect.
pub trait Approver: Send + Sync {
    /// Has `auth_url`, the login to MCP server `server`, approved; `Err` says why not.
    fn approve<'a>(
        &'a self,
        server: &'a str,
        auth_url: &'a str,
        redirect_uri: &'a str,
    ) -> BoxFuture<'a, Result<String, String>>;

    /// Whether approving waits for a person: a runtime then logs in in the background, and the server offers no
    /// tools until the login ends. Default: `false`.
    fn waits_for_person(&self) -> bool {
        false
    }

    /// Whether it can approve right now (a host whose person comes later says `false` meanwhile). Default: `true`.
    fn available(&self) -> bool {
        true
    }
}

/// Follows the authorization URL's redirect without a browser: for authorization servers that approve at once
/// (the conformance suite's, a machine's own).
pub struct FollowRedirect;

impl Approver for FollowRedirect {
    fn approve<'a>(
        &'a self,
        _server: &'a str,
        auth_url: &'a str,
        redirect_uri: &'a str,
    ) -> BoxFuture<'a, Result<String, String>> {
        Box::pin(async move {
            crate::install_tls_provider();
            let client = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
            let response = client
                .get(auth_url)
                .send()
                .await
                .map_err(|e| format!("the authorization URL did not answer: {e}"))?;
            let location = response
                .headers()
                .get(http::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .map(str::to_owned);
            match location {
                Some(l) if l.starts_with(redirect_uri) => Ok(l),
                _ => Err(format!(
                    "the authorization server answered {} without redirecting back to {redirect_uri}; approve in a \
                     browser with `codepilot mcp login`",
                    response.status()
                )),
            }
        })
    }
}

/// Where the tokens of the server at `url` named `name` are kept: `mcp-auth/<name>-<hash of the URL>.json` under
/// `home` (a server renamed or moved to another URL logs in again).
#[must_use]
pub fn token_file(home: &Path, name: &str, url: &str) -> PathBuf {
    let hash = codepilot_store::checkpoint::content_hash(url.as_bytes());
    home.join("mcp-auth")
        .join(format!("{name}-{}.json", &hash[..12]))
}

/// A server's credentials in one JSON file, mode 0600, in a 0700 folder; written whole (temporary file, rename).
#[derive(Debug, Clone)]
pub struct FileCredentialStore {
    path: PathBuf,
}

impl FileCredentialStore {
    /// The store at `path`.
    #[must_use]
    pub fn new(path: PathBuf) -> Self {
        Self { path }
    }

    fn failed(&self, what: &str, e: &dyn std::fmt::Display) -> AuthError {
        AuthError::CredentialStoreError(format!("{what} {}: {e}", self.path.display()))
    }
}

#[async_trait::async_trait]
impl CredentialStore for FileCredentialStore {
    async fn load(&self) -> Result<Option<StoredCredentials>, AuthError> {
        match tokio::fs::read(&self.path).await {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| self.failed("cannot read the tokens in", &e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.failed("cannot read", &e)),
        }
    }

    async fn save(&self, credentials: StoredCredentials) -> Result<(), AuthError> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.write(&credentials))
            .await
            .map_err(|e| self.failed("cannot write", &e))?
    }

    async fn clear(&self) -> Result<(), AuthError> {
        match tokio::fs::remove_file(&self.path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.failed("cannot remove", &e)),
        }
    }

    /// Two processes sharing a server's tokens (two runs, a run and the daemon) refresh one at a time: a
    /// rotating refresh token used twice would log both out. An exclusive lock on `<file>.lock`, held through the
    /// refresh and its save.
    async fn acquire_refresh_guard(
        &self,
    ) -> Result<Option<rmcp::transport::auth::CredentialRefreshGuard>, AuthError> {
        let store = self.clone();
        let lock = tokio::task::spawn_blocking(move || {
            let path = store.path.with_extension("lock");
            store.folder()?;
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .mode(0o600)
                .open(&path)
                .map_err(|e| store.failed("cannot open the lock of", &e))?;
            file.lock().map_err(|e| store.failed("cannot lock", &e))?;
            Ok::<_, AuthError>(file)
        })
        .await
        .map_err(|e| self.failed("cannot lock", &e))??;
        Ok(Some(rmcp::transport::auth::CredentialRefreshGuard::new(
            lock,
        )))
    }
}

impl FileCredentialStore {
    /// The token folder, created 0700 — and made 0700 again when it exists wider (tokens are secrets).
    fn folder(&self) -> Result<&Path, AuthError> {
        use std::os::unix::fs::DirBuilderExt as _;
        use std::os::unix::fs::PermissionsExt as _;
        let Some(dir) = self.path.parent() else {
            return Err(self.failed("no folder for", &"the path has none"));
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| self.failed("cannot create the folder of", &e))?;
        let mode = std::fs::metadata(dir)
            .map_err(|e| self.failed("cannot read the folder of", &e))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| self.failed("cannot protect the folder of", &e))?;
        }
        Ok(dir)
    }

    /// Writes `credentials` whole: a 0600 temporary file in the 0700 folder, synced, renamed over the old one.
    fn write(&self, credentials: &StoredCredentials) -> Result<(), AuthError> {
        use std::io::Write as _;
        use std::os::unix::fs::PermissionsExt as _;
        let dir = self.folder()?;
        let json = serde_json::to_vec(credentials).map_err(|e| self.failed("cannot encode", &e))?;
        let mut file =
            tempfile::NamedTempFile::new_in(dir).map_err(|e| self.failed("cannot write", &e))?;
        file.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(|e| self.failed("cannot protect", &e))?;
        file.write_all(&json)
            .and_then(|()| file.as_file().sync_all())
            .map_err(|e| self.failed("cannot write", &e))?;
        file.persist(&self.path)
            .map_err(|e| self.failed("cannot write", &e.error))?;
        Ok(())
    }
}

/// How a login registers and what it asks for, from the server's `oauth:` section.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct LoginOptions {
    /// A pre-registered client id (else the client metadata document, else dynamic registration).
    pub client_id: Option<String>,
    /// The pre-registered client's secret.
    pub client_secret: Option<String>,
    /// The scopes to ask for (else those of the server's challenge or metadata).
    pub scopes: Vec<String>,
    /// The loopback port the authorization server redirects to.
    pub redirect_port: Option<u16>,
    /// An https URL of this client's metadata document, used as its id where the server supports that.
    pub client_metadata_url: Option<String>,
    /// Machine to machine: the client's own id and secret buy the token (`grant: client_credentials`), no person
    /// approves.
    pub client_credentials: bool,
}

impl std::fmt::Debug for LoginOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginOptions")
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("scopes", &self.scopes)
            .field("redirect_port", &self.redirect_port)
            .field("client_metadata_url", &self.client_metadata_url)
            .field("client_credentials", &self.client_credentials)
            .finish()
    }
}

impl LoginOptions {
    /// `http://127.0.0.1:PORT/callback`.
    #[must_use]
    pub fn redirect_uri(&self) -> String {
        format!(
            "http://127.0.0.1:{}/callback",
            self.redirect_port.unwrap_or(DEFAULT_REDIRECT_PORT)
        )
    }
}

/// What the server at `url` says to an unauthorized `initialize`: its `WWW-Authenticate` challenge when it answers
/// 401 or 403, `None` when it lets the client in.
///
/// # Errors
/// When the server cannot be reached or answers something else.
pub async fn challenge(
    url: &str,
    headers: &std::collections::BTreeMap<String, String>,
) -> Result<Option<String>, String> {
    crate::install_tls_provider();
    // The headers may carry a key: never follow the server elsewhere with them.
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
    let mut request = client
        .post(url)
        .header(http::header::ACCEPT, "application/json, text/event-stream")
        .json(&serde_json::json!({
            "jsonrpc": "2.0",
            "id": 0,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "codepilot", "version": env!("CARGO_PKG_VERSION")},
            },
        }));
    for (name, value) in headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let response = request
        .send()
        .await
        .map_err(|e| format!("{url} did not answer: {e}"))?;
    let status = response.status();
    if status == http::StatusCode::UNAUTHORIZED || status == http::StatusCode::FORBIDDEN {
        return Ok(Some(
            response
                .headers()
                .get(http::header::WWW_AUTHENTICATE)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("Bearer")
                .to_owned(),
        ));
    }
    if status.is_success() {
        return Ok(None);
    }
    Err(format!(
        "{url} answered {status} to an MCP initialize; is it an MCP server?"
    ))
}

/// A manager for the server at `url` whose tokens live in `store`.
async fn manager(url: &str, store: &Path) -> Result<AuthorizationManager, String> {
    crate::install_tls_provider();
    let mut manager = AuthorizationManager::new(url)
        .await
        .map_err(|e| format!("cannot start authorization for {url}: {e}"))?;
    manager.set_credential_store(FileCredentialStore::new(store.to_path_buf()));
    Ok(manager)
}

/// A manager for the server at `url` that has found its authorization server: from the `challenge` of a 401 or 403
/// when there was one, else the well-known locations.
async fn discovered(
    url: &str,
    store: &Path,
    challenge: Option<&str>,
) -> Result<AuthorizationManager, String> {
    let mut manager = manager(url, store).await?;
    let resolution = manager
        .resolve_metadata_from_challenge(challenge)
        .await
        .map_err(|e| format!("cannot find how {url} authorizes (its OAuth metadata): {e}"))?;
    manager.set_metadata(resolution.metadata);
    Ok(manager)
}

/// The stored authorization of the server at `url`, when a login left one (`None`: log in first).
///
/// # Errors
/// When the stored file cannot be read or the server's metadata cannot be fetched again.
pub async fn stored(url: &str, store: &Path) -> Result<Option<AuthorizationManager>, String> {
    if !store.exists() {
        return Ok(None);
    }
    let mut manager = manager(url, store).await?;
    match manager.initialize_from_store().await {
        Ok(true) => Ok(Some(manager)),
        Ok(false) => Ok(None),
        Err(e) => Err(format!("the stored login for {url} cannot be used: {e}")),
    }
}

/// Logs in to the server at `url`: discovery from its challenge (`WWW-Authenticate` of the 401 or 403, when there
/// was one), registration, the authorization `approver` approves, the code exchanged for tokens saved in `store`.
/// `scopes` (when not empty) replaces the options' (a step-up asks for more).
///
/// # Errors
/// Why the login failed, in words for a person.
pub async fn login(
    server: &str,
    url: &str,
    store: &Path,
    challenge: Option<&str>,
    options: &LoginOptions,
    scopes: &[String],
    approver: &Arc<dyn Approver>,
) -> Result<AuthorizationManager, String> {
    let manager = discovered(url, store, challenge).await?;
    let redirect_uri = options.redirect_uri();
    let mut request = AuthorizationRequest::new(redirect_uri.clone()).with_client_name("CodePilot");
    if let Some(challenge) = challenge {
        request = request.with_challenge(challenge);
    }
    let wanted: Vec<String> = if scopes.is_empty() {
        options.scopes.clone()
    } else {
        scopes.to_vec()
    };
    request = if wanted.is_empty() {
        request.with_initial_scope_selection()
    } else {
        request.with_scopes(wanted)
    };
    if let Some(id) = &options.client_id {
        request = request.with_preregistered_client(id.clone());
        if let Some(secret) = &options.client_secret {
            request = request.with_client_secret(secret.clone());
        }
    }
    if let Some(url) = &options.client_metadata_url {
        request = request.with_client_metadata_url(url.clone());
    }
    let session = AuthorizationSession::new(manager, request)
        .await
        .map_err(|(_, e)| format!("cannot register with the authorization server: {e}"))?;
    let callback = approver
        .approve(server, session.get_authorization_url(), &redirect_uri)
        .await?;
    if let Some(refusal) = refusal(&callback) {
        return Err(refusal);
    }
    session
        .handle_callback_url(&callback)
        .await
        .map_err(|e| format!("the authorization server's answer could not be used: {e}"))?;
    Ok(session.auth_manager)
}

/// Gets a token for the server at `url` with the client's own credentials (OAuth client credentials grant, SEP-1046):
/// no browser, no person; the token is kept in `store` like a login's.
///
/// # Errors
/// Without a client id and secret, or when the authorization server refuses them.
pub async fn client_credentials(
    url: &str,
    store: &Path,
    challenge: Option<&str>,
    options: &LoginOptions,
    scopes: &[String],
) -> Result<AuthorizationManager, String> {
    let (Some(client_id), Some(client_secret)) = (&options.client_id, &options.client_secret)
    else {
        return Err(
            "grant: client_credentials needs `client_id` and `client_secret_env` (a variable that is set)".to_owned(),
        );
    };
    let mut manager = discovered(url, store, challenge).await?;
    let config = rmcp::transport::auth::ClientCredentialsConfig::ClientSecret {
        client_id: client_id.clone(),
        client_secret: client_secret.clone(),
        scopes: if scopes.is_empty() {
            options.scopes.clone()
        } else {
            scopes.to_vec()
        },
        resource: Some(url.to_owned()),
    };
    manager
        .validate_client_credentials_metadata(&config)
        .and_then(|()| manager.configure_client_credentials(&config))
        .map_err(|e| {
            format!("the authorization server does not take these client credentials: {e}")
        })?;
    manager
        .exchange_client_credentials(&config)
        .await
        .map_err(|e| format!("the authorization server refused the client credentials: {e}"))?;
    Ok(manager)
}

/// The value of query parameter `key` in `url` (decoded), for an approver matching a callback to its request's
/// `state`.
#[must_use]
pub fn query_param(url: &str, key: &str) -> Option<String> {
    let url = url::Url::parse(url).ok()?;
    url.query_pairs()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

/// The refusal a callback URL carries (`error=…&error_description=…`), in words.
fn refusal(callback: &str) -> Option<String> {
    let url = url::Url::parse(callback).ok()?;
    let mut error = None;
    let mut description = None;
    for (key, value) in url.query_pairs() {
        match key.as_ref() {
            "error" => error = Some(value.into_owned()),
            "error_description" => description = Some(value.into_owned()),
            _ => {}
        }
    }
    let error = error?;
    Some(match description {
        Some(d) => format!("the authorization was refused: {error} ({d})"),
        None => format!("the authorization was refused: {error}"),
    })
}

/// The scopes a `WWW-Authenticate` challenge asks for (`scope="a b"`), empty when it names none.
#[must_use]
pub fn challenged_scopes(challenge: &str) -> Vec<String> {
    let Some(start) = challenge.find("scope=\"") else {
        return Vec::new();
    };
    let rest = &challenge[start + "scope=\"".len()..];
    rest.split('"')
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_come_from_the_challenge() {
        assert_eq!(
            challenged_scopes(
                r#"Bearer error="insufficient_scope", scope="mcp:basic mcp:write", resource_metadata="http://x/""#
            ),
            ["mcp:basic", "mcp:write"]
        );
        assert!(challenged_scopes("Bearer error=\"invalid_token\"").is_empty());
        assert_eq!(
            refusal("http://127.0.0.1:1/callback?error=access_denied&error_description=no")
                .as_deref(),
            Some("the authorization was refused: access_denied (no)")
        );
        assert_eq!(refusal("http://127.0.0.1:1/callback?code=a&state=b"), None);
    }
}
