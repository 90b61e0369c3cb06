//! Validated session ids.

use std::fmt;

use serde::Deserialize;
use serde::Deserializer;
use serde::Serialize;
use serde::Serializer;

/// Longest accepted session id, in bytes.
pub const MAX_SESSION_ID_LEN: usize = 128;

/// A session id: 1 to 128 characters out of `A-Z a-z 0-9 . _ -`, not starting with `.`.
///
/// The character set keeps ids safe as file and folder names (`<dir>/<id>.json`, `checkpoints/<id>/`; never `.` or
/// `..`) and as SQL text keys. Serialises as a
/// plain string and validates when parsed or deserialised.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(String);

impl SessionId {
    /// Validates `id`.
    ///
    /// # Errors
    /// [`InvalidSessionId`] when `id` is empty, longer than 128 bytes, starts with `.` or holds a character other
    /// than ASCII letters, digits, `.`, `_` and `-`. It converts into
    /// [`StoreError::InvalidId`](crate::StoreError::InvalidId), so `?` works in functions returning the store's
    /// [`Result`](crate::Result).
    pub fn new(id: impl Into<String>) -> Result<Self, InvalidSessionId> {
        let id = id.into();
        let valid = !id.is_empty()
            && !id.starts_with('.')
            && id.len() <= MAX_SESSION_ID_LEN
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if valid {
            Ok(Self(id))
        } else {
            Err(InvalidSessionId { id })
        }
    }

    /// A fresh, time-ordered id (UUID v7, hyphenated lowercase).
    #[must_use]
    pub fn generate() -> Self {
        Self(uuid::Uuid::now_v7().to_string())
    }

    /// The id as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for SessionId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Serialize for SessionId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for SessionId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Self::new(s).map_err(serde::de::Error::custom)
    }
}

/// Text that is not a valid [`SessionId`], as [`SessionId::new`] rejects it. Converts into
/// [`StoreError::InvalidId`](crate::StoreError::InvalidId), which says the same.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", describe_invalid(id))]
pub struct InvalidSessionId {
    id: String,
}

impl InvalidSessionId {
    /// The rejected text.
    #[must_use]
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The rejected text, owned.
    #[must_use]
    pub fn into_id(self) -> String {
        self.id
    }
}

/// What is wrong with the session id `id` and what a valid one looks like: the one message of
/// [`InvalidSessionId`] and [`StoreError::InvalidId`](crate::StoreError::InvalidId).
pub(crate) fn describe_invalid(id: &str) -> String {
    format!(
        "invalid session id {id:?}: use 1 to 128 characters out of letters, digits, '.', '_' and '-', not starting with '.'"
    )
}
