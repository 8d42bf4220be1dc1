//! Recreating a container from its own configuration (the executor's `Verb::Recreate` without a
//! network parent), on the real engine with the third-party busybox image, the executor driven
//! directly through `ContainerRuntime::execute`:
//! - a file of the image deleted inside the container is back (a fresh writable layer), same
//!   name, new id, running, the old container gone;
//! - an anonymous and a named volume keep their data;
//! - two user networks with aliases and static addresses, and a port published on 127.0.0.1,
//!   are the same afterwards (the aliases resolve from another container);
//! - a Compose service stays Compose's: `ps` lists it and `up -d` leaves it alone (v1 and v2);
//! - a create Docker refuses leaves the old container under its name, running; a `--rm`
//!   container is refused before anything changes;
//! - "recreate alone: order to running" against `docker rm -f` + `docker run` by hand.

mod support;

use selfheal::docker::executor::{BoxFuture, ContainerRuntime, Executor, Turn};
use selfheal::journal::{IncidentJournal, JournalMetrics};
use selfheal::shared::Shared;
use selfheal_core::{Order, OrderOutcome, Trigger, Verb, Verdict};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::*;
use tokio::sync::RwLock;

/// The executor the watchdog builds (`watch::Watcher::new`), on the local engine.
struct Engine {
    executor: Executor,
    _state: tempfile::TempDir,
}

impl Engine {
    async fn connect() -> Self {
        let docker = selfheal::docker::connect(None)
            .await
            .expect("the Docker engine answers");
        let state = tempfile::tempdir().expect("temp dir");
        let (journal, _) =
            IncidentJournal::open(state.path(), JournalMetrics::default()).expect("journal");
        let shared = Shared::new(Arc::new(journal), false);
        Self {
            executor: Executor::new(
                Arc::new(RwLock::new(Some(docker))),
                4,
                shared.dry_run,
                shared.metrics.restarts_in_flight.clone(),
            ),
            _state: state,
        }
    }

    /// Orders the recreate of `id` from its own configuration (stop timeout 10 s); the core's
    /// turn answers `verdict`. Returns the outcome (`None`: dropped at the turn) and what the
    /// executor reported at its turn (`None`: it did not ask).
    async fn order(
        &self,
        id: &str,
        verdict: Verdict,
    ) -> (Option<OrderOutcome>, Option<Option<bool>>) {
        let order = Order {
            verb: Verb::Recreate {
                network_parent: None,
            },
            trigger: Trigger::Unhealthy,
            attempt: 3,
            stop_timeout: 10,
            detected: tokio::time::Instant::now(),
        };
        let asked = Arc::new(Mutex::new(None));
        let seen = asked.clone();
        let turn: Turn<'_> = Box::new(move |running| -> BoxFuture<'_, Verdict> {
            *seen.lock().expect("lock") = Some(running);
            Box::pin(async move { verdict })
        });
        let outcome = self.executor.execute(id, &order, turn).await;
        let asked = *asked.lock().expect("lock");
        (outcome, asked)
    }

    /// As [`Engine::order`], sent at its turn: an outcome.
    async fn recreate(&self, id: &str) -> (OrderOutcome, Option<Option<bool>>) {
        match self.order(id, Verdict::Send).await {
            (Some(outcome), asked) => (outcome, asked),
            (None, asked) => panic!("sent, yet no outcome (asked {asked:?})"),
        }
    }

    /// Recreates `id`, which must be replaced; the new id.
    async fn replace(&self, id: &str) -> String {
        match self.recreate(id).await {
            (OrderOutcome::Replaced { new_id }, Some(Some(true))) => new_id,
            other => panic!("recreate of {id}: {other:?}"),
        }
    }
}

/// What a test made beyond its [`TestEnv`]: removed on drop, after every container of the test
/// (by its scope label: the replacement and a parked old container included) and the volumes
/// they mounted. `rm -v` is not enough: a volume the recreate mounted again by name counts as
/// named for Docker (20.10), which then keeps it.
struct Leftovers {
    scope: String,
    networks: Vec<String>,
    volumes: Vec<String>,
    /// Image tags the test made (untagged; the images stay).
    tags: Vec<String>,
}

impl Leftovers {
    fn of(env: &TestEnv) -> Self {
        Self {
            scope: env.scope(),
            networks: Vec::new(),
            volumes: Vec::new(),
            tags: Vec::new(),
        }
    }

