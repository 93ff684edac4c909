// The scale curves in words: per curve its charts, its medians by x and series, and its
// flatness checks (issue 18: cost per unit within 1.3× from the smallest to the largest
// point, or the knee explained). charts.ts draws from the same medians.
import type { Curve, CurvePoint, CurveSeries, Flatness } from './curves.js'
import type { Samples } from './report.js'
import { markdownTable, median } from './support.js'
import { targets, type TargetKey } from './targets.js'

/** The flatness target of issue 18. */
export const FLAT = 1.3

export interface CurveValue {
  x: number
  value: number
}

const number = (value: number): string =>
  Math.abs(value) >= 100 || Number.isInteger(value) ? Math.round(value).toLocaleString('en-US') : value.toFixed(2)

function medianOf(samples: Samples, key: string, target: TargetKey): number | undefined {
  const values = samples.get(key)?.[target]
  return values && values.length > 0 ? median(values) : undefined
}

/** One point's x and value for `target` and `metric`: undefined where it has no samples (not run, or failed). */
function pointValue(point: CurvePoint, target: TargetKey, metric: string, samples: Samples): CurveValue | undefined {
  const value = medianOf(samples, `${point.workload}:${metric}`, target)
  const x = point.xMetric ? medianOf(samples, `${point.workload}:${point.xMetric}`, target) : point.x
  return value === undefined || x === undefined ? undefined : { x, value }
}

/** A series' medians across rounds at each of its points, in order; points without samples are left out. */
export function seriesValues(curve: Curve, series: CurveSeries, samples: Samples): CurveValue[] {
  return (series.points ?? curve.points).flatMap((point) => pointValue(point, series.target, series.metric, samples) ?? [])
}

/** Whether any point of the curve was measured (a curve of an --only run that skipped it has no chart). */
export function measured(curve: Curve, samples: Samples): boolean {
  return [...curve.series, ...(curve.secondary?.series ?? [])].some((series) => seriesValues(curve, series, samples).length > 0)
}

/** The chart files of a curve: `<id>.svg`, and `<id>-2.svg` for its secondary chart. */
export function chartFiles(curve: Curve): string[] {
  return [`${curve.id}.svg`, ...(curve.secondary ? [`${curve.id}-2.svg`] : [])]
}

interface FlatnessResult {
  smallest?: CurveValue
  largest?: CurveValue
  /** Cost at the largest point over the smallest, or rate at the smallest over the largest: above 1 is worse. */
  ratio?: number
  met?: boolean
}

/** The check over the curve's own smallest and largest points: if either has no samples, it is not measured. */
export function flatness(curve: Curve, check: Flatness, samples: Samples): FlatnessResult {
  const ownPoints = curve.series.find((series) => series.target === check.target && series.metric === check.metric)?.points
  const points = ownPoints ?? curve.points
  const smallest = pointValue(points[0]!, check.target, check.metric, samples)
  const largest = pointValue(points[points.length - 1]!, check.target, check.metric, samples)
  if (!smallest || !largest) return { smallest, largest }
  const ratio = check.lowerIsBetter ? largest.value / smallest.value : smallest.value / largest.value
  return { smallest, largest, ratio, met: ratio <= FLAT }
}

function valuesTable(curve: Curve, label: string, series: readonly CurveSeries[], samples: Samples): string {
  const columns = series.map((one) => new Map(seriesValues(curve, one, samples).map(({ x, value }) => [x, value])))
  const xs = [...new Set(columns.flatMap((column) => [...column.keys()]))].sort((a, b) => a - b)
  const body = xs.map((x) => [number(x), ...columns.map((column) => (column.has(x) ? number(column.get(x)!) : '—'))])
  return markdownTable([`${curve.x.label} \\ ${label}`, ...series.map((one) => one.label)], body)
}

