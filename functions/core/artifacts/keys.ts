/**
 * The bucket's key layout (DESIGN.md, "Storage"). Every key the code reads or writes is built here,
 * from names already checked against NAME_PATTERN.
 */
export const keys = {
  incomingPrefix: 'incoming/',
  modelsPrefix: 'models/',
  modelPrefix: (model: string) => `models/${model}/`,
  versionPrefix: (model: string, version: string) => `models/${model}/${version}/`,
  modelFile: (model: string, version: string) => `models/${model}/${version}/model.onnx`,
  manifest: (model: string, version: string) => `models/${model}/${version}/manifest.json`,
  /** A pipeline's version: its spec, where a model's version has model.onnx. */
  pipelineFile: (model: string, version: string) => `models/${model}/${version}/pipeline.json`,
  staged: (model: string, version: string, stagingKey: string) =>
    `models/${model}/${version}/staged/${stagingKey}.ort`,
  /** Uploads here submit a batch job named after the file. */
  batchIncomingPrefix: 'batches/incoming/',
  /** Inputs referenced by API submissions (the CLI uploads here); not a trigger prefix. */
  batchInputsPrefix: 'batches/inputs/',
  batchPrefix: (job: string) => `batches/${job}/`,
  /** Rows sent inline with an API submission, written once so shards read them like any input. */
  batchInlineInput: (job: string) => `batches/${job}/input.jsonl`,
  batchShardOutput: (job: string, shard: number) => `batches/${job}/shards/${String(shard).padStart(6, '0')}.jsonl`,
  batchShardErrors: (job: string, shard: number) => `batches/${job}/shards/${String(shard).padStart(6, '0')}.errors.jsonl`,
  batchResult: (job: string) => `batches/${job}/result.jsonl`,
  batchErrors: (job: string) => `batches/${job}/errors.jsonl`,
  /** Mutable, model-wide promotion policy; a version's manifest `policy` wins over it. */
  modelPolicy: (model: string) => `models/${model}/policy.json`,
  datasetPrefix: (dataset: string) => `datasets/${dataset}/`,
  /** Written last by `pushDataset`: a data set exists for readers once its manifest does. */
  datasetManifest: (dataset: string) => `datasets/${dataset}/dataset.json`,
  datasetRows: (dataset: string) => `datasets/${dataset}/rows.jsonl`,
  datasetImages: (dataset: string) => `datasets/${dataset}/images.idx`,
  datasetLabels: (dataset: string) => `datasets/${dataset}/labels.idx`,
  evalVersionPrefix: (model: string, version: string) => `evals/${model}/${version}/`,
  evalPrefix: (model: string, version: string, id: string) => `evals/${model}/${version}/${id}/`,
  evalStep: (model: string, version: string, id: string, step: number) =>
    `evals/${model}/${version}/${id}/steps/${String(step).padStart(4, '0')}.json`,
  evalReport: (model: string, version: string, id: string) => `evals/${model}/${version}/${id}/report.json`,
  evalReportHtml: (model: string, version: string, id: string) => `evals/${model}/${version}/${id}/report.html`,
  /** A tuning study's variants, trial models and report, under the job that ran it. */
  tuneVariant: (job: string, hash: string) => `jobs/${job}/variants/${hash}.onnx`,
  tuneTrialModel: (job: string, trial: number) => `jobs/${job}/trials/${String(trial).padStart(6, '0')}/model.onnx`,
  tuneReport: (job: string) => `jobs/${job}/report.json`,
  tuneReportHtml: (job: string) => `jobs/${job}/report.html`,
} as const;
