//! The executor's second verb: recreate a container from its own configuration, the way
//! `docker compose up --force-recreate` does: same name, image, configuration, labels (Compose's
//! too, so it still owns the container) and volumes (anonymous ones included, mounted by name,
//! so no data is lost), with a fresh writable layer. Either in its own networks, with their
//! aliases and static addresses ([`own_replacement`]), or, for a network dependent whose parent
//! was recreated, in the new parent's namespace ([`replacement`]). The old container is kept,
//! renamed, until the new one runs; if anything fails it gets its name back and is left as it
//! was.

use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, EndpointIpamConfig, EndpointSettings,
    HostConfig, Mount, MountType, NetworkingConfig,
};
use std::collections::HashMap;

/// Why a recreate cannot be done safely.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unsafe(pub String);

/// A replacement to create, and the networks to connect it to before its start: Docker 20.10
/// (API 1.41) takes one network at create.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Replacement {
    pub body: ContainerCreateBody,
    /// Network name and endpoint (aliases, static addresses), sorted by name.
    pub connect: Vec<(String, EndpointSettings)>,
}

/// The body of `POST /containers/create` for `old`'s replacement, in `new_parent`'s network
/// namespace. The image is named as the old container was created with it (`Config.Image`).
pub fn replacement(
    old: &ContainerInspectResponse,
    new_parent: &str,
) -> Result<ContainerCreateBody, Unsafe> {
    let config = old
        .config
        .as_ref()
        .ok_or_else(|| Unsafe("inspect shows no configuration".into()))?;
    // As compose and `docker run` name it: compose compares it on its next `up`, and an id
    // there makes it recreate the container again.
    let image = config
        .image
        .clone()
        .or_else(|| old.image.clone())
        .ok_or_else(|| Unsafe("inspect shows no image".into()))?;
    let mut body = copied(old, image)?;
    in_namespace(&mut body, format!("container:{new_parent}"));
    Ok(body)
}

/// The image a replacement of `old` is created from: the name it was created by
/// (`Config.Image`) when that name still resolves to the old container's image
/// (`name_resolves_to`: the image id the name has now, `None` if it names no image), so that
/// Compose and `docker ps` see what they created; else the old image's id, so that a tag moved
/// meanwhile (a pull) does not change what runs.
pub fn image_for(
    old: &ContainerInspectResponse,
    name_resolves_to: Option<&str>,
) -> Result<String, Unsafe> {
    let id = old
        .image
        .clone()
        .filter(|i| !i.is_empty())
        .ok_or_else(|| Unsafe("inspect shows no image id".into()))?;
    let name = old.config.as_ref().and_then(|c| c.image.clone());
    Ok(match name {
        Some(name) if name_resolves_to == Some(id.as_str()) => name,
        _ => id,
    })
}

/// `old`'s replacement from its own configuration, created from `image` ([`image_for`]), on
/// every network `old` was on. A `container:`, `host` or `none` network mode is kept as is.
pub fn own_replacement(
    old: &ContainerInspectResponse,
    image: String,
) -> Result<Replacement, Unsafe> {
    let host = old.host_config.as_ref();
    if host.and_then(|h| h.auto_remove) == Some(true) {
        return Err(Unsafe(
            "it is started with --rm (auto-remove): stopping it would remove it".into(),
        ));
    }
    if host
        .and_then(|h| h.container_id_file.as_deref())
        .is_some_and(|f| !f.is_empty())
    {
        return Err(Unsafe(
            "it has a --cidfile: Docker refuses to create over the old container's id file".into(),
        ));
    }
    let labels = old.config.as_ref().and_then(|c| c.labels.as_ref());
    if labels.is_some_and(|l| l.contains_key("com.docker.swarm.task.id")) {
        return Err(Unsafe(
            "a Swarm task: Swarm replaces it, not selfheal".into(),
        ));
    }
    let id = old
        .id
        .as_deref()
        .filter(|i| !i.is_empty())
        .ok_or_else(|| Unsafe("inspect shows no id".into()))?;
    let short_id = &id[..id.len().min(12)];
    let mut body = copied(old, image)?;
    let mode = host
        .and_then(|h| h.network_mode.clone())
        .unwrap_or_else(|| "default".into());
    if mode.starts_with("container:") {
        in_namespace(&mut body, mode);
        return Ok(Replacement {
            body,
            connect: Vec::new(),
        });
    }
    // Docker's default hostname is the id's first 12 characters: the new id gives a new one.
    if body.hostname.as_deref() == Some(short_id) {
        body.hostname = None;
    }
    if mode == "host" || mode == "none" {
        return Ok(Replacement {
            body,
            connect: Vec::new(),
        });
    }
    let networks = old
        .network_settings
        .as_ref()
        .and_then(|n| n.networks.clone())
        .unwrap_or_default();
    let mut endpoints: Vec<(String, EndpointSettings)> = networks
        .iter()
        .map(|(name, ep)| (name.clone(), endpoint(ep, short_id)))
        .collect();
    endpoints.sort_by(|a, b| a.0.cmp(&b.0));
    // The network its network mode names is given at create; `default` is the bridge.
    let primary = if mode == "default" {
        "bridge"
    } else {
        mode.as_str()
    };
    let at = networks
        .iter()
        .find(|(name, ep)| *name == primary || ep.network_id.as_deref() == Some(primary))
        .map(|(name, _)| name.clone())
        .and_then(|name| endpoints.iter().position(|(n, _)| *n == name))
        .ok_or_else(|| {
            Unsafe(format!(
                "it is not on the network of its network mode ({mode}): disconnected by hand"
            ))
        })?;
    let (name, settings) = endpoints.remove(at);
    body.networking_config = Some(NetworkingConfig {
        endpoints_config: Some(HashMap::from([(name, settings)])),
    });
    Ok(Replacement {
        body,
        connect: endpoints,
    })
}

