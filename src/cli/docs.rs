//! `rotor completions SHELL` and `rotor man`: shell completions (clap_complete) and the
//! manual pages (clap_mangen), generated from the same definitions as the parser, so they
//! cannot drift from what rotor accepts.

use std::path::PathBuf;

use clap::{Args, CommandFactory};

use super::{Cli, CliResult};

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell: bash, zsh, fish, elvish or powershell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write `rotor.1` and a page per subcommand (`rotor-rotate.1`, ...) into this
    /// directory (e.g. /usr/local/share/man/man1) instead of printing `rotor.1`.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
}

/// The completion script for `shell`.
pub fn completions_text(shell: clap_complete::Shell) -> Vec<u8> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "rotor", &mut script);
    script
}

/// `rotor.1`, the page of the whole command (its subcommands listed).
pub fn man_text() -> std::io::Result<Vec<u8>> {
    let mut page = Vec::new();
    clap_mangen::Man::new(Cli::command()).render(&mut page)?;
    Ok(page)
}

pub fn completions(a: CompletionsArgs) -> CliResult {
    out!("{}", String::from_utf8_lossy(&completions_text(a.shell)));
    Ok(0)
}

pub fn man(a: ManArgs) -> CliResult {
    match a.out_dir {
        None => {
            out!("{}", String::from_utf8_lossy(&man_text()?));
        }
        Some(dir) => {
            clap_mangen::generate_to(Cli::command(), &dir).map_err(|e| {
                anyhow::anyhow!(
                    "cannot write the manual pages into {}: {e}; name a directory you can write",
                    crate::text::escape(&dir.display().to_string())
                )
            })?;
            eprintln!(
                "wrote rotor.1 and a page per subcommand into {}; `man -l {}/rotor.1` shows it",
                dir.display(),
                dir.display()
            );
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::super::Cli;

    /// Every command's `--help`, as a reader sees it at 100 columns: one snapshot each, so a
    /// change of any option or text shows in review.
    #[test]
    fn help_of_every_command() {
        fn walk(cmd: &mut clap::Command, path: &str, seen: &mut Vec<String>) {
            let name = if path.is_empty() {
                "rotor".to_owned()
            } else {
                format!("rotor {path}")
            };
            let help = cmd.render_long_help().to_string();
            insta::assert_snapshot!(format!("help-{}", name.replace(' ', "-")), help);
            seen.push(name);
            let subs: Vec<String> = cmd
                .get_subcommands()
                .map(|s| s.get_name().to_owned())
                .filter(|s| s != "help")
                .collect();
            for sub in subs {
                let child = cmd.find_subcommand_mut(&sub).expect("listed above");
                let path = if path.is_empty() {
                    sub.clone()
                } else {
                    format!("{path} {sub}")
                };
                walk(child, &path, seen);
            }
        }
        let mut cmd = Cli::command().term_width(100);
        cmd.build();
        let mut seen = Vec::new();
        walk(&mut cmd, "", &mut seen);
        assert!(seen.len() > 30, "{seen:?}");
    }

    #[test]
    fn completions_for_each_shell() {
        for shell in [
            clap_complete::Shell::Bash,
            clap_complete::Shell::Zsh,
            clap_complete::Shell::Fish,
        ] {
            let script = String::from_utf8(super::completions_text(shell)).unwrap();
            insta::assert_snapshot!(format!("completions-{shell}"), script);
        }
    }

    #[test]
    fn man_page() {
        let page = String::from_utf8(super::man_text().unwrap()).unwrap();
        assert!(page.contains(".TH rotor 1"), "{page}");
        insta::assert_snapshot!("man-rotor.1", page);
    }
}
