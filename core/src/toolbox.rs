//! The tool set a step runs with: the registry and the prompt rendered from it, swapped as a whole when a tool is
//! registered or an MCP server's tool list changes, so a running step keeps the set it started with.

use std::sync::Arc;
use std::sync::RwLock;

use codepilot_protocol::ToolSpec;
use codepilot_script::Limits;

use crate::config::AgentFile;
use crate::error::Error;
use crate::error::Result;
use crate::mcp::McpHub;
use crate::tools::Registry;

/// The registry and the prompt rendered from it.
pub(crate) struct ToolSet {
    pub(crate) registry: Registry,
    pub(crate) specs: Arc<[ToolSpec]>,
    pub(crate) static_prompt: Arc<str>,
}

impl ToolSet {
    fn new(agent: &AgentFile, registry: Registry, limits: &Limits, project: &str) -> Self {
        let specs: Arc<[ToolSpec]> = registry.specs().to_vec().into();
        let static_prompt = crate::prompt::render_static(&crate::prompt::StaticVars {
            name: &agent.name,
            role: agent.role.as_deref().unwrap_or(""),
            tools: &specs,
            host_prompt: &agent.system_prompt,
            project,
            step_timeout_s: limits.wall_clock.as_secs(),
            max_tool_calls: limits.max_tool_calls,
        });
        Self {
            registry,
            specs,
            static_prompt: static_prompt.into(),
        }
    }
}

/// The current [`ToolSet`] and what renders the next one.
pub(crate) struct ToolBox {
    current: RwLock<Arc<ToolSet>>,
    agent: AgentFile,
    limits: Limits,
    mcp: Option<Arc<McpHub>>,
    /// The work directory, whose `AGENTS.md` files (and the agent file's `instructions_files`) are read.
    work_dir: std::path::PathBuf,
    /// The project instructions the current set was rendered with.
    project: RwLock<Arc<str>>,
}

impl ToolBox {
    pub(crate) fn new(
        agent: AgentFile,
        registry: Registry,
        limits: Limits,
        mcp: Option<Arc<McpHub>>,
        work_dir: &std::path::Path,
    ) -> Self {
        let project: Arc<str> =
            crate::instructions::render(work_dir, &agent.runtime.instructions_files).into();
        let set = ToolSet::new(&agent, registry, &limits, &project);
        Self {
            current: RwLock::new(Arc::new(set)),
            agent,
            limits,
            mcp,
            work_dir: work_dir.to_path_buf(),
            project: RwLock::new(project),
        }
    }

    /// Reads the project instructions again (at the start of a turn, so changes on disk take effect then) and
    /// renders a new set when they changed.
    pub(crate) fn refresh_instructions(&self) -> Result<()> {
        let now =
            crate::instructions::render(&self.work_dir, &self.agent.runtime.instructions_files);
        let unchanged = match self.project.read() {
            Ok(p) => **p == *now,
            Err(poisoned) => **poisoned.into_inner() == *now,
        };
        if unchanged {
            return Ok(());
        }
        let project: Arc<str> = now.into();
        match self.project.write() {
            Ok(mut p) => *p = Arc::clone(&project),
            Err(poisoned) => *poisoned.into_inner() = Arc::clone(&project),
        }
        self.update(|_| Ok(()))
    }

    fn project(&self) -> Arc<str> {
        match self.project.read() {
            Ok(p) => Arc::clone(&p),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// The set a step starts with.
    pub(crate) fn current(&self) -> Arc<ToolSet> {
        match self.current.read() {
            Ok(t) => Arc::clone(&t),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// The MCP servers, when the agent file lists any.
    pub(crate) fn mcp(&self) -> Option<&Arc<McpHub>> {
        self.mcp.as_ref()
    }

    /// Edits a copy of the registry and swaps it in with a freshly rendered prompt; a running step keeps the
    /// tool set it started with.
    pub(crate) fn update<T>(&self, edit: impl FnOnce(&mut Registry) -> Result<T>) -> Result<T> {
        let mut guard = self
            .current
            .write()
            .map_err(|_| Error::Internal("tool registry lock poisoned".to_owned()))?;
        let mut registry = guard.registry.clone();
        let out = edit(&mut registry)?;
        *guard = Arc::new(ToolSet::new(
            &self.agent,
            registry,
            &self.limits,
            &self.project(),
        ));
        Ok(out)
    }

    /// Before a step: fetches MCP tool lists that changed and puts the current MCP tools in the tool set.
    pub(crate) async fn sync_mcp(&self) -> Result<()> {
        let Some(hub) = &self.mcp else {
            return Ok(());
        };
        if !hub.refresh().await {
            return Ok(());
        }
        let tools = hub.tools();
        self.update(|registry| {
            registry.remove_where(|name| hub.is_mcp_tool(name));
            for tool in tools {
                let name = tool.spec().name;
                if registry.get(&name).is_some() {
                    tracing::warn!(
                        "two MCP tools are both called `{name}` in the block (their names differ only in \
                         characters that become `_`); the second is left out"
                    );
                    continue;
                }
                // A tool the block cannot call (a parameter that is not a Python identifier) is left out, the
                // server's other tools stay.
                if let Err(e) = registry.insert_host(tool) {
                    tracing::warn!("MCP tool `{name}` is left out: {e}");
                }
            }
            Ok(())
        })
    }
}
