// The naive cold start the benchmark compares against: a fresh process that downloads the model with
// the SDK from node_modules, creates a session with onnxruntime's defaults, and runs one input.
import { GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import ort from 'onnxruntime-node';

const TYPES = { FP32: ['float32', Float32Array], INT64: ['int64', (values) => BigInt64Array.from(values, BigInt)] };
const s3 = new S3Client({ endpoint: process.env.AWS_ENDPOINT_URL, forcePathStyle: true, region: 'us-east-1' });
const out = await s3.send(new GetObjectCommand({ Bucket: process.env.MODEL_BUCKET, Key: process.env.MODEL_KEY }));
const bytes = await out.Body.transformToByteArray();
const session = await ort.InferenceSession.create(bytes);
const feeds = {};
for (const t of JSON.parse(process.env.FEEDS)) {
  const [type, make] = TYPES[t.datatype];
  feeds[t.name] = new ort.Tensor(type, make === Float32Array ? Float32Array.from(t.data) : make(t.data), t.shape);
}
const result = await session.run(feeds);
process.stdout.write(`RESULT ${JSON.stringify(Array.from(result[process.env.OUTPUT].data))}\n`);
process.exit(0);
