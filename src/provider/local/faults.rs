//! Fault injection of the local tenant (test-only knobs, read once per process; see the
//! parent module's docs for what each does).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use crate::provider::ProviderError;

pub(super) struct FaultPlan {
    fail_at: Option<u64>,
    exit_at: Option<u64>,
    exit_after: Option<u64>,
    pause_after: Option<u64>,
    pause_file: Option<std::path::PathBuf>,
    /// `CRMCTL_LOCAL_LRO=1`: the long-running mode.
    pub lro: bool,
    /// `CRMCTL_LOCAL_LRO_POLLS=N` (default 2): an operation ends on its Nth poll.
    pub lro_polls: u32,
    /// `CRMCTL_LOCAL_LRO_DELAY_MS=N` (default 10): the `retry_after` of an operation.
    pub lro_delay: Duration,
    /// `CRMCTL_LOCAL_EXIT_AT_POLL=N`: the Nth poll of the process aborts it before reading.
    exit_at_poll: Option<u64>,
}

pub(super) fn plan() -> &'static FaultPlan {
    static FAULTS: OnceLock<FaultPlan> = OnceLock::new();
    FAULTS.get_or_init(|| {
        let get = |k: &str| std::env::var(k).ok().and_then(|v| v.trim().parse().ok());
        FaultPlan {
            fail_at: get("CRMCTL_LOCAL_FAIL_AT"),
            exit_at: get("CRMCTL_LOCAL_EXIT_AT"),
            exit_after: get("CRMCTL_LOCAL_EXIT_AFTER"),
            pause_after: get("CRMCTL_LOCAL_PAUSE_AFTER"),
            pause_file: std::env::var_os("CRMCTL_LOCAL_PAUSE_FILE").map(Into::into),
            lro: get("CRMCTL_LOCAL_LRO") == Some(1u64),
            lro_polls: get("CRMCTL_LOCAL_LRO_POLLS")
                .map(|n: u64| n.clamp(1, 1000) as u32)
                .unwrap_or(2),
            lro_delay: Duration::from_millis(get("CRMCTL_LOCAL_LRO_DELAY_MS").unwrap_or(10)),
            exit_at_poll: get("CRMCTL_LOCAL_EXIT_AT_POLL"),
        }
    })
}

/// `CRMCTL_LOCAL_PAUSE_*`: create `file`, then wait until it is removed (60 s at most).
fn pause(file: &Path) {
    let _ = std::fs::write(file, b"paused\n");
    let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while file.exists() && std::time::Instant::now() < until {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

static EXECUTE_CALLS: AtomicU64 = AtomicU64::new(0);
/// Calls that changed the tenant (numbering for `CRMCTL_LOCAL_EXIT_AT` / `_AFTER`).
static WRITE_CALLS: AtomicU64 = AtomicU64::new(0);
static POLL_CALLS: AtomicU64 = AtomicU64::new(0);

/// Count one `execute` call; `CRMCTL_LOCAL_FAIL_AT`: the error it fails with.
pub(super) fn injected_failure() -> Option<ProviderError> {
    let call = EXECUTE_CALLS.fetch_add(1, Ordering::SeqCst) + 1;
    (plan().fail_at == Some(call))
        .then(|| ProviderError::Backend(format!("injected failure (CRMCTL_LOCAL_FAIL_AT={call})")))
}

/// The number of the next call that changes the tenant.
pub(super) fn next_write_call() -> u64 {
    WRITE_CALLS.fetch_add(1, Ordering::SeqCst) + 1
}

/// `CRMCTL_LOCAL_EXIT_AT`: abort when one of `calls` is the chosen one (rows written, not
/// committed).
pub(super) fn before_commit(calls: &[u64]) {
    if let Some(n) = plan().exit_at.filter(|n| calls.contains(n)) {
        eprintln!("crmctl: CRMCTL_LOCAL_EXIT_AT={n}: aborting before commit");
        std::process::abort();
    }
}

/// `CRMCTL_LOCAL_EXIT_AFTER` (abort) and `CRMCTL_LOCAL_PAUSE_AFTER` (wait) right after the
/// commit of `calls`.
pub(super) fn after_commit(calls: &[u64]) {
    if let Some(n) = plan().exit_after.filter(|n| calls.contains(n)) {
        eprintln!("crmctl: CRMCTL_LOCAL_EXIT_AFTER={n}: aborting after commit");
        std::process::abort();
    }
    if let (Some(_), Some(file)) = (
        plan().pause_after.filter(|n| calls.contains(n)),
        &plan().pause_file,
    ) {
        pause(file);
    }
}

/// Count one poll; `CRMCTL_LOCAL_EXIT_AT_POLL`: abort on the chosen one, before it reads
/// anything (a `kill -9` while apply waits for a long-running operation).
pub(super) fn before_poll() {
    let call = POLL_CALLS.fetch_add(1, Ordering::SeqCst) + 1;
    if plan().exit_at_poll == Some(call) {
        eprintln!("crmctl: CRMCTL_LOCAL_EXIT_AT_POLL={call}: aborting while polling");
        std::process::abort();
    }
}
