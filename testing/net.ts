import { createServer } from 'node:net';

/**
 * A TCP port free on 127.0.0.1 right now, for a server that the tests or benchmarks start
 * themselves and that takes its port on the command line or in a config file (redis-server,
 * Postfix, Haraka, postgrey). A server of ours listens on port 0 instead.
 */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => resolve(typeof a === 'object' && a ? a.port : 0));
    });
  });
}
