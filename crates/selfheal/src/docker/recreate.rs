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
mod tests;
