#!/usr/bin/env node
import { Command, Option } from 'commander';
import { TESSERA_VERSION } from '../server/version.js';
import { inspectCommand, packCommand } from './archive-commands.js';
import { baselineCommand } from './baseline.js';
import { inferCommand } from './infer.js';
import { modelsCommand } from './models.js';
import { serveCommand } from './serve.js';
import { batchProgramCommand } from './batch.js';
import { registerRoutingCommands } from '../routing/cli.js';

/** The `tessera` command line. */
export function buildProgram(): Command {
  const program = new Command('tessera').description('Tessera: a model-inference server for ONNX models').version(TESSERA_VERSION);

  program
    .command('serve')
    .description('serve a model repository over KServe V2 REST, TF Serving REST, TorchServe and the SageMaker / Vertex AI / Azure ML contracts')
    .option('--model-repository <dir>', 'model repository directory (env TESSERA_MODEL_REPOSITORY)')
    .option('--host <host>', 'address to listen on (default 0.0.0.0)')
    .option('--http-port <port>', 'HTTP port (default 8000; 0 picks a free port)')
    .option('--config <file>', 'server config file, YAML or JSON (env TESSERA_CONFIG)')
    .addOption(new Option('--log-level <level>', 'log level').choices(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']))
    .option('--strict-readiness <bool>', 'ready only when every model is ready (default true)')
    .option('--max-queue-size <n>', 'per-version queue bound for models whose config sets none (default 1024)')
    .option('--body-limit-bytes <n>', 'largest request body accepted (default 64 MiB)')
    .option('--shutdown-grace-ms <ms>', 'how long shutdown lets queued and running requests finish (default 30000)')
    .option('--shutdown-delay-ms <ms>', 'after SIGTERM, keep serving (reporting not ready) this long before closing listeners, as a preStop hook would (default 0)')
    .option('--request-timeout-ms <ms>', 'longest time to receive a whole HTTP request; slower clients are dropped (default 60000; 0 = no limit)')
    .option('--shed-event-loop-delay-ms <ms>', 'load shedding: refuse new requests (503 OVERLOADED) while the p99 event-loop delay exceeds this (default 0 = off)')
    .option('--shed-max-rss-bytes <n>', 'load shedding: refuse new requests while resident memory exceeds this (default 0 = off)')
    .option('--shed-max-heap-used-bytes <n>', 'load shedding: refuse new requests while the V8 heap in use exceeds this (default 0 = off)')
    .option('--shed-sample-interval-ms <ms>', 'load shedding: how often event-loop delay and memory are sampled (default 500)')
    .option('--response-compression <bool>', 'gzip/deflate responses for clients that accept them (default true)')
    .option('--compression-threshold-bytes <n>', 'smallest response that is compressed (default 1024)')
    .option('--tf-serving <bool>', 'TensorFlow Serving REST API under /v1/models (default true)')
    .option('--torch-serve <bool>', 'TorchServe inference API: /ping, /predictions (default true)')
    .option('--sagemaker', 'Amazon SageMaker contract: /ping, /invocations on port 8080, models in /opt/ml/model (also: a SAGEMAKER_* variable set)')
    .option('--vertex', 'Google Vertex AI contract: AIP_HEALTH_ROUTE, AIP_PREDICT_ROUTE on AIP_HTTP_PORT (also: AIP_* variables)')
    .option('--vertex-health-route <path>', 'Vertex AI health route when AIP_HEALTH_ROUTE is unset (default /health)')
    .option('--vertex-predict-route <path>', 'Vertex AI predict route when AIP_PREDICT_ROUTE is unset (default /predict)')
    .option('--azureml', 'Azure ML contract: GET /, POST /score (also: AZUREML_MODEL_DIR)')
    .option('--grpc <bool>', 'V2 gRPC service (default true)')
    .option('--grpc-port <port>', 'gRPC port (default 8001)')
    .option('--grpc-max-message-bytes <n>', 'largest gRPC message (default 256 MiB)')
    .option('--management <bool>', 'management API listener (default true)')
    .option('--management-host <host>', 'management API address (default 127.0.0.1)')
    .option('--management-port <port>', 'management API port (default 8081)')
    .option('--monitoring <bool>', 'model-quality monitoring for models that configure it (default true)')
    .option('--audit-dir <dir>', 'write the prediction audit log (JSONL, rotated) into this directory')
    .option('--audit-sample-rate <r>', 'audit sample rate for models without an audit: section (default 0)')
    .option('--audit-max-file-bytes <n>', 'rotate audit files at this size (default 64 MiB)')
    .option('--audit-keep-files <n>', 'audit files kept (default 10)')
    .option('--tracing <bool>', 'OpenTelemetry tracing over OTLP/HTTP (default: on when a tracing endpoint is set; false keeps it off)')
    .option('--tracing-endpoint <url>', 'OTLP/HTTP traces endpoint; turns tracing on')
    .option('--tracing-sample-ratio <r>', 'share of new traces sampled (default 1)')
    .option('--metrics <bool>', 'Prometheus metrics (default true)')
    .option('--metrics-port <port>', 'metrics port (default 8002)')
    .option('--metrics-on-http-port <bool>', 'serve /metrics on the HTTP port instead of its own (default false)')
    .addOption(new Option('--model-control-mode <mode>', 'none: load all at start; poll: follow the repository; explicit: load on request').choices(['none', 'poll', 'explicit']))
    .option('--load-model <name...>', 'explicit mode: models to load at start (repeatable; * = all)')
    .option('--repository-poll-secs <s>', 'poll mode: seconds between repository scans (default 15)')
    .option('--routing-state-file <file>', 'where run-time routing changes (split, aliases, canaries) are kept (default <model-repository>/.tessera-routing.json)')
    .option('--default-model <name>', 'model served by /invocations, Vertex predict and /score (default: the only model; env SAGEMAKER_DEFAULT_MODEL)')
    // Security (docs/security.md). Secrets have no flags (command lines are visible to every
    // user of the machine): keys come from --api-keys-file, TESSERA_API_KEYS or the config file;
    // the JWT secret from TESSERA_JWT_SECRET or the config file.
    .option('--api-keys-file <file>', 'API keys, one per line (<key> [scopes] [models] [name=..] [rate=..] [budget=..]) or JSON; turns authentication on')
    .option('--jwt-public-key <file>', 'PEM public key or certificate verifying RS256 (ES256, ...) bearer tokens; turns authentication on')
    .option('--jwt-jwks-url <url>', "the token issuer's JWKS URL (instead of --jwt-public-key)")
    .option('--jwt-algorithms <alg...>', 'accepted JWT algorithms (default HS256 with a secret, RS256 with a public key)')
    .option('--jwt-issuer <iss>', 'required iss claim of bearer tokens')
    .option('--jwt-audience <aud>', 'required aud claim of bearer tokens')
    .option('--jwt-scope-claim <claim>', 'claim holding the scopes (default: scope, then scopes, then scp)')
    .option('--jwt-models-claim <claim>', 'claim holding the model allow list (default models)')
    .option('--jwt-clock-tolerance-seconds <s>', 'clock skew allowed checking exp and nbf (default 5)')
    .option('--auth-health-open <bool>', 'health endpoints answer without a credential (default true)')
    .option('--tls-cert <file>', 'PEM certificate chain: HTTP, gRPC and management listeners speak TLS')
    .option('--tls-key <file>', 'PEM private key of --tls-cert')
    .option('--tls-client-ca <file>', 'PEM CA bundle: clients must present a certificate it signed (mutual TLS)')
    .option('--cors-origins <origin...>', 'browser origins allowed by CORS, or * (default: none, CORS off)')
    .option('--max-inputs <n>', 'most input tensors in a request (default 1024; 0 = no limit)')
    .option('--max-tensor-elements <n>', 'most elements in one input tensor (default 16777216; 0 = no limit)')
    .option('--max-bytes-tensor-elements <n>', 'most elements in one BYTES input tensor (default 1048576; 0 = no limit)')
    .option('--max-batch-rows <n>', "largest first dimension of an input tensor (default 0 = no limit beyond the model's max_batch_size)")
    .option('--max-bytes-element-length <n>', 'longest BYTES element in bytes (default 16 MiB; 0 = no limit)')
    .option('--max-json-depth <n>', 'deepest nesting of a JSON request body, checked before parsing (default 64; 0 = no limit)')
    .option('--rate-limit <n>', 'requests per window per API key or token (per address without one); bursts up to n (default 0 = off)')
    .option('--rate-limit-window-seconds <s>', 'the rate-limit window (default 60)')
    .option('--rate-limit-model <model=n...>', 'per-model quota: inference requests per window per client on that model (repeatable)')
    .option('--query-budget <n>', 'inference requests per client per budget period, against model extraction (default 0 = off)')
    .option('--query-budget-period-seconds <s>', 'the budget period (default 86400)')
    .action(serveCommand);

  program
    .command('infer <model>')
    .description('run one inference in-process and print the V2 response')
    .requiredOption('--input <file>', 'a V2 inference request body (JSON)')
    .option('--model-repository <dir>', 'model repository directory', './models')
    .option('--model-version <version>', 'model version (default: the latest ready)')
    .action(inferCommand);

  program
    .command('models <repository>')
    .description('list the models of a repository, load them, and say why any is unavailable')
    .option('--json', 'print the index as JSON')
    .action(modelsCommand);

  program
    .command('baseline <model>')
    .description("write a model's drift baseline (baseline.json) from a CSV, TSV or JSONL data set")
    .requiredOption('--data <file>', 'rows of feature values (CSV/TSV with a header, or JSONL)')
    .option('--model-repository <dir>', 'model repository directory', './models')
    .option('--bins <n>', 'histogram bins per feature (default 10)')
    .option('--out <path>', 'where to write (default the model directory)')
    .action(baselineCommand);

  program
    .command('pack <model-dir>')
    .description('bundle a model directory (versions, config, labels, handler) into a .tar.gz with a checksummed manifest')
    .option('-o, --output <file>', 'archive to write (default <model-dir>.tar.gz)')
    .option('--name <name>', 'model name recorded in the manifest (default the directory name)')
    .option('--model-version <n...>', 'version directories to pack (default all)')
    .option('--include <path...>', 'extra files or directories to pack')
    .action(packCommand);

  program
    .command('inspect <archive>')
    .description("print a model archive's manifest")
    .option('--verify', "check every file against the manifest's sha256")
    .action(inspectCommand);

  // traffic, canary, alias, shadow, rollout: talk to a running server's management API.
  registerRoutingCommands(program);

  // batch: score a data set (JSONL, CSV, Parquet) in-process or against a V2 endpoint; resumable.
  program.addCommand(batchProgramCommand());

  return program;
}

await buildProgram().parseAsync(process.argv);
