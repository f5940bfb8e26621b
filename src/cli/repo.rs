//! `cbsnap init`, `cbsnap recover` and `cbsnap index rebuild`.

use cbsnap::storage::Location;
use cbsnap::Error;

use super::args::{InitArgs, OnOff};
use super::prompt;
use super::render::print_json;
use super::Ctx;

/// Whether `init` encrypts by default: yes for a repository on someone else's storage
/// (`s3://`, `sftp://`), no for a local path.
fn default_encryption(location: &Location) -> bool {
    match location {
        Location::Local(_) => false,
        Location::S3 { .. } | Location::Sftp { .. } => true,
    }
}

pub fn init(ctx: &Ctx, a: InitArgs) -> anyhow::Result<i32> {
    let encrypt = a
        .encryption
        .map_or_else(|| default_encryption(&ctx.location), |e| e == OnOff::On);
    let cfg = if encrypt {
        use cbsnap::crypto::passphrase::PassphraseSource;
        let pass = prompt::Prompt::for_init()
            .passphrase()
            .map_err(Error::Crypto)?;
        let kdf = cbsnap::crypto::keys::KdfParams::default();
        cbsnap::Repository::init_encrypted_in(ctx.storage()?, &pass, &kdf)?
    } else {
        cbsnap::Repository::init_in(ctx.storage()?)?
    };
    if ctx.json {
        print_json(
            &serde_json::json!({"repo": ctx.location.to_string(), "id": cfg.id, "encrypted": encrypt}),
        );
    } else {
        ctx.say(&format!(
            "created {}cbsnap repository {} at {}",
            if encrypt { "encrypted " } else { "" },
            cfg.id.short(),
            ctx.location
        ));
        if encrypt {
            ctx.say(
                "keep the passphrase safe: without it (or another key's) the data cannot be read",
            );
        }
    }
    Ok(0)
}

pub fn recover(ctx: &Ctx) -> anyhow::Result<i32> {
    // Opening recovers when the state file asks for it; then ask Docker anyway, so
    // that helper containers of dead processes are removed too.
    let repo = cbsnap::Repository::open_keyed(
        ctx.storage()?,
        cbsnap::repo::Access::Read,
        &ctx.open_options(),
        &prompt::Prompt::current(),
    )?;
    let rec = cbsnap::volume::recover(&repo.root, true)?;
    if ctx.json {
        print_json(&serde_json::json!({
            "resumed": rec.resumed,
            "left_alone": rec.left_alone,
            "helpers_removed": rec.helpers_removed,
            "held": rec.held,
        }));
        return Ok(held_code(&rec));
    }
    super::render::resumed(&rec);
    let host = cbsnap::host::hostname();
    for r in &rec.left_alone {
        let why = if r.host == host {
            format!("the cbsnap that paused or stopped it (pid {}) still runs here; it resumes it when it ends, or run `cbsnap recover` after that", r.pid)
        } else {
            format!("it was recorded by cbsnap on {}, and this host's Docker engine has no such container; run `cbsnap recover` there", r.host)
        };
        super::render::note(&format!("left container {} as it is: {why}", r.name));
    }
    let n = rec.resumed.len();
    ctx.say(&format!(
        "{n} container(s) resumed{}{}",
        match rec.left_alone.len() {
            0 => String::new(),
            k => format!(", {k} left as they are (above)"),
        },
        match rec.held.len() {
            0 => String::new(),
            k => format!(", {k} kept stopped until their restore finishes (above)"),
        }
    ));
    Ok(held_code(&rec))
}

/// 1 while a restore that did not finish keeps containers stopped (named above):
/// the stack is down until the operator acts, which a cron job must not hide.
fn held_code(rec: &cbsnap::docker::Recovery) -> i32 {
    if rec.held.is_empty() {
        0
    } else {
        1
    }
}

pub fn index_rebuild(ctx: &Ctx) -> anyhow::Result<()> {
    let r = cbsnap::Repository::rebuild_index_in(
        ctx.storage()?,
        &ctx.open_options(),
        &prompt::Prompt::current(),
    )?;
    if ctx.json {
        print_json(&serde_json::json!({"packs": r.added_packs, "unreadable": r.unreadable.len()}));
    } else {
        ctx.say(&format!(
            "index rebuilt from {} packs ({} unreadable)",
            r.added_packs,
            r.unreadable.len()
        ));
    }
    if !r.unreadable.is_empty() {
        anyhow::bail!(
            "{} packs could not be read: {}; run `cbsnap check`",
            r.unreadable.len(),
            r.unreadable
                .iter()
                .map(|(p, e)| format!("{} ({e})", p.display()))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Encryption is on by default for someone else's storage, off for a path.
    #[test]
    fn encryption_defaults_by_location() {
        let on = |l: &str| default_encryption(&Location::parse(l).unwrap());
        assert!(on("s3://bucket/prefix"));
        assert!(on("sftp://backup@host/srv/repo"));
        assert!(!on("/srv/repo"));
        assert!(!on("./s3-like-dir"));
    }
}
