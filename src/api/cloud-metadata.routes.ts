import type { Names } from '../lib/names.js';
import type { FastifyInstance } from 'fastify';
import { queryOf, requestOrigin } from '../http/request.js';
import { RESOURCES } from '../identity/tokens.js';

/**
 * ARM's cloud discovery, `GET {arm}/metadata/endpoints`, so that `az cloud register --endpoint-resource-manager
 * {origin}/` alone configures the CLI. Two shapes, one document:
 *  - api-version 2015-01-01 (what `az cloud register` asks, msrestazure `_populate_from_metadata_endpoint`):
 *    `galleryEndpoint`, `graphEndpoint`, `authentication.loginEndpoint`, `authentication.audiences[0]`;
 *  - 2019-05-01 and later (az's `ARM_CLOUD_METADATA_URL`, `_arm_to_cli_mapper`): `name`, `resourceManager`,
 *    `authentication`, `graphAudience`, `microsoftGraphResourceId`, `suffixes.keyVaultDns`, … — a list of
 *    clouds before 2022-09-01, the one cloud as an object from then on, as ARM answers.
 * The login endpoint is the ADFS-shaped authority (`{origin}/adfs`): MSAL skips Microsoft's instance
 * discovery for it. Graph is not served; its endpoints point here so a Graph call fails at pgbyok, not abroad.
 */
export function registerCloudMetadataRoutes(app: FastifyInstance, d: { canonicalOrigin: string; names: Pick<Names, 'domain' | 'vaultPort'> }) {
  const domain = d.names.domain;
  // az builds `https://<vault><suffix>`: a vault port other than 443 goes into the suffix.
  const vaultPort = d.names.vaultPort === 443 ? '' : `:${d.names.vaultPort}`;
  app.get('/metadata/endpoints', {
    config: { operation: 'CloudMetadata', public: 'cloud discovery', audit: false },
  }, async (req) => {
    const origin = requestOrigin(req, d.canonicalOrigin);
    const graph = `${origin}/graph/`;
    const cloud = {
      // The 2015-01-01 names.
      galleryEndpoint: '',
      graphEndpoint: graph,
      portalEndpoint: '',
      authentication: {
        loginEndpoint: `${origin}/adfs`,
        audiences: [`${RESOURCES.management}/`],
        tenant: 'adfs',
        identityProvider: 'ADFS',
      },
      // The 2019-05-01 and 2022-09-01 names.
      name: 'pgbyok',
      resourceManager: `${origin}/`,
      portal: '',
      gallery: '',
      graph,
      graphAudience: graph,
      microsoftGraphResourceId: graph,
      suffixes: {
        keyVaultDns: `vault.${domain}${vaultPort}`,
        mhsmDns: `managedhsm.${domain}`,
        postgresqlServerEndpoint: `postgres.database.${domain}`,
      },
    };
    const version = queryOf(req).get('api-version') ?? '';
    return version >= '2019-05-01' && version < '2022-09-01' ? [cloud] : cloud;
  });
}
