//! Database URLs as people write them: SQLAlchemy's forms (what the Python original's users have in their
//! configuration) as well as sqlx's.
//!
//! | written | means |
//! |---|---|
//! | `sqlite:///./x.db`, `sqlite:///x.db`, `sqlite:///data/x.db` | a file relative to the current directory (SQLAlchemy) |
//! | `sqlite:////abs/x.db` | the absolute path `/abs/x.db` (SQLAlchemy) |
//! | `sqlite://x.db`, `sqlite://./x.db`, `sqlite:x.db` | relative to the current directory (sqlx) |
//! | `sqlite://`, `sqlite:///:memory:`, `sqlite::memory:` | an in-memory database |
//! | `sqlite+aiosqlite://…`, `sqlite+pysqlite://…` | the same; the driver suffix is ignored |
//! | `postgres://…`, `postgresql://…`, `postgresql+asyncpg://…`, `postgresql+psycopg://…` | PostgreSQL |
//!
//! A query string (`?mode=ro`) is kept.

use std::path::Path;
use std::path::PathBuf;

use crate::StoreConfig;
use crate::error::Result;
use crate::error::StoreError;

const EXAMPLES: &str = "e.g. sqlite:///./codepilot.db (relative), sqlite:////var/lib/codepilot.db (absolute) or \
                        postgresql://user@localhost/codepilot";

/// Where a SQLite URL points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SqliteTarget {
    /// A private in-memory database.
    Memory,
    /// A file, as an absolute path.
    File(PathBuf),
}

/// A SQLite URL understood: what it points at, and its query string (without `?`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SqliteUrl {
    pub(crate) target: SqliteTarget,
    pub(crate) query: Option<String>,
}

impl SqliteUrl {
    /// Whether this is an in-memory database (no file).
    pub(crate) fn is_memory(&self) -> bool {
        self.target == SqliteTarget::Memory
    }

    /// The URL in its canonical, unambiguous form: `sqlite:////abs/path?query` (SQLAlchemy's absolute form), or
    /// `sqlite://` for memory. Reading it again gives the same target.
    pub(crate) fn to_canonical(&self) -> String {
        let base = match &self.target {
            SqliteTarget::Memory => "sqlite://".to_owned(),
            SqliteTarget::File(path) => format!("sqlite:///{}", escape_path(path)),
        };
        match &self.query {
            Some(q) => format!("{base}?{q}"),
            None => base,
        }
    }

    /// The URL in the form sqlx reads: `sqlite:///abs/path?query` (path characters sqlx would misread are
    /// percent-encoded) or `sqlite::memory:`.
    pub(crate) fn to_sqlx(&self) -> String {
        let base = match &self.target {
            SqliteTarget::Memory => "sqlite::memory:".to_owned(),
            SqliteTarget::File(path) => format!("sqlite://{}", escape_path(path)),
        };
        match &self.query {
            Some(q) => format!("{base}?{q}"),
            None => base,
        }
    }
}

/// `path` with the characters a URL reader would misread (`%`, `?`, `#`) percent-encoded.
fn escape_path(path: &Path) -> String {
    let mut out = String::new();
    for c in path.to_string_lossy().chars() {
        match c {
            '%' => out.push_str("%25"),
            '?' => out.push_str("%3F"),
            '#' => out.push_str("%23"),
            c => out.push(c),
        }
    }
    out
}

