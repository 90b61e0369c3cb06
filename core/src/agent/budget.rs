//! What a run may spend (SPEC §21): the limits on tokens, cost and wall time, checked before every model call
//! against that call's worst case, and what was spent, reported with every `usage` event.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use std::time::Instant;

use codepilot_llm::Pricing;
use codepilot_protocol::LimitKind;
use codepilot_protocol::LimitScope;
use codepilot_protocol::LimitWarningEvent;
use codepilot_protocol::Limits;
use codepilot_protocol::Spend;
use codepilot_protocol::Usage;
use codepilot_protocol::sync::lock;

use crate::Outcome;
use crate::events::UsageEvent;
use crate::state::WorkerSpend;

/// The share of a limit at which a `limit_warning` is emitted.
const WARN_AT: f64 = 0.8;

/// A limit the next call would break: the run ends with this outcome instead.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Exceeded {
    limit: LimitKind,
    scope: LimitScope,
    max: f64,
    spent: f64,
}

impl Exceeded {
    /// The outcome of a run stopped by this limit after `steps` steps.
    pub(crate) fn outcome(self, steps: u32) -> Outcome {
        Outcome::LimitExceeded {
            limit: self.limit,
            scope: self.scope,
            max: self.max,
            spent: self.spent,
            steps,
        }
    }
}

/// One run's limits and spend.
pub(crate) struct Budget {
    run: Limits,
    session: Limits,
    prices: Option<Pricing>,
    max_output: u64,
    started: Instant,
    spent: Usage,
    estimated: bool,
    warned: HashSet<(LimitKind, LimitScope)>,
    /// What the run's workers spent so far; it counts toward the run's limits (and the session's).
    workers: Arc<Mutex<WorkerSpend>>,
}

impl Budget {
    /// A run with limits `run` (the agent's, with the run's own in their place) and `session`, priced at `prices`,
    /// whose calls produce at most `max_output` tokens each.
    pub(crate) fn new(
        run: Limits,
        session: Limits,
        prices: Option<Pricing>,
        max_output: u64,
        workers: Arc<Mutex<WorkerSpend>>,
    ) -> Self {
        Self {
            workers,
            run,
            session,
            prices,
            max_output,
            started: Instant::now(),
            spent: Usage::default(),
            estimated: false,
            warned: HashSet::new(),
        }
    }

    /// When the run's wall time is up, if it has a wall limit.
    pub(crate) fn wall_deadline(&self) -> Option<Instant> {
        self.run
            .max_wall_s
            .and_then(|s| self.started.checked_add(Duration::from_secs(s)))
    }

