//! A payload block as [`parse`](crate::parse()) returns it and [`check_payloads`](crate::check_payloads) checks it.

/// A payload block: content that a `write_file` call consumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    /// The `filename=` value, unquoted.
    pub filename: String,
    /// The content, exactly as between the fences except that CRLF line endings become LF (and the opening
    /// fence's indentation, if any, is removed from each line, as CommonMark does). Every line ends with `\n`;
    /// an empty block gives `""` (writes an empty file).
    pub content: String,
    /// 1-based line in the answer of the opening fence (0 for payloads built by hand).
    pub line: usize,
}