    /// A user network with a /24 subnet of its own; its name and the subnet's first three
    /// octets (for static addresses).
    fn network(&mut self, env: &TestEnv, suffix: &str) -> (String, String) {
        let name = format!("{}-{suffix}", env.id);
        let seed = std::process::id() as usize * 7 + self.networks.len() * 31;
        for attempt in 0..40 {
            let n = seed + attempt * 13;
            let prefix = format!("10.{}.{}", 200 + n % 50, (n / 50) % 256);
            let created = Command::new("docker")
                .args(["network", "create", "--label", &self.scope, "--subnet"])
                .arg(format!("{prefix}.0/24"))
                .arg(&name)
                .output()
                .expect("docker runs");
            if created.status.success() {
                self.networks.push(name.clone());
                return (name, prefix);
            }
            let err = String::from_utf8_lossy(&created.stderr);
            assert!(err.contains("overlap"), "network create {name}: {err}");
        }
        panic!("no free /24 under 10.200.0.0/10 for {name}");
    }
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        let filter = format!("label={}", self.scope);
        let ids = Command::new("docker")
            .args(["ps", "-aq", "--filter", &filter])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        for id in ids.split_whitespace() {
            self.volumes.extend(
                Command::new("docker")
                    .args(["inspect", "-f", VOLUMES, id])
                    .output()
                    .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                    .unwrap_or_default()
                    .split_whitespace()
                    .map(String::from),
            );
            let _ = Command::new("docker").args(["rm", "-f", "-v", id]).output();
        }
        for n in &self.networks {
            let _ = Command::new("docker").args(["network", "rm", n]).output();
        }
        for v in &self.volumes {
            let _ = Command::new("docker")
                .args(["volume", "rm", "-f", v])
                .output();
        }
        for t in &self.tags {
            let _ = Command::new("docker").args(["image", "rm", t]).output();
        }
    }
}

/// `docker inspect` format: the names of the volumes a container mounts.
const VOLUMES: &str = "{{range .Mounts}}{{if eq .Type \"volume\"}}{{.Name}} {{end}}{{end}}";

/// `docker exec CONTAINER test -e PATH`.
fn exists(container: &str, path: &str) -> bool {
    docker_ok(&["exec", container, "test", "-e", path])
}

/// The name of the volume mounted at `dest`.
fn volume_at(c: &Ctr, dest: &str) -> String {
    c.inspect(&format!(
        "{{{{range .Mounts}}}}{{{{if eq .Destination \"{dest}\"}}}}{{{{.Name}}}}{{{{end}}}}{{{{end}}}}"
    ))
}

/// The containers whose name contains `name` (the container and any parked old one), one a
/// line.
fn named_like(name: &str) -> String {
    docker(&[
        "ps",
        "-a",
        "--filter",
        &format!("name={name}"),
        "--format",
        "{{.Names}}",
    ])
}

#[tokio::test]
async fn a_file_deleted_from_the_image_is_back_after_the_recreate() {
    require_image(BUSYBOX);
    let env = TestEnv::new("rc-layer");
    let _left = Leftovers::of(&env);
    let options = [
        "--init",
        "--restart",
        "unless-stopped",
        "--label",
        "example.owner=team-a",
        "-e",
        "GREETING=hi",
        "--memory",
        "64m",
    ];
    let app = env.run_image("app", BUSYBOX, &with(BUSYBOX_HEALTH, &options));
    app.wait_health("healthy", secs(20)).unwrap();
    // The fault lives in the writable layer: a restart keeps it.
    docker(&["exec", "-u", "0", &app.name, "rm", "/www/health"]);
    app.wait_health("unhealthy", secs(20)).unwrap();
    docker(&["restart", "-t", "1", &app.name]);
    assert!(
        !exists(&app.name, "/www/health"),
        "a restart brought it back"
    );

    let engine = Engine::connect().await;
    let new_id = engine.replace(&app.id).await;
    assert_ne!(new_id, app.id);
    assert_eq!(
        app.inspect("{{.Id}}"),
        new_id,
        "the name is the replacement's"
    );
    assert!(app.running());
    assert!(exists(&app.name, "/www/health"), "a fresh writable layer");
    app.wait_health("healthy", secs(20)).unwrap();
    assert!(
        !docker_ok(&["inspect", &app.id]),
        "the old container is gone"
    );
    assert_eq!(named_like(&app.name), app.name, "nothing parked");
    // Its configuration, and a hostname of Docker's own for the new id.
    assert_eq!(
        app.inspect("{{index .Config.Labels \"example.owner\"}}"),
        "team-a"
    );
    assert!(app
        .inspect("{{json .Config.Env}}")
        .contains("\"GREETING=hi\""));
    assert_eq!(
        app.inspect(
            "{{.HostConfig.RestartPolicy.Name}} {{.HostConfig.Memory}} {{.HostConfig.Init}}"
        ),
        format!("unless-stopped {} true", 64 << 20)
    );
    assert_eq!(
        app.inspect("{{.Config.Image}} {{.Config.Healthcheck.Interval}}"),
        format!("{BUSYBOX} 1s")
    );
    assert_eq!(app.inspect("{{.Config.Hostname}}"), &new_id[..12]);
}

