use std::time::Duration;
use std::time::SystemTime;

use pretty_assertions::assert_eq;
use reqwest::header::HeaderMap;
use reqwest::header::HeaderValue;

use super::*;
use crate::config::ProviderKind;

fn headers(retry_after: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        reqwest::header::RETRY_AFTER,
        HeaderValue::from_str(retry_after).unwrap(),
    );
    h
}

#[test]
fn retry_after_seconds_and_dates() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    assert_eq!(
        parse_retry_after(&headers("3"), now),
        Some(Duration::from_secs(3))
    );
    assert_eq!(
        parse_retry_after(&headers(" 0.5 "), now),
        Some(Duration::from_millis(500))
    );
    let later = httpdate::fmt_http_date(now + Duration::from_secs(42));
    assert_eq!(
        parse_retry_after(&headers(&later), now),
        Some(Duration::from_secs(42))
    );
    let earlier = httpdate::fmt_http_date(now - Duration::from_secs(42));
    assert_eq!(
        parse_retry_after(&headers(&earlier), now),
        Some(Duration::ZERO)
    );
    assert_eq!(parse_retry_after(&headers("soon"), now), None);
    assert_eq!(parse_retry_after(&headers("-1"), now), None);
    assert_eq!(parse_retry_after(&HeaderMap::new(), now), None);
}

#[test]
fn backoff_grows_with_jitter_and_is_capped() {
    let policy = RetryPolicy {
        max_retries: 10,
        initial_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_millis(1000),
    };
    for _ in 0..50 {
        let first = backoff_delay(&policy, 1, None);
        assert!(
            first >= Duration::from_millis(50) && first <= Duration::from_millis(100),
            "{first:?}"
        );
        let third = backoff_delay(&policy, 3, None);
        assert!(
            third >= Duration::from_millis(200) && third <= Duration::from_millis(400),
            "{third:?}"
        );
        let late = backoff_delay(&policy, 30, None);
        assert!(
            late >= Duration::from_millis(500) && late <= Duration::from_millis(1000),
            "{late:?}"
        );
    }
    assert_eq!(
        backoff_delay(&policy, 1, Some(Duration::from_millis(700))),
        Duration::from_millis(700)
    );
    assert_eq!(
        backoff_delay(&policy, 1, Some(Duration::from_secs(3600))),
        Duration::from_millis(1000)
    );
}

#[test]
fn status_errors_carry_hints_and_retryability() {
    let cfg = ProviderConfig::new(ProviderKind::Anthropic, "claude-x");
    let e = status_error(&cfg, 401, "  {\"error\":\n  \"bad key\"}  ", None);
    assert!(!e.is_retryable());
    insta::assert_snapshot!("status_401_anthropic", e.to_string());
    let e = status_error(&cfg, 404, "not found", None);
    insta::assert_snapshot!("status_404_anthropic", e.to_string());
    let e = status_error(&cfg, 429, "slow down", Some(Duration::from_secs(2)));
    assert!(e.is_retryable());
    assert_eq!(e.retry_after(), Some(Duration::from_secs(2)));
    assert!(status_error(&cfg, 500, "", None).is_retryable());
    assert!(status_error(&cfg, 529, "", None).is_retryable());
    assert!(status_error(&cfg, 408, "", None).is_retryable());
    assert!(!status_error(&cfg, 400, "", None).is_retryable());
    let local = ProviderConfig::new(ProviderKind::Ollama, "llama3");
    insta::assert_snapshot!(
        "status_401_ollama",
        status_error(&local, 401, "", None).to_string()
    );
}

#[test]
fn excerpt_trims_and_truncates() {
    assert_eq!(excerpt("  a \n\n b  "), "a b");
    assert_eq!(excerpt(""), "(empty body)");
    let long = "x".repeat(1000);
    let e = excerpt(&long);
    assert_eq!(e.chars().count(), BODY_EXCERPT_CHARS + 1);
    assert!(e.ends_with('…'));
}
