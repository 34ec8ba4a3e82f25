#!/usr/bin/env bash
# The REST gateway's out-of-process checks, called by scripts/test:
# schemathesis against `castle serve` (../schemathesis/run.sh), then the
# trading page in headless Chromium (e2e.mjs). Needs /usr/bin/chromium
# (Debian package chromium) and npm; installs playwright-core from the
# committed package-lock.json. Screenshots go to $REST_E2E_ARTIFACTS
# (default target/rest-e2e). Last line: `rest-e2e: N passed, M failed`.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
castle=${CASTLE_BIN:-${CARGO_TARGET_DIR:-$root/target}/debug/castle}
export REST_E2E_ARTIFACTS=${REST_E2E_ARTIFACTS:-$root/target/rest-e2e}
passed=0
failed=0
result() { # result NAME PASSED FAILED
    passed=$((passed + $2))
    failed=$((failed + $3))
}

if "$here/../schemathesis/run.sh"; then result schemathesis 1 0; else result schemathesis 0 1; fi

browser() {
    if [ ! -x /usr/bin/chromium ]; then
        echo "rest-e2e: /usr/bin/chromium is missing: apt-get install chromium" >&2
        return 1
    fi
    command -v npm >/dev/null 2>&1 || { echo "rest-e2e: npm is missing: apt-get install npm" >&2; return 1; }
    if [ ! -d "$here/node_modules/playwright-core" ]; then
        (cd "$here" && npm ci --no-audit --no-fund --loglevel=error) || return 1
    fi
    local work pid url s1 s2 rc oidc oidc_pid
    work=$(mktemp -d)
    # A local OIDC provider (oidc-standin.mjs) for the page's single sign-on step.
    node "$here/oidc-standin.mjs" "$work/jwks.json" castle-web >"$work/oidc" 2>&1 &
    oidc_pid=$!
    # Start-ups are polled for up to 60 s (a loaded 2-core machine); a process that exits ends the wait.
    for _ in $(seq 1 600); do
        grep -q '^OIDC ' "$work/oidc" 2>/dev/null && break
        kill -0 "$oidc_pid" 2>/dev/null || break
        sleep 0.1
    done
    oidc=$(sed -n 's/^OIDC //p' "$work/oidc")
    if [ -z "$oidc" ]; then
        echo "rest-e2e: the OIDC stand-in did not start:" >&2
        cat "$work/oidc" >&2
        kill "$oidc_pid" 2>/dev/null
        rm -rf "$work"
        return 1
    fi
    "$castle" serve --fix-listen 127.0.0.1:0 --rest-listen 127.0.0.1:0 --data-dir "$work" \
        --rest-jwks "$work/jwks.json" --rest-jwt-issuer "$oidc" --rest-jwt-audience castle-web \
        --rest-oidc-authorize "$oidc/authorize" --rest-oidc-token "$oidc/token" --rest-oidc-client-id castle-web \
        >"$work/out" 2>"$work/err" &
    pid=$!
    for _ in $(seq 1 600); do
        grep -q '^REST API' "$work/out" 2>/dev/null && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    url=$(sed -n 's/^REST API \(https:\/\/[^/]*\)\/api\/v1 .*/\1/p' "$work/out")
    s1=$(sed -n 's/^REST demo key for account 1: key demo-account-1 secret //p' "$work/out")
    s2=$(sed -n 's/^REST demo key for account 2: key demo-account-2 secret //p' "$work/out")
    rc=1
    if [ -n "$url" ] && [ -n "$s1" ] && [ -n "$s2" ]; then
        CASTLE_URL=$url CASTLE_OIDC=$oidc CASTLE_SECRET_1=$s1 CASTLE_SECRET_2=$s2 node "$here/e2e.mjs" | tee "$work/report"
        rc=${PIPESTATUS[0]}
        browser_passed=$(sed -n 's/^rest-e2e-browser: \([0-9]*\) passed, \([0-9]*\) failed$/\1/p' "$work/report")
        browser_failed=$(sed -n 's/^rest-e2e-browser: \([0-9]*\) passed, \([0-9]*\) failed$/\2/p' "$work/report")
    else
        echo "castle serve did not start:" >&2
        cat "$work/err" >&2
    fi
    kill "$pid" "$oidc_pid" 2>/dev/null
    wait "$pid" "$oidc_pid" 2>/dev/null
    rm -rf "$work"
    return "$rc"
}
browser_passed=
browser_failed=
browser
rc=$?
if [ -n "$browser_passed" ]; then
    result browser "$browser_passed" "$browser_failed"
elif [ "$rc" -ne 0 ]; then
    result browser 0 1
fi
echo "rest-e2e: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
