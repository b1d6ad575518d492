// The naive cold start the benchmark compares against: a fresh process that downloads the model with
// the SDK from node_modules, creates a session with onnxruntime's defaults, and runs one input.
import { GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import ort from 'onnxruntime-node';

const s3 = new S3Client({ endpoint: process.env.AWS_ENDPOINT_URL, forcePathStyle: true, region: 'us-east-1' });
const out = await s3.send(new GetObjectCommand({ Bucket: process.env.MODEL_BUCKET, Key: process.env.MODEL_KEY }));
const bytes = await out.Body.transformToByteArray();
const session = await ort.InferenceSession.create(bytes);
const pixels = new Float32Array(JSON.parse(process.env.PIXELS));
const result = await session.run({ input: new ort.Tensor('float32', pixels, [1, 784]) });
process.stdout.write(`RESULT ${JSON.stringify(Array.from(result.probabilities.data))}\n`);
process.exit(0);
