/**
 * Postfix policy requests for the tests and the benchmark: every attribute Postfix 3.7 sends, so
 * both exercise the parser with what a real smtpd writes.
 */

/** A request as Postfix 3.7 sends it at RCPT. */
export function rcptRequest(over: Record<string, string> = {}): Record<string, string> {
  return {
    request: 'smtpd_access_policy',
    protocol_state: 'RCPT',
    protocol_name: 'ESMTP',
    client_address: '192.0.2.10',
    client_name: 'mail.example.net',
    reverse_client_name: 'mail.example.net',
    client_port: '40000',
    helo_name: 'mail.example.net',
    sender: 'alice@example.net',
    recipient: 'bob@example.com',
    recipient_count: '0',
    queue_id: '',
    instance: 'a1b2.5f0c1d2e.1234.0',
    size: '0',
    etrn_domain: '',
    stress: '',
    sasl_method: '',
    sasl_username: '',
    sasl_sender: '',
    ccert_subject: '',
    ccert_issuer: '',
    ccert_fingerprint: '',
    encryption_protocol: '',
    encryption_cipher: '',
    encryption_keysize: '0',
    ...over,
  };
}
