# shellcheck shell=bash
# Sourced by the test scripts: waiting for a condition with a deadline, never a bare sleep
# standing in for it.

# eventually SECONDS COMMAND...: runs COMMAND every $POLL_EVERY seconds (default 1) until it
# succeeds; returns 1 if SECONDS pass first.
eventually() {
    local seconds=$1 deadline
    shift
    deadline=$((SECONDS + seconds))
    until "$@"; do
        ((SECONDS < deadline)) || return 1
        sleep "${POLL_EVERY:-1}"
    done
}

# output_to FILE COMMAND...: COMMAND with its output in FILE (the last try's words, for the
# message when it never succeeds).
output_to() {
    local file=$1
    shift
    "$@" >"$file" 2>&1
}
