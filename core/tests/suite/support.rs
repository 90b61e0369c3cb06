//! Shared helpers: an agent pointed at a scripted server, and an event recorder.

use std::path::Path;
use std::sync::Arc;
use std::sync::Mutex;

use codepilot::AgentFile;
use codepilot::AsyncRuntime;
use codepilot::Event;
use codepilot::RuntimeBuilder;
use codepilot_testkit::ScriptedServer;
use codepilot_testkit::Turn;

/// Which wire format the agent speaks to the scripted server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    Anthropic,
    OpenAi,
}

pub const BOTH: [Wire; 2] = [Wire::Anthropic, Wire::OpenAi];

/// Agent YAML for `wire`, with `extra` lines appended under `agent:` (indented by the caller with 2 spaces).
pub fn agent(
    server: &ScriptedServer,
    wire: Wire,
    work: &Path,
    stream: bool,
    extra: &str,
) -> AgentFile {
    let (provider, base) = match wire {
        Wire::Anthropic => ("anthropic", server.base_url()),
        Wire::OpenAi => ("openai-compatible", format!("{}/v1", server.base_url())),
    };
    let yaml = format!(
        "agent:\n  name: TestPilot\n  role: a careful test agent.\n  model:\n    provider: {provider}\n    name: test-model\n    \
         base_url: {base}\n    stream: {stream}\n  runtime:\n    work_dir: {}\n    max_steps: 6\n{extra}",
        serde_json::to_string(&work.display().to_string()).unwrap()
    );
    AgentFile::from_yaml_str(&yaml, Some(&work.join("agent.yaml"))).unwrap()
}

/// A builder with a fake API key for providers that need one.
pub fn builder(agent: AgentFile) -> RuntimeBuilder {
    AsyncRuntime::builder(agent)
        .env(|var| (var == "ANTHROPIC_API_KEY").then(|| "test-key".to_owned()))
        .checkpoint_dir(CHECKPOINTS.path())
        .index_dir(CHECKPOINTS.path().join("index"))
}

/// Where this test process's runtimes keep checkpoints: never the user's home.
static CHECKPOINTS: std::sync::LazyLock<tempfile::TempDir> = std::sync::LazyLock::new(|| {
    tempfile::Builder::new()
        .prefix("codepilot-core-tests-")
        .tempdir()
        .expect("a temporary folder for checkpoints")
});

/// A runtime over a server with `answers`, file tools only unless `extra` says otherwise.
pub async fn start(
    answers: &[&str],
    wire: Wire,
    work: &Path,
    extra: &str,
) -> (ScriptedServer, AsyncRuntime, Recorder) {
    let server = ScriptedServer::start(answers.iter().map(|a| Turn::answer(*a)).collect())
        .await
        .unwrap();
    let extra = if extra.is_empty() { FILE_TOOLS } else { extra };
    let rt = builder(agent(&server, wire, work, true, extra))
        .build()
        .await
        .unwrap();
    let rec = Recorder::attach(&rt);
    (server, rt, rec)
}

/// A server scripted with `turns` and a streaming runtime (file tools only) pointed at it.
pub async fn runtime_with(
    turns: Vec<Turn>,
    wire: Wire,
    work: &Path,
) -> (ScriptedServer, AsyncRuntime) {
    let server = ScriptedServer::start(turns).await.unwrap();
    let rt = builder(agent(&server, wire, work, true, FILE_TOOLS))
        .build()
        .await
        .unwrap();
    (server, rt)
}

/// Tools without terminals, for tests that don't need a shell.
pub const FILE_TOOLS: &str = "  tools:\n    - {name: execute, enabled: false}\n    - {name: read_output, enabled: false}\n    - {name: send_input, enabled: false}\n    - {name: terminate_terminal, enabled: false}\n";

/// Records every event.
#[derive(Clone, Default)]
pub struct Recorder(Arc<Mutex<Vec<Event>>>);

impl Recorder {
    pub fn attach(rt: &AsyncRuntime) -> Self {
        let rec = Self::default();
        let inner = Arc::clone(&rec.0);
        rt.on_event(move |e| inner.lock().unwrap().push(e.clone()));
        rec
    }

    pub fn events(&self) -> Vec<Event> {
        self.0.lock().unwrap().clone()
    }

    pub fn streamed_text(&self) -> String {
        self.events()
            .iter()
            .filter_map(|e| match e {
                Event::Stream(s) => Some(s.text.clone()),
                _ => None,
            })
            .collect()
    }
}

pub use codepilot_testkit::last_user_text;
pub use codepilot_testkit::system_text;

/// Runs `task` on a clone of `rt` in the background.
pub fn spawn_run(
    rt: &AsyncRuntime,
    task: &str,
) -> tokio::task::JoinHandle<codepilot::Result<codepilot::Outcome>> {
    let rt = rt.clone();
    let task = task.to_owned();
    tokio::spawn(async move { rt.run(&task).await })
}

/// Resolves once `rt` emits an event `pred` accepts (registered before anything runs, so none is missed).
pub fn when(
    rt: &AsyncRuntime,
    pred: impl Fn(&Event) -> bool + Send + Sync + 'static,
) -> tokio::sync::oneshot::Receiver<()> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let tx = Mutex::new(Some(tx));
    rt.on_event(move |e| {
        if pred(e)
            && let Some(tx) = tx.lock().unwrap().take()
        {
            let _ = tx.send(());
        }
    });
    rx
}

/// Runs `task` on a clone of `rt`, aborts it once `ready` resolves (say, the run reached a step or a tool call),
/// and returns the outcome, which must come promptly.
pub async fn run_then_abort(
    rt: &AsyncRuntime,
    task: &str,
    ready: tokio::sync::oneshot::Receiver<()>,
) -> codepilot::Outcome {
    let run = spawn_run(rt, task);
    tokio::time::timeout(std::time::Duration::from_secs(60), ready)
        .await
        .expect("the run never got to the point to abort it")
        .unwrap();
    rt.abort();
    tokio::time::timeout(std::time::Duration::from_secs(10), run)
        .await
        .expect("abort must end the run promptly")
        .unwrap()
        .unwrap()
}
