/**
 * Loaded into every test process before the test file (`--import` in `npm test`): onnxruntime,
 * which test files also load directly to build and check models, would otherwise write
 * `mat-debug-<pid>.log` (in `$TMPDIR`) and a telemetry database for each of them. Tessera's own workers
 * turn it off the same way (see keepOnnxRuntimeTelemetryOff); a test that needs the variable
 * unset removes it from its child's environment.
 */
process.env.ORT_DISABLE_TELEMETRY ??= '1';
