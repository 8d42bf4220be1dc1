//! selfheal: the watchdog daemon and its command line.
//!
//! `watch` follows Docker's events and the watchdog's own probes, asks the policy core
//! (`selfheal-core`) what to do, and restarts what is broken; every recovery becomes an incident
//! in the journal and a sample in the metrics.

pub mod auth_token;
pub mod cli;
pub mod config;
pub mod container;
pub mod dependents;
pub mod discovery;
pub mod docker;
pub mod drill;
pub mod evidence;
pub mod http;
pub mod incident;
pub mod incident_text;
pub mod journal;
pub mod limits;
pub mod metrics;
pub mod notify;
pub mod probe;
pub mod shared;
pub mod swarm;
pub mod timeline;
pub mod timestamp;
pub mod watch;
