//! Words for the ranked index: identifiers split into their parts, lower-cased, with plural `s` dropped.

/// Words that carry no meaning in a question about code.
const STOPWORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "by", "code", "does", "for", "from", "how", "in",
    "is", "it", "of", "on", "or", "that", "the", "this", "to", "what", "where", "which", "with",
];

/// Calls `emit` with each word of `text`: every identifier lower-cased whole, then its `snake_case` and `camelCase`
/// parts when it has more than one.
pub(crate) fn words(text: &str, mut emit: impl FnMut(&str)) {
    let mut buf = String::new();
    let mut parts: Vec<&str> = Vec::new();
    for word in text.split(|c: char| !(c.is_alphanumeric() || c == '_')) {
        let word = word.trim_matches('_');
        if word.len() < 2 || word.len() > 64 || word.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        normalize(word, &mut buf);
        emit(&buf);
        parts.clear();
        split_parts(word, |part| parts.push(part));
        if parts.len() > 1 {
            for part in parts.iter().filter(|p| p.len() >= 2) {
                normalize(part, &mut buf);
                emit(&buf);
            }
        }
    }
}

/// The words of a question, stopwords left out.
pub(crate) fn query_words(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    words(text, |w| {
        if !STOPWORDS.contains(&w) && !out.iter().any(|o| o == w) {
            out.push(w.to_owned());
        }
    });
    out
}

fn normalize(word: &str, buf: &mut String) {
    buf.clear();
    if word.is_ascii() {
        buf.push_str(word);
        buf.make_ascii_lowercase();
    } else {
        buf.extend(word.chars().flat_map(char::to_lowercase));
    }
    if buf.len() > 3 && buf.ends_with('s') && !buf.ends_with("ss") && !buf.ends_with("us") {
        buf.pop();
    }
}

/// Splits `parseHTTPRequest_v2` into `parse`, `HTTP`, `Request`, `v2`.
fn split_parts<'a>(word: &'a str, mut emit: impl FnMut(&'a str)) {
    for piece in word.split('_').filter(|p| !p.is_empty()) {
        if piece
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        {
            emit(piece);
            continue;
        }
        let chars: Vec<(usize, char)> = piece.char_indices().collect();
        let mut start = 0;
        for i in 1..chars.len() {
            let (at, c) = chars[i];
            let prev = chars[i - 1].1;
            let next_lower = chars.get(i + 1).is_some_and(|(_, n)| n.is_lowercase());
            let boundary = (prev.is_lowercase() && c.is_uppercase())
                || (prev.is_uppercase() && c.is_uppercase() && next_lower);
            if boundary {
                emit(&piece[start..at]);
                start = at;
            }
        }
        emit(&piece[start..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(text: &str) -> Vec<String> {
        let mut out = Vec::new();
        words(text, |w| out.push(w.to_owned()));
        out
    }

    #[test]
    fn identifiers_are_split_into_their_parts() {
        assert_eq!(
            all("parseHTTPRequest user_logins x"),
            [
                "parsehttprequest",
                "parse",
                "http",
                "request",
                "user_login",
                "user",
                "login"
            ]
        );
        assert_eq!(all("__init__ 42 class"), ["init", "class"]);
    }

    #[test]
    fn questions_drop_stopwords_and_repeats() {
        assert_eq!(
            query_words("where is the user login validation, login"),
            ["user", "login", "validation"]
        );
    }
}
