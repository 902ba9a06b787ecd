#!/usr/bin/env bash
# The README's first command (`npm install && npm run walkthrough`): the set-up, then the main job end to end.
#   Set-up: `pgbyok doctor` names what is missing and, as root, `pgbyok doctor --fix` installs it (without root
#   the doctor only reports, and the run does the vault part only); then `pgbyok up` starts under $PGBYOK_HOME.
#   1. an identity, a vault with purge protection, a key and the access policy; 2. a server encrypted under the
#   key, rows written with psql; 3. the key disabled: Inaccessible, psql refused with the reason; 4. the key
#   enabled: the rows are back; 5. the key rotated: the server re-wraps its DEK; 6. the audit log; 7. the server
#   deleted (crypto-shredding). pgbyok keeps running afterwards (PGBYOK_WALKTHROUGH_KEEP=0 stops it).
set -euo pipefail
cd "$(dirname "$0")/.."
# The CLI's own default: ~/.pgbyok, or /var/lib/pgbyok as root (root's home is private, and each server's OS
# account must reach its data directory inside the home).
if [ "$(id -u)" = 0 ]; then export PGBYOK_HOME="${PGBYOK_HOME:-/var/lib/pgbyok}"; else export PGBYOK_HOME="${PGBYOK_HOME:-$HOME/.pgbyok}"; fi
PGBYOK="./bin/pgbyok"
KEEP="${PGBYOK_WALKTHROUGH_KEEP:-1}"
source scripts/lib-walkthrough.sh
trap on_exit EXIT
trap 'exit 130' INT TERM

[ -f dist/src/cli/main.js ] || npm run build > /dev/null

SUFFIX=$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
VAULT="kv-walk-$SUFFIX"
IDENTITY="id-walk-$SUFFIX"
SERVER="pg-walk-$SUFFIX"
LOCATION=eastus

# --- Set-up -------------------------------------------------------------------------------------------------
# `pgbyok status`: 0 serving, 3 not running; anything else (4: running, but this CLI is not signed in) stops here.
MODE=servers
STATUS=0
"$PGBYOK" status > /dev/null 2>&1 || STATUS=$?
if [ $STATUS = 0 ]; then
  step "Set-up: pgbyok is already running under $PGBYOK_HOME (it checked the prerequisites when it started)"
  [ "$(id -u)" = 0 ] || MODE=vaults
  run status -o table
elif [ $STATUS != 3 ]; then
  run status || fail "pgbyok runs under $PGBYOK_HOME, but the CLI cannot act on it (see above)."
else
  step "Set-up: check every prerequisite$([ "$(id -u)" = 0 ] && echo ', and install what is missing')"
  if run doctor; then
    :
  elif [ "$(id -u)" = 0 ]; then
    say "Installing what is missing (Debian packages, non-interactively; pgbyok's PostgreSQL module), then checking again:"
    run doctor --fix || fail "the set-up is not complete: the doctor names above what it could not fix (MISSING ... — fix: ...); fix that, then run again."
  else
    MODE=vaults
    say "Encrypted servers need root (loop devices, fscrypt, an OS account per server), and installing packages does"
    say "too. This run does the vault part only. For the whole job, as root: sudo npm run walkthrough"
    show_cmd pgbyok doctor --vaults-only -o none
    "$PGBYOK" doctor --vaults-only -o none || { run doctor --vaults-only || true; fail "even the vault part cannot run here: fix what the doctor names above, then run again."; }
    say "(what a platform of vaults only needs is all there)"
  fi
  step "Start pgbyok (identity service, management API, key vaults$([ $MODE = servers ] && echo ', PostgreSQL servers')) under $PGBYOK_HOME"
  if [ $MODE = servers ]; then start_platform; else start_platform --vaults-only; fi
fi

