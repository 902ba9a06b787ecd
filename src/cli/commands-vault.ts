import { createPrivateKey } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import type { Command } from 'commander';
import { CliContext, CliError } from './client.js';
import { action, parseBool, parseIntArg, parseTags, parseTime } from './run.js';
import { API_VERSIONS, Arm, armOf, defaultGroupName, parseArmId, TYPES, withGroup, withResourceGroup, type ScopeOptions } from './arm.js';

const VAULTS = 'providers/Microsoft.KeyVault/vaults';
const VAULT = TYPES.vault;
const KV_API = API_VERSIONS.keyVault;
const enc = encodeURIComponent;

type Target = { vaultName?: string; vaultUri?: string; hsmName?: string };

/** The data-plane URI a key command addresses: a vault (found by name, or its URI) or a managed HSM (by name). */
async function resolveVault(ctx: CliContext, o: Target): Promise<string> {
  if ([o.vaultName, o.vaultUri, o.hsmName].filter((x) => x !== undefined).length > 1) throw new CliError('Name one of --vault-name, --vault-uri or --hsm-name.');
  if (o.hsmName) return ctx.hsmUri(o.hsmName);
  if (o.vaultUri) return o.vaultUri;
  if (!o.vaultName) throw new CliError('Name the vault with --vault-name (or --vault-uri), or the managed HSM with --hsm-name.');
  return ctx.vaultUri(o.vaultName);
}

function vaultOptions(cmd: Command): Command {
  return cmd.option('--vault-name <name>', 'the vault').option('--vault-uri <uri>', 'the vault URI, instead of --vault-name')
    .option('--hsm-name <name>', 'a managed HSM, instead of a vault');
}

/** Reads a private key from PEM (optionally encrypted) or PKCS#12, as a JWK for the import API. */
function privateJwkFromFile(o: { pemFile?: string; pemPassword?: string; pfxFile?: string; pfxPassword?: string }): Record<string, unknown> {
  let pem: string | Buffer;
  let passphrase: string | undefined;
  if (o.pemFile) {
    pem = readFileSync(o.pemFile);
    passphrase = o.pemPassword;
  } else if (o.pfxFile) {
    // OpenSSL reads the PKCS#12 container; the key reaches us on a pipe, never a file.
    const extract = (legacy: boolean) =>
      spawnSync('openssl', ['pkcs12', '-in', o.pfxFile!, '-nocerts', '-nodes', '-passin', 'stdin', ...(legacy ? ['-legacy'] : [])], {
        input: (o.pfxPassword ?? '') + '\n', maxBuffer: 1 << 20,
      });
    let r = extract(false);
    if (r.status !== 0) r = extract(true);
    if (r.error) throw new CliError(`openssl is needed to read .pfx files: ${r.error.message}`);
    if (r.status !== 0) throw new CliError(`Could not read ${o.pfxFile}: ${r.stderr.toString().trim().split('\n')[0]} (wrong --pfx-password?)`);
    pem = r.stdout;
  } else {
    throw new CliError('Give the key with --pem-file or --pfx-file.');
  }
  let key;
  try {
    key = createPrivateKey({ key: pem, format: 'pem', passphrase });
  } catch (e) {
    throw new CliError(`Could not read the private key: ${(e as Error).message}`);
  }
  if (key.asymmetricKeyType !== 'rsa') throw new CliError(`Only RSA keys can be imported; this is ${key.asymmetricKeyType}.`);
  return key.export({ format: 'jwk' }) as Record<string, unknown>;
}

