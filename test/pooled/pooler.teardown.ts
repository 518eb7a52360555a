import clusterTeardown from "../cluster.teardown.js";

export default async function pooledTeardown(): Promise<void> {
  await globalThis.__authhubTestPooler?.stop();
  await clusterTeardown();
}
