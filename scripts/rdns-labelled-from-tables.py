#!/usr/bin/env python3
"""
Adds rows to packages/core/test/fixtures/rdns-labelled.tsv generated from two published tables:
- fqrdns.pcre (Stan Hoeppner, maintained by Steve Jenkins; public domain, "without license"):
  every REJECT rule is one access provider's dynamic-pool naming scheme -> one name per rule, label
  dynamic, scheme = the provider's domain named in the rule's text.
- postgrey_whitelist_clients (postgrey, David Schweikert et al.): host names and regexps of mail
  servers known not to retry greylisting well -> label not-dynamic.
A name is an instance of the rule's pattern (Python's regex parser, seeded choices). The client
address is read from the name when it carries four decimal octets (forward, as the schemes write
them) or eight hex digits; otherwise it is chosen (seeded) in 192.0.2.0/24-style documentation
space, which no embedding rule can match: the row then tests the words, not the address.
Usage: python3 rdns-labelled-from-tables.py FQRDNS POSTGREY >> rows.tsv
"""
import random
import re
import sys
import warnings

warnings.filterwarnings('ignore', category=DeprecationWarning)
import sre_parse  # noqa: E402
import sre_constants as C  # noqa: E402

rng = random.Random(12)
LOWER = 'abcdefghijklmnopqrstuvwxyz'


def pick_in(items):
    chars = []
    neg = False
    for op, av in items:
        if op == C.NEGATE:
            neg = True
        elif op == C.LITERAL:
            chars.append(chr(av))
        elif op == C.RANGE:
            lo, hi = av
            chars.extend(chr(c) for c in range(lo, min(hi, lo + 200) + 1))
        elif op == C.CATEGORY:
            if av == C.CATEGORY_DIGIT:
                chars.extend('0123456789')
            elif av == C.CATEGORY_WORD:
                chars.extend(LOWER + '0123456789')
            elif av == C.CATEGORY_SPACE:
                pass
    if neg:
        pool = [c for c in LOWER + '0123456789-' if c not in chars]
        return rng.choice(pool or ['x'])
    chars = [c for c in chars if c.isalnum() or c in '-._'] or ['x']
    return rng.choice(chars)


def gen(parsed, groups):
    out = []
    for op, av in parsed:
        if op == C.LITERAL:
            out.append(chr(av))
        elif op == C.ANY:
            out.append(rng.choice(LOWER))
        elif op == C.IN:
            out.append(pick_in(av))
        elif op in (C.MAX_REPEAT, C.MIN_REPEAT):
            lo, hi, sub = av
            hi = min(hi, lo + 3) if hi != C.MAXREPEAT else lo + 3
            if lo == 0 and hi > 0:
                lo = 1 if rng.random() < 0.7 else 0
            n = rng.randint(lo, max(lo, hi))
            for _ in range(n):
                out.append(gen(sub, groups))
        elif op == C.BRANCH:
            _, alts = av
            out.append(gen(rng.choice(alts), groups))
        elif op == C.SUBPATTERN:
            gid, _a, _b, sub = av
            s = gen(sub, groups)
            if gid:
                groups[gid] = s
            out.append(s)
        elif op == C.GROUPREF:
            out.append(groups.get(av, ''))
        elif op in (C.AT, C.ASSERT, C.ASSERT_NOT):
            pass
        elif op == C.CATEGORY:
            out.append('0')
        else:
            raise ValueError(f'unsupported {op}')
    return ''.join(out)


def octets_of(name):
    runs = re.findall(r'\d+', name)
    for i in range(len(runs) - 3):
        w = runs[i:i + 4]
        if all(len(r) <= 3 and int(r) <= 255 for r in w) and int(w[0]) > 0:
            return '.'.join(str(int(r)) for r in w)
    m = re.search(r'(?<![0-9a-f])([0-9a-f]{8})(?![0-9a-f])', name)
    if m:
        h = m.group(1)
        o = [int(h[i:i + 2], 16) for i in range(0, 8, 2)]
        if o[0] > 0:
            return '.'.join(map(str, o))
    # Only the last three or two octets (host-1-2-3, ip18-26): the rest of the address is the
    # provider's prefix, chosen here.
    for k in (3, 2):
        for i in range(len(runs) - k, -1, -1):
            w = runs[i:i + k]
            if all(len(r) <= 3 and int(r) <= 255 for r in w):
                prefix = [rng.randint(11, 223) for _ in range(4 - k)]
                return '.'.join(str(x) for x in prefix + [int(r) for r in w])
    return None


def instance(pattern, fqdn_ok=lambda s: True):
    body = pattern
    parsed = sre_parse.parse(body.replace('[[:alnum:]]', '[a-z0-9]').replace('[[:digit:]]', '[0-9]')
                             .replace('[[:alpha:]]', '[a-z]'))
    for _ in range(40):
        s = gen(parsed, {}).lower().strip('.')
        s = re.sub(r'\.{2,}', '.', s)
        if re.fullmatch(r'[a-z0-9]([a-z0-9._-]*[a-z0-9])?', s) and '.' in s and re.search(body, s, re.I) and fqdn_ok(s):
            return s
    return None


def octets_ok(s):
    return all(int(r) <= 255 for r in re.findall(r'\d+', s) if len(r) <= 3)


def doc_ip():
    return f'{rng.choice([192, 198, 203])}.{rng.choice([0, 51, 0])}.{rng.choice([2, 100, 113])}.{rng.randint(1, 254)}'


def main():
    fq, pg = sys.argv[1], sys.argv[2]
    rows = []
    seen = set()
    with open(fq) as f:
        for line in f:
            m = re.match(r'^/(.*)/\s+REJECT\s+(.*)$', line.rstrip('\n'))
            if not m:
                continue
            pat, text = m.group(1), m.group(2)
            dom = re.search(r'\(([^)]+)\)\s*$', text)
            scheme = f'fqrdns {dom.group(1) if dom else "?"}'
            try:
                name = instance(pat, octets_ok)
            except Exception:
                name = None
            if not name or name in seen or not name.endswith(dom.group(1) if dom else ''):
                continue
            seen.add(name)
            # The table calls every scheme Dynamic or Generic; a name its provider marks static or
            # business is labelled not-dynamic, as the rest of the list (docs/checks/rdns.md).
            host = name[: -len(dom.group(1))] if dom else name
            marked = re.search(r'(^|[^a-z])(static|stat|fixed|fix|biz|business|dedicated|corp|server|srv)([^a-z]|$)', host)
            label = 'not-dynamic' if marked else 'dynamic'
            rows.append((octets_of(name) or doc_ip(), name, label, scheme, 'fqrdns.pcre'))
    with open(pg) as f:
        for line in f:
            t = line.strip()
            if not t or t.startswith('#'):
                continue
            if t.startswith('/') and t.endswith('/'):
                try:
                    name = instance(t[1:-1])
                except Exception:
                    name = None
            elif re.fullmatch(r'[a-z0-9.-]+', t) and t.count('.') >= 2 and not re.fullmatch(r'[\d.]+', t):
                name = t
            else:
                name = None
            if not name or name in seen:
                continue
            seen.add(name)
            rows.append((doc_ip(), name, 'not-dynamic', f'postgrey {".".join(name.split(".")[-2:])}', 'postgrey_whitelist_clients'))
    # split: whole schemes, every third scheme in first-seen order held out
    order = {}
    for r in rows:
        order.setdefault(r[3], len(order))
    for ip, name, label, scheme, source in rows:
        split = 'test' if order[scheme] % 3 == 2 else 'train'
        print(f'{ip}\t{name}\t{label}\t{split}\t{scheme}\t{source}')


main()
