//! `crmctl emulate`: run the Graph, Dataverse and Power Platform emulator (issues 12 and
//! 13, item 5) on loopback until Ctrl-C,
//! and print what points crmctl at it. The client secret it accepts is read from
//! `AZURE_CLIENT_SECRET` (the variable crmctl itself reads), never printed.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;

use crate::emulator::{Emulator, EmulatorConfig, Faults};
use crate::observed::Tenant;
use crate::ops::backend::{open_local, BackendSpec};
use crate::provider::Provider;

/// Arguments of `crmctl emulate`.
#[derive(Debug, Args)]
pub struct EmulateArgs {
    /// The tenant behind Graph: `local:PATH` (a local tenant file, created on the first
    /// change), or an empty in-memory tenant when not given.
    #[arg(long, value_name = "local:PATH")]
    tenant: Option<String>,
    /// The domain of the in-memory tenant.
    #[arg(long, default_value = "contoso.onmicrosoft.com")]
    domain: String,
    /// The tenant id the token endpoint accepts.
    #[arg(
        long,
        env = "AZURE_TENANT_ID",
        default_value = "00000000-0000-0000-0000-00000000e3a1"
    )]
    tenant_id: String,
    /// The application (client) id that may sign in.
    #[arg(
        long,
        env = "AZURE_CLIENT_ID",
        default_value = "00000000-0000-0000-0000-0000000c11e7"
    )]
    client_id: String,
    /// A PEM file holding the certificate registered for the app: client assertions signed
    /// by its key are accepted (the certificate sign-in, `AZURE_CLIENT_CERTIFICATE_PATH`).
    /// Only its CERTIFICATE sections are read (the first is registered).
    #[arg(long, value_name = "PEM")]
    client_certificate: Option<std::path::PathBuf>,
    /// `countryLetterCode` of the organization (new users' default usage location).
    #[arg(long, default_value = "US")]
    country: String,
    /// Share of requests answered 429 with Retry-After (0.0 to 1.0).
    #[arg(long, env = "CRMCTL_EMULATOR_THROTTLE_RATE", default_value_t = 0.0)]
    throttle_rate: f64,
    /// Retry-After of those answers, in seconds.
    #[arg(long, env = "CRMCTL_EMULATOR_RETRY_AFTER", default_value_t = 1)]
    retry_after: u32,
    /// Share of requests answered 500 or 503 (0.0 to 1.0).
    #[arg(long, env = "CRMCTL_EMULATOR_ERROR_RATE", default_value_t = 0.0)]
    error_rate: f64,
    /// Share of writes whose answer is dropped after the change was made (0.0 to 1.0).
    #[arg(long, env = "CRMCTL_EMULATOR_DROP_RATE", default_value_t = 0.0)]
    drop_rate: f64,
    /// Latency added to every answer, in milliseconds.
    #[arg(long, env = "CRMCTL_EMULATOR_LATENCY_MS", default_value_t = 0)]
    latency_ms: u64,
    /// How long a new object answers 404 by id, in milliseconds.
    #[arg(long, env = "CRMCTL_EMULATOR_REPLICATION_LAG_MS", default_value_t = 0)]
    replication_lag_ms: u64,
    /// Page size of lists without `$top` (1 to 999).
    #[arg(long, env = "CRMCTL_EMULATOR_PAGE_SIZE", default_value_t = 100)]
    page_size: usize,
    /// Seed of the fault draws.
    #[arg(long, env = "CRMCTL_EMULATOR_SEED", default_value_t = 0)]
    seed: u64,
    /// How long an admin API lifecycle operation (create, update, switch, delete, reset)
    /// runs, in milliseconds: its environment is not Ready and other changes to it answer
    /// 409 meanwhile.
    #[arg(long, env = "CRMCTL_EMULATOR_OPERATION_MS", default_value_t = 0)]
    operation_ms: u64,
    /// How long a copy runs, in milliseconds (slow operations); 0: as --operation-ms.
    #[arg(long, env = "CRMCTL_EMULATOR_COPY_MS", default_value_t = 0)]
    copy_ms: u64,
    /// Page size of the admin API's environment list (1 or more).
    #[arg(
        long,
        env = "CRMCTL_EMULATOR_ENVIRONMENT_PAGE_SIZE",
        default_value_t = 100
    )]
    environment_page_size: usize,
    /// Admin API lifecycle operations that fail after their duration and leave the
    /// environment unchanged (comma-separated kinds: copy, reset, create, update, delete,
    /// modifysku).
    #[arg(
        long,
        env = "CRMCTL_EMULATOR_FAIL_OPERATIONS",
        value_delimiter = ',',
        value_parser = ["copy", "reset", "create", "update", "delete", "modifysku"],
        ignore_case = true
    )]
    fail_operations: Vec<String>,
}

