import { join } from 'node:path';
import { PortInUseError } from './emulators.ts';
import { startLocalStack } from './stack.ts';

/** `npm start`: the local stack in the foreground until Ctrl-C. Ports: API_PORT, AWS_PORT, DYNAMO_PORT. */
const port = (name: string, fallback: number) => Number(process.env[name] ?? fallback);
const verbose = process.env.VERBOSE === '1';

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

const pixels = new Array(784).fill(0);
console.log(`
AI Mass is running.
  HTTP API (Open Inference Protocol V2)  ${stack.api}/v2
  S3 + SQS emulator                      ${stack.awsEndpoint}   bucket: ${stack.bucket}
  DynamoDB emulator                      ${stack.dynamoEndpoint}
  models                                 ${stack.seeded.join(', ')}

Try it:
  curl -s ${stack.api}/v2/models/mnist
  curl -s -X POST ${stack.api}/v2/models/mnist/infer -H 'content-type: application/json' \\
    -d '${JSON.stringify({ inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 784], data: pixels }] })}'
  npx mass models

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
