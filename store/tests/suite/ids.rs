//! Session id validation and serde.

use std::str::FromStr;

use codepilot_store::SessionId;
use codepilot_store::StoreError;
use pretty_assertions::assert_eq;

#[test]
fn valid_and_invalid_ids() {
    for ok in [
        "a",
        "A-z_0.9",
        &"x".repeat(128),
        "0194b0c8-7c4a-7000-8000-000000000000",
    ] {
        assert_eq!(SessionId::new(ok).unwrap().as_str(), ok);
    }
    for bad in [
        "",
        "../etc/passwd",
        ".",
        "..",
        ".hidden",
        "a/b",
        "a b",
        "é",
        &"x".repeat(129),
        "a\0",
    ] {
        let err = SessionId::new(bad).unwrap_err();
        assert!(err.to_string().starts_with("invalid session id"), "{err}");
    }
    insta::assert_snapshot!(
        "invalid_id_message",
        SessionId::new("a/b").unwrap_err().to_string()
    );
}

#[test]
fn parse_gives_a_store_error_and_new_its_own_with_one_message() {
    let parsed = "a/b".parse::<SessionId>().unwrap_err();
    assert!(
        matches!(&parsed, StoreError::InvalidId { id } if id == "a/b"),
        "{parsed:?}"
    );
    let rejected = SessionId::new("a/b").unwrap_err();
    assert_eq!(rejected.id(), "a/b");
    assert_eq!(rejected.to_string(), parsed.to_string());
    let converted = StoreError::from(rejected);
    assert_eq!(converted.to_string(), parsed.to_string());
    assert!(matches!(converted, StoreError::InvalidId { id } if id == "a/b"));
}

#[test]
fn generated_ids_are_valid_uuid_v7_and_unique() {
    let a = SessionId::generate();
    let b = SessionId::generate();
    assert_ne!(a, b);
    assert_eq!(SessionId::from_str(a.as_str()).unwrap(), a);
    assert_eq!(a.as_str().len(), 36);
    assert_eq!(&a.as_str()[14..15], "7", "version nibble of a UUID v7");
}

#[test]
fn serde_as_plain_string_and_validated() {
    let id = SessionId::new("s-1").unwrap();
    assert_eq!(serde_json::to_string(&id).unwrap(), "\"s-1\"");
    assert_eq!(serde_json::from_str::<SessionId>("\"s-1\"").unwrap(), id);
    assert!(serde_json::from_str::<SessionId>("\"../x\"").is_err());
    assert_eq!(id.to_string(), "s-1");
}