# --- 1. The customer's key ----------------------------------------------------------------------------------
step "1. An identity for the server, a vault with purge protection (90 days), a key, and the identity's access policy"
show_cmd pgbyok identity create --name "$IDENTITY"
ID_JSON=$("$PGBYOK" identity create --name "$IDENTITY")
OBJECT_ID=$(field o.principalId <<< "$ID_JSON")
say "identity $IDENTITY: clientId $(field o.clientId <<< "$ID_JSON"), principalId $OBJECT_ID"
show_cmd pgbyok vault create --name "$VAULT" --location "$LOCATION" --retention-days 90 --enable-purge-protection
"$PGBYOK" vault create --name "$VAULT" --location "$LOCATION" --retention-days 90 --enable-purge-protection \
  | field '`vault ${o.properties.vaultUri}: soft-delete ${o.properties.softDeleteRetentionInDays} days, purge protection ${o.properties.enablePurgeProtection ? "on" : "off"}`' \
  | sed 's/^/   /'
show_cmd pgbyok key create --vault-name "$VAULT" --name kek --kty RSA --size 2048
KID=$(ask o.key.kid key create --vault-name "$VAULT" --name kek --kty RSA --size 2048)
KEY_URI=${KID%/*}
say "key $KID (RSA 2048)"
run vault set-policy --name "$VAULT" --object-id "$OBJECT_ID" --key-permissions get list wrapKey unwrapKey -o none
say "the identity may get, list, wrapKey and unwrapKey the vault's keys"

if [ $MODE = vaults ]; then
  source scripts/lib-walkthrough-vaults.sh
  vault_steps
else
  # --- 2. The server ----------------------------------------------------------------------------------------
  step "2. A PostgreSQL 15 server whose data-encryption key (DEK) is wrapped by that key; rows written with psql"
  say "(the key URI has no version: the server follows the key's rotation)"
  show_cmd pgbyok server create --name "$SERVER" --location "$LOCATION" --admin-user dbadmin --key "$KEY_URI" --identity "$IDENTITY" --storage-size 1
  SRV_JSON=$("$PGBYOK" server create --name "$SERVER" --location "$LOCATION" --admin-user dbadmin --key "$KEY_URI" --identity "$IDENTITY" --storage-size 1)
  PASSWORD=$(field o.administratorLoginPassword <<< "$SRV_JSON")
  PORT=$(field o.properties.port <<< "$SRV_JSON")
  say "server $SERVER is $(field o.properties.state <<< "$SRV_JSON"), key status $(field o.properties.dataEncryption.primaryEncryptionKeyStatus <<< "$SRV_JSON")"
  say "connect: host localhost, port $PORT, user dbadmin, password $PASSWORD (generated, shown once), TLS verified with $PGBYOK_HOME/tls/ca.pem"
  CONN="host=localhost port=$PORT dbname=postgres user=dbadmin sslmode=verify-full sslrootcert=$PGBYOK_HOME/tls/ca.pem"
  sql() { show_cmd psql "$CONN" -c "$1"; PGPASSWORD="$PASSWORD" psql "$CONN" -X -q -v ON_ERROR_STOP=1 -c "$1"; }
  sql "CREATE TABLE notes (id serial PRIMARY KEY, body text); INSERT INTO notes (body) VALUES ('encrypted at rest'), ('under the customer''s key'), ('in a vault the customer controls');"
  sql "SELECT count(*) AS rows_written FROM notes;"

  # --- 3. Key disabled ------------------------------------------------------------------------------------
  step "3. The customer disables the key: the server becomes Inaccessible, and psql is refused with the reason"
  run key set-attributes --vault-name "$VAULT" --name kek --enabled false -o none
  wait_state Inaccessible
  say "server $SERVER is Inaccessible: $(ask o.properties.inaccessibleReason server show --name "$SERVER")"
  show_cmd psql "$CONN" -c "SELECT * FROM notes;"
  if REFUSED=$(PGPASSWORD="$PASSWORD" psql "$CONN" -X -c "SELECT * FROM notes;" 2>&1); then fail "the server answered with its key disabled"; fi
  printf '%s\n' "$REFUSED" | sed 's/^/   /'

  # --- 4. Key enabled -------------------------------------------------------------------------------------
  step "4. The customer enables the key: the server is Ready again, and every row is back"
  run key set-attributes --vault-name "$VAULT" --name kek --enabled true -o none
  say "(the key monitor sees access return and revalidates by itself; revalidate does it at once)"
  run server revalidate --name "$SERVER" -o none
  wait_state Ready
  sql "SELECT * FROM notes ORDER BY id;"

  # --- 5. Key rotated -------------------------------------------------------------------------------------
  step "5. The customer rotates the key: the server re-wraps its DEK under the new version (no data is re-encrypted)"
  show_cmd pgbyok key rotate --vault-name "$VAULT" --name kek
  NEW_KID=$(ask o.key.kid key rotate --vault-name "$VAULT" --name kek)
  say "new key version: ${NEW_KID##*/} (the DEK was wrapped by ${KID##*/})"
  show_cmd pgbyok activity-log list --resource "$SERVER"
  say "(every second, until the re-wrap shows)"
  REWRAP="" deadline=$((SECONDS + 60))
  while [ -z "$REWRAP" ] && [ $SECONDS -lt $deadline ]; do
    REWRAP=$(ask "o.filter((e) => e.operation.endsWith('/dataEncryption/rewrap') && e.message.includes('-> $NEW_KID')).map((e) => e.message)[0] ?? ''" activity-log list --resource "$SERVER" --top 20) || true
    [ -n "$REWRAP" ] || sleep 1
  done
  [ -n "$REWRAP" ] || fail "server $SERVER did not re-wrap its DEK under $NEW_KID within 60 s"
  say "$REWRAP"
  say "the DEK is now wrapped by key version ${NEW_KID##*/} (was ${KID##*/})"
  wait_state Ready
  sql "SELECT count(*) AS rows_after_rotation FROM notes;"

  # --- 6. Audit -------------------------------------------------------------------------------------------
  audit_step
  say "and what happened to the server, from its activity log:"
  show_cmd pgbyok activity-log list --resource "$SERVER" --top 12
  ask "o.map((e) => \`   \${e.time}  \${e.status.padEnd(9)}  \${e.message}\`).join('\n')" activity-log list --resource "$SERVER" --top 12

  # --- 7. Delete: crypto-shredding ------------------------------------------------------------------------
  step "7. Delete the server: crypto-shredding"
  say "Its data exists only as ciphertext under its DEK, and the DEK only wrapped by the customer's key. Deleting the"
  say "server erases the wrapped DEK and destroys its volume and backups: no copy of its disk can be decrypted again."
  run server delete --name "$SERVER" --yes -o none
  say "$(ask "o.find((e) => e.operation.endsWith('flexibleServers/delete') && e.status === 'Succeeded')?.message ?? ''" activity-log list --resource "$SERVER" --top 3)"
  if "$PGBYOK" server show --name "$SERVER" > /dev/null 2>&1; then fail "server $SERVER still exists"; fi
  [ ! -e "$PGBYOK_HOME/regions/$LOCATION/volumes/$SERVER.img" ] || fail "the volume of $SERVER is still there"
  say "server $SERVER: not found; its volume image $PGBYOK_HOME/regions/$LOCATION/volumes/$SERVER.img: gone"
fi

# --- The end ------------------------------------------------------------------------------------------------
if [ "$KEEP" = 0 ]; then
  step "Done. Stopping the pgbyok this walkthrough started."
elif [ -n "$UP_PID" ]; then
  step "Done. pgbyok keeps running (pid $UP_PID) under $PGBYOK_HOME; stop it with: kill $UP_PID"
  say "Its vault $VAULT and identity $IDENTITY stay; try the by-hand walkthrough in README.md against it."
  say "Use the official Azure SDKs against it: export NODE_EXTRA_CA_CERTS=$PGBYOK_HOME/tls/ca.pem"
  disown "$UP_PID" 2> /dev/null || true
  UP_PID=""
else
  PID=$(cat "$PGBYOK_HOME/pgbyok.pid" 2> /dev/null || echo '?')
  step "Done. pgbyok was already running (pid $PID) under $PGBYOK_HOME and keeps running; stop it with: kill $PID"
fi
