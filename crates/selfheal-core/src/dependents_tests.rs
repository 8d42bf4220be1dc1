//! The dependency graph and the release gate: examples for each way a parent is learned, and
//! properties over random graphs and random parent runs, with the invariants in words.

use super::*;
use proptest::prelude::*;
use std::time::Duration;

fn node(id: &str, name: &str) -> Node {
    Node {
        id: id.into(),
        name: name.into(),
        ..Node::default()
    }
}

fn compose(mut n: Node, project: &str, service: &str) -> Node {
    n.compose = Some((project.into(), service.into()));
    n
}

#[test]
fn compose_depends_on_label_keeps_the_services_with_restart_true() {
    // As compose v2 writes it: SERVICE:CONDITION:RESTART, joined by commas.
    assert_eq!(
        compose_restart_parents("db:service_healthy:true,cache:service_started:false"),
        Ok(vec!["db".to_string()])
    );
    assert_eq!(compose_restart_parents(""), Ok(vec![]));
    // Before compose v2.17 there was no restart field: never a restart.
    assert_eq!(compose_restart_parents("db:service_started"), Ok(vec![]));
    assert_eq!(
        compose_restart_parents("vpn:service_started:true, db:service_healthy:true"),
        Ok(vec!["db".to_string(), "vpn".to_string()])
    );
    for bad in [
        "db",
        ":service_started:true",
        "db:service_started:yes",
        "db::true",
    ] {
        let err = compose_restart_parents(bad).unwrap_err();
        assert!(err.contains("entry"), "{bad}: {err}");
    }
}

#[test]
fn network_mode_names_a_parent_only_for_container_mode() {
    assert_eq!(network_parent("container:abc"), Some("abc"));
    assert_eq!(network_parent("container:"), None);
    assert_eq!(network_parent("bridge"), None);
    assert_eq!(network_parent("host"), None);
}

#[test]
fn parents_are_resolved_by_id_short_id_name_compose_service_and_label() {
    let vpn_id = "0123456789abcdef0123";
    let nodes = vec![
        compose(node(vpn_id, "p-vpn-1"), "p", "vpn"),
        Node {
            network_parent: Some(vpn_id.into()),
            ..node("a1", "app1")
        },
        Node {
            network_parent: Some("0123456789ab".into()),
            ..node("a2", "app2")
        },
        Node {
            network_parent: Some("p-vpn-1".into()),
            // Compose adds the same parent through depends_on: one link, the network one.
            compose_parents: vec!["vpn".into()],
            ..compose(node("a3", "app3"), "p", "web")
        },
        Node {
            label_parents: vec!["app1".into()],
            ..node("w", "worker")
        },
    ];
    let g = Graph::build(&nodes);
    for id in ["a1", "a2", "a3"] {
        assert_eq!(
            g.parents(id),
            &[ParentLink {
                name: "p-vpn-1".into(),
                id: vpn_id.into(),
                via: Via::Network
            }],
            "{id}"
        );
        assert_eq!(g.error(id), None);
    }
    assert_eq!(g.parents("w")[0].via, Via::Label);
    assert_eq!(g.parents("w")[0].id, "a1");
    assert_eq!(g.dependents(vpn_id), vec!["app1", "app2", "app3"]);
    assert_eq!(g.dependents("a1"), vec!["worker"]);
    assert_eq!(g.release_order(vpn_id), vec!["a1", "a2", "a3"]);
}

#[test]
fn a_missing_parent_or_a_cycle_is_an_error_on_that_container_only() {
    let nodes = vec![
        node("p", "parent"),
        Node {
            label_parents: vec!["nowhere".into()],
            ..node("m", "missing")
        },
        Node {
            label_parents: vec!["b".into()],
            ..node("a", "a")
        },
        Node {
            label_parents: vec!["a".into()],
            ..node("b", "b")
        },
        Node {
            label_parents: vec!["a".into(), "parent".into()],
            ..node("c", "c")
        },
        Node {
            compose_parents: vec!["db".into()],
            ..compose(node("x", "x"), "proj", "app")
        },
        Node {
            label_parents: vec!["self".into()],
            ..node("s", "self")
        },
    ];
    let g = Graph::build(&nodes);
    assert!(g.error("m").unwrap().contains("nowhere"));
    assert!(
        g.error("a").unwrap().contains("cycle: a -> b -> a"),
        "{:?}",
        g.error("a")
    );
    assert!(g.error("b").unwrap().contains("cycle"));
    assert!(g.error("x").unwrap().contains("compose service db"));
    assert!(g.error("s").is_some());
    assert!(g.parents("a").is_empty() && g.parents("m").is_empty());
    // Its neighbour's trouble is not its own.
    assert_eq!(g.error("c"), None);
    assert_eq!(g.parents("c").len(), 2);
    assert_eq!(g.release_order("p"), vec!["c"]);
}

