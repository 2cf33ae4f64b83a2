#!/usr/bin/env bash
# Makes sure the programs the functional tests drive are on PATH. Filled in per tool.
set -euo pipefail
