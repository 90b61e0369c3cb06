//! The store contract, run against memory, JSON file, SQLite and Postgres.

use std::sync::Arc;
use std::time::Duration;

use codepilot_protocol::ArchiveEntry;
use codepilot_protocol::ArchiveOrigin;
use codepilot_protocol::Message;
use codepilot_protocol::Usage;
use codepilot_store::AgentSource;
use codepilot_store::Checkpoint;
use codepilot_store::HistoryRewrite;
use codepilot_store::Lease;
use codepilot_store::RawAnswer;
use codepilot_store::SessionId;
use codepilot_store::SessionMeta;
use codepilot_store::SessionRecord;
use codepilot_store::StoreError;
use codepilot_store::StoreOptions;
use codepilot_store::StoredEvent;
use codepilot_store::hostname;
use pretty_assertions::assert_eq;

use super::backend::Backend;
use super::backend::for_each_backend;

for_each_backend!(
    round_trip,
    idempotent_recheckpoint,
    base_len_mismatch_is_an_error,
    counters_persist_across_processes,
    list_and_delete,
    second_open_is_refused_naming_the_holder,
    dead_pid_lease_is_taken_over,
    live_lease_on_other_host_waits_for_ttl,
    renewed_lease_survives_its_ttl,
    release_frees_the_session,
    concurrent_appends_on_one_lease_are_serialised,
    concurrent_overlapping_checkpoints_do_not_duplicate,
    missing_sessions,
    archives_persist_and_survive_resume,
    events_append_once_in_order_and_survive_resume,
    snapshot_key_and_holder,
    agent_source_is_recorded_under_the_lease,
    history_rewrite_cuts_and_replaces_the_tail,
    raw_answers_are_kept_cut_by_a_rewind_and_deleted,
);

fn usage(n: u64) -> Usage {
    Usage {
        reasoning_tokens: 0,
        input_tokens: n * 100,
        output_tokens: n * 10,
        cache_read_tokens: n * 3,
        cache_write_tokens: n,
        calls: n,
    }
}

/// Step `i`'s two messages, with text that exercises quoting and unicode.
fn step(i: u64) -> Vec<Message> {
    vec![
        Message::assistant(format!(
            "step {i}: ```python\nprint(\"héllo ✓\\n\")\n```'; DROP TABLE x; --"
        )),
        Message::user(format!("[EXECUTION RESULT]\nline {i}\n\ttab \u{0}nul")),
    ]
}

fn cp(base_len: u64, messages: Vec<Message>, task_counter: u64) -> Checkpoint {
    Checkpoint {
        base_len,
        messages,
        task_counter,
        usage: usage(task_counter),
        title: None,
        archives: None,
        answers: Vec::new(),
    }
}

/// The expected record, taking the timestamps from `actual`.
fn expected(
    actual: &SessionRecord,
    agent: &str,
    title: Option<&str>,
    messages: Vec<Message>,
    tasks: u64,
) -> SessionRecord {
    SessionRecord {
        id: actual.id.clone(),
        task_counter: tasks,
        usage: usage(tasks),
        archives: Vec::new(),
        meta: SessionMeta {
            agent_name: agent.to_owned(),
            title: title.map(str::to_owned),
            created_at: actual.meta.created_at,
            updated_at: actual.meta.updated_at,
            message_count: messages.len() as u64,
            snapshot: None,
            agent_source: None,
        },
        messages,
    }
}

