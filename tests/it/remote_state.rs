//! Remote state against Azurite (issue 15 item 1): `--state azblob://ACCOUNT/CONTAINER/KEY`
//! end to end — apply then plan, two concurrent applies, `kill -9` during an apply then
//! recovery, a conditional-write conflict, force-unlock, history and restore.
//!
//! One Azurite (`tests/js/node_modules/.bin/azurite-blob`, installed by
//! `npm ci --prefix tests/js`) serves the whole test binary: started on a free loopback
//! port with in-memory storage, and stopped by a watchdog when the test process ends. Each
//! test uses its own container. Without Azurite the tests are skipped with a message, unless
//! `CI=true`: then they fail.

use crate::support::{self, crmctl};

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crmctl::state::remote;
use crmctl::synth::{generate, SynthParams};

/// The emulator's well-known account and key (public, documented by Microsoft for Azurite).
const ACCOUNT: &str = "devstoreaccount1";
const KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// The port of the shared Azurite, or `None` (skip) when it is not installed outside CI.
fn azurite() -> Option<u16> {
    static PORT: OnceLock<Option<u16>> = OnceLock::new();
    *PORT.get_or_init(start_azurite)
}

fn start_azurite() -> Option<u16> {
    let bin = support::root().join("tests/js/node_modules/.bin/azurite-blob");
    if !bin.exists() {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!(
                "{} is missing: run `npm ci --prefix tests/js` (the remote-state tests need Azurite)",
                bin.display()
            );
        }
        eprintln!(
            "skipping the remote-state tests: Azurite is not installed (npm ci --prefix tests/js)"
        );
        return None;
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // A watchdog shell: runs Azurite and stops it when this test process is gone.
    let script = format!(
        "\"$0\" --blobHost 127.0.0.1 --blobPort {port} --inMemoryPersistence \
         --skipApiVersionCheck --loose --silent --disableTelemetry & a=$!; \
         while kill -0 {parent} 2>/dev/null && kill -0 $a 2>/dev/null; do sleep 1; done; \
         kill $a 2>/dev/null; wait $a",
        parent = std::process::id()
    );
    // The watchdog shell outlives this function on purpose (it stops Azurite when the test
    // process exits); nobody waits for it.
    #[allow(clippy::zombie_processes)]
    Command::new("sh")
        .args(["-c", &script])
        .arg(&bin)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starts azurite-blob");
    let until = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < until,
            "Azurite did not listen on {port} within 60 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The clients of this process and of the crmctl runs it starts find the emulator here.
    std::env::set_var("AZURE_STORAGE_USE_EMULATOR", "true");
    std::env::set_var(
        "AZURITE_BLOB_STORAGE_URL",
        format!("http://127.0.0.1:{port}"),
    );
    Some(port)
}

/// Create the container `name` (Shared Key signed `PUT ?restype=container`).
fn create_container(port: u16, name: &str) {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let date = httpdate::fmt_http_date(std::time::SystemTime::now());
    let version = "2021-08-06";
    let to_sign = format!(
        "PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{version}\n/{ACCOUNT}/{ACCOUNT}/{name}\nrestype:container"
    );
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &b64.decode(KEY).unwrap());
    let sig = b64.encode(ring::hmac::sign(&key, to_sign.as_bytes()).as_ref());
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "PUT /{ACCOUNT}/{name}?restype=container HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nx-ms-date: {date}\r\nx-ms-version: {version}\r\nAuthorization: SharedKey {ACCOUNT}:{sig}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 201"),
        "create container: {answer}"
    );
}

/// A test's container and state URL; `None`: skipped.
fn setup(container: &str) -> Option<String> {
    let port = azurite()?;
    create_container(port, container);
    Some(format!("azblob://{ACCOUNT}/{container}/env/state.json"))
}