#[test]
fn dependents_ignore_on_a_parent_releases_nobody() {
    let nodes = vec![
        Node {
            ignore_dependents: true,
            ..node("p", "parent")
        },
        Node {
            network_parent: Some("p".into()),
            ..node("d", "dep")
        },
    ];
    let g = Graph::build(&nodes);
    assert_eq!(g.dependents("p"), vec!["dep"]);
    assert!(g.release_order("p").is_empty());
}

#[test]
fn a_dependent_of_two_affected_parents_waits_for_the_one_further_down() {
    // p <- a <- d, and d also depends on p: d is released by a, after a restarted.
    let nodes = vec![
        node("p", "p"),
        Node {
            label_parents: vec!["p".into()],
            ..node("a", "a")
        },
        Node {
            label_parents: vec!["p".into(), "a".into()],
            ..node("d", "d")
        },
    ];
    let g = Graph::build(&nodes);
    assert_eq!(g.release_order("p"), vec!["a"]);
    assert_eq!(g.release_order("a"), vec!["d"]);
}

#[test]
fn a_removed_parent_is_replaced_by_the_one_container_with_its_compose_service_or_name() {
    let gone = compose(node("old", "p-vpn-1"), "p", "vpn");
    let new = compose(node("new", "p-vpn-1"), "p", "vpn");
    let other = compose(node("x", "p-web-1"), "p", "web");
    let nodes = vec![new.clone(), other.clone()];
    assert_eq!(
        replaced_parent(&gone, &nodes).map(|n| n.id.as_str()),
        Ok("new")
    );
    // Compose scaled the service: two candidates, no guess.
    let twin = compose(node("new2", "p-vpn-2"), "p", "vpn");
    let err = replaced_parent(&gone, &[new.clone(), twin]).unwrap_err();
    assert!(
        err.contains("ambiguous") && err.contains("p-vpn-2"),
        "{err}"
    );
    assert!(replaced_parent(&gone, &[other])
        .unwrap_err()
        .contains("no watched container"));
    // Plain Docker: by name.
    let plain = node("old", "vpn");
    assert_eq!(
        replaced_parent(&plain, &[node("n", "vpn"), node("m", "vpn2")]).map(|n| n.id.as_str()),
        Ok("n")
    );
    assert_eq!(
        find_gone(std::slice::from_ref(&plain), "old").map(|n| n.name.as_str()),
        Some("vpn")
    );
}

#[tokio::test(start_paused = true)]
async fn the_gate_waits_for_healthy_and_releases_once_per_run() {
    let mut gate = ReleaseGate::default();
    let run1 = Instant::now();
    assert_eq!(gate.observe(None, State::Exited), None);
    assert_eq!(
        gate.observe(Some(run1), State::Starting),
        Some(Gate::Waiting { since: run1 })
    );
    assert_eq!(gate.observe(Some(run1), State::Starting), None);
    assert_eq!(
        gate.observe(Some(run1), State::Healthy),
        Some(Gate::Release { since: run1 })
    );
    assert_eq!(gate.observe(Some(run1), State::Failing), None);
    assert_eq!(gate.observe(Some(run1), State::Healthy), None);
    tokio::time::advance(Duration::from_secs(1)).await;
    let run2 = Instant::now();
    // Healthy at once (no checks): released without a wait.
    assert_eq!(
        gate.observe(Some(run2), State::Healthy),
        Some(Gate::Release { since: run2 })
    );
}