async fn round_trip(b: Backend) {
    let store = b.store().await;
    let id = SessionId::generate();
    let (lease, rec) = store.open(&id, "coder").await.unwrap();
    assert_eq!(lease.session(), &id);
    assert_eq!(lease.holder().pid, std::process::id());
    assert_eq!(rec, {
        let mut e = expected(&rec, "coder", None, vec![], 0);
        e.usage = Usage::default();
        e
    });
    assert!(
        rec.meta.created_at > 1_700_000_000,
        "created_at is unix seconds"
    );

    let mut first = cp(0, step(1), 1);
    first.title = Some("fix the bug".into());
    store.checkpoint(&lease, &first).await.unwrap();
    store.checkpoint(&lease, &cp(2, step(2), 1)).await.unwrap();

    let all: Vec<Message> = step(1).into_iter().chain(step(2)).collect();
    let loaded = store.load(&id).await.unwrap().unwrap();
    assert_eq!(
        loaded,
        expected(&loaded, "coder", Some("fix the bug"), all.clone(), 1)
    );
    assert!(loaded.meta.updated_at >= loaded.meta.created_at);

    // Resume: release, open again (the agent name of an existing session is kept).
    store.release(lease).await.unwrap();
    let (lease, resumed) = store.open(&id, "other-agent").await.unwrap();
    assert_eq!(resumed, loaded);
    store.checkpoint(&lease, &cp(4, step(3), 2)).await.unwrap();
    let loaded = store.load(&id).await.unwrap().unwrap();
    let all: Vec<Message> = all.into_iter().chain(step(3)).collect();
    assert_eq!(
        loaded,
        expected(&loaded, "coder", Some("fix the bug"), all, 2)
    );
    store.release(lease).await.unwrap();
}

async fn idempotent_recheckpoint(b: Backend) {
    let store = b.store().await;
    let id = SessionId::generate();
    let (lease, _) = store.open(&id, "a").await.unwrap();
    let c1 = cp(0, step(1), 1);
    store.checkpoint(&lease, &c1).await.unwrap();
    store.checkpoint(&lease, &c1).await.unwrap(); // re-sent after a lost reply

    // A checkpoint overlapping the stored tail appends only what is new.
    let both: Vec<Message> = step(1).into_iter().chain(step(2)).collect();
    store
        .checkpoint(&lease, &cp(0, both.clone(), 2))
        .await
        .unwrap();
    store
        .checkpoint(&lease, &cp(1, both[1..].to_vec(), 2))
        .await
        .unwrap();

    // A stale re-send (ends before the stored end) changes nothing, counters included.
    store.checkpoint(&lease, &c1).await.unwrap();

    let loaded = store.load(&id).await.unwrap().unwrap();
    assert_eq!(loaded, expected(&loaded, "a", None, both, 2));
    store.release(lease).await.unwrap();
}

async fn base_len_mismatch_is_an_error(b: Backend) {
    let store = b.store().await;
    let id = SessionId::generate();
    let (lease, _) = store.open(&id, "a").await.unwrap();
    store.checkpoint(&lease, &cp(0, step(1), 1)).await.unwrap();

    let gap = store
        .checkpoint(&lease, &cp(3, step(2), 2))
        .await
        .unwrap_err();
    assert!(gap.is_conflict(), "{gap}");
    assert!(
        matches!(
            gap,
            StoreError::Conflict {
                base_len: 3,
                stored: 2,
                ..
            }
        ),
        "{gap:?}"
    );
    let differs = store
        .checkpoint(
            &lease,
            &cp(
                1,
                vec![Message::user("not what was stored"), Message::user("x")],
                2,
            ),
        )
        .await
        .unwrap_err();
    assert!(differs.is_conflict(), "{differs}");
    assert!(
        differs.to_string().contains("message 1 differs"),
        "{differs}"
    );

    // Nothing was written by the rejected checkpoints.
    let loaded = store.load(&id).await.unwrap().unwrap();
    assert_eq!(loaded, expected(&loaded, "a", None, step(1), 1));
    store.release(lease).await.unwrap();
}

async fn counters_persist_across_processes(b: Backend) {
    let id = SessionId::generate();
    {
        let store = b.store().await;
        let (lease, _) = store.open(&id, "a").await.unwrap();
        let mut c = cp(0, step(1), 7);
        c.title = Some("title one".into());
        store.checkpoint(&lease, &c).await.unwrap();
        // `title: None` keeps the stored title.
        store.checkpoint(&lease, &cp(2, step(2), 9)).await.unwrap();
        store.release(lease).await.unwrap();
    }
    // A new store instance (another process) resumes with the counters.
    let store = b.store().await;
    let (lease, rec) = store.open(&id, "a").await.unwrap();
    assert_eq!(rec.task_counter, 9);
    assert_eq!(rec.usage, usage(9));
    assert_eq!(rec.meta.title.as_deref(), Some("title one"));
    assert_eq!(rec.meta.message_count, 4);
    store.release(lease).await.unwrap();
}

