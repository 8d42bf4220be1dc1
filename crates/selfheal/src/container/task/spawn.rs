//! Starting a container's task: the incident it resumes (left open by a previous run, or
//! handed over in its Swarm slot), its metric series, its probe loop, its supervisor and
//! incident recorder; then the task itself, fed a first snapshot.

use super::{ContainerTask, Core, Target};
use crate::container::dispatch::Dispatcher;
use crate::container::evidence::EvidenceCollector;
use crate::container::link::DependentsLink;
use crate::container::probe::ProbeLink;
use crate::container::record::IncidentRecorder;
use crate::container::view::ViewPublisher;
use crate::container::{slot, ContainerHandle, Context, Msg, INBOX};
use crate::docker::ContainerInfo;
use crate::journal::Incident;
use crate::swarm::SwarmBinding;
use selfheal_core::{Backoff, PolicySpec, State, Supervisor, WatchSpec};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The healing core's settings for a container.
fn policy_spec(spec: &WatchSpec, info: &ContainerInfo, backoff: Backoff) -> PolicySpec {
    PolicySpec {
        failures: spec.failures,
        start_period: spec.start_period,
        stop_timeout: spec.stop_timeout,
        container_stop_timeout: info.stop_timeout,
        restart_max: spec.restart_max,
        restart_window: spec.restart_window,
        backoff,
        restart_policy: info.restart_policy(),
        has_probe: spec.probe.is_some(),
        has_docker_health: info.has_healthcheck,
        swarm: None,
        ladder: spec.ladder,
    }
}

/// Starts watching one container. `resumed` is an incident left open by a previous run. The
/// first message the task handles is a [`Msg::Snapshot`] of `info`.
pub fn spawn(
    ctx: Context,
    info: ContainerInfo,
    spec: WatchSpec,
    resumed: Option<Incident>,
    swarm: Option<SwarmBinding>,
    takes_over: bool,
    parent: &CancellationToken,
) -> ContainerHandle {
    let (tx, rx) = mpsc::channel(INBOX);
    let cancel = parent.child_token();
    // A Swarm task takes over what the task it replaces left in its slot.
    let handed = swarm
        .as_ref()
        .and_then(|b| ctx.slots.take(&b.task.slot_key()));
    let resumed = match &handed {
        // The journal's copy: evidence read back after the hand-over was added there.
        Some(h) => h.incident.as_ref().map(|i| {
            ctx.shared
                .journal
                .get(i.id)
                .filter(Incident::is_open)
                .unwrap_or_else(|| i.clone())
        }),
        None => resumed,
    };
    let times = resumed
        .as_ref()
        .and_then(|i| crate::incident::times_of(&ctx.shared, i));
    if let Some(i) = &resumed {
        tracing::info!(container = %info.name, incident = i.id, "resuming open incident");
    }
    ctx.shared
        .metrics
        .add_container(&info.name, spec.probe.as_ref().map(|p| p.kind));
    ctx.shared.metrics.set_state(&info.name, State::Starting);
    let evidence = EvidenceCollector::new(ctx.evidence);
    let (probe, probe_task) = ProbeLink::start(
        &ctx,
        &info,
        &spec,
        evidence.probe_log(),
        tx.clone(),
        &cancel,
    );
    if let Some(b) = &swarm {
        slot::ask_peers(&ctx, b, handed.is_some(), &tx, &cancel);
    }
    let now = Instant::now();
    let mut policy = policy_spec(&spec, &info, ctx.backoff);
    policy.swarm = swarm.as_ref().map(|b| b.condition);
    let resumed_since = times.as_ref().map(|t| t.first_failure);
    let sup = match handed {
        Some(h) => {
            tracing::info!(container = %info.name, incident = ?h.incident.as_ref().map(|i| i.id),
                "Swarm task replaces an ended one in its slot; taking over the slot");
            Supervisor::replacement(policy, h.carry, now)
        }
        None => Supervisor::new(policy, times, now),
    };
    let mut incidents = IncidentRecorder::new(
        ctx.shared.clone(),
        ctx.notifier.clone(),
        resumed,
        ctx.backoff.reset_after,
        (
            !spec.notify || spec.ladder.action == selfheal_core::Action::None,
            spec.ladder,
        ),
    );
    if let Some(since) = resumed_since {
        incidents.resume_story(since);
    }
    let mut task = ContainerTask {
        core: Core { sup, last_now: now },
        swarm,
        incidents,
        dispatch: Dispatcher::new(ctx.runtime.clone(), tx.clone()),
        ctx,
        target: Target {
            info: info.clone(),
            spec,
            probe,
        },
        evidence,
        link: DependentsLink::default(),
        view: ViewPublisher::default(),
    };
    let token = cancel.clone();
    let handle = tokio::spawn(async move {
        task.publish();
        task.run(rx, token.clone(), takes_over).await;
        // Ended (removed, or stopped): whatever else works for it (the probe, a question to
        // the peers) ends too.
        token.cancel();
        if let Some(p) = probe_task {
            p.abort();
        }
    });
    let _ = tx.try_send(Msg::Snapshot(Box::new(info)));
    ContainerHandle {
        tx,
        cancel,
        task: handle,
    }
}
