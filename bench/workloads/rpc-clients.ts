// Curve 1 (issue 18): workload 1's RPC as concurrent clients grow, 10, 100 and 1,000
// clients with 10 awaited calls in flight each, the three targets interleaved in slices
// as workload 1 measures them (see rpc.ts), for half of workload 1's time (three points
// must fit in the run's budget). A slice lasts a few round trips of its point: 1,000
// clients keep 10,000 calls outstanding, a few hundred ms of queue on two cores, so
// their slices are 1 s rather than 0.5 s, or most calls of a slice would be its first
// burst and its drain.
import type { Curve } from '../curves.js'
import type { BenchContext } from '../support.js'
import type { Target } from '../targets.js'
import { rpcWith } from './rpc.js'

export const CLIENT_POINTS = [10, 100, 1_000] as const

/** The point workload of `clients` clients. */
export const rpcClients = (clients: number) => (chosen: readonly Target[], context: BenchContext) =>
  rpcWith(clients, clients >= 1_000 ? 1_000 : 500)(chosen, { ...context, config: { ...context.config, rpcSeconds: context.config.rpcSeconds / 2 } })

const series = (metric: string) => [
  { label: 'raw ws', target: 'raw', metric },
  { label: 'Socket.IO', target: 'sio', metric },
  { label: 'meshkit', target: 'mesh', metric },
] as const

export const rpcClientsCurve: Curve = {
  id: 'rpc-clients',
  number: 1,
  title: 'RPC as concurrent clients grow (10 awaited calls in flight each)',
  x: { label: 'clients', log: true },
  y: { label: 'round-trips/s' },
  points: CLIENT_POINTS.map((clients) => ({ x: clients, workload: `rpcClients${clients}` })),
  series: [...series('rps')],
  secondary: { y: { label: 'p99 ms', log: true }, series: [...series('p99')] },
  flatness: [{
    label: 'meshkit server CPU µs per round trip',
    target: 'mesh',
    metric: 'serverCpuUs',
    lowerIsBetter: true,
    knee: 'No point is dearest in every run: on the shared cores this figure moved up to 1.8× between runs at one ' +
      'point (meshkit, two runs: 18.0, 7.7, 9.8 µs and 10.2, 10.8, 13.5 µs at 10, 100, 1,000 clients). At 10 clients ' +
      'the server waits for the load process more often (/proc counters: 0.054–0.058 sleeps per call, against ' +
      '0.004–0.026 at 1,000), so a wake-up serves fewer calls; at 1,000, reads and writes per call stay at 0.10–0.12 (one of each ' +
      'per 10 calls of a client) and CPU profiles at 100 and 1,000 look alike (writev 12–19 %, GC 5–8 %). ' +
      'What falls at 1,000 is the lead of meshkit in round-trips/s, in the load process: GC is 45 % of its profile ' +
      'there (10,000 calls outstanding outlive scavenges) against 17.5 % at 100.',
  }],
}
