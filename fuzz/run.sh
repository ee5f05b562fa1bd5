#!/usr/bin/env bash
# Builds every cargo-fuzz target (release, debug assertions, AddressSanitizer) on the
# stable toolchain and runs each one for a bounded time. Exits non-zero if any target
# crashes, panics, leaks, times out or runs out of memory; the reproducer is then in
# fuzz/artifacts/<target>/ (replayed by `cargo test -p sealpost-fuzz`).
#
# Environment:
#   FUZZ_SECONDS   seconds per target (default 30)
#   FUZZ_TARGETS   space-separated subset of targets (default: all, from `cargo fuzz list`)
#
# New inputs the fuzzer finds go to fuzz/target/corpus/<target>/ (not committed); the
# committed seeds in fuzz/corpus/<target>/ are only read. To keep an interesting input,
# copy it into fuzz/corpus/<target>/ under a name not starting with "seed-".
set -euo pipefail
cd "$(dirname "$0")"

FUZZ_SECONDS="${FUZZ_SECONDS:-30}"
# cargo-fuzz passes nightly-only flags (-Zsanitizer=address, -Cpasses=sancov-module);
# RUSTC_BOOTSTRAP lets the stable compiler accept them.
export RUSTC_BOOTSTRAP=1
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi
cargo fuzz --version

build_args=(--release --debug-assertions)

t0=$(date +%s)
echo "=== cargo fuzz build ${build_args[*]}"
cargo fuzz build "${build_args[@]}"
echo "=== build took $(($(date +%s) - t0))s"

if [[ -n "${FUZZ_TARGETS:-}" ]]; then
    read -r -a targets <<<"${FUZZ_TARGETS}"
else
    mapfile -t targets < <(cargo fuzz list)
fi

failed=()
for t in "${targets[@]}"; do
    work="target/corpus/${t}"
    mkdir -p "${work}" "artifacts/${t}"
    log="target/fuzz-${t}.log"
    echo "=== ${t}: ${FUZZ_SECONDS}s"
    # First corpus directory: where new inputs are written; the second is only read.
    if cargo fuzz run "${build_args[@]}" "${t}" "${work}" "corpus/${t}" -- \
        -max_total_time="${FUZZ_SECONDS}" \
        -rss_limit_mb=2048 \
        -timeout=10 \
        -print_final_stats=1 \
        >"${log}" 2>&1; then
        grep -E '^(stat::number_of_executed_units|stat::average_exec_per_sec|stat::new_units_added|stat::peak_rss_mb)' "${log}" |
            sort -u | sed "s/^/    /" || true
    else
        echo "!!! ${t} FAILED; last lines of ${log}:"
        tail -n 60 "${log}"
        failed+=("${t}")
    fi
done

if ((${#failed[@]} > 0)); then
    echo "=== fuzz targets failed: ${failed[*]} (reproducers in fuzz/artifacts/)"
    exit 1
fi
echo "=== all ${#targets[@]} fuzz targets ran ${FUZZ_SECONDS}s without a crash"
