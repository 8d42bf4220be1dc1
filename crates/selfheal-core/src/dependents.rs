//! Dependents: which watched containers depend on which, and when a parent's dependents are
//! released for a restart. Pure: the daemon hands in what inspect showed and feeds the parent's
//! state; the restart of each dependent is decided by that dependent's own [`crate::Supervisor`]
//! (its backoff and budget) from [`crate::Observation::ParentStarted`].
//!
//! A dependent learns its parents three ways:
//! - **network**: `HostConfig.NetworkMode` is `container:<id or name>` (Docker's
//!   `--network container:X`, compose's `network_mode: service:X`). Docker joins the parent's
//!   network namespace when the dependent *starts*; a parent that starts again has a new
//!   namespace, and a dependent started before that start is left with only loopback.
//! - **compose**: compose's `com.docker.compose.depends_on` label (Compose v2.17+), entries
//!   `SERVICE:CONDITION:RESTART` joined by `,` (compose's `pkg/compose/create.go` writes
//!   `fmt.Sprintf("%s:%s:%t", name, condition, restart)`); only entries with `restart` true
//!   count, as in compose's own `compose restart` (compose-spec `depends_on.restart`).
//! - **label**: `selfheal.depends-on=NAME[,NAME]`, container names.

use crate::policy::State;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use tokio::time::Instant;

/// Compose's label with a service's `depends_on` (Compose v2.17 and later).
pub const COMPOSE_DEPENDS_ON: &str = "com.docker.compose.depends_on";
pub const COMPOSE_PROJECT: &str = "com.docker.compose.project";
pub const COMPOSE_SERVICE: &str = "com.docker.compose.service";

/// How a dependent is tied to its parent, as shown by the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Via {
    /// It runs in the parent's network namespace.
    Network,
    /// Compose's `depends_on` with `restart: true`.
    Compose,
    /// `selfheal.depends-on`.
    Label,
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Network => "network",
            Via::Compose => "compose",
            Via::Label => "label",
        }
    }
}

/// The parent named by a `NetworkMode` of `container:<id or name>`.
pub fn network_parent(network_mode: &str) -> Option<&str> {
    network_mode
        .strip_prefix("container:")
        .filter(|r| !r.is_empty())
}

/// The services in compose's `com.docker.compose.depends_on` label that have `restart: true`.
/// An entry without the third field (compose before v2.17) never restarts. An entry that is
/// not `SERVICE:CONDITION[:RESTART...]` is an error naming it.
pub fn compose_restart_parents(value: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let mut fields = entry.split(':');
        let service = fields.next().unwrap_or_default();
        let condition = fields.next();
        let restart = fields.next();
        if service.is_empty() || condition.is_none_or(str::is_empty) {
            return Err(format!("entry {entry:?} is not SERVICE:CONDITION:RESTART"));
        }
        match restart {
            Some("true") => out.push(service.to_string()),
            Some("false") | None => {}
            Some(other) => {
                return Err(format!(
                    "entry {entry:?}: restart is {other:?}, not true or false"
                ))
            }
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// What one watched container says about its parents, before they are resolved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Node {
    pub id: String,
    pub name: String,
    /// Compose project and service.
    pub compose: Option<(String, String)>,
    /// The `<id or name>` of `NetworkMode: container:<id or name>`.
    pub network_parent: Option<String>,
    /// Services from compose's `depends_on` with `restart: true`.
    pub compose_parents: Vec<String>,
    /// Why compose's `depends_on` label could not be read.
    pub compose_error: Option<String>,
    /// Names from `selfheal.depends-on`.
    pub label_parents: Vec<String>,
    /// `selfheal.dependents=ignore`: its dependents are left alone.
    pub ignore_dependents: bool,
}

/// One resolved edge: this container depends on `id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ParentLink {
    pub name: String,
    pub id: String,
    pub via: Via,
}

/// The dependency graph of the watched containers.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    names: BTreeMap<String, String>,
    parents: BTreeMap<String, Vec<ParentLink>>,
    children: BTreeMap<String, BTreeSet<String>>,
    errors: BTreeMap<String, String>,
    ignore: BTreeSet<String>,
}

