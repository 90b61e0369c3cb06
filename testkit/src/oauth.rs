//! An MCP server behind the MCP authorization spec, for tests: protected-resource metadata, an authorization server
//! (dynamic registration, authorization code approved at once and exchanged only with its PKCE S256 verifier,
//! refresh tokens that work once, short-lived access tokens the test can revoke), and a small streamable-HTTP MCP endpoint with one tool, `whoami`, that answers only with a
//! valid token.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;

use axum::Form;
use axum::Json;
use axum::Router;
use axum::extract::Query;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::response::Response;
use axum::routing::get;
use axum::routing::post;
use serde_json::Value;
use serde_json::json;

#[derive(Debug, Default)]
struct Tokens {
    /// Access tokens and when they expire (unix seconds).
    access: HashMap<String, u64>,
    /// Refresh tokens still valid.
    refresh: Vec<String>,
    /// Codes issued and not yet exchanged, with their PKCE challenge.
    codes: HashMap<String, String>,
    next: u64,
    /// Every token request's grant type, in order.
    grants: Vec<String>,
    /// Every access token presented to the MCP endpoint.
    presented: Vec<String>,
}

#[derive(Debug)]
struct Shared {
    base: String,
    lifetime_s: u64,
    tokens: Mutex<Tokens>,
}

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, Tokens> {
    shared
        .tokens
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The server. Dropping it stops it.
#[derive(Debug)]
pub struct OAuthMcpServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl OAuthMcpServer {
    /// Starts on `127.0.0.1`; access tokens live `lifetime_s` seconds.
    ///
    /// # Errors
    /// When the listener cannot be bound.
    pub async fn start(lifetime_s: u64) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            base: format!("http://{addr}"),
            lifetime_s,
            tokens: Mutex::new(Tokens::default()),
        });
        let app = Router::new()
            .route(
                "/.well-known/oauth-protected-resource/mcp",
                get(resource_metadata),
            )
            .route(
                "/.well-known/oauth-authorization-server",
                get(server_metadata),
            )
            .route("/register", post(register))
            .route("/authorize", get(authorize))
            .route("/token", post(token))
            .route("/mcp", post(mcp).get(no_stream).delete(end_session))
            .with_state(Arc::clone(&shared));
        let task = tokio::spawn(async move {
            // Serving ends only with the test.
            let _served = axum::serve(listener, app).await;
        });
        Ok(Self { addr, shared, task })
    }

    /// The MCP endpoint, `http://127.0.0.1:PORT/mcp`.
    #[must_use]
    pub fn mcp_url(&self) -> String {
        format!("http://{}/mcp", self.addr)
    }

    /// The grant type of every token request so far (`authorization_code`, `refresh_token`).
    #[must_use]
    pub fn grants(&self) -> Vec<String> {
        lock(&self.shared).grants.clone()
    }

    /// Every access token presented to the MCP endpoint so far.
    #[must_use]
    pub fn presented(&self) -> Vec<String> {
        lock(&self.shared).presented.clone()
    }

    /// Revokes every access and refresh token: the next request needs a new login.
    pub fn revoke_all(&self) {
        let mut tokens = lock(&self.shared);
        tokens.access.clear();
        tokens.refresh.clear();
    }
}

impl Drop for OAuthMcpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn resource_metadata(State(s): State<Arc<Shared>>) -> Json<Value> {
    Json(json!({"resource": format!("{}/mcp", s.base), "authorization_servers": [s.base]}))
}

async fn server_metadata(State(s): State<Arc<Shared>>) -> Json<Value> {
    Json(json!({
        "issuer": s.base,
        "authorization_endpoint": format!("{}/authorize", s.base),
        "token_endpoint": format!("{}/token", s.base),
        "registration_endpoint": format!("{}/register", s.base),
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["none"],
    }))
}

async fn register(Json(body): Json<Value>) -> (StatusCode, Json<Value>) {
    (
        StatusCode::CREATED,
        Json(json!({
            "client_id": "test-client",
            "redirect_uris": body.get("redirect_uris").cloned().unwrap_or(json!([])),
            "token_endpoint_auth_method": "none",
        })),
    )
}

