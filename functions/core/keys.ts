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
  staged: (model: string, version: string, stagingKey: string) =>
    `models/${model}/${version}/staged/${stagingKey}.ort`,
} as const;
