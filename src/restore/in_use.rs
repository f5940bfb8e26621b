//! Whether running containers use a host directory a restore is about to write.
//!
//! A restore into a Docker volume refuses while running containers use it
//! (`volume/restore.rs`); a host directory they use through a bind mount (the
//! Compose stack's `./workspace`), or a volume's directory given as `--to DIR`, is
//! the same data under the same processes, and gets the same refusal. The Docker
//! engine is asked only when this host has one ([`Engine::connect_if_present`]): a
//! host without Docker runs no containers, and a restore that has nothing to do
//! with Docker must neither fail nor wait for it.

use std::path::Path;

use crate::docker::Engine;
use crate::error::{Error, Result};
use crate::warn::{self, Warning};

/// [`Error::InUse`] naming the running, paused or restarting containers that use
/// `dir` (a mount whose host path is `dir`, inside it, or holds it), when this
/// host's Docker engine answers. Without an engine it returns `Ok`; when the engine
/// cannot be asked (permission denied, a timeout) it warns and returns `Ok`.
pub fn refuse_if_in_use(dir: &Path) -> Result<()> {
    let users = match Engine::connect_if_present().and_then(|e| match e {
        Some(e) => e.containers_using_dir(dir),
        None => Ok(Vec::new()),
    }) {
        Ok(users) => users,
        Err(e) => {
            warn::emit(Warning::DirUsersUnknown {
                dir: dir.to_path_buf(),
                cause: e.to_string(),
            });
            return Ok(());
        }
    };
    if users.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = users.iter().map(|c| c.name.as_str()).collect();
    Err(Error::InUse(in_use_message(dir, &names)))
}

/// What the refusal of a restore into `dir`, which the containers `names` use,
/// says. `--stop` stops the containers of a volume or of `restore --all`, not
/// those of a `--to DIR` restore: they are to be stopped by hand.
pub(crate) fn in_use_message(dir: &Path, names: &[&str]) -> String {
    format!(
        "{} is in use by running containers: {} (a bind mount or volume of theirs is it, is inside it or holds it); restoring into it would change their files under them, and nothing was changed. Stop them first (`docker stop {}`) and run the restore again (--stop stops the containers of a volume restore or of `restore --all` only)",
        dir.display(),
        names.join(", "),
        names.join(" ")
    )
}
