#!/usr/bin/env bash
# Crash safety under kill -9: FR and JP as separate comityd processes, one
# killed at random moments while the other sends it a stream of requests
# (and the reverse), outages longer than the replay window, wrong clocks;
# then every request delivered exactly once, receipts and audit logs
# verified, cases agreeing on both sides. The work is done by
# crash_test.py beside this script; see its docstring for what is checked.
#
#   tests/e2e/crash_test.sh SOURCE_DIR BIN_DIR [SCENARIOS]
#
# SCENARIOS: A,B,C (default; ctest crash_safety_script) or D (the clock
# scenario, which needs libfaketime; ctest crash_safety_clock).
#
# Reproduce a run with the seed it prints: COMITY_CRASH_SEED=N. Other knobs:
# COMITY_CRASH_REQUESTS, COMITY_CRASH_KILLS, COMITY_CRASH_SUBMITTERS,
# COMITY_CRASH_DRAIN_SECONDS, COMITY_CRASH_REPLAY_WINDOW, COMITY_CRASH_KEEP=1.
set -euo pipefail
[ $# -eq 2 ] || [ $# -eq 3 ] || { echo "usage: $0 SOURCE_DIR BIN_DIR [SCENARIOS]" >&2; exit 2; }
command -v python3 >/dev/null || { echo "$0: python3 is required (apt-get install python3)" >&2; exit 1; }
command -v openssl >/dev/null || { echo "$0: openssl is required (apt-get install openssl)" >&2; exit 1; }
exec python3 "$(dirname "$0")/crash_test.py" "$@"
