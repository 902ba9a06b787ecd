# Helpers of scripts/walkthrough.sh (sourced, not run): what it prints, and the platform it starts and stops.
# Expects PGBYOK_HOME, PGBYOK (the CLI) and KEEP to be set.

UP_PID=""       # the `pgbyok up` this run started ("" when it found one running)
SIGNED_IN=""    # set while the CLI acts as another principal (`pgbyok login`), so a failure signs out

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
say() { printf '   %s\n' "$*"; }
fail() { printf 'ERROR: %s\n' "$*" >&2; exit 1; }

# Prints a command line as a user would type it; the value after --client-secret is not shown.
show_cmd() {
  local out="\$" hide=""
  for a in "$@"; do
    if [ -n "$hide" ]; then out+=" ***"; hide=""; continue; fi
    [ "$a" = --client-secret ] && hide=1
    case "$a" in
      *[\"\$\`\\\!]*\'* | *\'*[\"\$\`\\\!]*) a=$(printf '%q' "$a") ;;
      *\'*) a="\"$a\"" ;;
      *[[:space:]\"\$\!\;\*\?\(\)\<]*) a="'$a'" ;;
    esac
    out+=" $a"
  done
  printf '%s\n' "$out"
}
# Runs `pgbyok ARGS`, after printing it.
run() { show_cmd pgbyok "$@"; "$PGBYOK" "$@"; }
# Runs `pgbyok ARGS` quietly and prints the value of a JavaScript expression over its JSON output `o`.
ask() { local expr=$1; shift; "$PGBYOK" "$@" | field "$expr"; }
# Prints the value of a JavaScript expression over the JSON document `o` on stdin.
field() { node -e 'const o = JSON.parse(require("fs").readFileSync(0, "utf8")); const v = new Function("o", `return (${process.argv[1]})`)(o); if (v !== undefined) console.log(typeof v === "string" ? v : JSON.stringify(v))' "$1"; }

# Waits up to $2 seconds (default 60) until the server's state is $1, polling `pgbyok server show`.
wait_state() {
  local want=$1 deadline=$((SECONDS + ${2:-60})) state=""
  say "(pgbyok server show --name $SERVER, every second until its state is $want)"
  while [ $SECONDS -lt $deadline ]; do
    state=$(ask o.properties.state server show --name "$SERVER") || true
    [ "$state" = "$want" ] && return 0
    sleep 1
  done
  fail "server $SERVER did not become $want within ${2:-60} s (state: ${state:-unknown})"
}

# Step 6 (both modes): the vault's audit log, its refusals, and the check of its hash chain.
audit_step() {
  step "6. The audit log: every use of the key (by whom, allowed or refused), in a tamper-evident chain"
  run audit list --vault-name "$VAULT" --top 10 -o table
  say "the requests it refused (the server's identity's, while the key was disabled):"
  run audit list --vault-name "$VAULT" --result Failure -o table
  run audit verify -o table
}

show_log_tail() {
  [ -f "$PGBYOK_HOME/up.out" ] && { echo "--- end of $PGBYOK_HOME/up.out:" >&2; tail -n 20 "$PGBYOK_HOME/up.out" >&2; }
  [ -f "$PGBYOK_HOME/logs/pgbyok.log" ] && { echo "--- end of $PGBYOK_HOME/logs/pgbyok.log:" >&2; tail -n 20 "$PGBYOK_HOME/logs/pgbyok.log" >&2; }
  return 0
}

# Starts `pgbyok up ARGS` in the background under $PGBYOK_HOME and waits until `pgbyok status` says it serves.
start_platform() {
  mkdir -p "$PGBYOK_HOME"
  show_cmd pgbyok up "$@" '>' "$PGBYOK_HOME/up.out" '2>&1' '&'
  "$PGBYOK" up "$@" > "$PGBYOK_HOME/up.out" 2>&1 &
  UP_PID=$!
  echo '$ until pgbyok status >/dev/null 2>&1; do sleep 1; done'
  local deadline=$((SECONDS + 60))
  until "$PGBYOK" status > /dev/null 2>&1; do
    if ! kill -0 "$UP_PID" 2> /dev/null; then
      wait "$UP_PID" || true
      UP_PID=""
      show_log_tail
      fail "pgbyok up exited before serving (see above)"
    fi
    [ $SECONDS -lt $deadline ] || { show_log_tail; fail "pgbyok up did not serve within 60 s"; }
    sleep 1
  done
  sed -En '/^(Vaults only|pgbyok is up\.)/,/^Stop with/p' "$PGBYOK_HOME/up.out" | sed 's/^/   /'
}

# Stops the `pgbyok up` this run started (SIGTERM: it stops its servers, locks and detaches their volumes).
stop_platform() {
  [ -n "$UP_PID" ] || return 0
  kill -TERM "$UP_PID" 2> /dev/null || true
  local deadline=$((SECONDS + 60))
  while kill -0 "$UP_PID" 2> /dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.5; done
  if kill -0 "$UP_PID" 2> /dev/null; then
    echo "pgbyok up (pid $UP_PID) did not stop within 60 s; it is still running" >&2
  else
    wait "$UP_PID" 2> /dev/null || true
    echo "pgbyok (pid $UP_PID) stopped."
  fi
  UP_PID=""
}

# On any exit: sign out if signed in as another principal; stop what this run started when it failed or
# when KEEP=0; on a failure say so, with the end of the platform's log.
on_exit() {
  local rc=$?
  trap - EXIT
  [ -n "$SIGNED_IN" ] && "$PGBYOK" logout -o none 2> /dev/null
  if [ $rc -ne 0 ]; then
    printf '\nThe walkthrough stopped with an error (exit %s).\n' "$rc" >&2
    [ -n "$UP_PID" ] && show_log_tail
  fi
  if [ $rc -ne 0 ] || [ "$KEEP" = 0 ]; then stop_platform; fi
  exit $rc
}
