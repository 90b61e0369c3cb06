//! Opening a store: `file:///dir`, or `s3://bucket/prefix` configured from the `AWS_*` variables, whose endpoint
//! settings are checked here so a bad one is an error that names the variable, not a failed upload later.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use object_store::aws::AmazonS3ConfigKey;

use super::SnapshotError;
use super::SnapshotOptions;
use super::SnapshotStore;

/// The URL forms [`SnapshotStore::open`] accepts, for error messages.
const FORMS: &str = "use file:///ABSOLUTE/DIR or s3://BUCKET/PREFIX";

/// The variables that set the S3 endpoint, as object_store reads them.
const ENDPOINT_VARS: [&str; 3] = ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ENDPOINT"];

/// Retries for a store that does not answer: a few quick ones, so a turn's end is never held for minutes.
fn retry_config() -> object_store::RetryConfig {
    object_store::RetryConfig {
        backoff: object_store::BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            base: 2.0,
        },
        max_retries: 3,
        retry_timeout: Duration::from_secs(60),
    }
}

impl SnapshotStore {
    /// Opens the store at `url`: `file:///absolute/dir` (created if missing) or `s3://bucket/prefix`, configured
    /// from the usual `AWS_*` variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
    /// `AWS_REGION`, `AWS_ENDPOINT_URL` for S3-compatible stores). An `http://` endpoint is allowed unless
    /// `AWS_ALLOW_HTTP=false`; `AWS_ALLOW_HTTP=true`, what MinIO's documentation has its users set, works too.
    ///
    /// # Errors
    /// [`SnapshotError::Url`] for a URL of another kind or a bad S3 configuration (an endpoint that is not an
    /// `http://` or `https://` URL, an `http://` one with `AWS_ALLOW_HTTP=false`, an `AWS_ALLOW_HTTP` that is
    /// not a boolean), naming the variable and what to set; [`SnapshotError::Io`] when a directory cannot be
    /// created.
    pub fn open(url: &str, opts: SnapshotOptions) -> Result<Self, SnapshotError> {
        let bad = |reason: String| SnapshotError::Url {
            url: url.to_owned(),
            reason,
        };
        let objects: Arc<dyn ObjectStore> = if let Some(path) = url.strip_prefix("file://") {
            let dir = PathBuf::from(path);
            if !dir.is_absolute() {
                return Err(bad(format!(
                    "a file:// store needs an absolute path; {FORMS}"
                )));
            }
            crate::create_private_dir(&dir).map_err(|source| SnapshotError::Io {
                op: "creating the snapshot directory",
                path: dir.clone(),
                source,
            })?;
            Arc::new(
                object_store::local::LocalFileSystem::new_with_prefix(&dir)
                    .map_err(|e| bad(e.to_string()))?
                    .with_automatic_cleanup(true)
                    .with_fsync(true),
            )
        } else if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(bad(format!("the bucket name is missing; {FORMS}")));
            }
            let vars: Vec<(String, String)> = match &opts.env {
                Some(vars) => vars.clone(),
                None => std::env::vars_os()
                    .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                    .collect(),
            };
            let s3 = s3_builder(bucket, &vars)
                .map_err(bad)?
                .build()
                .map_err(|e| {
                    bad(format!(
                        "the S3 settings in the AWS_* variables are unusable: {e}"
                    ))
                })?;
            let prefix = prefix.trim_matches('/');
            if prefix.is_empty() {
                Arc::new(s3)
            } else {
                Arc::new(object_store::prefix::PrefixStore::new(s3, prefix))
            }
        } else {
            return Err(bad(format!("unknown scheme; {FORMS}")));
        };
        let state_dir = match &opts.state_dir {
            Some(dir) => dir.clone(),
            None => crate::codepilot_home()?.join("workspaces"),
        };
        crate::create_private_dir(&state_dir).map_err(|source| SnapshotError::Io {
            op: "creating the snapshot state directory",
            path: state_dir.clone(),
            source,
        })?;
        Ok(Self {
            objects,
            url: url.trim_end_matches('/').to_owned(),
            opts,
            state_dir,
        })
    }
}

/// The S3 client of `bucket` as the `AWS_*` variables in `vars` configure it (empty ones count as unset), after
/// checking its endpoint settings; `Err` says what is wrong and what to set.
///
/// Our client options (timeouts) come first and the variables after, so the variables that set client options
/// (`AWS_ALLOW_HTTP`, proxies) are not overwritten.
fn s3_builder(bucket: &str, vars: &[(String, String)]) -> Result<AmazonS3Builder, String> {
    let var = |name: &str| {
        vars.iter()
            .find(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    };
    let allow_http = var("AWS_ALLOW_HTTP").map(parse_bool).transpose()?;
    // The first endpoint variable set is the one used (as the AWS SDKs rank them); only it is checked.
    let endpoint = ENDPOINT_VARS
        .iter()
        .find_map(|name| var(name).map(|value| (*name, value)));
    let plain_http = match endpoint {
        Some((name, value)) => check_endpoint(name, value, allow_http)?,
        None => false,
    };
    crate::install_tls_provider();
    let mut builder = AmazonS3Builder::new()
        .with_url(format!("s3://{bucket}"))
        .with_retry(retry_config())
        .with_client_options(
            object_store::ClientOptions::new()
                .with_connect_timeout(Duration::from_secs(5))
                .with_timeout(Duration::from_secs(120)),
        );
    for (key, value) in vars {
        // The endpoint and AWS_ALLOW_HTTP are set below, as checked, whatever order the environment lists them in.
        if key.starts_with("AWS_")
            && !value.is_empty()
            && key != "AWS_ALLOW_HTTP"
            && !ENDPOINT_VARS.contains(&key.as_str())
            && let Ok(config) = key.to_ascii_lowercase().parse::<AmazonS3ConfigKey>()
        {
            builder = builder.with_config(config, value);
        }
    }
    if let Some((_, value)) = endpoint {
        builder = builder.with_endpoint(value);
    }
    Ok(builder.with_allow_http(allow_http.unwrap_or(plain_http)))
}

/// `AWS_ALLOW_HTTP` as object_store reads a boolean.
fn parse_bool(value: &str) -> Result<bool, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "on" | "yes" | "y" => Ok(true),
        "0" | "false" | "off" | "no" | "n" => Ok(false),
        _ => Err(format!(
            "AWS_ALLOW_HTTP is {value:?}, which is not true or false; set AWS_ALLOW_HTTP=true to use an http:// \
             endpoint (AWS_ENDPOINT_URL), false to refuse one, or unset it"
        )),
    }
}

