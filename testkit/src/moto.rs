//! [`MotoServer`]: a real S3-compatible server for tests — moto's server from PyPI (`moto[server]`), which
//! `.ci/run` installs — on a free loopback port, with one bucket made.

use std::io;
use std::io::Read as _;
use std::io::Write as _;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Child;
use std::process::Command;
use std::process::Stdio;
use std::time::Duration;
use std::time::Instant;

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

impl MotoServer {
    /// Starts moto with bucket `bucket`. `Ok(None)` when moto is not installed and `CI` is unset (the caller skips
    /// its test, saying so); under `CI` a missing moto is an error, so CI never skips silently.
    ///
    /// # Errors
    /// moto missing under CI, or it does not start within 30 s.
    pub fn start(bucket: &str) -> io::Result<Option<Self>> {
        let Some(exe) = executable() else {
            if std::env::var_os("CI").is_some() {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    "moto_server not found under CI: .ci/run must install moto[server] and set CODEPILOT_TEST_MOTO",
                ));
            }
            return Ok(None);
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = Command::new(&exe)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("starting {}: {e}", exe.display())))?;
        let server = Self {
            child,
            port,
            bucket: bucket.to_owned(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match server.request("PUT", &format!("/{bucket}")) {
                Ok(200) => return Ok(Some(server)),
                Ok(status) => {
                    return Err(io::Error::other(format!(
                        "moto refused to create bucket {bucket}: HTTP {status}"
                    )));
                }
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100))
                }
                Err(e) => return Err(e),
            }
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
