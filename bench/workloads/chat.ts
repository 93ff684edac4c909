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
// Both targets' instances run side by side (each target in its own namespace on the one
// Redis) and take turns: each turn sends for 0.5 s, then counts for 1 s, then drains; the
// order rotates every cycle, so that outside load on the shared cores reaches both alike.
// meshkit's ratio of a round is also given as the median of its per-cycle ratios.
//
// Beside it: replies per second in the window whether delivered yet or not (above the
// headline when a target acknowledges before delivering and a backlog builds), and the
// CPU time both servers used in the window per message counted (with a backlog, this
// includes work on messages accepted but not yet counted).
import { median, percentile, sleep, withTimeout, type BenchContext, type Metrics, type ServerProcess } from '../support.js'
import { connectMany, type BenchClient, type Target, type TargetKey } from '../targets.js'
import { withInstancePairs } from './fanout.js'

const CLIENTS = 200
const ROOM_SIZE = 50
/** Every turn of a target sends for this long before its window, and the first turn of each longer. */
const WARM_UP_MS = 500
const FIRST_WARM_UP_MS = 1_500
/** The measuring window of one turn; a round has chatSeconds of them per target. */
const TURN_MS = 1_000
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

/** What one turn measured inside its window. */
interface Turn {
  counted: number
  replies: number
  ms: number
  cpuMs: number
  latencies: number[]
}

const roomOf = (index: number): string => `chat-${Math.floor(index / ROOM_SIZE)}`

/**
 * Watches the clients of one target (all in their rooms) and returns its turns: each
 * sends from every client for `warmUpMs`, then measures for `windowMs`, then stops
 * sending and waits until every message is replied to and delivered, or fails.
 */
function chatSession(clients: readonly BenchClient[], servers: readonly ServerProcess[]) {
  const serversCpuMs = async (): Promise<number> => {
    const used = await Promise.all(servers.map((server) => server.control<{ cpuMs: number }>('cpu')))
    return used.reduce((sum, { cpuMs }) => sum + cpuMs, 0)
  }
  // Per sender, its messages still owed (a reply or a delivery), by seq; and its next seq.
  const open = clients.map(() => new Map<number, Message>())
  const nextSeq = clients.map(() => 0)
  // Per member, the next seq expected from each sender.
  const expected = clients.map(() => new Map<number, number>())
  const faults = { outOfOrder: 0, wrongRoom: 0, unknown: 0, dropped: 0 }
  let window = { from: Infinity, to: Infinity }
  let turn: Turn = { counted: 0, replies: 0, ms: 0, cpuMs: 0, latencies: [] }
  let drained: (() => void) | undefined
  let owed = 0
  const inWindow = (at: number): boolean => at >= window.from && at <= window.to

  const finish = (from: number, seq: number, message: Message): void => {
    const at = performance.now()
    open[from]!.delete(seq)
    if (inWindow(at)) turn.latencies.push(at - message.sentAt)
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

  return async (warmUpMs: number, windowMs: number): Promise<Turn> => {
    turn = { counted: 0, replies: 0, ms: windowMs, cpuMs: 0, latencies: [] }
    window = { from: Infinity, to: Infinity }
    let sending = true
    const sender = async (client: BenchClient, index: number): Promise<void> => {
      const room = roomOf(index)
      while (sending) {
        const seq = nextSeq[index]!++
        const message: Message = { sentAt: performance.now(), remaining: ROOM_SIZE, replied: false }
        open[index]!.set(seq, message)
        owed++
        const payload: ChatMessage = { room, from: index, seq, text: TEXT }
        const reply = await client.call('say', payload)
        if (reply !== true) throw new Error(`say answered ${JSON.stringify(reply)}`)
        message.replied = true
        if (inWindow(performance.now())) turn.replies++
        if (message.remaining === 0) finish(index, seq, message)
      }
    }
    const senders = Promise.all(clients.map(sender))
    // A failed request ends the run at once (the race), not after the window.
    const pause = (ms: number): Promise<unknown> => Promise.race([sleep(ms), senders])
    try {
      await pause(warmUpMs)
      turn.cpuMs = -(await serversCpuMs())
      const from = performance.now()
      window = { from, to: from + windowMs }
      await pause(windowMs)
      turn.cpuMs += await serversCpuMs()
    } finally {
      sending = false
    }
    await withTimeout(senders, DRAIN_MS, 'chat senders after the window')
    if (owed > 0) {
      await withTimeout(new Promise<void>((resolve) => (drained = resolve)), DRAIN_MS, `chat: ${owed} messages not delivered to all ${ROOM_SIZE} members`)
    }
    const problems = Object.entries(faults).filter(([, count]) => count > 0)
    if (problems.length > 0) throw new Error(`chat: ${problems.map(([fault, count]) => `${count} ${fault}`).join(', ')}`)
    turn.counted = turn.latencies.length
    return turn
  }
}

export function chat(chosen: readonly Target[], context: BenchContext): Promise<Partial<Record<TargetKey, Metrics>>> {
  return withInstancePairs(chosen, context, async (pairs, opened) => {
    const sessions: ReturnType<typeof chatSession>[] = []
    for (const [index, target] of chosen.entries()) {
      const pair = pairs[index]!
      const halves = [await connectMany(target, pair[0].port, CLIENTS / 2), await connectMany(target, pair[1].port, CLIENTS / 2)]
      // Alternate instances, so that each room of 50 consecutive clients has 25 on each.
      const clients = Array.from({ length: CLIENTS }, (_, at) => halves[at % 2]![Math.floor(at / 2)]!)
      opened.push(...clients)
      await Promise.all(clients.map((client, at) => client.call('join', roomOf(at))))
      sessions.push(chatSession(clients, pair))
    }
    for (const session of sessions) await session(FIRST_WARM_UP_MS, 0)
    const turns: Turn[][] = chosen.map(() => [])
    const cycles = Math.max(1, Math.round((context.config.chatSeconds * 1000) / TURN_MS))
    for (let cycle = 0; cycle < cycles; cycle++) {
      for (let step = 0; step < chosen.length; step++) {
        const index = (cycle + step) % chosen.length
        turns[index]!.push(await sessions[index]!(WARM_UP_MS, TURN_MS))
      }
    }
    const results: Partial<Record<TargetKey, Metrics>> = {}
    for (const [index, target] of chosen.entries()) {
      const sum = (pick: (turn: Turn) => number): number => turns[index]!.reduce((total, turn) => total + pick(turn), 0)
      const seconds = sum((turn) => turn.ms) / 1000
      const counted = sum((turn) => turn.counted)
      const latencies = turns[index]!.flatMap((turn) => turn.latencies).sort((a, b) => a - b)
      results[target.key] = {
        messagesPerSecond: counted / seconds,
        deliveriesPerSecond: (counted * ROOM_SIZE) / seconds,
        repliesPerSecond: sum((turn) => turn.replies) / seconds,
        p50: percentile(latencies, 50),
        p99: percentile(latencies, 99),
        serverCpuUs: (sum((turn) => turn.cpuMs) * 1000) / counted,
      }
    }
    const meshAt = chosen.findIndex((target) => target.key === 'mesh')
    const sioAt = chosen.findIndex((target) => target.key === 'sio')
    if (meshAt >= 0 && sioAt >= 0) {
      results.mesh!.overSio = median(turns[meshAt]!.map((turn, cycle) => turn.counted / turns[sioAt]![cycle]!.counted))
    }
    return results
  })
}
