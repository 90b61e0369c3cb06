//! [`MotoServer`]: a real S3-compatible server for tests — moto's server from PyPI (`moto[server]`), which
//! `scripts/moto.sh` installs — on a loopback port it picks itself, with one bucket made.

use std::io;
use std::io::BufRead as _;
use std::io::BufReader;
use std::io::Read as _;
use std::io::Write as _;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Child;
use std::process::ChildStderr;
use std::process::Command;
use std::process::Stdio;
use std::time::Duration;

/// A running `moto_server`, killed on drop.
#[derive(Debug)]
pub struct MotoServer {
    child: Child,
    port: u16,
    bucket: String,
}

/// The `moto_server` executable: `CODEPILOT_TEST_MOTO`, else `moto_server` on `PATH`.
fn executable() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("CODEPILOT_TEST_MOTO").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("moto_server"))
            .find(|p| p.is_file())
    })
}

/// Reads moto's stderr until it says where it listens (werkzeug's ` * Running on http://127.0.0.1:PORT`, printed
/// once the socket listens) and returns the port; a thread keeps draining the rest, so moto's request log never
/// fills the pipe.
fn listening_port(stderr: ChildStderr) -> io::Result<u16> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stderr).lines();
        let mut seen = Vec::new();
        let port = lines.by_ref().map_while(Result::ok).find_map(|line| {
            let port = port_in(&line);
            seen.push(line);
            port
        });
        let _ = tx.send(port.ok_or_else(|| {
            format!(
                "moto exited without saying where it listens: {}",
                seen.join(" | ")
            )
        }));
        // Drain until moto exits.
        for _ in lines.map_while(Result::ok) {}
    });
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(Ok(port)) => Ok(port),
        Ok(Err(e)) => Err(io::Error::other(e)),
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "moto did not say where it listens within 30 s",
        )),
    }
}

/// The port in werkzeug's ` * Running on http://127.0.0.1:PORT` line.
fn port_in(line: &str) -> Option<u16> {
    let rest = &line[line.find("Running on http://")? + "Running on http://".len()..];
    let addr = rest.split_whitespace().next()?;
    addr.rsplit_once(':')?.1.trim_end_matches('/').parse().ok()
}

impl MotoServer {
    /// Starts moto with bucket `bucket`. `Ok(None)` when moto is not installed: the test is skipped through
    /// [`service::missing`](crate::service::missing), which fails it under CI instead.
    ///
    /// moto binds a port of its own choosing (`-p 0`) and prints it; nothing else can take the port in between.
    ///
    /// # Errors
    /// moto does not start or report its port within 30 s, or refuses to create the bucket.
    pub fn start(bucket: &str) -> io::Result<Option<Self>> {
        let Some(exe) = executable() else {
            crate::service::missing(
                "moto's S3 server (moto_server is not on PATH and CODEPILOT_TEST_MOTO is not set)",
                "run `export CODEPILOT_TEST_MOTO=\"$(bash scripts/moto.sh | tail -n 1)\"`",
            );
            return Ok(None);
        };
        let mut child = Command::new(&exe)
            .args(["-H", "127.0.0.1", "-p", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("starting {}: {e}", exe.display())))?;
        let port = match child.stderr.take().map(listening_port) {
            Some(Ok(port)) => port,
            Some(Err(e)) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(io::Error::other(format!("{}: {e}", exe.display())));
            }
            None => return Err(io::Error::other("moto's stderr was not piped")),
        };
        let server = Self {
            child,
            port,
            bucket: bucket.to_owned(),
        };
        match server.request("PUT", &format!("/{bucket}"))? {
            200 => Ok(Some(server)),
            status => Err(io::Error::other(format!(
                "moto refused to create bucket {bucket}: HTTP {status}"
            ))),
        }
    }

    /// A signed S3 client for the bucket (moto refuses unsigned writes to existing objects).
    fn client(&self) -> io::Result<object_store::aws::AmazonS3> {
        let _already_installed = rustls::crypto::ring::default_provider().install_default();
        object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(&self.bucket)
            .with_endpoint(self.endpoint())
            .with_allow_http(true)
            .with_access_key_id("testing")
            .with_secret_access_key("testing")
            .with_region("us-east-1")
            .build()
            .map_err(io::Error::other)
    }

    /// Replaces object `key` of the bucket with `body`, behind the client's back (a corrupted snapshot).
    ///
    /// # Errors
    /// The request fails.
    pub async fn put_object(&self, key: &str, body: &[u8]) -> io::Result<()> {
        use object_store::ObjectStoreExt as _;
        self.client()?
            .put(&object_store::path::Path::from(key), body.to_vec().into())
            .await
            .map(drop)
            .map_err(io::Error::other)
    }

    /// Deletes object `key` of the bucket (a lost snapshot).
    ///
    /// # Errors
    /// The request fails.
    pub async fn delete_object(&self, key: &str) -> io::Result<()> {
        use object_store::ObjectStoreExt as _;
        self.client()?
            .delete(&object_store::path::Path::from(key))
            .await
            .map_err(io::Error::other)
    }

    /// Sends a bodiless, unsigned request (moto accepts them) and returns the status code.
    fn request(&self, method: &str, path: &str) -> io::Result<u16> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        response
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| io::Error::other(format!("bad HTTP response: {response:.80}")))
    }

    /// `http://127.0.0.1:PORT`.
    #[must_use]
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The bucket made at start.
    #[must_use]
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// `s3://BUCKET/prefix`.
    #[must_use]
    pub fn url(&self, prefix: &str) -> String {
        format!("s3://{}/{prefix}", self.bucket)
    }

    /// The `AWS_*` variables a client needs for this server: its endpoint, dummy keys, a region.
    #[must_use]
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
            ("AWS_REGION", "us-east-1".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::port_in;

    #[test]
    fn the_port_comes_from_werkzeugs_startup_line() {
        assert_eq!(port_in(" * Running on http://127.0.0.1:37297"), Some(37297));
        assert_eq!(
            port_in("Running on http://127.0.0.1:8080/ (Press CTRL+C)"),
            Some(8080)
        );
        assert_eq!(port_in("Press CTRL+C to quit"), None);
    }
}
