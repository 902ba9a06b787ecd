import { closeSync, existsSync, openSync } from 'node:fs';
import Database from 'better-sqlite3';

export type Db = Database.Database;

/**
 * Schema migrations, applied in order and recorded in `user_version`. Append only: never edit a step
 * that has shipped. Secret columns (`sealed_*`) hold barrier-sealed blobs, never plaintext.
 */
const MIGRATIONS: string[] = [
  `
  CREATE TABLE tenants (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created INTEGER NOT NULL
  );
  CREATE TABLE principals (
    object_id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    client_id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL CHECK (kind IN ('ServicePrincipal', 'UserAssignedIdentity')),
    name TEXT NOT NULL,
    location TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    created INTEGER NOT NULL,
    UNIQUE (tenant_id, kind, name)
  );
  CREATE TABLE role_assignments (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    principal_id TEXT NOT NULL REFERENCES principals(object_id) ON DELETE CASCADE,
    role TEXT NOT NULL,
    created INTEGER NOT NULL,
    UNIQUE (tenant_id, principal_id, role)
  );
  CREATE TABLE signing_keys (
    kid TEXT PRIMARY KEY,
    created INTEGER NOT NULL,
    public_jwk TEXT NOT NULL,
    sealed_private BLOB NOT NULL
  );
  CREATE TABLE vaults (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    name TEXT NOT NULL UNIQUE,
    location TEXT NOT NULL,
    port INTEGER NOT NULL UNIQUE,
    retention_days INTEGER NOT NULL,
    purge_protection INTEGER NOT NULL,
    public_network_access TEXT NOT NULL,
    default_action TEXT NOT NULL,
    bypass TEXT NOT NULL,
    ip_rules TEXT NOT NULL,
    created INTEGER NOT NULL,
    updated INTEGER NOT NULL,
    deleted_at INTEGER,
    scheduled_purge INTEGER
  );
  CREATE TABLE access_policies (
    vault_id TEXT NOT NULL REFERENCES vaults(id) ON DELETE CASCADE,
    tenant_id TEXT NOT NULL,
    object_id TEXT NOT NULL,
    key_permissions TEXT NOT NULL,
    PRIMARY KEY (vault_id, object_id)
  );
  CREATE TABLE keys (
    vault_id TEXT NOT NULL REFERENCES vaults(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    created INTEGER NOT NULL,
    rotation_policy TEXT,
    deleted_at INTEGER,
    scheduled_purge INTEGER,
    PRIMARY KEY (vault_id, name)
  );
  CREATE TABLE key_versions (
    vault_id TEXT NOT NULL,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    seq INTEGER NOT NULL,
    kty TEXT NOT NULL,
    key_size INTEGER NOT NULL,
    key_ops TEXT NOT NULL,
    enabled INTEGER NOT NULL,
    nbf INTEGER,
    exp INTEGER,
    created INTEGER NOT NULL,
    updated INTEGER NOT NULL,
    tags TEXT,
    n TEXT NOT NULL,
    e TEXT NOT NULL,
    sealed_private BLOB NOT NULL,
    near_expiry_notified INTEGER NOT NULL DEFAULT 0,
    expired_notified INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (vault_id, name, version),
    FOREIGN KEY (vault_id, name) REFERENCES keys(vault_id, name) ON DELETE CASCADE
  );
  CREATE INDEX key_versions_latest ON key_versions (vault_id, name, seq);
  CREATE TABLE event_subscriptions (
    vault_id TEXT NOT NULL REFERENCES vaults(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    event_types TEXT NOT NULL,
    created INTEGER NOT NULL,
    PRIMARY KEY (vault_id, name)
  );
  CREATE TABLE audit_log (
    seq INTEGER PRIMARY KEY,
    record TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
  );
  CREATE TABLE meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
  `,
  `
  CREATE TABLE servers (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    name TEXT NOT NULL UNIQUE,
    location TEXT NOT NULL,
    state TEXT NOT NULL,
    version TEXT NOT NULL,
    storage_gb INTEGER NOT NULL,
    admin_login TEXT NOT NULL,
    admin_verifier TEXT NOT NULL,
    port INTEGER NOT NULL UNIQUE,
    encryption TEXT NOT NULL,
    wrapped_dek TEXT NOT NULL,
    wrapped_by TEXT NOT NULL,
    pending_encryption TEXT,
    pending_wrapped_dek TEXT,
    pending_wrapped_by TEXT,
    key_status TEXT NOT NULL,
    inaccessible_reason TEXT,
    key_unreachable_since INTEGER,
    created INTEGER NOT NULL,
    updated INTEGER NOT NULL
  );
  CREATE TABLE operations (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    server_name TEXT NOT NULL,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    step TEXT,
    started INTEGER NOT NULL,
    ended INTEGER
  );
  CREATE TABLE activity_log (
    id INTEGER PRIMARY KEY,
    time TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    operation TEXT NOT NULL,
    status TEXT NOT NULL,
    level TEXT NOT NULL,
    caller TEXT,
    message TEXT NOT NULL
  );
  CREATE INDEX activity_by_resource ON activity_log (tenant_id, resource_id, id);
  CREATE TABLE action_groups (
    tenant_id TEXT NOT NULL,
    name TEXT NOT NULL,
    webhooks TEXT NOT NULL,
    PRIMARY KEY (tenant_id, name)
  );
  CREATE TABLE alert_rules (
    tenant_id TEXT NOT NULL,
    name TEXT NOT NULL,
    condition TEXT NOT NULL,
    server_name TEXT,
    action_group TEXT NOT NULL,
    enabled INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, name)
  );
  `,
  `
  ALTER TABLE servers ADD COLUMN backup_retention_days INTEGER NOT NULL DEFAULT 7;
  ALTER TABLE servers ADD COLUMN restore_spec TEXT;
  `,
  `
  ALTER TABLE servers ADD COLUMN replication_role TEXT NOT NULL DEFAULT 'Primary';
  ALTER TABLE servers ADD COLUMN source_server TEXT;
  ALTER TABLE servers ADD COLUMN geo TEXT;
  `,
  `
  CREATE TABLE server_parameters (
    server_id TEXT NOT NULL REFERENCES servers(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    pending_restart INTEGER NOT NULL DEFAULT 0,
    updated INTEGER NOT NULL,
    PRIMARY KEY (server_id, name)
  );
  `,
  `
  -- Durable operations (issue 10): the validated input, a lease for several hosts, a fencing token, the
  -- public error; every step with its status, attempts and output; at most one open operation per server.
  ALTER TABLE operations ADD COLUMN server_id TEXT;
  ALTER TABLE operations ADD COLUMN input TEXT NOT NULL DEFAULT '{}';
  ALTER TABLE operations ADD COLUMN caller TEXT;
  ALTER TABLE operations ADD COLUMN error_code TEXT;
  ALTER TABLE operations ADD COLUMN lease_owner TEXT;
  ALTER TABLE operations ADD COLUMN lease_expires_at INTEGER;
  ALTER TABLE operations ADD COLUMN fence INTEGER NOT NULL DEFAULT 0;
  UPDATE operations SET status = 'Cancelled', error_code = 'OperationCancelled',
    error = 'Interrupted before operations were durable; the server was reconciled.', ended = started WHERE status = 'InProgress';
  CREATE UNIQUE INDEX one_open_operation_per_server ON operations (server_name) WHERE status IN ('Queued', 'InProgress');
  CREATE INDEX operations_by_tenant ON operations (tenant_id, started);
  CREATE TABLE operation_steps (
    operation_id TEXT NOT NULL REFERENCES operations(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    name TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('Pending', 'InProgress', 'Succeeded', 'Failed', 'Skipped')),
    attempts INTEGER NOT NULL DEFAULT 0,
    output TEXT,
    started INTEGER,
    ended INTEGER,
    PRIMARY KEY (operation_id, seq)
  );
  ALTER TABLE servers ADD COLUMN ready_at INTEGER;
  `,
  `
  -- The ARM resource model (issue 11): subscriptions of a tenant, resource groups, and where each resource
  -- sits (its subscription and group). Placement is kept apart from the domain tables: a vault, an identity
  -- or a server does not know its resource group; ARM ids are built from this table.
  CREATE TABLE subscriptions (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    display_name TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'Enabled',
    is_default INTEGER NOT NULL DEFAULT 0,
    alias TEXT,
    created INTEGER NOT NULL
  );
  CREATE UNIQUE INDEX one_default_subscription ON subscriptions (tenant_id) WHERE is_default = 1;
  CREATE UNIQUE INDEX subscription_alias ON subscriptions (tenant_id, alias) WHERE alias IS NOT NULL;
  CREATE TABLE resource_groups (
    subscription_id TEXT NOT NULL REFERENCES subscriptions(id),
    name TEXT NOT NULL COLLATE NOCASE,
    location TEXT NOT NULL,
    tags TEXT NOT NULL DEFAULT '{}',
    state TEXT NOT NULL DEFAULT 'Succeeded',
    created INTEGER NOT NULL,
    PRIMARY KEY (subscription_id, name)
  );
  CREATE TABLE resource_placement (
    tenant_id TEXT NOT NULL,
    resource_type TEXT NOT NULL COLLATE NOCASE,
    name TEXT NOT NULL COLLATE NOCASE,
    subscription_id TEXT NOT NULL,
    resource_group TEXT NOT NULL COLLATE NOCASE,
    tags TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (tenant_id, resource_type, name)
  );
  CREATE INDEX placement_by_group ON resource_placement (subscription_id, resource_group);
  `,
  `
  -- Role assignments at ARM scopes (Microsoft.Authorization/roleAssignments): each keeps the scope it was
  -- made at ('/' is tenant-wide, what every assignment before this was), and one role may be held by one
  -- principal once per scope. Vaults may authorize their data plane with role assignments instead of
  -- access policies (enableRbacAuthorization).
  CREATE TABLE role_assignments_scoped (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    principal_id TEXT NOT NULL REFERENCES principals(object_id) ON DELETE CASCADE,
    role TEXT NOT NULL,
    scope TEXT NOT NULL DEFAULT '/' COLLATE NOCASE,
    principal_type TEXT,
    created INTEGER NOT NULL,
    UNIQUE (tenant_id, principal_id, role, scope)
  );
  INSERT INTO role_assignments_scoped (id, tenant_id, principal_id, role, scope, created)
    SELECT id, tenant_id, principal_id, role, '/', created FROM role_assignments;
  DROP TABLE role_assignments;
  ALTER TABLE role_assignments_scoped RENAME TO role_assignments;
  CREATE INDEX role_assignments_by_principal ON role_assignments (tenant_id, principal_id);
  ALTER TABLE vaults ADD COLUMN enable_rbac_authorization INTEGER NOT NULL DEFAULT 0;
  `,
  `
  -- Flexible servers as ARM serves them (issue 11): the compute SKU a server was created with (a label: pgbyok
  -- does not size compute), and the server's firewall rules (stored and returned).
  ALTER TABLE servers ADD COLUMN sku_name TEXT NOT NULL DEFAULT 'Standard_D2s_v3';
  ALTER TABLE servers ADD COLUMN sku_tier TEXT NOT NULL DEFAULT 'GeneralPurpose';
  CREATE TABLE firewall_rules (
    server_id TEXT NOT NULL REFERENCES servers(id) ON DELETE CASCADE,
    name TEXT NOT NULL COLLATE NOCASE,
    start_ip TEXT NOT NULL,
    end_ip TEXT NOT NULL,
    created INTEGER NOT NULL,
    PRIMARY KEY (server_id, name)
  );
  `,
  `
  -- Azure Monitor (Microsoft.Insights). The activity log gains the ARM id of its resource (resolved when the
  -- entry is written, else on first read), Azure's event category, a correlation id and properties. Action
  -- groups and activity-log alerts are kept in Azure's shape; the rows of the older tables are copied over
  -- (an older alert rule becomes a tenant-wide alert whose condition names the operation it fired on) and
  -- those tables are no longer read. Diagnostic settings keep the audit-log sequence they have delivered up to.
  ALTER TABLE activity_log ADD COLUMN arm_id TEXT;
  ALTER TABLE activity_log ADD COLUMN category TEXT NOT NULL DEFAULT 'Administrative';
  ALTER TABLE activity_log ADD COLUMN correlation_id TEXT;
  ALTER TABLE activity_log ADD COLUMN properties TEXT;
  UPDATE activity_log SET category = 'ResourceHealth'
    WHERE operation IN ('Microsoft.DBforPostgreSQL/flexibleServers/inaccessible', 'Microsoft.DBforPostgreSQL/flexibleServers/available', 'Microsoft.DBforPostgreSQL/flexibleServers/keyAccessFailure');
  CREATE INDEX activity_by_time ON activity_log (tenant_id, time);
  CREATE TABLE monitor_action_groups (
    tenant_id TEXT NOT NULL,
    name TEXT NOT NULL COLLATE NOCASE,
    properties TEXT NOT NULL,
    tags TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (tenant_id, name)
  );
  CREATE TABLE monitor_alert_rules (
    tenant_id TEXT NOT NULL,
    name TEXT NOT NULL COLLATE NOCASE,
    properties TEXT NOT NULL,
    tags TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (tenant_id, name)
  );
  INSERT INTO monitor_action_groups (tenant_id, name, properties)
    SELECT tenant_id, name, json_object(
      'groupShortName', substr(name, 1, 12), 'enabled', json('true'), 'emailReceivers', json('[]'),
      'webhookReceivers', (SELECT json_group_array(json_object('name', 'webhook' || (key + 1), 'serviceUri', value, 'useCommonAlertSchema', json('true'))) FROM json_each(action_groups.webhooks)))
    FROM action_groups;
  INSERT INTO monitor_alert_rules (tenant_id, name, properties)
    SELECT tenant_id, name, json_object(
      'scopes', json_array('/tenants/' || tenant_id),
      'condition', json_object('allOf', (
        SELECT CASE WHEN server_name IS NULL THEN json(c)
          ELSE json_insert(json(c), '$[#]', json_object('field', 'resourceId', 'equals', '/tenants/' || tenant_id || '/providers/Microsoft.DBforPostgreSQL/flexibleServers/' || server_name)) END
        FROM (SELECT CASE condition
          WHEN 'ServerInaccessible' THEN json_array(json_object('field', 'operationName', 'equals', 'Microsoft.DBforPostgreSQL/flexibleServers/inaccessible'))
          WHEN 'KeyAccessFailure' THEN json_array(json_object('field', 'operationName', 'equals', 'Microsoft.DBforPostgreSQL/flexibleServers/keyAccessFailure'))
          WHEN 'ServerAvailable' THEN json_array(json_object('field', 'operationName', 'equals', 'Microsoft.DBforPostgreSQL/flexibleServers/available'))
          ELSE json_array(json_object('field', 'resourceType', 'equals', 'Microsoft.DBforPostgreSQL/flexibleServers')) END AS c))),
      'actions', json_object('actionGroups', json_array(json_object('actionGroupId', '/tenants/' || tenant_id || '/providers/Microsoft.Insights/actionGroups/' || action_group, 'webhookProperties', json('{}')))),
      'enabled', json(CASE WHEN enabled THEN 'true' ELSE 'false' END),
      'description', 'Migrated from the ' || condition || ' alert rule.')
    FROM alert_rules;
  CREATE TABLE diagnostic_settings (
    tenant_id TEXT NOT NULL,
    resource_type TEXT NOT NULL COLLATE NOCASE,
    resource_name TEXT NOT NULL COLLATE NOCASE,
    name TEXT NOT NULL COLLATE NOCASE,
    properties TEXT NOT NULL,
    delivered_seq INTEGER NOT NULL,
    created INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, resource_type, resource_name, name)
  );
  `,
  `
  -- Azure Monitor's tables (the migration before) hold action groups and alerts now; the older ones go.
  DROP TABLE action_groups;
  DROP TABLE alert_rules;
  `,
  `
  -- Managed HSMs are vaults of another kind (keys, versions and soft-delete are shared); their own state
  -- (initial administrators, activation, the token ids of the security-domain and transfer keys) is JSON.
  ALTER TABLE vaults ADD COLUMN kind TEXT NOT NULL DEFAULT 'vault';
  ALTER TABLE vaults ADD COLUMN hsm TEXT;
  -- An HSM key's material is in the PKCS#11 token, named by its CKA_ID; sealed_private is empty then.
  ALTER TABLE key_versions ADD COLUMN token_key_id TEXT;
  CREATE TABLE hsm_role_assignments (
    vault_id TEXT NOT NULL REFERENCES vaults(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    scope TEXT NOT NULL,
    role_definition_id TEXT NOT NULL,
    principal_id TEXT NOT NULL,
    created INTEGER NOT NULL,
    PRIMARY KEY (vault_id, name)
  );
  CREATE TABLE hsm_role_definitions (
    vault_id TEXT NOT NULL REFERENCES vaults(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    properties TEXT NOT NULL,
    created INTEGER NOT NULL,
    PRIMARY KEY (vault_id, name)
  );
  -- The platform's PKCS#11 token: module path, label, and the PIN sealed by the barrier.
  CREATE TABLE hsm_token (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    module_path TEXT NOT NULL,
    token_label TEXT NOT NULL,
    sealed_pin BLOB NOT NULL,
    created INTEGER NOT NULL
  );
  `,
];

export function openDb(path: string): Db {
  // SQLite gives its -wal and -shm files the database file's mode, so creating it 0600 covers all three.
  if (!existsSync(path)) closeSync(openSync(path, 'a', 0o600));
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  // FULL: a committed change of the key state (a wrapped DEK, a re-wrap step) survives a power loss, not only a crash.
  db.pragma('synchronous = FULL');
  db.pragma('foreign_keys = ON');
  db.pragma('busy_timeout = 5000');
  const current = db.pragma('user_version', { simple: true }) as number;
  for (let i = current; i < MIGRATIONS.length; i++) {
    db.transaction(() => {
      db.exec(MIGRATIONS[i]);
      db.pragma(`user_version = ${i + 1}`);
    })();
  }
  return db;
}
