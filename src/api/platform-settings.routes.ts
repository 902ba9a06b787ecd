import type { FastifyInstance } from 'fastify';
import { errors } from '../lib/errors.js';

/** Platform settings the system administrator may change at run time: [min, max, default]. */
export const PLATFORM_SETTINGS = { keyMonitorIntervalSeconds: [5, 3600, 30], vaultUnreachableGraceSeconds: [0, 86400, 60] } as const;
export type PlatformSettingName = keyof typeof PLATFORM_SETTINGS;

export interface SettingsStore {
  setting(key: string): string | undefined;
  putSetting(key: string, value: string): void;
}

/** The current value of a platform setting, in seconds. */
export const platformSetting = (store: SettingsStore, name: PlatformSettingName): number =>
  Number(store.setting(name) ?? PLATFORM_SETTINGS[name][2]);

/** Platform settings: the system administrator's duty, from the platform tenant. */
export function registerPlatformSettingsRoutes(app: FastifyInstance, store: SettingsStore): void {
  const view = () => Object.fromEntries(Object.keys(PLATFORM_SETTINGS).map((k) => [k, platformSetting(store, k as PlatformSettingName)]));
  app.get('/tenants/:tid/platformSettings', { config: { operation: 'PlatformSettingsGet', duty: 'managePlatformSettings' } }, async () => view());
  app.patch<{ Body: Record<string, number> }>('/tenants/:tid/platformSettings', {
    config: { operation: 'PlatformSettingsUpdate', duty: 'managePlatformSettings' },
    schema: { body: { type: 'object', additionalProperties: false, properties: Object.fromEntries(Object.keys(PLATFORM_SETTINGS).map((k) => [k, { type: 'integer' }])) } },
  }, async (req) => {
    const body = req.body ?? {};
    // Check every value before storing any, so a bad request changes nothing.
    for (const [k, v] of Object.entries(body)) {
      const [min, max] = PLATFORM_SETTINGS[k as PlatformSettingName];
      if (v < min || v > max) throw errors.badParameter(`${k} must be from ${min} to ${max}.`);
    }
    for (const [k, v] of Object.entries(body)) store.putSetting(k, String(v));
    return view();
  });
}
