import { readFileSync } from 'node:fs';
import { ConfigError, LOG_TRACES, type LogTrace } from '@mxguard/core';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { createLog, type LogFormat, type LogLevel } from './logging.js';
import { PRIVACY_LEVELS, type Privacy } from './privacy.js';
import { loadConfig, UsageError } from './runtime.js';

/** The version of the `mxguard` package, read from its package.json. */
export function version(): string {
  const manifest = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
    version: string;
  };
  return manifest.version;
}

/** The options every command takes: the config, DNS, logging. */
export interface CommonFlags {
  /** `--config`: the JSON config file (default: none, the embedded defaults). */
  config?: string;
  /** `--offline`: no DNS at all; the DNS checks are skipped and say so in the trace. */
  offline: boolean;
  /** `--resolver`: the DNS server to ask, `host:port` (default: the system's). */
  resolver?: string;
  /** `--log-level`: the least severe log line written. */
  logLevel: LogLevel;
  /** `--log-format`: `json` (one object a line) or `text` (one Postfix-like line). */
  logFormat: LogFormat;
  /** `--log-file`: append the log to this file, reopened on SIGHUP (default: stderr). */
  logFile?: string;
  /** `--log-privacy`: how much of addresses the log shows. */
  logPrivacy: Privacy;
}

/** What a command's action gets besides its flags: where its exit status goes. */
export interface ProgramIo {
  /** Set by the command that ran; the process exits with it. */
  exitCode: number;
}

/** Adds the options every command shares, so each `--help` lists them with their defaults. */
export function addCommonOptions(cmd: Command): Command {
  return cmd
    .option('--config <file>', 'JSON config: ourDomains, ourHosts, ourNetworks, checks, ... (default: none)')
    .addOption(
      new Option('--offline', 'no DNS at all: DNS checks are skipped and say so in the trace')
        .default(false)
        .conflicts('resolver'),
    )
    .option('--resolver <host:port>', "the DNS server to ask (default: the system's)")
    .addOption(
      new Option('--log-level <level>', 'the least severe log line written')
        .choices(['debug', 'info', 'warn', 'error'])
        .default('info'),
    )
    .addOption(
      new Option('--log-format <format>', 'json: one JSON object a line; text: one Postfix-like line')
        .choices(['json', 'text'])
        .default('json'),
    )
    .option('--log-file <file>', 'append the log to this file, reopened on SIGHUP (default: stderr)')
    .addOption(
      new Option(
        '--log-privacy <level>',
        'addresses in logs: full; truncate (client /24 or /48, domain of mail addresses); hash (keyed hash of client and local parts)',
      )
        .choices([...PRIVACY_LEVELS])
        .default('full'),
    );
}

/** The `--http` and `--log-trace` flags of `serve` and `policy`. */
interface HttpCliFlags {
  http?: string;
  httpAllowRemote: boolean;
  /** `--log-trace`: how much of the trace each decision line carries. */
  logTrace: LogTrace;
}

/**
 * `--log-trace`: of the commands that write decision lines (`serve`, `policy`), how much of the
 * trace each line carries: the steps that said something (and `steps`, how many links ran), or every
 * step. `mxguard check` and the status page always show the whole trace.
 */
function logTraceOption(): Option {
  return new Option(
    '--log-trace <trace>',
    'the trace in each decision line: said (the steps that said something, and how many links ran) or full (every step)',
  )
    .choices([...LOG_TRACES])
    .default('said');
}

/** `--http HOST:PORT`: the metrics and health listener of `serve` and `policy`. */
function httpOption(): Option {
  return new Option(
    '--http <host:port>',
    'serve Prometheus /metrics, /health (for load balancers) and the status page /status on this address; loopback only unless --http-allow-remote (default: none, off)',
  );
}

/** `--http-allow-remote`: `--http` on an address that is not loopback. */
function httpAllowRemoteOption(): Option {
  return new Option(
    '--http-allow-remote',
    'allow --http on an address that is not loopback (it has no authentication)',
  ).default(false);
}

