import nodemailer, { type Transporter } from 'nodemailer';

/**
 * A nodemailer transport of `connections` persistent connections to a server on 127.0.0.1:`port`,
 * as the load tests and benchmarks use it (no TLS, EHLO client.example.net, no message limit).
 */
export function poolTransport(port: number, connections: number) {
  return nodemailer.createTransport({
    host: '127.0.0.1',
    port,
    ignoreTLS: true,
    name: 'client.example.net',
    pool: true,
    maxConnections: connections,
    maxMessages: Number.POSITIVE_INFINITY,
  });
}

/** What {@link sendAll} measured. */
export interface MailLoad {
  /** Per-message latency (ms) of the messages that were accepted, ascending. */
  readonly latencies: number[];
  readonly failed: number;
  /** Wall time of the whole run (s). */
  readonly seconds: number;
}

/**
 * Sends `total` copies of `raw` through a pooled nodemailer transport with `connections` senders,
 * each waiting for its previous message, so a latency is one transaction (MAIL to the 250 after
 * DATA, the first message of a connection including its connect, greeting and EHLO).
 */
export async function sendAll(
  transport: Transporter,
  total: number,
  connections: number,
  raw: string,
): Promise<MailLoad> {
  const latencies: number[] = [];
  let failed = 0;
  let left = total;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: connections }, async () => {
      while (left > 0) {
        left--;
        const t0 = performance.now();
        try {
          await transport.sendMail({
            envelope: { from: 'a@sender.example.net', to: ['user@example.com'] },
            raw,
          });
          latencies.push(performance.now() - t0);
        } catch {
          failed++;
        }
      }
    }),
  );
  latencies.sort((a, b) => a - b);
  return { latencies, failed, seconds: (performance.now() - started) / 1000 };
}

/** The p-th percentile (0-100) of ascending `sorted`, with one decimal. */
export function percentile(sorted: readonly number[], p: number): string {
  return (sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0).toFixed(1);
}