/// Undoes [`escape_path`] (and any other `%XX`), so a canonical URL reads back to the same path.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(Some(hi)), Some(Some(lo))) = (
                bytes.get(i + 1).map(|b| hex(*b)),
                bytes.get(i + 2).map(|b| hex(*b)),
            )
        {
            out.push(u8::try_from(hi * 16 + lo).unwrap_or(b'%'));
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Splits `scheme+driver://rest` into the base scheme (lower case) and what follows the colon.
fn split_scheme(url: &str) -> Option<(String, &str)> {
    let (scheme, rest) = url.trim().split_once(':')?;
    let base = scheme
        .split('+')
        .next()
        .unwrap_or(scheme)
        .to_ascii_lowercase();
    Some((base, rest))
}

/// A PostgreSQL URL in the form sqlx reads (`postgres://…`), from any of the accepted spellings
/// (`postgresql://`, `postgresql+asyncpg://`, …); `None` when it is not a PostgreSQL URL.
pub(crate) fn normalize_pg_url(url: &str) -> Option<String> {
    let (scheme, rest) = split_scheme(url)?;
    matches!(scheme.as_str(), "postgres" | "postgresql").then(|| {
        // asyncpg's `ssl=require` is sqlx's `sslmode=require`; left as it is, sqlx would ignore it and fall back
        // to `prefer`, which may connect in the clear.
        let rest = rest
            .replace("?ssl=", "?sslmode=")
            .replace("&ssl=", "&sslmode=");
        format!("postgres:{rest}")
    })
}

/// `url` with the user information (user and password) replaced, for messages.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://…@{}", &rest[at + 1..]),
        None => url.to_owned(),
    }
}

/// Reads a SQLite URL; relative paths resolve against `cwd`.
pub(crate) fn parse_sqlite_url(url: &str, cwd: &Path) -> Result<SqliteUrl> {
    let bad = |why: &str| {
        StoreError::Config(format!(
            "bad SQLite URL {:?}: {why}; {EXAMPLES}",
            redact(url)
        ))
    };
    let Some((scheme, rest)) = split_scheme(url) else {
        return Err(bad("it has no scheme"));
    };
    if scheme != "sqlite" {
        return Err(bad("it must start with `sqlite:`"));
    }
    let (body, query) = match rest.split_once('?') {
        Some((b, q)) => (b, Some(q.to_owned()).filter(|q| !q.is_empty())),
        None => (rest, None),
    };
    // `sqlite:` + what follows: `//` introduces an authority (empty in SQLAlchemy's forms), then `/path`.
    let path = match body.strip_prefix("//") {
        Some(after) => match after.strip_prefix('/') {
            // sqlite:///PATH — SQLAlchemy: PATH as written, relative unless it starts with `/`.
            Some(path) => path,
            // sqlite://PATH (sqlx): relative.
            None => after,
        },
        // sqlite:PATH (sqlx).
        None => body,
    };
    if path.is_empty() || path == ":memory:" {
        return Ok(SqliteUrl {
            target: SqliteTarget::Memory,
            query,
        });
    }
    let path = percent_decode(path);
    let joined = cwd.join(path);
    let abs = std::path::absolute(&joined).unwrap_or(joined);
    Ok(SqliteUrl {
        target: SqliteTarget::File(abs),
        query,
    })
}

