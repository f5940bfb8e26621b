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
    pub via: Option<crate::volume::snapshot::Via>,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's configuration example is a valid config file, and documents every
    /// `[keep]` key (unknown keys are refused, so a renamed key fails here too).
    #[test]
    fn readme_config_example_parses_and_documents_keep() {
        let readme = include_str!("../README.md");
        let start = readme
            .find("```toml\n# ~/.config/cbsnap/config.toml")
            .expect("the README shows a config file");
        let body = &readme[start + "```toml\n".len()..];
        let body = &body[..body.find("```").expect("closed code block")];
        let s: Settings = toml::from_str(body).expect("the README's config parses");
        let k = &s.keep;
        assert!(
            k.last.is_some()
                && k.hourly.is_some()
                && k.daily.is_some()
                && k.weekly.is_some()
                && k.monthly.is_some()
                && k.yearly.is_some()
                && k.within.is_some()
                && !k.tags.is_empty(),
            "every [keep] key is in the README's example: {k:?}"
        );
        let policy = crate::forget::Policy::from_keep(k).expect("a valid policy");
        assert!(policy.to_string().contains("within"), "{policy}");
        assert!(s.prune.repack_threshold.is_some());
    }
}
