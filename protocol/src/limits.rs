//! What a run may spend (SPEC §21): limits on tokens, cost and wall time, and what is reported against them.

use schemars::JsonSchema;
use serde::Deserialize;
use serde::Serialize;

use crate::message::Usage;

/// The longest wall limit accepted: a year, in seconds.
pub const MAX_WALL_S: u64 = 365 * 24 * 3600;

/// Bounds on what a run (or a whole session) may spend. A limit left out does not apply.
///
/// `runtime.limits` in agent.yaml bounds each run, `runtime.session_limits` the session's whole life (a running total
/// kept in the store, so a resumed session keeps counting); a host overrides the run's limits per run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Tokens of every kind (input, output, cache read and write) over all model calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_total_tokens: Option<u64>,
    /// US dollars, from the tokens and the model's prices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cost_usd: Option<f64>,
    /// Seconds from the start of the run, whatever it is doing (a model call, a shell command); at most
    /// [`MAX_WALL_S`]. Runs only: a session's time is not bounded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_wall_s: Option<u64>,
}

impl Limits {
    /// Each limit `self` sets, else `fallback`'s.
    #[must_use]
    pub fn or(self, fallback: Limits) -> Limits {
        Limits {
            max_total_tokens: self.max_total_tokens.or(fallback.max_total_tokens),
            max_cost_usd: self.max_cost_usd.or(fallback.max_cost_usd),
            max_wall_s: self.max_wall_s.or(fallback.max_wall_s),
        }
    }

    /// Whether no limit is set.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.max_total_tokens.is_none() && self.max_cost_usd.is_none() && self.max_wall_s.is_none()
    }

    /// Checks the values: a cost that is not a finite, non-negative number is refused.
    ///
    /// # Errors
    /// A message naming the limit.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(c) = self.max_cost_usd
            && (!c.is_finite() || c < 0.0)
        {
            return Err(format!(
                "max_cost_usd must be a number of US dollars, 0 or more (got {c})"
            ));
        }
        if let Some(s) = self.max_wall_s
            && s > MAX_WALL_S
        {
            return Err(format!(
                "max_wall_s must be at most {MAX_WALL_S} seconds (a year; got {s})"
            ));
        }
        Ok(())
    }
}

/// Which limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LimitKind {
    /// [`Limits::max_total_tokens`].
    MaxTotalTokens,
    /// [`Limits::max_cost_usd`].
    MaxCostUsd,
    /// [`Limits::max_wall_s`].
    MaxWallS,
}

impl LimitKind {
    /// The key, as agent.yaml and the wire name it.
    #[must_use]
    pub fn key(self) -> &'static str {
        match self {
            LimitKind::MaxTotalTokens => "max_total_tokens",
            LimitKind::MaxCostUsd => "max_cost_usd",
            LimitKind::MaxWallS => "max_wall_s",
        }
    }

    /// `amount` in this limit's unit, for people: `12,345 tokens`, `$0.0123`, `30 s`.
    #[must_use]
    pub fn show(self, amount: f64) -> String {
        match self {
            // Token counts are whole numbers stored as f64 for the wire's sake.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            LimitKind::MaxTotalTokens => format!("{} tokens", amount.round() as u64),
            LimitKind::MaxCostUsd => format!("${amount:.4}"),
            LimitKind::MaxWallS => format!("{amount:.1} s"),
        }
    }
}

/// What a limit bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LimitScope {
    /// One run (a turn): `runtime.limits` or the run's own.
    Run,
    /// The session's whole life: `runtime.session_limits`.
    Session,
}

/// [`crate::Event::LimitWarning`]: 80 % of a limit is spent. Once per limit and run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LimitWarningEvent {
    /// The limit.
    pub limit: LimitKind,
    /// Whether it bounds the run or the session.
    pub scope: LimitScope,
    /// The limit's value (tokens, US dollars or seconds).
    pub max: f64,
    /// What is spent so far, in the same unit.
    pub spent: f64,
}

/// What a run spent: tokens by kind and their cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Spend {
    /// Tokens by kind, over the run's model calls.
    pub tokens: Usage,
    /// Their cost in US dollars; `None` when the model's prices are not known.
    #[serde(default)]
    pub cost_usd: Option<f64>,
    /// Whether some token counts are the runtime's estimate (the provider reported none).
    #[serde(default)]
    pub estimated: bool,
    /// Seconds the run took.
    #[serde(default)]
    pub wall_s: f64,
}