/// A database URL as users write it (SQLAlchemy or sqlx forms, see the module docs) turned into a
/// [`StoreConfig`]. Relative SQLite paths resolve against the current directory now, so the result does not
/// depend on where the store is opened later.
///
/// # Errors
/// [`StoreError::Config`] for a URL that is neither SQLite nor PostgreSQL, naming the forms that work.
pub fn parse_db_url(url: &str) -> Result<StoreConfig> {
    let Some((scheme, rest)) = split_scheme(url) else {
        return Err(StoreError::Config(format!(
            "{:?} is not a database URL; {EXAMPLES}",
            redact(url)
        )));
    };
    match scheme.as_str() {
        "sqlite" => {
            let cwd = std::env::current_dir()
                .map_err(|e| StoreError::io("reading the current directory", Path::new("."), e))?;
            let parsed = parse_sqlite_url(url, &cwd)?;
            Ok(StoreConfig::Sqlite {
                url: parsed.to_canonical(),
            })
        }
        "postgres" | "postgresql" => Ok(StoreConfig::Postgres {
            url: normalize_pg_url(url).unwrap_or_else(|| format!("postgres:{rest}")),
        }),
        other => Err(StoreError::Config(format!(
            "unsupported database `{other}` in {:?}: use SQLite or PostgreSQL; {EXAMPLES}",
            redact(url)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    fn file(url: &str) -> (PathBuf, Option<String>) {
        let parsed = parse_sqlite_url(url, Path::new("/work/dir")).unwrap();
        match parsed.target {
            SqliteTarget::File(p) => (p, parsed.query),
            SqliteTarget::Memory => panic!("{url} is in memory"),
        }
    }

    #[test]
    fn sqlalchemy_and_sqlx_forms() {
        for (url, want) in [
            ("sqlite:///./codepilot.db", "/work/dir/codepilot.db"),
            ("sqlite:///codepilot.db", "/work/dir/codepilot.db"),
            ("sqlite:///data/app.db", "/work/dir/data/app.db"),
            ("sqlite:////abs/x.db", "/abs/x.db"),
            ("sqlite+aiosqlite:///./x.db", "/work/dir/x.db"),
            ("sqlite+pysqlite:////abs/x.db", "/abs/x.db"),
            ("sqlite://./x.db", "/work/dir/x.db"),
            ("sqlite://x.db", "/work/dir/x.db"),
            ("sqlite:x.db", "/work/dir/x.db"),
            ("SQLite:///../up.db", "/work/dir/../up.db"),
        ] {
            assert_eq!(file(url).0, PathBuf::from(want), "{url}");
        }
        assert_eq!(file("sqlite:///x.db?mode=ro").1.as_deref(), Some("mode=ro"));
        for url in [
            "sqlite://",
            "sqlite:///:memory:",
            "sqlite::memory:",
            "sqlite+aiosqlite://",
        ] {
            let parsed = parse_sqlite_url(url, Path::new("/w")).unwrap();
            assert_eq!(parsed.target, SqliteTarget::Memory, "{url}");
        }
    }

    #[test]
    fn the_canonical_form_reads_back_the_same() {
        for url in [
            "sqlite:///./a b/50%25.db?mode=rwc",
            "sqlite:////abs/x%3F.db",
            "sqlite://",
        ] {
            let once = parse_sqlite_url(url, Path::new("/w")).unwrap();
            let again = parse_sqlite_url(&once.to_canonical(), Path::new("/elsewhere")).unwrap();
            assert_eq!(once, again, "{url}");
        }
        assert_eq!(
            parse_sqlite_url("sqlite:///x%3F.db", Path::new("/w"))
                .unwrap()
                .target,
            SqliteTarget::File(PathBuf::from("/w/x?.db"))
        );
    }

    #[test]
    fn sqlx_form_escapes_what_sqlx_would_misread() {
        let u = SqliteUrl {
            target: SqliteTarget::File(PathBuf::from("/a b/50%?#.db")),
            query: Some("mode=rwc".to_owned()),
        };
        assert_eq!(u.to_sqlx(), "sqlite:///a b/50%25%3F%23.db?mode=rwc");
    }

    #[test]
    fn postgres_forms_and_errors() {
        for url in [
            "postgres://u@h/db",
            "postgresql://u@h/db",
            "postgresql+asyncpg://u@h/db",
            "postgresql+psycopg://u@h/db",
        ] {
            match parse_db_url(url).unwrap() {
                StoreConfig::Postgres { url } => assert_eq!(url, "postgres://u@h/db"),
                other => panic!("{other:?}"),
            }
        }
        let err = parse_db_url("mysql://u:pw@h/db").unwrap_err().to_string();
        assert!(err.contains("unsupported database `mysql`"), "{err}");
        assert!(!err.contains("pw"), "the password is not repeated: {err}");
        match parse_db_url("postgresql+asyncpg://u@h/db?ssl=require").unwrap() {
            StoreConfig::Postgres { url } => assert_eq!(url, "postgres://u@h/db?sslmode=require"),
            other => panic!("{other:?}"),
        }
        let err = parse_db_url("codepilot.db").unwrap_err().to_string();
        assert!(err.contains("not a database URL"), "{err}");
    }
}
