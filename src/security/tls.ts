import { readFileSync } from 'node:fs';
import type { ServerOptions as HttpsServerOptions } from 'node:https';
import { ServerCredentials } from '@grpc/grpc-js';

/**
 * TLS for the listeners, from PEM files read once at start-up: the server's certificate chain
 * and key and, for mutual TLS, the CA whose certificates clients must present. Clients without
 * a valid certificate are refused during the handshake (HTTP and gRPC alike). TLS 1.2 is the
 * oldest version accepted.
 */
export interface TlsFiles {
  readonly cert?: string | undefined;
  readonly key?: string | undefined;
  readonly clientCa?: string | undefined;
}

export interface TlsMaterial {
  readonly cert: Buffer;
  readonly key: Buffer;
  /** Set: client certificates are required and verified against it. */
  readonly clientCa: Buffer | undefined;
}

/** Read the files; undefined when TLS is not configured. Throws naming a missing or unreadable file. */
export function loadTls(files: TlsFiles): TlsMaterial | undefined {
  if (files.cert === undefined && files.key === undefined) {
    if (files.clientCa !== undefined) throw new Error('tlsClientCa needs tlsCert and tlsKey: mutual TLS is TLS first');
    return undefined;
  }
  if (files.cert === undefined || files.key === undefined) throw new Error('TLS needs both tlsCert and tlsKey');
  return { cert: read(files.cert, 'tlsCert'), key: read(files.key, 'tlsKey'), clientCa: files.clientCa === undefined ? undefined : read(files.clientCa, 'tlsClientCa') };
}

function read(path: string, setting: string): Buffer {
  try {
    return readFileSync(path);
  } catch (error) {
    throw new Error(`${setting}: cannot read ${path}: ${(error as Error).message}`);
  }
}

/** node:https server options (Fastify's `https`). */
export function httpsOptions(tls: TlsMaterial): HttpsServerOptions {
  return {
    cert: tls.cert,
    key: tls.key,
    minVersion: 'TLSv1.2',
    ...(tls.clientCa === undefined ? {} : { ca: tls.clientCa, requestCert: true, rejectUnauthorized: true }),
  };
}

/** gRPC server credentials. */
export function grpcCredentials(tls: TlsMaterial | undefined): ServerCredentials {
  if (tls === undefined) return ServerCredentials.createInsecure();
  return ServerCredentials.createSsl(tls.clientCa ?? null, [{ private_key: tls.key, cert_chain: tls.cert }], tls.clientCa !== undefined);
}