/// `old`'s configuration as it is (image aside), with the volumes it mounted without naming
/// them in Binds or Mounts (anonymous volumes, and a named one from an image VOLUME) mounted
/// again by name.
fn copied(old: &ContainerInspectResponse, image: String) -> Result<ContainerCreateBody, Unsafe> {
    let config = old
        .config
        .clone()
        .ok_or_else(|| Unsafe("inspect shows no configuration".into()))?;
    let mut host = old.host_config.clone().unwrap_or_default();
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
    Ok(ContainerCreateBody {
        hostname: config.hostname,
        domainname: config.domainname,
        user: config.user,
        attach_stdin: config.attach_stdin,
        attach_stdout: config.attach_stdout,
        attach_stderr: config.attach_stderr,
        exposed_ports: config.exposed_ports,
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

/// Puts `body` in another container's network namespace (`mode`: `container:<id>`). Docker
/// refuses a hostname, DNS settings, extra hosts, links and published or exposed ports there
/// (they are the parent's), so those are left out.
fn in_namespace(body: &mut ContainerCreateBody, mode: String) {
    body.hostname = None;
    body.domainname = None;
    body.exposed_ports = None;
    let host = body.host_config.get_or_insert_with(HostConfig::default);
    host.network_mode = Some(mode);
    host.dns = None;
    host.dns_options = None;
    host.dns_search = None;
    host.extra_hosts = None;
    host.links = None;
    host.port_bindings = None;
    host.publish_all_ports = None;
}

/// What the user set on an endpoint: aliases (without the old short id, which Docker adds
/// itself), static addresses, links and driver options. Addresses Docker assigned are not
/// carried over.
fn endpoint(ep: &EndpointSettings, short_id: &str) -> EndpointSettings {
    let aliases: Vec<String> = ep
        .aliases
        .iter()
        .flatten()
        .filter(|a| a.as_str() != short_id)
        .cloned()
        .collect();
    let set = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
    let ipam = ep.ipam_config.as_ref().map(|c| EndpointIpamConfig {
        ipv4_address: set(&c.ipv4_address),
        ipv6_address: set(&c.ipv6_address),
        link_local_ips: c.link_local_ips.clone().filter(|l| !l.is_empty()),
    });
    EndpointSettings {
        ipam_config: ipam.filter(|c| *c != EndpointIpamConfig::default()),
        links: ep.links.clone().filter(|l| !l.is_empty()),
        aliases: (!aliases.is_empty()).then_some(aliases),
        driver_opts: ep.driver_opts.clone().filter(|o| !o.is_empty()),
        ..Default::default()
    }
}

/// The name the old container is kept under while its replacement is created.
pub fn parked_name(name: &str, id: &str) -> String {
    format!("{name}-selfheal-replaced-{}", &id[..id.len().min(12)])
}

/// A name [`parked_name`] made.
pub fn is_parked_name(name: &str) -> bool {
    parked_from(name).is_some()
}

/// The name a container parked aside by [`parked_name`] had (and its replacement gets).
pub fn parked_from(name: &str) -> Option<&str> {
    name.rsplit_once("-selfheal-replaced-")
        .filter(|(_, id)| !id.is_empty() && id.chars().all(|c| c.is_ascii_hexdigit()))
        .map(|(name, _)| name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{ContainerConfig, MountPoint, NetworkSettings, PortBinding};

    const OLD_ID: &str = "0123456789abcdef0123456789abcdef";

    /// A container as `docker run` (or Compose) leaves it: on two user networks, `front` by its
    /// network mode with a static address and an alias, `back` with an alias; Docker's own
    /// hostname and short-id alias; a port published on 127.0.0.1; an anonymous volume.
    fn on_two_networks() -> ContainerInspectResponse {
        let endpoint = |aliases: &[&str], ip: Option<&str>, net_id: &str| EndpointSettings {
            aliases: Some(aliases.iter().map(|a| a.to_string()).collect()),
            ipam_config: ip.map(|ip| EndpointIpamConfig {
                ipv4_address: Some(ip.into()),
                ..Default::default()
            }),
            network_id: Some(net_id.into()),
            ip_address: Some("10.1.0.9".into()),
            mac_address: Some("02:42:0a:01:00:09".into()),
            ..Default::default()
        };
        ContainerInspectResponse {
            id: Some(OLD_ID.into()),
            image: Some("sha256:abc".into()),
            config: Some(ContainerConfig {
                hostname: Some(OLD_ID[..12].into()),
                image: Some("example/app:1".into()),
                env: Some(vec!["A=1".into()]),
                labels: Some(
                    [
                        ("com.docker.compose.config-hash", "f00"),
                        ("com.docker.compose.service", "web"),
                    ]
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .into(),
                ),
                exposed_ports: Some(vec!["8080/tcp".into()]),
                stop_signal: Some("SIGINT".into()),
                ..Default::default()
            }),
            host_config: Some(HostConfig {
                network_mode: Some("front".into()),
                port_bindings: Some(HashMap::from([(
                    "8080/tcp".to_string(),
                    Some(vec![PortBinding {
                        host_ip: Some("127.0.0.1".into()),
                        host_port: Some("18080".into()),
                    }]),
                )])),
                links: Some(vec!["/db:/app/database".into()]),
                memory: Some(64 << 20),
                ..Default::default()
            }),
            mounts: Some(vec![MountPoint {
                typ: Some("volume".into()),
                name: Some("0123anon".into()),
                destination: Some("/data".into()),
                rw: Some(true),
                ..Default::default()
            }]),
            network_settings: Some(NetworkSettings {
                networks: Some(HashMap::from([
                    (
                        "front".to_string(),
                        endpoint(&["web", &OLD_ID[..12]], Some("10.1.0.9"), "id-front"),
                    ),
                    (
                        "back".to_string(),
                        endpoint(&[&OLD_ID[..12], "api"], None, "id-back"),
                    ),
                ])),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn its_own_replacement_keeps_configuration_labels_ports_volumes_and_every_network() {
        let old = on_two_networks();
        let Replacement { body, connect } = own_replacement(&old, "example/app:1".into()).unwrap();
        assert_eq!(body.image.as_deref(), Some("example/app:1"));
        // Docker's default hostname goes: the new id brings its own.
        assert_eq!(body.hostname, None);
        assert_eq!(body.env, Some(vec!["A=1".to_string()]));
        assert_eq!(body.stop_signal.as_deref(), Some("SIGINT"));
        assert_eq!(body.exposed_ports, Some(vec!["8080/tcp".to_string()]));
        assert_eq!(body.labels, old.config.as_ref().unwrap().labels);
        let host = body.host_config.unwrap();
        assert_eq!(host.network_mode.as_deref(), Some("front"));
        assert_eq!(host.memory, Some(64 << 20));
        assert_eq!(
            host.port_bindings,
            old.host_config.as_ref().unwrap().port_bindings
        );
        // As inspect shows a legacy link: Docker takes it back in that form.
        assert_eq!(host.links, Some(vec!["/db:/app/database".to_string()]));
        let mounts = host.mounts.unwrap();
        assert_eq!(mounts.len(), 1, "{mounts:?}");
        assert_eq!(mounts[0].source.as_deref(), Some("0123anon"));
        assert_eq!(mounts[0].target.as_deref(), Some("/data"));
        // The network of its network mode at create, the other connected before the start;
        // aliases without the old short id, the static address kept, assigned ones not.
        let at_create = body.networking_config.unwrap().endpoints_config.unwrap();
        assert_eq!(at_create.keys().collect::<Vec<_>>(), ["front"]);
        let front = &at_create["front"];
        assert_eq!(front.aliases, Some(vec!["web".to_string()]));
        assert_eq!(
            front.ipam_config.as_ref().unwrap().ipv4_address.as_deref(),
            Some("10.1.0.9")
        );
        assert_eq!((&front.ip_address, &front.mac_address), (&None, &None));
        assert_eq!(connect.len(), 1, "{connect:?}");
        assert_eq!(connect[0].0, "back");
        assert_eq!(connect[0].1.aliases, Some(vec!["api".to_string()]));
        assert_eq!(connect[0].1.ipam_config, None);
    }

    #[test]
    fn a_hostname_of_its_own_is_kept_and_the_default_bridge_is_named_by_default() {
        let mut old = on_two_networks();
        let config = old.config.as_mut().unwrap();
        config.hostname = Some("web-1".into());
        config.domainname = Some("example.org".into());
        let host = old.host_config.as_mut().unwrap();
        host.network_mode = Some("default".into());
        old.network_settings = Some(NetworkSettings {
            networks: Some(HashMap::from([(
                "bridge".to_string(),
                EndpointSettings::default(),
            )])),
            ..Default::default()
        });
        let r = own_replacement(&old, "sha256:abc".into()).unwrap();
        assert_eq!(r.body.hostname.as_deref(), Some("web-1"));
        assert_eq!(r.body.domainname.as_deref(), Some("example.org"));
        let at_create = r.body.networking_config.unwrap().endpoints_config.unwrap();
        assert_eq!(at_create["bridge"], EndpointSettings::default());
        assert!(r.connect.is_empty());
    }

    #[test]
    fn a_shared_host_or_no_network_is_kept_as_is() {
        let mut old = on_two_networks();
        old.host_config.as_mut().unwrap().network_mode = Some("container:parent".into());
        let r = own_replacement(&old, "sha256:abc".into()).unwrap();
        let host = r.body.host_config.unwrap();
        assert_eq!(host.network_mode.as_deref(), Some("container:parent"));
        assert_eq!((host.port_bindings, r.body.exposed_ports), (None, None));
        assert_eq!((r.body.networking_config, r.connect.len()), (None, 0));
        for mode in ["host", "none"] {
            old.host_config.as_mut().unwrap().network_mode = Some(mode.into());
            let r = own_replacement(&old, "sha256:abc".into()).unwrap();
            let host = r.body.host_config.unwrap();
            assert_eq!(host.network_mode.as_deref(), Some(mode));
            assert_eq!((r.body.networking_config, r.connect.len()), (None, 0));
        }
    }

    #[test]
    fn what_cannot_be_copied_safely_is_refused() {
        let refused = |change: fn(&mut ContainerInspectResponse)| {
            let mut old = on_two_networks();
            change(&mut old);
            own_replacement(&old, "sha256:abc".into()).unwrap_err().0
        };
        let auto_remove = refused(|o| o.host_config.as_mut().unwrap().auto_remove = Some(true));
        assert!(auto_remove.contains("--rm"), "{auto_remove}");
        let cidfile = refused(|o| {
            o.host_config.as_mut().unwrap().container_id_file = Some("/run/app.cid".into())
        });
        assert!(cidfile.contains("--cidfile"), "{cidfile}");
        let swarm = refused(|o| {
            let labels = o.config.as_mut().unwrap().labels.as_mut().unwrap();
            labels.insert("com.docker.swarm.task.id".into(), "t1".into());
        });
        assert!(swarm.contains("Swarm"), "{swarm}");
        let disconnected = refused(|o| {
            let networks = o.network_settings.as_mut().unwrap().networks.as_mut();
            networks.unwrap().remove("front");
        });
        assert!(disconnected.contains("(front)"), "{disconnected}");
        assert!(refused(|o| o.id = None).contains("no id"));
    }

    #[test]
    fn the_image_is_named_as_created_only_while_that_name_is_the_same_image() {
        let old = on_two_networks();
        assert_eq!(
            image_for(&old, Some("sha256:abc")).unwrap(),
            "example/app:1"
        );
        // The tag moved (a pull since), or names nothing now: the old image by its id.
        assert_eq!(image_for(&old, Some("sha256:def")).unwrap(), "sha256:abc");
        assert_eq!(image_for(&old, None).unwrap(), "sha256:abc");
        let no_id = ContainerInspectResponse {
            image: None,
            ..on_two_networks()
        };
        assert!(image_for(&no_id, None).is_err());
    }

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
