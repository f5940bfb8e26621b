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
//!
//! The precedence of a command-line flag over the config file over the default is
//! decided here, once: [`Settings::project`], [`Settings::via`],
//! [`Settings::quiesce`], [`Settings::run_paths`] and [`Settings::all_options`]. The
//! defaults live here and nowhere else ([`DEFAULT_PROJECT`], [`DEFAULT_PATHS`]).
//! This is the top of the library: it reads the option types of the use cases
//! below it (`run`, `volume`, `forget`), and none of them reads it.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::docker::QuiesceMode;
use crate::error::{Error, Result};
use crate::forget::Keep;
use crate::run::backup::AllOptions;
use crate::run::report::RunOutputs;
use crate::storage::Location;
use crate::volume::Via;

/// The compose project whose volumes `snapshot --all` takes and whose source names
/// lose their `<project>_` prefix, when neither `--project` nor the config's
/// `project` names one.
pub const DEFAULT_PROJECT: &str = "code-buddy";

/// The host directories `snapshot --all` takes when the config has no `paths`:
/// each only if it is a directory (`~` is the user's home).
pub const DEFAULT_PATHS: &[&str] = &["~/.ollama"];

/// What `snapshot --all` or `snapshot VOLUME...` was given on the command line;
/// [`Settings::all_options`] completes it from the config file and the defaults.
#[derive(Clone, Debug, Default)]
pub struct AllFlags {
    /// `Some`: these volumes only (`snapshot VOLUME...`); `None`: `--all`.
    pub volumes: Option<Vec<String>>,
    /// `--project`.
    pub project: Option<String>,
    /// `--exclude` globs (they add to the config's and make a run incomplete).
    pub exclude: Vec<String>,
    /// `--via`.
    pub via: Option<Via>,
    /// `--quiesce`.
    pub quiesce: Option<QuiesceMode>,
    /// `--tag`s.
    pub tags: Vec<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Where the repository is: a path, `s3://bucket/prefix` or `sftp://…`
    /// ([`crate::storage::Location`]).
    pub repo: Option<String>,
    /// The compose project; `--project` wins, [`DEFAULT_PROJECT`] otherwise.
    pub project: Option<String>,
    /// Host directories `snapshot --all` also takes; `~` is expanded.
    pub paths: Option<Vec<String>>,
    /// Glob patterns of source names (volume names without the project prefix) to skip.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// `pause` (default), `stop` or `none`.
    pub quiesce: Option<String>,
    /// `auto` (default), `archive` or `mount`.
    pub via: Option<Via>,
    /// `[keep]`: the retention policy of `forget` when no `--keep-*` flag is given.
    #[serde(default)]
    pub keep: Keep,
    /// `[prune]`.
    #[serde(default)]
    pub prune: PruneSettings,
    /// `[hooks]`: host commands around a run and around each host path.
    #[serde(default)]
    pub hooks: crate::run::hooks::Hooks,
    /// `[notify]`: where to report each `snapshot --all` run.
    #[serde(default)]
    pub notify: crate::run::notify::NotifySettings,
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

/// `$HOME`, unless unset or empty.
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
    /// The compose project: `flag`, else the config's `project`, else [`DEFAULT_PROJECT`].
    pub fn project(&self, flag: Option<&str>) -> String {
        flag.or(self.project.as_deref())
            .unwrap_or(DEFAULT_PROJECT)
            .to_string()
    }

    /// How to read and write volumes: `flag`, else the config's `via`, else `auto`.
    pub fn via(&self, flag: Option<Via>) -> Via {
        flag.or(self.via).unwrap_or(Via::Auto)
    }

    /// The default quiesce mode: `flag`, else the config's `quiesce`, else `pause`.
    /// [`Error::Usage`] when the config's value is not a mode.
    pub fn quiesce(&self, flag: Option<QuiesceMode>) -> Result<QuiesceMode> {
        match (flag, &self.quiesce) {
            (Some(q), _) => Ok(q),
            (None, Some(s)) => s
                .parse()
                .map_err(|e: crate::docker::UnknownQuiesceMode| Error::Usage(e.to_string())),
            (None, None) => Ok(QuiesceMode::Pause),
        }
    }

    /// The host directories of `snapshot --all`: the config's `paths` (`~`
    /// expanded), else those of [`DEFAULT_PATHS`] that are directories.
    pub fn run_paths(&self) -> Vec<PathBuf> {
        match &self.paths {
            Some(p) => p.iter().map(|s| expand_tilde(s)).collect(),
            None => DEFAULT_PATHS
                .iter()
                .map(|p| expand_tilde(p))
                .filter(|p| p.is_dir())
                .collect(),
        }
    }

