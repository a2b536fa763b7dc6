#!/usr/bin/env bash
# The test command: installs what the suite needs on a fresh Debian machine, then runs
# the linters, the type checker and the whole test suite. Usage: bash tests/run.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v haproxy >/dev/null 2>&1 || need_apt+=(haproxy)
command -v nginx >/dev/null 2>&1 || need_apt+=(nginx-light)
perl -MProtocol::WebSocket -e1 >/dev/null 2>&1 || need_apt+=(libprotocol-websocket-perl)
command -v systemd-analyze >/dev/null 2>&1 || need_apt+=(systemd)
command -v tcpdump >/dev/null 2>&1 || need_apt+=(tcpdump)
command -v tshark >/dev/null 2>&1 || need_apt+=(tshark)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "installing Debian packages: ${need_apt[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

python3 -m pip install -q -e ".[test,fuzz]"
# Node's ws package, for the servers in tests/peers/node (pinned by its package-lock.json).
[ -d tests/peers/node/node_modules/ws ] || (cd tests/peers/node && npm install --no-audit --no-fund --silent)

python3 -m ruff check wscompat tests benchmarks fuzzing
python3 -m mypy
set +e
python3 -m pytest "$@"
status=$?
set -e
# pytest exits 5 when it collected no test: that is a failure of this suite, not a pass.
if [ "$status" -eq 5 ]; then
    echo "no tests were collected" >&2
    exit 1
fi
exit "$status"
