// The scale curves as SVG charts, drawn by Apache ECharts' server-side renderer (pure
// JavaScript, no canvas or native module). A curve with a secondary chart (say p99 beside
// round-trips/s) gets a second file, <id>-2.svg, rather than a second grid in one file:
// each chart keeps a readable size where GitHub scales images to the page's width, and
// each has its own legend and axis names next to its lines.
import { mkdirSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { chartFiles, measured, seriesValues } from './curve-report.js'
import type { Curve, CurveSeries } from './curves.js'
import type { Samples } from './report.js'
import type { TargetKey } from './targets.js'

// The one-file build (what require() resolves to): its ES modules are hundreds of files,
// seconds to load on busy cores, where this takes a fraction of one.
const echarts = createRequire(import.meta.url)('echarts') as typeof import('echarts')

/** What the subtitle says about the run. */
export interface ChartRun {
  machine: string
  command: string
  revision: string
  date: string
}

const WIDTH = 860
const HEIGHT = 560

// One colour per target on every chart; a target's second metric (or its second set of
// points, e.g. on a cluster) is told apart by the line's dash and the marker's shape.
const colours: Record<TargetKey, string> = { raw: '#7a7a7a', sio: '#2f6db5', mesh: '#d9480f', meshMetrics: '#e8a010' }
const dashes = ['solid', 'dashed', 'dotted', [10, 4, 2, 4]] as const
const symbols = ['circle', 'triangle', 'rect', 'diamond'] as const

/** Numbers a chart's kinds of line (metric and points) in order of appearance. */
function variants(): (one: CurveSeries) => number {
  const seen: string[] = []
  return (one) => {
    const key = `${one.metric} ${JSON.stringify(one.points ?? null)}`
    if (!seen.includes(key)) seen.push(key)
    return seen.indexOf(key)
  }
}

function axis(label: string, log: boolean | undefined, where: 'x' | 'y', whole = false): Record<string, unknown> {
  return {
    type: log ? 'log' : 'value',
    // Counts (instances, portals) get whole-number ticks, from the first point to the last.
    ...(whole && !log ? { minInterval: 1, min: 'dataMin', max: 'dataMax' } : {}),
    name: label,
    nameLocation: 'middle',
    nameGap: where === 'x' ? 32 : 64,
    nameTextStyle: { fontSize: 13, color: '#333' },
    // A log x axis spans the points (its ticks stay at powers of ten); a log y axis runs
    // from a power of ten below the data to one above it, so that the lines keep their room.
    ...(log && where === 'x' ? { min: 'dataMin', max: 'dataMax' } : {}),
    ...(log && where === 'y'
      ? {
          min: ({ min }: { min: number }) => 10 ** Math.floor(Math.log10(min)),
          max: ({ max }: { max: number }) => 10 ** Math.ceil(Math.log10(max)),
        }
      : {}),
    axisLabel: { color: '#333' },
  }
}

/** `text` broken into lines of at most about `width` characters, at spaces: ECharts' titles do not wrap by themselves. */
function wrap(text: string, width: number): string {
  const lines: string[] = []
  for (const word of text.split(' ')) {
    const last = lines.length - 1
    if (last >= 0 && lines[last]!.length + 1 + word.length <= width) lines[last] += ` ${word}`
    else lines.push(word)
  }
  return lines.join('\n')
}

/** One chart of `series` over the curve's points, as an SVG string. */
export function renderChart(curve: Curve, y: Curve['y'], series: readonly CurveSeries[], samples: Samples, run: ChartRun, title = curve.title): string {
  const variant = variants()
  const chart = echarts.init(null, null, { renderer: 'svg', ssr: true, width: WIDTH, height: HEIGHT })
  try {
    chart.setOption({
      animation: false,
      // Opaque, so that the dark text stays readable where the page behind it is dark.
      backgroundColor: '#fff',
      title: {
        text: wrap(`${curve.number}. ${title}`, 84),
        subtext: `${run.machine}\n${run.command}, ${run.date}, ${run.revision}; medians across rounds`,
        left: 'center',
        textStyle: { fontSize: 16 },
        subtextStyle: { color: '#555', lineHeight: 15 },
      },
      // Wide gaps: without a browser, ECharts measures text roughly, and tight legend entries overlap.
      legend: { top: 100, itemGap: 28, textStyle: { color: '#333' } },
      grid: { top: 156, bottom: 56, left: 92, right: 40 },
      xAxis: axis(curve.x.label, curve.x.log, 'x', curve.points.every((point) => Number.isInteger(point.x))),
      yAxis: axis(y.label, y.log, 'y'),
      series: series.map((one) => {
        const index = variant(one)
        // A log axis cannot place zero or less: such a median is left out, as a missing point is.
        const values = seriesValues(curve, one, samples).filter(({ x, value }) => (!curve.x.log || x > 0) && (!y.log || value > 0))
        return {
          name: one.label,
          type: 'line',
          data: values.map(({ x, value }) => [x, value]),
          color: colours[one.target],
          lineStyle: { width: 2, type: dashes[index % dashes.length] },
          symbol: symbols[index % symbols.length],
          symbolSize: 8,
          showAllSymbol: true,
        }
      }),
    })
    return chart.renderToSVGString()
  } finally {
    chart.dispose()
  }
}

/** A curve's charts by file name: the main one, and the secondary one if it has it. */
export function curveCharts(curve: Curve, samples: Samples, run: ChartRun): { file: string; svg: string }[] {
  const [main, second] = chartFiles(curve)
  const charts = [{ file: main!, svg: renderChart(curve, curve.y, curve.series, samples, run) }]
  if (curve.secondary && second) {
    const { y, series } = curve.secondary
    charts.push({ file: second, svg: renderChart(curve, y, series, samples, run, `${curve.title}: ${y.label}`) })
  }
  return charts
}

/** Writes the charts of every curve this run measured into `directory`; returns the files written. */
export function writeCharts(directory: string, curves: readonly Curve[], samples: Samples, run: ChartRun): string[] {
  mkdirSync(directory, { recursive: true })
  return curves
    .filter((curve) => measured(curve, samples))
    .flatMap((curve) => curveCharts(curve, samples, run))
    .map(({ file, svg }) => {
      writeFileSync(`${directory}/${file}`, svg)
      return file
    })
}
