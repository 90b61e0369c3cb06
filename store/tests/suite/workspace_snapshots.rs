//! Workspace snapshots on a local directory and on a real S3-compatible server (moto): what is archived, restore
//! rules, and every failure a host can meet.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;

use codepilot_store::MemoryStore;
use codepilot_store::SessionId;
use codepilot_store::SessionStore;
use codepilot_store::StoreOptions;
use codepilot_store::snapshot::Prepared;
use codepilot_store::snapshot::RestoreMode;
use codepilot_store::snapshot::Saved;
use codepilot_store::snapshot::SnapshotError;
use codepilot_store::snapshot::SnapshotInfo;
use codepilot_store::snapshot::SnapshotOptions;
use codepilot_store::snapshot::SnapshotStore;
use codepilot_testkit::moto::MotoServer;
use codepilot_testkit::noise;
use codepilot_testkit::tree_contents as contents;
use pretty_assertions::assert_eq;
use tempfile::TempDir;

fn write(root: &Path, rel: &str, bytes: &[u8]) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, bytes).unwrap();
}

/// A work directory with ignored files, dotfiles, a `.git`, symlinks, an executable and a large file.
fn tree(root: &Path, large: usize) {
    write(root, "src/main.rs", b"fn main() {}\n");
    write(root, ".env.example", b"KEY=\n");
    write(root, ".gitignore", b"target/\n*.log\n");
    write(root, "target/debug/app", b"binary");
    write(root, "debug.log", b"noise");
    write(root, "sub/.gitignore", b"secret.txt\n");
    write(root, "sub/secret.txt", b"hidden");
    write(root, "sub/kept.txt", b"kept");
    write(root, ".git/HEAD", b"ref: refs/heads/main\n");
    write(
        root,
        ".git/logs/app.log",
        b"kept: no ignore rule applies inside .git",
    );
    write(root, ".git/objects/ab/cdef", b"object");
    fs::set_permissions(
        root.join(".git/objects/ab/cdef"),
        fs::Permissions::from_mode(0o444),
    )
    .unwrap();
    write(root, "run.sh", b"#!/bin/sh\necho hi\n");
    fs::set_permissions(root.join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("src/main.rs", root.join("link")).unwrap();
    std::os::unix::fs::symlink("nowhere", root.join("dangling")).unwrap();
    write(root, "data/large.bin", &noise(large, 7));
}

/// What a snapshot of `tree` should restore: everything but the ignored files.
fn without_ignored(mut all: BTreeMap<String, (String, u32)>) -> BTreeMap<String, (String, u32)> {
    for ignored in [
        "target",
        "target/debug",
        "target/debug/app",
        "debug.log",
        "sub/secret.txt",
    ] {
        all.remove(ignored);
    }
    all
}

struct Fixture {
    _tmp: TempDir,
    root: PathBuf,
    sessions: Arc<dyn SessionStore>,
    id: SessionId,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    Fixture {
        _tmp: tmp,
        root,
        sessions: Arc::new(MemoryStore::new(StoreOptions::default())),
        id: SessionId::generate(),
    }
}

impl Fixture {
    /// Saves `work` through `store` as the session's next snapshot (under its lease, taken and given back), which
    /// must be a new one; returns it and its file count.
    async fn save_new(&self, store: &SnapshotStore, work: &Path) -> (SnapshotInfo, u64) {
        let (lease, _) = self.sessions.open(&self.id, "agent").await.unwrap();
        let recorded = self.recorded().await;
        let saved = store
            .save(&*self.sessions, &lease, work, recorded.as_deref())
            .await
            .unwrap();
        self.sessions.release(lease).await.unwrap();
        match saved {
            Saved::Stored { info, files, .. } => (info, files),
            Saved::Unchanged { key } => {
                panic!("{} was not saved: unchanged since {key}", work.display())
            }
        }
    }

    /// The snapshot the session records.
    async fn recorded(&self) -> Option<String> {
        self.sessions
            .load(&self.id)
            .await
            .unwrap()
            .and_then(|r| r.meta.snapshot)
    }

    fn options(&self, state: &str) -> SnapshotOptions {
        SnapshotOptions {
            state_dir: Some(self.root.join(state)),
            ..SnapshotOptions::default()
        }
    }

    fn file_store(&self, state: &str) -> SnapshotStore {
        let url = format!("file://{}", self.root.join("objects").display());
        SnapshotStore::open(&url, self.options(state)).unwrap()
    }
}

/// Saves from one machine, restores on another (another state directory and work_dir), both through `url`.
async fn round_trip(f: &Fixture, a: &SnapshotStore, b: &SnapshotStore) {
    let work = f.root.join("work-a");
    tree(&work, 6 << 20);
    let (lease, _) = f.sessions.open(&f.id, "agent").await.unwrap();
    let Saved::Stored { info, files, .. } = a
        .save(&*f.sessions, &lease, &work, f.recorded().await.as_deref())
        .await
        .unwrap()
    else {
        panic!("the first save stores a snapshot");
    };
    assert_eq!(
        files, 10,
        "src/main.rs .env.example .gitignore sub/.gitignore sub/kept.txt, 3 in .git, run.sh, large"
    );
    assert!(info.key.starts_with(&format!("{}/", f.id)), "{}", info.key);
    assert_eq!(
        a.save(&*f.sessions, &lease, &work, f.recorded().await.as_deref())
            .await
            .unwrap(),
        Saved::Unchanged {
            key: info.key.clone()
        },
        "nothing changed: nothing uploaded"
    );
    f.sessions.release(lease).await.unwrap();
    let record = f.sessions.load(&f.id).await.unwrap().unwrap();
    assert_eq!(
        record.meta.snapshot.as_deref(),
        Some(info.key.as_str()),
        "recorded with the session"
    );

    // Another machine: no work_dir yet.
    let work_b = f.root.join("work-b");
    let prepared = b
        .prepare(&record, &work_b, RestoreMode::IfEmpty)
        .await
        .unwrap();
    assert!(
        matches!(prepared, Prepared::Restored { ref key, files: 10, .. } if *key == info.key),
        "{prepared:?}"
    );
    assert_eq!(contents(&work_b), without_ignored(contents(&work)));
    assert_eq!(
        b.prepare(&record, &work_b, RestoreMode::IfEmpty)
            .await
            .unwrap(),
        Prepared::UpToDate {
            key: info.key.clone()
        }
    );

    // B works on and saves; restored and unchanged is not saved again.
    let (lease, _) = f.sessions.open(&f.id, "agent").await.unwrap();
    assert!(matches!(
        b.save(&*f.sessions, &lease, &work_b, f.recorded().await.as_deref())
            .await
            .unwrap(),
        Saved::Unchanged { .. }
    ));
    write(&work_b, "src/lib.rs", b"pub fn added() {}\n");
    fs::remove_file(work_b.join("sub/kept.txt")).unwrap();
    let Saved::Stored { info: second, .. } = b
        .save(&*f.sessions, &lease, &work_b, f.recorded().await.as_deref())
        .await
        .unwrap()
    else {
        panic!("a change is saved");
    };
    f.sessions.release(lease).await.unwrap();
    let record = f.sessions.load(&f.id).await.unwrap().unwrap();
    assert_eq!(record.meta.snapshot.as_deref(), Some(second.key.as_str()));

    // Back on A, whose copy is older and unchanged since it was saved: replaced by the newer snapshot, deletions
    // included; what .gitignore excludes was never in a snapshot and stays.
    let prepared = a
        .prepare(&record, &work, RestoreMode::IfEmpty)
        .await
        .unwrap();
    assert!(
        matches!(prepared, Prepared::Restored { ref key, .. } if *key == second.key),
        "{prepared:?}"
    );
    assert_eq!(without_ignored(contents(&work)), contents(&work_b));
    assert!(!work.join("sub/kept.txt").exists());
    assert_eq!(fs::read(work.join("debug.log")).unwrap(), b"noise");
    assert_eq!(fs::read(work.join("target/debug/app")).unwrap(), b"binary");
    assert!(
        fs::read_dir(&work).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with(".codepilot-")),
        "no scratch left"
    );

    let listed = a.list(Some(&f.id)).await.unwrap();
    assert_eq!(
        listed.iter().map(|s| s.key.as_str()).collect::<Vec<_>>(),
        vec![second.key.as_str(), info.key.as_str()],
        "newest first"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_store_round_trip() {
    let f = fixture();
    let (a, b) = (f.file_store("state-a"), f.file_store("state-b"));
    round_trip(&f, &a, &b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_round_trip_with_multipart_and_prune() {
    let Some(moto) = MotoServer::start("codepilot-snapshots").unwrap() else {
        return;
    };
    let f = fixture();
    let open = |state: &str| {
        SnapshotStore::open(
            &moto.url("tenant/a"),
            SnapshotOptions {
                env: Some(moto.env()),
                ..f.options(state)
            },
        )
        .unwrap()
    };
    let (a, b) = (open("state-a"), open("state-b"));
    round_trip(&f, &a, &b).await;

    // 12 MiB that does not compress: a multipart upload.
    let work = f.root.join("work-b");
    write(&work, "data/huge.bin", &noise(12 << 20, 9));
    let (info, _) = f.save_new(&b, &work).await;
    assert!(info.size > 12 << 20, "{}", info.size);
    let record = f.sessions.load(&f.id).await.unwrap().unwrap();
    let fresh = f.root.join("work-c");
    b.prepare(&record, &fresh, RestoreMode::IfEmpty)
        .await
        .unwrap();
    assert_eq!(
        fs::read(fresh.join("data/huge.bin")).unwrap(),
        noise(12 << 20, 9)
    );

    let deleted = a.prune(Some(&f.id), 1, None, &[]).await.unwrap();
    assert_eq!(deleted.len(), 2);
    let left = a.list(None).await.unwrap();
    assert_eq!(
        left.iter().map(|s| &s.key).collect::<Vec<_>>(),
        vec![&info.key],
        "the newest stays"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_modes() {
    let f = fixture();
    let a = f.file_store("state-a");
    let b = f.file_store("state-b");
    let work = f.root.join("work");
    write(&work, "a.txt", b"from the session");
    f.save_new(&a, &work).await;
    let record = f.sessions.load(&f.id).await.unwrap().unwrap();

    let foreign = f.root.join("checkout");
    write(&foreign, "README", b"someone else's");
    let refused = b
        .prepare(&record, &foreign, RestoreMode::IfEmpty)
        .await
        .unwrap_err();
    assert!(
        matches!(refused, SnapshotError::NotEmpty { .. }),
        "{refused}"
    );
    assert!(
        refused.to_string().contains("restore `replace`"),
        "{refused}"
    );
    assert_eq!(
        fs::read(foreign.join("README")).unwrap(),
        b"someone else's",
        "untouched"
    );

    assert!(matches!(
        b.prepare(&record, &foreign, RestoreMode::Skip)
            .await
            .unwrap(),
        Prepared::Skipped { .. }
    ));
    assert!(foreign.join("README").exists());
    b.prepare(&record, &foreign, RestoreMode::Replace)
        .await
        .unwrap();
    assert!(!foreign.join("README").exists());
    assert_eq!(
        fs::read(foreign.join("a.txt")).unwrap(),
        b"from the session"
    );

    // A copy of the session's workspace that changed since this machine saved it is not restored over.
    write(&work, "a.txt", b"edited after the save");
    write(&f.root.join("elsewhere"), "b.txt", b"newer");
    f.save_new(&b, &f.root.join("elsewhere")).await;
    let record = f.sessions.load(&f.id).await.unwrap().unwrap();
    let refused = a
        .prepare(&record, &work, RestoreMode::IfEmpty)
        .await
        .unwrap_err();
    assert!(
        matches!(refused, SnapshotError::NotEmpty { .. }),
        "{refused}"
    );
    assert_eq!(
        fs::read(work.join("a.txt")).unwrap(),
        b"edited after the save"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_snapshots_keep_and_leave_alone() {
    let f = fixture();
    let store = f.file_store("state");
    let work = f.root.join("work");
    let outside = f.root.join("outside");
    write(&outside, "secret.txt", b"not the workspace's");
    write(&work, "tool.sh", b"#!/bin/sh\n");
    fs::set_permissions(work.join("tool.sh"), fs::Permissions::from_mode(0o4755)).unwrap();
    // `.git` as a link to a folder outside: stored as a link, never walked.
    std::os::unix::fs::symlink(&outside, work.join(".git")).unwrap();
    let (_, files) = f.save_new(&store, &work).await;
    assert_eq!(files, 1, "tool.sh only");
    let record = f.sessions.load(&f.id).await.unwrap().unwrap();

    // Replace over a checkout: the snapshot's files replace the checkout's, its ignored files stay.
    let checkout = f.root.join("checkout");
    write(&checkout, ".gitignore", b".env\nnode_modules/\n");
    write(&checkout, ".env", b"TOKEN=keep me");
    write(&checkout, "node_modules/x/index.js", b"module");
    write(&checkout, "README", b"the checkout's");
    store
        .prepare(&record, &checkout, RestoreMode::Replace)
        .await
        .unwrap();
    assert_eq!(fs::read(checkout.join(".env")).unwrap(), b"TOKEN=keep me");
    assert_eq!(
        fs::read(checkout.join("node_modules/x/index.js")).unwrap(),
        b"module"
    );
    assert!(!checkout.join("README").exists());
    assert!(
        !checkout.join(".gitignore").exists(),
        "tracked, so replaced"
    );
    let mode = fs::metadata(checkout.join("tool.sh"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o755, "set-id bits are not restored");
    assert_eq!(
        fs::read_link(checkout.join(".git")).unwrap(),
        outside,
        "the link, not what it points to"
    );
    assert!(!checkout.join("secret.txt").exists());

    // Pruning never deletes a protected key, whatever its age.
    write(&work, "more.txt", b"x");
    let first = f.recorded().await.unwrap();
    f.save_new(&store, &work).await;
    let deleted = store
        .prune(Some(&f.id), 1, None, &[first.as_str()])
        .await
        .unwrap();
    assert!(deleted.is_empty(), "{deleted:?}");
    assert_eq!(store.list(Some(&f.id)).await.unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn size_cap_is_a_clear_error_and_records_nothing() {
    let f = fixture();
    let store = SnapshotStore::open(
        &format!("file://{}", f.root.join("objects").display()),
        SnapshotOptions {
            max_bytes: 10_000,
            ..f.options("state")
        },
    )
    .unwrap();
    let work = f.root.join("work");
    write(&work, "small.txt", b"x");
    write(&work, "assets/video.bin", &noise(20_000, 3));
    let (lease, _) = f.sessions.open(&f.id, "agent").await.unwrap();
    let err = store
        .save(&*f.sessions, &lease, &work, f.recorded().await.as_deref())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            SnapshotError::TooLarge {
                bytes: 20_001,
                limit: 10_000,
                ..
            }
        ),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains("assets/video.bin"),
        "names the largest file: {text}"
    );
    assert!(
        text.contains(".gitignore") && text.contains("--snapshot-max-mb"),
        "says what to do: {text}"
    );
    f.sessions.release(lease).await.unwrap();
    assert_eq!(
        f.sessions.load(&f.id).await.unwrap().unwrap().meta.snapshot,
        None
    );
    assert!(store.list(None).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_and_missing_snapshots_are_clear_errors_that_touch_nothing() {
    let f = fixture();
    let a = f.file_store("state-a");
    let b = f.file_store("state-b");
    let work = f.root.join("work");
    write(&work, "a.txt", &noise(100_000, 5));
    let (info, _) = f.save_new(&a, &work).await;
    let record = f.sessions.load(&f.id).await.unwrap().unwrap();
    let object = f.root.join("objects").join(&info.key);
    let good = fs::read(&object).unwrap();

    for (what, bytes) in [
        ("garbage", b"not a snapshot".to_vec()),
        ("truncated", good[..good.len() / 2].to_vec()),
        ("a flipped byte", {
            let mut b = good.clone();
            let mid = b.len() / 2;
            b[mid] ^= 0xff;
            b
        }),
    ] {
        fs::write(&object, &bytes).unwrap();
        let target = f.root.join("restore-here");
        let err = b
            .prepare(&record, &target, RestoreMode::IfEmpty)
            .await
            .unwrap_err();
        assert!(
            matches!(err, SnapshotError::Corrupt { .. }),
            "{what}: {err}"
        );
        assert!(err.to_string().contains(&info.key), "{err}");
        assert!(
            !target.exists() || fs::read_dir(&target).unwrap().next().is_none(),
            "{what}: nothing restored"
        );
    }

    fs::remove_file(&object).unwrap();
    let err = b
        .prepare(&record, &f.root.join("restore-here"), RestoreMode::IfEmpty)
        .await
        .unwrap_err();
    assert!(matches!(err, SnapshotError::Missing { .. }), "{err}");
    assert!(err.to_string().contains("restore `skip`"), "{err}");
    assert_eq!(
        f.sessions.load(&f.id).await.unwrap().unwrap().messages,
        record.messages
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archives_cannot_write_outside_the_work_dir() {
    let f = fixture();
    let store = f.file_store("state");
    let outside = f.root.join("outside");
    fs::create_dir_all(&outside).unwrap();
    // A hostile archive: a symlink to a directory outside, then a file written through it.
    let mut tar = tar::Builder::new(Vec::new());
    let mut link = tar::Header::new_gnu();
    link.set_entry_type(tar::EntryType::Symlink);
    link.set_size(0);
    tar.append_link(&mut link, "escape", &outside).unwrap();
    let mut file = tar::Header::new_gnu();
    file.set_size(5);
    file.set_mode(0o644);
    file.set_path("escape/pwned").unwrap();
    file.set_cksum();
    tar.append(&file, &b"owned"[..]).unwrap();
    let packed = zstd::encode_all(&tar.into_inner().unwrap()[..], 3).unwrap();
    let key = format!("{}/0000000000001-deadbeef.tar.zst", f.id);
    write(&f.root.join("objects"), &key, &packed);

    let (lease, _) = f.sessions.open(&f.id, "agent").await.unwrap();
    f.sessions.set_snapshot(&lease, &key).await.unwrap();
    f.sessions.release(lease).await.unwrap();
    let record = f.sessions.load(&f.id).await.unwrap().unwrap();
    let err = store
        .prepare(&record, &f.root.join("work"), RestoreMode::IfEmpty)
        .await
        .unwrap_err();
    assert!(matches!(err, SnapshotError::Corrupt { .. }), "{err}");
    assert!(!outside.join("pwned").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_store_fails_fast_and_records_nothing() {
    let f = fixture();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let store = SnapshotStore::open(
        "s3://nowhere/prefix",
        SnapshotOptions {
            env: Some(vec![
                (
                    "AWS_ENDPOINT_URL".to_owned(),
                    format!("http://127.0.0.1:{port}"),
                ),
                ("AWS_ACCESS_KEY_ID".to_owned(), "k".to_owned()),
                ("AWS_SECRET_ACCESS_KEY".to_owned(), "s".to_owned()),
            ]),
            ..f.options("state")
        },
    )
    .unwrap();
    let work = f.root.join("work");
    write(&work, "a.txt", b"x");
    let (lease, _) = f.sessions.open(&f.id, "agent").await.unwrap();
    let err = store
        .save(&*f.sessions, &lease, &work, f.recorded().await.as_deref())
        .await
        .unwrap_err();
    assert!(matches!(err, SnapshotError::Store { .. }), "{err}");
    assert!(
        err.to_string().contains("s3://nowhere/prefix"),
        "names the store: {err}"
    );
    f.sessions.release(lease).await.unwrap();
    assert_eq!(
        f.sessions.load(&f.id).await.unwrap().unwrap().meta.snapshot,
        None
    );
}

#[test]
fn bad_urls_say_what_is_accepted() {
    for url in ["ftp://x", "file://relative/dir", "s3://"] {
        let err = SnapshotStore::open(url, SnapshotOptions::default()).unwrap_err();
        assert!(
            err.to_string()
                .contains("file:///ABSOLUTE/DIR or s3://BUCKET/PREFIX"),
            "{err}"
        );
    }
}
