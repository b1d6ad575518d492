/**
 * A round's global model scored on a labelled data set: top-1 accuracy of the first output's argmax
 * and the mean cross-entropy (from the probabilities a Softmax output gives, or from logits).
 */
import ort, { type Tensor } from '../onnx/ort.ts';
import type { TrainingData } from '../train/loop.ts';
import { gatherBatch } from '../train/loop.ts';

export interface ClassifierScore {
  accuracy: number;
  loss: number;
  rows: number;
}

export async function evaluateClassifier(modelBytes: Uint8Array, data: TrainingData, batchSize = 1000): Promise<ClassifierScore> {
  const labels = data.labels;
  if (!labels) throw new RangeError('the evaluation data set has no labels');
  const session = await ort.InferenceSession.create(modelBytes);
  const output = session.outputNames[0] as string;
  let correct = 0;
  let loss = 0;
  try {
    for (let start = 0; start < labels.length; start += batchSize) {
      const rows = Uint32Array.from({ length: Math.min(batchSize, labels.length - start) }, (_, index) => start + index);
      const feeds = gatherBatch(data, rows, 'float32');
      const values = (await session.run(Object.fromEntries(session.inputNames.map((name) => [name, feeds[name] as Tensor]))))[output]?.data as Float32Array;
      const width = values.length / rows.length;
      for (let row = 0; row < rows.length; row++) {
        const scores = values.subarray(row * width, (row + 1) * width);
        let best = 0;
        let sum = 0;
        let low = Infinity;
        let high = -Infinity;
        for (let column = 0; column < width; column++) {
          const value = scores[column] as number;
          if (value > (scores[best] as number)) best = column;
          sum += value;
          low = Math.min(low, value);
          high = Math.max(high, value);
        }
        const label = labels[start + row] as number;
        if (best === label) correct++;
        if (low >= 0 && Math.abs(sum - 1) < 1e-3) loss -= Math.log(Math.max(scores[label] as number, 1e-12));
        else {
          let exp = 0;
          for (let column = 0; column < width; column++) exp += Math.exp((scores[column] as number) - high);
          loss -= (scores[label] as number) - high - Math.log(exp);
        }
      }
    }
  } finally {
    await session.release();
  }
  return { accuracy: correct / labels.length, loss: loss / labels.length, rows: labels.length };
}