/** What `runServe`/`runPolicy` take from the `--http` and `--log-trace` flags. */
function httpOf(flags: HttpCliFlags) {
  return {
    logTrace: flags.logTrace,
    ...(flags.http ? { http: flags.http } : {}),
    ...(flags.httpAllowRemote ? { httpAllowRemote: true } : {}),
  };
}

/** The flags of `serve`. */
interface ServeFlags extends CommonFlags, HttpCliFlags {
  listen: string;
  spool: string;
  relay?: string;
  budget?: number;
  tlsKey?: string;
  tlsCert?: string;
  tlsMinVersion: 'TLSv1' | 'TLSv1.1' | 'TLSv1.2' | 'TLSv1.3';
}

/** `--budget MS`: the time budget of one answer, a whole number of milliseconds from 100 to 600000. */
function budgetOption(fallback: number, what: string, key: string): Option {
  return new Option(
    '--budget <ms>',
    `the time budget of ${what} in milliseconds; lookups unfinished then count as temporary failures (default: ${key} of the config, else ${fallback})`,
  ).argParser((v: string) => {
    const n = Number(v);
    if (!(Number.isInteger(n) && n >= 100 && n <= 600_000)) {
      throw new InvalidArgumentError('must be a whole number of milliseconds from 100 to 600000');
    }
    return n;
  });
}

/** Reads the common flags, then the config they name: a config error is a ConfigError (exit 2). */
async function prepare(flags: CommonFlags, command: string) {
  const cli = createLog({
    level: flags.logLevel,
    format: flags.logFormat,
    file: flags.logFile,
    privacy: flags.logPrivacy,
    name: `mxguard/${command}`,
  });
  const log = cli.log;
  const config = await loadConfig(flags.config);
  const common = {
    offline: flags.offline,
    ...(flags.resolver ? { resolver: flags.resolver } : {}),
    log,
  };
  // What SIGHUP needs: the config file to read again, the log file to reopen.
  const reload = { configPath: flags.config, reopenLog: () => cli.reopen() };
  return { log, cli, config, common, reload };
}

/**
 * The `mxguard` command line. Each command is a commander subcommand with its own options, so a new
 * one is added with `program.command(...)` and `addCommonOptions`. Nothing here exits the process:
 * errors are thrown (UsageError, ConfigError, commander's own), and the command's exit status is
 * left in `io.exitCode`.
 */
