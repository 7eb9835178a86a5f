#!/usr/bin/env bash
# The project's test command (README.md): formatting, lints, then every test in the workspace.
# Under CI (CI set), tests that need kubectl or curl fail instead of skipping when the tool is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

profile=default
[ -n "${CI:-}" ] && profile=ci

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy --all-targets -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== build binaries used by end-to-end tests"
cargo build --workspace --bins --locked
echo "== cargo nextest run"
cargo nextest run --workspace --locked --profile "$profile" --no-fail-fast
echo "== doc tests"
cargo test --workspace --doc --locked
