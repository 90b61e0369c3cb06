//! Compaction: what leaves the view, in whole units, oldest first, until the request is down to the low-water mark.

use super::ContextBook;
use super::LOW_WATER;
use super::MESSAGE_OVERHEAD;
use super::Overflow;

/// Room kept for the markers compaction adds (a few lines each).
const MARKER_ALLOWANCE: u64 = 40;

/// Compacts the view so that the request (`fixed` raw tokens of system prompt plus the view) fits, going down to
/// [`LOW_WATER`] of the budget. Phases: elide old observations, drop old steps, drop finished tasks, and as a last
/// resort cut the newest step's answer and observation (never the task's opening).
pub(super) fn compact(book: &mut ContextBook, fixed: u64) -> Result<(), Overflow> {
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let raw_of = |calibrated: f64| -> u64 {
        let cal = if book.params.counter.is_exact() {
            1.0
        } else {
            book.calibration
        };
        (calibrated / cal).floor().max(0.0) as u64
    };
    #[allow(clippy::cast_precision_loss)]
    let budget = book.params.budget as f64;
    let target = raw_of(budget * LOW_WATER).saturating_sub(fixed);
    let limit = raw_of(budget).saturating_sub(fixed);
    book.cuts.clear();
    book.rebuild();
    let mut est = book.view.total;
    let last = book.tasks.len().saturating_sub(1);

    // Old observations.
    'elide: for ti in 0..book.tasks.len() {
        if !shown_in_full(book, ti, last) {
            continue;
        }
        let upto = unprotected_steps(book, ti, last);
        while book.tasks[ti].elided < upto {
            if est <= target {
                break 'elide;
            }
            let s = book.tasks[ti].elided;
            if s >= book.tasks[ti].steps_dropped {
                for i in book.tasks[ti].step_range(s) {
                    if book.is_observation(i) {
                        est = est
                            .saturating_sub(book.msgs[i].tokens.saturating_sub(book.elided_tokens));
                    }
                }
            }
            book.tasks[ti].elided += 1;
        }
    }

    // Old steps, whole.
    'steps: for ti in 0..book.tasks.len() {
        if !shown_in_full(book, ti, last) {
            continue;
        }
        let upto = unprotected_steps(book, ti, last);
        while book.tasks[ti].steps_dropped < upto {
            if est <= target {
                break 'steps;
            }
            let t = &book.tasks[ti];
            let s = t.steps_dropped;
            let step_tokens: u64 = t
                .step_range(s)
                .map(|i| {
                    if s < t.elided && book.is_observation(i) {
                        book.elided_tokens + MESSAGE_OVERHEAD
                    } else {
                        book.msgs[i].tokens + MESSAGE_OVERHEAD
                    }
                })
                .sum();
            est = est.saturating_sub(step_tokens);
            if s == 0 {
                est += MARKER_ALLOWANCE;
            }
            book.tasks[ti].steps_dropped += 1;
        }
    }

    // Finished tasks, whole (archived ones too).
    for ti in 0..last {
        if est <= target {
            break;
        }
        if book.tasks[ti].dropped {
            continue;
        }
        est = est.saturating_sub(book.task_view_tokens(ti)) + MARKER_ALLOWANCE;
        book.tasks[ti].dropped = true;
    }
    book.rebuild();
    if book.view.total <= limit {
        return Ok(());
    }

    // The protected part alone is too big. The newest step's answer goes first (a runaway generation, a proxy that
    // ignored max_tokens): cut to at most a quarter of the room, then its largest observation, then the answer down
    // to its head and tail. The task's opening is never cut: if it alone does not fit, the request cannot be made.
    let (answer, observation) = newest_step(book);
    let steps = [
        answer.map(|i| (i, limit / 4)),
        observation.map(|i| (i, 0)),
        answer.map(|i| (i, 0)),
    ];
    for (i, floor) in steps.into_iter().flatten() {
        if book.view.total <= limit {
            return Ok(());
        }
        let excess = book.view.total - limit;
        let shown = book.shown_tokens(i);
        cut_to(book, i, shown.saturating_sub(excess).max(floor.min(shown)));
        book.rebuild();
    }
    if book.view.total <= limit {
        return Ok(());
    }
    Err(Overflow {
        tokens: book.calibrated(book.view.total + fixed),
        budget: book.params.budget,
    })
}

/// Whether task `ti` is in the view with its own messages (not dropped, not replaced by an archive).
fn shown_in_full(book: &ContextBook, ti: usize, last: usize) -> bool {
    let t = &book.tasks[ti];
    !t.dropped && (ti == last || book.archive_of(t.number).is_none())
}

/// Steps of task `ti` that compaction may touch: all of a finished task's, all but the newest of the current one.
fn unprotected_steps(book: &ContextBook, ti: usize, last: usize) -> usize {
    let n = book.tasks[ti].steps.len();
    if ti == last { n.saturating_sub(1) } else { n }
}

/// The newest step's answer (its assistant message) and its largest user message (an observation or a queued
/// message; never the task's opening).
fn newest_step(book: &ContextBook) -> (Option<usize>, Option<usize>) {
    let Some(t) = book.tasks.last() else {
        return (None, None);
    };
    let Some(&newest) = t.steps.last() else {
        return (None, None);
    };
    let observation = (newest..t.end)
        .filter(|&i| book.msgs[i].wire.role() == codepilot_protocol::Role::User)
        .max_by_key(|&i| book.msgs[i].tokens);
    (Some(newest), observation)
}

/// Shows message `i` in requests as its head and tail, about `keep_tokens` long with the marker saying how much
/// was cut. The stored message is not changed.
fn cut_to(book: &mut ContextBook, i: usize, keep_tokens: u64) {
    let msg = &book.msgs[i];
    if keep_tokens + MARKER_ALLOWANCE >= msg.tokens {
        return;
    }
    let keep_tokens = keep_tokens.saturating_sub(MARKER_ALLOWANCE);
    let content = msg.wire.content();
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let keep_bytes =
        (content.len() as f64 * keep_tokens as f64 / msg.tokens.max(1) as f64) as usize;
    let head_end = floor_char(content, keep_bytes * 2 / 3);
    let tail_start = ceil_char(content, content.len() - (keep_bytes - keep_bytes * 2 / 3));
    let text = format!(
        "{}\n[… {} characters cut to fit the context window …]\n{}",
        &content[..head_end],
        content[head_end..tail_start.max(head_end)].chars().count(),
        &content[tail_start.max(head_end)..]
    );
    let n = book.params.counter.count(&text);
    book.cuts.retain(|(at, _, _)| *at != i);
    book.cuts.push((i, text, n));
}

fn floor_char(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn ceil_char(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i += 1;
    }
    i
}
