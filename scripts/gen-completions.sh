#!/usr/bin/env bash
# Regenerates completions/ from the CLI definition (a test fails when they drift).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet
for pair in bash:csm.bash zsh:_csm fish:csm.fish powershell:_csm.ps1 elvish:csm.elv; do
  target/debug/csm completions "${pair%%:*}" > "completions/${pair#*:}"
done
