#!/usr/bin/env bash
# crmctl's CI/CD steps, the one script both pipelines run (GitHub Actions: github-actions.yml,
# Azure DevOps: azure-pipelines.yml). crmctl's own tests run it against the local tenant
# (tests/it/ci_kit.rs), so the kit cannot drift from the binary.
#
#   crmctl-ci.sh pr      validate, then plan: OUT/validate.json, OUT/plan.md (the pull
#                        request comment, also written when the plan fails) and
#                        OUT/plan.saved (the saved plan, for apply). Exit 0 when a plan was
#                        made (OUT/changes says true or false), 1 otherwise.
#   crmctl-ci.sh apply   apply OUT/plan.saved (the reviewed plan; refused when the tenant or
#                        the state changed since) or, without one, a plan made now;
#                        OUT/apply.json is the summary. Exit 0 done, 1 failed or refused,
#                        3 stopped at a manual step.
#   crmctl-ci.sh drift   plan --detailed-exitcode: OUT/drift.md; exit 0 no drift, 4 changed
#                        outside crmctl since the last apply, 2 the file has changes not
#                        applied yet (with or without drift), 1 error.
#
# Settings (environment):
#   CRMCTL            the crmctl binary (default: crmctl on PATH)
#   CRMCTL_FILE       the desired file (default: crmctl.yaml)
#   CRMCTL_OUT        where the outputs go (default: crmctl-out)
#   CRMCTL_BACKEND    read by crmctl itself, e.g. microsoft:contoso.onmicrosoft.com
#   CRMCTL_STATE      read by crmctl itself, e.g. azblob://ACCOUNT/CONTAINER/crmctl.json
#   CRMCTL_ALLOW_DESTROY=true   let apply delete (off by default)
#   CRMCTL_FORCE=true           let apply run a large plan (see docs/workflows.md, large plans)
# Sign-in: workload identity federation, no stored secret. crmctl reads AZURE_CLIENT_ID,
# AZURE_TENANT_ID and AZURE_FEDERATED_TOKEN_FILE; when the last is not set, this script
# writes the pipeline's OIDC token to a file and sets it (see federated_token below).
set -euo pipefail

CRMCTL="${CRMCTL:-crmctl}"
FILE="${CRMCTL_FILE:-crmctl.yaml}"
OUT="${CRMCTL_OUT:-crmctl-out}"

say() { printf 'crmctl-ci: %s\n' "$*" >&2; }

# A federated token for `AZURE_FEDERATED_TOKEN_FILE`, from the pipeline's OIDC issuer:
# - GitHub Actions (job permission `id-token: write`): GET ACTIONS_ID_TOKEN_REQUEST_URL with
#   `&audience=api://AzureADTokenExchange`, bearer ACTIONS_ID_TOKEN_REQUEST_TOKEN; the JSON
#   answer's `value` is the token (GitHub docs, "About security hardening with OpenID
#   Connect"; the audience Entra ID's federated credentials expect).
# - Azure DevOps: the AzureCLI@2 task with `addSpnToEnvironment: true` on a workload identity
#   federation service connection sets `idToken`, `servicePrincipalId` and `tenantId` (Azure
#   Pipelines task reference, AzureCLI@2).
# The token is written with mode 600 under RUNNER_TEMP / AGENT_TEMPDIRECTORY and never echoed.
federated_token() {
  [ -n "${AZURE_FEDERATED_TOKEN_FILE:-}" ] && return 0
  local dir="${RUNNER_TEMP:-${AGENT_TEMPDIRECTORY:-${TMPDIR:-/tmp}}}"
  local file="$dir/crmctl-federated-token"
  if [ -n "${ACTIONS_ID_TOKEN_REQUEST_URL:-}" ] && [ -n "${ACTIONS_ID_TOKEN_REQUEST_TOKEN:-}" ]; then
    (umask 077 && curl -fsS -H "Authorization: bearer $ACTIONS_ID_TOKEN_REQUEST_TOKEN" \
      "$ACTIONS_ID_TOKEN_REQUEST_URL&audience=api://AzureADTokenExchange" |
      python3 -c 'import json,sys; sys.stdout.write(json.load(sys.stdin)["value"])' >"$file")
  elif [ -n "${idToken:-}" ]; then
    (umask 077 && printf '%s' "$idToken" >"$file")
    export AZURE_CLIENT_ID="${AZURE_CLIENT_ID:-${servicePrincipalId:-}}"
    export AZURE_TENANT_ID="${AZURE_TENANT_ID:-${tenantId:-}}"
  else
    return 0 # not in a pipeline that issues one: crmctl's other sign-ins apply
  fi
  export AZURE_FEDERATED_TOKEN_FILE="$file"
}

