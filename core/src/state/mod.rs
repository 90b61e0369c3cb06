//! What one session's runs share, whoever drives them: the conversation ([`SessionCell`]), the lease that keeps
//! other processes off it ([`LeaseKeeper`]), and the host's handle on a running task ([`RunControl`]).
//!
//! The runtime creates these and hands them to the step loop; neither reaches into the other.

mod control;
mod lease;
mod session;
mod worker;

pub(crate) use control::RunControl;
pub(crate) use lease::LeaseKeeper;
pub(crate) use session::SessionCell;
pub(crate) use session::SessionState;
pub(crate) use worker::WorkerLink;
pub(crate) use worker::WorkerSpend;
