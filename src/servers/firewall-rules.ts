import { isIPv4 } from 'node:net';
import { errors } from '../lib/errors.js';
import type { FirewallRule, Server } from './model/server.js';
import type { ServersRepo } from './servers.repo.js';
import type { Refusal } from './responder.js';

/**
 * Azure's `flexibleServers/{name}/firewallRules`: IPv4 ranges a server's endpoint admits. The front door
 * enforces them on every new connection (`firewallRefusal`). A server with no rule admits every address that
 * reaches it — unlike Azure, whose public endpoint admits none then — because pgbyok servers listen on loopback
 * and are reached from the machine itself.
 */

const NAME_RE = /^[-\w]{1,128}$/;
const ipValue = (ip: string) => ip.split('.').reduce((n, o) => n * 256 + Number(o), 0);

/**
 * Why the rules refuse a client address, or undefined when they admit it (no rules admit all). Azure's rules
 * are IPv4: a client on IPv6 loopback counts as 127.0.0.1, an IPv4-mapped address as its IPv4 one. The
 * refusal is PostgreSQL's own for an address no rule admits (SQLSTATE 28000), as Azure's server answers.
 */
export function firewallRefusal(rules: FirewallRule[], address: string | undefined): Refusal | undefined {
  if (rules.length === 0) return undefined;
  const a = address === '::1' ? '127.0.0.1' : address?.startsWith('::ffff:') ? address.slice(7) : address ?? '';
  if (isIPv4(a) && rules.some((r) => ipValue(r.startIpAddress) <= ipValue(a) && ipValue(a) <= ipValue(r.endIpAddress))) return undefined;
  return { code: '28000', message: `no pg_hba.conf entry for host "${a}": no firewall rule of the server admits this address` };
}

export function createFirewallRules(d: { repo: ServersRepo; requireServer: (tenantId: string, name: string) => Server }) {
  const find = (s: Server, name: string) => d.repo.firewallRules(s.id).find((r) => r.name.toLowerCase() === name.toLowerCase());
  return {
    list: (tenantId: string, serverName: string) => d.repo.firewallRules(d.requireServer(tenantId, serverName).id),
    get(tenantId: string, serverName: string, name: string): FirewallRule {
      const s = d.requireServer(tenantId, serverName);
      const r = find(s, name);
      if (!r) throw errors.notFound('ResourceNotFound', `The firewall rule '${name}' was not found on server ${s.name}.`);
      return r;
    },
    /** Create or replace; answers whether it is new. */
    put(tenantId: string, serverName: string, rule: FirewallRule): { rule: FirewallRule; created: boolean } {
      const s = d.requireServer(tenantId, serverName);
      if (!NAME_RE.test(rule.name)) throw errors.badParameter(`The firewall rule name '${rule.name}' is invalid: 1-128 letters, digits, '-' and '_'.`, 'InvalidFirewallRuleName');
      for (const ip of [rule.startIpAddress, rule.endIpAddress]) {
        if (!isIPv4(ip)) throw errors.badParameter(`'${ip}' is not an IPv4 address.`, 'InvalidIpAddress');
      }
      if (ipValue(rule.startIpAddress) > ipValue(rule.endIpAddress)) {
        throw errors.badParameter(`The start address ${rule.startIpAddress} is after the end address ${rule.endIpAddress}.`, 'InvalidIpAddressRange');
      }
      const name = find(s, rule.name)?.name ?? rule.name;
      const created = d.repo.putFirewallRule(s.id, { ...rule, name });
      return { rule: { ...rule, name }, created };
    },
    delete(tenantId: string, serverName: string, name: string): boolean {
      return d.repo.deleteFirewallRule(d.requireServer(tenantId, serverName).id, name);
    },
  };
}

export type FirewallRules = ReturnType<typeof createFirewallRules>;
