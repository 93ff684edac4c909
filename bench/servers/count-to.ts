// A counter the orchestrator waits on through the control channel, in two steps so that
// nothing counted before the load starts is missed: `expect(n)` starts from zero (before
// the load sends), `reached()` resolves once n were counted (at once if they were).
export interface Counter {
  count(): void
  expect(total: number): { expecting: number }
  reached(): Promise<{ counted: number }>
}

export function countTo(): Counter {
  let counted = 0
  let target = Infinity
  let waiting: ((value: { counted: number }) => void) | undefined
  return {
    count() {
      if (++counted === target) waiting?.({ counted })
    },
    expect(total) {
      counted = 0
      target = total
      waiting = undefined
      return { expecting: total }
    },
    reached() {
      if (counted >= target) return Promise.resolve({ counted })
      return new Promise((resolve) => (waiting = resolve))
    },
  }
}
