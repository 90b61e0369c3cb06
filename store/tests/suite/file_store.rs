//! JSON-file specifics: corrupt files are kept aside, writes are atomic.

use codepilot_protocol::Message;
use codepilot_store::Checkpoint;
use codepilot_store::FileStore;
use codepilot_store::SessionId;
use codepilot_store::SessionStore;
use codepilot_store::StoreError;
use codepilot_store::StoreOptions;
use pretty_assertions::assert_eq;

#[tokio::test]
async fn corrupt_file_is_moved_aside_never_treated_as_empty() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::new(dir.path(), StoreOptions::default()).unwrap();
    let id = SessionId::generate();
    let path = store.session_path(&id);
    let garbage = b"{\"format\":1,\"id\":\"trunc";
    std::fs::write(&path, garbage).unwrap();

    let err = store.load(&id).await.unwrap_err();
    let StoreError::Corrupt {
        path: p,
        kept_at,
        reason,
    } = &err
    else {
        panic!("expected Corrupt, got {err:?}");
    };
    assert_eq!(p, &path);
    assert!(
        !path.exists(),
        "the corrupt file no longer sits where the session was"
    );
    assert_eq!(
        std::fs::read(kept_at).unwrap(),
        garbage,
        "its bytes are kept"
    );
    assert!(
        kept_at
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with(&format!("{id}.json.corrupt-")),
        "{}",
        kept_at.display()
    );
    assert!(!reason.is_empty());
    assert!(err.is_corrupt());
    let text = err
        .to_string()
        .replace(&dir.path().display().to_string(), "<DIR>")
        .replace(&id.to_string(), "<ID>");
    let text = regex_free_redact_ts(&text);
    insta::assert_snapshot!("corrupt_file_message", text);

    // open reports it too (and never hands out an empty history for it).
    std::fs::write(&path, b"not json").unwrap();
    assert!(store.open(&id, "a").await.unwrap_err().is_corrupt());
    // Once moved aside, the id starts fresh; both corrupt copies are still there.
    let (lease, rec) = store.open(&id, "a").await.unwrap();
    assert!(rec.messages.is_empty());
    store.release(lease).await.unwrap();
    let kept = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_str()
                .unwrap()
                .contains(".corrupt-")
        })
        .count();
    assert_eq!(kept, 2);
    // list skips nothing valid and does not trip on the kept files.
    assert_eq!(store.list().await.unwrap().len(), 1);
}

/// Replaces the millisecond timestamp after `.corrupt-` with `<TS>`.
fn regex_free_redact_ts(text: &str) -> String {
    let marker = ".corrupt-";
    let Some(at) = text.find(marker) else {
        return text.to_owned();
    };
    let start = at + marker.len();
    let end = start
        + text[start..]
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len() - start);
    format!("{}<TS>{}", &text[..start], &text[end..])
}

#[tokio::test]
async fn file_is_one_json_document_and_no_temp_files_remain() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::new(dir.path().join("a/b"), StoreOptions::default()).unwrap();
    let id = SessionId::new("my-session_1.x").unwrap();
    let (lease, _) = store.open(&id, "agent").await.unwrap();
    for i in 0..5_u64 {
        let cp = Checkpoint {
            base_len: i * 2,
            messages: vec![
                Message::user(format!("u{i}")),
                Message::assistant(format!("a{i}")),
            ],
            task_counter: i,
            ..Checkpoint::default()
        };
        store.checkpoint(&lease, &cp).await.unwrap();
    }
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(store.session_path(&id)).unwrap()).unwrap();
    assert_eq!(json["id"], "my-session_1.x");
    assert_eq!(json["message_count"], 10);
    assert_eq!(
        json["messages"][9],
        serde_json::json!({"role": "assistant", "content": "a4"})
    );
    assert!(store.dir().join("my-session_1.x.lease").exists());
    store.release(lease).await.unwrap();
    assert!(!store.dir().join("my-session_1.x.lease").exists());
    let mut names: Vec<String> = std::fs::read_dir(store.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec![".lock".to_owned(), "my-session_1.x.json".to_owned()]
    );
}

#[tokio::test]
async fn mismatched_message_count_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::new(dir.path(), StoreOptions::default()).unwrap();
    let id = SessionId::generate();
    let doc = serde_json::json!({
        "format": 1, "id": id.to_string(), "agent_name": "a", "title": null, "created_at": 1, "updated_at": 1,
        "task_counter": 0, "usage": {}, "message_count": 3, "messages": []
    });
    std::fs::write(store.session_path(&id), doc.to_string()).unwrap();
    let err = store.load(&id).await.unwrap_err();
    assert!(err.is_corrupt(), "{err}");
    assert!(
        err.to_string()
            .contains("message_count says 3 but it holds 0 messages"),
        "{err}"
    );
}