/// The image name it was created by now names another image (a pull moved the tag): the
/// replacement runs the old image, named by its id; while the name is the same image, by name.
#[tokio::test]
async fn the_same_image_by_id_when_its_tag_has_moved() {
    require_image(BUSYBOX);
    require_image(IMAGE);
    let env = TestEnv::new("rc-image");
    let mut left = Leftovers::of(&env);
    let tag = format!("selfheal-test/{}:moving", env.id);
    left.tags.push(tag.clone());
    docker(&["tag", BUSYBOX, &tag]);
    let busybox_id = docker(&["image", "inspect", "-f", "{{.Id}}", BUSYBOX]);
    let app = env.run_image("app", &tag, &["--init"]);
    let engine = Engine::connect().await;
    engine.replace(&app.id).await;
    assert_eq!(
        app.inspect("{{.Config.Image}} {{.Image}}"),
        format!("{tag} {busybox_id}")
    );

    docker(&["tag", IMAGE, &tag]);
    let id = app.inspect("{{.Id}}");
    engine.replace(&id).await;
    assert_eq!(
        app.inspect("{{.Config.Image}} {{.Image}}"),
        format!("{busybox_id} {busybox_id}")
    );
    assert!(app.running());
}

#[tokio::test]
async fn anonymous_and_named_volumes_keep_their_data() {
    require_image(BUSYBOX);
    let env = TestEnv::new("rc-volumes");
    let mut left = Leftovers::of(&env);
    let named = format!("{}-named", env.id);
    left.volumes.push(named.clone());
    docker(&["volume", "create", "--label", &env.scope(), &named]);
    let named_mount = format!("{named}:/named");
    let app = env.run_image(
        "app",
        BUSYBOX,
        &["--init", "--user", "0", "-v", "/anon", "-v", &named_mount],
    );
    let anon = volume_at(&app, "/anon");
    left.volumes.push(anon.clone());
    docker(&[
        "exec",
        &app.name,
        "sh",
        "-c",
        "echo kept > /anon/f && echo kept > /named/f",
    ]);

    let engine = Engine::connect().await;
    let new_id = engine.replace(&app.id).await;
    assert_eq!(app.inspect("{{.Id}}"), new_id);
    assert_eq!(volume_at(&app, "/anon"), anon, "the same anonymous volume");
    assert_eq!(volume_at(&app, "/named"), named);
    for f in ["/anon/f", "/named/f"] {
        assert_eq!(docker(&["exec", &app.name, "cat", f]), "kept", "{f}");
    }
}

/// What a container looks like on `network`: its address and its aliases but its own short id.
fn on_network(c: &Ctr, network: &str) -> (String, Vec<String>) {
    let id = c.inspect("{{.Id}}");
    let ep = format!("(index .NetworkSettings.Networks \"{network}\")");
    let ip = c.inspect(&format!("{{{{{ep}.IPAddress}}}}"));
    let aliases: Vec<String> =
        serde_json::from_str(&c.inspect(&format!("{{{{json {ep}.Aliases}}}}"))).unwrap_or_default();
    let aliases = aliases.into_iter().filter(|a| *a != id[..12]).collect();
    (ip, aliases)
}

/// A TCP port on 127.0.0.1 that nothing listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

