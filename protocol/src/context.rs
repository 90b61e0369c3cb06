//! Fitting the conversation into the model's context window.

use crate::message::Message;
use crate::message::Role;
use crate::observation::ELIDED_OBSERVATION;
use crate::observation::EXECUTION_RESULT_TAG;

/// Messages as sent to the provider: consecutive messages of one role merged, so every provider accepts them, and
/// the oldest observations replaced by [`ELIDED_OBSERVATION`] while the conversation would not fit `budget_chars`.
/// The last two messages (the current task or observation and the answer before it) are never elided. The stored
/// history keeps everything.
#[must_use]
pub fn wire_messages(messages: &[Message], budget_chars: u64) -> Vec<Message> {
    let total: u64 = messages.iter().map(|m| m.content.len() as u64).sum();
    let mut excess = total.saturating_sub(budget_chars);
    let mut elide = vec![false; messages.len()];
    for (i, m) in messages
        .iter()
        .enumerate()
        .take(messages.len().saturating_sub(2))
    {
        if excess == 0 {
            break;
        }
        if m.role == Role::User
            && m.content.starts_with(EXECUTION_RESULT_TAG)
            && m.content.len() > ELIDED_OBSERVATION.len()
        {
            elide[i] = true;
            excess = excess.saturating_sub((m.content.len() - ELIDED_OBSERVATION.len()) as u64);
        }
    }
    let elided = Message::user(ELIDED_OBSERVATION);
    let mut out: Vec<Message> = Vec::with_capacity(messages.len());
    for (i, m) in messages.iter().enumerate() {
        let m = if elide[i] { &elided } else { m };
        match out.last_mut() {
            Some(last) if last.role == m.role => {
                last.content.push_str("\n\n");
                last.content.push_str(&m.content);
            }
            _ => out.push(m.clone()),
        }
    }
    out
}
