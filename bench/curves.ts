// Issue 18's scale curves: how a figure grows along one axis (clients, room size,
// instances, connections, writers, portals). Each point of a curve is an ordinary
// workload of run.ts (its own name, measured like any other); a curve names which
// workloads are its points and which of their metrics it plots. charts.ts draws each
// curve as an SVG, and the report prints its table and its flatness check.
import type { TargetKey } from './targets.js'
import { channelWritesCurve } from './workloads/channel-writes.js'
import { fanoutInstancesCurve } from './workloads/fanout-instances.js'
import { fanoutRoomCurve } from './workloads/fanout-room.js'
import { memoryScaleCurve } from './workloads/memory-scale.js'
import { portalScaleCurve } from './workloads/portal-scale.js'
import { rpcClientsCurve } from './workloads/rpc-clients.js'

/** One line of a chart: the median of `<point's workload>:<metric>` for `target`. */
export interface CurveSeries {
  label: string
  target: TargetKey
  metric: string
  /** This series' own point workloads (e.g. the same curve on a Redis Cluster); the curve's points otherwise. */
  points?: CurvePoint[]
}

/** One point: its x and the workload (by name in run.ts) that measures it. */
export interface CurvePoint {
  x: number
  workload: string
  /** A metric of that workload holding the x actually reached (e.g. connections held, where the open-files limit caps it). */
  xMetric?: string
}

/**
 * The flatness check of issue 18: cost per unit (per connection, per member, per
 * message) stays within 1.3× from the smallest to the largest point. `metric` is read on
 * `target` at every point; `lowerIsBetter` says whether it is a cost (µs, bytes) or a rate.
 */
export interface Flatness {
  label: string
  target: TargetKey
  metric: string
  lowerIsBetter: boolean
  /** Where the curve is not flat by its nature (a knee), why; printed beside the check. */
  knee?: string
}

export interface Curve {
  /** File name of its chart: bench/charts/<id>.svg. */
  id: string
  /** The curve number (1–6), for order and headings. */
  number: number
  title: string
  x: { label: string; log?: boolean }
  y: { label: string; log?: boolean }
  points: CurvePoint[]
  series: CurveSeries[]
  /** A second chart of the same points (e.g. p99 beside round-trips/s), drawn below the first. */
  secondary?: { y: { label: string; log?: boolean }; series: CurveSeries[] }
  flatness?: Flatness[]
}

/** Every curve, in the order. Workload modules export their curve; it is listed here. */
export const curves: Curve[] = [rpcClientsCurve, fanoutRoomCurve, fanoutInstancesCurve, memoryScaleCurve, channelWritesCurve, portalScaleCurve]
