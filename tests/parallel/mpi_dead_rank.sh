#!/usr/bin/env bash
# A rank that stalls before a collective must make the others throw a weft::Error
# naming it within the timeout (1 s), not hang. Runs build/tests/mpi_dead_rank under
# mpirun with 3 ranks; prints PASS or FAIL per case; exit status 0 when all passed.
#   stall  rank 2 sleeps instead of calling allreduce #1: ranks 0 and 1 must both say
#          "allreduce #1: rank 2 did not arrive within 1000 ms"
#   kill   rank 2 dies of SIGKILL: mpirun notices and ends the job; it must end (not
#          hang), and if the others got to report first it is with the same message
# Usage: tests/parallel/mpi_dead_rank.sh [BUILD_DIR]   (default build)
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
bin=${1:-build}/tests/mpi_dead_rank
if ! command -v mpirun >/dev/null; then echo "SKIP mpi_dead_rank: mpirun not installed"; exit 0; fi
[ -x "$bin" ] || { echo "FAIL mpi_dead_rank: $bin not built"; exit 1; }
mpirun_cmd=(mpirun --oversubscribe -np 3)
[ "$(id -u)" = 0 ] && mpirun_cmd+=(--allow-run-as-root)
status=0
expect="allreduce #1: rank 2 did not arrive within 1000 ms"

t0=$SECONDS
out=$(timeout 50 "${mpirun_cmd[@]}" "$bin" stall 2>&1)
n=$(grep -c "caught after .* ms: $expect" <<<"$out")
if [ "$n" -eq 2 ] && [ $((SECONDS - t0)) -lt 40 ]; then
  echo "PASS mpi_dead_rank/stall ($((SECONDS - t0)) s): $(grep -m1 'rank 0 caught' <<<"$out")"
else
  echo "FAIL mpi_dead_rank/stall: $n of 2 ranks reported \"$expect\""; echo "$out" | tail -20; status=1
fi

t0=$SECONDS
out=$(timeout 50 "${mpirun_cmd[@]}" "$bin" kill 2>&1)
rc=$?
if [ "$rc" -ne 124 ] && ! grep -q "returned without" <<<"$out" &&
   { ! grep -q "caught after" <<<"$out" || grep -q "$expect" <<<"$out"; }; then
  echo "PASS mpi_dead_rank/kill ($((SECONDS - t0)) s, mpirun status $rc): $(grep -m1 -E 'caught after|noticed|killed' <<<"$out")"
else
  echo "FAIL mpi_dead_rank/kill (status $rc)"; echo "$out" | tail -20; status=1
fi
exit $status
