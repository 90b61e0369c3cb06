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
    let (answer, users) = newest_step(book);
    let steps = answer
        .map(|i| (i, limit / 4))
        .into_iter()
        .chain(users.into_iter().map(|i| (i, 0)))
        .chain(answer.map(|i| (i, 0)));
    for (i, floor) in steps {
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

/// The newest step's answer (its assistant message) and its user messages (observations, queued messages; never
/// the task's opening), largest first.
fn newest_step(book: &ContextBook) -> (Option<usize>, Vec<usize>) {
    let Some(t) = book.tasks.last() else {
        return (None, Vec::new());
    };
    let Some(&newest) = t.steps.last() else {
        return (None, Vec::new());
    };
    let mut users: Vec<usize> = (newest..t.end)
        .filter(|&i| book.msgs[i].wire.role() == codepilot_protocol::Role::User)
        .collect();
    users.sort_by_key(|&i| std::cmp::Reverse(book.msgs[i].tokens));
    (Some(newest), users)
}

/// Shows message `i` in requests as its head and tail with a marker saying how much was cut, at most `keep_tokens`
/// long as counted (or the marker alone, when even that is longer); an observation keeps its first line, the tag
/// that says what it is. The stored message is not changed.
fn cut_to(book: &mut ContextBook, i: usize, keep_tokens: u64) {
    let msg = &book.msgs[i];
    if keep_tokens >= msg.tokens {
        return;
    }
    let content = msg.wire.content();
    let keep_first_line = book.is_observation(i);
    let first_line = if keep_first_line {
        content.find('\n').map_or(content.len(), |n| n + 1)
    } else {
        0
    };
    // Bytes per token vary along a message (prose, a run of one character, another script), so the first guess
    // from the average is checked against the count and shrunk until it fits.
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let mut keep_bytes = (content.len() as f64
        * keep_tokens.saturating_sub(MARKER_ALLOWANCE) as f64
        / msg.tokens.max(1) as f64) as usize;
    let mut attempt = 0;
    let (text, n) = loop {
        let head_end = floor_char(content, (keep_bytes * 2 / 3).max(first_line));
        let tail_start = ceil_char(
            content,
            content.len() - (keep_bytes - keep_bytes * 2 / 3).min(content.len()),
        )
        .max(head_end);
        let text = format!(
            "{}\n[… {} characters cut to fit the context window …]\n{}",
            &content[..head_end],
            content[head_end..tail_start].chars().count(),
            &content[tail_start..]
        );
        let n = book.params.counter.count(&text);
        attempt += 1;
        if n <= keep_tokens || keep_bytes == 0 || attempt == 8 {
            break (text, n);
        }
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let shrunk = (keep_bytes as f64 * 0.9 * keep_tokens as f64 / n as f64) as usize;
        keep_bytes = if attempt == 7 { 0 } else { shrunk };
    };
    if n >= book.msgs[i].tokens {
        return;
    }
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
