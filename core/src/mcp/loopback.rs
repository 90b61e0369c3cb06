//! A login a person approves in a browser: the host shows the authorization URL (prints it, opens a browser, sends
//! it to a UI), and the authorization server's redirect comes back to a listener on the loopback interface.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt as _;
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpListener;

use super::auth::Approver;
use super::auth::query_param;
use crate::handlers::BoxFuture;

/// How long a login waits for the browser to come back.
pub const LOGIN_WAIT: Duration = Duration::from_secs(300);

/// How long one connection to the loopback redirect may take to send its request.
const CALLBACK_READ: Duration = Duration::from_secs(5);

/// Shows a person the authorization URL of an MCP server that needs a login: the CLI prints it and opens a browser,
/// the daemon sends `mcp/login` to its clients, the Python package calls its `on_mcp_auth` hooks.
pub trait LoginHandler: Send + Sync {
    /// Shows `url`, the login to MCP server `server`. Returns at once; the login waits for the redirect.
    fn open(&self, server: &str, url: &str);

    /// The login to `server` ended (approved, refused or timed out): a host that still shows its URL takes it
    /// down. Default: nothing.
    fn finished(&self, _server: &str) {}

    /// Whether anyone can be shown a URL now; a login waits until then (the server says `codepilot mcp login`
    /// meanwhile). Default: `true`.
    fn available(&self) -> bool {
        true
    }
}

impl<F> LoginHandler for F
where
    F: Fn(&str, &str) + Send + Sync,
{
    fn open(&self, server: &str, url: &str) {
        self(server, url);
    }
}

/// An [`Approver`] for a person with a browser: the host's [`LoginHandler`] shows the URL, and the redirect is
/// served on the loopback address of the login's `redirect_uri` until the browser comes back (at most
/// [`LOGIN_WAIT`]).
pub struct LoopbackApprover {
    handler: Arc<dyn LoginHandler>,
}

impl LoopbackApprover {
    /// Shows logins through `handler`.
    #[must_use]
    pub fn new(handler: Arc<dyn LoginHandler>) -> Self {
        Self { handler }
    }
}

impl Approver for LoopbackApprover {
    fn approve<'a>(
        &'a self,
        server: &'a str,
        auth_url: &'a str,
        redirect_uri: &'a str,
    ) -> BoxFuture<'a, Result<String, String>> {
        Box::pin(async move {
            let (address, path) = redirect_uri
                .strip_prefix("http://")
                .and_then(|rest| rest.split_once('/'))
                .ok_or_else(|| format!("the redirect {redirect_uri} is not a loopback http URL"))?;
            let state = query_param(auth_url, "state")
                .ok_or_else(|| "the authorization URL carries no state".to_owned())?;
            let listener = TcpListener::bind(address).await.map_err(|e| {
                format!(
                    "cannot listen on {address} for the browser's return ({e}): another login may be waiting \
                     there (finish it, or wait {} s), else pick another port with `oauth: {{redirect_port: N}}`",
                    LOGIN_WAIT.as_secs()
                )
            })?;
            self.handler.open(server, auth_url);
            let came_back = tokio::time::timeout(
                LOGIN_WAIT,
                wait_for_callback(&listener, address, &format!("/{path}"), &state),
            )
            .await;
            self.handler.finished(server);
            came_back.map_err(|_| {
                format!(
                    "no answer from the browser within {} s",
                    LOGIN_WAIT.as_secs()
                )
            })?
        })
    }

    fn waits_for_person(&self) -> bool {
        true
    }

    fn available(&self) -> bool {
        self.handler.available()
    }
}

