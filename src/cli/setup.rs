//! `crmctl completions`, `crmctl man` and `crmctl init` (issue 15 item 4): shell completions
//! and the manual page generated from the clap definitions by their maintained crates
//! (clap_complete, clap_mangen), and a starter desired file.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::CommandFactory as _;

use crate::domain::escape::escape;

/// Arguments of `completions`.
#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell: bash, zsh, fish, powershell (or elvish).
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Arguments of `man`.
#[derive(Debug, clap::Args)]
pub struct ManArgs {
    /// Write one page per command (crmctl.1, crmctl-plan.1, ...) into DIR instead of
    /// printing crmctl.1 to standard output.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
}

/// Arguments of `init`.
#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// The desired-state file to create (never replaced when it exists).
    #[arg(short = 'f', long = "file", default_value = "crmctl.yaml")]
    pub file: PathBuf,
    /// The tenant's domain (`NAME.onmicrosoft.com`).
    #[arg(long, default_value = "contoso.onmicrosoft.com")]
    pub tenant: String,
    /// What the schema modeline names: a URL or a path relative to the file. Default:
    /// `crmctl.schema.json`, written beside the file (when no file of that name is there).
    #[arg(long, value_name = "REF")]
    pub schema: Option<String>,
}

/// The command line's definition, as the generators read it.
fn command() -> clap::Command {
    super::Cli::command()
}

/// `crmctl completions SHELL`: the completion script on standard output.
pub fn run_completions(args: &CompletionsArgs) -> anyhow::Result<ExitCode> {
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut command(), "crmctl", &mut out);
    std::io::stdout().lock().write_all(&out)?;
    Ok(ExitCode::SUCCESS)
}

/// `crmctl man`: the manual page (roff) on standard output, or every command's page in a
/// folder.
pub fn run_man(args: &ManArgs) -> anyhow::Result<ExitCode> {
    match &args.out_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
            clap_mangen::generate_to(command(), dir).map_err(|e| {
                anyhow::anyhow!("cannot write the pages into {}: {e}", dir.display())
            })?;
            eprintln!("Wrote the manual pages into {}.", dir.display());
        }
        None => {
            let mut out = Vec::new();
            clap_mangen::Man::new(command()).render(&mut out)?;
            std::io::stdout().lock().write_all(&out)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `crmctl init`.
pub fn run_init(args: &InitArgs) -> anyhow::Result<ExitCode> {
    let done = crate::ops::init::init(&args.file, &args.tenant, args.schema.as_deref())?;
    let file = escape(&done.file.display().to_string()).into_owned();
    match &done.schema_file {
        Some(s) => println!(
            "Wrote {file} and its schema {}. Next: crmctl validate -f {file}; crmctl plan -f {file}",
            escape(&s.display().to_string())
        ),
        None => println!("Wrote {file}. Next: crmctl validate -f {file}; crmctl plan -f {file}"),
    }
    Ok(ExitCode::SUCCESS)
}
