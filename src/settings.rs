//! The user's configuration file (TOML): where the repository is, which compose
//! project and host paths `snapshot --all` covers, what to exclude, and the retention
//! policy. Looked up at `--config FILE`, else `$XDG_CONFIG_HOME/cbsnap/config.toml`
//! (`~/.config/cbsnap/config.toml`), else `/etc/cbsnap/config.toml`; every field is
//! optional.
//!
//! ```toml
//! repo = "/srv/backup/cbsnap"
//! project = "code-buddy"
//! paths = ["~/.ollama", "/opt/code-buddy/workspace"]
//! exclude = ["*-cache", "*-logs"]
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub repo: Option<PathBuf>,
    pub project: Option<String>,
    /// Host directories `snapshot --all` also takes; `~` is expanded.
    pub paths: Option<Vec<String>>,
    /// Glob patterns of source names (volume names without the project prefix) to skip.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// `pause` (default), `stop` or `none`.
    pub quiesce: Option<String>,
    /// `auto` (default), `archive` or `mount`.
    pub via: Option<crate::source::docker::Via>,
    #[serde(default)]
    pub keep: Keep,
    #[serde(default)]
    pub prune: PruneSettings,
    /// `[hooks]`: host commands around a run and around each host path.
    #[serde(default)]
    pub hooks: crate::run::hooks::Hooks,
    /// `[notify]`: where to report each `snapshot --all` run.
    #[serde(default)]
    pub notify: crate::run::notify::NotifyConfig,
    /// A Prometheus textfile (node_exporter textfile collector) rewritten after
    /// each run.
    pub metrics_file: Option<PathBuf>,
}

/// `[prune]`: how `cbsnap prune` trades space for rewriting packs.
#[derive(Debug, Default, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PruneSettings {
    /// Repack a pack when more than this percentage of it is unused (default 10).
    pub repack_threshold: Option<f64>,
}

/// A retention policy (see `cbsnap forget`).
#[derive(Debug, Default, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Keep {
    pub last: Option<u32>,
    pub hourly: Option<u32>,
    pub daily: Option<u32>,
    pub weekly: Option<u32>,
    pub monthly: Option<u32>,
    pub yearly: Option<u32>,
    pub within: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
}

pub fn home() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

/// Expand a leading `~/`.
pub fn expand_tilde(p: &str) -> PathBuf {
    if let Some(rest) = p.strip_prefix("~/") {
        if let Some(h) = home() {
            return h.join(rest);
        }
    } else if p == "~" {
        if let Some(h) = home() {
            return h;
        }
    }
    PathBuf::from(p)
}

impl Settings {
    /// Load the configuration: an explicit `--config` file must exist; the default
    /// locations are optional.
    pub fn load(explicit: Option<&Path>) -> Result<Settings> {
        if let Some(p) = explicit {
            return Self::read(p);
        }
        let mut candidates = Vec::new();
        if let Some(x) = std::env::var_os("XDG_CONFIG_HOME").filter(|x| !x.is_empty()) {
            candidates.push(PathBuf::from(x).join("cbsnap/config.toml"));
        } else if let Some(h) = home() {
            candidates.push(h.join(".config/cbsnap/config.toml"));
        }
        candidates.push(PathBuf::from("/etc/cbsnap/config.toml"));
        for c in candidates {
            if c.exists() {
                return Self::read(&c);
            }
        }
        Ok(Settings::default())
    }

    fn read(p: &Path) -> Result<Settings> {
        let text = std::fs::read_to_string(p).map_err(|e| {
            Error::Usage(format!("cannot read the config file {}: {e}", p.display()))
        })?;
        toml::from_str(&text)
            .map_err(|e| Error::Usage(format!("the config file {} is not valid: {e}", p.display())))
    }

    /// The repository path: `--repo`, else `CBSNAP_REPO` (clap reads both into
    /// `flag`), else the config file, else `$XDG_DATA_HOME/cbsnap/repo`.
    pub fn repo_path(&self, flag: Option<&Path>) -> PathBuf {
        if let Some(p) = flag {
            return p.to_path_buf();
        }
        if let Some(p) = &self.repo {
            return expand_tilde(&p.to_string_lossy());
        }
        let data = std::env::var_os("XDG_DATA_HOME")
            .filter(|x| !x.is_empty())
            .map(PathBuf::from)
            .or_else(|| home().map(|h| h.join(".local/share")))
            .unwrap_or_else(|| PathBuf::from("/var/lib"));
        data.join("cbsnap/repo")
    }
}