export function buildProgram(io: ProgramIo): Command {
  const program = new Command('mxguard')
    .description(
      'SMTP-time anti-spam checks: judge sessions, run the gateway, run the Postfix policy server.',
    )
    .version(version(), '-V, --version', 'print the version and exit')
    .helpOption('-h, --help', 'show the help of mxguard or of a command')
    .showHelpAfterError('(add --help for usage)')
    .configureHelp({ showGlobalOptions: false, sortSubcommands: false })
    .exitOverride();

  addCommonOptions(
    program
      .command('check')
      .description(
        'Reads JSON sessions on stdin, one a line, and writes one JSON verdict a line on stdout. Exit 1 when a line was bad.',
      ),
  ).action(async (flags: CommonFlags) => {
    const { config, common } = await prepare(flags, 'check');
    // Each command loads what it runs, so --help and --version answer at once.
    const [{ createRuntime }, { runCheck }] = await Promise.all([
      import('./wiring.js'),
      import('./check.js'),
    ]);
    const rt = await createRuntime(config, common);
    try {
      const bad = await runCheck(process.stdin, process.stdout, rt);
      io.exitCode = bad > 0 ? 1 : 0;
    } finally {
      await rt.close();
    }
  });

  addCommonOptions(
    program
      .command('serve')
      .description(
        'The inbound MX gateway: smtp-server with the configured policy, spooling accepted mail, until SIGINT/SIGTERM.',
      )
      .option(
        '--listen <host:port>',
        'the SMTP address to listen on ([IPv6]:PORT and PORT too)',
        '127.0.0.1:2525',
      )
      .addOption(
        new Option(
          '--relay <url>',
          "the MTA behind us: smtp://HOST:PORT, lmtp://HOST:PORT or lmtp:/SOCKET; the client's 250 comes after that MTA's (default: none, spool)",
        ).conflicts('spool'),
      )
      .option('--spool <dir>', 'where accepted messages are written when there is no --relay', 'spool')
      .addOption(budgetOption(10_000, 'an SMTP command', 'gateway.budget'))
      .option('--tls-key <file>', 'PEM key for STARTTLS, with --tls-cert; re-read on SIGHUP (default: none)')
      .option('--tls-cert <file>', 'PEM certificate chain for STARTTLS (default: none, no STARTTLS)')
      .addOption(
        new Option('--tls-min-version <version>', 'the oldest TLS version STARTTLS accepts')
          .choices(['TLSv1', 'TLSv1.1', 'TLSv1.2', 'TLSv1.3'])
          .default('TLSv1.2'),
      )
      .addOption(httpOption())
      .addOption(httpAllowRemoteOption())
      .addOption(logTraceOption()),
  ).action(async (flags: ServeFlags) => {
    const { config, common, cli, reload } = await prepare(flags, 'serve');
    const { runServe } = await import('./serve.js');
    if (!flags.tlsKey !== !flags.tlsCert) throw new UsageError('--tls-key and --tls-cert go together');
    if (flags.relay) {
      const { parseRelayTarget } = await import('@mxguard/smtp');
      try {
        parseRelayTarget(flags.relay);
      } catch (err) {
        throw new UsageError(`--relay: ${(err as Error).message}`);
      }
    }
    io.exitCode = await runServe(config, {
      ...common,
      ...reload,
      listen: flags.listen,
      ...(flags.relay ? { relay: flags.relay } : { spool: flags.spool }),
      ...(flags.tlsKey && flags.tlsCert
        ? { tls: { keyFile: flags.tlsKey, certFile: flags.tlsCert, minVersion: flags.tlsMinVersion } }
        : {}),
      budget: flags.budget,
      ...httpOf(flags),
      redactor: cli.redactor,
    });
  });

  addCommonOptions(
    program
      .command('policy')
      .description(
        'A Postfix policy server (check_policy_service inet:127.0.0.1:10023), until SIGINT/SIGTERM.',
      )
      .addOption(
        new Option('--listen <host:port>', 'the TCP address to listen on ([IPv6]:PORT and PORT too)')
          .default('127.0.0.1:10023')
          .conflicts('socket'),
      )
      .option('--socket <path>', 'a UNIX socket to listen on instead of --listen (default: none)')
      .addOption(budgetOption(8000, 'a policy request', 'policy.budget'))
      .addOption(httpOption())
      .addOption(httpAllowRemoteOption())
      .addOption(logTraceOption()),
  ).action(
    async (flags: CommonFlags & HttpCliFlags & { listen: string; socket?: string; budget?: number }) => {
      const { config, common, cli, reload } = await prepare(flags, 'policy');
      const { runPolicy } = await import('./serve.js');
      io.exitCode = await runPolicy(config, {
        ...common,
        ...reload,
        ...(flags.socket ? { socket: flags.socket } : { listen: flags.listen }),
        budget: flags.budget,
        ...httpOf(flags),
        redactor: cli.redactor,
      });
    },
  );

  addCommonOptions(
    program
      .command('replay')
      .description(
        'Judges the RCPT decisions of mail logs (Postfix 3.x lines, or mxguard decision lines) with the config, in time order, and reports what it would refuse by check, and where it disagrees with the log both ways.',
      )
      .argument(
        '<files...>',
        'log files: Postfix syslog or maillog_file lines, or mxguard JSON decision lines',
      )
      .addOption(
        new Option('--format <format>', 'text: a report to read; json: the report as one JSON object')
          .choices(['text', 'json'])
          .default('text'),
      )
      .option(
        '--year <year>',
        'the year of syslog time stamps, which have none (default: this year, or last year for a date still to come)',
      ),
  ).action(async (files: string[], flags: CommonFlags & { format: 'text' | 'json'; year?: string }) => {
    const year = flags.year === undefined ? undefined : Number(flags.year);
    if (year !== undefined && !(Number.isInteger(year) && year >= 1970 && year <= 9999))
      throw new UsageError('--year must be a year, e.g. 2026');
    const { config, common } = await prepare(flags, 'replay');
    const [{ createRuntime }, { readLogs, replay, formatReport }] = await Promise.all([
      import('./wiring.js'),
      import('./replay.js'),
    ]);
    const rcpts = await readLogs(files, { ...(year !== undefined ? { year } : {}), now: Date.now() / 1000 });
    const rt = await createRuntime(config, common);
    try {
      const report = await replay(rcpts, rt);
      process.stdout.write(
        flags.format === 'json'
          ? `${JSON.stringify({ ...report, notes: rt.notes })}\n`
          : formatReport(report, rt.notes),
      );
      io.exitCode = 0;
    } finally {
      await rt.close();
    }
  });

  const config = program
    .command('config')
    .description('Validate a config file, or print the JSON Schema of the config.');
  config
    .command('check')
    .description('Validates FILE and prints the effective chain link by link, and what is off and why.')
    .argument('<file>', 'the JSON config file')
    .option('--offline', 'build the chain as --offline would (DNS checks off)', false)
    .action(async (file: string, flags: { offline: boolean }) => {
      const [{ describeConfig }, config] = await Promise.all([import('./config-check.js'), loadConfig(file)]);
      process.stdout.write(await describeConfig(config, { offline: flags.offline, source: file }));
    });
  config
    .command('schema')
    .description('Prints the JSON Schema of the config file (schema/mxguard.schema.json).')
    .action(async () => {
      const { configJsonSchema } = await import('./config.js');
      process.stdout.write(`${JSON.stringify(configJsonSchema(), null, 2)}\n`);
    });

  for (const cmd of [...program.commands, ...config.commands])
    cmd.exitOverride().showHelpAfterError('(add --help for usage)');
  return program;
}

