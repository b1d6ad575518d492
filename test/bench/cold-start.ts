import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { keys } from '../../functions/core/keys.ts';
import { buildDeployedBundle } from './bundle.ts';
import { BENCH_AWS_ENV, root, timeToResult } from './common.ts';

const LAYER_MODULES = join(root, 'layers', 'onnxruntime', 'dist', 'nodejs', 'node_modules');

export interface ColdStartRuns {
  naiveMs: number[];
  oursMs: number[];
  /** Ours with staged artifacts turned off (MODEL_STAGING=off), when asked for. */
  oursPlainMs: number[];
}

/**
 * Fresh processes to the first inference result, alternating so load on the machine hits every path
 * alike: the naive script (SDK from node_modules, download, default session, run) against the deployed
 * bundle of the inference handler as Lambda runs it (init pre-warms the model; onnxruntime from the
 * built layer through NODE_PATH; an empty /tmp cache each time). The first round warms the page cache.
 */
export async function measureColdStarts(options: {
  awsEndpoint: string;
  dynamoEndpoint: string;
  bucket: string;
  registryTable?: string;
  model: string;
  version: string;
  pixels: number[];
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
    PIXELS: JSON.stringify(options.pixels),
  };
  const ours = async (staging: 'on' | 'off') =>
    timeToResult(process.execPath, [join(root, 'test/bench/cold-ours.mjs')], {
      cwd: tmpdir(),
      env: {
        ...baseEnv,
        BUNDLE: pathToFileURL(bundle.file).href,
        NODE_PATH: LAYER_MODULES,
        NODE_OPTIONS: bundle.nodeOptions,
        PRELOAD_MODELS: `${options.model}:${options.version}`,
        MODEL_STAGING: staging,
        ...(options.registryTable ? { REGISTRY_TABLE: options.registryTable } : {}),
        MODEL_CACHE_DIR: await mkdtemp(join(tmpdir(), 'bench-cold-')),
        POWERTOOLS_LOG_LEVEL: 'WARN',
        POWERTOOLS_METRICS_DISABLED: 'true',
      },
    });
  const runs: ColdStartRuns = { naiveMs: [], oursMs: [], oursPlainMs: [] };
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
    answers = new Set([...answers, ...[naive, staged, ...(plain ? [plain] : [])].map((r) => top1(r.line))]);
  }
  if (answers.size !== 1) throw new Error(`cold-start paths disagree on the answer: ${[...answers].join(', ')}`);
  return runs;
}

function top1(line: string): string {
  const probs = JSON.parse(line.slice('RESULT '.length)) as number[];
  return String(probs.indexOf(Math.max(...probs)));
}
