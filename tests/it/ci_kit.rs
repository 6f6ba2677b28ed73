//! Issue 15 item 3: the CI/CD kit of `examples/ci/`. Its one script (`crmctl-ci.sh pr |
//! apply | drift`) runs here against the local tenant, exactly as the two pipelines run it,
//! so the kit cannot rot; the pipelines are checked to run that script, sign in with
//! workload identity federation (no stored secret) and use a remote state.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::support::{all_output, crmctl, root};

fn script() -> PathBuf {
    root().join("examples/ci/crmctl-ci.sh")
}

/// `crmctl-ci.sh STEP` in `dir`, with the built crmctl, the state at a path of its own
/// (as CRMCTL_STATE names the remote one in the pipelines), and no pipeline variables
/// inherited from the environment running the tests.
fn ci(dir: &Path, step: &str) -> Command {
    let mut c = Command::new("bash");
    c.arg(script())
        .arg(step)
        .current_dir(dir)
        .env("CRMCTL", env!("CARGO_BIN_EXE_crmctl"))
        .env("CRMCTL_FILE", "crmctl.yaml")
        .env("CRMCTL_OUT", "out")
        .env("CRMCTL_STATE", "shared/crmctl-state.json")
        .env("NO_COLOR", "1");
    for v in [
        "CRMCTL_BACKEND",
        "CRMCTL_ALLOW_DESTROY",
        "CRMCTL_FORCE",
        "GITHUB_OUTPUT",
        "GITHUB_STEP_SUMMARY",
        "TF_BUILD",
        "ACTIONS_ID_TOKEN_REQUEST_URL",
        "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
        "AZURE_FEDERATED_TOKEN_FILE",
        "AZURE_CLIENT_ID",
        "AZURE_TENANT_ID",
        "idToken",
        "CRMCTL_LOCAL_FAIL_AT",
    ] {
        c.env_remove(v);
    }
    c
}

fn run(c: &mut Command) -> Output {
    c.output().expect("bash runs")
}

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
}

fn json(dir: &Path, file: &str) -> Value {
    serde_json::from_str(&read(dir, file)).unwrap()
}

#[test]
fn pr_apply_drift_against_the_local_tenant() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    crmctl(dir)
        .args(["init", "--tenant", "fabrikam.onmicrosoft.com"])
        .assert()
        .success();
    std::fs::create_dir(dir.join("shared")).unwrap();

    // Pull request: validate + plan, the comment in Markdown, the saved plan, the output.
    let outputs = dir.join("github-output");
    let out = run(ci(dir, "pr").env("GITHUB_OUTPUT", &outputs));
    assert!(out.status.success(), "{}", all_output(&out));
    assert_eq!(json(dir, "out/validate.json")["valid"], true);
    let md = read(dir, "out/plan.md");
    assert!(
        md.starts_with("### crmctl plan for `fabrikam.onmicrosoft.com`"),
        "{md}"
    );
    assert!(md.contains("create_user"), "{md}");
    assert_eq!(read(dir, "out/changes"), "true\n");
    assert_eq!(read(dir, "github-output"), "changes=true\n");
    assert!(dir.join("out/plan.saved").exists());

    // Merge: the saved plan is applied; the summary is JSON; the state is where CRMCTL_STATE
    // says.
    let out = run(&mut ci(dir, "apply"));
    assert!(out.status.success(), "{}", all_output(&out));
    let summary = json(dir, "out/apply.json");
    assert_eq!(summary["result"], "complete", "{summary:#}");
    assert!(!summary["done"].as_array().unwrap().is_empty());
    assert!(dir.join("shared/crmctl-state.json").exists());
    assert!(!dir.join(".crmctl/state.json").exists());

    // Nightly: no drift.
    let out = run(&mut ci(dir, "drift"));
    assert_eq!(out.status.code(), Some(0), "{}", all_output(&out));
    assert!(read(dir, "out/drift.md").contains("No changes."));

    // An admin renames the user in the admin center: drift, exit 4 (changed outside crmctl,
    // issue 14 item 2), the change in the report.
    crmctl(dir)
        .args([
            "local",
            "set",
            "user",
            "admin@fabrikam.onmicrosoft.com",
            "name",
            "Renamed",
        ])
        .assert()
        .success();
    let out = run(&mut ci(dir, "drift"));
    assert_eq!(out.status.code(), Some(4), "{}", all_output(&out));
    let drift = read(dir, "out/drift.md");
    assert!(drift.contains("update_user"), "{drift}");
    assert!(
        drift.contains("Changed outside crmctl since the last apply"),
        "{drift}"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("drift: the tenant changed outside crmctl")
    );

    // A plan reviewed, then the tenant changed before the merge: apply refuses the stale plan.
    let out = run(&mut ci(dir, "pr"));
    assert!(out.status.success(), "{}", all_output(&out));
    crmctl(dir)
        .args([
            "local",
            "set",
            "user",
            "admin@fabrikam.onmicrosoft.com",
            "name",
            "Again",
        ])
        .assert()
        .success();
    let out = run(&mut ci(dir, "apply"));
    assert_eq!(out.status.code(), Some(1), "{}", all_output(&out));
    let summary = json(dir, "out/apply.json");
    assert_eq!(summary["result"], "error", "{summary:#}");
    assert!(summary["done"].as_array().unwrap().is_empty());

    // A broken file: the pull request gets the errors as its comment, and the job fails.
    std::fs::write(
        dir.join("crmctl.yaml"),
        "tenant: fabrikam.onmicrosoft.com\nlicenses: 5\n",
    )
    .unwrap();
    let out = run(&mut ci(dir, "pr"));
    assert_eq!(out.status.code(), Some(1), "{}", all_output(&out));
    assert_eq!(json(dir, "out/validate.json")["valid"], false);
    let md = read(dir, "out/plan.md");
    assert!(md.starts_with("### crmctl plan failed"), "{md}");
    assert!(md.contains("> **Error**"), "{md}");
    assert!(!dir.join("out/plan.saved").exists());
}

