//! No incident is lost when the journal cannot be written: the watchdog's own image, its state
//! dir on a tiny tmpfs that a second container fills up and later frees.

mod support;

use std::process::Command;
use support::*;

const WATCHDOG_IMAGE: &str = "selfheal/watchdog:latest";

/// A tmpfs-backed named volume, removed on drop (after the containers using it).
struct TmpfsVolume(String);

impl TmpfsVolume {
    fn create(name: &str, size: &str) -> Self {
        docker(&[
            "volume",
            "create",
            "--driver",
            "local",
            "--opt",
            "type=tmpfs",
            "--opt",
            "device=tmpfs",
            "--opt",
            &format!("o=size={size},uid=10001,gid=10001"),
            name,
        ]);
        Self(name.to_string())
    }

    /// Runs a shell command in a throwaway busybox container with the volume at /state.
    fn sh(&self, script: &str) -> std::process::Output {
        Command::new("docker")
            .args([
                "run",
                "--rm",
                "--user",
                "10001",
                "-v",
                &format!("{}:/state", self.0),
                BUSYBOX,
                "sh",
                "-c",
                script,
            ])
            .output()
            .expect("docker runs")
    }
}

impl Drop for TmpfsVolume {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["volume", "rm", "-f", &self.0])
            .output();
    }
}

fn get(port: &str, path: &str) -> serde_json::Value {
    let (status, body) = http("GET", &format!("127.0.0.1:{port}"), path, None, secs(5))
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    assert!(status == 200, "GET {path}: {status} {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}

fn metric(port: &str, name: &str, labels: &str) -> Option<f64> {
    let (_, text) = http(
        "GET",
        &format!("127.0.0.1:{port}"),
        "/metrics",
        None,
        secs(5),
    )
    .ok()?;
    text.lines()
        .find(|l| l.starts_with(name) && l.contains(labels))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[test]
fn incidents_survive_a_full_state_dir_and_are_written_when_space_returns() {
    require_image(WATCHDOG_IMAGE);
    require_image(BUSYBOX);
    // Declared first, dropped last: after the containers that use it.
    let volume;
    let env = TestEnv::new("full-disk");
    volume = TmpfsVolume::create(&format!("{}-state", env.id), "64k");
    let socket_gid = std::fs::metadata("/var/run/docker.sock")
        .map(|m| std::os::unix::fs::MetadataExt::gid(&m).to_string())
        .expect("the Docker socket");
    let scope = env.scope();
    let wd = env.run_image(
        "watchdog",
        WATCHDOG_IMAGE,
        &[
            "--group-add",
            &socket_gid,
            "-v",
            "/var/run/docker.sock:/var/run/docker.sock",
            "-v",
            &format!("{}:/var/lib/selfheal", volume.0),
            "-p",
            "127.0.0.1::9100",
            "-e",
            &format!("SELFHEAL_FILTER_LABEL={scope}"),
        ],
    );
    let port = docker(&["port", &wd.name, "9100/tcp"])
        .lines()
        .next()
        .and_then(|l| l.rsplit(':').next())
        .expect("a published port")
        .to_string();
    let app = env.run_image(
        "app",
        BUSYBOX,
        &with(
            BUSYBOX_HEALTH,
            &["--stop-timeout", "1", "--label", "selfheal.enable=true"],
        ),
    );
    let logs = || docker(&["logs", "--tail", "60", &wd.name]);
    wait_for("the watchdog to see the app healthy", secs(40), || {
        let list = get(&port, "/api/v1/containers");
        list.as_array()?
            .iter()
            .any(|c| c["name"] == app.name && c["state"] == "healthy")
            .then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", logs()));

    // Fill the state dir, then cause an incident.
    let filled = volume.sh("cat /dev/zero > /state/filler; df -k /state");
    assert!(
        String::from_utf8_lossy(&filled.stdout).contains("100%"),
        "the tmpfs is full: {}",
        String::from_utf8_lossy(&filled.stdout)
    );
    app.freeze();
    let incident = wait_for("an unpersisted incident in the API", secs(60), || {
        let list = get(&port, &format!("/api/v1/incidents?container={}", app.name));
        list.as_array()?
            .iter()
            .find(|i| i["unpersisted"] == true)
            .cloned()
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", logs()));
    assert!(metric(&port, "selfheal_journal_write_failures_total", "").unwrap_or(0.0) >= 1.0);
    assert!(metric(&port, "selfheal_incidents_unpersisted", "").unwrap_or(0.0) >= 1.0);
    assert_eq!(
        metric(&port, "selfheal_degraded", "journal_unpersisted"),
        Some(1.0)
    );
    let health = get(&port, "/healthz");
    assert!(
        health["degraded"]
            .as_array()
            .is_some_and(|d| d.iter().any(|r| r == "journal_unpersisted")),
        "{health}"
    );
    // Healing went on.
    app.wait_health("healthy", secs(40)).unwrap();

    // Space returns: the writer catches up by itself.
    assert!(volume.sh("rm -f /state/filler").status.success());
    wait_for("the incident written", secs(90), || {
        let list = get(&port, &format!("/api/v1/incidents?container={}", app.name));
        let all = list.as_array()?;
        (!all.is_empty() && all.iter().all(|i| i.get("unpersisted").is_none())).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", logs()));
    assert_eq!(
        metric(&port, "selfheal_incidents_unpersisted", ""),
        Some(0.0)
    );
    let on_disk = volume.sh("cat /state/incidents.jsonl");
    let text = String::from_utf8_lossy(&on_disk.stdout);
    let id = incident["id"].as_u64().expect("an id");
    assert!(
        text.lines()
            .any(|l| l.contains(&format!("\"id\":{id},")) && l.contains(&app.name)),
        "incident {id} on disk: {text}"
    );
}
