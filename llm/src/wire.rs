//! Messages serialised once, and request bodies assembled from them by copying bytes.
//!
//! A long session sends the same history again with every step. Escaping each message's text as a JSON string is
//! done once, when the [`WireMessage`] is made; a request body is the provider's small head object plus those
//! pieces, so the work per request grows only with the bytes copied.

use std::sync::Arc;

use codepilot_protocol::Message;
use codepilot_protocol::Role;
use serde_json::Value;

use crate::error::LlmError;
use crate::error::Result;

/// One conversation message ready for the wire: its text and that text as a JSON string literal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireMessage {
    role: Role,
    content: Arc<str>,
    json: Arc<str>,
}

impl WireMessage {
    /// A message with `content`, escaped once here.
    #[must_use]
    pub fn new(role: Role, content: impl Into<Arc<str>>) -> Self {
        let content = content.into();
        let json = json_string(&content);
        Self {
            role,
            content,
            json: json.into(),
        }
    }

    /// Who wrote it.
    #[must_use]
    pub fn role(&self) -> Role {
        self.role
    }

    /// The text.
    #[must_use]
    pub fn content(&self) -> &str {
        &self.content
    }

    /// The text as a JSON string literal, quotes included.
    #[must_use]
    pub fn json(&self) -> &str {
        &self.json
    }
}

impl From<&Message> for WireMessage {
    fn from(m: &Message) -> Self {
        Self::new(m.role, m.content.as_str())
    }
}

/// `s` as a JSON string literal.
pub(crate) fn json_string(s: &str) -> String {
    // Serialising a `str` cannot fail; the fallback keeps the body valid JSON regardless.
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_owned())
}

/// Builds `{"messages":[…], …head}`: `head` is the rest of the body (an object), `first` an optional leading
/// message already serialised (OpenAI's system message), and each message is written plain or, when its index is in
/// `marks`, as one text block with an Anthropic cache breakpoint.
pub(crate) fn assemble(
    head: &Value,
    first: Option<&str>,
    messages: &[WireMessage],
    marks: &[usize],
) -> Result<Vec<u8>> {
    let head = serde_json::to_vec(head)
        .map_err(|e| LlmError::InvalidConfig(format!("cannot encode the request: {e}")))?;
    let pieces: usize = messages.iter().map(|m| m.json.len() + 64).sum();
    let mut out = Vec::with_capacity(head.len() + pieces + first.map_or(0, str::len) + 16);
    out.extend_from_slice(b"{\"messages\":[");
    let mut comma = false;
    if let Some(first) = first {
        out.extend_from_slice(first.as_bytes());
        comma = true;
    }
    for (i, m) in messages.iter().enumerate() {
        if comma {
            out.push(b',');
        }
        comma = true;
        out.extend_from_slice(b"{\"role\":\"");
        out.extend_from_slice(m.role.as_str().as_bytes());
        if marks.contains(&i) {
            out.extend_from_slice(b"\",\"content\":[{\"type\":\"text\",\"text\":");
            out.extend_from_slice(m.json.as_bytes());
            out.extend_from_slice(b",\"cache_control\":{\"type\":\"ephemeral\"}}]}");
        } else {
            out.extend_from_slice(b"\",\"content\":");
            out.extend_from_slice(m.json.as_bytes());
            out.push(b'}');
        }
    }
    out.push(b']');
    match head.strip_prefix(b"{") {
        Some(rest) if rest != b"}" => {
            out.push(b',');
            out.extend_from_slice(rest);
        }
        _ => out.push(b'}'),
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use pretty_assertions::assert_eq;
    use serde_json::json;

    use super::*;

    #[test]
    fn assembled_body_is_the_json_it_stands_for() {
        let m = [
            WireMessage::new(Role::User, "a \"quoted\"\n✓ \u{0}"),
            WireMessage::new(Role::Assistant, "b"),
        ];
        let body = assemble(&json!({"model": "m", "n": 1}), None, &m, &[1]).unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v,
            json!({
                "model": "m",
                "n": 1,
                "messages": [
                    {"role": "user", "content": "a \"quoted\"\n✓ \u{0}"},
                    {"role": "assistant", "content": [
                        {"type": "text", "text": "b", "cache_control": {"type": "ephemeral"}}
                    ]},
                ],
            })
        );
        let body = assemble(
            &json!({}),
            Some(r#"{"role":"system","content":"s"}"#),
            &[],
            &[],
        )
        .unwrap();
        assert_eq!(
            serde_json::from_slice::<Value>(&body).unwrap(),
            json!({"messages": [{"role": "system", "content": "s"}]})
        );
    }
}
