import Long from 'long';

// protobufjs (inside onnx-proto) looks for `Long` on globalThis.dcodeIO before it tries a runtime
// require, and a bundled Lambda has no node_modules for that require to find: without this, int64
// fields (Slice ends of INT64_MAX, for one) would decode as rounded numbers and re-encode wrong.
const global = globalThis as { dcodeIO?: { Long?: unknown } };
global.dcodeIO ??= {};
global.dcodeIO.Long ??= Long;
