//! `cbsnap completions SHELL` and `cbsnap man [DIR]`: shell completions
//! (clap_complete) and man pages (clap_mangen) generated from the same clap
//! definition the parser uses, so they never drift from the real flags.
//! `scripts/install.sh` installs both.

use std::path::PathBuf;

use anyhow::Context;

#[derive(clap::Args, Debug)]
pub struct CompletionsArgs {
    /// The shell: bash, zsh, fish, elvish or powershell
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(clap::Args, Debug)]
pub struct ManArgs {
    /// Write cbsnap.1 and one cbsnap-COMMAND.1 per command into this directory
    /// [default: print cbsnap.1 to stdout]
    pub dir: Option<PathBuf>,
}

/// Print the completion script for `a.shell` to stdout.
pub fn completions(a: CompletionsArgs, mut cmd: clap::Command) -> anyhow::Result<()> {
    clap_complete::generate(a.shell, &mut cmd, "cbsnap", &mut std::io::stdout().lock());
    Ok(())
}

/// Print `cbsnap.1`, or write every page into `a.dir`.
pub fn man(a: ManArgs, cmd: clap::Command) -> anyhow::Result<()> {
    match a.dir {
        None => clap_mangen::Man::new(cmd)
            .render(&mut std::io::stdout().lock())
            .context("write the man page to stdout"),
        Some(dir) => {
            std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
            clap_mangen::generate_to(cmd, &dir)
                .with_context(|| format!("write the man pages into {}", dir.display()))
        }
    }
}

/// The subcommand a mistyped one most likely meant, or `None` when nothing is close:
/// an edit distance of at most 30% of the longer word (`snapshto` → `snapshot`), never
/// a merely similar-sounding command (`find` is not `index`).
pub fn suggest<'a>(typed: &str, names: &[&'a str]) -> Option<&'a str> {
    names
        .iter()
        .map(|n| (strsim::normalized_damerau_levenshtein(typed, n), *n))
        .filter(|(score, _)| *score >= 0.7)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, n)| n)
}

/// A hint for words people type for an existing command under another name.
pub fn synonym(typed: &str) -> Option<&'static str> {
    Some(match typed {
        "find" | "search" | "browse" | "list" | "cat" => {
            "to see what a snapshot holds: `cbsnap ls NAME@latest [PATH]`, or browse them all with `cbsnap mount DIR`; `cbsnap snapshots` lists the snapshots"
        }
        "backup" | "save" | "take" => "to take snapshots: `cbsnap snapshot --all`",
        "rm" | "remove" | "delete" => "to remove snapshots: `cbsnap forget`",
        "verify" => "to verify the repository: `cbsnap check`",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_are_close_or_none() {
        let names = [
            "init",
            "snapshot",
            "snapshots",
            "restore",
            "ls",
            "dump",
            "index",
            "check",
        ];
        assert_eq!(suggest("find", &names), None);
        assert_eq!(suggest("snapshto", &names), Some("snapshot"));
        assert_eq!(suggest("restor", &names), Some("restore"));
        assert_eq!(suggest("chekc", &names), Some("check"));
        assert_eq!(suggest("xyz", &names), None);
        assert!(synonym("find").is_some_and(|s| s.contains("cbsnap ls")));
    }
}
