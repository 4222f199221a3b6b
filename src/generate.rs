//! Generated documentation: the man pages and shell completions, made from the clap
//! definitions in [`crate::cli`] so they cannot drift from the real command line.
//! `cargo run --example generate -- man|completions DIR` writes them (an example, not
//! a subcommand: clap_complete would offer a hidden subcommand too); the copies
//! committed under `docs/man/` and `docs/completions/` are checked against these by
//! a test in tests/cli.rs.

use std::path::Path;

use anyhow::Context;
use clap::CommandFactory;
use clap_complete::{Generator, Shell};

use crate::cli::Cli;

/// One generated file: its name and contents.
pub type Generated = (String, Vec<u8>);

/// `pigsty.1` and a page per visible subcommand (`pigsty-build-image.1`,
/// `pigsty-lab-up.1`, ...), as `clap_mangen::generate_to` names them.
pub fn man_pages() -> anyhow::Result<Vec<Generated>> {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut pages = Vec::new();
    add_pages(cmd, &mut pages)?;
    pages.sort();
    Ok(pages)
}

fn add_pages(cmd: clap::Command, pages: &mut Vec<Generated>) -> anyhow::Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        add_pages(sub.clone(), pages)?;
    }
    let man = clap_mangen::Man::new(cmd);
    let mut text = Vec::new();
    man.render(&mut text)
        .with_context(|| format!("rendering man page {}", man.get_filename()))?;
    pages.push((man.get_filename(), text));
    Ok(())
}

/// Completion scripts for bash (`pigsty.bash`), zsh (`_pigsty`) and fish
/// (`pigsty.fish`).
pub fn completions() -> Vec<Generated> {
    [Shell::Bash, Shell::Zsh, Shell::Fish]
        .into_iter()
        .map(|shell| {
            let mut cmd = Cli::command();
            let mut text = Vec::new();
            clap_complete::generate(shell, &mut cmd, "pigsty", &mut text);
            (shell.file_name("pigsty"), text)
        })
        .collect()
}

/// Write generated files into `dir` (created if missing); returns their names.
pub fn write_to(dir: &Path, files: &[Generated]) -> anyhow::Result<Vec<String>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(files.iter().map(|(name, _)| name.clone()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_per_subcommand() {
        let pages = man_pages().unwrap();
        let names: Vec<&str> = pages.iter().map(|(n, _)| n.as_str()).collect();
        for want in ["pigsty.1", "pigsty-build-image.1", "pigsty-lab-up.1"] {
            assert!(names.contains(&want), "{want} missing from {names:?}");
        }
        let main = String::from_utf8(
            pages
                .iter()
                .find(|(n, _)| n == "pigsty.1")
                .unwrap()
                .1
                .clone(),
        )
        .unwrap();
        assert!(main.starts_with(".ie"), "{}", &main[..40]);
        assert!(main.contains("build\\-image"), "{main}");
    }

    #[test]
    fn completions_for_three_shells_know_the_subcommands() {
        let files = completions();
        let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["pigsty.bash", "_pigsty", "pigsty.fish"]);
        for (name, text) in &files {
            let text = String::from_utf8_lossy(text);
            assert!(text.contains("build-image"), "{name}");
        }
    }
}
