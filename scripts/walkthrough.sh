#!/usr/bin/env bash
# A five-minute tour: start pgbyok, make an identity, a vault and a key-encryption key, let the identity
# wrap and unwrap a data-encryption key, show that the customer's key decides (disable it and the unwrap is
# refused; rotate it and old wraps still open), then create a PostgreSQL server encrypted under that key,
# disable the key and watch the server go Inaccessible, enable it and read every row back. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
export PGBYOK_HOME="${PGBYOK_HOME:-$HOME/.pgbyok}"
PGBYOK="./bin/pgbyok"
KEEP="${PGBYOK_WALKTHROUGH_KEEP:-1}"
json() { node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const o=JSON.parse(s);console.log(process.argv[1].split(".").reduce((a,k)=>a[k],o))})' "$1"; }
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ pgbyok %s\n' "$*" >&2; "$PGBYOK" "$@"; }

[ -f dist/src/cli/main.js ] || npm run build >/dev/null

step "Start pgbyok (identity service, management API, key vaults) under $PGBYOK_HOME"
UP_PID=""
if "$PGBYOK" status >/dev/null 2>&1; then
  echo "pgbyok is already running."
else
  mkdir -p "$PGBYOK_HOME"
  "$PGBYOK" up > "$PGBYOK_HOME/up.out" 2>&1 &
  UP_PID=$!
  for _ in $(seq 1 100); do "$PGBYOK" status >/dev/null 2>&1 && break; sleep 0.2; done
  cat "$PGBYOK_HOME/up.out"
fi
cleanup() { if [ "$KEEP" = 0 ] && [ -n "$UP_PID" ]; then kill "$UP_PID" 2>/dev/null || true; wait "$UP_PID" 2>/dev/null || true; fi; }
trap cleanup EXIT
run status -o table

SUFFIX=$(date +%s | tail -c 6)
VAULT="kv-demo-$SUFFIX"
IDENTITY="pg-server-$SUFFIX"

step "The DBA makes a user-assigned identity for a PostgreSQL server (its secret is shown once)"
run identity create --name "$IDENTITY" -o json | tee "$PGBYOK_HOME/$IDENTITY.json"
CLIENT_ID=$(json clientId < "$PGBYOK_HOME/$IDENTITY.json")
SECRET=$(json clientSecret < "$PGBYOK_HOME/$IDENTITY.json")
OBJECT_ID=$(json principalId < "$PGBYOK_HOME/$IDENTITY.json")

step "The security officer makes a vault with soft-delete (90 days) and purge protection, as the seeds require"
run vault create --name "$VAULT" --location eastus --retention-days 90 --enable-purge-protection -o table

step "...a 2048-bit RSA key-encryption key (KEK)"
run key create --vault-name "$VAULT" --name kek --kty RSA --size 2048 -o table

step "...and grants the server's identity get, list, wrapKey and unwrapKey on the vault"
run vault set-policy --name "$VAULT" --object-id "$OBJECT_ID" --key-permissions get list wrapKey unwrapKey -o none

