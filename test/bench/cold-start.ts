import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { keys } from '../../functions/core/artifacts/keys.ts';
import type { WarmupTensor } from '../../functions/core/artifacts/manifest.ts';
import { buildDeployedBundle } from './bundle.ts';
import { BENCH_AWS_ENV, root, timeToResult } from './common.ts';

const LAYER_MODULES = join(root, 'layers', 'onnxruntime', 'dist', 'nodejs', 'node_modules');

export interface ColdStartRuns {
  naiveMs: number[];
  oursMs: number[];
  /** Ours with staged artifacts turned off (MODEL_STAGING=off), when asked for. */
  oursPlainMs: number[];
  /** The process tuning from serverless.yml that our runs got and the naive script did not. */
  oursProcessEnv: Record<string, string>;
}

/**
 * Fresh processes to the first inference result, alternating so load on the machine hits every path
 * alike: the naive script (SDK from node_modules, download, default session, run, with the defaults
 * of everything) against the deployed bundle of the inference handler as Lambda runs it (init
 * pre-warms the model; onnxruntime from the built layer through NODE_PATH; the function's process
 * tuning from serverless.yml; an empty /tmp cache each time). The first round warms the page cache.
 */
export async function measureColdStarts(options: {
  awsEndpoint: string;
  dynamoEndpoint: string;
  bucket: string;
  registryTable?: string;
  model: string;
  version: string;
  /** One request's inputs, as V2 JSON tensors (the naive script builds the same tensors). */
  feeds: WarmupTensor[];
  /** The output whose values every path must agree on. */
  output: string;
  reps: number;
  withPlain?: boolean;
}): Promise<ColdStartRuns> {
  const bundle = await buildDeployedBundle('functions/inference/handler.ts');
  const baseEnv = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    ...BENCH_AWS_ENV,
    AWS_ENDPOINT_URL: options.awsEndpoint,
    DYNAMODB_ENDPOINT_URL: options.dynamoEndpoint,
    MODEL_BUCKET: options.bucket,
    MODEL: options.model,
    VERSION: options.version,
    FEEDS: JSON.stringify(options.feeds),
    OUTPUT: options.output,
  };
  const ours = async (staging: 'on' | 'off') => {
    const cacheDir = await mkdtemp(join(tmpdir(), 'bench-cold-'));
    try {
      return await timeToResult(process.execPath, [join(root, 'test/bench/cold-ours.mjs')], {
        cwd: tmpdir(),
        env: {
          ...baseEnv,
          BUNDLE: pathToFileURL(bundle.file).href,
          NODE_PATH: LAYER_MODULES,
          ...bundle.processEnv,
          PRELOAD_MODELS: `${options.model}:${options.version}`,
          MODEL_STAGING: staging,
          ...(options.registryTable ? { REGISTRY_TABLE: options.registryTable } : {}),
          MODEL_CACHE_DIR: cacheDir,
          POWERTOOLS_LOG_LEVEL: 'WARN',
          POWERTOOLS_METRICS_DISABLED: 'true',
        },
      });
    } finally {
      await rm(cacheDir, { recursive: true, force: true });
    }
  };
  const runs: ColdStartRuns = { naiveMs: [], oursMs: [], oursPlainMs: [], oursProcessEnv: bundle.processEnv };
  let answers = new Set<string>();
  for (let i = 0; i <= options.reps; i++) {
    const naive = await timeToResult(process.execPath, [join(root, 'test/bench/cold-naive.mjs')], {
      cwd: root,
      env: { ...baseEnv, MODEL_KEY: keys.modelFile(options.model, options.version) },
    });
    const staged = await ours('on');
    const plain = options.withPlain ? await ours('off') : undefined;
    if (i === 0) continue;
    runs.naiveMs.push(naive.ms);
    runs.oursMs.push(staged.ms);
    if (plain) runs.oursPlainMs.push(plain.ms);
    answers = new Set([...answers, ...[naive, staged, ...(plain ? [plain] : [])].map((r) => rounded(r.line))]);
  }
  if (answers.size !== 1) throw new Error(`cold-start paths disagree on the answer: ${[...answers].join(', ')}`);
  return runs;
}

/** The output's values to 4 significant digits: every path runs the same graph on the same input. */
function rounded(line: string): string {
  const values = JSON.parse(line.slice('RESULT '.length)) as number[];
  return JSON.stringify(values.map((v) => Number(v.toPrecision(4))));
}

/** One MNIST test image as the MLP's input. */
export function mnistFeeds(images: Uint8Array): WarmupTensor[] {
  return [{ name: 'input', datatype: 'FP32', shape: [1, 784], data: Array.from(images.subarray(0, 784)) }];
}

/** One 512-sample window of a 440 Hz tone at 16 kHz, with silero-vad's zero state. */
export function sileroFeeds(): WarmupTensor[] {
  const window = Array.from({ length: 512 }, (_, i) => Number((0.5 * Math.sin((2 * Math.PI * 440 * i) / 16000)).toFixed(6)));
  return [
    { name: 'input', datatype: 'FP32', shape: [1, 512], data: window },
    { name: 'state', datatype: 'FP32', shape: [2, 1, 128], data: new Array<number>(256).fill(0) },
    { name: 'sr', datatype: 'INT64', shape: [], data: [16000] },
  ];
}
