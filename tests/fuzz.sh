#!/usr/bin/env bash
# Coverage-guided fuzzing of rotor's parsers of untrusted input (cargo-fuzz / libFuzzer, stable
# toolchain). Targets live in tests/fuzz/fuzz_targets, committed seed corpora in
# tests/fuzz/corpus/<target>; what a run discovers goes to tests/fuzz/work/<target> (ignored by
# git, reused by the next run), crashes to tests/fuzz/artifacts/<target>/.
#
#   tests/fuzz.sh [SECONDS-PER-TARGET] [TARGET...]     default: 30 s each, every target
#   tests/fuzz.sh --cmin [TARGET...]                   fold work/ into corpus/ and minimize it
#                                                      (by edge coverage), to commit
#
# Environment: FUZZ_SANITIZER=none (default) | address. `none` needs no unstable flag; `address`
# needs `-Zsanitizer=address`, which the stable compiler takes with RUSTC_BOOTSTRAP=1 (set here
# only then). Targets are built with debug assertions and overflow checks (-a).
#
# Prints one line per target (executions, corpus size, ok or CRASH) and exits non-zero when
# any target crashed, with the input's path and the commands that reproduce it.
set -uo pipefail

CARGO_FUZZ_VERSION=0.13.2
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
fuzz_dir="$root/tests/fuzz"
sanitizer="${FUZZ_SANITIZER:-none}"
[ "$sanitizer" = none ] || export RUSTC_BOOTSTRAP=1
flags=(--fuzz-dir "$fuzz_dir" -a -s "$sanitizer")

if ! cargo fuzz --version 2>/dev/null | grep -qF "$CARGO_FUZZ_VERSION"; then
  echo "fuzz: installing cargo-fuzz $CARGO_FUZZ_VERSION"
  cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked || exit 1
fi

cmin=0
if [ "${1:-}" = --cmin ]; then
  cmin=1
  shift
fi
seconds=30
if [[ "${1:-}" =~ ^[0-9]+$ ]]; then
  seconds="$1"
  shift
fi
if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo fuzz list --fuzz-dir "$fuzz_dir")
fi

echo "fuzz: building ${targets[*]} (sanitizer $sanitizer)"
cargo fuzz build "${flags[@]}" || { echo "fuzz: build failed"; exit 1; }

if [ "$cmin" = 1 ]; then
  for t in "${targets[@]}"; do
    mkdir -p "$fuzz_dir/corpus/$t"
    if [ -d "$fuzz_dir/work/$t" ]; then
      cp -n "$fuzz_dir/work/$t"/* "$fuzz_dir/corpus/$t"/ 2>/dev/null || true
    fi
    # Edge coverage only (no hit counts, no comparison operands): a small committed corpus.
    cargo fuzz cmin "${flags[@]}" "$t" "$fuzz_dir/corpus/$t" -- -use_counters=0 -use_cmp=0 \
      >"$fuzz_dir/work/$t.cmin.log" 2>&1 \
      || { echo "fuzz: cmin of $t failed (log: tests/fuzz/work/$t.cmin.log)"; exit 1; }
    echo "fuzz: $t corpus: $(find "$fuzz_dir/corpus/$t" -type f | wc -l) files, $(du -s --apparent-size -k "$fuzz_dir/corpus/$t" | cut -f1) KiB"
  done
  exit 0
fi

passed=0
failed=0
for t in "${targets[@]}"; do
  work="$fuzz_dir/work/$t"
  log="$fuzz_dir/work/$t.log"
  mkdir -p "$work" "$fuzz_dir/corpus/$t"
  # New inputs go to the first directory (work/), the committed corpus is only read.
  cargo fuzz run "${flags[@]}" "$t" "$work" "$fuzz_dir/corpus/$t" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1
  rc=$?
  execs=$(grep -oE 'stat::number_of_executed_units: [0-9]+' "$log" | grep -oE '[0-9]+$' | tail -n 1)
  if [ -z "$execs" ]; then
    execs=$(grep -oE '^#[0-9]+' "$log" | tail -n 1 | tr -d '#')
  fi
  took=$(grep -oE 'Done [0-9]+ runs in [0-9]+ second' "$log" | grep -oE '[0-9]+ second' | grep -oE '[0-9]+')
  units=$(find "$work" -type f | wc -l)
  if [ "$rc" -eq 0 ]; then
    passed=$((passed + 1))
    echo "fuzz $t: ok, ${execs:-0} executions in ${took:-$seconds} s, $units inputs in tests/fuzz/work/$t"
  else
    failed=$((failed + 1))
    artifact=$(grep -oE 'Test unit written to [^ ]+' "$log" | tail -n 1 | sed 's/^Test unit written to //')
    echo "fuzz $t: CRASH (exit $rc) after ${execs:-?} executions; log: $log"
    # The panic message, or libFuzzer's word (timeout, out of memory, signal).
    grep -m 1 -A 1 ' panicked at ' "$log" || grep -m 2 -E '==[0-9]+== ?ERROR|ALARM|out-of-memory' "$log" || true
    if [ -n "$artifact" ]; then
      echo "  input:     $artifact"
      echo "  show it:   cargo fuzz fmt ${flags[*]} $t $artifact"
      echo "  reproduce: cargo fuzz run ${flags[*]} $t $artifact"
      echo "  debug:     RUST_BACKTRACE=1 $fuzz_dir/target/x86_64-unknown-linux-gnu/release/$t $artifact"
    fi
  fi
done

echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
