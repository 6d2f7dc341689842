import { receivedRequestPool } from '../../core/buffer-pool.js';

/**
 * When the memory an inference request was received in goes back to the pool
 * (message-framing.ts). Its tensors are views of that memory, so the request must be settled
 * first (the engine reads input tensors only until the promise of Engine.infer settles), and
 * when it is answered, the answer encoded, since an output may be a view of an input.
 * Memory whose request never gets that far (a call cancelled before its answer is written, a
 * message grpc-js refused) is not given back and is collected like any other.
 */

/** Request message -> the received bytes it was decoded from. */
const receivedBytes = new WeakMap<object, Uint8Array>();
/** Answer -> the received bytes of its request, given back once the answer is encoded. */
const awaitingEncoding = new WeakMap<object, Uint8Array>();

/** The deserializer decoded `message` from `bytes` (views of `bytes` are in it). */
export function noteReceived(message: object, bytes: Uint8Array): void {
  receivedBytes.set(message, bytes);
}

/** `message`'s request is settled with nothing to send that views it (an error): give its memory back now. */
export function releaseRequest(message: object): void {
  const bytes = take(receivedBytes, message);
  if (bytes !== undefined) receivedRequestPool.giveBack(bytes);
}

/** `message`'s request is settled and answered by `answer`: give its memory back once `answer` is encoded ({@link answerEncoded}). */
export function releaseOnceEncoded(message: object, answer: object): void {
  const bytes = take(receivedBytes, message);
  if (bytes !== undefined) awaitingEncoding.set(answer, bytes);
}

/** The serializer has encoded `answer`: nothing reads its request's memory any more. */
export function answerEncoded(answer: object): void {
  const bytes = take(awaitingEncoding, answer);
  if (bytes !== undefined) receivedRequestPool.giveBack(bytes);
}

/** The entry of `key`, removed: each received buffer is given back at most once. */
function take(map: WeakMap<object, Uint8Array>, key: object): Uint8Array | undefined {
  const bytes = map.get(key);
  if (bytes !== undefined) map.delete(key);
  return bytes;
}
