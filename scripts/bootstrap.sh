#!/usr/bin/env bash
# Installs what the stack and the build need on a fresh Debian 12 machine, from Debian's packages,
# and only what is missing. Rust (rustup), Go and Java are expected from the machine image; the
# servers themselves come from Maven Central and the Go module proxy (see scripts/stack/).
source "$(dirname "$0")/stack/lib.sh"

need=()
have() { command -v "$1" >/dev/null 2>&1; }
[[ -x /usr/lib/postgresql/15/bin/postgres ]] || need+=(postgresql)
have psql || need+=(postgresql-client)
have curl || need+=(curl)
have java || need+=(openjdk-17-jdk-headless)
have mvn || need+=(maven)
have go || need+=(golang-go)
have make || need+=(make)
have cc || need+=(build-essential)
have cmake || need+=(cmake)
have perl || need+=(perl)
[[ -f /usr/include/openssl/ssl.h ]] || need+=(libssl-dev)
[[ -f /usr/include/zlib.h ]] || need+=(zlib1g-dev)
have pkg-config || need+=(pkg-config)
# `make contract` installs schemathesis from PyPI into a venv (python3 -m venv needs ensurepip).
python3 -c 'import ensurepip, venv' 2>/dev/null || need+=(python3-venv)

if ((${#need[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    die "missing packages: ${need[*]} (install them with: sudo apt-get install -y ${need[*]})"
  fi
  log "installing from Debian: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

have cargo || die "cargo not found: install Rust (rustup) first"
rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt clippy
log "bootstrap: prerequisites present"
