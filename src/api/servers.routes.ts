import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { errors } from '../lib/errors.js';
import { bearerToken, queryOf } from '../http/request.js';
import type { Caller as IdentityCaller } from '../identity/identity.service.js';
import type { Caller, ServersService } from '../servers/servers.service.js';
import type { Server } from '../servers/servers.repo.js';
import type { Operation, OperationStep } from '../servers/operations/operations.repo.js';
import { registerParameterRoutes } from './parameters.routes.js';

/** Azure Flexible Server shapes of the servers API, kept apart from the domain model. */

const FS = '/tenants/:tid/providers/Microsoft.DBforPostgreSQL/flexibleServers';

export function serverWire(s: Server, earliestRestoreDate?: string) {
  const enc = s.current.encryption;
  const cmk = enc.type === 'AzureKeyVault';
  return {
    id: `/tenants/${s.tenantId}/providers/Microsoft.DBforPostgreSQL/flexibleServers/${s.name}`,
    name: s.name,
    type: 'Microsoft.DBforPostgreSQL/flexibleServers',
    location: s.location,
    identity: cmk ? { type: 'UserAssigned', userAssignedIdentities: { [enc.primaryUserAssignedIdentityId!]: {} } } : { type: 'None' },
    properties: {
      state: s.state,
      version: s.version,
      fullyQualifiedDomainName: 'localhost',
      port: s.port,
      administratorLogin: s.adminLogin,
      storage: { storageSizeGB: s.storageGb },
      backup: {
        backupRetentionDays: s.backupRetentionDays, geoRedundantBackup: s.geo ? 'Enabled' : 'Disabled', ...(s.geo ? { geoBackupRegion: s.geo.region } : {}),
        ...(earliestRestoreDate ? { earliestRestoreDate } : {}),
      },
      dataEncryption: {
        type: enc.type,
        primaryKeyURI: enc.primaryKeyURI ?? null,
        primaryUserAssignedIdentityId: enc.primaryUserAssignedIdentityId ?? null,
        primaryEncryptionKeyStatus: cmk ? s.keyStatus : null,
        geoBackupKeyURI: s.geo?.encryption.primaryKeyURI ?? null,
        geoBackupUserAssignedIdentityId: s.geo?.encryption.primaryUserAssignedIdentityId ?? null,
        geoBackupEncryptionKeyStatus: s.geo?.encryption.type === 'AzureKeyVault' ? s.geo.keyStatus : null,
      },
      replicationRole: s.replicationRole,
      ...(s.sourceServer ? { sourceServerResourceId: `/tenants/${s.tenantId}/providers/Microsoft.DBforPostgreSQL/flexibleServers/${s.sourceServer}` } : {}),
      ...(s.inaccessibleReason ? { inaccessibleReason: s.inaccessibleReason } : {}),
      network: { publicNetworkAccess: 'Enabled' },
    },
    systemData: { createdAt: new Date(s.created * 1000).toISOString(), lastModifiedAt: new Date(s.updated * 1000).toISOString() },
  };
}

export function operationWire(o: Operation & { steps?: OperationStep[] }) {
  return {
    id: `/tenants/${o.tenantId}/providers/Microsoft.DBforPostgreSQL/operations/${o.id}`,
    name: o.id,
    status: o.status,
    operation: o.kind,
    resource: o.serverName,
    startTime: new Date(o.started * 1000).toISOString(),
    ...(o.ended ? { endTime: new Date(o.ended * 1000).toISOString() } : {}),
    ...(o.errorCode && o.status !== 'Succeeded' ? { error: { code: o.errorCode, message: o.error ?? '' } } : {}),
    ...(o.steps ? { steps: o.steps.map((st) => ({ seq: st.seq, name: st.name, status: st.status, attempts: st.attempts })) } : {}),
  };
}

export function callerOf(req: FastifyRequest): Caller {
  const c = req.caller as IdentityCaller;
  return { tenantId: c.principal.tenantId, objectId: c.principal.objectId, name: c.principal.name, token: bearerToken(req)! };
}

/** An accepted long operation, as ARM answers it: 202, the resource, and where to poll. */
export function accepted(reply: FastifyReply, req: FastifyRequest, tenantId: string, op: Operation, body: unknown) {
  const url = `https://${req.headers.host}/tenants/${tenantId}/providers/Microsoft.DBforPostgreSQL/operations/${op.id}`;
  return reply.code(202).header('azure-asyncoperation', url).header('location', url).send(body);
}

type NameParams = { tid: string; name: string };

