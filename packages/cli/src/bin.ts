#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { ConfigError } from '@mxguard/core';
import { parseRelayTarget } from '@mxguard/smtp';
import { runCheck } from './check.js';
import { configJsonSchema } from './config.js';
import { describeConfig } from './config-check.js';
import { jsonLogger, loadConfig } from './runtime.js';
import { runPolicy, runServe, type TlsFiles } from './serve.js';
import { createRuntime } from './wiring.js';

const USAGE = `mxguard: SMTP-time anti-spam checks

Usage:
  mxguard check  [--config FILE] [--offline | --resolver HOST:PORT]
      Reads JSON sessions on stdin, one a line, writes one JSON verdict a line on stdout.
  mxguard serve  [--listen 127.0.0.1:2525] [--config FILE] [--spool DIR | --relay URL] [--offline | --resolver HOST:PORT]
      A filtering inbound MX: smtp-server with the recommended preset, handing accepted mail to the
      MTA behind it (--relay smtp://HOST:PORT, lmtp://HOST:PORT or lmtp:/SOCKET) or to a spool folder.
  mxguard policy [--listen 127.0.0.1:10023 | --socket PATH] [--config FILE] [--offline | --resolver HOST:PORT]
      A Postfix policy server (check_policy_service inet:127.0.0.1:10023).
  mxguard config check FILE [--offline]
      Validates FILE and prints the effective chain link by link, and what is off and why.
  mxguard config schema
      Prints the JSON Schema of the config file (schema/mxguard.schema.json).

Every config error exits with status 2, naming the place in the file and the nearest known name.

Options:
  --config FILE        JSON config: ourDomains, ourHosts, ourNetworks, trustedForwarders, helpUrl, checks, ...
  --offline            no DNS at all: DNS checks are skipped and say so in the trace
  --resolver HOST:PORT the DNS server to ask (default: the system's)
  --relay URL          serve: the MTA behind us; the client's 250 comes after that MTA's (default: spool)
  --spool DIR          serve: folder for accepted mail when there is no relay (default: ./spool)
  --budget MS          serve, policy: the time budget of one answer in milliseconds (default: serve
                       10000, policy 8000); lookups unfinished then count as temporary failures
  --tls-key FILE       serve: PEM key for STARTTLS (with --tls-cert; re-read on SIGHUP)
  --tls-cert FILE      serve: PEM certificate chain for STARTTLS (default: no STARTTLS)
  --tls-min-version V  serve: TLSv1 | TLSv1.1 | TLSv1.2 | TLSv1.3 (default TLSv1.2)
  --log-level LEVEL    debug | info | warn | error (default info; logs go to stderr)
`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === 'help' || command === '--help' || command === '-h') {
    process.stdout.write(USAGE);
    return command === undefined ? 2 : 0;
  }
  if (command === 'config') return configCommand(rest);
  const { values } = parseArgs({
    args: rest,
    options: {
      config: { type: 'string' },
      offline: { type: 'boolean', default: false },
      resolver: { type: 'string' },
      listen: { type: 'string' },
      socket: { type: 'string' },
      spool: { type: 'string' },
      relay: { type: 'string' },
      'tls-key': { type: 'string' },
      'tls-cert': { type: 'string' },
      'tls-min-version': { type: 'string' },
      'log-level': { type: 'string', default: 'info' },
      budget: { type: 'string' },
    },
    strict: true,
  });
  const level = values['log-level'];
  if (level !== 'debug' && level !== 'info' && level !== 'warn' && level !== 'error') {
    throw new UsageError(`--log-level must be debug, info, warn or error`);
  }
  if (values.offline && values.resolver) throw new UsageError('--offline and --resolver exclude each other');
  const budget = values.budget === undefined ? undefined : Number(values.budget);
  if (budget !== undefined && !(Number.isInteger(budget) && budget >= 100 && budget <= 600_000)) {
    throw new UsageError(
      `--budget must be a whole number of milliseconds from 100 to 600000; got "${values.budget}"`,
    );
  }
  const log = jsonLogger((l) => process.stderr.write(l), level);
  const config = await loadConfig(values.config);
  const common = {
    offline: values.offline === true,
    ...(values.resolver ? { resolver: values.resolver } : {}),
    log,
  };
  switch (command) {
    case 'check': {
      if (budget !== undefined)
        throw new UsageError('--budget is for serve and policy: check has no caller waiting');
      const rt = await createRuntime(config, common);
      try {
        const bad = await runCheck(process.stdin, process.stdout, rt);
        return bad > 0 ? 1 : 0;
      } finally {
        await rt.close();
      }
    }
    case 'serve': {
      if (values.relay && values.spool) throw new UsageError('--relay and --spool exclude each other');
      if (values.relay) {
        try {
          parseRelayTarget(values.relay);
        } catch (err) {
          throw new UsageError(`--relay: ${(err as Error).message}`);
        }
      }
      if (!values['tls-key'] !== !values['tls-cert'])
        throw new UsageError('--tls-key and --tls-cert go together');
      const minVersion = values['tls-min-version'];
      if (minVersion !== undefined && !['TLSv1', 'TLSv1.1', 'TLSv1.2', 'TLSv1.3'].includes(minVersion))
        throw new UsageError('--tls-min-version must be TLSv1, TLSv1.1, TLSv1.2 or TLSv1.3');
      return runServe(config, {
        ...common,
        listen: values.listen ?? '127.0.0.1:2525',
        spool: values.spool,
        relay: values.relay,
        ...(values['tls-key'] && values['tls-cert']
          ? {
              tls: {
                keyFile: values['tls-key'],
                certFile: values['tls-cert'],
                ...(minVersion ? { minVersion: minVersion as TlsFiles['minVersion'] } : {}),
              },
            }
          : {}),
        budget,
      });
    }
    case 'policy':
      return runPolicy(config, { ...common, listen: values.listen, socket: values.socket, budget });
    default:
      throw new UsageError(`unknown command "${command}"`);
  }
}

/** `mxguard config check FILE` and `mxguard config schema`. */
async function configCommand(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  const { values, positionals } = parseArgs({
    args: rest,
    options: { offline: { type: 'boolean', default: false } },
    allowPositionals: true,
    strict: true,
  });
  if (sub === 'schema' && positionals.length === 0) {
    process.stdout.write(`${JSON.stringify(configJsonSchema(), null, 2)}\n`);
    return 0;
  }
  if (sub === 'check' && positionals.length === 1) {
    const file = positionals[0] as string;
    const config = await loadConfig(file);
    process.stdout.write(await describeConfig(config, { offline: values.offline === true, source: file }));
    return 0;
  }
  throw new UsageError('usage: mxguard config check FILE [--offline] | mxguard config schema');
}

class UsageError extends Error {}

main(process.argv.slice(2)).then(
  (code) => {
    if (code !== undefined) process.exitCode = code;
  },
  (err: unknown) => {
    if (
      err instanceof UsageError ||
      err instanceof ConfigError ||
      (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')
    ) {
      process.stderr.write(`mxguard: ${(err as Error).message}\n${err instanceof UsageError ? USAGE : ''}`);
      process.exitCode = 2;
      return;
    }
    process.stderr.write(`mxguard: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exitCode = 1;
  },
);