fn write_file(dir: &Path, users: usize) -> (PathBuf, crmctl::desired::model::Desired) {
    let desired = generate(&SynthParams {
        users,
        memberships: users * 2,
        ..SynthParams::small()
    });
    let file = dir.join("tenant.yaml");
    std::fs::write(&file, crmctl::desired::load::to_yaml(&desired).unwrap()).unwrap();
    (file, desired)
}

fn apply(dir: &Path, file: &Path, url: &str) -> std::process::Output {
    crmctl(dir)
        .args(["apply", "--auto-approve", "--state", url, "-f"])
        .arg(file)
        .output()
        .unwrap()
}

fn assert_no_changes(dir: &Path, file: &Path, url: &str) {
    let out = crmctl(dir)
        .args(["plan", "--detailed-exitcode", "--state", url, "-f"])
        .arg(file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", support::all_output(&out));
}

fn remote_state(url: &str) -> crmctl::state::State {
    serde_json::from_slice(&remote::get(url).unwrap().expect("state object").bytes).unwrap()
}

/// `crmctl` in `dir` as a child process (for a run the test pauses or kills).
fn spawn_crmctl(dir: &Path) -> Command {
    let mut c = Command::new(assert_cmd::cargo::cargo_bin("crmctl"));
    c.current_dir(dir)
        .env_remove("CRMCTL_BACKEND")
        .env_remove("CRMCTL_STATE")
        .env("NO_COLOR", "1");
    c
}

fn wait_for(file: &Path, what: &str) {
    let until = Instant::now() + Duration::from_secs(60);
    while !file.exists() {
        assert!(Instant::now() < until, "{what} did not happen within 60 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn apply_to_azblob_then_plan_has_no_changes() {
    let Some(url) = setup("apply-then-plan") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (file, desired) = write_file(dir.path(), 5);
    let out = apply(dir.path(), &file, &url);
    assert!(out.status.success(), "{}", support::all_output(&out));
    assert_no_changes(dir.path(), &file, &url);
    let state = remote_state(&url);
    let users = state
        .resources
        .keys()
        .filter(|a| a.starts_with("users."))
        .count();
    assert_eq!(users, desired.users.as_ref().map_or(0, |u| u.len()));
    // Nothing local was written in place of the remote state, and the lock is released.
    assert!(!dir.path().join("azblob:").exists());
    assert!(!dir.path().join(".crmctl/state.json").exists());
    assert!(crmctl::state::lock::read_lock(Path::new(&url))
        .unwrap()
        .is_none());
    // `state list` reads it too.
    let out = crmctl(dir.path())
        .args(["state", "list", "--state", &url])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", support::all_output(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().count(),
        state.resources.len()
    );
}

#[test]
fn a_second_apply_is_refused_by_the_lock_and_names_the_holder() {
    let Some(url) = setup("concurrent") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (file, _) = write_file(dir.path(), 6);
    let pause = dir.path().join("paused");
    let first = spawn_crmctl(dir.path())
        .args(["apply", "--auto-approve", "--state", &url, "-f"])
        .arg(&file)
        .env("CRMCTL_LOCAL_PAUSE_AFTER", "2")
        .env("CRMCTL_LOCAL_PAUSE_FILE", &pause)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(&pause, "the first apply's pause");
    let holder = crmctl::state::lock::read_lock(Path::new(&url))
        .unwrap()
        .expect("the first apply holds the lock");
    assert_eq!(holder.operation, "apply");
    assert_eq!(holder.pid, first.id());
    let second = apply(dir.path(), &file, &url);
    assert!(!second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(
        err.contains(&format!("the state {url} is locked by {}", holder.owner)),
        "{err}"
    );
    assert!(
        err.contains(&format!("crmctl force-unlock {}", holder.id)),
        "{err}"
    );
    std::fs::remove_file(&pause).unwrap();
    let out = first.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_no_changes(dir.path(), &file, &url);
}

#[test]
fn kill_9_during_an_apply_then_the_next_run_replays_the_journal_and_converges() {
    let Some(url) = setup("crash") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (file, desired) = write_file(dir.path(), 40);
    let pause = dir.path().join("paused");
    let mut child = spawn_crmctl(dir.path())
        .args([
            "apply",
            "--auto-approve",
            "--parallelism",
            "1",
            "--state",
            &url,
            "-f",
        ])
        .arg(&file)
        .env("CRMCTL_LOCAL_PAUSE_AFTER", "30")
        .env("CRMCTL_LOCAL_PAUSE_FILE", &pause)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(&pause, "the apply's pause after 30 writes");
    child.kill().unwrap(); // SIGKILL
    assert!(!child.wait().unwrap().success());
    // What the killed run recorded: the state written at its first batch, the batches
    // after it as journal objects, and its lock.
    // Where the kill lands depends on how the engine batched the writes: when batches
    // after the first were journaled, the journal replays above the state object's serial.
    let journal = remote::list(&remote::journal_dir(&url)).unwrap();
    let mut replayed_serial = 0;
    if !journal.is_empty() {
        let (replayed, warnings) = crmctl::state::store::load_reporting(Path::new(&url)).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        let replayed = replayed.unwrap();
        assert!(
            replayed.serial > remote_state(&url).serial,
            "the journal carries batches newer than the state object"
        );
        replayed_serial = replayed.serial;
    }
    let lock = crmctl::state::lock::read_lock(Path::new(&url))
        .unwrap()
        .expect("the killed run's lock stays");
    let refused = apply(dir.path(), &file, &url);
    assert!(!refused.status.success());
    crmctl(dir.path())
        .args(["force-unlock", &lock.id, "--state", &url])
        .assert()
        .success();
    let out = apply(dir.path(), &file, &url);
    assert!(out.status.success(), "{}", support::all_output(&out));
    assert_no_changes(dir.path(), &file, &url);
    // Folded: the journal is gone, the state object alone is the whole state.
    assert!(remote::list(&remote::journal_dir(&url)).unwrap().is_empty());
    let t = support::observe(dir.path());
    let upns: BTreeSet<&str> = t.users.values().map(|u| u.upn.as_str()).collect();
    assert_eq!(upns.len(), t.users.len(), "duplicate users");
    assert_eq!(t.users.len(), desired.users.as_ref().map_or(0, |u| u.len()));
    let state = remote_state(&url);
    let ids: BTreeSet<&str> = state.resources.values().map(|r| r.id.as_str()).collect();
    assert_eq!(ids.len(), state.resources.len(), "an object recorded twice");
    assert!(state.serial >= replayed_serial);
}

#[test]
fn a_state_changed_by_another_writer_is_never_overwritten() {
    let Some(url) = setup("conflict") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (file, _) = write_file(dir.path(), 3);
    assert!(apply(dir.path(), &file, &url).status.success());
    let path = Path::new(&url);
    // This process reads the state (its ETag is remembered) ...
    let mut mine = crmctl::state::store::load(path).unwrap().unwrap();
    // ... another writer replaces it ...
    let mut theirs = mine.clone();
    theirs.serial += 7;
    theirs.tenant = "other-writer.onmicrosoft.com".to_string();
    let their_bytes = serde_json::to_vec_pretty(&theirs).unwrap();
    remote::put(&url, their_bytes.clone(), remote::Expect::Any).unwrap();
    // ... so this write is refused, naming the state and what to do, and loses nothing.
    mine.serial += 1;
    let err = crmctl::state::store::save(path, &mine).unwrap_err();
    assert!(
        matches!(err, crmctl::state::store::StateError::Conflict { .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains(&url) && msg.contains("another writer"),
        "{msg}"
    );
    assert!(msg.contains("crmctl plan"), "{msg}");
    assert_eq!(remote::get(&url).unwrap().unwrap().bytes, their_bytes);
    // A state that appeared since this process found none is not overwritten either.
    let fresh = format!("azblob://{ACCOUNT}/conflict/new/state.json");
    assert!(crmctl::state::store::load(Path::new(&fresh))
        .unwrap()
        .is_none());
    remote::put(&fresh, b"{}".to_vec(), remote::Expect::Absent).unwrap();
    let err = crmctl::state::store::save(Path::new(&fresh), &mine).unwrap_err();
    assert!(matches!(
        err,
        crmctl::state::store::StateError::Conflict { .. }
    ));
    assert_eq!(remote::get(&fresh).unwrap().unwrap().bytes, b"{}");
}

#[test]
fn force_unlock_removes_only_the_named_lock() {
    let Some(url) = setup("force-unlock") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = Path::new(&url);
    // A run that died holding the lock.
    let held = crmctl::state::lock::StateLock::acquire(path, "apply").unwrap();
    let id = held.info().id.clone();
    std::mem::forget(held);
    let again = crmctl::state::lock::StateLock::acquire(path, "plan").unwrap_err();
    assert!(again.to_string().contains(&id), "{again}");
    let wrong = crmctl(dir.path())
        .args(["force-unlock", "0123456789abcdef", "--state", &url])
        .output()
        .unwrap();
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stderr).contains(&format!("has id {id}")));
    assert!(crmctl::state::lock::read_lock(path).unwrap().is_some());
    crmctl(dir.path())
        .args(["force-unlock", &id, "--state", &url])
        .assert()
        .success();
    assert!(crmctl::state::lock::read_lock(path).unwrap().is_none());
    crmctl(dir.path())
        .args(["force-unlock", &id, "--state", &url])
        .assert()
        .failure()
        .stderr(predicates::str::contains("not locked"));
}

#[test]
fn history_lists_past_states_and_restore_puts_one_back_as_a_new_serial() {
    let Some(url) = setup("history") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (file, _) = write_file(dir.path(), 3);
    assert!(apply(dir.path(), &file, &url).status.success());
    let before = remote_state(&url);
    let address = before
        .resources
        .keys()
        .find(|a| a.starts_with("users."))
        .unwrap()
        .clone();
    crmctl(dir.path())
        .args(["state", "rm", &address, "--state", &url])
        .assert()
        .success();
    let after_rm = remote_state(&url);
    assert_eq!(after_rm.serial, before.serial + 1);
    assert!(!after_rm.resources.contains_key(&address));
    let out = crmctl(dir.path())
        .args(["state", "list", "--history", "--state", &url])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", support::all_output(&out));
    let serials: Vec<u64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    assert!(
        serials.contains(&before.serial) && serials.contains(&after_rm.serial),
        "{serials:?}"
    );
    assert!(
        serials.windows(2).all(|w| w[0] < w[1]),
        "oldest first: {serials:?}"
    );
    crmctl(dir.path())
        .args([
            "state",
            "restore",
            &before.serial.to_string(),
            "--state",
            &url,
        ])
        .assert()
        .success()
        .stdout(predicates::str::contains(format!(
            "Restored the state of serial {} as serial {}.",
            before.serial,
            after_rm.serial + 1
        )));
    let restored = remote_state(&url);
    assert_eq!(restored.serial, after_rm.serial + 1);
    assert_eq!(restored.resources, before.resources);
    assert!(crmctl::state::lock::read_lock(Path::new(&url))
        .unwrap()
        .is_none());
    crmctl(dir.path())
        .args(["state", "restore", "999999", "--state", &url])
        .assert()
        .failure()
        .stderr(predicates::str::contains("has no state of serial 999999"));
    // A local state has no history: the error says where its previous version is.
    crmctl(dir.path())
        .args(["state", "list", "--history"])
        .assert()
        .failure()
        .stderr(predicates::str::contains("only a remote state"));
    // Never more than the kept number of past states.
    for _ in 0..remote::HISTORY_KEEP {
        let newest = *remote::history(&url).unwrap().last().unwrap();
        crmctl(dir.path())
            .args(["state", "restore", &newest.to_string(), "--state", &url])
            .assert()
            .success();
    }
    assert_eq!(remote::history(&url).unwrap().len(), remote::HISTORY_KEEP);
}
