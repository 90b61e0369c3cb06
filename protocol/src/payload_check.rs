//! Static payload check (SPEC §4.3): before anything runs, the `write_file` calls visible in the control code
//! must consume exactly the payload blocks of the answer, in order, with matching `filename=`.
//!
//! A small Python-aware scanner finds the calls: it skips strings (single, double, triple-quoted, with any
//! `r`/`b`/`f`/`u`/`t` prefix) and comments, tracks brackets, and splits the code into logical lines with their
//! indentation. For each `write_file(...)` call it reads the literal path, the literal `mode` and, for
//! `multi_edit`, the number of elements of a literal `edits=[...]` list.
//!
//! **What is not checked.** A call whose effect cannot be known statically is *unresolved*: a non-literal path or
//! mode, a non-literal `edits`, `*args`/`**kwargs`, a call inside a `for`/`while` loop, a `def`/`class`/`lambda`,
//! an `if`/`elif`/`else`/`except`/`match`/`case` branch or a comprehension/conditional expression, and a bare
//! `write_file` reference (aliasing). The calls *before* the first unresolved one are still checked strictly (they
//! always run, in text order, before it); from the first unresolved call on, neither the count nor the filenames
//! are checked, and the runtime reports an error at run time if a call finds no payload left. Inline content
//! (`content=`, `payload=`, `text=`, `data=`) and a literal invalid mode are rejected wherever they appear.

use crate::error::ParseError;
use crate::payload::Payload;

/// Checks that the `write_file` calls in `code` consume exactly `payloads`, in order (see the module docs for
/// what counts as statically visible). `parse` calls this; it is public for runtimes that build payloads
/// themselves.
///
/// # Errors
/// [`ParseError::InlineContent`], [`ParseError::InvalidMode`], [`ParseError::PayloadFilenameMismatch`],
/// [`ParseError::MissingPayload`] or [`ParseError::ExtraPayload`], naming the first mismatch.
pub fn check_payloads(code: &str, payloads: &[Payload]) -> Result<(), ParseError> {
    let calls = find_calls(code)?;
    let mut expected: Vec<(String, String)> = Vec::new();
    let mut resolved_all = true;
    for call in &calls {
        match &call.effect {
            CallEffect::Consumes { path, mode, count } => {
                for k in 0..*count {
                    let consumer = if mode == "multi_edit" {
                        format!(
                            "range {} of {count} of write_file('{path}', mode='multi_edit') on control block line {}",
                            k + 1,
                            call.line
                        )
                    } else {
                        format!("write_file('{path}') on control block line {}", call.line)
                    };
                    expected.push((path.clone(), consumer));
                }
            }
            CallEffect::Unresolved => {
                resolved_all = false;
                break;
            }
        }
    }
    for (i, (path, consumer)) in expected.iter().enumerate() {
        let Some(payload) = payloads.get(i) else {
            return Err(ParseError::MissingPayload {
                index: i + 1,
                path: path.clone(),
                consumer: consumer.clone(),
                expected: expected.len(),
                got: payloads.len(),
                unannotated_blocks: 0,
            });
        };
        if normalise_path(path) != normalise_path(&payload.filename) {
            return Err(ParseError::PayloadFilenameMismatch {
                index: i + 1,
                expected: path.clone(),
                got: payload.filename.clone(),
                consumer: consumer.clone(),
                payload_line: payload.line,
            });
        }
    }
    if resolved_all && let Some(extra) = payloads.get(expected.len()) {
        return Err(ParseError::ExtraPayload {
            index: expected.len() + 1,
            filename: extra.filename.clone(),
            payload_line: extra.line,
            expected: expected.len(),
            got: payloads.len(),
        });
    }
    Ok(())
}

/// Paths compare with `\` as `/` and without leading `./`.
fn normalise_path(p: &str) -> String {
    let mut s = p.trim().replace('\\', "/");
    while let Some(rest) = s.strip_prefix("./") {
        s = rest.to_string();
    }
    s
}

/// One `write_file` occurrence in the control code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Call {
    /// 1-based line in the control code.
    pub line: usize,
    pub effect: CallEffect,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CallEffect {
    /// Always runs (when the block gets that far) and consumes `count` payloads for `path`.
    Consumes {
        path: String,
        mode: String,
        count: usize,
    },
    /// Cannot be known statically.
    Unresolved,
}