impl Graph {
    /// Resolves every node's parents among `nodes`. A parent that is not among them, or a
    /// cycle, is an error on the dependent; its dependency handling is off (no edges), and it
    /// is still healed on its own.
    pub fn build(nodes: &[Node]) -> Self {
        let mut g = Graph::default();
        // Indexes: the graph is rebuilt whenever a container comes or goes.
        let by_name: HashMap<&str, &Node> = nodes.iter().map(|n| (n.name.as_str(), n)).collect();
        let by_service: HashMap<(&str, &str), &Node> = nodes
            .iter()
            .filter_map(|n| {
                n.compose
                    .as_ref()
                    .map(|(p, s)| ((p.as_str(), s.as_str()), n))
            })
            .collect();
        for n in nodes {
            g.names.insert(n.id.clone(), n.name.clone());
            if n.ignore_dependents {
                g.ignore.insert(n.id.clone());
            }
        }
        for n in nodes {
            let mut links: Vec<ParentLink> = Vec::new();
            let mut errors: Vec<String> = Vec::new();
            let add = |links: &mut Vec<ParentLink>, p: &Node, via: Via| {
                if !links.iter().any(|l| l.id == p.id) {
                    links.push(ParentLink {
                        name: p.name.clone(),
                        id: p.id.clone(),
                        via,
                    });
                }
            };
            if let Some(r) = &n.network_parent {
                match resolve_ref(nodes, r, &by_name) {
                    Some(p) => add(&mut links, p, Via::Network),
                    None => errors.push(format!(
                        "network parent {r} is not a watched container (gone, or not opted in)"
                    )),
                }
            }
            if let Some(e) = &n.compose_error {
                errors.push(format!("{COMPOSE_DEPENDS_ON}: {e}"));
            }
            for s in &n.compose_parents {
                let found = n
                    .compose
                    .as_ref()
                    .and_then(|(project, _)| by_service.get(&(project.as_str(), s.as_str())));
                match found {
                    Some(p) => add(&mut links, p, Via::Compose),
                    None => errors.push(format!("compose service {s} has no watched container")),
                }
            }
            for name in &n.label_parents {
                match by_name.get(name.as_str()) {
                    Some(p) => add(&mut links, p, Via::Label),
                    None => errors.push(format!(
                        "selfheal.depends-on names {name}, which is not a watched container"
                    )),
                }
            }
            if links.iter().any(|l| l.id == n.id) {
                errors.push("it depends on itself".into());
            }
            if errors.is_empty() {
                g.parents.insert(n.id.clone(), links);
            } else {
                g.errors.insert(n.id.clone(), errors.join("; "));
            }
        }
        for id in g.on_cycles() {
            let path = g.cycle_from(&id);
            g.errors.insert(id, format!("dependency cycle: {path}"));
        }
        g.parents.retain(|id, _| !g.errors.contains_key(id));
        for (child, links) in &g.parents {
            for l in links {
                g.children
                    .entry(l.id.clone())
                    .or_default()
                    .insert(child.clone());
            }
        }
        g
    }

    /// The containers on a cycle of parent links.
    fn on_cycles(&self) -> Vec<String> {
        self.parents
            .keys()
            .filter(|id| self.reaches(id, id))
            .cloned()
            .collect()
    }

    /// Some parent chain from `from` leads back to `to`.
    fn reaches(&self, from: &str, to: &str) -> bool {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<&str> = self.parent_ids(from).collect();
        while let Some(id) = stack.pop() {
            if id == to {
                return true;
            }
            if seen.insert(id) {
                stack.extend(self.parent_ids(id));
            }
        }
        false
    }

    fn parent_ids<'a>(&'a self, id: &str) -> impl Iterator<Item = &'a str> + 'a {
        self.parents
            .get(id)
            .into_iter()
            .flatten()
            .map(|l| l.id.as_str())
    }

    /// `a -> b -> a` by names, for the error.
    fn cycle_from(&self, start: &str) -> String {
        let mut path = vec![self.name(start)];
        let mut at = start.to_string();
        for _ in 0..self.parents.len() {
            let Some(next) = self
                .parent_ids(&at)
                .find(|p| *p == start || self.reaches(p, start))
            else {
                break;
            };
            path.push(self.name(next));
            if next == start {
                break;
            }
            at = next.to_string();
        }
        path.join(" -> ")
    }

    fn name(&self, id: &str) -> String {
        self.names.get(id).cloned().unwrap_or_else(|| id.into())
    }

    /// The parents of `id` (empty when it has none, or its dependencies are in error).
    pub fn parents(&self, id: &str) -> &[ParentLink] {
        self.parents.get(id).map_or(&[], Vec::as_slice)
    }

    /// Why `id`'s dependency handling is off.
    pub fn error(&self, id: &str) -> Option<&str> {
        self.errors.get(id).map(String::as_str)
    }

    /// The names of the containers that depend on `id` directly, sorted. Shown even when the
    /// parent opted out with `selfheal.dependents=ignore`.
    pub fn dependents(&self, id: &str) -> Vec<String> {
        let mut names: Vec<String> = self
            .children
            .get(id)
            .into_iter()
            .flatten()
            .map(|c| self.name(c))
            .collect();
        names.sort();
        names
    }

    /// The dependents to tell when `parent` is running (and healthy) again after a start, in
    /// dependency order: every container that depends on it directly, except one that also
    /// depends on another container that is itself (transitively) among the parent's
    /// dependents and does not opt out: that one is told when that other parent is ready
    /// again after its own restart. Sorted by name within. Empty when `parent` opted out.
    pub fn release_order(&self, parent: &str) -> Vec<String> {
        if self.ignore.contains(parent) {
            return Vec::new();
        }
        let affected = self.descendants(parent);
        let mut out: Vec<String> = self
            .children
            .get(parent)
            .into_iter()
            .flatten()
            .filter(|c| {
                self.parent_ids(c)
                    .all(|p| p == parent || !affected.contains(p) || self.ignore.contains(p))
            })
            .cloned()
            .collect();
        out.sort_by_key(|id| (self.name(id), id.clone()));
        out
    }

    /// Every container whose restart a restart of `id` leads to, through parents that do not
    /// opt out.
    fn descendants(&self, id: &str) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![id.to_string()];
        while let Some(at) = stack.pop() {
            if self.ignore.contains(&at) {
                continue;
            }
            for c in self.children.get(&at).into_iter().flatten() {
                if seen.insert(c.clone()) {
                    stack.push(c.clone());
                }
            }
        }
        seen
    }
}