/**
 * What a failure of a listener (`EADDRINUSE`, `EACCES`) says on one line, or undefined for any
 * other error.
 */
export function listenFailure(err: unknown): string | undefined {
  const e = err as { code?: string; address?: string; port?: number; syscall?: string };
  if (e?.syscall !== 'listen' && e?.code !== 'EADDRINUSE') return undefined;
  const where =
    e.port !== undefined ? `${e.address?.includes(':') ? `[${e.address}]` : e.address}:${e.port}` : e.address;
  if (e.code === 'EADDRINUSE') return `cannot listen on ${where}: address already in use`;
  if (e.code === 'EACCES') {
    return `cannot listen on ${where}: permission denied (a port below 1024 needs CAP_NET_BIND_SERVICE)`;
  }
  if (e.code === 'EADDRNOTAVAIL') return `cannot listen on ${where}: no such local address`;
  return `cannot listen on ${where}: ${e.code ?? String(err)}`;
}

/**
 * Runs the command line and resolves to the exit status: 0 done, 1 a runtime failure (or bad input
 * lines for `check`), 2 a usage or config error. Messages go to `err`, one line each.
 */
export async function main(argv: readonly string[], err: (s: string) => void): Promise<number> {
  const io: ProgramIo = { exitCode: 0 };
  const program = buildProgram(io);
  program.configureOutput({ writeErr: err });
  for (const c of [...program.commands, ...program.commands.flatMap((p) => p.commands)])
    c.configureOutput({ writeErr: err });
  if (argv.length === 0) {
    err(program.helpInformation());
    return 2;
  }
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return io.exitCode;
  } catch (e) {
    if (e instanceof CommanderError) {
      // --help and --version end here with status 0; commander has printed the message.
      if (e.exitCode === 0) return 0;
      return 2;
    }
    if (e instanceof UsageError || e instanceof ConfigError) {
      err(`mxguard: ${e.message}\n`);
      return 2;
    }
    const listen = listenFailure(e);
    if (listen) {
      err(`mxguard: ${listen}\n`);
      return 1;
    }
    err(`mxguard: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    return 1;
  }
}