const MODES: [&str; 5] = ["w", "a", "edit", "insert", "multi_edit"];
const INLINE_CONTENT: [&str; 4] = ["content", "payload", "text", "data"];
const POSITIONAL: [&str; 6] = [
    "path",
    "mode",
    "start_line",
    "end_line",
    "after_line",
    "edits",
];

/// Finds every `write_file` occurrence, in text order.
pub(crate) fn find_calls(code: &str) -> Result<Vec<Call>, ParseError> {
    let tokens = tokenize(code);
    let mut calls = Vec::new();
    // Open compound statements: (indent, makes its body conditional or repeated).
    let mut stack: Vec<(usize, bool)> = Vec::new();
    for line in logical_lines(&tokens) {
        let Some(first) = line.tokens.first() else {
            continue;
        };
        let indent = first.indent;
        while stack.last().is_some_and(|(i, _)| *i >= indent) {
            stack.pop();
        }
        let mut head = first.ident();
        if head == Some("async") {
            head = line.tokens.get(1).and_then(Tok::ident);
        }
        let has_top_colon = line
            .tokens
            .iter()
            .any(|t| t.depth == first.depth && t.is_op(":"));
        let header = match head {
            Some("for" | "while" | "def" | "class" | "if" | "elif" | "else" | "except") => {
                Some(true)
            }
            Some("match" | "case") if has_top_colon => Some(true),
            Some("try" | "finally" | "with") => Some(false),
            _ => None,
        };
        let conditional_expr = line.tokens.iter().skip(1).any(|t| {
            matches!(
                t.ident(),
                Some("if" | "for" | "lambda" | "and" | "or" | "while")
            )
        });
        let line_unsafe = stack.iter().any(|(_, u)| *u) || header == Some(true) || conditional_expr;
        if let Some(u) = header {
            stack.push((indent, u || stack.iter().any(|(_, p)| *p)));
        }
        for (k, tok) in line.tokens.iter().enumerate() {
            if tok.ident() != Some("write_file") {
                continue;
            }
            if k > 0 && line.tokens[k - 1].is_op(".") {
                continue;
            }
            let mut call = analyse_call(line.tokens, k)?;
            if line_unsafe {
                call.effect = CallEffect::Unresolved;
            }
            calls.push(call);
        }
    }
    Ok(calls)
}

fn analyse_call(tokens: &[Tok], at: usize) -> Result<Call, ParseError> {
    let line = tokens[at].line;
    let unresolved = Call {
        line,
        effect: CallEffect::Unresolved,
    };
    let Some(open) = tokens.get(at + 1).filter(|t| t.kind == TokKind::Open('(')) else {
        return Ok(unresolved);
    };
    let args = split_args(&tokens[at + 2..], open.depth);
    let mut path: Option<Option<String>> = None;
    let mut mode: Option<Option<String>> = None;
    let mut edits: Option<&[Tok]> = None;
    let mut resolvable = true;
    for (i, arg) in args.iter().enumerate() {
        let (name, value) = match arg {
            [a, b, rest @ ..] if a.ident().is_some() && b.is_op("=") => {
                (a.ident().unwrap_or(""), rest)
            }
            [a, ..] if a.is_op("*") || a.is_op("**") => {
                resolvable = false;
                continue;
            }
            _ => match POSITIONAL.get(i) {
                Some(n) => (*n, *arg),
                None => {
                    resolvable = false;
                    continue;
                }
            },
        };
        if INLINE_CONTENT.contains(&name) {
            return Err(ParseError::InlineContent {
                call_line: line,
                argument: name.to_string(),
            });
        }
        match name {
            "path" => path = Some(literal(value)),
            "mode" => mode = Some(literal(value)),
            "edits" => edits = Some(value),
            _ => {}
        }
    }
    let mode = match mode {
        None => Some("w".to_string()),
        Some(m) => m,
    };
    if let Some(m) = &mode
        && !MODES.contains(&m.as_str())
    {
        return Err(ParseError::InvalidMode {
            call_line: line,
            mode: m.clone(),
        });
    }
    let (Some(Some(path)), Some(mode), true) = (path, mode, resolvable) else {
        return Ok(unresolved);
    };
    let count = if mode == "multi_edit" {
        match edits.and_then(literal_list_len) {
            Some(n) => n,
            None => return Ok(unresolved),
        }
    } else {
        1
    };
    Ok(Call {
        line,
        effect: CallEffect::Consumes { path, mode, count },
    })
}