export function registerVaultCommands(program: Command): void {
  const vault = program.command('vault').description('key vaults (security officer)');
  withGroup(vault.command('create'))
    .requiredOption('--name <name>').option('-l, --location <region>', "region (default: 'configure --defaults location=', else the group's, else the platform's)")
    .option('--retention-days <days>', 'soft-delete retention, 7-90', '90')
    .option('--enable-purge-protection', 'forbid purging deleted keys before their date (cannot be undone)')
    .option('--public-network-access <Enabled|Disabled>')
    .option('--default-action <Allow|Deny>', 'firewall default action')
    .option('--bypass <AzureServices|None>', "let the platform's trusted services through the firewall")
    .option('--ip-rules <cidr...>', 'addresses or CIDR ranges admitted when the default action is Deny')
    .action(action<ScopeOptions & { name: string; location?: string; retentionDays: string; enablePurgeProtection?: boolean; publicNetworkAccess?: string; defaultAction?: string; bypass?: string; ipRules?: string[] }>(
      async (ctx, o) => {
        const acls = o.defaultAction || o.bypass || o.ipRules
          ? { ...(o.defaultAction ? { defaultAction: o.defaultAction } : {}), ...(o.bypass ? { bypass: o.bypass } : {}), ...(o.ipRules ? { ipRules: o.ipRules.map((value) => ({ value })) } : {}) }
          : undefined;
        const arm = armOf(ctx, o);
        const location = await arm.location(o.location);
        const group = await arm.groupForCreate(location);
        // No accessPolicies: the creator gets every key permission, as az keyvault create gives it.
        return withResourceGroup(await arm.call('PUT', Arm.path(group, VAULT, o.name), KV_API, {
          location,
          properties: {
            softDeleteRetentionInDays: parseIntArg(o.retentionDays, '--retention-days'),
            enablePurgeProtection: !!o.enablePurgeProtection,
            ...(o.publicNetworkAccess ? { publicNetworkAccess: o.publicNetworkAccess } : {}),
            ...(acls ? { networkAcls: acls } : {}),
          },
        }));
      }));
  withGroup(vault.command('update')).requiredOption('--name <name>')
    .option('--enable-purge-protection')
    .option('--public-network-access <Enabled|Disabled>')
    .option('--default-action <Allow|Deny>')
    .option('--bypass <AzureServices|None>')
    .action(action<ScopeOptions & { name: string; enablePurgeProtection?: boolean; publicNetworkAccess?: string; defaultAction?: string; bypass?: string }>(async (ctx, o) => {
      const arm = armOf(ctx, o);
      return withResourceGroup(await arm.call('PATCH', await arm.pathOf(VAULT, o.name), KV_API, {
        properties: {
          ...(o.enablePurgeProtection ? { enablePurgeProtection: true } : {}),
          ...(o.publicNetworkAccess ? { publicNetworkAccess: o.publicNetworkAccess } : {}),
          ...(o.defaultAction || o.bypass ? { networkAcls: { ...(o.defaultAction ? { defaultAction: o.defaultAction } : {}), ...(o.bypass ? { bypass: o.bypass } : {}) } } : {}),
        },
      }));
    }));
  withGroup(vault.command('show')).requiredOption('--name <name>').action(action<ScopeOptions & { name: string }>(async (ctx, o) => {
    const arm = armOf(ctx, o);
    return withResourceGroup(await arm.call('GET', await arm.pathOf(VAULT, o.name), KV_API));
  }));
  withGroup(vault.command('list')).action(action<ScopeOptions>(async (ctx, o) => {
    const arm = armOf(ctx, o);
    return (await arm.call('GET', arm.listPath(VAULT), KV_API)).value.map(withResourceGroup);
  }, ['name', 'location', 'resourceGroup', 'properties.vaultUri']));
  withGroup(vault.command('delete').description('soft-delete a vault (recoverable until its purge date)')).requiredOption('--name <name>')
    .action(action<ScopeOptions & { name: string }>(async (ctx, o) => {
      const arm = armOf(ctx, o);
      return arm.call('DELETE', await arm.pathOf(VAULT, o.name), KV_API);
    }));
  vault.command('list-deleted').action(action<ScopeOptions>(async (ctx, o) => (await armOf(ctx, o).call('GET', '/providers/Microsoft.KeyVault/deletedVaults', KV_API)).value));
  /** A soft-deleted vault of the subscription, by name (its location and former group are in it). */
  const deleted = async (arm: Arm, name: string) => {
    const all = (await arm.call('GET', '/providers/Microsoft.KeyVault/deletedVaults', KV_API)).value as any[];
    const v = all.find((x) => x.name.toLowerCase() === name.toLowerCase());
    if (!v) throw new CliError(`(ResourceNotFound) No soft-deleted vault '${name}' exists in subscription ${await arm.subscriptionId()}.`, 3);
    return v;
  };
  withGroup(vault.command('recover').description('recover a soft-deleted vault into its group (az keyvault recover: PUT with createMode recover)'))
    .requiredOption('--name <name>').action(action<ScopeOptions & { name: string }>(async (ctx, o) => {
      const arm = armOf(ctx, o);
      const gone = await deleted(arm, o.name);
      const location = gone.properties.location;
      let group = o.resourceGroup ?? parseArmId(gone.properties.vaultId)?.resourceGroup;
      if (!group) group = await arm.groupForCreate(location);
      else if (group.toLowerCase() === defaultGroupName(location)) await arm.ensureGroup(group, location);
      return withResourceGroup(await arm.call('PUT', Arm.path(group, VAULT, gone.name), KV_API, { location, properties: { createMode: 'recover' } }));
    }));
  vault.command('purge').requiredOption('--name <name>').option('-l, --location <region>', 'where the deleted vault was (default: found by name)')
    .action(action<ScopeOptions & { name: string; location?: string }>(async (ctx, o) => {
      const arm = armOf(ctx, o);
      const location = o.location ?? (await deleted(arm, o.name)).properties.location;
      await arm.call('POST', `/providers/Microsoft.KeyVault/locations/${enc(location)}/deletedVaults/${enc(o.name)}/purge`, KV_API);
      return undefined;
    }));

  const rules = vault.command('network-rule').description('firewall IP rules');
  for (const verb of ['add', 'remove'] as const) {
    withGroup(rules.command(verb)).requiredOption('--name <name>').requiredOption('--ip-address <cidr>')
      .action(action<ScopeOptions & { name: string; ipAddress: string }>(async (ctx, o) => {
        const arm = armOf(ctx, o);
        const path = await arm.pathOf(VAULT, o.name);
        const current = await arm.call('GET', path, KV_API);
        const ips: string[] = current.properties.networkAcls.ipRules.map((r: { value: string }) => r.value);
        const wanted = o.ipAddress.includes('/') ? o.ipAddress : `${o.ipAddress}/${o.ipAddress.includes(':') ? 128 : 32}`;
        const next = verb === 'add' ? [...new Set([...ips, wanted])] : ips.filter((ip) => ip !== wanted);
        return withResourceGroup(await arm.call('PATCH', path, KV_API, { properties: { networkAcls: { ipRules: next.map((value) => ({ value })) } } }));
      }));
  }

  // Access policies: ARM's `vaults/{name}/accessPolicies/replace`, one principal's key permissions at a time.
  const replacePolicy = async (ctx: CliContext, o: ScopeOptions & { name: string; objectId?: string; spn?: string }, keys: string[]) => {
    const who = o.objectId ?? o.spn;
    if (!who) throw new CliError('Name the principal with --object-id or --spn.');
    const arm = armOf(ctx, o);
    return arm.call('PUT', `${await arm.pathOf(VAULT, o.name)}/accessPolicies/replace`, KV_API, {
      properties: { accessPolicies: [{ objectId: who, permissions: { keys } }] },
    });
  };
  withGroup(vault.command('set-policy').description("set a principal's key permissions on a vault (replaces its key permissions)"))
    .requiredOption('--name <name>')
    .option('--object-id <id>', 'object id of the principal')
    .option('--spn <clientIdOrName>', 'a service principal or identity by client id or name')
    .requiredOption('--key-permissions <perms...>', "e.g. get list wrapKey unwrapKey, or 'all'")
    .action(action<ScopeOptions & { name: string; objectId?: string; spn?: string; keyPermissions: string[] }>(async (ctx, o) => replacePolicy(ctx, o, o.keyPermissions)));
  withGroup(vault.command('delete-policy')).requiredOption('--name <name>').option('--object-id <id>').option('--spn <clientIdOrName>')
    .action(action<ScopeOptions & { name: string; objectId?: string; spn?: string }>(async (ctx, o) => replacePolicy(ctx, o, [])));

  // Event subscriptions and the audit log stay on the tenant path (the platform serves them only there).
  const subs = vault.command('event-subscription').description('webhook subscriptions to the vault\'s events');
  subs.command('create').requiredOption('--vault-name <name>').requiredOption('--name <name>').requiredOption('--endpoint <url>')
    .option('--included-event-types <types...>', 'e.g. KeyNewVersionCreated KeyDisabled (default: all)')
    .action(action<{ vaultName: string; name: string; endpoint: string; includedEventTypes?: string[] }>(async (ctx, o) =>
      ctx.mgmt('PUT', `${VAULTS}/${enc(o.vaultName)}/eventSubscriptions/${enc(o.name)}`, {
        properties: { destination: { endpointType: 'WebHook', properties: { endpointUrl: o.endpoint } }, filter: { includedEventTypes: o.includedEventTypes ?? null } },
      })));
  subs.command('list').requiredOption('--vault-name <name>').action(action<{ vaultName: string }>(async (ctx, o) =>
    (await ctx.mgmt('GET', `${VAULTS}/${enc(o.vaultName)}/eventSubscriptions`)).value));
  subs.command('delete').requiredOption('--vault-name <name>').requiredOption('--name <name>').action(action<{ vaultName: string; name: string }>(async (ctx, o) => {
    await ctx.mgmt('DELETE', `${VAULTS}/${enc(o.vaultName)}/eventSubscriptions/${enc(o.name)}`);
    return undefined;
  }));

  // Keys: data-plane calls with a vault token, as any Key Vault client makes them.
  const key = program.command('key').description('keys in a vault (data plane)');
  type KeyOpts = Target & { name: string; version?: string };
  const keyCmd = (name: string, description: string) => vaultOptions(key.command(name).description(description)).requiredOption('--name <name>', 'key name');

  keyCmd('create', 'create a key (or a new version of it): RSA in a vault; RSA-HSM or oct-HSM in a managed HSM')
    .option('--kty <kty>', 'key type (default: RSA in a vault, RSA-HSM in a managed HSM)')
    .option('--size <bits>', 'RSA: 2048, 3072 or 4096 (default 2048); oct-HSM: 256')
    .option('--ops <ops...>', 'permitted operations (default: all six)')
    .option('--disabled', 'create it disabled').option('--expires <iso>').option('--not-before <iso>').option('--tags <k=v...>')
    .action(action<KeyOpts & { kty?: string; size?: string; ops?: string[]; disabled?: boolean; expires?: string; notBefore?: string; tags?: string[] }>(async (ctx, o) => {
      const kty = o.kty ?? (o.hsmName ? 'RSA-HSM' : 'RSA');
      return ctx.vault(await resolveVault(ctx, o), 'POST', `/keys/${enc(o.name)}/create`, {
        kty, key_size: parseIntArg(o.size, '--size') ?? (kty.startsWith('oct') ? 256 : 2048), ...(o.ops ? { key_ops: o.ops } : {}),
        attributes: { ...(o.disabled ? { enabled: false } : {}), ...(o.expires ? { exp: parseTime(o.expires, '--expires') } : {}), ...(o.notBefore ? { nbf: parseTime(o.notBefore, '--not-before') } : {}) },
        ...(o.tags ? { tags: parseTags(o.tags) } : {}),
      });
    }));
  keyCmd('import', 'import a key: from a BYOK key transfer blob (--byok-file, HSM-protected: the only way into a managed HSM), or an RSA private key from PEM or PKCS#12 (.pfx) into a vault')
    .option('--byok-file <file>', "a .byok file wrapped to one of the vault's or HSM's key-exchange keys (key_ops ['import'])").option('--kty <kty>', 'with --byok-file: RSA (default)')
    .option('--pem-file <file>').option('--pem-password <password>').option('--pfx-file <file>').option('--pfx-password <password>')
    .option('--ops <ops...>').option('--disabled').option('--expires <iso>').option('--not-before <iso>').option('--tags <k=v...>')
    .action(action<KeyOpts & { byokFile?: string; kty?: string; pemFile?: string; pemPassword?: string; pfxFile?: string; pfxPassword?: string; ops?: string[]; disabled?: boolean; expires?: string; notBefore?: string; tags?: string[] }>(async (ctx, o) => {
      // As az does: the .byok file's bytes travel verbatim (base64url) in key_hsm, with kty + '-HSM'.
      const jwk = o.byokFile
        ? { kty: `${(o.kty ?? 'RSA').replace(/-HSM$/, '')}-HSM`, key_hsm: readFileSync(o.byokFile).toString('base64url') }
        : privateJwkFromFile(o);
      return ctx.vault(await resolveVault(ctx, o), 'PUT', `/keys/${enc(o.name)}`, {
        key: { ...jwk, ...(o.ops ? { key_ops: o.ops } : {}) }, ...(o.byokFile ? { Hsm: true } : {}),
        attributes: { ...(o.disabled ? { enabled: false } : {}), ...(o.expires ? { exp: parseTime(o.expires, '--expires') } : {}), ...(o.notBefore ? { nbf: parseTime(o.notBefore, '--not-before') } : {}) },
        ...(o.tags ? { tags: parseTags(o.tags) } : {}),
      });
    }));
  keyCmd('show', 'show a key (latest version unless --version)').option('--version <version>')
    .action(action<KeyOpts>(async (ctx, o) => ctx.vault(await resolveVault(ctx, o), 'GET', `/keys/${enc(o.name)}/${o.version ?? ''}`)));
  vaultOptions(key.command('list').description('list keys')).action(action<KeyOpts>(async (ctx, o) =>
    ctx.vaultList(await resolveVault(ctx, o), '/keys'), ['kid', 'attributes.enabled', 'attributes.exp']));
  keyCmd('list-versions', 'list the versions of a key').action(action<KeyOpts>(async (ctx, o) =>
    ctx.vaultList(await resolveVault(ctx, o), `/keys/${enc(o.name)}/versions`), ['kid', 'attributes.enabled', 'attributes.created', 'attributes.exp']));
  keyCmd('set-attributes', 'enable/disable a key version, change its dates, operations or tags').option('--version <version>')
    .option('--enabled <bool>').option('--expires <iso|none>').option('--not-before <iso|none>').option('--ops <ops...>').option('--tags <k=v...>')
    .action(action<KeyOpts & { enabled?: string; expires?: string; notBefore?: string; ops?: string[]; tags?: string[] }>(async (ctx, o) => {
      const attributes: Record<string, unknown> = {};
      const enabled = parseBool(o.enabled, '--enabled');
      if (enabled !== undefined) attributes.enabled = enabled;
      const exp = parseTime(o.expires, '--expires');
      if (exp !== undefined) attributes.exp = exp;
      const nbf = parseTime(o.notBefore, '--not-before');
      if (nbf !== undefined) attributes.nbf = nbf;
      return ctx.vault(await resolveVault(ctx, o), 'PATCH', `/keys/${enc(o.name)}/${o.version ?? ''}`, {
        attributes, ...(o.ops ? { key_ops: o.ops } : {}), ...(o.tags ? { tags: parseTags(o.tags) } : {}),
      });
    }));
  keyCmd('rotate', 'make a new version of the key').action(action<KeyOpts>(async (ctx, o) =>
    ctx.vault(await resolveVault(ctx, o), 'POST', `/keys/${enc(o.name)}/rotate`)));
  const policy = key.command('rotation-policy').description('automatic rotation and expiry');
  vaultOptions(policy.command('show')).requiredOption('--name <name>').action(action<KeyOpts>(async (ctx, o) =>
    ctx.vault(await resolveVault(ctx, o), 'GET', `/keys/${enc(o.name)}/rotationpolicy`)));
  vaultOptions(policy.command('update')).requiredOption('--name <name>')
    .option('--value <json|@file>', 'the policy as Key Vault JSON')
    .option('--rotate-after <duration>', 'rotate this long after a version is created, e.g. P90D')
    .option('--rotate-before-expiry <duration>', 'rotate this long before a version expires, e.g. P30D')
    .option('--expiry-time <duration>', 'new versions expire this long after creation, e.g. P1Y')
    .option('--notify-before-expiry <duration>', 'raise KeyNearExpiry this long before expiry', 'P30D')
    .action(action<KeyOpts & { value?: string; rotateAfter?: string; rotateBeforeExpiry?: string; expiryTime?: string; notifyBeforeExpiry: string }>(async (ctx, o) => {
      let body: unknown;
      if (o.value) {
        const text = o.value.startsWith('@') ? readFileSync(o.value.slice(1), 'utf8') : o.value;
        try { body = JSON.parse(text); } catch { throw new CliError('--value is not valid JSON.'); }
      } else {
        const actions = [{ trigger: { timeBeforeExpiry: o.notifyBeforeExpiry }, action: { type: 'Notify' } }];
        if (o.rotateAfter) actions.push({ trigger: { timeAfterCreate: o.rotateAfter } as any, action: { type: 'Rotate' } });
        if (o.rotateBeforeExpiry) actions.push({ trigger: { timeBeforeExpiry: o.rotateBeforeExpiry }, action: { type: 'Rotate' } });
        body = { lifetimeActions: actions, attributes: o.expiryTime ? { expiryTime: o.expiryTime } : {} };
      }
      return ctx.vault(await resolveVault(ctx, o), 'PUT', `/keys/${enc(o.name)}/rotationpolicy`, body);
    }));
  keyCmd('delete', 'soft-delete a key (recoverable until its purge date)').action(action<KeyOpts>(async (ctx, o) =>
    ctx.vault(await resolveVault(ctx, o), 'DELETE', `/keys/${enc(o.name)}`)));
  keyCmd('recover', 'recover a soft-deleted key').action(action<KeyOpts>(async (ctx, o) =>
    ctx.vault(await resolveVault(ctx, o), 'POST', `/deletedkeys/${enc(o.name)}/recover`)));
  keyCmd('purge', 'permanently delete a soft-deleted key').action(action<KeyOpts>(async (ctx, o) => {
    await ctx.vault(await resolveVault(ctx, o), 'DELETE', `/deletedkeys/${enc(o.name)}`);
    return undefined;
  }));
  keyCmd('show-deleted', 'show a soft-deleted key').action(action<KeyOpts>(async (ctx, o) =>
    ctx.vault(await resolveVault(ctx, o), 'GET', `/deletedkeys/${enc(o.name)}`)));
  vaultOptions(key.command('list-deleted').description('list soft-deleted keys')).action(action<KeyOpts>(async (ctx, o) =>
    ctx.vaultList(await resolveVault(ctx, o), '/deletedkeys'), ['kid', 'deletedDate', 'scheduledPurgeDate']));
  keyCmd('backup', 'write an encrypted backup of every version of the key to a file').requiredOption('--file <path>')
    .action(action<KeyOpts & { file: string }>(async (ctx, o) => {
      const r = await ctx.vault(await resolveVault(ctx, o), 'POST', `/keys/${enc(o.name)}/backup`);
      writeFileSync(o.file, r.value, { mode: 0o600 });
      return { file: o.file, bytes: r.value.length };
    }));
  vaultOptions(key.command('restore').description('restore a key backup into a vault of the same tenant')).requiredOption('--file <path>')
    .action(action<Target & { file: string }>(async (ctx, o) =>
      ctx.vault(await resolveVault(ctx, o), 'POST', '/keys/restore', { value: readFileSync(o.file, 'utf8').trim() })));
  for (const [verb, path] of [['encrypt', 'encrypt'], ['decrypt', 'decrypt'], ['wrap', 'wrapkey'], ['unwrap', 'unwrapkey']] as const) {
    keyCmd(verb, `${verb} a base64 value with the key (always in the vault or HSM)`).option('--version <version>')
      .requiredOption('--value <base64>')
      .option('--algorithm <alg>', 'RSA-OAEP-256 or RSA-OAEP (default: RSA-OAEP-256 in a vault, RSA-OAEP in a managed HSM); A256GCM or A256KW for oct-HSM keys')
      .option('--iv <base64>', 'decrypt with A256GCM: the iv encrypt printed').option('--tag <base64>', 'decrypt with A256GCM: the tag encrypt printed')
      .action(action<KeyOpts & { value: string; algorithm?: string; iv?: string; tag?: string }>(async (ctx, o) => {
        // The HSM's token has no OAEP with SHA-256 (SoftHSM2): RSA-OAEP is what it does.
        const algorithm = o.algorithm ?? (o.hsmName ? 'RSA-OAEP' : 'RSA-OAEP-256');
        const b64url = (v: string | undefined) => (v === undefined ? undefined : Buffer.from(v, 'base64').toString('base64url'));
        const r = await ctx.vault(await resolveVault(ctx, o), 'POST', `/keys/${enc(o.name)}/${o.version ?? ''}/${path}`, {
          alg: algorithm, value: b64url(o.value), ...(o.iv ? { iv: b64url(o.iv) } : {}), ...(o.tag ? { tag: b64url(o.tag) } : {}),
        });
        const b64 = (v: string) => Buffer.from(v, 'base64url').toString('base64');
        return { kid: r.kid, result: b64(r.value), algorithm, ...(r.iv ? { iv: b64(r.iv) } : {}), ...(r.tag ? { tag: b64(r.tag) } : {}) };
      }));
  }
}
