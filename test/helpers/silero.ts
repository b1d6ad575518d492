/** A deterministic 512-sample window at 16 kHz: a 440 Hz tone at half scale plus a slow ramp. */
export function sileroWindow(): number[] {
  return Array.from({ length: 512 }, (_, i) => Math.fround(0.5 * Math.sin((2 * Math.PI * 440 * i) / 16000) + i / 4096));
}

export function sileroRequest(id?: string) {
  return {
    ...(id ? { id } : {}),
    inputs: [
      { name: 'input', datatype: 'FP32', shape: [1, 512], data: sileroWindow() },
      { name: 'state', datatype: 'FP32', shape: [2, 1, 128], data: new Array<number>(256).fill(0) },
      { name: 'sr', datatype: 'INT64', shape: [], data: [16000] },
    ],
  };
}
