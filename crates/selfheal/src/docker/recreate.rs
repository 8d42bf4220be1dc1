//! The executor's second verb: recreate a network dependent whose parent was recreated (a new
//! id), the way `docker compose up` recreates a service: same name, configuration, labels and
//! volumes (anonymous ones included, mounted by name, so no data is lost), with its network
//! pointed at the new parent. The old container is kept, renamed, until the new one runs;
//! if anything fails it gets its name back and is left as it was.

use bollard::models::{ContainerCreateBody, ContainerInspectResponse, Mount, MountType};

/// Why a recreate cannot be done safely.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unsafe(pub String);

/// The body of `POST /containers/create` for `old`'s replacement, in `new_parent`'s network
/// namespace. Docker refuses a hostname, DNS settings, extra hosts, links and published or
/// exposed ports in `container:` network mode (they are the parent's), so those are left out.
pub fn replacement(
    old: &ContainerInspectResponse,
    new_parent: &str,
) -> Result<ContainerCreateBody, Unsafe> {
    let config = old
        .config
        .clone()
        .ok_or_else(|| Unsafe("inspect shows no configuration".into()))?;
    let mut host = old.host_config.clone().unwrap_or_default();
    // The image as the old container was created with it (`Config.Image`), as compose and
    // `docker run` name it: compose compares it on its next `up`, and an id there makes it
    // recreate the container again.
    let image = config
        .image
        .clone()
        .or_else(|| old.image.clone())
        .ok_or_else(|| Unsafe("inspect shows no image".into()))?;
    // Volumes the old container mounted without naming them in Binds or Mounts (anonymous
    // volumes, and a named one from an image VOLUME): mounted again by name.
    let mut mounts = host.mounts.take().unwrap_or_default();
    let bound: Vec<String> = host
        .binds
        .iter()
        .flatten()
        .filter_map(|b| b.split(':').nth(1).map(String::from))
        .chain(mounts.iter().filter_map(|m| m.target.clone()))
        .collect();
    for m in old.mounts.iter().flatten() {
        if m.typ.as_deref() != Some("volume") {
            continue;
        }
        let (Some(name), Some(dest)) = (&m.name, &m.destination) else {
            return Err(Unsafe(format!("a volume mount without a name: {m:?}")));
        };
        if bound.contains(dest) {
            continue;
        }
        mounts.push(Mount {
            target: Some(dest.clone()),
            source: Some(name.clone()),
            typ: Some(MountType::VOLUME),
            read_only: Some(!m.rw.unwrap_or(true)),
            ..Default::default()
        });
    }
    host.mounts = (!mounts.is_empty()).then_some(mounts);
    host.network_mode = Some(format!("container:{new_parent}"));
    host.dns = None;
    host.dns_options = None;
    host.dns_search = None;
    host.extra_hosts = None;
    host.links = None;
    host.port_bindings = None;
    host.publish_all_ports = None;
    Ok(ContainerCreateBody {
        hostname: None,
        domainname: None,
        user: config.user,
        attach_stdin: config.attach_stdin,
        attach_stdout: config.attach_stdout,
        attach_stderr: config.attach_stderr,
        exposed_ports: None,
        tty: config.tty,
        open_stdin: config.open_stdin,
        stdin_once: config.stdin_once,
        env: config.env,
        cmd: config.cmd,
        healthcheck: config.healthcheck,
        args_escaped: config.args_escaped,
        image: Some(image),
        volumes: config.volumes,
        working_dir: config.working_dir,
        entrypoint: config.entrypoint,
        network_disabled: config.network_disabled,
        on_build: config.on_build,
        labels: config.labels,
        stop_signal: config.stop_signal,
        stop_timeout: config.stop_timeout,
        shell: config.shell,
        host_config: Some(host),
        networking_config: None,
    })
}

/// The name the old container is kept under while its replacement is created.
pub fn parked_name(name: &str, id: &str) -> String {
    format!("{name}-selfheal-replaced-{}", &id[..id.len().min(12)])
}

/// A name [`parked_name`] made.
pub fn is_parked_name(name: &str) -> bool {
    name.rsplit_once("-selfheal-replaced-")
        .is_some_and(|(_, id)| !id.is_empty() && id.chars().all(|c| c.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{ContainerConfig, HostConfig, MountPoint};

    #[test]
    fn the_replacement_keeps_config_labels_and_every_volume_and_joins_the_new_parent() {
        let old = ContainerInspectResponse {
            image: Some("sha256:abc".into()),
            config: Some(ContainerConfig {
                hostname: Some("parenthost".into()),
                image: Some("example/app:1".into()),
                cmd: Some(vec!["httpd".into()]),
                labels: Some([("k".to_string(), "v".to_string())].into()),
                exposed_ports: Some(vec!["80/tcp".into()]),
                ..Default::default()
            }),
            host_config: Some(HostConfig {
                network_mode: Some("container:old".into()),
                binds: Some(vec!["named:/named".into(), "/host:/bind:ro".into()]),
                ..Default::default()
            }),
            mounts: Some(vec![
                MountPoint {
                    typ: Some("volume".into()),
                    name: Some("named".into()),
                    destination: Some("/named".into()),
                    rw: Some(true),
                    ..Default::default()
                },
                MountPoint {
                    typ: Some("volume".into()),
                    name: Some("0123anon".into()),
                    destination: Some("/data".into()),
                    rw: Some(true),
                    ..Default::default()
                },
                MountPoint {
                    typ: Some("bind".into()),
                    source: Some("/host".into()),
                    destination: Some("/bind".into()),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        };
        let body = replacement(&old, "newparent").unwrap();
        let host = body.host_config.unwrap();
        assert_eq!(host.network_mode.as_deref(), Some("container:newparent"));
        assert_eq!(body.image.as_deref(), Some("example/app:1"));
        assert_eq!(body.hostname, None);
        assert_eq!(body.exposed_ports, None);
        assert_eq!(body.labels.unwrap()["k"], "v");
        assert_eq!(host.binds.unwrap().len(), 2);
        let mounts = host.mounts.unwrap();
        assert_eq!(mounts.len(), 1, "{mounts:?}");
        assert_eq!(mounts[0].source.as_deref(), Some("0123anon"));
        assert_eq!(mounts[0].target.as_deref(), Some("/data"));
        assert_eq!(mounts[0].read_only, Some(false));
        assert_eq!(
            parked_name("app", "0123456789abcdef"),
            "app-selfheal-replaced-0123456789ab"
        );
        assert!(is_parked_name(&parked_name("app", "0123456789abcdef")));
        assert!(!is_parked_name("app-selfheal-replaced-x"));
        assert!(!is_parked_name("app"));
    }
}
