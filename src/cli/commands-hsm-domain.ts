import { createPrivateKey, X509Certificate } from 'node:crypto';
import { closeSync, existsSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import type { Command } from 'commander';
import { ApiError } from '../lib/errors.js';
import { parseSecurityDomain } from '../hsm/security-domain.js';
import { recoverSecret, restoreBlob } from '../hsm/security-domain-client.js';
import { CliContext, CliError } from './client.js';
import { action, parseIntArg } from './run.js';

/**
 * `pgbyok hsm security-domain ...`, as az's `az keyvault security-domain`: download (which activates a new
 * HSM, the file sealed to the key holders' certificates), init-recovery (the new HSM's exchange key), upload
 * (a quorum of the holders' private keys recover the domain key here, on the client, and it goes to the new
 * HSM wrapped to its exchange key) and wait.
 */

/** Runs code of the platform's own modules on the client side; what they refuse reaches the user as one line. */
export async function asCli<T>(fn: () => T | Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    if (e instanceof ApiError) throw new CliError(`(${e.innerCode ?? e.code}) ${e.message}`);
    throw e;
  }
}

type Operation = 'download' | 'upload';
const WAIT_MS = 5 * 60_000;

const read = (file: string, what: string): Buffer => {
  try {
    return readFileSync(file);
  } catch (e) {
    throw new CliError(`Cannot read ${what} ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
};

/** A file made for this command only (0600), never over an existing one: the caller writes it and closes it. */
function createNew(file: string, flag: string): number {
  try {
    return openSync(file, 'wx', 0o600);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') throw new CliError(`${file} already exists; ${flag} is not overwritten: name a new file.`);
    throw new CliError(`Cannot create ${file}: ${(e as Error).message}`);
  }
}

/** A key holder's certificate as the JWK the download asks for (its public key, with the certificate in x5c). */
function certificateJwk(file: string) {
  let x: X509Certificate;
  try {
    x = new X509Certificate(read(file, 'the certificate'));
  } catch (e) {
    if (e instanceof CliError) throw e;
    throw new CliError(`${file} is not an X.509 certificate (PEM or DER): ${(e as Error).message}`);
  }
  const jwk = x.publicKey.export({ format: 'jwk' }) as { kty: string; n?: string; e?: string };
  if (jwk.kty !== 'RSA') throw new CliError(`The certificate ${file} has a ${jwk.kty} key; the security domain needs RSA certificates.`);
  return { kty: 'RSA', n: jwk.n, e: jwk.e, x5c: [x.raw.toString('base64')], key_ops: ['verify', 'encrypt', 'wrapKey'], alg: 'RSA-OAEP-256' };
}

/** Polls the operation's status until Success; Failed (or five minutes) is an error. */
async function waitFor(ctx: CliContext, hsmName: string, operation: Operation): Promise<{ status: string; status_details?: string }> {
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    const s = await ctx.vault(ctx.hsmUri(hsmName), 'GET', `/securitydomain/${operation}/pending`);
    if (s.status === 'Success') return s;
    if (s.status === 'Failed') throw new CliError(`The security domain ${operation} failed: ${s.status_details ?? 'no details'}`);
    if (Date.now() > deadline) throw new CliError(`The security domain ${operation} of '${hsmName}' is still ${s.status} after ${WAIT_MS / 60_000} minutes.`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

/** The exchange key from init-recovery's file (the HSM's answer, or the bare JWK in it). */
function exchangeKeyFrom(file: string) {
  let j: any;
  try {
    j = JSON.parse(read(file, 'the exchange key').toString('utf8'));
  } catch (e) {
    if (e instanceof CliError) throw e;
    throw new CliError(`${file} is not an exchange key written by 'pgbyok hsm security-domain init-recovery' (not JSON).`);
  }
  return j?.transfer_key ?? j;
}

/** Where a private key's certificate is when none is named: the key file with `.cer` instead of its extension. */
const certificateBeside = (keyFile: string) => `${keyFile.replace(/\.[^./]*$/, '')}.cer`;

export function registerSecurityDomainCommands(hsm: Command): void {
  const sd = hsm.command('security-domain').description("the HSM's security domain: download to activate, upload to recover into a new HSM");
  sd.command('download').description('activate a new HSM: its security domain, sealed to 3-10 certificates, written to a new file')
    .requiredOption('--hsm-name <name>')
    .requiredOption('--sd-wrapping-keys <certs...>', "the key holders' certificates (PEM or DER), 3 to 10")
    .requiredOption('--sd-quorum <n>', 'how many of their private keys recover the domain (2 or more)')
    .requiredOption('--security-domain-file <path>', 'where to write it (0600; an existing file is not overwritten)')
    .action(action<{ hsmName: string; sdWrappingKeys: string[]; sdQuorum: string; securityDomainFile: string }>(async (ctx, o) => {
      const certificates = o.sdWrappingKeys.map(certificateJwk);
      const required = parseIntArg(o.sdQuorum, '--sd-quorum');
      const fd = createNew(o.securityDomainFile, '--security-domain-file');
      try {
        const r = await ctx.vault(ctx.hsmUri(o.hsmName), 'POST', '/securitydomain/download', { certificates, required });
        writeSync(fd, r.value);
      } catch (e) {
        closeSync(fd);
        unlinkSync(o.securityDomainFile);
        throw e;
      }
      closeSync(fd);
      return waitFor(ctx, o.hsmName, 'download');
    }));
  sd.command('init-recovery').description("write a new HSM's exchange key to a file, for a later upload")
    .requiredOption('--hsm-name <name>').requiredOption('--sd-exchange-key <path>', 'where to write it (an existing file is not overwritten)')
    .action(action<{ hsmName: string; sdExchangeKey: string }>(async (ctx, o) => {
      const r = await ctx.vault(ctx.hsmUri(o.hsmName), 'GET', '/securitydomain/upload');
      const fd = createNew(o.sdExchangeKey, '--sd-exchange-key');
      try {
        writeSync(fd, JSON.stringify(r, null, 2) + '\n');
      } finally {
        closeSync(fd);
      }
      return undefined;
    }));
  sd.command('upload').description('recover a security domain into a new HSM with a quorum of the private keys')
    .requiredOption('--hsm-name <name>')
    .requiredOption('--sd-file <path>', 'the security domain file download wrote')
    .requiredOption('--sd-wrapping-keys <keys...>', 'private keys (PEM) of a quorum of the key holders')
    .option('--sd-wrapping-certs <certs...>', 'their certificates, in the same order (default: each key file with the extension .cer)')
    .option('--passwords <passwords...>', 'the passwords of encrypted private keys, in the same order')
    .option('--sd-exchange-key <path>', "the HSM's exchange key, as init-recovery wrote it (default: asked of the HSM)")
    .action(action<{ hsmName: string; sdFile: string; sdWrappingKeys: string[]; sdWrappingCerts?: string[]; passwords?: string[]; sdExchangeKey?: string }>(async (ctx, o) => {
      if (o.sdWrappingCerts && o.sdWrappingCerts.length !== o.sdWrappingKeys.length) {
        throw new CliError(`--sd-wrapping-certs names ${o.sdWrappingCerts.length} certificates for ${o.sdWrappingKeys.length} keys: one each, in the same order.`);
      }
      const file = await asCli(() => parseSecurityDomain(read(o.sdFile, 'the security domain file').toString('utf8')));
      const holders = o.sdWrappingKeys.map((keyFile, i) => {
        const certFile = o.sdWrappingCerts?.[i] ?? certificateBeside(keyFile);
        if (!existsSync(certFile)) throw new CliError(`No certificate for ${keyFile}: ${certFile} does not exist (name it with --sd-wrapping-certs).`);
        let privateKeyPem = read(keyFile, 'the private key').toString('utf8');
        const passphrase = o.passwords?.[i];
        if (passphrase) {
          try {
            privateKeyPem = createPrivateKey({ key: privateKeyPem, format: 'pem', passphrase }).export({ type: 'pkcs8', format: 'pem' }) as string;
          } catch (e) {
            throw new CliError(`Cannot read the private key ${keyFile} with its password: ${(e as Error).message}`);
          }
        }
        return { privateKeyPem, certificatePem: read(certFile, 'the certificate').toString('utf8') };
      });
      const uri = ctx.hsmUri(o.hsmName);
      const transferKey = o.sdExchangeKey ? exchangeKeyFrom(o.sdExchangeKey) : (await ctx.vault(uri, 'GET', '/securitydomain/upload')).transfer_key;
      const secret = await asCli(() => recoverSecret(file, holders));
      let value: string;
      try {
        value = await asCli(() => restoreBlob(file, secret, transferKey));
      } finally {
        secret.fill(0);
      }
      await ctx.vault(uri, 'POST', '/securitydomain/upload', { value });
      return waitFor(ctx, o.hsmName, 'upload');
    }));
  sd.command('wait').description('wait until the last download or upload has succeeded')
    .requiredOption('--hsm-name <name>').option('--target-operation <download|upload>', 'which', 'upload')
    .action(action<{ hsmName: string; targetOperation: string }>(async (ctx, o) => {
      if (o.targetOperation !== 'download' && o.targetOperation !== 'upload') throw new CliError(`--target-operation must be download or upload, not '${o.targetOperation}'.`);
      return waitFor(ctx, o.hsmName, o.targetOperation);
    }));
}
