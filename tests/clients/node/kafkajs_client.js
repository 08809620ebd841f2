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
// `clientId`, `logLevel` (kafkajs' level name, ERROR unless given),
// `connectionTimeout`, `requestTimeout` (ms), `ssl` ({ca: a PEM
// file of CAs to trust, and for mutual TLS cert and key: the client's PEM
// files}) and `sasl` (kafkajs' own: {mechanism, username, password}; for
// mechanism "oauthbearer", {mechanism, token}: the token its
// oauthBearerProvider returns).
//
// On success exactly one JSON document is printed on stdout (group_consume
// prints its events before it, a line each) and the exit status is 0; calls
// that return nothing in kafkajs print `null`. Values are kafkajs' own, so
// 64-bit numbers (offsets, timestamps) stay strings. Bytes (keys, values,
// header values) travel as base64 strings, with JSON null for a null key or
// value.
//
// On failure the exit status is 1 (2 for a usage error) and the last line on
// stderr is a JSON object {"error": {name, message, type, code, ...}}; any
// earlier stderr lines are kafkajs' own error log.
//
//   node kafkajs_client.js serve
//
// runs calls one after another in one process, which spares each call node's
// start (a second or more on a loaded machine): each line on stdin is a JSON
// object {command, args}, and each answer is one line on stdout, either
// {result} or {error, usage, log}, where `usage` is true for a usage error
// and `log` is what the call would have written on stderr, its kafkajs error
// log. Each call makes its own Kafka client, as a process of its own would.
// Commands that read stdin themselves (produce_steps, group_consume with
// untilStdin) are usage errors there. The process ends when stdin closes.
//
// Four commands go beyond one call of kafkajs' public API:
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
// - group_consume runs one member of a consumer group and streams its events
//   (joins with their assignments, records, commits), one JSON line each, as
//   they happen; the last line is its result. With `untilStdin` it runs until
//   a line arrives on stdin, so its arguments must be given on the command
//   line. See groupConsume below.
//
// The group consumers (consume, group_consume) take kafkajs' group options
// (`sessionTimeout`, `rebalanceTimeout`, `heartbeatInterval`,
// `maxWaitTimeInMs`) and `assigners`, in order of preference: "roundRobin"
// (kafkajs' own, the default, protocol name "RoundRobinAssigner") or "range",
// the driver's implementation of Kafka's range assignor, which Java and
// librdkafka consumers speak too.
'use strict'