async fn list_and_delete(b: Backend) {
    let store = b.store().await;
    let older = SessionId::generate();
    let newer = SessionId::generate();
    let (l1, _) = store.open(&older, "a").await.unwrap();
    store.checkpoint(&l1, &cp(0, step(1), 1)).await.unwrap();
    // updated_at has one-second resolution: make the order observable.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (l2, _) = store.open(&newer, "b").await.unwrap();
    let mut c = cp(0, [step(1), step(2)].concat(), 2);
    c.title = Some("newer".into());
    store.checkpoint(&l2, &c).await.unwrap();

    // Other tests share the Postgres database: look only at our sessions.
    let ours: Vec<_> = store
        .list()
        .await
        .unwrap()
        .into_iter()
        .filter(|s| s.id == older || s.id == newer)
        .collect();
    let (rec_newer, rec_older) = (
        store.load(&newer).await.unwrap().unwrap(),
        store.load(&older).await.unwrap().unwrap(),
    );
    // Both are held by this process.
    assert_eq!(
        ours,
        vec![
            rec_newer.summary(Some(l2.holder().clone())),
            rec_older.summary(Some(l1.holder().clone()))
        ]
    );
    assert_eq!(ours[0].meta.message_count, 4);
    assert_eq!(ours[0].meta.title.as_deref(), Some("newer"));
    assert_eq!(ours[1].task_counter, 1);

    // Refused while held, even by this process.
    let err = store.delete(&older).await.unwrap_err();
    assert!(err.is_lease_held(), "{err}");
    store.release(l1).await.unwrap();
    assert!(store.delete(&older).await.unwrap());
    assert!(!store.delete(&older).await.unwrap());
    assert_eq!(store.load(&older).await.unwrap(), None);
    assert!(!store.list().await.unwrap().iter().any(|s| s.id == older));
    // The survivor is untouched; a checkpoint on a deleted session's lease is refused.
    assert_eq!(store.load(&newer).await.unwrap().unwrap(), rec_newer);
    store.release(l2).await.unwrap();
}

async fn second_open_is_refused_naming_the_holder(b: Backend) {
    let first = b.store().await;
    let second = b.store().await;
    let id = SessionId::generate();
    let (lease, _) = first.open(&id, "a").await.unwrap();
    let err = second.open(&id, "a").await.unwrap_err();
    assert!(err.is_lease_held(), "{err}");
    let holder = err.lease_holder().unwrap().clone();
    assert_eq!(&holder, lease.holder());
    assert_eq!(holder.pid, std::process::id());
    assert_eq!(holder.host, hostname());
    // The same store instance is refused too (two opens in one process).
    assert!(first.open(&id, "a").await.unwrap_err().is_lease_held());

    let text = err
        .to_string()
        .replace(&id.to_string(), "<SESSION>")
        .replace(&format!("pid {}", holder.pid), "pid <PID>")
        .replace(&format!("host {}", holder.host), "host <HOST>");
    let text = text.split(" since ").next().unwrap().to_owned()
        + " since <TIME>"
        + text.split(" UTC").nth(1).unwrap();
    insta::assert_snapshot!("lease_held_message", text);

    first.release(lease).await.unwrap();
    let (lease2, _) = second.open(&id, "a").await.unwrap();
    second.release(lease2).await.unwrap();
}

/// Returns the pid of a process that has exited and been reaped.
async fn dead_pid() -> u32 {
    let mut child = tokio::process::Command::new("true").spawn().unwrap();
    let pid = child.id().unwrap();
    assert!(child.wait().await.unwrap().success());
    pid
}

