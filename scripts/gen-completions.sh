#!/usr/bin/env bash
# Regenerates completions/ and man/ from the CLI definition (tests fail when they drift).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet
for pair in bash:csm.bash zsh:_csm fish:csm.fish powershell:_csm.ps1 elvish:csm.elv; do
  target/debug/csm completions "${pair%%:*}" > "completions/${pair#*:}"
done
rm -f man/*.1
target/debug/csm man man