#[test]
fn federated_token_of_azure_devops_reaches_crmctl_in_a_file_never_echoed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // A stand-in for crmctl that records what it was given.
    let fake = dir.join("fake-crmctl");
    std::fs::write(
        &fake,
        "#!/usr/bin/env bash\n{ echo \"ARGS=$*\"; echo \"FILE=$AZURE_FEDERATED_TOKEN_FILE\"; echo \"CLIENT=$AZURE_CLIENT_ID\"; echo \"TENANT=$AZURE_TENANT_ID\"; } > \"$(dirname \"$0\")/seen\"\n",
    )
    .unwrap();
    Command::new("chmod").arg("+x").arg(&fake).status().unwrap();
    std::fs::create_dir(dir.join("agent-tmp")).unwrap();
    let out = run(ci(dir, "drift")
        .env("CRMCTL", &fake)
        .env("TF_BUILD", "True")
        .env("AGENT_TEMPDIRECTORY", dir.join("agent-tmp"))
        .env("idToken", "eyJ.federated.token")
        .env("servicePrincipalId", "11111111-2222-3333-4444-555555555555")
        .env("tenantId", "contoso.onmicrosoft.com"));
    assert!(out.status.success(), "{}", all_output(&out));
    let seen = read(dir, "seen");
    let token_file = dir.join("agent-tmp/crmctl-federated-token");
    assert!(
        seen.contains(&format!("FILE={}", token_file.display())),
        "{seen}"
    );
    assert!(
        seen.contains("CLIENT=11111111-2222-3333-4444-555555555555"),
        "{seen}"
    );
    assert!(seen.contains("TENANT=contoso.onmicrosoft.com"), "{seen}");
    assert!(seen.contains("ARGS=plan --format markdown --detailed-exitcode -f crmctl.yaml"));
    assert_eq!(
        std::fs::read_to_string(&token_file).unwrap(),
        "eyJ.federated.token"
    );
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&token_file).unwrap().permissions().mode();
    assert_eq!(
        mode & 0o077,
        0,
        "the token file is readable by others: {mode:o}"
    );
    // The output variable for the next stage, and never the token.
    let text = all_output(&out);
    assert!(
        text.contains("##vso[task.setvariable variable=drift;isOutput=true]0"),
        "{text}"
    );
    assert!(!text.contains("eyJ.federated.token"), "{text}");
}