step "Acting as the server's identity: wrap a fresh 32-byte DEK with the KEK, then unwrap it"
run login --client-id "$CLIENT_ID" --client-secret "$SECRET" -o none
DEK=$(node -e 'console.log(require("crypto").randomBytes(32).toString("base64"))')
run key wrap --vault-name "$VAULT" --name kek --value "$DEK" | tee "$PGBYOK_HOME/wrapped.json"
WRAPPED=$(json result < "$PGBYOK_HOME/wrapped.json")
KID=$(json kid < "$PGBYOK_HOME/wrapped.json")
VERSION=${KID##*/}
UNWRAPPED=$(run key unwrap --vault-name "$VAULT" --name kek --version "$VERSION" --value "$WRAPPED" | json result)
[ "$UNWRAPPED" = "$DEK" ] && echo "unwrapped DEK matches the original."
run logout

step "The customer disables the key: the server's identity can no longer unwrap its DEK"
run key set-attributes --vault-name "$VAULT" --name kek --enabled false -o none
run login --client-id "$CLIENT_ID" --client-secret "$SECRET" -o none
if "$PGBYOK" key unwrap --vault-name "$VAULT" --name kek --version "$VERSION" --value "$WRAPPED" 2>&1; then
  echo "unexpected: unwrap worked with a disabled key"; exit 1
fi
run logout

step "Enable it again, rotate it: the new version wraps new DEKs, the old version still opens old ones"
run key set-attributes --vault-name "$VAULT" --name kek --enabled true -o none
run key rotate --vault-name "$VAULT" --name kek -o table
run key list-versions --vault-name "$VAULT" --name kek -o table
run login --client-id "$CLIENT_ID" --client-secret "$SECRET" -o none
AGAIN=$(run key unwrap --vault-name "$VAULT" --name kek --version "$VERSION" --value "$WRAPPED" | json result)
[ "$AGAIN" = "$DEK" ] && echo "the DEK wrapped before the rotation still unwraps."
run logout

SERVER="pg-demo-$SUFFIX"
PASSWORD="Demo-$SUFFIX-pass!"
KEY_URI=$(run key show --vault-name "$VAULT" --name kek | json key.kid | sed 's#/[0-9a-f]*$##')
step "The DBA creates a PostgreSQL 15 server whose DEK is wrapped by the customer's key (versionless: it follows rotation)"
run server create --name "$SERVER" --location eastus --admin-user dbadmin --admin-password "$PASSWORD" \
  --key "$KEY_URI" --identity "$IDENTITY" -o json > "$PGBYOK_HOME/server.json"
PORT=$(json properties.port < "$PGBYOK_HOME/server.json")
run server list -o table
CONN="host=localhost port=$PORT dbname=postgres user=dbadmin sslmode=verify-full sslrootcert=$PGBYOK_HOME/tls/ca.pem"
psql_demo() { printf '$ psql "%s" -c "%s"\n' "$CONN" "$1" >&2; PGPASSWORD="$PASSWORD" psql "$CONN" -X -c "$1"; }
psql_demo "CREATE TABLE notes (id serial PRIMARY KEY, body text); INSERT INTO notes (body) VALUES ('encrypted at rest under the customer''s key');"

wait_state() {
  for _ in $(seq 1 100); do
    [ "$("$PGBYOK" server show --name "$SERVER" | json properties.state)" = "$1" ] && return 0
    sleep 0.2
  done
  echo "the server did not become $1"; exit 1
}
step "The customer disables the key: the server goes Inaccessible within seconds and refuses connections, saying why"
run key set-attributes --vault-name "$VAULT" --name kek --enabled false -o none
wait_state Inaccessible
run server show --name "$SERVER" -o table
if psql_demo "SELECT * FROM notes;"; then echo "unexpected: the server answered with its key disabled"; exit 1; fi

step "The customer enables the key again; revalidate (the monitor would also do it by itself): every row is back"
run key set-attributes --vault-name "$VAULT" --name kek --enabled true -o none
run server revalidate --name "$SERVER" -o none || true
wait_state Ready
psql_demo "SELECT * FROM notes;"
run activity-log list --resource "$SERVER" --top 8 -o table

step "Every request is in the tamper-evident audit log"
run audit list --vault-name "$VAULT" --top 12 -o table
run audit verify -o table

rm -f "$PGBYOK_HOME/$IDENTITY.json" "$PGBYOK_HOME/wrapped.json" "$PGBYOK_HOME/server.json"
if [ "$KEEP" = 0 ]; then
  step "Delete the server: its volume is destroyed and its wrapped DEK erased (crypto-shredding)"
  run server delete --name "$SERVER" --yes -o none
fi
if [ "$KEEP" = 0 ] || [ -z "$UP_PID" ]; then
  step "Done."
else
  step "Done. pgbyok keeps running (pid $UP_PID); stop it with: kill $UP_PID"
  echo "Connect to the server: PGPASSWORD='$PASSWORD' psql \"$CONN\""
  echo "Use the official Azure SDKs against it: export NODE_EXTRA_CA_CERTS=$PGBYOK_HOME/tls/ca.pem"
  trap - EXIT
  disown "$UP_PID" 2>/dev/null || true
fi