async fn dead_pid_lease_is_taken_over(b: Backend) {
    let pid = dead_pid().await;
    let crashed = b
        .store_with(StoreOptions::new().holder_identity(pid, hostname()))
        .await;
    let id = SessionId::generate();
    let (old, _) = crashed.open(&id, "a").await.unwrap();
    crashed.checkpoint(&old, &cp(0, step(1), 1)).await.unwrap();

    // Same host, dead pid: taken over at once although the 30 s TTL has not expired.
    let store = b.store().await;
    let (lease, rec) = store.open(&id, "a").await.unwrap();
    assert_eq!(rec.messages, step(1));

    // The crashed holder's lease is dead for good.
    let err = crashed
        .checkpoint(&old, &cp(2, step(2), 2))
        .await
        .unwrap_err();
    assert!(err.is_lease_lost(), "{err}");
    assert_eq!(err.lease_holder(), Some(lease.holder()));
    assert!(crashed.renew(&old).await.unwrap_err().is_lease_lost());
    crashed.release(old).await.unwrap(); // harmless, does not free the new lease
    assert!(
        b.store()
            .await
            .open(&id, "a")
            .await
            .unwrap_err()
            .is_lease_held()
    );

    // A dead pid on ANOTHER host proves nothing: that lease waits for its TTL.
    store.release(lease).await.unwrap();
    let remote = b
        .store_with(StoreOptions::new().holder_identity(pid, "some-other-host"))
        .await;
    let (remote_lease, _) = remote.open(&id, "a").await.unwrap();
    let err = store.open(&id, "a").await.unwrap_err();
    assert_eq!(err.lease_holder().unwrap().host, "some-other-host");
    remote.release(remote_lease).await.unwrap();
}

async fn live_lease_on_other_host_waits_for_ttl(b: Backend) {
    let other = b
        .store_with(
            StoreOptions::new()
                .holder_identity(std::process::id(), "other-host")
                .lease_ttl(Duration::from_millis(300)),
        )
        .await;
    let id = SessionId::generate();
    let (old, _) = other.open(&id, "a").await.unwrap();
    let store = b.store().await;
    assert!(store.open(&id, "a").await.unwrap_err().is_lease_held());
    assert!(store.delete(&id).await.unwrap_err().is_lease_held());

    tokio::time::sleep(Duration::from_millis(1000)).await;
    // Expired: anyone may take it over; the old holder then fails.
    let (lease, _) = store.open(&id, "a").await.unwrap();
    assert!(other.renew(&old).await.unwrap_err().is_lease_lost());
    assert!(
        other
            .checkpoint(&old, &cp(0, step(1), 1))
            .await
            .unwrap_err()
            .is_lease_lost()
    );
    store.checkpoint(&lease, &cp(0, step(1), 1)).await.unwrap();
    store.release(lease).await.unwrap();
}

async fn renewed_lease_survives_its_ttl(b: Backend) {
    let ttl = Duration::from_secs(3);
    let holder = b
        .store_with(
            StoreOptions::new()
                .holder_identity(std::process::id(), "other-host")
                .lease_ttl(ttl),
        )
        .await;
    let id = SessionId::generate();
    let (lease, _) = holder.open(&id, "a").await.unwrap();
    let store = b.store().await;
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(1200)).await;
        holder.renew(&lease).await.unwrap();
    }
    // 3.6 s after the open, longer than the TTL: still held thanks to the renewals.
    assert!(store.open(&id, "a").await.unwrap_err().is_lease_held());
    holder.checkpoint(&lease, &cp(0, step(1), 1)).await.unwrap();
    holder.release(lease).await.unwrap();
}

async fn release_frees_the_session(b: Backend) {
    let store = b.store().await;
    let other = b.store().await;
    let id = SessionId::generate();
    let (lease, _) = store.open(&id, "a").await.unwrap();
    let token = lease.token().to_owned();
    store.release(lease).await.unwrap();
    // Released: another process opens at once and gets a fresh token.
    let (lease2, _) = other.open(&id, "a").await.unwrap();
    assert_ne!(lease2.token(), token);
    other.checkpoint(&lease2, &cp(0, step(1), 1)).await.unwrap();
    other.release(lease2).await.unwrap();
}

