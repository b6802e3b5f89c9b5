#!/bin/bash
# Build the native decoder's libFuzzer harness (clang, AddressSanitizer + UBSan) and run it.
#
#   tools/fuzz/run.sh [--time SECONDS | --runs N] [--out DIR] [--python PY] [-- LIBFUZZER_ARGS...]
#   tools/fuzz/run.sh --coverage [--out DIR]
#
# Default: a 60 s run (CI). `--runs 1000000` is the benchmark run of docs/BENCHMARKS.md.
# --coverage replays DIR's corpus through a build with source coverage and prints llvm-cov's
# per-file report of the core.
# The seed corpus and the weights header come from the Python encoder (tools/fuzz/make_seeds.py,
# run with PY, default python3 with snisd importable); the corpus grows in DIR/corpus (default
# build/fuzz). Every input has a time limit (-timeout); a crash, a sanitizer report, a hang or a
# leak stops the run with a non-zero status and leaves the input in DIR/artifacts. Reproduce one
# with DIR/fuzz_decoder DIR/artifacts/crash-...
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
out=$repo/build/fuzz
python=python3
limit=(-max_total_time=60)
extra=()
coverage=no
while [ $# -gt 0 ]; do
    case "$1" in
        --time) limit=(-max_total_time="$2"); shift ;;
        --runs) limit=(-runs="$2"); shift ;;
        --out) out=$2; shift ;;
        --python) python=$2; shift ;;
        --coverage) coverage=yes ;;
        --) shift; extra=("$@"); break ;;
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
        *) echo "run.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
clang=${CLANG:-clang}
command -v "$clang" >/dev/null || { echo "run.sh: $clang not found (apt-get install clang libclang-rt-14-dev)" >&2; exit 1; }

if [ $coverage = yes ]; then
    native=$repo/snisd/codec/native
    [ -e "$out/weights.h" ] || "$python" "$repo/tools/fuzz/make_seeds.py" "$out"
    core=()
    for f in "$native"/*.c; do
        [ "$(basename "$f")" = pymodule.c ] || core+=("$f")
    done
    "$clang" -O1 -std=c11 -fsanitize=fuzzer -fprofile-instr-generate -fcoverage-mapping -I"$native" -I"$out" \
        "$repo/tools/fuzz/fuzz_decoder.c" "${core[@]}" -pthread -o "$out/fuzz_decoder_cov"
    rm -f "$out/cov.profraw"
    (cd "$out" && LLVM_PROFILE_FILE=cov.profraw ./fuzz_decoder_cov -runs=0 corpus seeds >cov.log 2>&1)
    llvm-profdata merge -sparse "$out/cov.profraw" -o "$out/cov.profdata"
    llvm-cov report "$out/fuzz_decoder_cov" -instr-profile="$out/cov.profdata" "${core[@]}"
    exit 0
fi
mkdir -p "$out/corpus" "$out/artifacts"
"$python" "$repo/tools/fuzz/make_seeds.py" "$out"
native=$repo/snisd/codec/native
core=()
for f in "$native"/*.c; do
    [ "$(basename "$f")" = pymodule.c ] || core+=("$f")
done
start=$(date +%s)
# Sanitizers everywhere; libFuzzer's comparison tracing only in the parser (entropy.c, decoder.c
# and the harness): in the pixel kernels it costs most of the time and guides nothing, as their
# comparisons are on decoded values, not on input bytes.
flags=(-g -O1 -std=c11 -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
       -I"$native" -I"$out")
objs=()
pids=()
for f in "${core[@]}"; do
    o=$out/$(basename "${f%.c}").o
    case "$(basename "$f")" in
        entropy.c|decoder.c) cov=(-fsanitize=fuzzer-no-link) ;;
        *) cov=(-fsanitize=fuzzer-no-link -fno-sanitize-coverage=trace-cmp) ;;
    esac
    "$clang" "${flags[@]}" "${cov[@]}" -c "$f" -o "$o" &
    pids+=($!)
    objs+=("$o")
done
for p in "${pids[@]}"; do wait "$p"; done
"$clang" "${flags[@]}" -fsanitize=fuzzer "$repo/tools/fuzz/fuzz_decoder.c" "${objs[@]}" -pthread \
    -o "$out/fuzz_decoder"
echo "built $out/fuzz_decoder in $(( $(date +%s) - start )) s"
cd "$out"
# corpus first (it is where new inputs are written), then the seeds; the full log stays in
# DIR/fuzz.log, the summary (and on a failure the report) is printed
status=0
./fuzz_decoder -timeout=5 -max_len=16384 -print_final_stats=1 -artifact_prefix="$out/artifacts/" \
    "${limit[@]}" "${extra[@]}" corpus seeds >"$out/fuzz.log" 2>&1 || status=$?
grep -E '^#[0-9]+[[:space:]]+(INITED|DONE)|^Done|^stat::' "$out/fuzz.log" || true
if [ $status -ne 0 ]; then
    tail -80 "$out/fuzz.log"
    echo "run.sh: the fuzzer failed (status $status); the input is in $out/artifacts" >&2
fi
exit $status
