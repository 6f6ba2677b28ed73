//! `crmctl validate` and `crmctl schema`.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::desired::load::{load_file, render_diagnostics};
use crate::diag::Diagnostic;

/// Arguments of `validate`.
#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// Desired-state file (YAML, or JSON by its `.json` extension).
    #[arg(short = 'f', long = "file")]
    pub file: PathBuf,
    /// Output format: `human` (diagnostics on stderr) or `json` (one document on stdout,
    /// format_version 1, schemas/validate.schema.json).
    #[arg(long, value_enum, default_value = "human")]
    pub format: ValidateFormat,
}

/// Output format of `validate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ValidateFormat {
    /// Diagnostics like rustc's, on stderr.
    Human,
    /// One JSON document on stdout (issue 15 item 2).
    Json,
}

/// Arguments of `schema`.
#[derive(Debug, clap::Args)]
pub struct SchemaArgs {}

fn summary(path: &str, diagnostics: &[Diagnostic]) -> String {
    let errors = diagnostics.iter().filter(|d| d.is_error()).count();
    let warnings = diagnostics.len() - errors;
    let plural = |n: usize, w: &str| format!("{n} {w}{}", if n == 1 { "" } else { "s" });
    if errors == 0 && warnings == 0 {
        format!("{path}: valid")
    } else if errors == 0 {
        format!("{path}: valid, with {}", plural(warnings, "warning"))
    } else {
        format!(
            "{path}: {} and {}",
            plural(errors, "error"),
            plural(warnings, "warning")
        )
    }
}

/// `... and N more problems`, after the first ones (issue 9 item 7).
pub(crate) fn omitted_line(f: &crate::desired::load::LoadFailure) -> String {
    format!(
        "{}: ... and {} more problem(s) not shown; fix these first",
        crate::domain::escape::escape(&f.src.path),
        f.omitted
    )
}

/// Check a file: exit 0 when valid (warnings go to stderr), 1 with every problem otherwise.
pub fn run_validate(args: &ValidateArgs, color: bool) -> anyhow::Result<ExitCode> {
    if args.format == ValidateFormat::Json {
        return validate_json(args);
    }
    let mut stderr = std::io::stderr().lock();
    match load_file(&args.file) {
        Ok(loaded) => {
            if !loaded.diagnostics.is_empty() {
                write!(
                    stderr,
                    "{}",
                    render_diagnostics(&loaded.diagnostics, &loaded.src, color)
                )?;
            }
            writeln!(stderr, "{}", summary(&loaded.src.path, &loaded.diagnostics))?;
            Ok(ExitCode::SUCCESS)
        }
        Err(failure) => {
            write!(
                stderr,
                "{}",
                render_diagnostics(&failure.diagnostics, &failure.src, color)
            )?;
            if failure.omitted > 0 {
                writeln!(stderr, "{}", omitted_line(&failure))?;
            }
            writeln!(
                stderr,
                "{}",
                summary(&failure.src.path, &failure.diagnostics)
            )?;
            Ok(ExitCode::from(1))
        }
    }
}

/// Print the JSON Schema of the desired-state file.
pub fn run_schema(_args: &SchemaArgs) -> anyhow::Result<ExitCode> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(crate::desired::schema::json_schema().as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

/// `validate --format json`: the document on stdout (also for a file with errors, exit 1).
fn validate_json(args: &ValidateArgs) -> anyhow::Result<ExitCode> {
    use crate::ops::json::{to_pretty, validate_doc};
    let (text, ok) = match load_file(&args.file) {
        Ok(l) => (
            to_pretty(&validate_doc(&l.src.path, &l.diagnostics, 0)),
            true,
        ),
        Err(f) => (
            to_pretty(&validate_doc(&f.src.path, &f.diagnostics, f.omitted)),
            false,
        ),
    };
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
