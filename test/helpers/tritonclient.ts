/**
 * The request bytes and headers tritonclient's synchronous HTTP client (tritonclient.http, its
 * default binary mode, no requested outputs) sends for one input: `json.dumps` of the header with
 * Python's default separators, the raw tensor bytes after it, `Inference-Header-Content-Length`, and
 * no Content-Type (geventhttpclient sets none).
 */
export function tritonclientRequest(name: string, shape: number[], datatype: string, data: Uint8Array): { body: Buffer; headers: Record<string, string> } {
  const header = `{"inputs": [{"name": "${name}", "shape": [${shape.join(', ')}], "datatype": "${datatype}", "parameters": {"binary_data_size": ${data.length}}}], "parameters": {"binary_data_output": true}}`;
  const json = Buffer.from(header, 'utf8');
  return {
    body: Buffer.concat([json, data]),
    headers: { 'inference-header-content-length': String(json.length), 'content-length': String(json.length + data.length) },
  };
}
