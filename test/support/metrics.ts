import type { MeshServer } from 'meshkit/server'

/** One line of the exposition format: a metric name, its labels and its value. */
export interface Sample {
  name: string
  labels: Record<string, string>
  value: number
}

/** Every sample of an exposition text (comments skipped). */
export function parseSamples(text: string): Sample[] {
  const samples: Sample[] = []
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line)
    if (!match) throw new Error(`not an exposition line: ${line}`)
    const labels: Record<string, string> = {}
    for (const [, key, value] of (match[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[key!] = value!
    samples.push({ name: match[1]!, labels, value: Number(match[3]) })
  }
  return samples
}

/** `GET /metrics` on the server's own HTTP server. */
export async function scrape(server: MeshServer): Promise<Sample[]> {
  const response = await fetch(`http://127.0.0.1:${server.port}/metrics`)
  if (response.status !== 200) throw new Error(`/metrics answered ${response.status}`)
  return parseSamples(await response.text())
}

/** The value of the sample with exactly these labels; 0 when absent (a counter not moved yet has no line). */
export function valueOf(samples: readonly Sample[], name: string, labels: Record<string, string> = {}): number {
  const wanted = Object.entries(labels)
  const found = samples.find((sample) => sample.name === name && Object.keys(sample.labels).length === wanted.length && wanted.every(([key, value]) => sample.labels[key] === value))
  return found?.value ?? 0
}

/** The value of one metric read by a fresh scrape. */
export async function metric(server: MeshServer, name: string, labels: Record<string, string> = {}): Promise<number> {
  return valueOf(await scrape(server), name, labels)
}
