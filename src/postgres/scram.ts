import { createHash, createHmac, pbkdf2Sync, randomBytes } from 'node:crypto';

/**
 * The SCRAM-SHA-256 verifier PostgreSQL stores for a password (RFC 5802 / RFC 7677, PostgreSQL's text
 * form), built from node:crypto's PBKDF2, HMAC and SHA-256. pgbyok keeps only this, never the password, so
 * a server can be provisioned again after a crash. Passwords are printable ASCII, for which PostgreSQL's
 * SASLprep normalisation is the identity.
 */
export function scramSha256Verifier(password: string, iterations = 4096): string {
  if (!/^[\x20-\x7e]+$/.test(password)) throw new Error('SCRAM verifiers are computed for printable ASCII passwords only');
  const salt = randomBytes(16);
  const salted = pbkdf2Sync(password, salt, iterations, 32, 'sha256');
  const clientKey = createHmac('sha256', salted).update('Client Key').digest();
  const storedKey = createHash('sha256').update(clientKey).digest();
  const serverKey = createHmac('sha256', salted).update('Server Key').digest();
  salted.fill(0);
  return `SCRAM-SHA-256$${iterations}:${salt.toString('base64')}$${storedKey.toString('base64')}:${serverKey.toString('base64')}`;
}

export const SCRAM_VERIFIER_RE = /^SCRAM-SHA-256\$\d+:[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+:[A-Za-z0-9+/=]+$/;
