#!/usr/bin/env bash
# Bounded fuzzing of flowgate's parsers and encoders with cargo fuzz (libFuzzer); see
# fuzz/README.md for the targets and what each asserts.
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#   SECONDS_PER_TARGET  default 12: the five targets fuzz for about a minute, plus the build
#   TARGET...           default all: extract flatten tuple config inventory
# Exits non-zero if a target crashed, leaked past -rss_limit_mb or timed out; the input is
# kept under fuzz/artifacts/TARGET/ and the reproducer command printed.
# Environment:
#   FLOWGATE_FUZZ_SANITIZER  none (default: safe Rust panics on its own, and it runs about
#                            twice as fast) or address (ASan, for unsafe code in deps)
#   FLOWGATE_FUZZ_KEEP=1     keep the run's corpora and logs (else a temp dir, removed)
#   FLOWGATE_PEERS           where cargo-fuzz is installed (default ./.peers)
#   CARGO_TARGET_DIR         default ./target, shared with the workspace's own builds (cargo
#                            fuzz builds for an explicit --target, so nothing clashes)
# cargo fuzz passes -Z flags (sanitizers) to rustc: RUSTC_BOOTSTRAP=1 lets the stable
# toolchain accept them, so no nightly is needed.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

secs="${1:-12}"
[ "$#" -gt 0 ] && shift
case "$secs" in '' | *[!0-9]*) echo "fuzz.sh: SECONDS_PER_TARGET must be a number, got $secs" >&2; exit 2 ;; esac
all_targets=(extract flatten tuple config inventory)
targets=("$@")
[ "${#targets[@]}" -gt 0 ] || targets=("${all_targets[@]}")
for t in "${targets[@]}"; do
    [ -f "fuzz/fuzz_targets/$t.rs" ] || { echo "fuzz.sh: no fuzz target $t (${all_targets[*]})" >&2; exit 2; }
done
sanitizer="${FLOWGATE_FUZZ_SANITIZER:-none}"

# cargo-fuzz itself, pinned, in a project-local root.
cargo_fuzz_version=0.13.2
prefix="${FLOWGATE_PEERS:-$root/.peers}/cargo-fuzz"
cargo_fuzz="$prefix/bin/cargo-fuzz"
if [ "$("$cargo_fuzz" --version 2>/dev/null || true)" != "cargo-fuzz $cargo_fuzz_version" ]; then
    echo "fuzz.sh: installing cargo-fuzz $cargo_fuzz_version into $prefix" >&2
    # Not into the shared target dir: cargo install builds in a temp dir of its own.
    env -u CARGO_TARGET_DIR cargo install cargo-fuzz --locked --version "$cargo_fuzz_version" \
        --root "$prefix" >&2
fi
# librdkafka (a dependency of flowgate-sink) is compiled from C source.
scripts/build-deps.sh

export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
triple="$(rustc -vV | sed -n 's/^host: //p')"
bindir="$CARGO_TARGET_DIR/$triple/release"
build_flags=(--fuzz-dir fuzz --target "$triple" --sanitizer "$sanitizer" --debug-assertions
    --codegen-units 16)

echo "fuzz.sh: $(rustc --version), cargo-fuzz $cargo_fuzz_version, sanitizer $sanitizer" >&2
build_start=$(date +%s)
"$cargo_fuzz" build "${build_flags[@]}" >&2
build_secs=$(($(date +%s) - build_start))
echo "fuzz.sh: build took ${build_secs}s" >&2

work="$(mktemp -d "${TMPDIR:-/tmp}/flowgate-fuzz.XXXXXX")"
if [ "${FLOWGATE_FUZZ_KEEP:-0}" = 1 ]; then
    echo "fuzz.sh: corpora and logs kept in $work" >&2
else
    trap 'rm -rf "$work"' EXIT
fi

# Seeds from the repository's fixtures, copied at run time (named by content, as
# libFuzzer names its own corpus files).
seed() { # seed TARGET FILE...
    local dir="$work/seeds/$1" f
    shift
    mkdir -p "$dir"
    for f in "$@"; do
        [ -f "$f" ] && cp "$f" "$dir/$(sha1sum <"$f" | cut -d' ' -f1)"
    done
    return 0
}
mapfile -t flow_logs < <({ ls tests/fixtures/*.PT1H.json; find configs/sample-logs -name '*.json'; } 2>/dev/null | sort)
seed extract "${flow_logs[@]}"
seed flatten "${flow_logs[@]}"
mkdir -p "$work/seeds/tuple"
{ grep -ohE '"[0-9]{9,14},[^"]*"' "${flow_logs[@]}" || true; } | tr -d '"' | sort -u |
    while IFS= read -r tuple; do
        printf '%s' "$tuple" >"$work/seeds/tuple/$(printf '%s' "$tuple" | sha1sum | cut -d' ' -f1)"
    done
seed config configs/*.toml scripts/bench/*.toml docker/demo/flowgate.toml
seed inventory tests/fixtures/*.csv

max_len() {
    case "$1" in
        extract | flatten) echo 1048576 ;;
        tuple) echo 512 ;;
        *) echo 65536 ;;
    esac
}
dict() {
    case "$1" in
        extract | flatten) echo fuzz/dict/flowlog.dict ;;
        *) echo "fuzz/dict/$1.dict" ;;
    esac
}

failed=()
summary=()
for t in "${targets[@]}"; do
    corpus="$work/corpus/$t"
    artifacts="$root/fuzz/artifacts/$t"
    log="$work/$t.log"
    mkdir -p "$corpus" "$artifacts" "$work/seeds/$t"
    echo "fuzz.sh: $t for ${secs}s ($(ls "$work/seeds/$t" | wc -l) seeds)" >&2
    status=0
    "$bindir/$t" -max_total_time="$secs" -rss_limit_mb=2048 -max_len="$(max_len "$t")" \
        -timeout=25 -dict="$(dict "$t")" -artifact_prefix="$artifacts/" -print_final_stats=1 \
        "$corpus" "$work/seeds/$t" >"$log" 2>&1 || status=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n1)
    last=$(grep -E '^#[0-9]+' "$log" | tail -n1 || true)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
    corp=$(sed -n 's/.* corp: \([0-9]*\/[0-9a-zA-Z]*\).*/\1/p' <<<"$last")
    summary+=("$(printf '%-10s %6s %10s %8s %6s %7s %12s' "$t" "$status" "${execs:-?}" "${rate:-?}" \
        "${cov:-?}" "${ft:-?}" "${corp:-?}")")
    if [ "$status" -ne 0 ]; then
        failed+=("$t")
        echo "fuzz.sh: $t FAILED (exit $status); the end of its log:" >&2
        tail -n 60 "$log" >&2
        artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n1)
        if [ -n "$artifact" ]; then
            echo "fuzz.sh: input kept in $artifact; reproduce with" >&2
            echo "    $bindir/$t $artifact" >&2
            echo "  or  RUSTC_BOOTSTRAP=1 $cargo_fuzz run ${build_flags[*]} $t $artifact" >&2
            echo "  minimise with  RUSTC_BOOTSTRAP=1 $cargo_fuzz tmin ${build_flags[*]} $t $artifact" >&2
        fi
    fi
done

echo
printf '%-10s %6s %10s %8s %6s %7s %12s\n' target exit execs exec/s cov ft corpus
printf '%s\n' "${summary[@]}"
echo "build ${build_secs}s, ${secs}s per target, sanitizer $sanitizer"
if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz.sh: FAILED: ${failed[*]} (inputs under fuzz/artifacts/)" >&2
    exit 1
fi
echo "fuzz.sh: no crash in ${targets[*]}"
