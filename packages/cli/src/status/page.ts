import type { ActionCounts, ShownDecision, StatusBoard } from './board.js';
import { PASSED } from './board.js';

/** What `/health` knows, as the status page shows it: each store and each DNS list by name. */
export interface StatusHealth {
  /** Everything is well (`/health` answers 200). */
  readonly ok: boolean;
  /** Store name to state (`up`, `down`). */
  readonly stores: Readonly<Record<string, string>>;
  /** DNS list (`zone kind`) to state (`healthy`, `disabled`, `unprobed`). */
  readonly lists: Readonly<Record<string, string>>;
  /** One line for each thing that is not well. */
  readonly problems?: readonly string[];
}

/** What the page shows besides the board. */
export interface StatusInfo {
  /** Who is speaking: `mxguard serve` or `mxguard policy`, and its version. */
  readonly title: string;
  readonly health?: StatusHealth | undefined;
  /** Lines on what is off and why (the banner's notes). */
  readonly notes?: readonly string[];
  /** The page's time (ms since the epoch). */
  readonly now: number;
}

const ESCAPES: Record<string, string> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
};

/**
 * Text for an HTML text node or a quoted attribute value. Addresses, HELO names, reasons and
 * replies are chosen by the client, so every value on the page goes through here.
 */
export function esc(v: unknown): string {
  return String(v ?? '').replace(/[&<>"']/g, (c) => ESCAPES[c] ?? c);
}

/** Colours of the chart's series (status.css `.c0` to `.c11`), by the order of the legend. */
const SERIES = 12;
const GOOD = new Set(['up', 'healthy', 'ok']);
const BAD = new Set(['down', 'disabled', 'error']);

function hhmm(ms: number): string {
  return new Date(ms).toISOString().slice(11, 16);
}

function hhmmss(ms: number): string {
  return new Date(ms).toISOString().slice(11, 19);
}

const refused = (c: ActionCounts) => c.reject + c.defer + c.accept;

/**
 * The verdicts of the last hour as an SVG chart: a column a minute, stacked by the check that
 * decided (reject, defer or accept; decisions every check passed are counted in the legend only).
 */
export function chart(hour: ReturnType<StatusBoard['lastHour']>): string {
  const totals = new Map<string, ActionCounts>();
  for (const m of hour) {
    for (const [check, c] of m.checks) {
      const t = totals.get(check) ?? { reject: 0, defer: 0, accept: 0, next: 0 };
      t.reject += c.reject;
      t.defer += c.defer;
      t.accept += c.accept;
      t.next += c.next;
      totals.set(check, t);
    }
  }
  const series = [...totals.entries()]
    .filter(([check, c]) => check !== PASSED && refused(c) > 0)
    .sort((a, b) => refused(b[1]) - refused(a[1]) || a[0].localeCompare(b[0]));
  const colour = new Map(series.map(([check], i) => [check, `c${i % SERIES}`]));
  const peak = Math.max(1, ...hour.map((m) => [...m.checks.values()].reduce((n, c) => n + refused(c), 0)));
  const W = 720;
  const H = 180;
  const top = 10;
  const left = 36;
  const bottom = 20;
  const plot = H - top - bottom;
  const step = (W - left) / hour.length;
  const bars: string[] = [];
  hour.forEach((m, i) => {
    let y = H - bottom;
    for (const [check] of series) {
      const c = m.checks.get(check);
      const n = c ? refused(c) : 0;
      if (n === 0 || !c) continue;
      const h = (n / peak) * plot;
      y -= h;
      const what = [
        c.reject ? `${c.reject} rejected` : '',
        c.defer ? `${c.defer} deferred` : '',
        c.accept ? `${c.accept} accepted` : '',
      ]
        .filter(Boolean)
        .join(', ');
      bars.push(
        `<rect class="bar ${colour.get(check)}" data-check="${esc(check)}" x="${(left + i * step + 1).toFixed(1)}" y="${y.toFixed(1)}" width="${Math.max(1, step - 2).toFixed(1)}" height="${h.toFixed(1)}"><title>${esc(`${hhmm(m.at)} ${check}: ${what}`)}</title></rect>`,
      );
    }
  });
  const first = hour[0];
  const last = hour[hour.length - 1];
  const axis = [
    `<line class="axis" x1="${left}" y1="${H - bottom}" x2="${W}" y2="${H - bottom}"/>`,
    `<text class="tick" x="${left - 4}" y="${top + 8}" text-anchor="end">${peak}</text>`,
    `<text class="tick" x="${left - 4}" y="${H - bottom}" text-anchor="end">0</text>`,
    first ? `<text class="tick" x="${left}" y="${H - 4}">${hhmm(first.at)}</text>` : '',
    last ? `<text class="tick" x="${W}" y="${H - 4}" text-anchor="end">${hhmm(last.at)} UTC</text>` : '',
  ].join('');
  const svg = `<svg id="chart" viewBox="0 0 ${W} ${H}" role="img" aria-label="verdicts a minute over the last hour, by check">${axis}${bars.join('')}</svg>`;
  const passed = totals.get(PASSED);
  const legend = series
    .map(
      ([check, c]) =>
        `<li data-check="${esc(check)}"><span class="swatch ${colour.get(check)}"></span>${esc(check)}: ${[
          c.reject ? `${c.reject} rejected` : '',
          c.defer ? `${c.defer} deferred` : '',
          c.accept ? `${c.accept} accepted` : '',
        ]
          .filter(Boolean)
          .join(', ')}</li>`,
    )
    .concat(
      passed || totals.size === 0
        ? [`<li><span class="swatch none"></span>no check objected: ${passed?.next ?? 0}</li>`]
        : [],
    )
    .join('');
  return `${svg}<ul class="legend">${legend}</ul>`;
}

/** The words a search matches: the addresses, the HELO, the deciding check and the session. */
function haystack(d: ShownDecision): string {
  return [d.client, d.helo, d.from, d.to, d.check, d.session].filter(Boolean).join(' ').toLowerCase();
}

/**
 * The decisions that match a search (`?q=`): every word is a piece of an address, a domain, a HELO,
 * a client IP or a check name.
 * Addresses on the board are rewritten to the privacy level, so the query is also rewritten the
 * same way: a hashed sender is found by its address in clear.
 */
export function search(board: StatusBoard, decisions: readonly ShownDecision[], q: string): ShownDecision[] {
  const words = q.trim().toLowerCase().split(/\s+/).filter(Boolean);
  if (words.length === 0) return [...decisions];
  const r = board.redactor;
  const forms = words.map((w) => {
    if (r.level === 'full') return [w];
    return [w, (w.includes('@') ? r.address(w) : r.ip(w)).toLowerCase()];
  });
  return decisions.filter((d) => {
    const h = haystack(d);
    return forms.every((f) => f.some((w) => h.includes(w)));
  });
}

function verdictOf(d: ShownDecision): string {
  return d.would ? `would ${d.would}` : d.action;
}

function row(d: ShownDecision): string {
  const reply = d.code !== undefined ? `${d.code} ${d.enhanced ?? ''} ${d.text ?? ''}`.trim() : '';
  const steps = d.trace
    .map(
      (s) =>
        `<li class="step ${esc(s.action)}"><b>${esc(s.check)}</b> ${esc(s.action)}${s.warn ? ' (warn)' : ''}${s.code !== undefined ? ` ${esc(s.code)}` : ''}${s.reason ? ` — ${esc(s.reason)}` : ''}${s.ms !== undefined ? ` <span class="ms">${esc(s.ms.toFixed(1))} ms</span>` : ''}</li>`,
    )
    .join('');
  const more = d.traceDropped ? `<li>… ${d.traceDropped} more</li>` : '';
  const verdict = d.would ?? d.action;
  return [
    `<tr class="decision ${esc(verdict)}" data-search="${esc(haystack(d))}">`,
    // The session id under the time: the `session` of the decision's log line (Postfix's instance,
    // the gateway's connection id, Haraka's transaction uuid), to find that line.
    `<td class="time">${esc(hhmmss(d.time))}${d.session ? `<div class="session">${esc(d.session)}</div>` : ''}</td>`,
    `<td>${esc(d.stage)}</td>`,
    `<td class="client">${esc(d.client)}</td>`,
    `<td class="helo">${esc(d.helo ?? '')}</td>`,
    `<td class="from">${esc(d.from ?? '')}</td>`,
    `<td class="to">${esc(d.to ?? '')}</td>`,
    `<td class="verdict">${esc(verdictOf(d))}</td>`,
    `<td class="check">${esc(d.check ?? '')}</td>`,
    `<td class="reply">${esc(reply)}${d.reason ? `<div class="reason">${esc(d.reason)}</div>` : ''}`,
    d.trace.length
      ? `<details><summary>trace (${d.trace.length + d.traceDropped})</summary><ol>${steps}${more}</ol></details>`
      : '',
    '</td></tr>',
  ].join('');
}

function states(title: string, entries: Readonly<Record<string, string>> | undefined, none: string): string {
  const list = Object.entries(entries ?? {});
  const body = list.length
    ? list
        .map(
          ([k, v]) =>
            `<tr><td>${esc(k)}</td><td class="state ${GOOD.has(v) ? 'good' : BAD.has(v) ? 'bad' : 'unknown'}">${esc(v)}</td></tr>`,
        )
        .join('')
    : `<tr><td colspan="2" class="unknown">${esc(none)}</td></tr>`;
  return `<section class="box"><h2>${esc(title)}</h2><table class="states">${body}</table></section>`;
}

/**
 * Rows on one page: the page is rendered on the event loop that answers SMTP, so it stays small
 * (a few ms; bench/status.ts). The search reaches every decision kept.
 */
export const MAX_ROWS = 100;

/** The whole status page. `q` is the search of the query string. */
export function renderPage(board: StatusBoard, info: StatusInfo, q: string): string {
  const all = board.latest();
  const found = search(board, all, q);
  const rows = found.slice(0, MAX_ROWS);
  const h = info.health;
  const overall = h === undefined ? 'unknown' : h.ok ? 'good' : 'bad';
  const notes = [...(h?.problems ?? []).map((p) => `<li class="problem">${esc(p)}</li>`)]
    .concat((info.notes ?? []).map((n) => `<li>${esc(n)}</li>`))
    .join('');
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(info.title)} status</title>
<link rel="stylesheet" href="/status.css">
<link rel="icon" href="/status.svg" type="image/svg+xml">
<script src="/status.js" defer></script>
</head>
<body>
<header><h1>${esc(info.title)}</h1>
<p><span id="overall" class="state ${overall}">${h === undefined ? 'health not reported' : h.ok ? 'healthy' : 'degraded'}</span>
 · ${board.total} decisions since ${esc(new Date(board.since).toISOString().slice(0, 19).replace('T', ' '))} UTC
 · page of ${esc(new Date(info.now).toISOString().slice(11, 19))} UTC · <a href="/status${q ? `?q=${esc(encodeURIComponent(q))}` : ''}">refresh</a>
 · <a href="/metrics">metrics</a> · <a href="/health">health</a></p>
${notes ? `<ul class="notes">${notes}</ul>` : ''}
</header>
<main>
<section class="box wide"><h2>Verdicts over the last hour, by check</h2>${chart(board.lastHour())}</section>
${states('DNS lists', h?.lists, h ? 'no DNS lists configured (or offline)' : 'not reported')}
${states('Stores', h?.stores, h ? 'no stores' : 'not reported')}
<section class="box wide"><h2>Latest decisions</h2>
<form method="get" action="/status" role="search"><input id="q" name="q" type="search" value="${esc(q)}" placeholder="address, domain, HELO, client IP or check" autocomplete="off"> <button type="submit">search</button> <label><input id="live" type="checkbox"> live (every 30 s)</label> <span id="shown">${rows.length} of ${rows.length}</span> shown, newest first; ${found.length > rows.length ? `${found.length} ${q ? 'match' : 'kept'}, search to find the older ones; ` : ''}at most ${board.maxEntries} kept</form>
<table id="decisions"><thead><tr><th>time UTC</th><th>stage</th><th>client</th><th>HELO</th><th>from</th><th>to</th><th>verdict</th><th>check</th><th>reply and trace</th></tr></thead>
<tbody>${rows.map(row).join('')}</tbody></table>
${found.length === 0 ? `<p class="empty">${all.length === 0 ? 'No decisions yet.' : 'No decision matches.'}</p>` : ''}
</section>
</main>
</body>
</html>
`;
}
