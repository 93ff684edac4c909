// 8. Chat (issue 11): 200 clients on two instances of one target on Redis, in 4 rooms of
// 50 with each room's members split evenly over both instances. Every client sends chat
// messages as a request (`say` with { room, from, seq, text }) and awaits the reply before
// its next, so 200 messages are in flight at most, one per client, as a user's client
// would send them. meshkit's `say` handler awaits broadcastRoom to the room before it
// replies; Socket.IO's emits to the room with `io.to(room).emit` (nothing to await) and
// acknowledges. Each message goes to all 50 members, its sender included.
//
// The headline counts a message when its reply has arrived AND all 50 members have
// received it, at the moment the later of those happened, inside a fixed window after a
// warm-up: a target that acknowledges before delivering cannot count deliveries it still
// owes. After the window, every message sent must be fully delivered within 30 s (or the
// run fails), each member must see each sender's messages in order with none missing or
// doubled, and no message may reach a member of another room.
//
// Beside it: replies per second in the window whether delivered yet or not (above the
// headline when a target acknowledges before delivering and a backlog builds), and the
// CPU time both servers used in the window per message counted (with a backlog, this
// includes work on messages accepted but not yet counted).
import { percentile, sleep, withServers, withTimeout, type BenchContext, type Metrics, type ServerProcess } from '../support.js'
import { closeAll, connectMany, type BenchClient, type Target } from '../targets.js'

const CLIENTS = 200
const ROOM_SIZE = 50
const WARM_UP_MS = 1_000
const DRAIN_MS = 30_000
const TEXT = 'hello everyone, this is a chat message'

interface Message {
  readonly sentAt: number
  remaining: number
  replied: boolean
}

interface ChatMessage {
  room: string
  from: number
  seq: number
  text: string
}

const roomOf = (index: number): string => `chat-${Math.floor(index / ROOM_SIZE)}`

async function measure(clients: readonly BenchClient[], servers: readonly ServerProcess[], seconds: number): Promise<Metrics> {
  const serversCpuMs = async (): Promise<number> => {
    const used = await Promise.all(servers.map((server) => server.control<{ cpuMs: number }>('cpu')))
    return used.reduce((sum, { cpuMs }) => sum + cpuMs, 0)
  }
  // Per sender, its messages still owed (a reply or a delivery), by seq.
  const open = clients.map(() => new Map<number, Message>())
  // Per member, the next seq expected from each sender.
  const expected = clients.map(() => new Map<number, number>())
  const faults = { outOfOrder: 0, wrongRoom: 0, unknown: 0, dropped: 0 }
  let window = { from: Infinity, to: Infinity }
  const latencies: number[] = []
  let drained: (() => void) | undefined
  let owed = 0
  let replies = 0

  const finish = (from: number, seq: number, message: Message): void => {
    const at = performance.now()
    open[from]!.delete(seq)
    if (at >= window.from && at <= window.to) latencies.push(at - message.sentAt)
    if (--owed === 0) drained?.()
  }
  clients.forEach((client, index) => {
    client.onDrop(() => faults.dropped++)
    client.on('chat', (data: ChatMessage) => {
      if (data.room !== roomOf(index) || roomOf(data.from) !== data.room) return void faults.wrongRoom++
      const next = expected[index]!.get(data.from) ?? 0
      if (data.seq !== next) faults.outOfOrder++
      expected[index]!.set(data.from, data.seq + 1)
      const message = open[data.from]?.get(data.seq)
      if (!message || message.remaining === 0) return void faults.unknown++
      if (--message.remaining === 0 && message.replied) finish(data.from, data.seq, message)
    })
  })

  let sending = true
  const sender = async (client: BenchClient, index: number): Promise<void> => {
    const room = roomOf(index)
    for (let seq = 0; sending; seq++) {
      const message: Message = { sentAt: performance.now(), remaining: ROOM_SIZE, replied: false }
      open[index]!.set(seq, message)
      owed++
      const payload: ChatMessage = { room, from: index, seq, text: TEXT }
      const reply = await client.call('say', payload)
      if (reply !== true) throw new Error(`say answered ${JSON.stringify(reply)}`)
      message.replied = true
      const at = performance.now()
      if (at >= window.from && at <= window.to) replies++
      if (message.remaining === 0) finish(index, seq, message)
    }
  }
  const senders = Promise.all(clients.map(sender))
  // A failed request ends the run at once (the race), not after the window.
  const pause = (ms: number): Promise<unknown> => Promise.race([sleep(ms), senders])
  let cpuMs = 0
  try {
    await pause(WARM_UP_MS)
    cpuMs = -(await serversCpuMs())
    const from = performance.now()
    window = { from, to: from + seconds * 1000 }
    await pause(seconds * 1000)
    cpuMs += await serversCpuMs()
  } finally {
    sending = false
  }
  const measured = window.to - window.from
  await withTimeout(senders, DRAIN_MS, 'chat senders after the window')
  if (owed > 0) {
    await withTimeout(new Promise<void>((resolve) => (drained = resolve)), DRAIN_MS, `chat: ${owed} messages not delivered to all ${ROOM_SIZE} members`)
  }
  const problems = Object.entries(faults).filter(([, count]) => count > 0)
  if (problems.length > 0) throw new Error(`chat: ${problems.map(([fault, count]) => `${count} ${fault}`).join(', ')}`)
  latencies.sort((a, b) => a - b)
  const messagesPerSecond = latencies.length / (measured / 1000)
  return {
    messagesPerSecond,
    deliveriesPerSecond: messagesPerSecond * ROOM_SIZE,
    repliesPerSecond: replies / (measured / 1000),
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    serverCpuUs: (cpuMs * 1000) / latencies.length,
  }
}

export async function chat(target: Target, context: BenchContext): Promise<Metrics> {
  const env = { BENCH_REDIS_URL: context.redisUrl, BENCH_NAMESPACE: context.namespace() }
  return withServers([{ script: target.script, env }, { script: target.script, env }], async (servers) => {
    const [first, second] = servers
    const halves = [await connectMany(target, first!.port, CLIENTS / 2), await connectMany(target, second!.port, CLIENTS / 2)]
    // Alternate instances, so that each room of 50 consecutive clients has 25 on each.
    const clients = Array.from({ length: CLIENTS }, (_, index) => halves[index % 2]![Math.floor(index / 2)]!)
    try {
      await Promise.all(clients.map((client, index) => client.call('join', roomOf(index))))
      return await measure(clients, servers, context.config.chatSeconds)
    } finally {
      await closeAll(clients)
    }
  })
}
