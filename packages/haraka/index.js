'use strict';
/**
 * haraka-plugin-mxguard: mxguard's chain inside Haraka. See docs/adapters/haraka.md.
 *
 * Plain CommonJS so Haraka can load it as an npm plugin (`mxguard` in config/plugins). The chain
 * and its stores come from the `mxguard` package (ESM), loaded with `import()` when the runtime is
 * built, so loading this file stays cheap and synchronous.
 *
 * Hook mapping (as the smtp-server adapter, packages/smtp/src/adapter.ts):
 * - connect: starts the PTR lookup and the DNS-list prefetch while the client reads our greeting.
 * - mail: judges the connect (once) and helo stages, then mail. With delay-reject (the default,
 *   Postfix `smtpd_delay_reject = yes`) those links are judged at RCPT and say `next` here.
 * - rcpt: refuses relaying (Postfix reject_unauth_destination), judges the recipient, and says OK
 *   for our domains; the accepted recipient's scored findings are kept for DATA.
 * - data_post: judges the data stage with `session.headers` (the header block) and the findings
 *   carried from RCPT.
 */

const constants = require('haraka-constants');
const DSN = require('haraka-dsn');

/** How long an unfinished PTR lookup is waited for before it counts as a temporary failure (ms). */
const ENRICH_TIMEOUT_MS = 10_000;
/**
 * The time budget of each hook's answer (ms), as `mxguard serve`'s per command: when it runs out the
 * DNS lookups still unanswered count as temporary failures and the chain answers with what it has.
 * Below Haraka's own plugin timeout (`plugin_timeout`, 30 s), past which Haraka answers DENYSOFT
 * "plugin timeout" without our reply or our log line.
 */
const DEFAULT_BUDGET_MS = 10_000;
/** What Haraka's plugin timeout must leave after budget and grace, ms. */
const HARAKA_MARGIN_MS = 1000;
/** At most this much of the header block is handed to the chain (as the smtp-server adapter). */
const MAX_HEADER_BYTES = 64 * 1024;
/** What a lookup that failed or timed out gives the chain: an unknown, never a crash. */
const ENRICH_FAILED = Object.freeze({
  rdns: { names: [], error: 'temporary' },
  flags: { enrichFailed: true },
});
/** Any failure of the plugin or the chain: temporary (DESIGN: never a 5xx on a temporary failure). */
const TEMP_FAILURE = Object.freeze({
  code: 451,
  enhanced: '4.3.0',
  text: 'Temporary local problem, try again later',
});

const STAGES_BEFORE_MAIL = ['connect', 'helo'];

/**
 * Splits the plugin's own keys (`offline`, `resolver`, as the CLI's `--offline`/`--resolver`) from
 * the policy config (docs/cli.md). Throws on a config that is not a JSON object or names no
 * `ourDomains`, so a broken file stops Haraka at start instead of judging mail for the wrong site.
 */
