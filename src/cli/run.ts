import type { Command } from 'commander';
import { CliContext, CliError } from './client.js';
import { print, type OutputFormat } from './output.js';

export interface GlobalOptions {
  home?: string;
  output: OutputFormat;
}

/** The exit code of a usage error: an unknown command or option, or an option's value that is not one. */
export const USAGE_EXIT = 2;

export function requireOutputFormat(format: string): void {
  if (!['json', 'table', 'none'].includes(format)) throw new CliError(`--output must be json, table or none, not '${format}'.`, USAGE_EXIT);
}

/** Wraps a command body: builds the context from the global options and prints what it returns. */
export function action<O extends object>(fn: (ctx: CliContext, opts: O & GlobalOptions, cmd: Command) => Promise<unknown>, columns?: string[]) {
  return async function (this: Command) {
    const opts = this.optsWithGlobals() as O & GlobalOptions;
    requireOutputFormat(opts.output);
    const result = await fn(new CliContext(opts.home), opts, this);
    print(result, opts.output, columns);
  };
}

export function parseTime(value: string | undefined, flag: string): number | null | undefined {
  if (value === undefined) return undefined;
  if (value === '' || value.toLowerCase() === 'none') return null;
  const ms = Date.parse(value);
  if (Number.isNaN(ms)) throw new CliError(`${flag} must be an ISO 8601 time such as 2027-01-31T00:00:00Z, or 'none'.`, USAGE_EXIT);
  return Math.floor(ms / 1000);
}

export function parseBool(value: string | undefined, flag: string): boolean | undefined {
  if (value === undefined) return undefined;
  if (/^(true|yes|1)$/i.test(value)) return true;
  if (/^(false|no|0)$/i.test(value)) return false;
  throw new CliError(`${flag} must be true or false, not '${value}'.`, USAGE_EXIT);
}

export function parseTags(pairs: string[] | undefined): Record<string, string> | undefined {
  if (!pairs) return undefined;
  return Object.fromEntries(pairs.map((p) => {
    const i = p.indexOf('=');
    if (i < 1) throw new CliError(`Tags are key=value pairs; '${p}' is not.`, USAGE_EXIT);
    return [p.slice(0, i), p.slice(i + 1)];
  }));
}

export function parseIntArg(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value)) throw new CliError(`${flag} must be a whole number, not '${value}'.`, USAGE_EXIT);
  return Number(value);
}
