//! The watch loop's side of dependents: it keeps the dependency graph of the watched
//! containers (built by `selfheal_core::dependents`), publishes it for the API, and routes a
//! parent's release (sent by the parent's task when its new run is ready) to the dependents'
//! tasks, in the graph's release order. Each dependent's own supervisor decides whether it
//! restarts. Nothing here talks to Docker.

use crate::docker::ContainerInfo;
use selfheal_core::dependents::{
    compose_restart_parents, find_gone, network_parent, replaced_parent, Gate, Graph, Node,
    ParentLink, COMPOSE_DEPENDS_ON,
};
use selfheal_core::{ParentRecreated, WatchSpec};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::time::SystemTime;

/// What a parent's task reports to the watch loop.
#[derive(Debug, Clone)]
pub struct GateReport {
    pub parent_id: String,
    pub parent_name: String,
    pub gate: Gate,
    /// When the parent's run began (Docker's `StartedAt`).
    pub since: SystemTime,
    /// The parent's incident whose restart began this run, if any.
    pub incident: Option<u64>,
}

/// What `/api/v1/containers` shows of a container's dependencies.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DependencyView {
    pub depends_on: Vec<ParentLink>,
    pub dependents: Vec<String>,
    pub dependency_error: Option<String>,
}

/// What the watched containers say about their parents, from inspect and labels.
pub fn node_of(info: &ContainerInfo, spec: &WatchSpec) -> Node {
    let (compose_parents, compose_error) = match info.labels.get(COMPOSE_DEPENDS_ON) {
        Some(v) => match compose_restart_parents(v) {
            Ok(p) => (p, None),
            Err(e) => (Vec::new(), Some(e)),
        },
        None => (Vec::new(), None),
    };
    Node {
        id: info.id.clone(),
        name: info.name.clone(),
        compose: info.compose_project().zip(info.compose_service()),
        network_parent: info
            .network_mode
            .as_deref()
            .and_then(network_parent)
            .map(String::from),
        compose_parents,
        compose_error,
        label_parents: spec.depends_on.clone(),
        ignore_dependents: spec.ignore_dependents,
    }
}

/// The graph of the watched containers, rebuilt whenever one comes or goes.
#[derive(Debug, Default)]
pub struct Dependents {
    nodes: BTreeMap<String, Node>,
    graph: Graph,
    /// Removed containers that a watched container still names as its network parent.
    gone: BTreeMap<String, Node>,
}

impl Dependents {
    /// Adds or replaces a container; returns the views of every container, changed or not.
    pub fn upsert(&mut self, node: Node) -> HashMap<String, DependencyView> {
        self.nodes.insert(node.id.clone(), node);
        self.rebuild()
    }

    pub fn remove(&mut self, id: &str) -> Option<HashMap<String, DependencyView>> {
        let node = self.nodes.remove(id)?;
        self.gone.insert(id.to_string(), node);
        Some(self.rebuild())
    }

    /// The network dependents of a removed parent that `parent` now stands for (same compose
    /// service, or same name): each with the new parent's id to recreate it there, or why
    /// that would be a guess.
    pub fn orphans_of(&self, parent: &str) -> Vec<(String, ParentRecreated)> {
        let nodes: Vec<Node> = self.nodes.values().cloned().collect();
        let gone: Vec<Node> = self.gone.values().cloned().collect();
        let Some(new) = self.nodes.get(parent) else {
            return Vec::new();
        };
        if new.ignore_dependents {
            return Vec::new();
        }
        let same_identity = |g: &Node| match (&g.compose, &new.compose) {
            (Some(a), Some(b)) => a == b,
            (None, _) => g.name == new.name,
            _ => false,
        };
        let mut out = Vec::new();
        for n in &nodes {
            let Some(old) = n
                .network_parent
                .as_deref()
                .and_then(|r| find_gone(&gone, r))
            else {
                continue;
            };
            if !same_identity(old) {
                continue;
            }
            let verdict = match replaced_parent(old, &nodes).map(|p| p.id.clone()) {
                Ok(p) if p == parent => ParentRecreated::Follow { new_parent: p },
                Ok(p) => ParentRecreated::CannotFollow {
                    why: format!("the removed parent's place is held by {p}"),
                },
                Err(why) => ParentRecreated::CannotFollow { why },
            };
            out.push((n.id.clone(), verdict));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    fn rebuild(&mut self) -> HashMap<String, DependencyView> {
        // A removed container is kept only while a watched one names it as network parent.
        let named: Vec<&str> = self
            .nodes
            .values()
            .filter_map(|n| n.network_parent.as_deref())
            .collect();
        let gone: Vec<Node> = self.gone.values().cloned().collect();
        let keep: Vec<String> = named
            .iter()
            .filter_map(|r| find_gone(&gone, r).map(|g| g.id.clone()))
            .collect();
        self.gone.retain(|id, _| keep.contains(id));
        let nodes: Vec<Node> = self.nodes.values().cloned().collect();
        self.graph = Graph::build(&nodes);
        self.nodes
            .keys()
            .map(|id| (id.clone(), self.view(id)))
            .collect()
    }

    pub fn view(&self, id: &str) -> DependencyView {
        DependencyView {
            depends_on: self.graph.parents(id).to_vec(),
            dependents: self.graph.dependents(id),
            dependency_error: self.graph.error(id).map(String::from),
        }
    }

    /// The dependents to tell of `parent`'s new run, in order.
    pub fn release_order(&self, parent: &str) -> Vec<String> {
        self.graph.release_order(parent)
    }
}

/// The graph of the containers `selfheal check` found, for its report.
pub fn check_views(watched: &[(ContainerInfo, WatchSpec)]) -> HashMap<String, DependencyView> {
    let mut d = Dependents::default();
    let mut views = HashMap::new();
    for (info, spec) in watched {
        views = d.upsert(node_of(info, spec));
    }
    views
}
