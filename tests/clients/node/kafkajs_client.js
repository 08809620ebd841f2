#!/usr/bin/env node
// Command-line driver around kafkajs, so the Python tests can talk to the
// broker through an independent Kafka client implementation.
//
//   node kafkajs_client.js <command> [<json-args> | -]
//
// The arguments are one JSON object, given as the second argument or, when it
// is "-" or missing, read from stdin (large payloads can exceed the 128 KiB
// limit on a single command-line argument). Every command needs `brokers`:
// a "host:port" string or a list of them. Optional for all commands:
// `clientId`, `connectionTimeout`, `requestTimeout` (ms).
//
// On success exactly one JSON document is printed on stdout and the exit
// status is 0; calls that return nothing in kafkajs print `null`. Values
// are kafkajs' own, so 64-bit numbers (offsets, timestamps) stay strings.
// Bytes (keys, values, header values) travel as base64 strings, with JSON
// null for a null key or value.
//
// On failure the exit status is 1 (2 for a usage error) and the last line on
// stderr is a JSON object {"error": {name, message, type, code, ...}}; any
// earlier stderr lines are kafkajs' own error log.
//
// Three commands go beyond one call of kafkajs' public API:
// - create_topics with `withErrors: true` prints {created, errors}: kafkajs'
//   result and the per-topic errors it decoded from the CreateTopics response
//   (its admin reports topics that already exist only as `false`).
// - produce_steps sends `steps` (a list of {messages}) with one producer. After
//   each step but the last it writes the line `step <i> done` on stderr and
//   waits for a line on stdin before the next, so a test can act in between
//   (restart the broker, say); its arguments must then be given on the command
//   line. It prints the list of the steps' results.
// - fetch sends a Fetch request through kafkajs' internal Cluster and Broker,
//   with its own connections and protocol decoder, as its consumer does for
//   each fetch, but outside any consumer group (which kafkajs' consumer cannot
//   do without). `partitions` is a list of {partition, fetchOffset, maxBytes};
//   `maxBytes`, `minBytes` and `maxWaitTime` (ms) are the request's. It prints,
//   per partition, the response's fields and every record kafkajs decoded.
'use strict'

const {
  Kafka,
  logLevel,
  CompressionTypes,
  ConfigResourceTypes,
  Partitioners,
} = require('kafkajs')

const EXIT_ERROR = 1
const EXIT_USAGE = 2

class UsageError extends Error {
  constructor(message) {
    super(message)
    this.name = 'UsageError'
  }
}

// kafkajs logs through console.*; send everything to stderr so stdout only
// ever holds the result document.
const stderrLogCreator = () => ({ namespace, label, log }) => {
  const prefix = namespace ? `[${namespace}] ` : ''
  process.stderr.write(
    `kafkajs ${label}: ${JSON.stringify({ ...log, message: prefix + log.message })}\n`
  )
}

// A short retry policy: the tests want failures reported quickly rather than
// retried for the better part of a minute.
const RETRY = { retries: 3, initialRetryTime: 100 }

function required(args, name) {
  if (args[name] === undefined || args[name] === null) {
    throw new UsageError(`missing argument: ${name}`)
  }
  return args[name]
}

function makeKafka(args) {
  const brokers = required(args, 'brokers')
  return new Kafka({
    clientId: args.clientId || 'tidelog-tests',
    brokers: Array.isArray(brokers) ? brokers : [brokers],
    logLevel: logLevel.ERROR,
    logCreator: stderrLogCreator,
    retry: RETRY,
    connectionTimeout: args.connectionTimeout ?? 1000,
    requestTimeout: args.requestTimeout ?? 10000,
  })
}

const fromBase64 = s => (s === null || s === undefined ? null : Buffer.from(s, 'base64'))
const toBase64 = b => (b === null || b === undefined ? null : Buffer.from(b).toString('base64'))

// Header values may be a single value or, for a repeated header key, a list.
function mapHeaders(headers, fn) {
  const out = {}
  for (const [k, v] of Object.entries(headers || {})) {
    out[k] = Array.isArray(v) ? v.map(fn) : fn(v)
  }
  return out
}