fn rate(name: &str, v: f64) -> anyhow::Result<f64> {
    if !(0.0..=1.0).contains(&v) {
        bail!("--{name} {v} is not a share: give a number from 0.0 to 1.0");
    }
    Ok(v)
}

/// Run `crmctl emulate`.
pub fn run_emulate(a: &EmulateArgs) -> anyhow::Result<ExitCode> {
    let secret = match (std::env::var("AZURE_CLIENT_SECRET"), &a.client_certificate) {
        (Ok(secret), _) => secret,
        // Certificate sign-in only: a secret nobody knows.
        (Err(_), Some(_)) => format!("{:032x}", fastrand::u128(..)),
        (Err(_), None) => bail!("AZURE_CLIENT_SECRET is not set: set it to the client secret the emulator should accept (the same value crmctl will send), or give --client-certificate"),
    };
    if !(1..=999).contains(&a.page_size) {
        bail!("--page-size {} is out of range: give 1 to 999", a.page_size);
    }
    if a.environment_page_size == 0 {
        bail!("--environment-page-size 0 is out of range: give 1 or more");
    }
    let mut cfg = match &a.tenant {
        Some(spec) => {
            let spec = BackendSpec::parse(Some(spec))?;
            let provider: Arc<dyn Provider> = Arc::new(open_local(&spec)?);
            EmulatorConfig::with_provider(provider, &a.tenant_id, &a.client_id, secret)
        }
        None => EmulatorConfig::new(Tenant::fresh(&a.domain), &a.tenant_id, &a.client_id, secret),
    };
    cfg.country = a.country.clone();
    if let Some(path) = &a.client_certificate {
        use rustls::pki_types::{pem::PemObject, CertificateDer};
        let cert = CertificateDer::from_pem_file(path).map_err(|e| {
            anyhow::anyhow!(
                "--client-certificate {}: no PEM certificate read ({e}): give the PEM file of the certificate (`-----BEGIN CERTIFICATE-----`)",
                path.display()
            )
        })?;
        cfg.client_certificate = Some(cert.to_vec());
    }
    cfg.faults = Faults {
        seed: a.seed,
        throttle_rate: rate("throttle-rate", a.throttle_rate)?,
        retry_after_secs: a.retry_after,
        server_error_rate: rate("error-rate", a.error_rate)?,
        latency: Duration::from_millis(a.latency_ms),
        drop_rate: rate("drop-rate", a.drop_rate)?,
        replication_lag: Duration::from_millis(a.replication_lag_ms),
        page_size: a.page_size,
        lifecycle_duration: Duration::from_millis(a.operation_ms),
        copy_duration: Duration::from_millis(a.copy_ms),
        environment_page_size: a.environment_page_size,
        failing_operations: a.fail_operations.clone(),
    };
    let emu = Emulator::start(cfg).context("starting the emulator")?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "crmctl emulator listening (Ctrl-C stops it)")?;
    writeln!(out, "  token endpoint: {}", emu.token_url())?;
    writeln!(out, "  Graph:          {}/v1.0", emu.graph_url())?;
    writeln!(out, "  admin API:      {}", emu.bap_url())?;
    writeln!(out, "  Power Platform: {}", emu.powerplatform_url())?;
    writeln!(out, "  root CA:        {}", emu.ca_file().display())?;
    writeln!(out, "Use it with:")?;
    writeln!(out, "AZURE_TENANT_ID={}", a.tenant_id)?;
    writeln!(out, "AZURE_CLIENT_ID={}", a.client_id)?;
    for line in emu.env_lines() {
        writeln!(out, "{line}")?;
    }
    out.flush()?;
    drop(out);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the signal handler")?;
    rt.block_on(tokio::signal::ctrl_c())
        .context("waiting for Ctrl-C")?;
    drop(emu);
    Ok(ExitCode::SUCCESS)
}