/// A random graph: each node names up to three parents among all nodes (cycles included),
/// by label or by compose service; some opt out of their dependents.
fn graph_nodes() -> impl Strategy<Value = Vec<Node>> {
    (2usize..8).prop_flat_map(|n| {
        (
            prop::collection::vec(prop::collection::vec(0..n, 0..3), n),
            prop::collection::vec(prop::bool::weighted(0.15), n),
            prop::collection::vec(any::<bool>(), n),
        )
            .prop_map(move |(parents, ignore, by_compose)| {
                (0..n)
                    .map(|i| {
                        let mut nd = compose(
                            node(&format!("id{i}"), &format!("c{i}")),
                            "p",
                            &format!("s{i}"),
                        );
                        nd.ignore_dependents = ignore[i];
                        for &p in &parents[i] {
                            if by_compose[i] {
                                nd.compose_parents.push(format!("s{p}"));
                            } else {
                                nd.label_parents.push(format!("c{p}"));
                            }
                        }
                        nd
                    })
                    .collect::<Vec<_>>()
            })
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// After building: no container reaches itself through its parents (every cycle is cut,
    /// and every container named on one carries an error); a container with an error has no
    /// parents; release orders name only direct dependents without another affected parent.
    #[test]
    fn the_built_graph_is_acyclic_and_release_orders_are_direct_dependents(nodes in graph_nodes()) {
        let g = Graph::build(&nodes);
        for n in &nodes {
            prop_assert!(!g.reaches(&n.id, &n.id), "{} on a cycle after build", n.name);
            if g.error(&n.id).is_some() {
                prop_assert!(g.parents(&n.id).is_empty());
            }
            let affected = g.descendants(&n.id);
            for c in g.release_order(&n.id) {
                prop_assert!(g.parents(&c).iter().any(|l| l.id == n.id), "{c} not a child");
                for l in g.parents(&c) {
                    prop_assert!(
                        l.id == n.id || !affected.contains(&l.id) || g.ignore.contains(&l.id)
                    );
                }
            }
        }
    }

    /// A round: the parent restarts; each container, when told by a parent that is ready
    /// again, restarts if its run is older than that parent's start (the dependent's own
    /// rule), and then tells its own release order. At the end every container the parent's
    /// restart leads to has restarted, after every affected parent of it that does not opt
    /// out of its dependents (that one's restart is not theirs to follow), no other container
    /// restarted, and none restarted more often than it has parents.
    #[test]
    fn a_round_of_releases_restarts_every_affected_dependent_after_its_parents(
        nodes in graph_nodes(), pick in any::<prop::sample::Index>(),
    ) {
        let g = Graph::build(&nodes);
        let parent = nodes[pick.index(nodes.len())].id.clone();
        let mut start: BTreeMap<String, u32> = nodes.iter().map(|n| (n.id.clone(), 0)).collect();
        let mut restarts: BTreeMap<String, u32> = BTreeMap::new();
        let mut clock = 1;
        start.insert(parent.clone(), clock);
        let mut queue: std::collections::VecDeque<(String, String)> =
            g.release_order(&parent).into_iter().map(|c| (parent.clone(), c)).collect();
        while let Some((p, c)) = queue.pop_front() {
            if start[&c] < start[&p] {
                clock += 1;
                start.insert(c.clone(), clock);
                *restarts.entry(c.clone()).or_default() += 1;
                queue.extend(g.release_order(&c).into_iter().map(|gc| (c.clone(), gc)));
            }
        }
        let affected = g.descendants(&parent);
        for c in &affected {
            prop_assert!(restarts.contains_key(c), "{c} never restarted");
            prop_assert!(restarts[c] as usize <= g.parents(c).len());
            for l in g.parents(c) {
                let tells = !g.ignore.contains(&l.id);
                if tells && (affected.contains(&l.id) || l.id == parent) {
                    prop_assert!(start[c] > start[&l.id], "{c} before its parent {}", l.id);
                }
            }
        }
        for c in restarts.keys() {
            prop_assert!(affected.contains(c), "{c} restarted, not affected");
        }
    }

    /// Over random sequences of parent states: a release only for a running, healthy run;
    /// at most one per run; every run that is healthy at some point is released.
    #[test]
    fn the_gate_releases_each_healthy_run_exactly_once(
        steps in prop::collection::vec((0u8..4, any::<bool>()), 1..60),
    ) {
        let base = Instant::now();
        let mut gate = ReleaseGate::default();
        let mut run: Option<u64> = None;
        let mut next = 0u64;
        let mut released: Vec<u64> = Vec::new();
        for (kind, healthy) in steps {
            match kind {
                0 => { next += 1; run = Some(next); }
                1 => run = None,
                _ => {}
            }
            let since = run.map(|r| base + Duration::from_secs(r));
            let state = if healthy { State::Healthy } else { State::Starting };
            match gate.observe(since, state) {
                Some(Gate::Release { since: s }) => {
                    prop_assert!(healthy && Some(s) == since);
                    let r = run.unwrap_or_default();
                    prop_assert!(!released.contains(&r), "run {r} released twice");
                    released.push(r);
                }
                Some(Gate::Waiting { since: s }) => prop_assert!(!healthy && Some(s) == since),
                None => {
                    if healthy {
                        if let Some(r) = run {
                            prop_assert!(released.contains(&r), "healthy run {r} not released");
                        }
                    }
                }
            }
        }
    }
}