function toKafkajsMessage(m) {
  const message = {
    key: fromBase64(m.key),
    value: fromBase64(m.value),
    headers: mapHeaders(m.headers, fromBase64),
  }
  if (m.timestamp !== undefined && m.timestamp !== null) message.timestamp = String(m.timestamp)
  if (m.partition !== undefined && m.partition !== null) message.partition = m.partition
  return message
}

// Records the per-topic errors of CreateTopics responses as kafkajs decoded
// them, before its admin folds TOPIC_ALREADY_EXISTS into a `false` result.
function recordCreateTopicsErrors() {
  const Broker = require('kafkajs/src/broker')
  const original = Broker.prototype.createTopics
  const errors = []
  Broker.prototype.createTopics = async function (...callArgs) {
    try {
      return await original.apply(this, callArgs)
    } catch (e) {
      if (Array.isArray(e.errors)) errors.push(...e.errors)
      throw e
    }
  }
  return errors
}

async function createTopics(admin, args) {
  const topics = required(args, 'topics')
  if (!args.withErrors) return admin.createTopics({ topics })
  const errors = recordCreateTopicsErrors()
  const created = await admin.createTopics({ topics })
  return { created, errors: errors.map(e => describeError(e)) }
}

const COMPRESSION = {
  none: CompressionTypes.None,
  gzip: CompressionTypes.GZIP,
}

function makeProducer(kafka, args) {
  const idempotent = Boolean(args.idempotent)
  return kafka.producer({
    idempotent,
    // One request in flight keeps idempotent sequence numbers in order.
    maxInFlightRequests: idempotent ? 1 : undefined,
    createPartitioner: Partitioners.DefaultPartitioner,
    retry: RETRY,
  })
}

function send(producer, args, messages) {
  const compression = COMPRESSION[args.compression || 'none']
  if (compression === undefined) throw new UsageError(`unsupported compression: ${args.compression}`)
  return producer.send({
    topic: required(args, 'topic'),
    messages: messages.map(toKafkajsMessage),
    acks: args.acks ?? -1,
    compression,
  })
}

async function produce(kafka, args) {
  const producer = makeProducer(kafka, args)
  await producer.connect()
  try {
    return await send(producer, args, required(args, 'messages'))
  } finally {
    await producer.disconnect().catch(() => {})
  }
}

async function produceSteps(kafka, args) {
  const steps = required(args, 'steps')
  const lines = require('readline').createInterface({ input: process.stdin })[
    Symbol.asyncIterator
  ]()
  const producer = makeProducer(kafka, args)
  await producer.connect()
  try {
    const results = []
    for (const [i, step] of steps.entries()) {
      results.push(await send(producer, args, required(step, 'messages')))
      if (i < steps.length - 1) {
        process.stderr.write(`step ${i} done\n`)
        if ((await lines.next()).done) throw new UsageError(`stdin closed after step ${i}`)
      }
    }
    return results
  } finally {
    lines.return()
    await producer.disconnect().catch(() => {})
  }
}

