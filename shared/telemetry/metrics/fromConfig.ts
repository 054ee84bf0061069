import { isAbsolute, resolve } from 'node:path';
import type { MetricsConfig } from '../../core/policy/types.js';
import type { MetricsSink } from '../../core/ports/MetricsSink.js';

/**
 * The metrics sink a config's `metrics:` section names. Each SDK is loaded only when chosen.
 * Closing never throws: a backend that cannot take the last points is reported as a warning,
 * because the work those points describe is already done. (`flush` does throw, for commands
 * whose whole job is to publish.)
 */
export async function metricsSinkFromConfig(
  config: MetricsConfig,
  opts: {
    baseDir: string;
    /** Resolves a header's secret ref (env:NAME, file:PATH) to its value. */
    secret: (ref: string, what: string) => string;
    serviceVersion?: string;
    onWarning?: (message: string) => void;
  },
): Promise<MetricsSink> {
  const warn = opts.onWarning ?? ((m: string) => process.stderr.write(`rekey: metrics: ${m}\n`));
  let sink: MetricsSink;
  switch (config.type) {
    case 'emf': {
      const { EmfMetricsSink } = await import('./EmfMetricsSink.js');
      const output =
        config.output === 'stdout' || config.output === 'stderr'
          ? config.output
          : { file: isAbsolute(config.output) ? config.output : resolve(opts.baseDir, config.output) };
      sink = new EmfMetricsSink({
        namespace: config.namespace,
        service: config.service,
        output,
        perKey: config.perKey,
        rollups: config.rollups,
        onWarning: warn,
      });
      break;
    }
    case 'otlp': {
      const { OtlpMetricsSink } = await import('./OtlpMetricsSink.js');
      const headers = config.headers
        ? Object.fromEntries(
            Object.entries(config.headers).map(([name, ref]) => [
              name,
              opts.secret(ref, `metrics.headers.${name}`),
            ]),
          )
        : undefined;
      sink = new OtlpMetricsSink({
        ...(config.endpoint ? { url: config.endpoint } : {}),
        ...(headers ? { headers } : {}),
        exportIntervalMs: config.intervalSeconds * 1000,
        timeoutMs: config.timeoutSeconds * 1000,
        temporality: config.temporality,
        resource: config.resource,
        ...(opts.serviceVersion ? { serviceVersion: opts.serviceVersion } : {}),
        onWarning: warn,
      });
      break;
    }
  }
  return {
    record: (points) => sink.record(points),
    flush: () => sink.flush?.() ?? Promise.resolve(),
    close: async () => {
      try {
        await sink.close?.();
      } catch (e) {
        warn(e instanceof Error ? e.message : String(e));
      }
    },
  };
}
