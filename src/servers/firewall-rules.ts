import { isIPv4 } from 'node:net';
import { errors } from '../lib/errors.js';
import type { FirewallRule, Server } from './model/server.js';
import type { ServersRepo } from './servers.repo.js';

/**
 * Azure's `flexibleServers/{name}/firewallRules`: IPv4 ranges a server's public endpoint admits. pgbyok
 * stores and returns them; its front door does not enforce them yet (servers listen on loopback).
 */

const NAME_RE = /^[-\w]{1,128}$/;
const ipValue = (ip: string) => ip.split('.').reduce((n, o) => n * 256 + Number(o), 0);

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
