#!/usr/bin/env bash
# Creates a throwaway test CA and a certificate for DOMAIN (and *.DOMAIN) signed by it, in OUT.
# For test suites and local experiments only: never use these keys in production.
# Usage: certs/make-test-certs.sh [DOMAIN] [OUT]    (defaults: localhost, certs/test)
set -euo pipefail
domain=${1:-localhost}
out=${2:-"$(dirname "$0")/test"}
cd "$(dirname "$0")/.."
cargo run --quiet --bin tern -- cert generate --ca --domain "$domain" --out "$out"
echo "Trust $out/ca.crt in the client (e.g. SSL_CERT_FILE=$out/ca.crt), and point [[host]] at"
echo "$out/$domain.crt and $out/$domain.key."