const {
  Kafka,
  logLevel,
  AssignerProtocol,
  CompressionTypes,
  ConfigResourceTypes,
  PartitionAssigners,
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
// In serve mode a call's lines are kept for its answer instead.
let callLog = null

function logLine(text) {
  if (callLog === null) process.stderr.write(text + '\n')
  else callLog.push(text)
}

const stderrLogCreator = () => ({ namespace, label, log }) => {
  const prefix = namespace ? `[${namespace}] ` : ''
  logLine(`kafkajs ${label}: ${JSON.stringify({ ...log, message: prefix + log.message })}`)
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

// kafkajs passes `ssl` to node's tls.connect: the CAs to trust and, for
// mutual TLS, the client's certificate and key (PEM files).
function tlsOptions(ssl) {
  const read = path => require('fs').readFileSync(path, 'utf8')
  const options = { ca: [read(required(ssl, 'ca'))] }
  if (ssl.cert) options.cert = read(ssl.cert)
  if (ssl.key) options.key = read(ssl.key)
  return options
}

function makeKafka(args) {
  const brokers = required(args, 'brokers')
  return new Kafka({
    clientId: args.clientId || 'tidelog-tests',
    brokers: Array.isArray(brokers) ? brokers : [brokers],
    logLevel: args.logLevel ? logLevel[args.logLevel] : logLevel.ERROR,
    logCreator: stderrLogCreator,
    retry: RETRY,
    connectionTimeout: args.connectionTimeout ?? 1000,
    requestTimeout: args.requestTimeout ?? 10000,
    ssl: args.ssl ? tlsOptions(args.ssl) : undefined,
    sasl: args.sasl ? saslOptions(args.sasl) : undefined,
  })
}

function saslOptions(sasl) {
  if (sasl.mechanism !== 'oauthbearer') return sasl
  const token = required(sasl, 'token')
  return { mechanism: 'oauthbearer', oauthBearerProvider: async () => ({ value: token }) }
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
// The wrapper is put in once, so that calls in one serve process do not
// stack wrappers; each call gets a list of its own.
let createTopicsErrors = null

function recordCreateTopicsErrors() {
  const Broker = require('kafkajs/src/broker')
  if (createTopicsErrors === null) {
    const original = Broker.prototype.createTopics
    Broker.prototype.createTopics = async function (...callArgs) {
      try {
        return await original.apply(this, callArgs)
      } catch (e) {
        if (Array.isArray(e.errors) && createTopicsErrors !== null) createTopicsErrors.push(...e.errors)
        throw e
      }
    }
  }
  createTopicsErrors = []
  return createTopicsErrors
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

// Kafka's RangeAssignor (org.apache.kafka.clients.consumer.RangeAssignor),
// under its protocol name "range", so that a kafkajs member can share a group
// with Java and librdkafka consumers, which offer "range" by default. Member
// metadata and assignments are Kafka's ConsumerProtocol encodings at version 0
// (kafkajs' AssignerProtocol): later versions only append fields, which a
// version 0 reader skips, so the leader reads every member's subscription.
//
// Per topic, the members subscribed to it are sorted (static members by
// group.instance.id first, then the others by member id) and each takes a
// contiguous range of the partitions in that order; the first
// `partitions % members` take one partition more.
const RangeAssigner = ({ cluster }) => ({
  name: 'range',
  version: 0,

  async assign({ members }) {
    const subscriptions = members.map(({ memberId, groupInstanceId, memberMetadata }) => ({
      memberId,
      groupInstanceId: groupInstanceId || null,
      topics: AssignerProtocol.MemberMetadata.decode(memberMetadata).topics,
    }))
    const topics = [...new Set(subscriptions.flatMap(s => s.topics))].sort()
    // The leader's metadata must cover the other members' topics too.
    await cluster.addMultipleTargetTopics(topics)
    const assignment = new Map(members.map(({ memberId }) => [memberId, {}]))
    for (const topic of topics) {
      const consumers = subscriptions.filter(s => s.topics.includes(topic)).sort(compareMembers)
      const partitions = cluster
        .findTopicPartitionMetadata(topic)
        .map(p => p.partitionId)
        .sort((a, b) => a - b)
      const perConsumer = Math.floor(partitions.length / consumers.length)
      const withExtra = partitions.length % consumers.length
      consumers.forEach(({ memberId }, i) => {
        const start = perConsumer * i + Math.min(i, withExtra)
        const length = perConsumer + (i < withExtra ? 1 : 0)
        if (length > 0) assignment.get(memberId)[topic] = partitions.slice(start, start + length)
      })
    }
    return [...assignment].map(([memberId, topicPartitions]) => ({
      memberId,
      memberAssignment: AssignerProtocol.MemberAssignment.encode({
        version: this.version,
        assignment: topicPartitions,
      }),
    }))
  },

  protocol({ topics }) {
    return {
      name: this.name,
      metadata: AssignerProtocol.MemberMetadata.encode({ version: this.version, topics }),
    }
  },
})

// Kafka's order of members for assignment (ConsumerProtocol's MemberInfo).
function compareMembers(a, b) {
  const byString = (x, y) => (x < y ? -1 : x > y ? 1 : 0)
  if (a.groupInstanceId !== null && b.groupInstanceId !== null) {
    return byString(a.groupInstanceId, b.groupInstanceId)
  }
  if (a.groupInstanceId !== null) return -1
  if (b.groupInstanceId !== null) return 1
  return byString(a.memberId, b.memberId)
}

const ASSIGNERS = { range: RangeAssigner, roundRobin: PartitionAssigners.roundRobin }
const GROUP_OPTIONS = ['sessionTimeout', 'rebalanceTimeout', 'heartbeatInterval', 'maxWaitTimeInMs']

// A group consumer with the group options the arguments give: `groupId`;
// `assigners`, names from ASSIGNERS in order of preference (default
// ["roundRobin"], kafkajs' own); `sessionTimeout`, `rebalanceTimeout`,
// `heartbeatInterval` and `maxWaitTimeInMs` (ms, kafkajs' defaults if unset).
function makeConsumer(kafka, args) {
  const assigners = (args.assigners || ['roundRobin']).map(name => {
    if (ASSIGNERS[name] === undefined) throw new UsageError(`unknown assigner: ${name}`)
    return ASSIGNERS[name]
  })
  const options = {
    groupId: required(args, 'groupId'),
    partitionAssigners: assigners,
    retry: RETRY,
  }
  for (const name of GROUP_OPTIONS) {
    if (args[name] !== undefined) options[name] = args[name]
  }
  return kafka.consumer(options)
}

// Runs a group consumer until `count` messages have arrived or `timeoutMs`
// has passed. On timeout it prints what did arrive, unless the consumer
// crashed meanwhile, in which case the crash is the reported failure.
async function consume(kafka, args) {
  const topic = required(args, 'topic')
  const count = required(args, 'count')
  const timeoutMs = args.timeoutMs ?? 30000
  if (count <= 0) return []
  const consumer = makeConsumer(kafka, args)
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
      logLine(`consume: timed out with ${received.length} of ${count} messages`)
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
      // are committed for the group, not the rest of the last batch; kafkajs
      // commits the resolved offsets after each batch.
      eachBatchAutoResolve: false,
      eachBatch: async ({ batch, resolveOffset, heartbeat, isRunning, isStale }) => {
        for (const message of batch.messages) {
          if (received.length >= count || !isRunning() || isStale()) break
          received.push({ partition: batch.partition, ...toRecord(message) })
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
    await consumer.disconnect().catch(() => {})
  }
}

// The generation of the group this process's consumer last synced with, as
// kafkajs sent it in SyncGroup (its consumer does not expose it otherwise).
function recordGeneration() {
  const Broker = require('kafkajs/src/broker')
  const original = Broker.prototype.syncGroup
  const state = { generation: null }
  Broker.prototype.syncGroup = async function (request) {
    const response = await original.call(this, request)
    state.generation = request.generationId
    return response
  }
  return state
}

// A group member that streams what happens to it, one JSON line per event
// on stdout:
//   {event: "join", generation, memberId, leaderId, isLeader, groupProtocol, assignment}
//   {event: "record", generation, topic, partition, offset, key, value, headers, timestamp}
//   {event: "commit", generation, topics: [{topic, partitions: [{partition, offset}]}]}
//   {event: "crash", error, restart}
// It processes each message in eachBatch, then resolves its offset and
// commits it before the next (commitOffsetsIfNecessary with an auto-commit
// threshold of one); on a rebalance, kafkajs commits the resolved offsets
// before it rejoins. It leaves the rest of a batch if the member has synced
// another generation since the batch began: its partitions may have moved.
// It stops after `count` records (if given), when a line (or the end)
// arrives on stdin with `untilStdin`, or after `timeoutMs`; then it leaves the
// group, and its result is the last line: {event: "end", reason, records}.
async function groupConsume(kafka, args) {
  const topics = args.topics || [required(args, 'topic')]
  const timeoutMs = args.timeoutMs ?? 30000
  const group = recordGeneration()
  const consumer = makeConsumer(kafka, args)
  const emit = event => process.stdout.write(JSON.stringify(event) + '\n')
  let records = 0
  let stopping = false

  let finish
  let fail
  const done = new Promise((resolve, reject) => {
    finish = reason => {
      stopping = true
      resolve(reason)
    }
    fail = reject
  })
  done.catch(() => {})
  const timer = setTimeout(() => finish('timeout'), timeoutMs)
  if (args.untilStdin) {
    const lines = require('readline').createInterface({ input: process.stdin })
    lines.once('line', () => finish('stdin'))
    lines.once('close', () => finish('stdin'))
  }

  const { GROUP_JOIN, COMMIT_OFFSETS, CRASH } = consumer.events
  consumer.on(GROUP_JOIN, ({ payload }) =>
    emit({
      event: 'join',
      generation: group.generation,
      memberId: payload.memberId,
      leaderId: payload.leaderId,
      isLeader: payload.isLeader,
      groupProtocol: payload.groupProtocol,
      assignment: payload.memberAssignment,
    })
  )
  consumer.on(COMMIT_OFFSETS, ({ payload }) =>
    emit({ event: 'commit', generation: payload.groupGenerationId, topics: payload.topics })
  )
  consumer.on(CRASH, ({ payload }) => {
    emit({ event: 'crash', error: describeError(payload.error), restart: payload.restart })
    if (!payload.restart) fail(payload.error)
  })

  try {
    await consumer.connect()
    await consumer.subscribe({ topics, fromBeginning: args.fromBeginning ?? true })
    await consumer.run({
      eachBatchAutoResolve: false,
      autoCommit: true,
      autoCommitThreshold: 1,
      eachBatch: async ({
        batch,
        resolveOffset,
        commitOffsetsIfNecessary,
        heartbeat,
        isRunning,
        isStale,
      }) => {
        const generation = group.generation
        for (const message of batch.messages) {
          if (stopping || !isRunning() || isStale() || group.generation !== generation) break
          emit({
            event: 'record',
            generation,
            topic: batch.topic,
            partition: batch.partition,
            ...toRecord(message),
          })
          records += 1
          resolveOffset(message.offset)
          await commitOffsetsIfNecessary()
          if (args.count !== undefined && records >= args.count) finish('count')
          await heartbeat()
        }
      },
    })
    const reason = await done
    return { event: 'end', reason, records }
  } finally {
    clearTimeout(timer)
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
  fetch_offsets: (admin, args) =>
    admin.fetchOffsets({ groupId: required(args, 'groupId'), topics: args.topics }),
  describe_groups: (admin, args) => admin.describeGroups(required(args, 'groupIds')),
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

// Transactions one after another through one transactional producer:
// each step sends its messages, and commits offsets of a group if given,
// then commits or aborts.
async function transactions(kafka, args) {
  const topic = required(args, 'topic')
  const producer = kafka.producer({
    transactionalId: required(args, 'transactionalId'),
    idempotent: true,
    maxInFlightRequests: 1,
    createPartitioner: Partitioners.DefaultPartitioner,
    retry: RETRY,
  })
  await producer.connect()
  try {
    for (const step of required(args, 'steps')) {
      const transaction = await producer.transaction()
      await transaction.send({ topic, messages: step.messages.map(toKafkajsMessage), acks: -1 })
      if (step.offsets) {
        await transaction.sendOffsets({
          consumerGroupId: required(args, 'groupId'),
          topics: [{ topic, partitions: step.offsets }],
        })
      }
      await (step.commit ? transaction.commit() : transaction.abort())
    }
    return null
  } finally {
    await producer.disconnect().catch(() => {})
  }
}

const CLIENTS = {
  transactions,
  produce,
  produce_steps: produceSteps,
  consume,
  group_consume: groupConsume,
  fetch: fetchRecords,
}
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
  return { command, args: checkArgs(args) }
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

function checkArgs(args) {
  if (args === null || typeof args !== 'object' || Array.isArray(args)) {
    throw new UsageError('arguments must be a JSON object')
  }
  return args
}

async function run(command, args) {
  const kafka = makeKafka(args)
  const result = CLIENTS[command]
    ? await CLIENTS[command](kafka, args)
    : await runAdmin(kafka, command, args)
  return result === undefined ? null : result
}

// Commands that read stdin themselves, which serve mode owns.
function readsStdin(command, args) {
  return command === 'produce_steps' || (command === 'group_consume' && args.untilStdin)
}

async function serveOne(line) {
  callLog = []
  try {
    let request
    try {
      request = JSON.parse(line)
    } catch (e) {
      throw new UsageError(`the call is not valid JSON: ${e.message}`)
    }
    const { command } = request
    const args = checkArgs(request.args)
    if (!COMMANDS.includes(command) || readsStdin(command, args)) {
      throw new UsageError(`not a command for serve: ${command}`)
    }
    return { result: await run(command, args) }
  } catch (e) {
    return { error: describeError(e), usage: e instanceof UsageError, log: callLog.join('\n') }
  } finally {
    callLog = null
  }
}

async function serve() {
  const lines = require('readline').createInterface({ input: process.stdin })
  for await (const line of lines) {
    const answer = await serveOne(line)
    await new Promise(resolve => process.stdout.write(JSON.stringify(answer) + '\n', resolve))
  }
}

async function main() {
  if (process.argv[2] === 'serve' && process.argv.length === 3) return serve()
  let command
  let args
  try {
    ;({ command, args } = parseArgs(process.argv.slice(2)))
    exit(0, process.stdout, JSON.stringify(await run(command, args)))
  } catch (e) {
    const code = e instanceof UsageError ? EXIT_USAGE : EXIT_ERROR
    exit(code, process.stderr, JSON.stringify({ error: describeError(e) }))
  }
}

main()
