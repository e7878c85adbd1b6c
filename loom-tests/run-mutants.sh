#!/usr/bin/env bash
# Runs every loom model (each must pass) and, for every model, its mutant
# (each must fail, and fail in the model: an assertion of loom-tests or a
# deadlock found by loom, never a compile error or a loom limit).
# Prints a summary; exits 1 on any unexpected result.
#
#   loom-tests/run-mutants.sh            bounded (the preemption bounds in
#                                        tests/models.rs), as CI runs it
#   LOOM_UNBOUNDED=1 loom-tests/run-mutants.sh   no preemption bound (slow)
#   loom-tests/run-mutants.sh NAME...    only these mutants (and all models)
#
# Each mutant is a separate build (RUSTFLAGS differ), so most of the time
# goes to compiling: see README.md for timings.
set -uo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
TARGET=${CARGO_TARGET_DIR:-target/loom}
LOG=$(mktemp -d "${TMPDIR:-/tmp}/loom-mutants.XXXXXX")
trap 'rm -rf "$LOG"' EXIT

# model : mutant (a model of tests/models.rs, or TEST/model for another
# test file of loom-tests/tests)
PAIRS=(
    lock_three_contenders:lock_drops_contended
    lock_three_contenders:no_lock_wake
    blocking_p_races_v:no_waiters_bit
    zero_wait_races_decrement:no_wake
    fast_op_races_global:no_global_marks
    snapshot_races_multi_op:snapshot_no_seq_recheck
    snapshot_races_fast_ops:snapshot_single_read
    stat_races_set_perm:stat_no_fence
    timeout_races_waker:cancel_no_recheck
    slot_reuse:cancel_no_dequeue
    rmid_races_sleeper:rmid_no_removed_check
    dead_undo_races_waker:reap_no_dequeue
    dead_waiter_never_completes:complete_dead_waiter
    recovery_after_each_write:no_redo
    timeout_races_waker:completion_ignores_withdrawal
    stopped_holder_timeout:cancel_waits_for_lock
    lock_deadline_behind_holder:lock_ignores_deadline
    committed_read_after_each_write:committed_no_overlay
    committed_read_after_each_write:no_applying_serial
    reclaim/reader_races_reclaim:protect_after_load
    reclaim/reader_races_reclaim:reclaim_no_fence
    reclaim/reader_races_reclaim:scan_ignored
    reclaim/reader_races_reclaim:unpin_keeps_hazard
    reclaim/install_races_reclaim:announce_after_install
    reclaim/heavy_reader_races_reclaim:heavy_no_fence
)

summary=()
bad=0
start_all=$SECONDS

# 1. The models, unmutated: each must pass.
t0=$SECONDS
if RUSTFLAGS="--cfg shmsem_loom" CARGO_TARGET_DIR="$TARGET" \
    cargo test -q -p loom-tests --release --test models --test reclaim -- --test-threads=1 --nocapture \
    >"$LOG/models.out" 2>&1; then
    summary+=("PASS  all models pass unmutated ($((SECONDS - t0)) s)")
else
    summary+=("FAIL  the unmutated models do not all pass (output below)")
    bad=1
    cat "$LOG/models.out"
fi
grep -o 'model [a-z_0-9]*: .*' "$LOG/models.out" | sed 's/^/      /' >"$LOG/models.sum"

# 2. Each mutant: its model must fail, by an assertion or a deadlock.
for pair in "${PAIRS[@]}"; do
    model=${pair%%:*}
    mutant=${pair#*:}
    test=models
    if [[ $model == */* ]]; then
        test=${model%%/*}
        model=${model#*/}
    fi
    if [ $# -gt 0 ] && ! printf '%s\n' "$@" | grep -qx "$mutant"; then
        continue
    fi
    t0=$SECONDS
    flags="--cfg shmsem_loom --cfg shmsem_mutant=\"$mutant\""
    out="$LOG/$mutant.out"
    if ! RUSTFLAGS="$flags" CARGO_TARGET_DIR="$TARGET" \
        cargo test -q -p loom-tests --release --test "$test" --no-run >"$out" 2>&1; then
        summary+=("ERROR mutant $mutant does not compile")
        bad=1
        cat "$out"
        continue
    fi
    if RUSTFLAGS="$flags" CARGO_TARGET_DIR="$TARGET" \
        cargo test -q -p loom-tests --release --test "$test" -- --exact "$model" --nocapture \
        >"$out" 2>&1; then
        summary+=("FAIL  mutant $mutant survives model $model ($((SECONDS - t0)) s)")
        bad=1
        continue
    fi
    # The first panic decides: a model assertion (in loom-tests/) or a
    # deadlock reported by loom is the expected kind of failure.
    first=$(grep -m1 -A1 'panicked at' "$out" | tr '\n' ' ')
    if grep -q 'deadlock; threads' "$out"; then
        why="deadlock"
    elif [[ $first == *"panicked at loom-tests/"* ]]; then
        why="assertion: $(grep -m1 -A1 'panicked at' "$out" | tail -1 | cut -c1-90)"
    else
        summary+=("ERROR mutant $mutant fails model $model for another reason: $first")
        bad=1
        continue
    fi
    summary+=("PASS  mutant $mutant kills model $model ($((SECONDS - t0)) s): $why")
done

echo "== loom models and mutants ($((SECONDS - start_all)) s)"
printf '%s\n' "${summary[@]}"
echo "== executions explored by the unmutated models"
cat "$LOG/models.sum"
exit $bad
