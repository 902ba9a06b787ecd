# The vault part of scripts/walkthrough.sh, for a run without root (sourced): no server can run, so what a
# server does with its key is done by hand, as the server's identity: wrap a DEK, unwrap it, be refused while
# the key is disabled, and still open the old wrap after a rotation. Expects the names set by walkthrough.sh.

vault_steps() {
  local client_id secret dek wrapped version again
  client_id=$(field o.clientId <<< "$ID_JSON")
  secret=$(field o.clientSecret <<< "$ID_JSON")

  step "2. (vaults only) Acting as the server's identity: wrap a fresh 32-byte DEK with the key, then unwrap it"
  run login --client-id "$client_id" --client-secret "$secret" -o none
  SIGNED_IN=1
  dek=$(openssl rand -base64 32)
  show_cmd pgbyok key wrap --vault-name "$VAULT" --name kek --value "$dek"
  wrapped=$(ask o.result key wrap --vault-name "$VAULT" --name kek --value "$dek")
  version=${KID##*/}
  show_cmd pgbyok key unwrap --vault-name "$VAULT" --name kek --version "$version" --value "<the wrapped DEK>"
  [ "$(ask o.result key unwrap --vault-name "$VAULT" --name kek --version "$version" --value "$wrapped")" = "$dek" ] || fail "the unwrapped DEK differs"
  say "unwrapped DEK matches the original."
  run logout -o none
  SIGNED_IN=""

  step "3. (vaults only) The customer disables the key: the identity can no longer unwrap its DEK"
  run key set-attributes --vault-name "$VAULT" --name kek --enabled false -o none
  run login --client-id "$client_id" --client-secret "$secret" -o none
  SIGNED_IN=1
  show_cmd pgbyok key unwrap --vault-name "$VAULT" --name kek --version "$version" --value "<the wrapped DEK>"
  if again=$("$PGBYOK" key unwrap --vault-name "$VAULT" --name kek --version "$version" --value "$wrapped" 2>&1); then fail "unwrap worked with a disabled key"; fi
  say "$again"
  run logout -o none
  SIGNED_IN=""

  step "4-5. (vaults only) The customer enables and rotates the key: the old version still opens the old wrap"
  run key set-attributes --vault-name "$VAULT" --name kek --enabled true -o none
  show_cmd pgbyok key rotate --vault-name "$VAULT" --name kek
  say "new key version: $(ask 'o.key.kid.replace(/.*\//, "")' key rotate --vault-name "$VAULT" --name kek)"
  run login --client-id "$client_id" --client-secret "$secret" -o none
  SIGNED_IN=1
  show_cmd pgbyok key unwrap --vault-name "$VAULT" --name kek --version "$version" --value "<the wrapped DEK>"
  [ "$(ask o.result key unwrap --vault-name "$VAULT" --name kek --version "$version" --value "$wrapped")" = "$dek" ] || fail "the old wrap no longer opens"
  say "the DEK wrapped before the rotation still unwraps."
  run logout -o none
  SIGNED_IN=""

  audit_step
  say "Steps 2-5 and 7 with a real encrypted PostgreSQL server need root: sudo npm run walkthrough"
}