#[tokio::test]
async fn networks_aliases_static_addresses_and_published_ports_are_the_same_afterwards() {
    require_image(BUSYBOX);
    let env = TestEnv::new("rc-networks");
    let mut left = Leftovers::of(&env);
    let (front, front_prefix) = left.network(&env, "front");
    let (back, back_prefix) = left.network(&env, "back");
    let front_ip = format!("{front_prefix}.9");
    let back_ip = format!("{back_prefix}.9");
    let port = free_port();
    let published = format!("127.0.0.1:{port}:8080");
    let app = env.run_on(
        &front,
        "app",
        BUSYBOX,
        &[
            "--init",
            "--network-alias",
            "web-front",
            "--ip",
            &front_ip,
            "-p",
            &published,
        ],
        &[],
    );
    docker(&[
        "network", "connect", "--alias", "web-back", "--ip", &back_ip, &back, &app.name,
    ]);
    let client = env.run_on(&front, "client", BUSYBOX, &[], &["sleep", "600"]);
    docker(&["network", "connect", &back, &client.name]);
    let serves = |alias: &str| {
        wait_for(&format!("{alias} to answer"), secs(20), || {
            let url = format!("http://{alias}:8080/health");
            docker_ok(&["exec", &client.name, "wget", "-q", "-O", "/dev/null", &url]).then_some(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
    };
    let serves_on_host = || {
        let addr = format!("127.0.0.1:{port}");
        wait_for("the published port to answer", secs(20), || {
            http("GET", &addr, "/health", None, secs(2))
                .ok()
                .filter(|(status, _)| *status == 200)
        })
        .unwrap_or_else(|e| panic!("{e}"));
    };
    serves("web-front");
    serves("web-back");
    serves_on_host();
    let view = || {
        (
            on_network(&app, &front),
            on_network(&app, &back),
            app.inspect("{{json .NetworkSettings.Ports}}"),
            app.inspect("{{.HostConfig.NetworkMode}}"),
        )
    };
    let before = view();
    assert_eq!(before.0, (front_ip.clone(), vec!["web-front".to_string()]));
    assert_eq!(before.1, (back_ip.clone(), vec!["web-back".to_string()]));

    let engine = Engine::connect().await;
    let new_id = engine.replace(&app.id).await;
    assert_eq!(app.inspect("{{.Id}}"), new_id);
    assert_eq!(view(), before);
    serves("web-front");
    serves("web-back");
    serves_on_host();
}

/// Docker's default bridge (`--network default`) with a hostname and a legacy `--link`, and the
/// host's network: kept as they were.
#[tokio::test]
async fn the_default_bridge_with_links_and_the_host_network_are_kept() {
    require_image(BUSYBOX);
    let env = TestEnv::new("rc-modes");
    let _left = Leftovers::of(&env);
    let engine = Engine::connect().await;
    let db = env.run_on("default", "db", BUSYBOX, &["--init"], &[]);
    let link = format!("{}:database", db.name);
    let app = env.run_on(
        "default",
        "app",
        BUSYBOX,
        &["--init", "--hostname", "app-host", "--link", &link],
        &[],
    );
    let view = || {
        app.inspect(
            "{{.HostConfig.NetworkMode}} {{.Config.Hostname}} {{json .HostConfig.Links}} \
             {{range $n, $_ := .NetworkSettings.Networks}}{{$n}}{{end}}",
        )
    };
    let before = view();
    let new_id = engine.replace(&app.id).await;
    assert_eq!(app.inspect("{{.Id}}"), new_id);
    assert_eq!(view(), before);
    assert!(before.starts_with("default app-host"), "{before}");
    wait_for("the link to answer", secs(20), || {
        let url = "http://database:8080/health";
        docker_ok(&["exec", &app.name, "wget", "-q", "-O", "/dev/null", url]).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}"));

    let port = free_port().to_string();
    let listen = format!("127.0.0.1:{port}");
    let httpd = ["httpd", "-f", "-p", &listen, "-h", "/www"];
    let hosted = env.run_on("host", "hosted", BUSYBOX, &["--init"], &httpd);
    let host_view = || hosted.inspect("{{.HostConfig.NetworkMode}} {{.Config.Hostname}}");
    let before = host_view();
    let new_id = engine.replace(&hosted.id).await;
    assert_eq!(hosted.inspect("{{.Id}}"), new_id);
    assert_eq!(host_view(), before);
    wait_for("httpd on the host's network", secs(20), || {
        http("GET", &listen, "/health", None, secs(2))
            .ok()
            .filter(|(status, _)| *status == 200)
    })
    .unwrap_or_else(|e| panic!("{e}"));
}

/// A Compose project of one busybox service, `docker compose` (v2) or `docker-compose` (v1);
/// `down` on drop.
struct ComposeProject {
    cli: Vec<&'static str>,
    file: std::path::PathBuf,
    project: String,
}

impl ComposeProject {
    fn new(v2: bool, env: &TestEnv) -> Self {
        let cli = if v2 {
            vec!["docker", "compose"]
        } else {
            vec!["docker-compose"]
        };
        let project = Self {
            cli,
            file: env.dir.path().join("compose.yaml"),
            project: env.id.clone(),
        };
        let version = project.command(&["version", "--short"]).output();
        let want = if v2 { "2." } else { "1." };
        assert!(
            version.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).starts_with(want)),
            "{:?} {want}x is required (v1: apt-get install docker-compose; v2: bash .ci/install-compose-v2.sh)",
            project.cli
        );
        let scope = env.scope();
        std::fs::write(
            &project.file,
            format!(
                r#"version: "2.4"
services:
  web:
    image: {BUSYBOX}
    init: true
    restart: unless-stopped
    stop_grace_period: 1s
    labels: ["{scope}"]
"#
            ),
        )
        .expect("write compose.yaml");
        project
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(self.cli[0]);
        c.args(&self.cli[1..]);
        if args.first() != Some(&"version") {
            c.arg("-f").arg(&self.file).args(["-p", &self.project]);
        }
        c.args(args);
        c
    }

    /// Runs `args`; its stdout, trimmed.
    fn run(&self, args: &[&str]) -> String {
        let out = self.command(args).output().expect("compose runs");
        assert!(
            out.status.success(),
            "{:?} {args:?}: {}",
            self.cli,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for ComposeProject {
    fn drop(&mut self) {
        let _ = self.command(&["down", "-v", "-t", "1"]).output();
    }
}

async fn a_compose_service_recreated_stays_composes(v2: bool) {
    require_image(BUSYBOX);
    let env = TestEnv::new(if v2 { "rc-compose2" } else { "rc-compose1" });
    // Declared before the leftovers: `down` comes after the containers are gone (a container
    // Compose no longer knows would keep its network).
    let compose = ComposeProject::new(v2, &env);
    let _left = Leftovers::of(&env);
    compose.run(&["up", "-d"]);
    let old_id = compose.run(&["ps", "-q", "web"]);
    let name = docker(&["inspect", "-f", "{{.Name}}", &old_id])
        .trim_start_matches('/')
        .to_string();
    docker(&["exec", "-u", "0", &old_id, "rm", "/www/health"]);

    let engine = Engine::connect().await;
    let new_id = engine.replace(&old_id).await;
    assert!(exists(&name, "/www/health"));
    assert_eq!(
        docker(&["inspect", "-f", "{{.Id}}", &name]),
        new_id,
        "the name is the replacement's"
    );
    let listed = compose.run(&["ps", "-q", "web"]);
    assert!(
        !listed.is_empty() && new_id.starts_with(&listed),
        "compose ps lists {listed:?}, not {new_id}"
    );
    let started = docker(&["inspect", "-f", "{{.State.StartedAt}}", &new_id]);

    // Compose finds its own configuration: nothing to recreate, nothing to start.
    compose.run(&["up", "-d"]);
    let after = compose.run(&["ps", "-q", "web"]);
    assert!(
        new_id.starts_with(&after),
        "up -d replaced the recreated container: {after} is not {new_id}"
    );
    assert_eq!(
        docker(&["inspect", "-f", "{{.State.StartedAt}}", &new_id]),
        started,
        "up -d restarted it"
    );
}

#[tokio::test]
async fn a_compose_v2_service_recreated_is_still_composes() {
    a_compose_service_recreated_stays_composes(true).await;
}

#[tokio::test]
async fn a_compose_v1_service_recreated_is_still_composes() {
    a_compose_service_recreated_stays_composes(false).await;
}

/// Docker refuses the create (the container it took `--volumes-from` is gone): the old
/// container is back under its name and running. A `--rm` container is refused before
/// anything changes; an order the core drops at its turn changes nothing.
#[tokio::test]
async fn a_failed_recreate_leaves_the_old_container_as_it_was() {
    require_image(BUSYBOX);
    let env = TestEnv::new("rc-failure");
    let mut left = Leftovers::of(&env);
    let donor = env.run_image("donor", BUSYBOX, &["-v", "/shared"]);
    let app = env.run_image("app", BUSYBOX, &["--init", "--volumes-from", &donor.name]);
    left.volumes.push(volume_at(&app, "/shared"));
    docker(&["rm", "-f", &donor.name]);
    let engine = Engine::connect().await;
    let (outcome, asked) = engine.recreate(&app.id).await;
    let OrderOutcome::Failed(why) = outcome else {
        panic!("not a failure: {outcome:?}");
    };
    assert!(why.starts_with("create:"), "{why}");
    assert!(why.contains("back under its name, running"), "{why}");
    assert_eq!(asked, Some(Some(true)), "the core's turn came first");
    assert_eq!(app.inspect("{{.Id}}"), app.id, "the old one has its name");
    assert!(app.running(), "and runs again");
    assert_eq!(named_like(&app.name), app.name, "no replacement left");

    let once = env.run_image("once", BUSYBOX, &["--rm"]);
    let (outcome, asked) = engine.recreate(&once.id).await;
    assert!(
        matches!(&outcome, OrderOutcome::Refused(why) if why.contains("--rm")),
        "{outcome:?}"
    );
    assert_eq!(asked, None, "refused before the core's turn");
    assert_eq!(
        once.inspect("{{.Id}} {{.State.Running}}"),
        format!("{} true", once.id)
    );

    let started = app.started_at();
    let (outcome, asked) = engine.order(&app.id, Verdict::Drop).await;
    assert_eq!((outcome, asked), (None, Some(Some(true))));
    assert_eq!(
        app.inspect("{{.Id}} {{.State.StartedAt}}"),
        format!("{} {started}", app.id),
        "dropped at its turn, untouched"
    );
}

/// p50, min and max of `v`, in milliseconds.
fn summary(v: &mut [Duration]) -> String {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    format!(
        "p50 {:.0} ms, min {:.0} ms, max {:.0} ms (n={})",
        ms(v[v.len() / 2]),
        ms(v[0]),
        ms(v[v.len() - 1]),
        v.len()
    )
}

/// "Recreate alone: order to running": the executor's recreate (graceful stop: `--init`
/// forwards SIGTERM, so httpd ends at once) against `docker rm -f` + `docker run -d` of the same
/// configuration by hand, alternated in the same run. Prints the figures (BENCHMARKS.md,
/// "The ladder"); a measurement, so not in `make test`:
/// `cargo nextest run -p selfheal --test recreate --run-ignored only --no-capture`.
#[tokio::test]
#[ignore = "a measurement for BENCHMARKS.md"]
async fn measured_recreate_against_rm_and_run_by_hand() {
    const ROUNDS: usize = 15;
    require_image(BUSYBOX);
    let env = TestEnv::new("rc-measure");
    let mut left = Leftovers::of(&env);
    let scope = env.scope();
    let options: Vec<&str> = with(
        &["--init", "--restart", "unless-stopped", "-v", "/data"],
        BUSYBOX_HEALTH,
    );
    let app = env.run_image("app", BUSYBOX, &options);
    let mut run = vec!["run", "-d", "--name", &app.name, "--network", &env.network];
    run.extend(["--label", scope.as_str()]);
    run.extend(&options);
    run.push(BUSYBOX);
    let engine = Engine::connect().await;
    let healthy = |since: Instant| {
        app.wait_health("healthy", secs(30)).unwrap();
        since.elapsed()
    };
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    let (mut ours_healthy, mut theirs_healthy) = (Vec::new(), Vec::new());
    app.wait_health("healthy", secs(30)).unwrap();
    for _ in 0..ROUNDS {
        let id = app.inspect("{{.Id}}");
        let started = Instant::now();
        let new_id = engine.replace(&id).await;
        ours.push(started.elapsed());
        ours_healthy.push(healthy(started));
        assert_eq!(
            app.inspect("{{.Id}} {{.State.Running}}"),
            format!("{new_id} true")
        );
        // By hand: what a user does, timed from the first command to `run`'s answer (started).
        left.volumes.push(volume_at(&app, "/data"));
        let started = Instant::now();
        docker(&["rm", "-f", "-v", &app.name]);
        docker(&run);
        theirs.push(started.elapsed());
        theirs_healthy.push(healthy(started));
    }
    eprintln!(
        "recreate alone, order to running: executor {}; docker rm -f + docker run -d by hand {}",
        summary(&mut ours),
        summary(&mut theirs)
    );
    eprintln!(
        "recreate alone, order to healthy (HEALTHCHECK every 1 s, polled every 100 ms): \
         executor {}; by hand {}",
        summary(&mut ours_healthy),
        summary(&mut theirs_healthy)
    );
}
