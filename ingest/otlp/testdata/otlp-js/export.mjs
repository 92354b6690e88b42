// Exports log records to an OTLP/HTTP receiver with the OpenTelemetry JS SDK:
// a LoggerProvider, a BatchLogRecordProcessor and one of the OTLP/HTTP log
// exporters. ingest/otlp/js_test.go runs it and checks what the receiver
// stored against the same rules, written again in Go (record below).
//
//   node export.mjs json|proto URL N [gzip]
//
// It prints one line of JSON, {"exported":N,"failed":F}, and exits 1 when any
// export failed or fewer than N records were exported.
import { context, trace, TraceFlags } from '@opentelemetry/api';
import { LoggerProvider, BatchLogRecordProcessor } from '@opentelemetry/sdk-logs';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { OTLPLogExporter as JSONExporter } from '@opentelemetry/exporter-logs-otlp-http';
import { OTLPLogExporter as ProtoExporter } from '@opentelemetry/exporter-logs-otlp-proto';

const [protocol, url, count, compression = 'none'] = process.argv.slice(2);
const exporters = { json: JSONExporter, proto: ProtoExporter };
const n = Number(count);
if (!exporters[protocol] || !url || !Number.isInteger(n) || n < 1 || !['none', 'gzip'].includes(compression)) {
  console.error('usage: node export.mjs json|proto URL N [gzip]');
  process.exit(2);
}

// counting wraps the exporter: the batch processor only logs a failed export,
// this script must fail.
class Counting {
  constructor(inner) {
    this.inner = inner;
    this.exported = 0;
    this.failed = 0;
    this.errors = [];
  }
  export(records, done) {
    this.inner.export(records, (result) => {
      if (result.code === 0) {
        this.exported += records.length;
      } else {
        this.failed += records.length;
        this.errors.push(String(result.error));
      }
      done(result);
    });
  }
  forceFlush() { return this.inner.forceFlush(); }
  shutdown() { return this.inner.shutdown(); }
}

const exporter = new Counting(new exporters[protocol]({ url, compression, timeoutMillis: 30000 }));
const provider = new LoggerProvider({
  resource: resourceFromAttributes({ 'host.name': 'app-js', 'service.name': 'checkout-js' }),
  processors: [new BatchLogRecordProcessor({ exporter, maxQueueSize: n, maxExportBatchSize: 512 })],
});
const logger = provider.getLogger('shop-js', '1.4.2');

// 2026-12-02T10:00:00Z; record i is i microseconds and 7 ns later.
const baseSeconds = Date.UTC(2026, 11, 2, 10, 0, 0) / 1000;
const levels = ['TRACE', 'DEBUG', 'INFO', 'WARN', 'ERROR', 'FATAL'];
const hex8 = (i) => i.toString(16).padStart(8, '0');

for (let i = 0; i < n; i++) {
  const bodies = [
    `order ${i}`,
    { order: i, state: 'paid', tags: ['a', 'b'] },
    [i, 'x', true],
    i,
    new Uint8Array([0, 1, i % 256]),
  ];
  let ctx = context.active();
  if (i % 10 !== 9) { // every tenth record has no trace context
    ctx = trace.setSpanContext(ctx, {
      traceId: '4bf92f3577b34da6a3ce929d' + hex8(i),
      spanId: '00f067aa' + hex8(i),
      traceFlags: i % 2 === 0 ? TraceFlags.SAMPLED : TraceFlags.NONE,
      isRemote: false,
    });
  }
  logger.emit({
    timestamp: [baseSeconds, i * 1000 + 7],
    severityNumber: 1 + 4 * (i % 6),
    severityText: levels[i % 6],
    body: bodies[i % 5],
    attributes: {
      i,
      ratio: i + 0.5,
      even: i % 2 === 0,
      user: `u-${i}`,
      tags: ['t', String(i)],
      ctx: { shard: i % 7, region: 'eu' },
    },
    eventName: 'order.event',
    context: ctx,
  });
}

await provider.forceFlush();
await provider.shutdown();
console.log(JSON.stringify({ exported: exporter.exported, failed: exporter.failed, errors: exporter.errors.slice(0, 3) }));
process.exit(exporter.failed === 0 && exporter.exported === n ? 0 : 1);
