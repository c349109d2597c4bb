# Shared by ops/ scripts.

# build_quietly LABEL ARGS…: runs `swift build ARGS…`, printing progress every 200 steps and the
# errors (with the log's place) if it fails.
build_quietly() {
  local label=$1; shift
  local log=.topsail/build-$label.log
  mkdir -p .topsail
  set +e
  swift build "$@" 2>&1 | tee "$log" | awk -v label="$label" '
    /^\[[0-9]+\/[0-9]+\]/ { step = $1; gsub(/[\[\]]/, "", step); split(step, p, "/"); if (p[1] - last >= 200) { last = p[1]; printf "%s: building %s/%s\n", label, p[1], p[2]; fflush() } }
    /Build complete|Compiling.*error/ { print label ": " $0; fflush() }'
  local status=${PIPESTATUS[0]}
  set -e
  if [ "$status" -ne 0 ]; then
    grep -E "error:" "$log" | sort -u | head -40 >&2
    echo "$label: the build failed; the whole output is in $log" >&2
    return 1
  fi
}
