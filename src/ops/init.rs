//! `crmctl init`: a starter desired-state file with the schema modeline (issue 15 item 4).
//!
//! The starter text is checked with the same loader and rules as `crmctl validate` before
//! anything is written, so a bad `--tenant` is refused with the file's own diagnostics, and
//! an existing file is never replaced (it is created with `create_new`, so not even a file
//! that appears meanwhile is).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::desired::load;
use crate::diag::Diagnostic;

/// The schema file `init` writes beside the desired file when no `--schema` is given.
pub const SCHEMA_FILE: &str = "crmctl.schema.json";

/// Why `init` wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// The desired file exists already.
    #[error("{0} exists already: init never replaces a file; choose another name with -f FILE, or remove it first")]
    Exists(PathBuf),
    /// The starter file would not validate (a bad `--tenant`).
    #[error("the starter file for tenant `{tenant}` is not valid: {}", first_message(.diagnostics))]
    Invalid {
        /// The tenant given.
        tenant: String,
        /// What validation said.
        diagnostics: Vec<Diagnostic>,
    },
    /// Writing failed.
    #[error("cannot write {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

fn first_message(d: &[Diagnostic]) -> String {
    d.iter()
        .map(|d| match &d.hint {
            Some(h) => format!("{} ({h})", d.message),
            None => d.message.clone(),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// What `init` wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Initialized {
    /// The desired file.
    pub file: PathBuf,
    /// The schema file written beside it (`None`: `--schema` named one, or one was there).
    pub schema_file: Option<PathBuf>,
}

/// The starter text for `tenant` (a `NAME.onmicrosoft.com` domain), whose modeline names
/// `schema` (a path relative to the file, or a URL). Validated like `crmctl validate`.
pub fn starter(tenant: &str, schema: &str) -> Result<String, InitError> {
    let org = tenant.split('.').next().unwrap_or(tenant);
    let text = format!(
        "\
# yaml-language-server: $schema={schema}
#
# A starter desired-state file written by `crmctl init`: the one production instance every
# subscription includes (T6) and one licensed administrator. Edit it, then
#   crmctl validate -f FILE    check it (no tenant needed)
#   crmctl plan -f FILE        see what apply would change
# Every field is described in the JSON Schema (`crmctl schema`, $id {id}).
tenant: {tenant}

licenses:                  # purchased user licenses per plan (T2); address licenses.<plan>
  professional: 5

users:                     # address users.<upn>
  admin@{tenant}:
    name: Administrator
    license: professional  # essential | basic | professional | enterprise; omit for none
    roles:                 # security roles per instance key (P2)
      main: [System Administrator]

instances:                 # address instances.<key>
  main:
    name: {org}
    url: {org}             # https://{org}.crm.dynamics.com
    type: production       # production | sandbox
",
        id = crate::desired::schema::SCHEMA_ID,
    );
    match load::load_str("crmctl.yaml", text.clone()) {
        Ok(_) => Ok(text),
        Err(f) => Err(InitError::Invalid {
            tenant: tenant.to_string(),
            diagnostics: f.diagnostics,
        }),
    }
}

/// Write the starter file `file` for `tenant`. Without `schema`, the modeline names
/// [`SCHEMA_FILE`] beside the file, written there unless a file of that name exists.
pub fn init(file: &Path, tenant: &str, schema: Option<&str>) -> Result<Initialized, InitError> {
    if file.exists() {
        return Err(InitError::Exists(file.to_path_buf()));
    }
    let text = starter(tenant, schema.unwrap_or(SCHEMA_FILE))?;
    let write_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| InitError::Write { path, source }
    };
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(file)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => InitError::Exists(file.to_path_buf()),
            _ => InitError::Write {
                path: file.to_path_buf(),
                source: e,
            },
        })?;
    out.write_all(text.as_bytes())
        .and_then(|()| out.sync_all())
        .map_err(write_err(file))?;
    let mut schema_file = None;
    if schema.is_none() {
        let dir = file.parent().unwrap_or(Path::new(""));
        let path = dir.join(SCHEMA_FILE);
        let created = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path);
        match created {
            Ok(mut f) => {
                f.write_all(crate::desired::schema::json_schema().as_bytes())
                    .map_err(write_err(&path))?;
                schema_file = Some(path);
            }
            // An existing schema file is the user's (or an earlier init's): kept.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(write_err(&path)(e)),
        }
    }
    Ok(Initialized {
        file: file.to_path_buf(),
        schema_file,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starter_validates_and_bad_tenants_are_refused() {
        let text = starter("fabrikam.onmicrosoft.com", SCHEMA_FILE).unwrap();
        assert!(text.starts_with("# yaml-language-server: $schema=crmctl.schema.json\n"));
        assert!(text.contains("url: fabrikam "));
        // T1: a tenant domain is NAME.onmicrosoft.com.
        let e = starter("fabrikam.com", SCHEMA_FILE).unwrap_err();
        assert!(matches!(e, InitError::Invalid { .. }), "{e}");
        assert!(e.to_string().contains("fabrikam.com"), "{e}");
    }
}