    fn elapsed_s(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    fn cost(&self, usage: &Usage) -> Option<f64> {
        self.prices.map(|p| p.cost(usage))
    }

    /// The run's own spend with its workers': tokens, and cost (the workers' at their own prices).
    fn with_workers(&self, own: &Usage) -> (Usage, Option<f64>) {
        let workers = *lock(&self.workers);
        let mut tokens = *own;
        tokens.add(&workers.tokens);
        let cost = match self.cost(own) {
            Some(c) => Some(c + workers.cost_usd),
            None if workers.cost_usd > 0.0 => Some(workers.cost_usd),
            None => None,
        };
        (tokens, cost)
    }

    /// The outcome of a run whose wall time ran out.
    pub(crate) fn wall_exceeded(&self) -> Exceeded {
        Exceeded {
            limit: LimitKind::MaxWallS,
            scope: LimitScope::Run,
            #[allow(clippy::cast_precision_loss)]
            max: self.run.max_wall_s.unwrap_or(0) as f64,
            spent: self.elapsed_s(),
        }
    }

    /// Whether a model call whose prompt holds `prompt` tokens may be made: `None` when its worst case (that
    /// prompt at the full price, the longest answer) fits what is left of every limit. `session` is the session's
    /// usage before the call.
    pub(crate) fn check(&self, prompt: u64, session: &Usage) -> Option<Exceeded> {
        if let Some(max) = self.run.max_wall_s
            && self.started.elapsed() >= Duration::from_secs(max)
        {
            return Some(self.wall_exceeded());
        }
        let call_tokens = prompt.saturating_add(self.max_output);
        let call_cost = self.prices.map(|p| p.worst_case(prompt, self.max_output));
        for (scope, limits, (usage, cost)) in [
            (LimitScope::Run, &self.run, self.with_workers(&self.spent)),
            (
                LimitScope::Session,
                &self.session,
                self.with_workers(session),
            ),
        ] {
            if let Some(max) = limits.max_total_tokens
                && usage.total().saturating_add(call_tokens) > max
            {
                #[allow(clippy::cast_precision_loss)]
                return Some(Exceeded {
                    limit: LimitKind::MaxTotalTokens,
                    scope,
                    max: max as f64,
                    spent: usage.total() as f64,
                });
            }
            if let (Some(max), Some(spent), Some(call)) = (limits.max_cost_usd, cost, call_cost)
                && spent + call > max
            {
                return Some(Exceeded {
                    limit: LimitKind::MaxCostUsd,
                    scope,
                    max,
                    spent,
                });
            }
        }
        None
    }

    /// Counts a call's `usage` (`estimated` when the provider reported none) and returns its `usage` event, and
    /// the warnings of the limits it took past 80 %. `session` is the session's usage after the call.
    pub(crate) fn record(
        &mut self,
        usage: Usage,
        estimated: bool,
        session: Usage,
    ) -> (UsageEvent, Vec<LimitWarningEvent>) {
        self.spent.add(&usage);
        self.estimated |= estimated;
        let event = UsageEvent {
            call: usage,
            total: session,
            cost_usd: self.cost(&usage),
            total_cost_usd: self.cost(&session),
            estimated,
            run: self.spend(),
        };
        let mut warnings = Vec::new();
        #[allow(clippy::cast_precision_loss)]
        let amounts = [
            (
                LimitScope::Run,
                &self.run,
                self.spent.total() as f64,
                self.cost(&self.spent),
            ),
            (
                LimitScope::Session,
                &self.session,
                session.total() as f64,
                self.cost(&session),
            ),
        ];
        for (scope, limits, tokens, cost) in amounts {
            #[allow(clippy::cast_precision_loss)]
            let checks = [
                (
                    LimitKind::MaxTotalTokens,
                    limits.max_total_tokens.map(|m| m as f64),
                    Some(tokens),
                ),
                (LimitKind::MaxCostUsd, limits.max_cost_usd, cost),
                (
                    LimitKind::MaxWallS,
                    limits
                        .max_wall_s
                        .filter(|_| scope == LimitScope::Run)
                        .map(|m| m as f64),
                    Some(self.elapsed_s()),
                ),
            ];
            for (limit, max, spent) in checks {
                if let (Some(max), Some(spent)) = (max, spent)
                    && spent >= max * WARN_AT
                    && self.warned.insert((limit, scope))
                {
                    warnings.push(LimitWarningEvent {
                        limit,
                        scope,
                        max,
                        spent,
                    });
                }
            }
        }
        (event, warnings)
    }

    /// What the run spent so far.
    pub(crate) fn spend(&self) -> Spend {
        let (tokens, cost_usd) = self.with_workers(&self.spent);
        Spend {
            tokens,
            cost_usd,
            estimated: self.estimated,
            wall_s: self.elapsed_s(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn usage(input: u64, output: u64) -> Usage {
        Usage {
            input_tokens: input,
            output_tokens: output,
            calls: 1,
            ..Usage::default()
        }
    }

    #[test]
    fn a_call_is_made_only_if_its_worst_case_fits() {
        let prices = Pricing {
            input_per_mtok: 3.0,
            output_per_mtok: 15.0,
            cache_read_per_mtok: 0.3,
            cache_write_per_mtok: 3.75,
        };
        let mut b = Budget::new(
            Limits {
                max_total_tokens: Some(10_000),
                max_cost_usd: Some(0.05),
                max_wall_s: None,
            },
            Limits::default(),
            Some(prices),
            1_000,
            Arc::default(),
        );
        assert_eq!(b.check(8_000, &Usage::default()), None);
        let (event, warnings) = b.record(usage(8_000, 500), false, usage(8_000, 500));
        assert!((event.cost_usd.unwrap() - (0.024 + 0.0075)).abs() < 1e-9);
        assert_eq!(warnings.len(), 1, "85 % of the tokens: {warnings:?}");
        assert_eq!(warnings[0].limit, LimitKind::MaxTotalTokens);
        let stop = b.check(1_000, &usage(8_000, 500)).unwrap();
        assert_eq!(
            (stop.limit, stop.scope, stop.spent),
            (LimitKind::MaxTotalTokens, LimitScope::Run, 8_500.0)
        );
        let (_, again) = b.record(usage(100, 0), true, usage(8_100, 500));
        assert!(again.is_empty(), "each limit warns once");
        assert!(b.spend().estimated);
    }

    #[test]
    fn session_limits_count_what_came_before() {
        let b = Budget::new(
            Limits::default(),
            Limits {
                max_total_tokens: Some(50_000),
                ..Limits::default()
            },
            None,
            4_096,
            Arc::default(),
        );
        let stop = b.check(1_000, &usage(45_000, 0)).unwrap();
        assert_eq!((stop.scope, stop.spent), (LimitScope::Session, 45_000.0));
        assert_eq!(b.check(1_000, &usage(40_000, 0)), None);
    }
}
