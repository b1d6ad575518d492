/**
 * Every AWS client takes its endpoint from configuration. In AWS the variable is unset and the SDK's
 * own resolution applies; tests and the local stack set AWS_ENDPOINT_URL to a loopback emulator.
 * Path-style addressing because the emulators serve every bucket on one host. No SDK code here:
 * clients.ts makes clients at once, lazy-clients.ts on first use, from the same settings.
 */
export interface ClientOptions {
  endpoint?: string | undefined;
  region?: string | undefined;
}

export function clientConfig(options: ClientOptions = {}) {
  const endpoint = options.endpoint ?? process.env.AWS_ENDPOINT_URL;
  return {
    region: options.region ?? process.env.AWS_REGION ?? 'us-east-1',
    ...(endpoint ? { endpoint } : {}),
  };
}

export function s3ClientConfig(options: ClientOptions = {}) {
  const base = clientConfig(options);
  return { ...base, forcePathStyle: 'endpoint' in base };
}

export function dynamoClientConfig(options: ClientOptions = {}) {
  const endpoint = options.endpoint ?? process.env.DYNAMODB_ENDPOINT_URL;
  return { ...clientConfig(options), ...(endpoint ? { endpoint } : {}) };
}
