// Our cold start: a fresh process loads the deployed bundle exactly as Lambda does (init with
// top-level await pre-warms the model; onnxruntime from the layer through NODE_PATH), then serves
// one infer request through the handler.
const { handler } = await import(process.env.BUNDLE);
// The version pre-warmed (and the one the naive script loads), not whatever the registry routes to.
const path = `/v2/models/${process.env.MODEL}/versions/${process.env.VERSION}/infer`;
const event = {
  version: '2.0',
  rawPath: path,
  headers: { 'content-type': 'application/json' },
  requestContext: { http: { method: 'POST', path } },
  isBase64Encoded: false,
  body: JSON.stringify({ inputs: JSON.parse(process.env.FEEDS), outputs: [{ name: process.env.OUTPUT }] }),
};
const context = { functionName: 'bench', awsRequestId: 'cold-1', invokedFunctionArn: 'arn:aws:lambda:us-east-1:000000000000:function:bench', memoryLimitInMB: '2048', functionVersion: '$LATEST', getRemainingTimeInMillis: () => 28000 };
const write = process.stdout.write.bind(process.stdout);
process.stdout.write = () => true; // the handler's log and metric lines
const response = await handler(event, context);
process.stdout.write = write;
process.stdout.write(`RESULT ${JSON.stringify(JSON.parse(response.body).outputs[0].data)}\n`);
process.exit(0);
