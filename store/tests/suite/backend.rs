//! One way to build every backend, and a macro that runs a test against each of them.

use std::future::Future;
use std::sync::Arc;

use codepilot_store::FileStore;
use codepilot_store::MemoryStore;
use codepilot_store::SessionStore;
use codepilot_store::StoreConfig;
use codepilot_store::StoreOptions;
use codepilot_store::open_store_with;
use codepilot_testkit::service::pg_url;
use tempfile::TempDir;

/// The backends under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Memory,
    File,
    Sqlite,
    Postgres,
}

/// The data of one backend; `store_with` gives views of it as different "processes".
pub struct Backend {
    pub kind: Kind,
    memory: MemoryStore,
    pub dir: TempDir,
    pg_url: Option<String>,
}

impl Backend {
    /// `None` when the backend is unavailable here (Postgres without a URL, outside CI).
    pub fn new(kind: Kind) -> Option<Self> {
        let pg_url = if kind == Kind::Postgres {
            Some(pg_url()?)
        } else {
            None
        };
        Some(Self {
            kind,
            memory: MemoryStore::new(StoreOptions::default()),
            dir: tempfile::tempdir().unwrap(),
            pg_url,
        })
    }

    /// This process's view with default options.
    pub async fn store(&self) -> Arc<dyn SessionStore> {
        self.store_with(StoreOptions::default()).await
    }

    /// A view of the same data taking leases under `opts` (another holder or TTL).
    pub async fn store_with(&self, opts: StoreOptions) -> Arc<dyn SessionStore> {
        match self.kind {
            Kind::Memory => Arc::new(self.memory.share(opts)),
            Kind::File => Arc::new(FileStore::new(self.dir.path().join("sessions"), opts).unwrap()),
            Kind::Sqlite => {
                let db = self.dir.path().join("nested/dir/sessions.db");
                open_store_with(StoreConfig::sqlite_file(db), opts)
                    .await
                    .unwrap()
            }
            Kind::Postgres => {
                let url = self.pg_url.clone().unwrap();
                open_store_with(StoreConfig::Postgres { url }, opts)
                    .await
                    .unwrap()
            }
        }
    }
}

/// Runs `test` against a fresh backend of `kind`, or skips it.
pub async fn run<F, Fut>(kind: Kind, test: F)
where
    F: FnOnce(Backend) -> Fut,
    Fut: Future<Output = ()>,
{
    if let Some(b) = Backend::new(kind) {
        test(b).await;
    }
}

/// Declares `memory::NAME`, `file::NAME`, `sqlite::NAME` and `postgres::NAME` for each `async fn NAME(Backend)`.
macro_rules! for_each_backend {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                crate::suite::backend::run(crate::suite::backend::Kind::Memory, super::$name).await;
            })*
        }
        mod file {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                crate::suite::backend::run(crate::suite::backend::Kind::File, super::$name).await;
            })*
        }
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                crate::suite::backend::run(crate::suite::backend::Kind::Sqlite, super::$name).await;
            })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                crate::suite::backend::run(crate::suite::backend::Kind::Postgres, super::$name).await;
            })*
        }
    };
}
pub(crate) use for_each_backend;
