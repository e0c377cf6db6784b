#!/usr/bin/env bash
# `make contract`: a contract fuzzer nobody on the project wrote, schemathesis from PyPI, against the
# running command-service and the projector's read API, each from its own /openapi.json. Positive
# and negative data with every check: a request the document allows is accepted (or refused with a
# documented 422), one it forbids is refused with a 4xx, no answer is a 5xx, and every answer
# matches its schema. Starts whatever part of the stack is not running and stops exactly that again.
#
# CONTRACT_EXAMPLES (default 25) cases per operation and phase; CONTRACT_SEED fixes the data;
# CONTRACT_COMMAND_URL / CONTRACT_READ_URL point it at other instances (then nothing is started).
source "$(dirname "$0")/stack/env.sh"
STACK="$EVENTFOLD_ROOT/scripts/stack"
cd "$EVENTFOLD_ROOT"

SCHEMATHESIS_VERSION=4.32.5
VENV="$EVENTFOLD_CACHE/downloads/schemathesis-$SCHEMATHESIS_VERSION"
REPORT_DIR="$EVENTFOLD_CACHE/logs/contract"
step() { printf '\n==> %s\n' "$*" >&2; }

if [[ ! -f "$VENV/.installed" ]]; then
  step "installing schemathesis $SCHEMATHESIS_VERSION from PyPI into $VENV"
  rm -rf "$VENV"
  python3 -m venv "$VENV" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
  "$VENV/bin/pip" install --quiet "schemathesis==$SCHEMATHESIS_VERSION" || die "pip install schemathesis failed"
  touch "$VENV/.installed"
fi

command_url="${CONTRACT_COMMAND_URL:-$EVENTFOLD_COMMAND_URL}"
read_url="${CONTRACT_READ_URL:-$EVENTFOLD_PROJECTOR_URL}"
if [[ -z "${CONTRACT_COMMAND_URL:-}${CONTRACT_READ_URL:-}" ]]; then
  use_stack
fi
cargo build --quiet -p eventfold-cli --bin eventfold

# A tenant of its own per run: the fuzzer's aggregates never meet anyone else's.
# impersonate: X-Actor is then honoured rather than refused with 403.
tenant="contract-$(date +%s)-$$"
export CONTRACT_TENANT="$tenant"
token="$("$CARGO_TARGET_DIR/debug/eventfold" token --tenant "$tenant" --scope all --scope impersonate)" \
  || die "eventfold token failed"
mkdir -p "$REPORT_DIR"

# run NAME URL: schemathesis over every operation of URL/openapi.json; its summary line and exit code.
run() {
  local name="$1" url="$2"
  step "schemathesis $SCHEMATHESIS_VERSION against $name ($url/openapi.json), tenant $tenant"
  # Run in the report directory: schemathesis and hypothesis keep their caches in the working
  # directory, and nothing is written inside the repository.
  (cd "$REPORT_DIR" && SCHEMATHESIS_HOOKS="$EVENTFOLD_ROOT/tests/contract/hooks.py" "$VENV/bin/st" --no-color --config-file "$EVENTFOLD_ROOT/tests/contract/schemathesis.toml" run "$url/openapi.json" \
    --url "$url" -H "Authorization: Bearer $token" \
    --checks all --mode all --phases examples,coverage,fuzzing \
    --max-examples "${CONTRACT_EXAMPLES:-25}" ${CONTRACT_SEED:+--seed "$CONTRACT_SEED"} \
    --workers 2 --request-timeout 10 \
    --report junit --report-junit-path "$REPORT_DIR/$name.junit.xml")
}
rc=0
run command-service "$command_url" || rc=1
run read-api "$read_url" || rc=1
((rc == 0)) && step "contract: no failure" || step "contract: failures above (reports in $REPORT_DIR)"
exit "$rc"