function settingsOf(raw) {
  if (raw === undefined || raw === null) raw = {};
  if (typeof raw !== 'object' || Array.isArray(raw)) {
    throw new Error('mxguard: config/mxguard.json must be a JSON object');
  }
  const { offline, resolver, budget, http, httpAllowRemote, logTrace, ...policy } = raw;
  // As `mxguard serve --log-trace`: the decision line carries the steps that said something
  // ("said", the default) or every step ("full").
  if (logTrace !== undefined && logTrace !== 'said' && logTrace !== 'full') {
    throw new Error(
      `mxguard: config/mxguard.json: "logTrace" must be "said" (the steps that said something) or "full" (every step), got ${JSON.stringify(logTrace)}`,
    );
  }
  if (http !== undefined && (typeof http !== 'string' || !/^(?:\[[^\]]+\]|[^:]+):\d+$/.test(http))) {
    throw new Error(
      'mxguard: config/mxguard.json: "http" must be "HOST:PORT" (the metrics and health listener)',
    );
  }
  if (httpAllowRemote !== undefined && typeof httpAllowRemote !== 'boolean') {
    throw new Error('mxguard: config/mxguard.json: "httpAllowRemote" must be true or false');
  }
  if (budget !== undefined && !(Number.isInteger(budget) && budget >= 100 && budget <= 600_000)) {
    throw new Error(
      'mxguard: config/mxguard.json: "budget" must be a whole number of milliseconds from 100 to 600000',
    );
  }
  if (offline !== undefined && typeof offline !== 'boolean') {
    throw new Error('mxguard: config/mxguard.json: "offline" must be true or false');
  }
  if (resolver !== undefined && (typeof resolver !== 'string' || !resolver)) {
    throw new Error('mxguard: config/mxguard.json: "resolver" must be "HOST:PORT"');
  }
  if (offline && resolver) {
    throw new Error('mxguard: config/mxguard.json: "offline" and "resolver" exclude each other');
  }
  // haraka-config reads a missing file and one that is not valid JSON alike as `{}` (logging the
  // parse error): without our domains the plugin would judge mail for the wrong site, so stop.
  if (!Array.isArray(policy.ourDomains) || policy.ourDomains.length === 0) {
    throw new Error(
      'mxguard: config/mxguard.json needs "ourDomains" (the domains this Haraka receives mail for); a missing file or one that is not valid JSON reads as empty',
    );
  }
  return {
    policy,
    offline: offline === true,
    resolver,
    budget,
    http,
    ...(httpAllowRemote ? { httpAllowRemote: true } : {}),
    logTrace: logTrace ?? 'said',
  };
}

/**
 * The budget of each hook: the configured one, else DEFAULT_BUDGET_MS but never closer than 1 s (plus
 * the 250 ms grace) to Haraka's plugin timeout. A configured budget Haraka would cut short is
 * refused: Haraka would answer in our place, and the config would not do what it says.
 */
function budgetOf(settings, pluginTimeoutSeconds) {
  const timeout = Number(pluginTimeoutSeconds);
  // Haraka: a timeout of 0 (or none) means hooks are never timed out.
  const limit = Number.isFinite(timeout) && timeout > 0 ? timeout * 1000 - 250 - HARAKA_MARGIN_MS : Infinity;
  if (settings.budget !== undefined) {
    if (settings.budget > limit) {
      throw new Error(
        `mxguard: config/mxguard.json: "budget" ${settings.budget} ms does not fit in Haraka's plugin timeout of ${timeout} s (at most ${limit} ms): raise mxguard.timeout or lower the budget`,
      );
    }
    return settings.budget;
  }
  return Math.max(100, Math.min(DEFAULT_BUDGET_MS, limit));
}

/** mxguard's Logger over Haraka's plugin logger: one JSON object a line. */
function loggerOf(plugin) {
  const emit = (level) => (obj, msg) => {
    plugin[level](JSON.stringify(msg ? { msg, ...obj } : obj));
  };
  return { debug: emit('logdebug'), info: emit('loginfo'), warn: emit('logwarn'), error: emit('logerror') };
}

function messageOf(err) {
  return err instanceof Error ? err.message : String(err);
}

/** The address without the `::ffff:` of an IPv4-mapped IPv6 address. */
function stripMapped(address) {
  const a = String(address ?? '').trim();
  return /^::ffff:\d+\.\d+\.\d+\.\d+$/i.test(a) ? a.slice(7) : a;
}

/** `user@host` of a Haraka address, '' for the null sender `<>`. */
function addressOf(a) {
  if (!a || (typeof a.isNull === 'function' && a.isNull())) return '';
  return typeof a.address === 'string' ? a.address : String(a.address?.() ?? '');
}

/** Lower-cased domain of an address, without a trailing dot; '' when there is none. */
function domainOf(address) {
  const at = address.lastIndexOf('@');
  return at < 0
    ? ''
    : address
        .slice(at + 1)
        .toLowerCase()
        .replace(/\.$/, '');
}

/**
 * A verdict's reply as Haraka's `next()` arguments. Haraka writes the code of a `DSN` object
 * instead of its default 550/450 (connection.respond), and the DSN's reply begins with the
 * enhanced code (RFC 3463), so the client sees exactly what the check said.
 */
