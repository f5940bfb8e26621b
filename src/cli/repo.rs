//! `cbsnap init`, `cbsnap recover` and `cbsnap index rebuild`.

use super::render::print_json;
use super::Ctx;

pub fn init(ctx: &Ctx) -> anyhow::Result<i32> {
    let cfg = cbsnap::Repository::init_in(ctx.storage()?)?;
    if ctx.json {
        print_json(&serde_json::json!({"repo": ctx.repo_path, "id": cfg.id}));
    } else {
        ctx.say(&format!(
            "created cbsnap repository {} at {}",
            cfg.id.short(),
            ctx.repo_path.display()
        ));
    }
    Ok(0)
}

pub fn recover(ctx: &Ctx) -> anyhow::Result<i32> {
    // Opening recovers when the state file asks for it; then ask Docker anyway, so
    // that helper containers of dead processes are removed too.
    let repo = cbsnap::Repository::open_in(ctx.storage()?, cbsnap::repo::Access::Read)?;
    let rec = cbsnap::volume::recover(&repo.root, true)?;
    super::render::resumed(&rec);
    let n = rec.resumed.len();
    ctx.say(&format!("{n} container(s) resumed"));
    Ok(0)
}

pub fn index_rebuild(ctx: &Ctx) -> anyhow::Result<()> {
    let r = cbsnap::Repository::rebuild_index_in(ctx.storage()?)?;
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
