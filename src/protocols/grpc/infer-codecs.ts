import type { MethodDefinition, ServiceDefinition } from '@grpc/proto-loader';
import { decodeModelInferRequest } from './infer-request-decoder.js';
import { encodeModelInferResponse, encodeModelStreamInferResponse } from './infer-response-encoder.js';
import type { ModelInferResponseOut, ModelStreamInferResponseOut } from './messages.js';
import { answerEncoded } from './received-messages.js';

/**
 * The inference service definition with ModelInfer's and ModelStreamInfer's server-side
 * codecs replaced by the hand-written ones (infer-request-decoder.ts,
 * infer-response-encoder.ts): the rpcs that carry tensors, where protobufjs's per-message
 * objects and the copy of every misaligned raw tensor cost the most. The client-side codecs
 * (requestSerialize, responseDeserialize) and every other rpc keep protobufjs; reflection
 * reads the .proto descriptors, which do not change.
 */
export function withInferCodecs(service: ServiceDefinition): ServiceDefinition {
  const infer = method(service, 'ModelInfer');
  const stream = method(service, 'ModelStreamInfer');
  return {
    ...service,
    ModelInfer: {
      ...infer,
      requestDeserialize: decodeModelInferRequest,
      responseSerialize: (response: object) => {
        const bytes = encodeModelInferResponse(response as ModelInferResponseOut);
        answerEncoded(response);
        return bytes;
      },
    },
    ModelStreamInfer: {
      ...stream,
      requestDeserialize: decodeModelInferRequest,
      responseSerialize: (answer: object) => {
        const bytes = encodeModelStreamInferResponse(answer as ModelStreamInferResponseOut);
        answerEncoded(answer);
        return bytes;
      },
    },
  };
}

function method(service: ServiceDefinition, name: string): MethodDefinition<object, object> {
  const found = service[name];
  if (found === undefined) throw new Error(`the inference service has no ${name} rpc`);
  return found;
}
