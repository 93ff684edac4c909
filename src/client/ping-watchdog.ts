/**
 * Notices a server that stopped pinging: no ping for `pingTimeout`, more than
 * `maxMissedPings` times in a row. The wait is never shorter than 1.5 times the gap
 * the server announced, so that a ping sent exactly on time cannot race the timer.
 */
export class PingWatchdog {
  private timer: ReturnType<typeof setTimeout> | undefined
  private missed = 0
  private announcedGap = 0

  constructor(
    private readonly pingTimeout: number,
    private readonly maxMissedPings: number,
    private readonly onDead: () => void,
  ) {}

  /** A new connection, whose server announced the longest gap between its pings. */
  start(announcedGap: number): void {
    this.announcedGap = announcedGap
    this.onPing()
  }

  onPing(): void {
    this.missed = 0
    this.arm()
  }

  stop(): void {
    clearTimeout(this.timer)
    this.timer = undefined
  }

  /**
   * The thread was blocked (`commandSync`) and read nothing: pings may be waiting
   * unread, so the silence is counted again from now rather than by a timer that
   * would fire before they are read.
   */
  resume(): void {
    if (this.timer !== undefined) this.arm()
  }

  private arm(): void {
    clearTimeout(this.timer)
    this.timer = setTimeout(
      () => {
        this.missed++
        if (this.missed > this.maxMissedPings) this.onDead()
        else this.arm()
      },
      Math.max(this.pingTimeout, this.announcedGap * 1.5),
    )
    ;(this.timer as { unref?: () => void }).unref?.()
  }
}