/// Checks the endpoint variable `name`: an `http://` or `https://` URL with a host, and `http://` only when
/// `allow_http` is not `Some(false)`. `Ok(true)` for an `http://` endpoint.
fn check_endpoint(name: &str, endpoint: &str, allow_http: Option<bool>) -> Result<bool, String> {
    let what = "set it to the store's address, e.g. https://s3.example.com or http://127.0.0.1:9000 (with \
                AWS_ALLOW_HTTP=true), or unset it for AWS S3";
    let parsed = reqwest::Url::parse(endpoint)
        .map_err(|e| format!("{name} is {endpoint:?}, which is not a URL ({e}); {what}"))?;
    let http = match parsed.scheme() {
        "https" => false,
        "http" => true,
        scheme => {
            return Err(format!(
                "{name} is {endpoint:?}, whose scheme {scheme}:// is not http:// or https://; {what}"
            ));
        }
    };
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(format!(
            "{name} is {endpoint:?}, which names no host; {what}"
        ));
    }
    if http && allow_http == Some(false) {
        return Err(format!(
            "{name} is {endpoint:?}, an http:// endpoint, but AWS_ALLOW_HTTP=false refuses plain HTTP; set \
             AWS_ALLOW_HTTP=true (or unset it) to use it, or use an https:// endpoint"
        ));
    }
    Ok(http)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn http_endpoints_work_with_or_without_aws_allow_http() {
        for allow in [None, Some("true"), Some("TRUE"), Some("1"), Some("")] {
            let mut v = vars(&[("AWS_ENDPOINT_URL", "http://127.0.0.1:9000")]);
            if let Some(allow) = allow {
                v.push(("AWS_ALLOW_HTTP".to_owned(), allow.to_owned()));
            }
            let builder = s3_builder("b", &v).unwrap();
            let allowed = builder
                .get_config_value(&AmazonS3ConfigKey::Client(
                    object_store::ClientConfigKey::AllowHttp,
                ))
                .unwrap();
            assert!(parse_bool(&allowed).unwrap(), "{allow:?}: {allowed}");
            assert!(builder.build().is_ok(), "{allow:?}");
        }
    }

    #[test]
    fn the_first_endpoint_variable_is_the_one_used_and_checked_in_any_order() {
        let pairs = [
            ("AWS_ENDPOINT_URL", "http://stale:9000"),
            ("AWS_ENDPOINT_URL_S3", "https://s3.example.com"),
            ("AWS_ALLOW_HTTP", "false"),
        ];
        for reversed in [false, true] {
            let mut v = vars(&pairs);
            if reversed {
                v.reverse();
            }
            let builder = s3_builder("b", &v).unwrap();
            assert_eq!(
                builder
                    .get_config_value(&AmazonS3ConfigKey::Endpoint)
                    .as_deref(),
                Some("https://s3.example.com")
            );
        }
    }

    #[test]
    fn unusable_endpoint_settings_say_what_to_set() {
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str]);
        let cases: [Case<'_>; 5] = [
            (
                &[("AWS_ENDPOINT_URL", "ftp://127.0.0.1:9000")],
                &["AWS_ENDPOINT_URL", "ftp://", "http:// or https://"],
            ),
            (
                &[("AWS_ENDPOINT_URL_S3", "127.0.0.1:9000")],
                &[
                    "AWS_ENDPOINT_URL_S3",
                    "127.0.0.1:9000",
                    "https://s3.example.com",
                ],
            ),
            (
                &[("AWS_ENDPOINT", "http://")],
                &["AWS_ENDPOINT", "not a URL", "http://127.0.0.1:9000"],
            ),
            (
                &[
                    ("AWS_ENDPOINT_URL", "http://minio:9000"),
                    ("AWS_ALLOW_HTTP", "false"),
                ],
                &[
                    "AWS_ALLOW_HTTP=false",
                    "set AWS_ALLOW_HTTP=true",
                    "https://",
                ],
            ),
            (
                &[("AWS_ALLOW_HTTP", "maybe")],
                &["AWS_ALLOW_HTTP is \"maybe\"", "true or false"],
            ),
        ];
        for (pairs, says) in cases {
            let err = s3_builder("b", &vars(pairs)).unwrap_err();
            for part in says {
                assert!(err.contains(part), "{pairs:?}: {part:?} in {err}");
            }
        }
    }
}