    /// The options of [`crate::run::backup::snapshot_all`]: the flags over the
    /// config over the defaults. The config's per-path hooks are keyed by the
    /// absolute path (`~` expanded), as the run compares them.
    pub fn all_options(&self, flags: &AllFlags) -> Result<AllOptions> {
        let mut hooks = self.hooks.clone();
        hooks.path = std::mem::take(&mut hooks.path)
            .into_iter()
            .map(|(k, v)| {
                let p = expand_tilde(&k);
                let abs = std::path::absolute(&p).unwrap_or(p);
                (abs.to_string_lossy().into_owned(), v)
            })
            .collect();
        Ok(AllOptions {
            project: self.project(flags.project.as_deref()),
            volumes: flags.volumes.clone(),
            paths: self.run_paths(),
            exclude_config: self.exclude.clone(),
            exclude_flag: flags.exclude.clone(),
            via: self.via(flags.via),
            quiesce: self.quiesce(flags.quiesce)?,
            tags: flags.tags.clone(),
            hooks,
        })
    }

    /// Where a run's summary goes: `--metrics-file` else the config's
    /// `metrics_file`; the `--notify` webhooks added to the config's `[notify]`.
    pub fn run_outputs(&self, metrics_file: Option<&Path>, webhooks: &[String]) -> RunOutputs {
        let mut notify = self.notify.clone();
        notify.webhook.extend(webhooks.iter().cloned());
        RunOutputs {
            metrics_file: metrics_file
                .map(Path::to_path_buf)
                .or_else(|| self.metrics_file.clone()),
            notify,
        }
    }

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

    /// The repository location: `--repo`, else `CBSNAP_REPO` (clap reads both into
    /// `flag`), else the config file (a leading `~/` expanded), else
    /// `$XDG_DATA_HOME/cbsnap/repo`. Every one goes through
    /// [`crate::storage::Location::parse`]: an unknown scheme is an error, never a
    /// local directory.
    pub fn repo_location(&self, flag: Option<&str>) -> Result<Location> {
        if let Some(p) = flag {
            return Ok(Location::parse(p)?);
        }
        if let Some(p) = &self.repo {
            if p == "~" || p.starts_with("~/") {
                return Ok(Location::Local(expand_tilde(p)));
            }
            return Ok(Location::parse(p)?);
        }
        let data = std::env::var_os("XDG_DATA_HOME")
            .filter(|x| !x.is_empty())
            .map(PathBuf::from)
            .or_else(|| home().map(|h| h.join(".local/share")))
            .unwrap_or_else(|| PathBuf::from("/var/lib"));
        Ok(Location::Local(data.join("cbsnap/repo")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_the_config_which_wins_over_the_defaults() {
        let none = Settings::default();
        let flags = AllFlags::default();
        let o = none.all_options(&flags).unwrap();
        assert_eq!(o.project, DEFAULT_PROJECT);
        assert_eq!((o.via, o.quiesce), (Via::Auto, QuiesceMode::Pause));
        let config: Settings = toml::from_str(
            "project = \"stack\"\nvia = \"archive\"\nquiesce = \"stop\"\npaths = [\"/srv/a\"]\nexclude = [\"*-cache\"]\n[hooks.path.\"/srv/a\"]\npre = \"true\"\n",
        )
        .unwrap();
        let o = config.all_options(&flags).unwrap();
        assert_eq!(o.project, "stack");
        assert_eq!((o.via, o.quiesce), (Via::Archive, QuiesceMode::Stop));
        assert_eq!(o.paths, [PathBuf::from("/srv/a")]);
        assert_eq!(o.exclude_config, ["*-cache"]);
        assert!(o.hooks.path.contains_key("/srv/a"));
        let given = AllFlags {
            project: Some("other".into()),
            via: Some(Via::Mount),
            quiesce: Some(QuiesceMode::None),
            exclude: vec!["x".into()],
            ..Default::default()
        };
        let o = config.all_options(&given).unwrap();
        assert_eq!(o.project, "other");
        assert_eq!((o.via, o.quiesce), (Via::Mount, QuiesceMode::None));
        assert_eq!((o.exclude_config.len(), o.exclude_flag.len()), (1, 1));
        let bad = Settings {
            quiesce: Some("freeze".into()),
            ..Default::default()
        };
        assert!(matches!(bad.all_options(&flags), Err(Error::Usage(_))));
    }

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
