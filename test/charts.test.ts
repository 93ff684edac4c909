// The scale curves' SVG charts (bench/charts.ts): drawn by ECharts from a run's samples.
import { describe, expect, it } from 'vitest'
import { renderChart } from '../bench/charts.js'
import { flatness, seriesValues } from '../bench/curve-report.js'
import type { Curve } from '../bench/curves.js'
import type { Samples } from '../bench/report.js'

const curve: Curve = {
  id: 'made-up',
  number: 9,
  title: 'Made-up cost as widgets grow',
  x: { label: 'widgets held', log: true },
  y: { label: 'bytes per widget' },
  points: [
    { x: 10, workload: 'small', xMetric: 'held' },
    { x: 100, workload: 'middle', xMetric: 'held' },
    { x: 1_000, workload: 'large', xMetric: 'held' },
  ],
  series: [
    { label: 'plain sockets', target: 'raw', metric: 'bytes' },
    { label: 'our framework', target: 'mesh', metric: 'bytes' },
  ],
}

// Three rounds at each point; the framework's largest point failed (no samples), and it held 900 widgets, not 1,000.
const samples: Samples = new Map([
  ['small:bytes', { raw: [5, 6, 7], mesh: [8, 9, 10] }],
  ['small:held', { raw: [10, 10, 10], mesh: [10, 10, 10] }],
  ['middle:bytes', { raw: [5, 5, 5], mesh: [7, 7, 7] }],
  ['middle:held', { raw: [100, 100, 100], mesh: [100, 100, 100] }],
  ['large:bytes', { raw: [4, 4, 4] }],
  ['large:held', { raw: [900, 900, 900] }],
])

const run = { machine: 'a test machine', command: 'npm test', revision: 'meshkit at test', date: '2026-12-02' }

describe('a scale curve as an SVG chart', () => {
  it('draws every series with its points, the axes named, and leaves out a point without samples', () => {
    const svg = renderChart(curve, curve.y, curve.series, samples, run)
    expect(svg.startsWith('<svg')).toBe(true)
    for (const text of ['plain sockets', 'our framework', 'widgets held', 'bytes per widget', 'Made-up cost as widgets grow', 'a test machine', 'npm test']) {
      expect(svg).toContain(text)
    }
    // ECharts marks each point's symbol with its series and data index.
    const markers = [...svg.matchAll(/ecmeta_series_index="(\d+)" ecmeta_data_index="(\d+)" ecmeta_ssr_type="chart"/g)].map((m) => `${m[1]}:${m[2]}`)
    expect(markers.sort()).toEqual(['0:0', '0:1', '0:2', '1:0', '1:1'])
  })

  it('plots medians across rounds at the x a point reached', () => {
    expect(seriesValues(curve, curve.series[0]!, samples)).toEqual([{ x: 10, value: 6 }, { x: 100, value: 5 }, { x: 900, value: 4 }])
    expect(seriesValues(curve, curve.series[1]!, samples)).toEqual([{ x: 10, value: 9 }, { x: 100, value: 7 }])
  })

  it('checks flatness between the smallest and the largest point, and not where one is missing', () => {
    expect(flatness(curve, { label: 'cost', target: 'raw', metric: 'bytes', lowerIsBetter: true }, samples)).toMatchObject({ ratio: 4 / 6, met: true })
    expect(flatness(curve, { label: 'rate', target: 'raw', metric: 'bytes', lowerIsBetter: false }, samples)).toMatchObject({ ratio: 1.5, met: false })
    expect(flatness(curve, { label: 'cost', target: 'mesh', metric: 'bytes', lowerIsBetter: true }, samples).met).toBeUndefined()
  })
})
