/**
 * Imported first by every benchmark entry point: onnxruntime's usage telemetry is off in the
 * raw baselines as it is in Tessera's own processes (src/backends/onnx/session-instance.ts), so
 * both sides run alike. Child processes inherit it.
 */
process.env.ORT_DISABLE_TELEMETRY ??= '1';
