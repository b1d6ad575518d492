import { createRequire } from 'node:module';
import type * as OrtModule from 'onnxruntime-node';

/**
 * onnxruntime-node comes from the Lambda layer (/opt/nodejs/node_modules). Node's ESM resolver
 * ignores NODE_PATH, where Lambda lists the layer's folder, but require() honours it; so the bundled
 * ESM handlers load onnxruntime through one CommonJS require, here, and nowhere else.
 */
const require = createRequire(import.meta.url);
const ort = require('onnxruntime-node') as typeof OrtModule;

export default ort;
export type { InferenceSession, Tensor, OnnxValue } from 'onnxruntime-node';
