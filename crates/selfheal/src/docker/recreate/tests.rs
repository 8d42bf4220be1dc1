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
