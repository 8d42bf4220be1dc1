//! The other nodes' watchdogs (peers), asked read-only over their admin API: where a slot's
//! replacement runs and since when it is healthy, what a slot spent on their node, and (from
//! a manager's watchdog, for a worker) a service's restart condition.

use crate::shared::{Shared, SwarmView};
use selfheal_core::RestartCondition;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The other nodes' watchdogs, found by one DNS name that resolves to all of them: on Swarm,
/// `tasks.<service>` on the stack's overlay network (`--swarm-peers tasks.watchdog:9100`).
/// Asked, read-only, where a slot's replacement runs (`GET /api/v1/swarm/tasks`) and, by a
/// worker that cannot read services, a service's restart condition (from a manager's
/// watchdog: `GET /api/v1/swarm/services/{id}`).
#[derive(Debug, Clone)]
pub struct Peers {
    target: String,
    client: reqwest::Client,
    /// `--admin-token`: the peers' `/api/` wants the same one.
    token: Option<crate::auth_token::Token>,
}

/// How long one peer, or the DNS lookup, may take.
const PEER_TIMEOUT: Duration = Duration::from_secs(2);

/// `GET /api/v1/swarm/tasks`: the Swarm tasks a watchdog watches.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TasksReply {
    pub tasks: Vec<SwarmView>,
}

/// `GET /api/v1/swarm/slots/{service}/{slot}`: what a slot whose task ended on that node
/// spent, RFC 3339 times.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SlotReply {
    pub sent: Vec<String>,
    pub recent: u32,
    pub last: Option<String>,
}

impl SlotReply {
    pub fn of(shared: &Shared, slot: &str) -> Option<Self> {
        let (sent, recent, last) = shared.slots.spent(slot)?;
        Some(Self {
            sent: sent.into_iter().map(|t| shared.clock.rfc3339(t)).collect(),
            recent,
            last: last.map(|t| shared.clock.rfc3339(t)),
        })
    }
}

/// `GET /api/v1/swarm/services/{id}`, answered by a manager's watchdog.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceReply {
    pub restart_condition: String,
}

impl Peers {
    /// `target`: `host:port`, the host a DNS name (checked when it is used, since the name
    /// exists only on the overlay network).
    pub fn new(target: &str, token: Option<crate::auth_token::Token>) -> anyhow::Result<Self> {
        let (host, port) = target
            .rsplit_once(':')
            .ok_or_else(|| anyhow::anyhow!("--swarm-peers {target:?}: expected HOST:PORT"))?;
        if host.is_empty() || port.parse::<u16>().is_err() {
            anyhow::bail!("--swarm-peers {target:?}: expected HOST:PORT, e.g. tasks.watchdog:9100");
        }
        let client = reqwest::Client::builder()
            .timeout(PEER_TIMEOUT)
            .connect_timeout(PEER_TIMEOUT)
            .build()?;
        Ok(Self {
            target: target.to_string(),
            client,
            token,
        })
    }

    async fn addresses(&self) -> Vec<SocketAddr> {
        match tokio::time::timeout(PEER_TIMEOUT, tokio::net::lookup_host(&self.target)).await {
            Ok(Ok(addrs)) => addrs.collect(),
            Ok(Err(e)) => {
                tracing::debug!(peers = %self.target, error = %e, "peers not resolved");
                Vec::new()
            }
            Err(_) => Vec::new(),
        }
    }

    async fn get<T: serde::de::DeserializeOwned>(&self, addr: SocketAddr, path: &str) -> Option<T> {
        let mut req = self.client.get(format!("http://{addr}{path}"));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t.secret());
        }
        let resp = req.send().await.ok()?;
        if !resp.status().is_success() {
            return None;
        }
        resp.json().await.ok()
    }

    /// Every peer's Swarm tasks (this watchdog's own among them: harmless, its ended task is
    /// never its own replacement). Peers that do not answer are left out.
    pub async fn tasks(&self) -> Vec<SwarmView> {
        let addrs = self.addresses().await;
        let replies = futures_util::future::join_all(
            addrs
                .iter()
                .map(|a| self.get::<TasksReply>(*a, "/api/v1/swarm/tasks")),
        )
        .await;
        replies
            .into_iter()
            .flatten()
            .flat_map(|r| r.tasks)
            .collect()
    }

    /// What a slot spent on the node where its last task ended, from that node's watchdog.
    pub async fn slot(&self, slot: &str) -> Option<SlotReply> {
        let addrs = self.addresses().await;
        let path = format!("/api/v1/swarm/slots/{slot}");
        let replies =
            futures_util::future::join_all(addrs.iter().map(|a| self.get::<SlotReply>(*a, &path)))
                .await;
        replies.into_iter().flatten().next()
    }

    /// A service's restart condition, from the first manager's watchdog that knows it.
    pub async fn restart_condition(&self, service_id: &str) -> Option<RestartCondition> {
        let addrs = self.addresses().await;
        let path = format!("/api/v1/swarm/services/{service_id}");
        let replies = futures_util::future::join_all(
            addrs.iter().map(|a| self.get::<ServiceReply>(*a, &path)),
        )
        .await;
        replies
            .into_iter()
            .flatten()
            .find_map(|r| RestartCondition::from_swarm(&r.restart_condition))
    }
}

/// How often a worker's watchdog asks again for a restart condition no manager's watchdog
/// knew yet (they start in any order).
const ASK_AGAIN: Duration = Duration::from_secs(5);

/// Asks the peers for a service's restart condition until one knows it (`None`: cancelled).
pub async fn condition_from_peers(
    peers: &Peers,
    service_id: &str,
    cancel: &CancellationToken,
) -> Option<RestartCondition> {
    loop {
        if let Some(c) = peers.restart_condition(service_id).await {
            return Some(c);
        }
        tokio::select! {
            _ = cancel.cancelled() => return None,
            _ = tokio::time::sleep(ASK_AGAIN) => {}
        }
    }
}

/// What a slot spent on the node where its last task ended, on this watchdog's clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotSpent {
    /// The budget's send times.
    pub sent: Vec<Instant>,
    /// Ends counted for backoff, and the last one's send time.
    pub recent: u32,
    pub last: Option<Instant>,
}

/// How long apart the questions about a slot are.
const ASK_SLOT_EVERY: Duration = Duration::from_secs(2);

/// Asks the peers what a slot spent before its task here started (its last task ended on
/// another node). A few tries: the other node hands the slot over when it sees its task end,
/// which comes before Swarm starts the replacement but may be handled a moment later. `None`:
/// no answer (the slot's budget starts afresh here), or cancelled.
pub async fn slot_spent_elsewhere(
    peers: &Peers,
    slot: &str,
    shared: &Shared,
    cancel: &CancellationToken,
) -> Option<SlotSpent> {
    let at = |t: &str| {
        humantime::parse_rfc3339_weak(t)
            .ok()
            .map(|t| shared.clock.instant(t))
    };
    for _ in 0..3 {
        if let Some(r) = peers.slot(slot).await {
            return Some(SlotSpent {
                sent: r.sent.iter().filter_map(|t| at(t)).collect(),
                recent: r.recent,
                last: r.last.as_deref().and_then(at),
            });
        }
        tokio::select! {
            _ = cancel.cancelled() => return None,
            _ = tokio::time::sleep(ASK_SLOT_EVERY) => {}
        }
    }
    None
}
