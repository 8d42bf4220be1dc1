//! An incident's end and what is told of it: the one place an incident is closed
//! ([`close`]), whoever decided it ended (a container's recovery, quarantine or removal, a
//! Swarm slot's hand-over followed elsewhere or given up, an incident a previous run left for
//! a container that is gone), and the notification text for an incident ([`notice`]).

mod close;
pub mod notice;

pub use close::{close, close_orphan, times_of, Closing};