function haraka(reply) {
  const m = /^([245])\.(\d{1,3})\.(\d{1,3})$/.exec(reply.enhanced ?? '');
  const dsn = m
    ? DSN.create(reply.code, reply.text, Number(m[2]), Number(m[3]))
    : DSN.create(reply.code, reply.text, 0, 0);
  let action;
  if (reply.code === 421) action = constants.denysoftdisconnect;
  else action = reply.code >= 500 ? constants.deny : constants.denysoft;
  return [action, dsn];
}

/** Refusal of a decision as `next()` arguments, or undefined to let the transaction go on. */
function refusalOf(d) {
  if (d.action === 'reject') return haraka(d.reply ?? { code: 550, enhanced: '5.7.1', text: 'Rejected' });
  if (d.action === 'defer')
    return haraka(d.reply ?? { code: 450, enhanced: '4.7.1', text: 'Try again later' });
  return undefined;
}

/** The runtime (policy, stores, resolver), built once per process; hooks await it. */
function runtimeOf(plugin) {
  const st = plugin.mxguard;
  if (!st.runtime) {
    st.runtime = (async () => {
      const { runtimeFor, decisionRecord, withinBudget, settleBy, currentDeadline, observability } =
        await import('mxguard');
      st.decisionRecord = decisionRecord;
      st.deadlines = { withinBudget, settleBy, currentDeadline };
      const log = loggerOf(plugin);
      // "http": the same /metrics, /health and status page as `mxguard serve --http`, in this process.
      let obs;
      if (st.settings.http) {
        try {
          obs = observability(
            { http: st.settings.http, httpAllowRemote: st.settings.httpAllowRemote, log },
            'Haraka with mxguard',
          );
        } catch (err) {
          const e = new Error(`"http": ${messageOf(err)}`);
          e.name = 'ConfigError';
          throw e;
        }
      }
      const rt = await runtimeFor(st.settings.policy, {
        offline: st.settings.offline,
        ...(st.settings.resolver ? { resolver: st.settings.resolver } : {}),
        budget: st.budget,
        log,
        ...(obs ? obs.runtimeOptions : {}),
      });
      if (obs) {
        obs.follow(() => rt);
        const address = await obs.start(() => st.connections);
        st.observability = obs;
        plugin.loginfo(`status: http://${address}/ (metrics: /metrics, health: /health)`);
      }
      plugin.loginfo(`checks: ${rt.policy.chain.links.map((l) => l.check.name).join(', ')}`);
      for (const n of rt.notes) plugin.lognotice(`note: ${n}`);
      return rt;
    })();
    // Logged once here; every hook that awaits it answers 451 4.3.0 (mail waits, nothing is lost).
    st.runtime.catch((err) => plugin.logcrit(`cannot build the policy: ${messageOf(err)}`));
  }
  return st.runtime;
}

/**
 * Starts (once per connection) the PTR lookup and the DNS-list prefetch, as `mxguard serve` does
 * at connect. Resolves with what it adds to the Session; a failure or a timeout is an unknown.
 */
function enrichmentOf(plugin, connection) {
  const notes = connection.notes;
  if (notes.mxguard_enrich) return notes.mxguard_enrich;
  const clientAddress = stripMapped(connection.remote?.ip);
  const failed = (why) => {
    connection.logwarn(plugin, JSON.stringify({ event: 'enrich-failed', client: clientAddress, err: why }));
    return ENRICH_FAILED;
  };
  notes.mxguard_enrich = runtimeOf(plugin).then(
    (rt) => {
      const { lookupRdns, prefetch } = rt;
      if (!lookupRdns) return {};
      // Haraka waits for its reverse-DNS step before the banner: no longer than a hook's budget.
      // The deadline cuts the lookups themselves, so none is left holding a resolver slot.
      const ms = Math.min(ENRICH_TIMEOUT_MS, plugin.mxguard.budget);
      const lookup = async () => {
        prefetch?.({ clientAddress, stage: 'connect' });
        return { rdns: await lookupRdns(clientAddress) };
      };
      return plugin.mxguard.deadlines
        .withinBudget(ms, lookup, () => undefined, { graceMs: 0 })
        .then(
          (r) => (r.late ? failed(`no answer within ${ms} ms`) : r.value),
          (err) => failed(messageOf(err)),
        );
    },
    // The runtime failed: the hook that awaits it answers 451; nothing to add here.
    () => ({}),
  );
  return notes.mxguard_enrich;
}

