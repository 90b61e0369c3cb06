//! Sessions through the library: resume by id in SQLite, a pool the host owns, a held lease.

use codepilot::StoreConfig;
use codepilot::store::SessionStore;
use codepilot_testkit::ScriptedServer;
use codepilot_testkit::Turn;
use codepilot_testkit::temp_workspace;
use pretty_assertions::assert_eq;

use super::support::FILE_TOOLS;
use super::support::Wire;
use super::support::agent;
use super::support::builder;
use super::support::last_user_text;

#[tokio::test]
async fn a_sqlite_session_resumes_in_a_new_runtime() {
    let dir = temp_workspace(&[]);
    let url = format!("sqlite:///{}", dir.path().join("db/sessions.db").display());
    let server = ScriptedServer::start(vec![Turn::answer("first"), Turn::answer("second")])
        .await
        .unwrap();
    let rt = builder(agent(&server, Wire::OpenAi, dir.path(), true, FILE_TOOLS))
        .session(StoreConfig::Sqlite { url: url.clone() })
        .session_id("lib-1")
        .build()
        .await
        .unwrap();
    rt.run("one").await.unwrap();
    rt.close().await.unwrap();

    let rt = builder(agent(&server, Wire::OpenAi, dir.path(), true, FILE_TOOLS))
        .session(StoreConfig::Sqlite { url })
        .session_id("lib-1")
        .build()
        .await
        .unwrap();
    assert_eq!(rt.history().len(), 2);
    rt.run("two").await.unwrap();
    assert_eq!(
        last_user_text(&server.requests()[1].body),
        "[Task 2][USER INPUT]\ntwo"
    );
    rt.close().await.unwrap();
}

#[tokio::test]
async fn a_pool_the_host_owns_is_used_and_a_held_session_is_refused() {
    let dir = temp_workspace(&[]);
    let url = format!(
        "sqlite:///{}?mode=rwc",
        dir.path().join("host.db").display()
    );
    let pool = codepilot::store::sqlite_pool(&url).await.unwrap();
    let server = ScriptedServer::start(vec![Turn::answer("hi")])
        .await
        .unwrap();
    let first = builder(agent(&server, Wire::OpenAi, dir.path(), true, FILE_TOOLS))
        .session(StoreConfig::SqlitePool(pool.clone()))
        .session_id("shared")
        .build()
        .await
        .unwrap();
    let second = builder(agent(&server, Wire::OpenAi, dir.path(), true, FILE_TOOLS))
        .session(StoreConfig::SqlitePool(pool.clone()))
        .session_id("shared")
        .build()
        .await;
    let err = second.err().expect("the second runtime must be refused");
    assert!(
        err.to_string().contains("is running session shared"),
        "{err}"
    );
    first.run("hello").await.unwrap();
    first.close().await.unwrap();
    let store = codepilot::store::SqliteStore::new(pool, codepilot::store::StoreOptions::default())
        .await
        .unwrap();
    let id: codepilot::store::SessionId = "shared".parse().unwrap();
    let stored = store
        .load(&id)
        .await
        .unwrap()
        .expect("the session is in the host's pool");
    assert_eq!(stored.messages.len(), 2);
}