/// Serves the loopback redirect until a request for `path` carrying this login's `state` arrives; returns its full
/// URL. Other requests (a favicon, another login's callback) get a 404 and the wait goes on.
async fn wait_for_callback(
    listener: &TcpListener,
    address: &str,
    path: &str,
    state: &str,
) -> Result<String, String> {
    loop {
        let (mut stream, _) = listener
            .accept()
            .await
            .map_err(|e| format!("the loopback redirect stopped: {e}"))?;
        // A browser's idle preconnect must not hold up the real callback.
        let Ok(Some(line)) = tokio::time::timeout(CALLBACK_READ, request_line(&mut stream)).await
        else {
            continue;
        };
        let target = line
            .strip_prefix("GET ")
            .and_then(|rest| rest.split(' ').next())
            .unwrap_or("");
        let full = format!("http://{address}{target}");
        let ours = target.split('?').next() == Some(path)
            && query_param(&full, "state").as_deref() == Some(state);
        if !ours {
            let _ = stream
                .write_all(
                    b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                )
                .await;
            continue;
        }
        let body = "CodePilot received the authorization; you can close this tab.";
        let reply = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: \
             close\r\n\r\n{body}",
            body.len()
        );
        let _ = stream.write_all(reply.as_bytes()).await;
        return Ok(full);
    }
}

/// The first line of an HTTP request, read until its end however the bytes arrive (at most 8 KiB).
async fn request_line(stream: &mut tokio::net::TcpStream) -> Option<String> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0_u8; 1024];
    while buf.len() < 8192 {
        let n = stream.read(&mut chunk).await.ok().filter(|n| *n > 0)?;
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(2).position(|w| w == b"\r\n") {
            return Some(String::from_utf8_lossy(&buf[..end]).into_owned());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use tokio::io::AsyncReadExt as _;
    use tokio::io::AsyncWriteExt as _;

    use super::*;

    #[derive(Default)]
    struct Shown {
        opened: Mutex<Vec<(String, String)>>,
        finished: Mutex<Vec<String>>,
    }

    impl LoginHandler for Shown {
        fn open(&self, server: &str, url: &str) {
            self.opened
                .lock()
                .unwrap()
                .push((server.to_owned(), url.to_owned()));
        }

        fn finished(&self, server: &str) {
            self.finished.lock().unwrap().push(server.to_owned());
        }
    }

    /// Sends `parts` (one request, possibly split) to `port`; the status line of the answer.
    async fn get(port: u16, parts: &[&str]) -> String {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        for part in parts {
            stream.write_all(part.as_bytes()).await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        answer.lines().next().unwrap_or_default().to_owned()
    }

    #[tokio::test]
    async fn only_this_logins_callback_ends_the_wait() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let shown = Arc::new(Shown::default());
        let approver = LoopbackApprover::new(Arc::clone(&shown) as Arc<dyn LoginHandler>);
        let redirect = format!("http://127.0.0.1:{port}/callback");
        let auth_url = "https://auth.example/authorize?client_id=c&state=S1";
        let approving = approver.approve("linear", auth_url, &redirect);
        let browser = async {
            while shown.opened.lock().unwrap().is_empty() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let mut statuses = Vec::new();
            for target in [
                "/favicon.ico",
                "/callback?code=x&state=OTHER",
                "/callbackX?code=x&state=S1",
            ] {
                statuses.push(get(port, &[&format!("GET {target} HTTP/1.1\r\n\r\n")]).await);
            }
            // The real one, its request line split across two writes.
            statuses.push(
                get(
                    port,
                    &["GET /callback?code=c", "&state=S1 HTTP/1.1\r\n\r\n"],
                )
                .await,
            );
            statuses
        };
        let (approved, statuses) = tokio::join!(approving, browser);
        assert_eq!(
            approved.unwrap(),
            format!("http://127.0.0.1:{port}/callback?code=c&state=S1")
        );
        assert_eq!(
            statuses,
            [
                "HTTP/1.1 404 Not Found",
                "HTTP/1.1 404 Not Found",
                "HTTP/1.1 404 Not Found",
                "HTTP/1.1 200 OK"
            ]
        );
        assert_eq!(
            *shown.opened.lock().unwrap(),
            [("linear".to_owned(), auth_url.to_owned())]
        );
        assert_eq!(*shown.finished.lock().unwrap(), ["linear"]);
        // A URL without a state is refused before anything is shown.
        let refused = approver
            .approve("linear", "https://auth.example/authorize", &redirect)
            .await;
        assert_eq!(
            refused.unwrap_err(),
            "the authorization URL carries no state"
        );
    }
}