export function registerServerRoutes(app: FastifyInstance, servers: ServersService) {
  app.put<{ Params: NameParams; Body: any }>(`${FS}/:name`, {
    config: { operation: 'ServerCreate', duty: 'manageServers' },
    schema: {
      body: {
        type: 'object', required: ['location', 'properties'],
        properties: {
          location: { type: 'string' },
          identity: { type: 'object' },
          properties: {
            type: 'object',
            properties: {
              createMode: { type: 'string' },
              sourceServerResourceId: { type: 'string' },
              pointInTimeUTC: { type: 'string' },
              backup: { type: 'object', properties: { backupRetentionDays: { type: 'integer' }, geoRedundantBackup: { type: 'string', enum: ['Enabled', 'Disabled'] } } },
              version: { type: 'string' },
              administratorLogin: { type: 'string' },
              administratorLoginPassword: { type: 'string' },
              storage: { type: 'object', properties: { storageSizeGB: { type: 'integer' } } },
              dataEncryption: {
                type: 'object',
                properties: {
                  type: { type: 'string' }, primaryKeyURI: { type: 'string' }, primaryUserAssignedIdentityId: { type: 'string' },
                  geoBackupKeyURI: { type: 'string' }, geoBackupUserAssignedIdentityId: { type: 'string' },
                },
              },
            },
          },
        },
      },
    },
  }, async (req, reply) => {
    const body = req.body as any;
    const p = body.properties;
    const enc = p.dataEncryption ?? {};
    if (p.createMode !== undefined && !['Default', 'Create', 'PointInTimeRestore', 'Replica', 'GeoRestore'].includes(p.createMode)) {
      throw errors.badParameter(`createMode '${p.createMode}' is not supported; use Default, PointInTimeRestore, GeoRestore or Replica.`);
    }
    if (p.createMode === 'Replica') {
      if (!p.sourceServerResourceId) throw errors.badParameter('A replica needs properties.sourceServerResourceId.');
      const { server, operation } = await servers.createReplica(callerOf(req), {
        source: String(p.sourceServerResourceId).split('/').pop()!, name: req.params.name, location: body.location,
        keyUri: enc.primaryKeyURI, identity: enc.primaryUserAssignedIdentityId,
      });
      return accepted(reply, req, req.params.tid, operation, serverWire(server));
    }
    if (p.createMode === 'PointInTimeRestore' || p.createMode === 'GeoRestore') {
      if (!p.sourceServerResourceId) throw errors.badParameter('A restore needs properties.sourceServerResourceId.');
      const { server, operation } = await servers.restore(callerOf(req), {
        geo: p.createMode === 'GeoRestore',
        source: String(p.sourceServerResourceId).split('/').pop()!, name: req.params.name, restoreTime: p.pointInTimeUTC,
        location: body.location, keyUri: enc.primaryKeyURI, identity: enc.primaryUserAssignedIdentityId, encryptionType: enc.type,
      });
      return accepted(reply, req, req.params.tid, operation, serverWire(server));
    }
    if (!p.administratorLogin || !p.administratorLoginPassword) throw errors.badParameter('properties.administratorLogin and administratorLoginPassword are required.');
    if (enc.type && !['SystemManaged', 'AzureKeyVault'].includes(enc.type)) throw errors.badParameter(`dataEncryption.type must be SystemManaged or AzureKeyVault, not '${enc.type}'.`);
    if (enc.type === 'AzureKeyVault' && (!enc.primaryKeyURI || !enc.primaryUserAssignedIdentityId)) {
      throw errors.badParameter('dataEncryption of type AzureKeyVault needs primaryKeyURI and primaryUserAssignedIdentityId.', 'KeyAndIdentityRequired');
    }
    if (enc.type === 'SystemManaged' && (enc.primaryKeyURI || enc.primaryUserAssignedIdentityId)) {
      throw errors.badParameter('dataEncryption of type SystemManaged takes no key or identity.');
    }
    const { server, operation } = await servers.create(callerOf(req), {
      name: req.params.name, location: body.location, version: p.version, storageSizeGB: p.storage?.storageSizeGB,
      administratorLogin: p.administratorLogin, administratorLoginPassword: p.administratorLoginPassword,
      keyUri: enc.primaryKeyURI, identity: enc.primaryUserAssignedIdentityId, backupRetentionDays: p.backup?.backupRetentionDays,
      geoRedundantBackup: p.backup?.geoRedundantBackup === 'Enabled', geoBackupKeyUri: enc.geoBackupKeyURI, geoBackupIdentity: enc.geoBackupUserAssignedIdentityId,
    });
    return accepted(reply, req, req.params.tid, operation, serverWire(server));
  });

  app.patch<{ Params: NameParams; Body: any }>(`${FS}/:name`, {
    config: { operation: 'ServerUpdate', duty: 'manageServers' },
    schema: {
      body: {
        type: 'object',
        properties: {
          properties: {
            type: 'object',
            properties: {
              storage: { type: 'object', properties: { storageSizeGB: { type: 'integer' } } },
              administratorLoginPassword: { type: 'string' },
              dataEncryption: { type: 'object', properties: { type: { type: 'string' }, primaryKeyURI: { type: 'string' }, primaryUserAssignedIdentityId: { type: 'string' } } },
            },
          },
        },
      },
    },
  }, async (req, reply) => {
    const p = (req.body as any)?.properties ?? {};
    const { server, operation } = await servers.update(callerOf(req), req.params.name, {
      storageSizeGB: p.storage?.storageSizeGB, keyUri: p.dataEncryption?.primaryKeyURI,
      identity: p.dataEncryption?.primaryUserAssignedIdentityId, encryptionType: p.dataEncryption?.type,
      administratorLoginPassword: p.administratorLoginPassword,
    });
    return accepted(reply, req, req.params.tid, operation, serverWire(server));
  });

  app.get<{ Params: { tid: string } }>(FS, { config: { operation: 'ServerList', duty: 'readServers' } }, async (req) => ({
    value: servers.list(req.params.tid).map((s) => serverWire(s, servers.earliestRestore(s))),
  }));
  app.get<{ Params: NameParams }>(`${FS}/:name`, { config: { operation: 'ServerGet', duty: 'readServers' } }, async (req) =>
    { const s = servers.get(req.params.tid, req.params.name); return serverWire(s, servers.earliestRestore(s)); });
  app.delete<{ Params: NameParams }>(`${FS}/:name`, { config: { operation: 'ServerDelete', duty: 'manageServers' } }, async (req, reply) => {
    const op = servers.delete(callerOf(req), req.params.name);
    return accepted(reply, req, req.params.tid, op, {});
  });
  app.get<{ Params: NameParams }>(`${FS}/:name/replicas`, { config: { operation: 'ReplicaList', duty: 'readServers' } }, async (req) => ({
    value: servers.replicas(callerOf(req), req.params.name).map((s) => serverWire(s)),
  }));
  for (const action of ['stop', 'start', 'restart', 'revalidate', 'promote'] as const) {
    app.post<{ Params: NameParams }>(`${FS}/:name/${action}`, { config: { operation: `Server${action[0].toUpperCase()}${action.slice(1)}`, duty: 'manageServers' } }, async (req, reply) => {
      const op = servers[action](callerOf(req), req.params.name);
      return accepted(reply, req, req.params.tid, op, {});
    });
  }
  app.get<{ Params: NameParams }>(`${FS}/:name/backups`, { config: { operation: 'BackupList', duty: 'readServers' } }, async (req) => ({
    value: servers.backups(callerOf(req), req.params.name).map((m) => ({
      id: `/tenants/${req.params.tid}/providers/Microsoft.DBforPostgreSQL/flexibleServers/${req.params.name}/backups/${m.id}`,
      name: m.id,
      type: 'Microsoft.DBforPostgreSQL/flexibleServers/backups',
      properties: {
        backupType: m.type, completedTime: m.endTime, startTime: m.startTime, sizeBytes: m.sizeBytes, encryptionKeyEpoch: m.epoch,
        encryptionKeyVersion: m.wrappedBy ?? null,
      },
    })),
  }));
  app.post<{ Params: NameParams }>(`${FS}/:name/backups`, { config: { operation: 'BackupCreate', duty: 'manageServers' } }, async (req, reply) => {
    const op = servers.backup(callerOf(req), req.params.name);
    return accepted(reply, req, req.params.tid, op, {});
  });
  registerParameterRoutes(app, servers);
  app.get<{ Params: NameParams }>(`${FS}/:name/health`, { config: { operation: 'ServerHealth', duty: 'readServers' } }, async (req) =>
    servers.health(callerOf(req), req.params.name));
  app.get<{ Params: { tid: string; id: string } }>('/tenants/:tid/providers/Microsoft.DBforPostgreSQL/operations/:id', {
    config: { operation: 'OperationGet', duty: 'readServers' },
  }, async (req) => operationWire(servers.operation(req.params.tid, req.params.id)));
  app.get<{ Params: { tid: string } }>('/tenants/:tid/providers/Microsoft.DBforPostgreSQL/operations', {
    config: { operation: 'OperationList', duty: 'readServers' },
  }, async (req) => {
    const top = queryOf(req).get('top');
    if (top !== null && !/^\d+$/.test(top)) throw errors.badParameter('top must be a whole number.');
    return { value: servers.operations(req.params.tid, top ? Number(top) : 100).map(operationWire) };
  });
}