#[tokio::test]
async fn the_heartbeat_follows_the_store_lease_ttl() {
    use std::sync::Arc;
    use std::time::Duration;

    use codepilot::store::MemoryStore;
    use codepilot::store::StoreOptions;

    let dir = temp_workspace(&[]);
    let server = ScriptedServer::start(vec![]).await.unwrap();
    // A TTL far below the old fixed 10 s heartbeat; renewed every third of it, a beat may be 2 s late on a busy
    // machine before the lease lapses.
    let ttl_len = Duration::from_secs(3);
    let ttl = StoreOptions::new().lease_ttl(ttl_len);
    let store = MemoryStore::new(ttl.clone());
    // Another daemon on another host, sharing the sessions: it may take a lease over only once it expired.
    let rival = store.share(ttl.holder_identity(4_000_000, "another-host"));
    let rt = builder(agent(&server, Wire::OpenAi, dir.path(), true, FILE_TOOLS))
        .store(Arc::new(store))
        .session_id("short-ttl")
        .build()
        .await
        .unwrap();
    let taken = tokio::time::Instant::now();
    // Twice the TTL later the lease is still ours: it was renewed at a third of the TTL, not every 10 s (with
    // which the rival would get it once the first TTL is over). The rival keeps trying all along.
    let id = "short-ttl".parse().unwrap();
    while taken.elapsed() < 2 * ttl_len {
        let err = rival
            .open(&id, "rival")
            .await
            .expect_err("the live lease must be refused");
        assert!(err.is_lease_held(), "{err}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    rt.close().await.unwrap();
    // Once released, the session is free.
    let (lease, _) = rival.open(&id, "rival").await.unwrap();
    rival.release(lease).await.unwrap();
}

#[tokio::test]
async fn events_are_stored_with_the_session_and_numbered_on_after_a_resume() {
    let dir = temp_workspace(&[]);
    let done = "```completion\ndone\n```";
    let srv = ScriptedServer::start(vec![Turn::answer(done), Turn::answer(done)])
        .await
        .unwrap();
    let store: std::sync::Arc<dyn SessionStore> = codepilot::store::open_store(StoreConfig::Memory)
        .await
        .unwrap();
    let id = "stored-events";
    let build = || {
        builder(agent(&srv, Wire::OpenAi, dir.path(), true, FILE_TOOLS))
            .store(std::sync::Arc::clone(&store))
            .session_id(id)
            .store_events(true)
            .build()
    };
    let rt = build().await.unwrap();
    let mut seen = Vec::new();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    rt.on_envelope(move |e| {
        let _ = tx.send(e.seq);
    });
    rt.run("one").await.unwrap();
    rt.close().await.unwrap();
    while let Ok(seq) = rx.try_recv() {
        seen.push(seq);
    }
    let sid = id.parse().unwrap();
    let stored = store.load_events(&sid, 0, 1000).await.unwrap();
    assert_eq!(
        stored.iter().map(|e| e.seq).collect::<Vec<_>>(),
        seen,
        "every event, stored"
    );
    let first: codepilot::EventEnvelope = serde_json::from_str(&stored[0].body).unwrap();
    assert!(matches!(first.event, codepilot::Event::Start(_)));

    let rt = build().await.unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    rt.on_envelope(move |e| {
        let _ = tx.send(e.seq);
    });
    rt.run("two").await.unwrap();
    rt.close().await.unwrap();
    assert_eq!(
        rx.try_recv().ok(),
        Some(seen.len() as u64 + 1),
        "numbering goes on after a resume"
    );
    assert!(store.last_event_seq(&sid).await.unwrap() > seen.len() as u64);
}

#[tokio::test]
async fn the_agent_source_a_host_gives_is_recorded_when_the_session_opens() {
    let dir = temp_workspace(&[]);
    let srv = ScriptedServer::start(vec![]).await.unwrap();
    let store: std::sync::Arc<dyn SessionStore> = codepilot::store::open_store(StoreConfig::Memory)
        .await
        .unwrap();
    let id: codepilot::store::SessionId = "with-agent".parse().unwrap();
    let source = codepilot::store::AgentSource {
        yaml: "name: Recorded\n".to_owned(),
        file: Some(dir.path().join("agent.yaml")),
        work_dir: dir.path().to_path_buf(),
    };
    let build = |source: Option<codepilot::store::AgentSource>| {
        let b = builder(agent(&srv, Wire::OpenAi, dir.path(), true, FILE_TOOLS))
            .store(std::sync::Arc::clone(&store))
            .session_id(id.as_str());
        match source {
            Some(s) => b.agent_source(s),
            None => b,
        }
        .build()
    };
    let rt = build(Some(source.clone())).await.unwrap();
    let stored = store.load(&id).await.unwrap().unwrap();
    assert_eq!(stored.meta.agent_source.as_ref(), Some(&source));
    rt.close().await.unwrap();

    // A host that records nothing (the CLI) leaves the recorded source as it is.
    let rt = build(None).await.unwrap();
    rt.close().await.unwrap();
    let stored = store.load(&id).await.unwrap().unwrap();
    assert_eq!(stored.meta.agent_source, Some(source));
}