function flatnessTable(rows: readonly { curve: Curve; check: Flatness }[], samples: Samples, withCurve: boolean): string {
  const at = (point: CurveValue | undefined): string => (point ? `${number(point.value)} at ${number(point.x)}` : 'not measured')
  const body = rows.map(({ curve, check }) => {
    const { smallest, largest, ratio, met } = flatness(curve, check, samples)
    const direction = check.lowerIsBetter ? 'largest / smallest' : 'smallest / largest'
    return [
      ...(withCurve ? [`${curve.number}. ${curve.title}`] : []),
      `${check.label} (${targets[check.target].label})`,
      at(smallest),
      at(largest),
      ratio === undefined ? '—' : `${ratio.toFixed(2)}× (${direction})`,
      `≤${FLAT}×`,
      met === undefined ? 'not measured' : !met ? '**NO**' : ratio! < 1 / FLAT ? 'yes (better at the largest point)' : 'yes',
    ]
  })
  return markdownTable([...(withCurve ? ['curve'] : []), 'flatness of', 'smallest point', 'largest point', 'ratio', 'target', 'met?'], body)
}

/** A curve's knee texts, each once: checks that share one explanation are named together. */
function knees(curve: Curve): string[] {
  const labels = new Map<string, string[]>()
  for (const check of curve.flatness ?? []) if (check.knee) labels.set(check.knee, [...(labels.get(check.knee) ?? []), check.label])
  return [...labels].map(([knee, named]) => `Knee (${named.join('; ')}): ${knee}`)
}

/** results.md's "Scale curves" section; `chartsPath` is the charts' folder as seen from results.md. */
export function curvesMarkdown(curves: readonly Curve[], samples: Samples, chartsPath: string): string {
  const sections = curves.map((curve) => {
    const heading = `### ${curve.number}. ${curve.title}`
    if (!measured(curve, samples)) return `${heading}\n\nNot measured in this run.`
    const images = chartFiles(curve).map((file) => `![${curve.title}](${chartsPath}/${file})`).join('\n')
    const tables = [valuesTable(curve, curve.y.label, curve.series, samples)]
    if (curve.secondary) tables.push(valuesTable(curve, curve.secondary.y.label, curve.secondary.series, samples))
    const checks = curve.flatness?.length
      ? [flatnessTable(curve.flatness.map((check) => ({ curve, check })), samples, false), ...knees(curve)]
      : []
    return [heading, images, ...tables, ...checks].join('\n\n')
  })
  return `## Scale curves

Each point is a workload of its own (above, in "Every round"); values are medians across the rounds that
measured it, a point without samples (not run, or failed) is left out. Flatness (issue 18): the cost per unit
at the largest point over the smallest (or the rate at the smallest over the largest) stays within ${FLAT}×.

${sections.join('\n\n')}
`
}

export interface ReadmeRecord {
  curves: readonly Curve[]
  command: string
  machine: string
  revision: string
  date: string
  samples: Samples
  /** The charts' folder as seen from the README: bench/charts after a full run. */
  charts: string
}

/** The scale curves' part of the README's benchmark section: the charts, the machine and command, the flatness checks. */
export function readmeCurvesMarkdown({ curves, command, machine, revision, date, samples, charts }: ReadmeRecord): string {
  const shown = curves.filter((curve) => measured(curve, samples))
  const images = shown.map((curve) =>
    `**${curve.number}. ${curve.title}**\n\n${chartFiles(curve).map((file) => `![${curve.title}](${charts}/${file})`).join('\n')}`)
  const checks = shown.flatMap((curve) => (curve.flatness ?? []).map((check) => ({ curve, check })))
  return `### How cost grows

\`${command}\` on ${machine}, ${date}, ${revision}; values are medians across rounds, and
\`bench/results.md\` has every figure and how each point is measured.

${images.join('\n\n')}

${flatnessTable(checks, samples, true)}
${shown.flatMap(knees).map((knee) => `\n${knee}`).join('\n')}
`
}
