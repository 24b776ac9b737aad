export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * Polls `condition` until it holds or `timeoutMs` passes and says which happened. Scenarios go on either way
 * and report what the stores hold, so a failing run shows the divergent state rather than just "timed out".
 */
export const waitUntil = async (condition, { timeoutMs, intervalMs = 50 }) => {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (await condition()) return true
    if (Date.now() >= deadline) return false
    await sleep(intervalMs)
  }
}
