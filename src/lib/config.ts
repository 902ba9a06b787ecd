import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';

/**
 * Every setting `pgbyok up` reads from its environment, in one schema: validated once at start, frozen,
 * and read only from the object this returns. A bad value stops start-up with a message naming the
 * setting (fail closed), instead of surfacing later as a background task that quietly stopped.
 */
/** Case-insensitive labels of letters, digits and inner hyphens, dot-separated (no trailing dot). */
const DNS_NAME = '^(?=.{1,200}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$';

const int = (min: number, max: number, dflt: number, description: string) =>
  Type.Integer({ minimum: min, maximum: max, default: dflt, description });

export const ConfigSchema = Type.Object({
  PGBYOK_PORT: Type.Optional(Type.Integer({ minimum: 1, maximum: 65535, description: 'platform HTTPS port (first start only; then kept in settings.json)' })),
  PGBYOK_DOMAIN: Type.String({
    default: 'localhost', maxLength: 200, pattern: DNS_NAME,
    accepts: 'a DNS name such as localhost or pgbyok.example.com', description: 'the domain every vault (NAME.vault.DOMAIN) and server (NAME.postgres.database.DOMAIN) is named under',
  }),
  PGBYOK_VAULT_PORT: Type.Optional(Type.Integer({ minimum: 1, maximum: 65535, description: "the one HTTPS port of every vault (first start only; then kept in settings.json; unset: 443 as root, otherwise a free port)" })),
  PGBYOK_VAULTS_ONLY: Type.Boolean({ default: false, accepts: '1 or 0 (true or false)', description: 'serve vaults and managed HSMs only, without PostgreSQL servers (as `pgbyok up --vaults-only`)' }),
  PGBYOK_LOG_LEVEL: Type.Union(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map((l) => Type.Literal(l)), { default: 'info', description: 'log level' }),
  PGBYOK_TOKEN_LIFETIME_SECONDS: int(1, 86_400, 3599, 'lifetime of issued access tokens'),
  PGBYOK_SIGNING_KEY_ROTATION_SECONDS: int(1, 365 * 86_400, 24 * 3600, 'how often the token signing key rotates'),
  PGBYOK_CLOCK_TOLERANCE_SECONDS: int(0, 600, 30, 'clock skew tolerated on token times'),
  PGBYOK_RSA_WORKERS: Type.Optional(int(0, 64, 2, 'worker threads for RSA private operations (0: on the event loop; unset: one per core, up to 8)')),
  PGBYOK_SCHEDULER_INTERVAL_MS: int(100, 3_600_000, 5000, 'how often rotation, expiry and purge run'),
  PGBYOK_DIAGNOSTICS_INTERVAL_MS: int(100, 3_600_000, 1000, 'how often diagnostic settings retry streaming audit events (new records also wake it)'),
  PGBYOK_ARCHIVE_INTERVAL_MS: int(100, 3_600_000, 5000, 'how often WAL is archived'),
  PGBYOK_BACKUP_INTERVAL_MS: int(1000, 30 * 86_400_000, 86_400_000, 'how often base backups are taken'),
  PGBYOK_KEY_MONITOR_INTERVAL_MS: Type.Optional(int(100, 3_600_000, 30_000, 'key monitor interval (overrides the platform setting)')),
  PGBYOK_CRASH_AFTER_STEP: Type.Optional(Type.String({ pattern: '^[A-Za-z]+:[a-z-]+$', description: 'tests only: SIGKILL the platform right after this operation step (<Kind>:<step> or <Kind>:accepted)' })),
  PGBYOK_VAULT_GRACE_MS: Type.Optional(int(0, 86_400_000, 60_000, 'grace period for an unreachable vault (overrides the platform setting)')),
  PGBYOK_PKCS11_MODULE: Type.Optional(Type.String({ pattern: '^/.+', accepts: 'an absolute path to a PKCS#11 module (.so)', description: "the Managed HSMs' PKCS#11 module (unset: a SoftHSM2 token of pgbyok's own under $PGBYOK_HOME/hsm)" })),
  PGBYOK_PKCS11_TOKEN_LABEL: Type.Optional(Type.String({ minLength: 1, maxLength: 32, accepts: 'a token label of 1 to 32 characters', description: 'the label of the PKCS#11 token that holds the Managed HSMs\' keys (with PGBYOK_PKCS11_MODULE)' })),
  PGBYOK_PKCS11_PIN_FILE: Type.Optional(Type.String({ pattern: '^/.+', accepts: 'an absolute path to a file holding the PIN', description: "the token user's PIN, read at the first start with PGBYOK_PKCS11_MODULE and then kept sealed in the barrier" })),
});

export type Config = Readonly<Static<typeof ConfigSchema>>;

export class ConfigError extends Error {}

/** The name of a setting, its bad value, and what it accepts, in one line. */
function describeProblem(name: string, value: unknown, message: string): string {
  const s = (ConfigSchema.properties as Record<string, TSchema>)[name];
  const inner: TSchema | undefined = s?.anyOf?.find((x: TSchema) => x.minimum !== undefined) ?? s;
  const accepts = typeof s?.accepts === 'string' ? s.accepts : s?.anyOf && s.anyOf.every((x: TSchema) => x.const !== undefined)
    ? `one of ${(s.anyOf as TSchema[]).map((x) => x.const).join(', ')}`
    : inner?.minimum !== undefined ? `a whole number from ${inner.minimum} to ${inner.maximum}` : message;
  return `${name}='${String(value)}' is not valid: it must be ${accepts} (${s?.description ?? 'setting'}).`;
}

/** Reads, converts, checks and freezes the settings; throws ConfigError naming every bad one. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const raw: Record<string, unknown> = {};
  for (const name of Object.keys(ConfigSchema.properties)) {
    const v = env[name];
    if (v !== undefined && v !== '') raw[name] = v;
  }
  const converted = Value.Default(ConfigSchema, Value.Convert(ConfigSchema, { ...raw })) as Record<string, unknown>;
  const problems = [...Value.Errors(ConfigSchema, converted)];
  if (problems.length > 0) {
    const seen = new Set<string>();
    const lines = problems.filter((p) => !seen.has(p.path) && seen.add(p.path)).map((p) => describeProblem(p.path.slice(1), raw[p.path.slice(1)], p.message));
    throw new ConfigError(`pgbyok cannot start with these settings:\n  ${lines.join('\n  ')}`);
  }
  return Object.freeze(converted) as Config;
}
