// Reads a topic from the start up to its current end and decodes every
// record: what ingest really stored, for comparison with what it reported.
import { Kafka, logLevel } from 'kafkajs';
import { createCodec } from '../../schemas/codec.ts';
import type { TrustfoldEvent } from '../../schemas/events.ts';
import { uniqueName } from './kafka.ts';

export const readTopic = async (brokers: string[], topic: string, timeoutMs = 30_000): Promise<TrustfoldEvent[]> => {
  const kafka = new Kafka({ clientId: 'ingest-readback', brokers, logLevel: logLevel.NOTHING });
  const admin = kafka.admin();
  await admin.connect();
  const ends = await admin.fetchTopicOffsets(topic);
  await admin.disconnect();
  const remaining = new Map(ends.filter((p) => Number(p.high) > 0).map((p) => [p.partition, Number(p.high)]));
  const codec = createCodec();
  const out: TrustfoldEvent[] = [];
  if (remaining.size === 0) return out;
  const consumer = kafka.consumer({ groupId: uniqueName('readback') });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`readTopic ${topic}: timed out with ${out.length} records`)), timeoutMs);
    void consumer
      .run({
        eachMessage: async ({ partition, message }) => {
          if (message.value) {
            const d = codec.decodeEvent(message.value);
            if (!d.ok) throw new Error(`undecodable record at ${partition}/${message.offset}: ${d.error.message}`);
            out.push(d.value);
          }
          if (Number(message.offset) + 1 >= (remaining.get(partition) ?? 0)) remaining.delete(partition);
          if (remaining.size === 0) {
            clearTimeout(timer);
            resolve();
          }
        },
      })
      .catch(reject);
  });
  await consumer.disconnect();
  return out;
};
