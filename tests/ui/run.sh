#!/bin/sh
# tests/ui/run.sh — the web UI in a real browser: installs playwright-core
# (npm, pinned; never a browser download) if it is missing, builds the UI if
# it is not built, then runs ui.test.mjs, which starts its own pvd on
# loopback with a throwaway data dir and drives Debian's chromium against
# it. Screenshots and logs are kept under build/test-logs/ui/.
# Ends with "# ui playwright: N passed, M failed".
set -u
cd "$(dirname "$0")"
ROOT=$(cd ../.. && pwd)
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
export UI_ARTIFACTS="${UI_ARTIFACTS:-$ROOT/build/test-logs/ui}"
rm -rf "$UI_ARTIFACTS"
mkdir -p "$UI_ARTIFACTS"

fail() {
    echo "not ok - $1"
    echo "# ui playwright: 0 passed, 1 failed"
    exit 1
}

[ -x /usr/bin/chromium ] || fail "chromium is not installed (apt-get install chromium; sh tools/deps.sh test)"
command -v node >/dev/null 2>&1 || fail "node is not installed (apt-get install nodejs npm)"
if [ ! -f node_modules/playwright-core/package.json ]; then
    if ! npm ci --no-audit --no-fund > "$UI_ARTIFACTS/npm.log" 2>&1; then
        npm install --no-audit --no-fund >> "$UI_ARTIFACTS/npm.log" 2>&1 ||
            fail "npm could not install playwright-core (see $UI_ARTIFACTS/npm.log)"
    fi
fi
if [ ! -f "$ROOT/build/web/index.html" ]; then
    sh "$ROOT/tools/webbuild.sh" "$ROOT/web" "$ROOT/build/web" > "$UI_ARTIFACTS/webbuild.log" 2>&1 ||
        fail "the web UI did not build (see $UI_ARTIFACTS/webbuild.log)"
fi
exec node ui.test.mjs