/** The Session the chain sees at `stage`, from Haraka's connection and transaction. */
async function sessionAt(plugin, connection, stage, fields = {}) {
  await runtimeOf(plugin);
  const { settleBy, currentDeadline } = plugin.mxguard.deadlines;
  // The hook's deadline bounds the wait too (the lookup may have been started by an earlier hook).
  const extra = await settleBy(enrichmentOf(plugin, connection), currentDeadline(), () => ENRICH_FAILED);
  const txn = connection.transaction;
  const session = {
    ...extra,
    clientAddress: stripMapped(connection.remote?.ip),
    stage,
    tls: !!connection.tls?.enabled,
    recipients: fields.recipients ?? [],
    flags: { ...(extra.flags ?? {}) },
  };
  const port = Number(connection.remote?.port);
  if (Number.isInteger(port) && port > 0) session.clientPort = port;
  const helo = connection.hello?.host;
  if (helo) session.helo = String(helo);
  if (fields.mailFrom !== undefined) session.mailFrom = fields.mailFrom;
  else if (stage !== 'connect' && stage !== 'helo' && txn?.mail_from)
    session.mailFrom = addressOf(txn.mail_from);
  if (fields.rcptTo !== undefined) session.rcptTo = fields.rcptTo;
  if (fields.headers !== undefined) session.headers = fields.headers;
  // Haraka's own finding: a client that sent commands while Haraka was not reading them (before the
  // banner, or a pipelined group without PIPELINING). The `pipelining` check judges it; the
  // reputation hears of it once a connection, as from the smtp-server adapter's flags.
  if (connection.early_talker) {
    session.flags.earlyTalker = true;
    if (!connection.notes.mxguard_flagged) {
      connection.notes.mxguard_flagged = true;
      const rt = await runtimeOf(plugin);
      rt.onFlag?.(session, 'earlyTalker');
    }
  }
  const authUser = connection.notes?.auth_user;
  if (typeof authUser === 'string' && authUser) session.authUser = authUser;
  return session;
}

/**
 * One line per decision in Haraka's log, the line of `mxguard serve` and `mxguard policy` (core's
 * `decisionRecord`, loaded with the runtime): the time, the session (Haraka's transaction uuid),
 * the verdict, the deciding check, how many links ran and the trace (the steps that said
 * something, or every step with `"logTrace": "full"`).
 */
function logDecision(plugin, connection, session, d) {
  const id = connection.transaction?.uuid ?? connection.uuid;
  const st = plugin.mxguard;
  const record = st.decisionRecord(session, d, id, { trace: st.settings.logTrace });
  connection.loginfo(plugin, JSON.stringify({ time: new Date().toISOString(), msg: 'decision', ...record }));
}

/** Evaluates the chain; a throw of the chain itself is a temporary failure, never a crash. */
async function judge(plugin, connection, session, carried = [], alwaysLog = true) {
  const rt = await runtimeOf(plugin);
  let d;
  try {
    d = await rt.policy.chain.evaluate(session, carried);
  } catch (err) {
    d = {
      action: 'defer',
      reply: TEMP_FAILURE,
      check: rt.policy.chain.name,
      reason: `chain failed: ${messageOf(err)}`,
      trace: [],
      findings: [],
    };
  }
  if (alwaysLog || d.trace.length > 0 || d.action !== 'next') logDecision(plugin, connection, session, d);
  return d;
}

/**
 * Runs a hook's work within its time budget and answers Haraka exactly once: `work` resolves with
 * `next()`'s arguments (or nothing to let Haraka go on). Any throw is logged and answered 451
 * 4.3.0; so is work still unfinished 250 ms past the budget (something that ignores the deadline),
 * logged as `decision-late`.
 */
