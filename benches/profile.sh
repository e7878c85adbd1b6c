#!/usr/bin/env bash
# Where the time of shmsem's uncontended calls goes, in numbers that do not
# depend on the machine's load:
#   - user-space instructions per call (valgrind --tool=callgrind), and the
#     functions that execute them (exclusive and inclusive);
#   - system calls per call (strace -c), for shmsem and the kernel side.
# Each figure is the difference between a run of the scenario's loop with
# ITERS iterations and one with 0, so set-up and tear-down cancel out.
#
#   benches/profile.sh                  # every uncontended scenario
#   benches/profile.sh undo 2op         # some of them
#   ITERS=5000 benches/profile.sh single
#
# Needs valgrind and strace (apt-get install valgrind strace). Writes the
# callgrind files and annotations to benches/results/profile/ (ignored by git)
# and prints a summary table.
set -euo pipefail
cd "$(dirname "$0")/.."
ITERS=${ITERS:-20000}
scenarios=("$@")
[ ${#scenarios[@]} -gt 0 ] || scenarios=(single undo 2op 2op_undo 8op 8op_undo nowait getval getall)
out=benches/results/profile
mkdir -p "$out"

for tool in valgrind strace callgrind_annotate; do
  command -v "$tool" >/dev/null || { echo "profile.sh needs $tool (apt-get install valgrind strace)" >&2; exit 1; }
done

bin=$(cargo bench --bench suite --no-run 2>&1 | sed -n 's/.*Executable .*(\(.*\)).*/\1/p' | tail -1)
[ -x "$bin" ] || { echo "could not find the suite's executable" >&2; exit 1; }

calls_per_iter() {
  case $1 in
    nowait|getval|getall) echo 1 ;;
    *) echo 2 ;;
  esac
}

# Total instructions (Ir) of one callgrind run.
ir() {
  local file=$1
  shift
  env SHMSEM_BENCH_VALGRIND=1 "$@" valgrind --tool=callgrind --callgrind-out-file="$file" "$bin" >/dev/null 2>&1
  sed -n 's/^summary: *\([0-9]*\).*/\1/p' "$file"
}

# System calls of one run, as "name count" lines.
syscalls() {
  local file=$1
  shift
  env "$@" strace -f -qq -c -o "$file" "$bin" >/dev/null 2>&1
  awk '$1 ~ /^[0-9.]+$/ && NF >= 5 && $NF != "total" { print $NF, $4 }' "$file" | sort
}

# "name count" lines of run B minus run A, per call; only non-zero ones.
per_call_diff() {
  local a=$1 b=$2 n=$3
  join -a2 -e0 -o 0,1.2,2.2 <(echo "$a") <(echo "$b") |
    awk -v n="$n" '{ d = ($3 - $2) / n; if (d > 0.005) printf "%s %.2f, ", $1, d }'
}

declare -A sc
echo "Ir/call: user-space instructions per call (callgrind cannot see the kernel's own)"
printf '%-9s | %13s | %13s | %s\n' scenario "shmsem Ir/call" "kernel Ir/call" "system calls per call (shmsem; kernel)"
printf -- '%s\n' '----------+----------------+----------------+---------------------------------------'
for s in "${scenarios[@]}"; do
  calls=$(( ITERS * $(calls_per_iter "$s") ))
  line=$(printf "%-9s" "$s")
  for imp in shmsem kernel; do
    base=(SHMSEM_BENCH_PROFILE="$s" SHMSEM_BENCH_PROFILE_IMPL="$imp")
    i0=$(ir "$out/$s.$imp.0.cg" "${base[@]}" SHMSEM_BENCH_PROFILE_ITERS=0)
    i1=$(ir "$out/$s.$imp.cg" "${base[@]}" SHMSEM_BENCH_PROFILE_ITERS="$ITERS")
    line="$line | $(awk -v a="$i0" -v b="$i1" -v n="$calls" 'BEGIN { printf "%13.0f", (b - a) / n }')"
    s0=$(syscalls "$out/$s.$imp.0.strace" "${base[@]}" SHMSEM_BENCH_PROFILE_ITERS=0)
    s1=$(syscalls "$out/$s.$imp.strace" "${base[@]}" SHMSEM_BENCH_PROFILE_ITERS="$ITERS")
    sc[$imp]=$(per_call_diff "$s0" "$s1" "$calls")
    if [ "$imp" = shmsem ]; then
      callgrind_annotate --inclusive=no "$out/$s.$imp.cg" >"$out/$s.shmsem.exclusive.txt" 2>/dev/null || true
      callgrind_annotate --inclusive=yes "$out/$s.$imp.cg" >"$out/$s.shmsem.inclusive.txt" 2>/dev/null || true
    fi
  done
  printf '%s | %s; %s\n' "$line" "${sc[shmsem]:-none}" "${sc[kernel]:-none}"
done
echo
echo "Functions (exclusive / inclusive instructions) per scenario: $out/SCENARIO.shmsem.{exclusive,inclusive}.txt"
echo "(the totals there include set-up; the loop ran $ITERS iterations)"
