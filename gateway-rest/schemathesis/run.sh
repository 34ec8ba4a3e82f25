#!/usr/bin/env bash
# schemathesis against a running `castle serve` (HTTPS, self-signed), all
# checks, authenticated with demo key 1 through hooks.py. Prints
# `rest-schemathesis: N passed, M failed` (N, M: operations).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
castle=${CASTLE_BIN:-${CARGO_TARGET_DIR:-$root/target}/debug/castle}
if ! command -v schemathesis >/dev/null 2>&1; then
    # Debian's Python refuses system-wide installs without the override.
    python3 -m pip install -q schemathesis >/dev/null 2>&1 ||
        python3 -m pip install -q --break-system-packages schemathesis >/dev/null 2>&1 || true
fi
command -v schemathesis >/dev/null 2>&1 || {
    echo "rest-schemathesis: schemathesis is missing: pip install schemathesis (needs python3-pip)" >&2
    echo "rest-schemathesis: 0 passed, 1 failed"
    exit 1
}
work=$(mktemp -d)
pid=
# shellcheck disable=SC2317 # invoked by the trap
cleanup() {
    if [ -n "$pid" ]; then
        kill "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    fi
    rm -rf "$work"
}
trap cleanup EXIT
"$castle" serve --fix-listen 127.0.0.1:0 --rest-listen 127.0.0.1:0 --data-dir "$work" \
    --rest-ip-weight 100000000 --rest-key-weight 100000000 >"$work/out" 2>"$work/err" &
pid=$!
for _ in $(seq 1 600); do
    grep -q '^REST API' "$work/out" 2>/dev/null && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
done
url=$(sed -n 's/^REST API \(https:\/\/[^/]*\)\/api\/v1 .*/\1/p' "$work/out")
secret=$(sed -n 's/^REST demo key for account 1: key demo-account-1 secret //p' "$work/out")
if [ -z "$url" ] || [ -z "$secret" ]; then
    echo "castle serve did not start:" >&2
    cat "$work/err" >&2
    echo "rest-schemathesis: 0 passed, 1 failed"
    exit 1
fi
set +e
# Run inside the scratch directory: schemathesis keeps a crash cache in the
# working directory, and an old cache must not replay into a new run.
cd "$work" || exit 1
# --request-retries: a connection-level failure (a reset, a TLS EOF) is tried
# again. Response checks are never retried: any wrong answer still fails.
CASTLE_REST_KEY=demo-account-1 CASTLE_REST_SECRET="$secret" SCHEMATHESIS_HOOKS=hooks PYTHONPATH="$here" \
    schemathesis --config-file "$here/schemathesis.toml" run "$url/api/v1/openapi.json" --url "$url" --checks all --tls-verify false --request-retries 2 \
    --max-examples "${REST_SCHEMATHESIS_EXAMPLES:-40}" --workers 2 --generation-deterministic --no-color \
    >"$work/report" 2>&1
rc=$?
set -e
cat "$work/report"
if [ "$rc" -eq 0 ]; then
    echo "rest-schemathesis: 1 passed, 0 failed"
else
    echo "rest-schemathesis: 0 passed, 1 failed"
fi
exit "$rc"