function settle(plugin, connection, next, hook, work) {
  const st = plugin.mxguard;
  runtimeOf(plugin)
    .then(() =>
      st.deadlines.withinBudget(st.budget, work, () => {
        connection.logerror(plugin, JSON.stringify({ event: 'decision-late', hook, ms: st.budget }));
        return haraka(TEMP_FAILURE);
      }),
    )
    .then((r) => {
      if (r.expired && !r.late)
        connection.logwarn(plugin, JSON.stringify({ event: 'budget-exhausted', hook, ms: st.budget }));
      return r.value;
    })
    .then(
      (args) => (args ? next(...args) : next()),
      (err) => {
        connection.logerror(plugin, JSON.stringify({ event: 'adapter-failed', hook, err: messageOf(err) }));
        next(...haraka(TEMP_FAILURE));
      },
    );
}

/** Haraka: called once when the plugin loads (synchronous). Reads config/mxguard.json. */
exports.register = function () {
  const raw = this.config.get('mxguard.json', () => {
    this.lognotice('config/mxguard.json changed: restart Haraka to apply it');
  });
  const settings = settingsOf(raw);
  this.mxguard = {
    settings,
    budget: budgetOf(settings, this.timeout),
    runtime: undefined,
    observability: undefined,
    connections: 0,
    decisionRecord: undefined,
    deadlines: undefined,
  };
};

/**
 * A config that does not say what its author meant stops Haraka (exit 1, the reason in its log),
 * as `mxguard check|serve|policy` exit 2: `next(DENY)` from init_master / init_child. Any other
 * failure to build the runtime is logged at CRIT and every transaction is deferred 451 4.3.0.
 */
function startedOrRefused(plugin, next, build) {
  build().then(
    () => next(),
    (err) => {
      if (err && err.name === 'ConfigError') {
        plugin.logcrit(`refusing to start: ${messageOf(err)}`);
        return next(constants.deny, `mxguard: config/mxguard.json: ${messageOf(err)}`);
      }
      return next();
    },
  );
}

/**
 * Haraka: validates config/mxguard.json before Haraka listens, and builds the runtime before the
 * first connection in a single process (`nodes=0`). A cluster master handles no connections: its
 * workers build their own in `init_child`.
 */
exports.hook_init_master = function (next, server) {
  const settings = this.mxguard.settings;
  startedOrRefused(this, next, async () => {
    const { validateConfig } = await import('mxguard');
    validateConfig(settings.policy);
    if (!server?.cluster) await runtimeOf(this);
  });
};

/** Haraka: builds the runtime in each cluster worker. */
exports.hook_init_child = function (next) {
  startedOrRefused(this, next, () => runtimeOf(this));
};

/**
 * Haraka: answers Haraka's own reverse-DNS step with mxguard's lookup (its resolver, cache and
 * timeouts), so there is one PTR query a client, and none at all offline: without this hook
 * Haraka asks the system resolver itself. `remote.host` becomes the forward-confirmed name, else
 * the first PTR name, else `NXDOMAIN` / `DNSERROR` as Haraka writes them, or `Unknown` offline.
 */
exports.hook_lookup_rdns = function (next, connection) {
  enrichmentOf(this, connection).then(
    (extra) => {
      const r = extra.rdns;
      const host = r ? (r.verified ?? r.names[0] ?? (r.error ? 'DNSERROR' : 'NXDOMAIN')) : 'Unknown';
      next(constants.ok, host);
    },
    () => next(constants.ok, 'Unknown'),
  );
};

/** Haraka: starts the PTR/DNS-list lookups so they run while the client reads our greeting. */
exports.hook_connect = function (next, connection) {
  this.mxguard.connections++;
  connection.notes.mxguard_counted = true;
  enrichmentOf(this, connection);
  next();
};

/** Haraka: counts the connection gone (the `mxguard_connections` gauge of `"http"`). */
exports.hook_disconnect = function (next, connection) {
  if (connection.notes?.mxguard_counted) {
    connection.notes.mxguard_counted = false;
    this.mxguard.connections--;
  }
  next();
};