// GitHub Actions' OIDC (issue 15 item 3, workload identity federation without a stored
// secret): the script asks the runner's token service (ACTIONS_ID_TOKEN_REQUEST_URL, bearer
// ACTIONS_ID_TOKEN_REQUEST_TOKEN, audience api://AzureADTokenExchange), writes the answer's
// `value` to a mode-600 file under RUNNER_TEMP for AZURE_FEDERATED_TOKEN_FILE, and never echoes
// either token. The token service is a one-request HTTP server on loopback.
#[test]
fn federated_token_of_github_actions_is_fetched_into_a_file_never_echoed() {
    use std::io::{BufRead as _, BufReader, Write as _};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let fake = dir.join("fake-crmctl");
    std::fs::write(
        &fake,
        "#!/usr/bin/env bash\n{ echo \"ARGS=$*\"; echo \"FILE=$AZURE_FEDERATED_TOKEN_FILE\"; } > \"$(dirname \"$0\")/seen\"\n",
    )
    .unwrap();
    Command::new("chmod").arg("+x").arg(&fake).status().unwrap();
    std::fs::create_dir(dir.join("runner-tmp")).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut head = Vec::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line.trim().is_empty() {
                break;
            }
            head.push(line.trim_end().to_string());
        }
        let body = r#"{"count":1,"value":"gh.oidc.jwt-SECRET"}"#;
        let mut stream = stream;
        write!(
            stream,
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        head
    });
    let out = run(ci(dir, "drift")
        .env("CRMCTL", &fake)
        .env("GITHUB_OUTPUT", dir.join("github-output"))
        .env("RUNNER_TEMP", dir.join("runner-tmp"))
        .env(
            "ACTIONS_ID_TOKEN_REQUEST_URL",
            format!("http://127.0.0.1:{port}/oidc/token?api-version=2.0"),
        )
        .env("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "request-token-SECRET")
        .env("AZURE_CLIENT_ID", "11111111-2222-3333-4444-555555555555")
        .env("AZURE_TENANT_ID", "contoso.onmicrosoft.com"));
    assert!(out.status.success(), "{}", all_output(&out));
    let head = server.join().unwrap();
    let request = head[0].to_ascii_lowercase();
    assert!(
        request.starts_with("get /oidc/token?api-version=2.0&audience=api://azureadtokenexchange"),
        "{head:?}"
    );
    assert!(
        head.iter()
            .any(|h| h.eq_ignore_ascii_case("authorization: bearer request-token-SECRET")),
        "{head:?}"
    );
    let token_file = dir.join("runner-tmp/crmctl-federated-token");
    let seen = read(dir, "seen");
    assert!(
        seen.contains(&format!("FILE={}", token_file.display())),
        "{seen}"
    );
    assert_eq!(
        std::fs::read_to_string(&token_file).unwrap(),
        "gh.oidc.jwt-SECRET"
    );
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&token_file).unwrap().permissions().mode();
    assert_eq!(
        mode & 0o077,
        0,
        "the token file is readable by others: {mode:o}"
    );
    let text = all_output(&out) + &read(dir, "github-output");
    assert!(!text.contains("SECRET"), "{text}");
}

/// The YAML of a pipeline as a JSON value.
fn pipeline(name: &str) -> (String, Value) {
    let text = std::fs::read_to_string(root().join("examples/ci").join(name)).unwrap();
    let v: Value = crmctl::desired::load::from_yaml(&text)
        .unwrap_or_else(|e| panic!("{name} is not YAML: {e}"));
    (text, v)
}

#[test]
fn pipelines_run_the_script_with_workload_identity_and_a_remote_state() {
    for name in ["github-actions.yml", "azure-pipelines.yml"] {
        let (text, v) = pipeline(name);
        for step in ["pr", "apply", "drift"] {
            let gha = format!("ci/crmctl-ci.sh {step}");
            let ado = format!("arguments: {step}\n");
            assert!(
                text.contains(&gha)
                    || (text.contains("scriptPath: ci/crmctl-ci.sh") && text.contains(&ado)),
                "{name} does not run `crmctl-ci.sh {step}`"
            );
        }
        // No stored secret: workload identity only.
        assert!(!text.contains("AZURE_CLIENT_SECRET"), "{name}");
        assert!(!text.contains("secrets."), "{name}");
        // The remote state.
        let vars = if name == "github-actions.yml" {
            &v["env"]
        } else {
            &v["variables"]
        };
        let state = vars["CRMCTL_STATE"].as_str().unwrap_or_default();
        assert!(
            state.starts_with("azblob://"),
            "{name}: CRMCTL_STATE = {state:?}"
        );
        assert!(text.contains("--locked"), "{name}: install with --locked");
    }
    let (_, gha) = pipeline("github-actions.yml");
    assert_eq!(gha["permissions"]["id-token"], "write");
    assert!(gha["on"]["schedule"][0]["cron"].is_string());
    assert!(gha["on"]["pull_request"].is_object());
    assert_eq!(gha["jobs"]["apply"]["needs"], "plan");
    assert!(gha["jobs"]["apply"]["environment"].is_string());
    let (text, ado) = pipeline("azure-pipelines.yml");
    assert!(ado["schedules"][0]["cron"].is_string());
    assert_eq!(text.matches("addSpnToEnvironment: true\n").count(), 4);
    let stages: Vec<&str> = ado["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["stage"].as_str().unwrap())
        .collect();
    assert_eq!(stages, ["pr", "plan", "apply", "drift"]);
}