/// A node whose id is `r`, whose id starts with `r` (a short id, 12 characters or more), or
/// whose name is `r`: Docker's own lookup order for a container reference.
fn resolve_ref<'a>(
    nodes: &'a [Node],
    r: &str,
    by_name: &HashMap<&str, &'a Node>,
) -> Option<&'a Node> {
    nodes
        .iter()
        .find(|n| n.id == r)
        .or_else(|| {
            let by_prefix: Vec<&Node> = nodes
                .iter()
                .filter(|n| r.len() >= 12 && n.id.starts_with(r))
                .collect();
            (by_prefix.len() == 1).then(|| by_prefix[0])
        })
        .or_else(|| by_name.get(r).copied())
}

/// The container that now stands for `gone`, a network parent that was removed: the one
/// container holding the same compose project and service (compose's own identity of a
/// service's container) or, outside compose, the same name. None, or more than one, is an
/// error: recreating a dependent then would be a guess.
pub fn replaced_parent<'a>(gone: &Node, nodes: &'a [Node]) -> Result<&'a Node, String> {
    let (what, found): (String, Vec<&Node>) = match &gone.compose {
        Some((project, service)) => (
            format!("compose service {project}/{service}"),
            nodes
                .iter()
                .filter(|n| {
                    n.id != gone.id
                        && n.compose.as_ref() == Some(&(project.clone(), service.clone()))
                })
                .collect(),
        ),
        None => (
            format!("name {}", gone.name),
            nodes
                .iter()
                .filter(|n| n.id != gone.id && n.name == gone.name)
                .collect(),
        ),
    };
    match found.as_slice() {
        [one] => Ok(one),
        [] => Err(format!(
            "no watched container holds the {what} of the removed parent"
        )),
        many => Err(format!(
            "the {what} of the removed parent is ambiguous: {}",
            many.iter()
                .map(|n| n.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// The node among `gone` that `network_parent` names (by id, short id or name).
pub fn find_gone<'a>(gone: &'a [Node], network_parent: &str) -> Option<&'a Node> {
    let by_name = gone.iter().map(|n| (n.name.as_str(), n)).collect();
    resolve_ref(gone, network_parent, &by_name)
}

/// What a parent's [`ReleaseGate`] says after an observation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// The run that began at `since` is not healthy yet: its dependents wait.
    Waiting { since: Instant },
    /// The run that began at `since` is healthy: tell the dependents, once.
    Release { since: Instant },
}

/// When a parent's dependents are released after it started again: once per run of the
/// parent, as soon as that run is running and healthy (its own HEALTHCHECK and probe, if it
/// has them; a container with neither is healthy once running: [`State::Healthy`]).
#[derive(Debug, Clone, Default)]
pub struct ReleaseGate {
    /// The run whose dependents were released last.
    released: Option<Instant>,
    /// The run last reported waiting.
    waiting: Option<Instant>,
}

impl ReleaseGate {
    /// `run_since`: when the parent's current run began, if it runs; `state`: its state now.
    /// Returns a change to report, if any.
    pub fn observe(&mut self, run_since: Option<Instant>, state: State) -> Option<Gate> {
        let since = run_since?;
        if self.released.is_some_and(|r| r >= since) {
            return None;
        }
        if state == State::Healthy {
            self.released = Some(since);
            self.waiting = None;
            return Some(Gate::Release { since });
        }
        if self.waiting == Some(since) {
            return None;
        }
        self.waiting = Some(since);
        Some(Gate::Waiting { since })
    }
}

#[cfg(test)]
#[path = "dependents_tests.rs"]
mod tests;