/** Haraka: judges the connect (once) and helo stages, then MAIL FROM. */
exports.hook_mail = function (next, connection, params) {
  settle(this, connection, next, 'mail', async () => {
    const rt = await runtimeOf(this);
    const txn = connection.transaction;
    if (txn) txn.notes.mxguard_rcpt_findings = [];
    const mailFrom = addressOf(params?.[0]);
    const linkStages = new Set(rt.policy.chain.links.map((l) => l.check.stage));
    for (const stage of STAGES_BEFORE_MAIL) {
      if (!linkStages.has(stage)) continue;
      if (stage === 'connect') {
        if (connection.notes.mxguard_connect_done) continue;
        connection.notes.mxguard_connect_done = true;
      }
      const d = await judge(this, connection, await sessionAt(this, connection, stage), [], false);
      const refusal = refusalOf(d);
      if (refusal) return refusal;
    }
    return refusalOf(await judge(this, connection, await sessionAt(this, connection, 'mail', { mailFrom })));
  });
};

/**
 * Haraka: refuses relaying, judges the recipient, says OK for our domains. A recipient the chain
 * lets go on that is not ours (a relaying client) is left to Haraka's other rcpt plugins.
 */
exports.hook_rcpt = function (next, connection, params) {
  settle(this, connection, next, 'rcpt', async () => {
    const rt = await runtimeOf(this);
    const txn = connection.transaction;
    const rcptTo = addressOf(params?.[0]);
    // Haraka has already added this recipient to the transaction; the chain sees the earlier ones.
    const recipients = (txn?.rcpt_to ?? []).slice(0, -1).map(addressOf);
    const session = await sessionAt(this, connection, 'rcpt', { rcptTo, recipients });
    const ours = new Set(rt.policy.site.ourDomains.map((d) => d.toLowerCase().replace(/\.$/, '')));
    const isOurs = ours.has(domainOf(rcptTo));
    if (ours.size > 0 && !isOurs && !connection.relaying) {
      // Postfix reject_unauth_destination: 554 5.7.1 <rcpt>: Relay access denied.
      const reply = { code: 554, enhanced: '5.7.1', text: `<${rcptTo}>: Relay access denied` };
      logDecision(this, connection, session, {
        action: 'reject',
        reply,
        check: 'relay-access',
        reason: 'recipient domain is not ours',
        trace: [],
      });
      return haraka(reply);
    }
    const d = await judge(this, connection, session);
    const refusal = refusalOf(d);
    if (refusal) return refusal;
    if (txn) txn.notes.mxguard_rcpt_findings = d.findings.filter((f) => f.score);
    if (d.action === 'accept' || isOurs) return [constants.ok];
    return undefined;
  });
};

/** Haraka: judges the message once it has arrived, with its header block. */
exports.hook_data_post = function (next, connection) {
  settle(this, connection, next, 'data', async () => {
    const txn = connection.transaction;
    const recipients = (txn?.rcpt_to ?? []).map(addressOf);
    const header = txn?.header ? String(txn.header.toString()) : '';
    const headers = Buffer.from(header, 'utf8').subarray(0, MAX_HEADER_BYTES).toString('utf8');
    const session = await sessionAt(this, connection, 'data', { recipients, headers });
    const carried = txn?.notes?.mxguard_rcpt_findings ?? [];
    return refusalOf(await judge(this, connection, session, carried));
  });
};

/** Haraka: closes the stores (redis connections, timers) when Haraka shuts down. */
exports.shutdown = function () {
  this.mxguard?.observability?.close();
  const rt = this.mxguard?.runtime;
  if (!rt) return;
  rt.then(
    (r) => r.close(),
    () => undefined,
  ).catch((err) => this.logerror(`closing the runtime failed: ${messageOf(err)}`));
};

/** For tests and other adapters: the pure parts. */
exports._internals = { settingsOf, budgetOf, haraka, refusalOf, stripMapped, domainOf };
