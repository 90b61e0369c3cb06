//! SQLite specifics: file creation, migrations, a caller-supplied pool.

use codepilot_protocol::Message;
use codepilot_store::Checkpoint;
use codepilot_store::SessionId;
use codepilot_store::StoreConfig;
use codepilot_store::open_store;
use pretty_assertions::assert_eq;

#[tokio::test]
async fn creates_missing_file_and_parent_dirs_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("deep/er/codepilot.db");
    let url = format!("sqlite:///{}", db.display());
    let id = SessionId::generate();
    {
        let store = open_store(StoreConfig::Sqlite { url: url.clone() })
            .await
            .unwrap();
        assert!(db.exists());
        let (lease, _) = store.open(&id, "a").await.unwrap();
        let cp = Checkpoint {
            base_len: 0,
            messages: vec![Message::user("hi")],
            task_counter: 1,
            ..Checkpoint::default()
        };
        store.checkpoint(&lease, &cp).await.unwrap();
        store.release(lease).await.unwrap();
    }
    // Migrations run again on an existing database without harm.
    let store = open_store(StoreConfig::Sqlite { url }).await.unwrap();
    let rec = store.load(&id).await.unwrap().unwrap();
    assert_eq!(rec.messages, vec![Message::user("hi")]);
}

#[tokio::test]
async fn caller_supplied_pool_gets_migrated() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:///{}/p.db", dir.path().display());
    let pool = codepilot_store::sqlite_pool(&url).await.unwrap();
    let store = open_store(StoreConfig::SqlitePool(pool.clone()))
        .await
        .unwrap();
    let id = SessionId::generate();
    let (lease, _) = store.open(&id, "a").await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sessions")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n, 1);
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    store.release(lease).await.unwrap();
}

/// The embedded migrations up to `last`, as an older codepilot applied them.
fn migrations_up_to(last: i64) -> sqlx::migrate::Migrator {
    use std::borrow::Cow;

    use sqlx::SqlSafeStr;
    use sqlx::migrate::Migration;
    use sqlx::migrate::MigrationType;
    let files = [
        (
            1,
            "sessions",
            include_str!("../../migrations/0001_sessions.sql"),
        ),
        (
            2,
            "archives",
            include_str!("../../migrations/0002_archives.sql"),
        ),
        (
            3,
            "events",
            include_str!("../../migrations/0003_events.sql"),
        ),
        (
            4,
            "snapshots",
            include_str!("../../migrations/0004_snapshots.sql"),
        ),
    ];
    sqlx::migrate::Migrator::with_migrations(
        files
            .into_iter()
            .filter(|(version, _, _)| *version <= last)
            .map(|(version, name, sql)| {
                Migration::new(
                    version,
                    Cow::Borrowed(name),
                    MigrationType::Simple,
                    sqlx::AssertSqlSafe(sql).into_sql_str(),
                    false,
                )
            })
            .collect(),
    )
}

#[tokio::test]
async fn a_database_from_before_agent_sources_is_upgraded_and_its_sessions_have_none() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:///{}/old.db", dir.path().display());
    let pool = codepilot_store::sqlite_pool(&url).await.unwrap();
    migrations_up_to(4).run(&pool).await.unwrap();
    sqlx::query(
        "INSERT INTO sessions (id, agent_name, created_at, updated_at) VALUES ('older', 'a', 1, 1)",
    )
    .execute(&pool)
    .await
    .unwrap();

    let store = open_store(StoreConfig::SqlitePool(pool.clone()))
        .await
        .unwrap();
    let id = SessionId::new("older").unwrap();
    let rec = store.load(&id).await.unwrap().unwrap();
    assert_eq!(rec.meta.agent_source, None);

    // A value that is not an agent source is a clear error, not an agent.
    sqlx::query("UPDATE sessions SET agent_source = 'name: not json' WHERE id = 'older'")
        .execute(&pool)
        .await
        .unwrap();
    let err = store.load(&id).await.unwrap_err();
    assert!(err.is_corrupt(), "{err:?}");
    assert!(err.to_string().contains("agent_source"), "{err}");
}

#[tokio::test]
async fn bad_url_is_a_config_error() {
    let err = open_store(StoreConfig::Sqlite {
        url: "mysql://nope".into(),
    })
    .await
    .err()
    .unwrap();
    assert!(err.to_string().contains("bad SQLite URL"), "{err}");
}

#[tokio::test]
async fn in_memory_url_is_one_database_for_the_whole_pool() {
    let store = open_store(StoreConfig::Sqlite {
        url: "sqlite::memory:".into(),
    })
    .await
    .unwrap();
    let id = SessionId::generate();
    let (lease, _) = store.open(&id, "a").await.unwrap();
    // Several concurrent reads use several pool connections; all must see the same database.
    let loads = futures_join(&store, &id).await;
    assert!(loads.iter().all(|r| r.as_ref().is_some_and(|r| r.id == id)));
    store.release(lease).await.unwrap();
}

async fn futures_join(
    store: &std::sync::Arc<dyn codepilot_store::SessionStore>,
    id: &SessionId,
) -> Vec<Option<codepilot_store::SessionRecord>> {
    let (a, b, c, d) = tokio::join!(
        store.load(id),
        store.load(id),
        store.load(id),
        store.load(id)
    );
    vec![a.unwrap(), b.unwrap(), c.unwrap(), d.unwrap()]
}