// Runs a group consumer until `count` messages have arrived or `timeoutMs`
// has passed. On timeout it prints what did arrive, unless the consumer
// crashed meanwhile, in which case the crash is the reported failure.
async function consume(kafka, args) {
  const topic = required(args, 'topic')
  const count = required(args, 'count')
  const timeoutMs = args.timeoutMs ?? 30000
  if (count <= 0) return []
  const consumer = kafka.consumer({ groupId: required(args, 'groupId'), retry: RETRY })
  const received = []
  let lastCrash = null

  let finish
  let fail
  const done = new Promise((resolve, reject) => {
    finish = resolve
    fail = reject
  })
  done.catch(() => {}) // a crash may reject it before it is awaited
  const timer = setTimeout(() => {
    if (lastCrash) {
      fail(lastCrash)
    } else {
      process.stderr.write(`consume: timed out with ${received.length} of ${count} messages\n`)
      finish()
    }
  }, timeoutMs)

  consumer.on(consumer.events.CRASH, ({ payload }) => {
    lastCrash = payload.error
    if (!payload.restart) fail(payload.error)
  })

  try {
    await consumer.connect()
    await consumer.subscribe({ topics: [topic], fromBeginning: args.fromBeginning ?? true })
    await consumer.run({
      // Offsets are resolved by hand so that only the messages handed back
      // are committed for the group, not the rest of the last batch.
      eachBatchAutoResolve: false,
      eachBatch: async ({ batch, resolveOffset, heartbeat, isRunning, isStale }) => {
        for (const message of batch.messages) {
          if (received.length >= count || !isRunning() || isStale()) break
          received.push({
            partition: batch.partition,
            offset: message.offset,
            key: toBase64(message.key),
            value: toBase64(message.value),
            headers: mapHeaders(message.headers, toBase64),
            timestamp: message.timestamp,
          })
          resolveOffset(message.offset)
          if (received.length >= count) finish()
        }
        await heartbeat()
      },
    })
    await done
    return received
  } finally {
    clearTimeout(timer)
    // Disconnecting commits the resolved offsets and leaves the group.
    await consumer.disconnect().catch(() => {})
  }
}

function toRecord(message) {
  return {
    offset: message.offset,
    key: toBase64(message.key),
    value: toBase64(message.value),
    headers: mapHeaders(message.headers, toBase64),
    timestamp: message.timestamp,
  }
}

// kafkajs' Cluster, which holds its broker connections and metadata; the
// Kafka client keeps its factory under a private symbol.
function makeCluster(kafka) {
  const factory = Object.getOwnPropertySymbols(kafka).find(
    s => s.description === 'private:Kafka:createCluster'
  )
  if (factory === undefined) throw new Error('this kafkajs has no cluster factory')
  return kafka[factory]({ allowAutoTopicCreation: false })
}

async function fetchRecords(kafka, args) {
  const topic = required(args, 'topic')
  const wanted = required(args, 'partitions')
  const cluster = makeCluster(kafka)
  await cluster.connect()
  try {
    await cluster.addTargetTopic(topic)
    await cluster.refreshMetadata()
    const byLeader = cluster.findLeaderForPartitions(topic, wanted.map(p => p.partition))
    const results = []
    for (const [nodeId, partitions] of Object.entries(byLeader)) {
      const broker = await cluster.findBroker({ nodeId })
      const response = await broker.fetch({
        maxWaitTime: args.maxWaitTime ?? 100,
        minBytes: args.minBytes ?? 1,
        maxBytes: args.maxBytes ?? 10485760,
        topics: [
          {
            topic,
            partitions: wanted
              .filter(p => partitions.includes(p.partition))
              .map(p => ({
                partition: p.partition,
                fetchOffset: String(p.fetchOffset ?? 0),
                maxBytes: p.maxBytes ?? 1048576,
              })),
          },
        ],
      })
      for (const { partitions: answered } of response.responses) {
        for (const p of answered) {
          results.push({
            partition: p.partition,
            errorCode: p.errorCode,
            highWatermark: p.highWatermark,
            lastStableOffset: p.lastStableOffset,
            logStartOffset: p.lastStartOffset,
            abortedTransactions: p.abortedTransactions,
            preferredReadReplica: p.preferredReadReplica,
            messages: p.messages.map(toRecord),
          })
        }
      }
    }
    return results.sort((a, b) => a.partition - b.partition)
  } finally {
    await cluster.disconnect().catch(() => {})
  }
}

const TOPIC = ConfigResourceTypes.TOPIC

