/** One thing wrong with a config: where it is (`checks[1].action`) and what is wrong. */
export interface ConfigIssue {
  /** Path inside the config, `''` for the config itself: `ourDomain`, `checks[1].name`, `options.greylist.stor`. */
  readonly path: string;
  /** What is wrong there. */
  readonly message: string;
}

/** `config.ourDomain: unknown key; did you mean "ourDomains"?` */
function line(issue: ConfigIssue): string {
  if (issue.path === '' || issue.path === '(root)') return `config: ${issue.message}`;
  return `config${issue.path.startsWith('[') ? '' : '.'}${issue.path}: ${issue.message}`;
}

/**
 * A config error names where in the config it is, one line an issue:
 * `config.ourDomain: unknown key; did you mean "ourDomains"?`. `path` is that of the first issue.
 */
export class ConfigError extends Error {
  /** Every issue found, the first one's included. */
  readonly issues: readonly ConfigIssue[];
  constructor(
    /** Where the first issue is (see {@link ConfigIssue.path}). */
    readonly path: string,
    message: string,
    more: readonly ConfigIssue[] = [],
  ) {
    const issues = [{ path, message }, ...more];
    super(issues.map(line).join('\n'));
    this.name = 'ConfigError';
    this.issues = issues;
  }

  /** One error for several issues (the first names `path`). */
  static of(issues: readonly ConfigIssue[]): ConfigError {
    const [first, ...rest] = issues;
    return new ConfigError(first?.path ?? '', first?.message ?? 'invalid', rest);
  }
}

/** The path of a config value as the errors write it: `checks[1].name`. */
export function configPath(segments: readonly PropertyKey[]): string {
  let out = '';
  for (const s of segments) {
    if (typeof s === 'number') out += `[${s}]`;
    else out += out === '' ? String(s) : `.${String(s)}`;
  }
  return out;
}

/** Optimal string alignment distance (Levenshtein plus adjacent transpositions: `fqnd` -> `fqdn` is 1). */
export function editDistance(a: string, b: string): number {
  const m = a.length;
  const n = b.length;
  if (Math.abs(m - n) > 8) return Math.max(m, n);
  const d: number[][] = Array.from({ length: m + 1 }, (_, i) =>
    Array.from({ length: n + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)),
  );
  for (let i = 1; i <= m; i++) {
    const row = d[i] as number[];
    const prev = d[i - 1] as number[];
    for (let j = 1; j <= n; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min((prev[j] as number) + 1, (row[j - 1] as number) + 1, (prev[j - 1] as number) + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        v = Math.min(v, ((d[i - 2] as number[])[j - 2] as number) + 1);
      }
      row[j] = v;
    }
  }
  return (d[m] as number[])[n] as number;
}

/**
 * The known name nearest to `word` (case-insensitive), when it is near enough to be a typo: at
 * most a third of its length away (at least 2), or `word` is a prefix of it or it of `word`.
 */
export function nearestName(word: string, known: Iterable<string>): string | undefined {
  const w = word.toLowerCase();
  let best: string | undefined;
  let bestD = Number.POSITIVE_INFINITY;
  for (const k of known) {
    const kl = k.toLowerCase();
    let dist = editDistance(w, kl);
    if (dist > 0 && w.length >= 3 && (kl.startsWith(w) || w.startsWith(kl))) dist = Math.min(dist, 2);
    if (dist < bestD) {
      bestD = dist;
      best = k;
    }
  }
  return best !== undefined && bestD <= Math.max(2, Math.floor(w.length / 3)) ? best : undefined;
}

/** ` did you mean "x"?`, or the known names when none is near (at most 40 of them), or ''. */
export function suggestion(word: string, known: readonly string[]): string {
  const near = nearestName(word, known);
  if (near !== undefined) return `; did you mean "${near}"?`;
  if (known.length > 0 && known.length <= 40) return ` (known: ${[...known].sort().join(', ')})`;
  return '';
}