/// Splits the tokens after a call's `(` into its arguments, up to the matching `)`.
fn split_args(tokens: &[Tok], open_depth: usize) -> Vec<&[Tok]> {
    let inner = open_depth + 1;
    let end = tokens
        .iter()
        .position(|t| t.depth == open_depth && matches!(t.kind, TokKind::Close(_)))
        .unwrap_or(tokens.len());
    let body = &tokens[..end];
    body.split(|t| t.depth == inner && t.is_op(","))
        .filter(|a| !a.is_empty())
        .collect()
}

/// The value of an argument that is exactly one plain string literal.
fn literal(value: &[Tok]) -> Option<String> {
    match value {
        [t] => match &t.kind {
            TokKind::Str(v) => v.clone(),
            _ => None,
        },
        _ => None,
    }
}

/// Number of elements of an argument that is exactly one list or tuple display, not a comprehension.
fn literal_list_len(value: &[Tok]) -> Option<usize> {
    let (first, last) = (value.first()?, value.last()?);
    if !matches!(first.kind, TokKind::Open('[' | '('))
        || !matches!(last.kind, TokKind::Close(_))
        || value.len() < 2
    {
        return None;
    }
    let inner = &value[1..value.len() - 1];
    if inner.iter().any(|t| {
        t.depth < first.depth + 1 || (t.depth == first.depth + 1 && t.ident() == Some("for"))
    }) {
        return None;
    }
    if inner
        .iter()
        .any(|t| t.depth == first.depth + 1 && (t.is_op("*") || t.is_op("**")))
    {
        return None;
    }
    Some(
        inner
            .split(|t| t.depth == first.depth + 1 && t.is_op(","))
            .filter(|e| !e.is_empty())
            .count(),
    )
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum TokKind {
    Ident(String),
    /// A string literal; `Some(value)` when its value is known statically (not an f-string with fields, not bytes).
    Str(Option<String>),
    Open(char),
    Close(char),
    Op(String),
    Other,
    /// End of a logical line.
    Newline,
}

#[derive(Debug, Clone)]
struct Tok {
    kind: TokKind,
    /// 1-based physical line of the token start.
    line: usize,
    /// Bracket depth before this token (for `Close`, the depth after it).
    depth: usize,
    /// Indentation of the logical line the token belongs to.
    indent: usize,
}

impl Tok {
    fn ident(&self) -> Option<&str> {
        match &self.kind {
            TokKind::Ident(s) => Some(s),
            _ => None,
        }
    }
    fn is_op(&self, op: &str) -> bool {
        matches!(&self.kind, TokKind::Op(o) if o == op)
    }
}

struct LogicalLine<'a> {
    tokens: &'a [Tok],
}

fn logical_lines(tokens: &[Tok]) -> impl Iterator<Item = LogicalLine<'_>> {
    tokens
        .split(|t| t.kind == TokKind::Newline)
        .map(|tokens| LogicalLine { tokens })
}

fn is_ident_start(c: char) -> bool {
    c == '_' || c.is_alphabetic()
}