// Admin commands: each takes the connected admin client and the arguments.
const ADMIN = {
  create_topics: createTopics,
  delete_topics: (admin, args) => admin.deleteTopics({ topics: required(args, 'topics') }),
  list_topics: admin => admin.listTopics(),
  fetch_topic_offsets: (admin, args) => admin.fetchTopicOffsets(required(args, 'topic')),
  fetch_topic_offsets_by_timestamp: (admin, args) =>
    admin.fetchTopicOffsetsByTimestamp(required(args, 'topic'), args.timestamp),
  describe_configs: (admin, args) =>
    admin.describeConfigs({
      resources: required(args, 'resources').map(r => ({ type: TOPIC, ...r })),
      includeSynonyms: Boolean(args.includeSynonyms),
    }),
  alter_configs: (admin, args) =>
    admin.alterConfigs({
      validateOnly: Boolean(args.validateOnly),
      resources: [
        {
          type: TOPIC,
          name: required(args, 'topic'),
          configEntries: required(args, 'configEntries'),
        },
      ],
    }),
  create_partitions: (admin, args) =>
    admin.createPartitions({
      topicPartitions: [{ topic: required(args, 'topic'), count: required(args, 'count') }],
    }),
  // kafkajs looks the partitions' leaders up in its metadata cache before it
  // loads anything, so the topic's metadata is fetched first.
  delete_records: async (admin, args) => {
    const topic = required(args, 'topic')
    await admin.fetchTopicMetadata({ topics: [topic] })
    return admin.deleteTopicRecords({ topic, partitions: required(args, 'partitions') })
  },
  fetch_metadata: (admin, args) => admin.fetchTopicMetadata({ topics: args.topics || [] }),
  describe_cluster: admin => admin.describeCluster(),
}

async function runAdmin(kafka, command, args) {
  const admin = kafka.admin({ retry: RETRY })
  await admin.connect()
  try {
    return await ADMIN[command](admin, args)
  } finally {
    await admin.disconnect().catch(() => {})
  }
}

const CLIENTS = { produce, produce_steps: produceSteps, consume, fetch: fetchRecords }
const COMMANDS = [...Object.keys(CLIENTS), ...Object.keys(ADMIN)]

function readStdin() {
  return require('fs').readFileSync(0, 'utf8')
}

function parseArgs(argv) {
  const [command, raw] = argv
  if (!command || !COMMANDS.includes(command)) {
    throw new UsageError(
      `usage: kafkajs_client.js <command> [<json-args> | -]; commands: ${COMMANDS.join(', ')}`
    )
  }
  const text = raw === undefined || raw === '-' ? readStdin() : raw
  let args
  try {
    args = JSON.parse(text)
  } catch (e) {
    throw new UsageError(`arguments are not valid JSON: ${e.message}`)
  }
  if (args === null || typeof args !== 'object' || Array.isArray(args)) {
    throw new UsageError('arguments must be a JSON object')
  }
  return { command, args }
}

// Everything the Python side may want to assert on, including the kafkajs
// error type (e.g. "TOPIC_ALREADY_EXISTS") and nested causes.
function describeError(e, depth = 0) {
  if (!(e instanceof Error) || depth > 5) return { message: String(e) }
  const out = { name: e.name, message: e.message }
  for (const field of ['type', 'code', 'retriable', 'host', 'port', 'topic', 'partition']) {
    if (e[field] !== undefined) out[field] = e[field]
  }
  if (e.originalError) out.cause = describeError(e.originalError, depth + 1)
  if (Array.isArray(e.errors)) out.errors = e.errors.map(x => describeError(x, depth + 1))
  return out
}

function exit(code, stream, text) {
  // Exit only once the output is flushed, whatever kind of stream it is.
  stream.write(text + '\n', () => process.exit(code))
}

async function main() {
  let command
  let args
  try {
    ;({ command, args } = parseArgs(process.argv.slice(2)))
    const kafka = makeKafka(args)
    const result = CLIENTS[command]
      ? await CLIENTS[command](kafka, args)
      : await runAdmin(kafka, command, args)
    exit(0, process.stdout, JSON.stringify(result === undefined ? null : result))
  } catch (e) {
    const code = e instanceof UsageError ? EXIT_USAGE : EXIT_ERROR
    exit(code, process.stderr, JSON.stringify({ error: describeError(e) }))
  }
}

main()