async fn concurrent_appends_on_one_lease_are_serialised(b: Backend) {
    let store = b.store().await;
    let id = SessionId::generate();
    let (lease, _) = store.open(&id, "a").await.unwrap();
    let lease = Arc::new(lease);
    const PER_TASK: usize = 15;
    let mut tasks = Vec::new();
    for t in 0..2 {
        let (store, lease, id) = (Arc::clone(&store), Arc::clone(&lease), id.clone());
        tasks.push(tokio::spawn(async move {
            let mut conflicts = 0;
            for i in 0..PER_TASK {
                let msg = Message::user(format!("task {t} message {i}"));
                loop {
                    let base = store.load(&id).await.unwrap().unwrap().meta.message_count;
                    match store
                        .checkpoint(&lease, &cp(base, vec![msg.clone()], 0))
                        .await
                    {
                        Ok(()) => break,
                        Err(e) if e.is_conflict() => conflicts += 1,
                        Err(e) => panic!("{e}"),
                    }
                }
            }
            conflicts
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let rec = store.load(&id).await.unwrap().unwrap();
    assert_eq!(rec.meta.message_count, 2 * PER_TASK as u64);
    for t in 0..2 {
        let mine: Vec<String> = rec
            .messages
            .iter()
            .filter(|m| m.content.starts_with(&format!("task {t} ")))
            .map(|m| m.content.clone())
            .collect();
        let want: Vec<String> = (0..PER_TASK)
            .map(|i| format!("task {t} message {i}"))
            .collect();
        assert_eq!(mine, want, "task {t}'s messages, once each and in order");
    }
    Arc::try_unwrap(lease)
        .map(|l| store.release(l))
        .unwrap()
        .await
        .unwrap();
}

async fn concurrent_overlapping_checkpoints_do_not_duplicate(b: Backend) {
    let store = b.store().await;
    let id = SessionId::generate();
    let (lease, _) = store.open(&id, "a").await.unwrap();
    let lease: Arc<Lease> = Arc::new(lease);
    let history: Vec<Message> = (1..=12).flat_map(step).collect();
    let mut tasks = Vec::new();
    for t in 0..2_u64 {
        let (store, lease, history) = (Arc::clone(&store), Arc::clone(&lease), history.clone());
        tasks.push(tokio::spawn(async move {
            // Each task re-sends growing prefixes of the same history from position 0.
            for n in (2 + t as usize..=history.len()).step_by(2) {
                store
                    .checkpoint(&lease, &cp(0, history[..n].to_vec(), 1))
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let rec = store.load(&id).await.unwrap().unwrap();
    assert_eq!(rec.messages, history);
    assert_eq!(rec.meta.message_count, history.len() as u64);
    Arc::try_unwrap(lease)
        .map(|l| store.release(l))
        .unwrap()
        .await
        .unwrap();
}

async fn missing_sessions(b: Backend) {
    let store = b.store().await;
    let id = SessionId::generate();
    assert_eq!(store.load(&id).await.unwrap(), None);
    assert!(!store.delete(&id).await.unwrap());
    assert!(!store.list().await.unwrap().iter().any(|s| s.id == id));
}

async fn archives_persist_and_survive_resume(b: Backend) {
    let store = b.store().await;
    let id = SessionId::generate();
    let (lease, rec) = store.open(&id, "a").await.unwrap();
    assert!(rec.archives.is_empty());
    let archive = |n: u64, origin| ArchiveEntry {
        first_task: n,
        last_task: n + 1,
        summary: format!("task {n}: \"quoted\" ✓ summary\u{0}"),
        tokens_saved: 100 * n,
        origin,
    };
    let mut c = cp(0, step(1), 2);
    c.archives = Some(vec![archive(1, ArchiveOrigin::Agent)]);
    store.checkpoint(&lease, &c).await.unwrap();
    // `None` keeps what is stored.
    store.checkpoint(&lease, &cp(2, step(2), 3)).await.unwrap();
    let loaded = store.load(&id).await.unwrap().unwrap();
    assert_eq!(loaded.archives.len(), 1);
    assert_eq!(loaded.archives[0].first_task, 1);
    assert_eq!(loaded.archives[0].origin, ArchiveOrigin::Agent);
    assert!(
        loaded.archives[0]
            .summary
            .starts_with("task 1: \"quoted\" ✓")
    );

    store.release(lease).await.unwrap();
    let (lease, resumed) = store.open(&id, "a").await.unwrap();
    assert_eq!(resumed.archives, loaded.archives);
    let mut c = cp(4, step(3), 4);
    c.archives = Some(vec![
        loaded.archives[0].clone(),
        archive(3, ArchiveOrigin::Summary),
    ]);
    store.checkpoint(&lease, &c).await.unwrap();
    let loaded = store.load(&id).await.unwrap().unwrap();
    assert_eq!(loaded.archives.len(), 2);
    assert_eq!(loaded.archives[1].origin, ArchiveOrigin::Summary);
    assert_eq!(loaded.messages.len(), 6, "archiving never removes messages");
    // An empty list clears them.
    let mut c = cp(6, Vec::new(), 4);
    c.archives = Some(Vec::new());
    store.checkpoint(&lease, &c).await.unwrap();
    assert!(store.load(&id).await.unwrap().unwrap().archives.is_empty());
    store.release(lease).await.unwrap();
}

async fn events_append_once_in_order_and_survive_resume(b: Backend) {
    let store = b.store().await;
    let id = SessionId::generate();
    let event = |seq: u64| StoredEvent {
        seq,
        body: format!("{{\"seq\":{seq},\"text\":\"ünïcode \\\"quoted\\\"\"}}"),
    };
    assert_eq!(store.last_event_seq(&id).await.unwrap(), 0);
    assert!(store.load_events(&id, 0, 10).await.unwrap().is_empty());
    let (lease, _) = store.open(&id, "a").await.unwrap();
    store
        .append_events(&lease, &[event(1), event(2), event(3)])
        .await
        .unwrap();
    // A batch sent again, overlapping, stores nothing twice.
    store
        .append_events(&lease, &[event(2), event(3), event(4)])
        .await
        .unwrap();
    assert_eq!(store.last_event_seq(&id).await.unwrap(), 4);
    let all = store.load_events(&id, 0, 100).await.unwrap();
    assert_eq!(
        all.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    assert_eq!(all[1], event(2), "bodies come back byte for byte");
    let page = store.load_events(&id, 1, 2).await.unwrap();
    assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![2, 3]);

    store.release(lease).await.unwrap();
    let (lease, _) = store.open(&id, "a").await.unwrap();
    assert_eq!(
        store.last_event_seq(&id).await.unwrap(),
        4,
        "events survive a resume"
    );
    store.append_events(&lease, &[event(5)]).await.unwrap();
    store.release(lease).await.unwrap();

    // A holder whose lease was taken over appends nothing.
    let stale = b
        .store_with(
            StoreOptions::new()
                .holder_identity(std::process::id(), "other-host")
                .lease_ttl(Duration::from_millis(200)),
        )
        .await;
    let (old, _) = stale.open(&id, "a").await.unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let (lease, _) = store.open(&id, "a").await.unwrap();
    let refused = stale.append_events(&old, &[event(6)]).await.unwrap_err();
    assert!(refused.is_lease_lost(), "{refused}");
    assert_eq!(store.last_event_seq(&id).await.unwrap(), 5);
    store.release(lease).await.unwrap();

    assert!(store.delete(&id).await.unwrap());
    assert_eq!(
        store.last_event_seq(&id).await.unwrap(),
        0,
        "deleted with the session"
    );
}

async fn snapshot_key_and_holder(b: Backend) {
    let store = b.store().await;
    let id = SessionId::generate();
    let (lease, rec) = store.open(&id, "a").await.unwrap();
    assert_eq!(rec.meta.snapshot, None);
    let listed = store.list().await.unwrap();
    let me = listed.iter().find(|s| s.id == id).unwrap();
    assert_eq!(me.holder.as_ref().map(|h| h.pid), Some(std::process::id()));
    assert_eq!(me.holder.as_ref().map(|h| h.host.clone()), Some(hostname()));

    store.set_snapshot(&lease, "k/1.tar.zst").await.unwrap();
    store.set_snapshot(&lease, "k/2.tar.zst").await.unwrap();
    store.checkpoint(&lease, &cp(0, step(1), 1)).await.unwrap();
    store.release(lease).await.unwrap();

    let rec = store.load(&id).await.unwrap().unwrap();
    assert_eq!(
        rec.meta.snapshot.as_deref(),
        Some("k/2.tar.zst"),
        "the latest key, kept by checkpoints"
    );
    let listed = store.list().await.unwrap();
    let me = listed.iter().find(|s| s.id == id).unwrap();
    assert_eq!(me.holder, None, "released: nobody drives it");
    assert_eq!(me.meta.snapshot.as_deref(), Some("k/2.tar.zst"));
    let (lease, rec) = store.open(&id, "a").await.unwrap();
    assert_eq!(
        rec.meta.snapshot.as_deref(),
        Some("k/2.tar.zst"),
        "survives a resume"
    );

    // A holder whose lease was taken over records nothing.
    store.release(lease).await.unwrap();
    let short = b
        .store_with(
            StoreOptions::new()
                .holder_identity(std::process::id(), "third-host")
                .lease_ttl(Duration::from_millis(200)),
        )
        .await;
    let (old, _) = short.open(&id, "a").await.unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let (lease, _) = store.open(&id, "a").await.unwrap();
    assert!(
        short
            .set_snapshot(&old, "k/3.tar.zst")
            .await
            .unwrap_err()
            .is_lease_lost()
    );
    let rec = store.load(&id).await.unwrap().unwrap();
    assert_eq!(rec.meta.snapshot.as_deref(), Some("k/2.tar.zst"));
    store.release(lease).await.unwrap();
}

async fn agent_source_is_recorded_under_the_lease(b: Backend) {
    let store = b.store().await;
    let id = SessionId::generate();
    let (lease, rec) = store.open(&id, "a").await.unwrap();
    assert_eq!(rec.meta.agent_source, None, "nothing recorded yet");

    let from_file = AgentSource {
        yaml: "agent:\n  name: a # \"quoted\" héllo ✓\n  system_prompt: prompt.md\n".to_owned(),
        file: Some("/srv/agents/agent.yaml".into()),
        work_dir: "/srv/work/a".into(),
    };
    let from_text = AgentSource {
        yaml: "name: b\n'; DROP TABLE sessions; --\n\u{0}".to_owned(),
        file: None,
        work_dir: "/srv/work/b".into(),
    };
    store.set_agent_source(&lease, &from_file).await.unwrap();
    assert_eq!(
        store.load(&id).await.unwrap().unwrap().meta.agent_source,
        Some(from_file)
    );
    store.set_agent_source(&lease, &from_text).await.unwrap();
    store.checkpoint(&lease, &cp(0, step(1), 1)).await.unwrap();
    store.set_snapshot(&lease, "k/1.tar.zst").await.unwrap();
    store.release(lease).await.unwrap();

    let rec = store.load(&id).await.unwrap().unwrap();
    assert_eq!(
        rec.meta.agent_source.as_ref(),
        Some(&from_text),
        "the latest, kept by checkpoints and snapshots"
    );
    let listed = store.list().await.unwrap();
    let me = listed.iter().find(|s| s.id == id).unwrap();
    assert_eq!(me.meta.agent_source.as_ref(), Some(&from_text));

    // Another process opens it: the record carries the agent to build. It dies holding the lease.
    let crashed = b
        .store_with(StoreOptions::new().holder_identity(dead_pid().await, hostname()))
        .await;
    let (old, resumed) = crashed.open(&id, "another-agent").await.unwrap();
    assert_eq!(resumed.meta.agent_source.as_ref(), Some(&from_text));

    // A path JSON cannot hold is refused, saying so, and changes nothing.
    let not_utf8 = AgentSource {
        work_dir: <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(b"/srv/\xff")
            .into(),
        ..from_text.clone()
    };
    let err = crashed.set_agent_source(&old, &not_utf8).await.unwrap_err();
    assert!(matches!(err, StoreError::Encode(_)), "{err:?}");
    assert!(err.to_string().contains("UTF-8"), "{err}");

    // A lease that was taken over records nothing.
    let (lease, _) = store.open(&id, "a").await.unwrap();
    let late = AgentSource {
        yaml: "name: late".to_owned(),
        ..from_text.clone()
    };
    let lost = crashed.set_agent_source(&old, &late).await.unwrap_err();
    assert!(lost.is_lease_lost(), "{lost:?}");
    assert_eq!(
        store.load(&id).await.unwrap().unwrap().meta.agent_source,
        Some(from_text)
    );
    store.release(lease).await.unwrap();
    assert!(store.delete(&id).await.unwrap());
}

async fn history_rewrite_cuts_and_replaces_the_tail(b: Backend) {
    let store = b.store().await;
    let id = SessionId::generate();
    let (lease, _) = store.open(&id, "a").await.unwrap();
    let all: Vec<Message> = (1..=3).flat_map(step).collect();
    let mut c = cp(0, all.clone(), 3);
    c.archives = Some(vec![ArchiveEntry {
        first_task: 1,
        last_task: 1,
        summary: "one".to_owned(),
        tokens_saved: 5,
        origin: ArchiveOrigin::Agent,
    }]);
    store.checkpoint(&lease, &c).await.unwrap();

    // Cut back to the first step: counters stay, archives are replaced.
    let cut = HistoryRewrite {
        keep: 2,
        append: Vec::new(),
        archives: Vec::new(),
    };
    store.rewrite_history(&lease, &cut).await.unwrap();
    let rec = store.load(&id).await.unwrap().unwrap();
    assert_eq!(rec.messages, all[..2]);
    assert_eq!(rec.meta.message_count, 2);
    assert!(rec.archives.is_empty());
    assert_eq!(rec.task_counter, 3, "turn numbers are never reused");
    assert_eq!(rec.usage, usage(3), "tokens spent stay spent");

    // Appending after the cut point, then checkpointing on from the new end.
    let back = HistoryRewrite {
        keep: 2,
        append: all[2..].to_vec(),
        archives: c.archives.clone().unwrap(),
    };
    store.rewrite_history(&lease, &back).await.unwrap();
    store.checkpoint(&lease, &cp(6, step(4), 4)).await.unwrap();
    store.release(lease).await.unwrap();
    let (lease, rec) = store.open(&id, "a").await.unwrap();
    let mut want = all.clone();
    want.extend(step(4));
    assert_eq!(rec.messages, want);
    assert_eq!(rec.archives.len(), 1);

    // Keeping more than is stored is refused and changes nothing.
    let err = store
        .rewrite_history(
            &lease,
            &HistoryRewrite {
                keep: 99,
                ..HistoryRewrite::default()
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err:?}");
    assert_eq!(store.load(&id).await.unwrap().unwrap().messages.len(), 8);

    store.release(lease).await.unwrap();

    // A holder whose lease was taken over rewrites nothing.
    let crashed = b
        .store_with(StoreOptions::new().holder_identity(dead_pid().await, hostname()))
        .await;
    let (old, _) = crashed.open(&id, "a").await.unwrap();
    let (lease, _) = store.open(&id, "a").await.unwrap();
    let lost = crashed.rewrite_history(&old, &cut).await.unwrap_err();
    assert!(lost.is_lease_lost(), "{lost:?}");
    assert_eq!(store.load(&id).await.unwrap().unwrap().messages, want);
    store.release(lease).await.unwrap();
    assert!(store.delete(&id).await.unwrap());
}

async fn raw_answers_are_kept_cut_by_a_rewind_and_deleted(b: Backend) {
    let store = b.store().await;
    let id = SessionId::generate();
    let (lease, _) = store.open(&id, "a").await.unwrap();
    let answer = |index: u64| RawAnswer {
        index,
        content: format!("step {index}: ```python filename=a.py\nprint(\"héllo\")\n```"),
    };
    let mut first = cp(0, step(1), 1);
    first.answers = vec![answer(0)];
    store.checkpoint(&lease, &first).await.unwrap();
    // A retried checkpoint stores nothing twice.
    store.checkpoint(&lease, &first).await.unwrap();
    let mut second = cp(2, step(2), 2);
    second.answers = vec![answer(2)];
    store.checkpoint(&lease, &second).await.unwrap();
    assert_eq!(
        store.load_answers(&id).await.unwrap(),
        vec![answer(0), answer(2)]
    );

    // A rewind to before the second step drops its answer; a resume sees the rest.
    store
        .rewrite_history(
            &lease,
            &HistoryRewrite {
                keep: 2,
                ..HistoryRewrite::default()
            },
        )
        .await
        .unwrap();
    store.release(lease).await.unwrap();
    assert_eq!(store.load_answers(&id).await.unwrap(), vec![answer(0)]);
    assert!(
        store
            .load_answers(&SessionId::generate())
            .await
            .unwrap()
            .is_empty()
    );

    assert!(store.delete(&id).await.unwrap());
    assert!(store.load_answers(&id).await.unwrap().is_empty());
}
