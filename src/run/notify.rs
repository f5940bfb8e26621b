//! Notifications after a run: a webhook that receives the run's JSON summary
//! ([`super::backup::RunReport`]), healthchecks-style pings (`URL/start` when the run
//! starts, the URL on success, `URL/fail` on failure, as healthchecks.io and its
//! self-hosted twins expect), and
//! an ntfy message. HTTP through `ureq`, with a timeout. A notifier that fails never
//! fails the backup: [`send`] returns the failures as warnings for the CLI to show.

use std::time::Duration;

use serde::Deserialize;

use super::backup::{RunReport, SourceStatus};

/// `[notify]` of the config file.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifySettings {
    /// URLs that get an HTTP POST of the run's JSON summary (`--notify URL` adds one).
    #[serde(default)]
    pub webhook: Vec<String>,
    /// A healthchecks-style ping URL: POSTed on success, `URL/fail` on failure.
    pub healthcheck: Option<String>,
    /// An ntfy topic URL (`https://ntfy.sh/my-backups`): a one-line message per run.
    pub ntfy: Option<String>,
    /// Seconds to wait for each notifier (default 10).
    pub timeout_secs: Option<u64>,
}

impl NotifySettings {
    /// Whether anything is configured.
    pub fn is_empty(&self) -> bool {
        self.webhook.is_empty() && self.healthcheck.is_none() && self.ntfy.is_none()
    }
}

/// A notifier that could not deliver. Never fatal.
#[derive(Debug, thiserror::Error)]
#[error("could not notify {kind} {url}: {detail}; the backup itself is not affected")]
pub struct NotifyError {
    /// `webhook`, `healthcheck` or `ntfy`.
    pub kind: &'static str,
    pub url: String,
    pub detail: String,
}

/// One line saying how the run went, for pings and ntfy.
pub fn summary_line(r: &RunReport) -> String {
    let failed: Vec<&str> = r
        .sources
        .iter()
        .filter(|s| s.status != SourceStatus::Ok)
        .map(|s| s.name.as_str())
        .collect();
    format!(
        "cbsnap run {} of {}: {}, {} sources, {} added in {:.1}s{}",
        r.run_id.as_deref().unwrap_or("-"),
        r.project,
        if r.status == SourceStatus::Ok {
            "ok"
        } else {
            "FAILED"
        },
        r.sources.len(),
        indicatif::HumanBytes(r.bytes_added()),
        r.duration_secs,
        if failed.is_empty() {
            String::new()
        } else {
            format!("; not ok: {}", failed.join(", "))
        }
    )
}

fn agent(cfg: &NotifySettings) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(cfg.timeout_secs.unwrap_or(10))))
        .http_status_as_error(true)
        .build()
        .into()
}

/// Tell the healthcheck URL that a run starts (`URL/start`), so the service measures
/// its duration and notices a run that never ends. Returns the failure, if any.
pub fn start(cfg: &NotifySettings) -> Option<NotifyError> {
    let hc = cfg.healthcheck.as_ref()?;
    let url = format!("{}/start", hc.trim_end_matches('/'));
    agent(cfg)
        .post(&url)
        .send(&b""[..])
        .err()
        .map(|e| NotifyError {
            kind: "healthcheck",
            url,
            detail: e.to_string(),
        })
}

/// Deliver `report` to every notifier of `cfg`; returns what failed.
pub fn send(cfg: &NotifySettings, report: &RunReport) -> Vec<NotifyError> {
    let agent = agent(cfg);
    let ok = report.status == SourceStatus::Ok;
    let line = summary_line(report);
    let mut errors = Vec::new();
    let mut post =
        |kind: &'static str, url: String, ctype: &str, body: Vec<u8>, extra: &[(&str, &str)]| {
            let mut req = agent.post(&url).header("Content-Type", ctype);
            for (k, v) in extra {
                req = req.header(*k, *v);
            }
            if let Err(e) = req.send(&body[..]) {
                errors.push(NotifyError {
                    kind,
                    url,
                    detail: e.to_string(),
                });
            }
        };
    let json = serde_json::to_vec_pretty(report).expect("report serializes");
    for url in &cfg.webhook {
        post(
            "webhook",
            url.clone(),
            "application/json",
            json.clone(),
            &[],
        );
    }
    if let Some(hc) = &cfg.healthcheck {
        let url = if ok {
            hc.clone()
        } else {
            format!("{}/fail", hc.trim_end_matches('/'))
        };
        post(
            "healthcheck",
            url,
            "text/plain",
            line.clone().into_bytes(),
            &[],
        );
    }
    if let Some(topic) = &cfg.ntfy {
        let headers: &[(&str, &str)] = if ok {
            &[("Title", "cbsnap backup ok"), ("Tags", "white_check_mark")]
        } else {
            &[
                ("Title", "cbsnap backup FAILED"),
                ("Priority", "high"),
                ("Tags", "warning"),
            ]
        };
        post(
            "ntfy",
            topic.clone(),
            "text/plain",
            line.into_bytes(),
            headers,
        );
    }
    errors
}
