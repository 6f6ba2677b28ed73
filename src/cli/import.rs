//! `crmctl import` (issue 14 item 1): bring an existing tenant under management.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::cli::common;
use crate::cli::local::{render_desired, TenantFormat};
use crate::ops::import::{self, ImportOptions, Part, Selection};

/// Arguments of `import`.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// Backend to read (`local:PATH`, `microsoft[:TENANT]`).
    #[arg(long, env = "CRMCTL_BACKEND", default_value = common::DEFAULT_BACKEND)]
    pub backend: String,
    /// State file to write. Default: `.crmctl/state.json`.
    #[arg(long, env = "CRMCTL_STATE")]
    pub state: Option<PathBuf>,
    /// Import only these kinds: licenses, storage, users, groups, instances
    /// (comma-separated or repeated). Groups bound to an imported instance come along.
    #[arg(long, value_delimiter = ',', value_name = "KINDS")]
    pub only: Vec<String>,
    /// Import only this instance (its URL name; repeatable).
    #[arg(long = "instance", value_name = "KEY")]
    pub instances: Vec<String>,
    /// The desired file to write (`.json`: JSON, otherwise YAML); stdout when absent.
    #[arg(short = 'o', long = "out", value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Replace a state that already manages objects, and an existing output file.
    #[arg(long)]
    pub force: bool,
}

/// `crmctl import`.
pub fn run_import(args: &ImportArgs) -> anyhow::Result<ExitCode> {
    let spec = common::backend_spec(Some(&args.backend))?;
    let state_path = common::state_path(args.state.as_deref());
    let mut only = std::collections::BTreeSet::new();
    for k in &args.only {
        only.insert(Part::parse(k).map_err(|e| anyhow::anyhow!("--only: {e}"))?);
    }
    let format = match &args.out {
        Some(p)
            if p.extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("json")) =>
        {
            TenantFormat::Json
        }
        _ => TenantFormat::Yaml,
    };
    let opts = ImportOptions {
        selection: Selection {
            only,
            instances: args.instances.clone(),
        },
        force: args.force,
        output: args.out.clone(),
    };
    let report = import::run(
        &spec,
        &state_path,
        &opts,
        &|i| render_desired(i, format),
        &mut common::warn,
    )?;
    match &args.out {
        None => std::io::stdout()
            .lock()
            .write_all(report.text.as_bytes())?,
        Some(p) => eprintln!(
            "Imported {} object(s) into {}; the state {} manages them (serial {}). Next: crmctl plan -f {}",
            report.imported.resources.len(),
            p.display(),
            state_path.display(),
            report.serial,
            p.display()
        ),
    }
    Ok(ExitCode::SUCCESS)
}