fn is_ident_char(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

const TWO_CHAR_OPS: [&str; 17] = [
    "==", "!=", "<=", ">=", ":=", "->", "**", "//", "+=", "-=", "*=", "/=", "%=", "&=", "|=", "^=",
    "@=",
];

/// Tokenises Python source well enough to find calls and their arguments. Never fails: unterminated strings end
/// at the end of the line (single-quoted) or of the input (triple-quoted).
fn tokenize(code: &str) -> Vec<Tok> {
    let chars: Vec<char> = code.chars().collect();
    let mut toks: Vec<Tok> = Vec::new();
    let mut i = 0;
    let mut line = 1;
    let mut depth: usize = 0;
    let mut at_line_start = true;
    let mut col = 0;
    let mut indent = 0;
    let mut line_has_tokens = false;
    while i < chars.len() {
        let c = chars[i];
        if at_line_start {
            match c {
                ' ' => {
                    col += 1;
                    i += 1;
                    continue;
                }
                '\t' => {
                    col = (col / 8 + 1) * 8;
                    i += 1;
                    continue;
                }
                _ => {
                    at_line_start = false;
                    if !line_has_tokens {
                        indent = col;
                    }
                }
            }
        }
        let mut push = |kind: TokKind, depth: usize, line: usize| {
            toks.push(Tok {
                kind,
                line,
                depth,
                indent,
            });
        };
        match c {
            '\n' => {
                if depth == 0 && line_has_tokens {
                    push(TokKind::Newline, depth, line);
                    line_has_tokens = false;
                }
                line += 1;
                i += 1;
                at_line_start = depth == 0;
                col = 0;
                continue;
            }
            ' ' | '\t' | '\r' | '\x0c' => {
                i += 1;
                continue;
            }
            '#' => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
                continue;
            }
            '\\' if chars.get(i + 1) == Some(&'\n') => {
                i += 2;
                line += 1;
                continue;
            }
            '\\' if chars.get(i + 1) == Some(&'\r') && chars.get(i + 2) == Some(&'\n') => {
                i += 3;
                line += 1;
                continue;
            }
            _ => {}
        }
        line_has_tokens = true;
        let start_line = line;
        if c == '"' || c == '\'' {
            let (value, next, lines) = scan_string(&chars, i, "");
            push(TokKind::Str(value), depth, start_line);
            line += lines;
            i = next;
        } else if is_ident_start(c) {
            let start = i;
            while i < chars.len() && is_ident_char(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let lower = word.to_ascii_lowercase();
            let is_prefix = lower.len() <= 2 && lower.chars().all(|p| "rbfut".contains(p));
            if is_prefix && matches!(chars.get(i), Some('"' | '\'')) {
                let (value, next, lines) = scan_string(&chars, i, &lower);
                push(TokKind::Str(value), depth, start_line);
                line += lines;
                i = next;
            } else {
                push(TokKind::Ident(word), depth, start_line);
            }
        } else if c.is_ascii_digit() {
            while i < chars.len() && (is_ident_char(chars[i]) || chars[i] == '.') {
                i += 1;
            }
            push(TokKind::Other, depth, start_line);
        } else if matches!(c, '(' | '[' | '{') {
            push(TokKind::Open(c), depth, start_line);
            depth += 1;
            i += 1;
        } else if matches!(c, ')' | ']' | '}') {
            depth = depth.saturating_sub(1);
            push(TokKind::Close(c), depth, start_line);
            i += 1;
        } else {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            if TWO_CHAR_OPS.contains(&two.as_str()) {
                push(TokKind::Op(two), depth, start_line);
                i += 2;
            } else {
                push(TokKind::Op(c.to_string()), depth, start_line);
                i += 1;
            }
        }
    }
    if line_has_tokens {
        toks.push(Tok {
            kind: TokKind::Newline,
            line,
            depth,
            indent,
        });
    }
    toks
}

/// Scans a string literal whose opening quote is at `chars[at]`. Returns its static value (if any), the index
/// after it and the number of newlines inside it.
fn scan_string(chars: &[char], at: usize, prefix: &str) -> (Option<String>, usize, usize) {
    let q = chars[at];
    let triple = chars.get(at + 1) == Some(&q) && chars.get(at + 2) == Some(&q);
    let raw = prefix.contains('r');
    let mut i = at + if triple { 3 } else { 1 };
    let mut value = String::new();
    let mut newlines = 0;
    let mut terminated = false;
    while i < chars.len() {
        let c = chars[i];
        if c == '\\' {
            let next = chars.get(i + 1).copied();
            if next == Some('\n') {
                newlines += 1;
            }
            if raw {
                value.push('\\');
                if let Some(n) = next {
                    value.push(n);
                }
            } else {
                match next {
                    Some('n') => value.push('\n'),
                    Some('t') => value.push('\t'),
                    Some('\n') => {}
                    Some(n @ ('\\' | '\'' | '"')) => value.push(n),
                    Some(n) => {
                        value.push('\\');
                        value.push(n);
                    }
                    None => value.push('\\'),
                }
            }
            i += 2;
            continue;
        }
        if c == q && (!triple || (chars.get(i + 1) == Some(&q) && chars.get(i + 2) == Some(&q))) {
            i += if triple { 3 } else { 1 };
            terminated = true;
            break;
        }
        if c == '\n' {
            if !triple {
                break;
            }
            newlines += 1;
        }
        value.push(c);
        i += 1;
    }
    let is_bytes = prefix.contains('b');
    let has_fields = (prefix.contains('f') || prefix.contains('t')) && value.contains('{');
    let known = terminated && !is_bytes && !has_fields;
    (known.then_some(value), i.min(chars.len()), newlines)
}

#[cfg(test)]
#[path = "payload_check_tests.rs"]
mod tests;