# `name=value` for the next steps of the pipeline (GitHub output / Azure DevOps variable).
publish() {
  if [ -n "${GITHUB_OUTPUT:-}" ]; then
    printf '%s=%s\n' "$1" "$2" >>"$GITHUB_OUTPUT"
  fi
  if [ -n "${TF_BUILD:-}" ]; then
    printf '##vso[task.setvariable variable=%s;isOutput=true]%s\n' "$1" "$2"
  fi
}

# The markdown in the run's summary page, where the pipeline shows one.
summary() {
  if [ -n "${GITHUB_STEP_SUMMARY:-}" ]; then
    cat "$1" >>"$GITHUB_STEP_SUMMARY"
  fi
  if [ -n "${TF_BUILD:-}" ]; then
    printf '##vso[task.uploadsummary]%s\n' "$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
  fi
}

cmd_pr() {
  mkdir -p "$OUT"
  rm -f "$OUT/plan.saved" "$OUT/changes"
  local rc=0
  "$CRMCTL" validate --format json -f "$FILE" >"$OUT/validate.json" || rc=$?
  if [ "$rc" -ne 0 ]; then
    say "$FILE is not valid (see $OUT/validate.json)"
  fi
  # Planned even when invalid: the markdown then lists the file's errors for the comment.
  rc=0
  "$CRMCTL" plan --format markdown --detailed-exitcode --out "$OUT/plan.saved" -f "$FILE" \
    >"$OUT/plan.md" || rc=$?
  summary "$OUT/plan.md"
  case "$rc" in
    0 | 2 | 4) ;;
    *)
      say "no plan: see $OUT/plan.md"
      publish changes error
      return 1
      ;;
  esac
  local changes=false
  # 4: only drift, which the plan puts back: still something to apply.
  [ "$rc" -eq 2 ] || [ "$rc" -eq 4 ] && changes=true
  echo "$changes" >"$OUT/changes"
  publish changes "$changes"
  say "plan: $(head -n 3 "$OUT/plan.md" | tail -n 1)"
}

cmd_apply() {
  mkdir -p "$OUT"
  federated_token
  local flags=()
  [ "${CRMCTL_ALLOW_DESTROY:-false}" = true ] && flags+=(--allow-destroy)
  [ "${CRMCTL_FORCE:-false}" = true ] && flags+=(--force)
  if [ ! -f "$OUT/plan.saved" ]; then
    say "no saved plan in $OUT: planning now"
    "$CRMCTL" plan --format markdown --out "$OUT/plan.saved" -f "$FILE" >"$OUT/plan.md"
  fi
  local rc=0
  # A saved plan counts as approved; it is refused when the tenant or the state changed
  # since it was made (then run `pr` again and review the new plan).
  "$CRMCTL" apply --format json "${flags[@]}" "$OUT/plan.saved" >"$OUT/apply.json" || rc=$?
  publish apply_exit "$rc"
  return "$rc"
}

cmd_drift() {
  mkdir -p "$OUT"
  federated_token
  local rc=0
  "$CRMCTL" plan --format markdown --detailed-exitcode -f "$FILE" >"$OUT/drift.md" || rc=$?
  case "$rc" in
    0) say "no drift: the tenant matches $FILE" ;;
    4)
      say "drift: the tenant changed outside crmctl since the last apply (see $OUT/drift.md)"
      summary "$OUT/drift.md"
      ;;
    2)
      say "drift: the tenant differs from $FILE (see $OUT/drift.md)"
      summary "$OUT/drift.md"
      ;;
    *) say "drift check failed (see $OUT/drift.md)" ;;
  esac
  publish drift "$rc"
  return "$rc"
}

case "${1:-}" in
  pr) federated_token && cmd_pr ;;
  apply) cmd_apply ;;
  drift) cmd_drift ;;
  *)
    echo "usage: crmctl-ci.sh pr|apply|drift (see the top of this file)" >&2
    exit 64
    ;;
esac
