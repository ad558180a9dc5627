/**
 * `mxguard config check FILE`: validates a config as `check`, `serve` and `policy` would, builds
 * every link (with a resolver that is never asked and memory stores, so nothing outside is touched)
 * and prints the effective chain, link by link, with its mode, action, options, store and lists,
 * then what is off and why.
 */
import type { PlannedLink } from '@mxguard/core';
import { dnsSettingsFromConfig, type ListSpec } from '@mxguard/dns';
import type { MxguardConfig } from './config.js';
import { jsonLogger } from './runtime.js';
import { createRuntime, DNS_CHECKS } from './wiring.js';

function storeText(v: unknown): string {
  if (v === undefined) return 'memory';
  if (typeof v === 'string') return v;
  const o = v as Record<string, unknown>;
  return String(o.store ?? o.url ?? o.type ?? 'memory');
}

/** The store and lists a link uses, as the config says them. */
function resources(link: PlannedLink, config: MxguardConfig): string[] {
  const out: string[] = [];
  const dns = dnsSettingsFromConfig(config as Readonly<Record<string, unknown>>);
  const lists = (own: unknown, fallback: readonly ListSpec[], filter = (_: ListSpec) => true) =>
    Array.isArray(own) ? own.map(String) : fallback.filter(filter).map((s) => s.spec);
  switch (link.name) {
    case 'greylist':
      out.push(`store: ${storeText(config.greylist)}`);
      break;
    case 'reputation':
    case 'address-guessing':
      out.push(`store: ${storeText(config.reputationStore)}`);
      break;
    case 'callout':
      out.push(`store: ${storeText(config.calloutStore)}`);
      if (!Array.isArray(link.options.domains) || link.options.domains.length === 0) {
        out.push('[no "domains": probes nothing]');
      }
      break;
    case 'dnsbl':
      out.push(`lists: ${lists(link.options.lists, dns.dnsLists).join(', ') || '(none)'}`);
      break;
    case 'dnswl':
      out.push(
        `lists: ${lists(link.options.lists, dns.dnsLists, (s) => s.weight < 0).join(', ') || '(none)'}`,
      );
      break;
    case 'rhsbl':
      out.push(`lists: ${lists(link.options.lists, dns.rhsLists).join(', ') || '(none)'}`);
      break;
    case 'received':
      out.push(`lists: ${lists(link.options.lists, []).join(', ')}`);
      break;
  }
  return out;
}

/**
 * The report of `mxguard config check`: throws ConfigError (exit 2) on a bad config, else the
 * effective chain as text.
 */
export async function describeConfig(
  config: MxguardConfig,
  options: { offline: boolean; source?: string },
): Promise<string> {
  const rt = await createRuntime(config, {
    offline: options.offline,
    dryRun: true,
    log: jsonLogger(() => {}, 'error'),
  });
  try {
    const p = rt.policy;
    const lines: string[] = [];
    lines.push(`${options.source ?? 'config'}: valid`);
    lines.push(
      `site: ourDomains ${p.site.ourDomains.join(', ') || '(none)'}; ourHosts ${p.site.ourHosts.join(', ') || '(none)'}; ourNetworks ${p.site.ourNetworks.join(', ') || '(none)'}; trustedForwarders ${p.site.trustedForwarders.join(', ') || '(none)'}`,
    );
    if (p.site.help.url || p.site.help.contact) {
      lines.push(`help: ${[p.site.help.url, p.site.help.contact].filter(Boolean).join(' ')}`);
    }
    lines.push(
      `chain (${config.checks ? 'from "checks"' : 'the recommended list'}; delay-reject ${config.delayReject === false ? 'off' : 'on'}):`,
    );
    const width = Math.max(...p.links.map((l) => l.name.length), 4);
    p.links.forEach((link, i) => {
      const { action, ...rest } = link.options;
      const parts = [
        `${String(i + 1).padStart(3)}. ${link.name.padEnd(width)}`,
        link.mode === 'warn'
          ? 'warn (logs what it would do, never refuses)'
          : `action ${action ?? 'default'}`,
      ];
      if (link.mode === 'warn' && action !== undefined) parts.push(`(would ${String(action)})`);
      if (Object.keys(rest).length > 0) parts.push(`options ${JSON.stringify(rest)}`);
      parts.push(...resources(link, config));
      if (
        options.offline &&
        ((DNS_CHECKS as readonly string[]).includes(link.name) || link.name === 'callout')
      ) {
        parts.push('[skipped offline: no DNS]');
      }
      lines.push(parts.join('  '));
    });
    if (p.off.length > 0) {
      lines.push('off:');
      for (const o of p.off) lines.push(`  ${o.name}: ${o.why}`);
    }
    const notes = rt.notes.filter((n) => !n.startsWith('off: '));
    if (notes.length > 0) {
      lines.push('notes:');
      for (const n of notes) lines.push(`  ${n}`);
    }
    return `${lines.join('\n')}\n`;
  } finally {
    await rt.close();
  }
}
