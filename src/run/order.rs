//! Compose dependency order of containers, from the labels Compose puts on them:
//! `com.docker.compose.service` (the service name) and
//! `com.docker.compose.depends_on` (`db:service_started:false,cache:service_healthy:true`:
//! service, condition, restart, comma-separated). Compose starts a service after the
//! services it depends on and stops it before them; a whole-stack restore does the same.

use std::collections::{BTreeMap, BTreeSet};

use crate::docker::ContainerInfo;

/// The label holding a container's Compose service name.
pub const SERVICE_LABEL: &str = "com.docker.compose.service";
/// The label listing the services a container's service depends on.
pub const DEPENDS_ON_LABEL: &str = "com.docker.compose.depends_on";

/// The services `c` depends on, from its `com.docker.compose.depends_on` label.
pub fn depends_on(c: &ContainerInfo) -> Vec<String> {
    c.labels
        .get(DEPENDS_ON_LABEL)
        .map(|v| {
            v.split(',')
                .filter_map(|d| d.split(':').next())
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// `containers` in start order: every container after the containers of the services
/// it depends on; otherwise by name. Dependencies on services not among
/// `containers` are ignored, and a cycle (which Compose refuses) is broken by name.
pub fn start_order(containers: &[ContainerInfo]) -> Vec<ContainerInfo> {
    let mut left: BTreeMap<String, &ContainerInfo> =
        containers.iter().map(|c| (c.name.clone(), c)).collect();
    let mut out: Vec<ContainerInfo> = Vec::with_capacity(containers.len());
    while !left.is_empty() {
        let pending: BTreeSet<&str> = left
            .values()
            .filter_map(|c| c.labels.get(SERVICE_LABEL).map(String::as_str))
            .collect();
        // The first (by name) container none of whose dependencies is still pending.
        let ready = left
            .values()
            .find(|c| {
                let own = c.labels.get(SERVICE_LABEL).map(String::as_str);
                depends_on(c)
                    .iter()
                    .all(|d| Some(d.as_str()) == own || !pending.contains(d.as_str()))
            })
            .map(|c| c.name.clone());
        let next = ready.unwrap_or_else(|| left.keys().next().expect("not empty").clone());
        let c = left.remove(&next).expect("present");
        out.push(c.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docker::ContainerState;

    fn c(name: &str, service: &str, deps: &str) -> ContainerInfo {
        let mut labels = BTreeMap::new();
        labels.insert(SERVICE_LABEL.to_string(), service.to_string());
        if !deps.is_empty() {
            labels.insert(DEPENDS_ON_LABEL.to_string(), deps.to_string());
        }
        ContainerInfo {
            id: name.into(),
            name: name.into(),
            state: ContainerState::Running,
            labels,
        }
    }

    #[test]
    fn dependencies_start_first() {
        let cs = vec![
            c(
                "a-app-1",
                "app",
                "db:service_healthy:false,cache:service_started:true",
            ),
            c("b-cache-1", "cache", "db:service_started:false"),
            c("z-db-1", "db", ""),
        ];
        let names: Vec<String> = start_order(&cs).into_iter().map(|c| c.name).collect();
        assert_eq!(names, ["z-db-1", "b-cache-1", "a-app-1"]);
    }

    #[test]
    fn a_cycle_or_an_absent_service_does_not_lose_containers() {
        let cs = vec![
            c("x", "x", "y:service_started:false"),
            c(
                "y",
                "y",
                "x:service_started:false,gone:service_started:false",
            ),
        ];
        let names: Vec<String> = start_order(&cs).into_iter().map(|c| c.name).collect();
        assert_eq!(names, ["x", "y"]);
    }
}
