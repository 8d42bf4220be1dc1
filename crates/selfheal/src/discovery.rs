//! Discovery shared by `check` and the watch loop's re-list: which containers the
//! configuration considers, and what each one is once inspected.

use crate::config::WatchConfig;
use crate::docker::{bounded, ContainerInfo, DockerError};
use bollard::models::ContainerInspectResponse;
use bollard::query_parameters::{InspectContainerOptions, ListContainersOptionsBuilder};
use bollard::Docker;
use selfheal_core::labels::{parse_labels, ENABLE};
use selfheal_core::{LabelError, WatchSpec};
use std::collections::HashMap;

/// One container from the list.
#[derive(Debug, Clone)]
pub struct Listed {
    pub id: String,
    /// The name without Docker's leading `/`; the id when the list gives none.
    pub name: String,
    /// It carries `selfheal.enable` (any value) or watch-all is on: worth an inspect. The
    /// others cannot be watched, so they are not inspected.
    pub considered: bool,
}

/// Lists every container, stopped ones too (with `filter-label`, only those carrying it).
pub async fn list(docker: &Docker, cfg: &WatchConfig) -> Result<Vec<Listed>, DockerError> {
    let mut filters = HashMap::new();
    if let Some(f) = &cfg.filter_label {
        filters.insert("label", vec![f.as_str()]);
    }
    let opts = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&filters)
        .build();
    let list = bounded(docker.list_containers(Some(opts))).await?;
    Ok(list
        .into_iter()
        .filter_map(|s| {
            let id = s.id?;
            let name = s
                .names
                .as_ref()
                .and_then(|n| n.first())
                .map_or_else(|| id.clone(), |n| n.trim_start_matches('/').to_string());
            let considered =
                cfg.watch_all || s.labels.as_ref().is_some_and(|l| l.contains_key(ENABLE));
            Some(Listed {
                id,
                name,
                considered,
            })
        })
        .collect())
}

/// What one inspected container is to the watchdog.
#[derive(Debug)]
pub enum Discovered {
    Watched {
        info: ContainerInfo,
        spec: WatchSpec,
    },
    /// `selfheal.enable=false`, or no label without watch-all.
    NotOptedIn,
    LabelErrors {
        info: ContainerInfo,
        errors: Vec<LabelError>,
    },
    /// Removed since it was listed (404): gone, nothing to report.
    Gone,
    /// Inspect failed otherwise: the watchdog cannot tell what this container is.
    NotInspectable(DockerError),
}

/// Inspects one container and classifies it.
pub async fn inspect(docker: &Docker, id: &str, cfg: &WatchConfig) -> Discovered {
    classify(
        bounded(docker.inspect_container(id, None::<InspectContainerOptions>)).await,
        cfg,
    )
}

/// Classifies the result of an inspect.
pub fn classify(
    inspected: Result<ContainerInspectResponse, DockerError>,
    cfg: &WatchConfig,
) -> Discovered {
    let info = match inspected {
        Ok(c) => ContainerInfo::from_inspect(c),
        Err(DockerError::NotFound) => return Discovered::Gone,
        Err(e) => return Discovered::NotInspectable(e),
    };
    match parse_labels(&info.labels, &cfg.defaults, cfg.watch_all) {
        Ok(None) => Discovered::NotOptedIn,
        Ok(Some(spec)) => Discovered::Watched { info, spec },
        Err(errors) => Discovered::LabelErrors { info, errors },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::WatchArgs;
    use bollard::models::ContainerConfig;

    fn cfg() -> WatchConfig {
        WatchArgs::default().resolve().unwrap()
    }

    fn with_labels(labels: &[(&str, &str)]) -> Result<ContainerInspectResponse, DockerError> {
        Ok(ContainerInspectResponse {
            id: Some("abc".into()),
            name: Some("/app".into()),
            config: Some(ContainerConfig {
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    fn server_error(status_code: u16) -> DockerError {
        DockerError::from_api(bollard::errors::Error::DockerResponseServerError {
            status_code,
            message: "driver failed".into(),
        })
    }

    #[test]
    fn an_inspect_that_fails_is_not_inspectable_with_its_cause_and_a_404_is_gone() {
        match classify(Err(server_error(500)), &cfg()) {
            Discovered::NotInspectable(e) => {
                assert!(e.to_string().contains("driver failed"), "{e}")
            }
            other => panic!("{other:?}"),
        }
        let timeout = DockerError::Timeout(crate::docker::API_TIMEOUT);
        assert!(matches!(
            classify(Err(timeout), &cfg()),
            Discovered::NotInspectable(DockerError::Timeout(_))
        ));
        assert!(matches!(
            classify(Err(server_error(404)), &cfg()),
            Discovered::Gone
        ));
    }

    #[test]
    fn labels_decide_watched_not_opted_in_or_label_errors() {
        match classify(with_labels(&[("selfheal.enable", "true")]), &cfg()) {
            Discovered::Watched { info, .. } => assert_eq!(info.name, "app"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            classify(with_labels(&[]), &cfg()),
            Discovered::NotOptedIn
        ));
        let bad = [
            ("selfheal.enable", "true"),
            ("selfheal.restart.max", "lots"),
        ];
        match classify(with_labels(&bad), &cfg()) {
            Discovered::LabelErrors { errors, .. } => {
                assert_eq!(errors[0].label, "selfheal.restart.max");
                assert_eq!(errors[0].value, "lots");
            }
            other => panic!("{other:?}"),
        }
        let mut all = cfg();
        all.watch_all = true;
        assert!(matches!(
            classify(with_labels(&[]), &all),
            Discovered::Watched { .. }
        ));
        assert!(matches!(
            classify(with_labels(&[("selfheal.enable", "false")]), &all),
            Discovered::NotOptedIn
        ));
    }
}