async fn authorize(
    State(s): State<Arc<Shared>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let (Some(redirect), Some(state)) = (q.get("redirect_uri"), q.get("state")) else {
        return (
            StatusCode::BAD_REQUEST,
            "redirect_uri and state are required",
        )
            .into_response();
    };
    let (Some("S256"), Some(challenge)) = (
        q.get("code_challenge_method").map(String::as_str),
        q.get("code_challenge"),
    ) else {
        return (StatusCode::BAD_REQUEST, "PKCE S256 is required").into_response();
    };
    let code = {
        let mut tokens = lock(&s);
        tokens.next += 1;
        let code = format!("code-{}", tokens.next);
        tokens.codes.insert(code.clone(), challenge.clone());
        code
    };
    let location = format!("{redirect}?code={code}&state={state}");
    (
        StatusCode::FOUND,
        [(axum::http::header::LOCATION, location)],
    )
        .into_response()
}

async fn token(
    State(s): State<Arc<Shared>>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let grant = form.get("grant_type").cloned().unwrap_or_default();
    let mut tokens = lock(&s);
    tokens.grants.push(grant.clone());
    let valid = match grant.as_str() {
        "authorization_code" => {
            // The code once, and only with the verifier of the challenge it was issued for (PKCE S256).
            let code = form.get("code").cloned().unwrap_or_default();
            let challenge = tokens.codes.remove(&code);
            let verifier = form.get("code_verifier").map(String::as_bytes);
            challenge
                .zip(verifier)
                .is_some_and(|(challenge, verifier)| {
                    use base64::Engine as _;
                    use sha2::Digest as _;
                    base64::engine::general_purpose::URL_SAFE_NO_PAD
                        .encode(sha2::Sha256::digest(verifier))
                        == challenge
                })
        }
        "refresh_token" => {
            // Rotated: a refresh token works once.
            let refresh = form.get("refresh_token").cloned().unwrap_or_default();
            let known = tokens.refresh.contains(&refresh);
            tokens.refresh.retain(|r| *r != refresh);
            known
        }
        _ => false,
    };
    if !valid {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_grant"})),
        )
            .into_response();
    }
    tokens.next += 1;
    let access = format!("access-{}-{}", tokens.next, now());
    let refresh = format!("refresh-{}", tokens.next);
    let expires = now() + s.lifetime_s;
    tokens.access.insert(access.clone(), expires);
    tokens.refresh.push(refresh.clone());
    Json(json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": s.lifetime_s,
        "refresh_token": refresh,
    }))
    .into_response()
}

fn unauthorized(s: &Shared) -> Response {
    let challenge = format!(
        "Bearer error=\"invalid_token\", resource_metadata=\"{}/.well-known/oauth-protected-resource/mcp\"",
        s.base
    );
    (
        StatusCode::UNAUTHORIZED,
        [(axum::http::header::WWW_AUTHENTICATE, challenge)],
        Json(json!({"error": "invalid_token"})),
    )
        .into_response()
}

async fn mcp(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::to_owned);
    {
        let mut tokens = lock(&s);
        let Some(token) = token else {
            drop(tokens);
            return unauthorized(&s);
        };
        tokens.presented.push(token.clone());
        if tokens
            .access
            .get(&token)
            .is_none_or(|expires| *expires <= now())
        {
            drop(tokens);
            return unauthorized(&s);
        }
    }
    let id = body.get("id").cloned();
    let method = body
        .get("method")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let result = match method {
        "initialize" => json!({
            "protocolVersion": "2025-11-25",
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "codepilot-oauth-test", "version": "1"},
        }),
        "tools/list" => json!({"tools": [{
            "name": "whoami",
            "description": "Says the token was accepted.",
            "inputSchema": {"type": "object", "properties": {}},
        }]}),
        "tools/call" => {
            json!({"content": [{"type": "text", "text": "authorized"}], "isError": false})
        }
        _ if id.is_none() => return StatusCode::ACCEPTED.into_response(),
        _ => json!({}),
    };
    Json(json!({"jsonrpc": "2.0", "id": id, "result": result})).into_response()
}

async fn no_stream() -> StatusCode {
    StatusCode::METHOD_NOT_ALLOWED
}

async fn end_session() -> StatusCode {
    StatusCode::OK
}
