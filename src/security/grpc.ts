import {
  ResponderBuilder,
  ServerInterceptingCall,
  ServerListenerBuilder,
  type Metadata,
  type ServerInterceptingCallInterface,
  type ServerInterceptor,
} from '@grpc/grpc-js';
import { toTesseraError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { toServiceError } from '../protocols/grpc/errors.js';
import type { InferInputTensorMessage, ModelInferRequestMessage } from '../protocols/grpc/messages.js';
import { authorize, type AccessControl, type Access, type ModelTarget, type Requirement } from './access.js';
import type { PresentedCredentials } from './auth.js';
import { checkBytesElementLength, checkElementCount, checkInputCount, checkShape, elementLimit, type RequestLimits } from './limits.js';
import { refuseMessage } from './message-refusals.js';
import { anonymousPrincipal, type Principal } from './principal.js';

/**
 * Security on the gRPC listener, as one server interceptor that sees every call of every
 * service (inference, health, reflection):
 *
 * - when the call's metadata arrives: authentication (`authorization: Bearer <token>` or
 *   `x-api-key`) and the method's scope; a refusal ends the call with UNAUTHENTICATED or
 *   PERMISSION_DENIED before any message is read;
 * - for each message: the model allow list, rate limits and budget, and for inference messages
 *   the request limits, checked on the decoded protobuf message before any tensor is built.
 *   A refused inference message still reaches the handler, which answers it like every failed
 *   request (see message-refusals.ts): ModelStreamInfer answers it with `error_message` and
 *   the stream goes on. Other refused messages end their (unary) call with the status.
 */

export interface GrpcSecurity {
  readonly access: AccessControl;
  readonly limits: RequestLimits;
  readonly logger?: Logger;
}

interface MethodRule {
  readonly access: Access;
  /** The models a message addresses. */
  readonly models: (message: Record<string, unknown>) => ModelTarget;
  /** Inference messages: request limits apply, refusals go to the handler. */
  readonly inference?: boolean;
}

const none = (): ModelTarget => 'none';
const all = (): ModelTarget => 'all';
const named =
  (field: string, empty: ModelTarget = 'all') =>
  (message: Record<string, unknown>): ModelTarget => {
    const value = message[field];
    return typeof value === 'string' && value !== '' ? { model: value } : empty;
  };

const INFERENCE_RULES: Readonly<Record<string, MethodRule>> = {
  ServerLive: { access: 'health', models: none },
  ServerReady: { access: 'health', models: none },
  ModelReady: { access: 'read', models: named('name') },
  ServerMetadata: { access: 'read', models: none },
  ModelMetadata: { access: 'read', models: named('name') },
  ModelConfig: { access: 'read', models: named('name') },
  ModelStatistics: { access: 'read', models: named('name') },
  RepositoryIndex: { access: 'read', models: all },
  RepositoryModelLoad: { access: 'admin', models: named('model_name') },
  RepositoryModelUnload: { access: 'admin', models: named('model_name') },
  ModelInfer: { access: 'infer', models: named('model_name'), inference: true },
  ModelStreamInfer: { access: 'infer', models: named('model_name'), inference: true },
};

/**
 * What a method needs, from its path (`/inference.GRPCInferenceService/ModelInfer`): the
 * inference service's methods as over HTTP, the health service open (by default), reflection
 * `read`, anything else `admin`.
 */
export function grpcMethodRule(path: string): MethodRule {
  const [, service = '', method = ''] = path.split('/');
  if (service === 'inference.GRPCInferenceService') return INFERENCE_RULES[method] ?? { access: 'admin', models: all };
  if (service === 'grpc.health.v1.Health') return { access: 'health', models: none };
  if (service.startsWith('grpc.reflection.')) return { access: 'read', models: none };
  return { access: 'admin', models: all };
}

/** The credential entries of call metadata. */
export function metadataCredentials(metadata: Metadata): PresentedCredentials {
  const first = (key: string): string | undefined => {
    const value = metadata.get(key)[0];
    return typeof value === 'string' ? value : undefined;
  };
  return { authorization: first('authorization'), apiKey: first('x-api-key') };
}

function addressOf(call: ServerInterceptingCallInterface): string {
  const remote = call.getConnectionInfo().remoteAddress;
  if (remote !== undefined) return remote;
  // "ipv4:127.0.0.1:5000" / "127.0.0.1:5000" / "[::1]:5000": the address without the port.
  return call.getPeer().replace(/^ipv[46]:/, '').replace(/:\d+$/, '').replace(/^\[(.*)\]$/, '$1');
}

/** The interceptor enforcing access control and request limits on every call. */
export function securityInterceptor(security: GrpcSecurity): ServerInterceptor {
  const { access, limits } = security;
  return (descriptor, call) => {
    const rule = grpcMethodRule(descriptor.path);
    // Nothing to enforce on this call: pass it through untouched.
    if (!access.active && rule.inference !== true) return new ServerInterceptingCall(call);
    const scopeOnly: Requirement = { access: rule.access, models: 'none' };
    let open = false;
    let ended = false;
    /** Who the caller is, once known; messages that arrive earlier wait for it. */
    let principal: Principal | undefined;
    let identified: Promise<Principal | undefined> = Promise.resolve(undefined);
    const end = (error: unknown): void => {
      ended = true;
      const serviceError = toServiceError(error);
      security.logger?.debug({ rpc: descriptor.path, code: serviceError.code }, serviceError.details ?? '');
      call.sendStatus({ code: serviceError.code, details: serviceError.details ?? '', metadata: serviceError.metadata ?? undefined });
    };
    /** Model allow list, rate limits, budget and request limits for one message, then on to the handler. */
    const admitMessage = (caller: Principal, message: Record<string, unknown>, next: (message: unknown) => void): void => {
      try {
        access.check(caller, { access: rule.access, models: rule.models(message) });
        if (rule.inference === true) checkInferMessage(message as unknown as ModelInferRequestMessage, limits);
      } catch (error) {
        if (rule.inference !== true) {
          end(error);
          return;
        }
        refuseMessage(message, toTesseraError(error));
      }
      next(message);
    };
    const listener = new ServerListenerBuilder()
      .withOnReceiveMetadata((metadata, next) => {
        if (access.isOpen(scopeOnly)) {
          open = true;
          next(metadata);
          return;
        }
        if (!access.authenticating) {
          // No authentication: the caller is its address (rate limits), allowed everything.
          principal = anonymousPrincipal(addressOf(call));
          next(metadata);
          return;
        }
        identified = access.identify(scopeOnly, { credentials: metadataCredentials(metadata), address: addressOf(call) }).then(
          (caller) => {
            try {
              authorize(caller, scopeOnly);
            } catch (error) {
              end(error);
              return undefined;
            }
            principal = caller;
            next(metadata);
            return caller;
          },
          (error: unknown) => {
            end(error);
            return undefined;
          },
        );
      })
      .withOnReceiveMessage((message: Record<string, unknown>, next) => {
        if (ended) return;
        if (open) {
          next(message);
          return;
        }
        if (principal !== undefined) {
          admitMessage(principal, message, next);
          return;
        }
        // grpc-js (1.14) reads no message before the metadata is passed on; should one arrive
        // while authentication (a JWT, perhaps a JWKS fetch) is still running, it waits, and is
        // checked like any other once the caller is known: it never slips through unchecked.
        void identified.then((caller) => {
          if (caller !== undefined && !ended) admitMessage(caller, message, next);
        });
      })
      .build();
    const responder = new ResponderBuilder().withStart((next) => next(listener)).build();
    return new ServerInterceptingCall(call, responder);
  };
}

/**
 * Request limits on a ModelInferRequest as protobuf decoded it, before any tensor is built:
 * inputs, shapes (elements, rows), element counts of the contents, and BYTES element lengths
 * (raw BYTES are walked by their length prefixes, allocating nothing).
 */
export function checkInferMessage(message: ModelInferRequestMessage, limits: RequestLimits): void {
  const inputs: readonly InferInputTensorMessage[] = message.inputs ?? [];
  checkInputCount(inputs.length, limits);
  const raw: readonly Buffer[] = message.raw_input_contents ?? [];
  inputs.forEach((input, i) => {
    const where = `input '${input.name}'`;
    checkShape(where, input.datatype, (input.shape ?? []).map(Number), limits);
    const bytes = raw[i];
    if (raw.length > 0 && bytes !== undefined) {
      if (input.datatype === 'BYTES') checkRawBytes(where, bytes, limits);
      return;
    }
    const contents = input.contents;
    if (contents === null || contents === undefined) return;
    const lists = [
      contents.bool_contents,
      contents.int_contents,
      contents.int64_contents,
      contents.uint_contents,
      contents.uint64_contents,
      contents.fp32_contents,
      contents.fp64_contents,
      contents.bytes_contents,
    ];
    const longest = Math.max(0, ...lists.map((list) => (Array.isArray(list) ? list.length : 0)));
    checkElementCount(where, input.datatype, longest, limits);
    if (input.datatype === 'BYTES' && limits.maxBytesElementLength > 0) {
      contents.bytes_contents.forEach((element: Buffer, index: number) => checkBytesElementLength(where, index, element.length, limits));
    }
  });
}

/** Walk raw BYTES (4-byte little-endian length, then the bytes) checking count and lengths. */
function checkRawBytes(where: string, bytes: Buffer, limits: RequestLimits): void {
  const count = elementLimit('BYTES', limits);
  let offset = 0;
  let index = 0;
  while (offset + 4 <= bytes.length) {
    const length = bytes.readUInt32LE(offset);
    checkBytesElementLength(where, index, length, limits);
    offset += 4 + length;
    index++;
    if (count !== undefined && index > count.limit) checkElementCount(where, 'BYTES', index, limits);
  }
}
