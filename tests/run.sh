#!/usr/bin/env bash
# The whole test suite in one command: `bash tests/run.sh [test filter]`.
#
# Installs the third-party programs the integration tests drive (from
# Debian, when missing), builds the workspace, runs every test, and ends with
# one line counted from cargo's `test result:` lines:
#
#   tests: N passed, M failed, K skipped
#
# Tests that cannot run on this machine report themselves as skipped through
# $SHOAL_SKIP_LOG (see tests/src/skip.rs); they are counted as skipped, not
# passed. The exit status is non-zero if anything failed.
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
mkdir -p "$target_dir"
log="$target_dir/test-run.log"
skip_log="$(mktemp "${TMPDIR:-/tmp}/shoal-skips.XXXXXX")"
trap 'rm -f "$skip_log"' EXIT

# --- third-party programs -------------------------------------------------
# binary:debian-package
tools=(skopeo:skopeo umoci:umoci busybox:busybox-static docker-registry:docker-registry)
missing=()
for entry in "${tools[@]}"; do
    command -v "${entry%%:*}" >/dev/null 2>&1 || missing+=("${entry#*:}")
done
if ((${#missing[@]})); then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
        echo "installing ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null ||
            { apt-get update >/dev/null && apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null; } ||
            echo "warning: could not install ${missing[*]}; the tests that need them will be skipped"
    else
        echo "warning: ${missing[*]} missing and cannot be installed here; the tests that need them will be skipped"
    fi
fi

# --- build and test -------------------------------------------------------
status=0
{
    echo "== cargo build --workspace"
    cargo build --workspace
} 2>&1 | tee "$log"
build_status=${PIPESTATUS[0]}

if ((build_status == 0)); then
    {
        echo "== cargo test --workspace"
        # Every wait inside the tests has its own deadline; this is the
        # backstop for the whole run.
        SHOAL_SKIP_LOG="$skip_log" timeout --signal=TERM --kill-after=60 1680 \
            cargo test --workspace --no-fail-fast -- "$@"
    } 2>&1 | tee -a "$log"
    status=${PIPESTATUS[0]}
fi

# --- count ----------------------------------------------------------------
read -r passed failed < <(
    grep -E '^test result: ' "$log" |
        sed -E 's/.* ([0-9]+) passed; ([0-9]+) failed.*/\1 \2/' |
        awk '{ p += $1; f += $2 } END { print p + 0, f + 0 }'
)
skipped=$(grep -c '^SKIPPED ' "$skip_log" || true)
passed=$((passed - skipped))

if ((build_status != 0)); then
    echo "error: cargo build --workspace failed (status $build_status); no tests ran"
    failed=$((failed + 1))
elif ((status != 0 && failed == 0)); then
    # A test binary that crashed or timed out prints no result line.
    echo "error: cargo test exited with status $status without a failing test result; counted as 1 failure"
    failed=1
fi
if ((skipped > 0)); then
    echo "skipped:"
    sed 's/^/  /' "$skip_log"
fi
echo "full output: $log"
echo "tests: $passed passed, $failed failed, $skipped skipped"
((failed == 0 && build_status == 0 && status == 0))
