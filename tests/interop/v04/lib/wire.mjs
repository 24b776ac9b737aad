/** Readings of a client's wire log (see `client-runtime.mjs`) that scenarios report. */
import { receivedMessages, sentMessages } from './client-runtime.mjs'

const failureOf = (exit) => (exit.cause._tag === 'Fail' ? exit.cause.error : { _tag: exit.cause._tag })

/** The typed errors the server answered this client's requests with, by `_tag`. */
export const failuresByTag = (wire) => {
  const counts = {}
  for (const { exit } of receivedMessages(wire, 'Exit')) {
    if (exit._tag !== 'Failure') continue
    const { _tag } = failureOf(exit)
    counts[_tag] = (counts[_tag] ?? 0) + 1
  }
  return counts
}

/** The failures the server answered this client's `…Rpc.Push` requests with, in order. */
export const pushFailures = (wire) => {
  const pushIds = new Set(sentMessages(wire, 'Request').filter(({ tag }) => tag.endsWith('.Push')).map(({ id }) => id))
  return receivedMessages(wire, 'Exit')
    .filter(({ requestId, exit }) => pushIds.has(requestId) && exit._tag === 'Failure')
    .map(({ exit }) => failureOf(exit))
}

/** The pages (`Chunk` values) that answered the client's first `…Rpc.Pull`: events and `pageInfo` of each. */
export const firstPullPages = (wire) => {
  const [firstPull] = sentMessages(wire, 'Request').filter(({ tag }) => tag.endsWith('.Pull'))
  if (firstPull === undefined) return []
  return receivedMessages(wire, 'Chunk')
    .filter(({ requestId }) => requestId === firstPull.id)
    .flatMap(({ values }) => values)
    .map(({ batch, pageInfo }) => ({ events: batch.length, pageInfo }))
}

/**
 * Where a pull stream of this client skipped or repeated events: for each pull (per ws connection and request id,
 * or per http exchange), each Chunk's events must continue the previous ones, seqNum by seqNum. An empty list is
 * what the server owes every subscriber (never a gap, never a duplicate), whatever the client does with them.
 */
export const pullStreamBreaks = (wire) => {
  const streams = [
    ...wire.received.map(({ connection, frame }) => ({ stream: `connection ${connection}`, frame })),
    ...wire.exchanges.flatMap(({ replies }, index) =>
      (Array.isArray(replies) ? replies : []).map((frame) => ({ stream: `exchange ${index}`, frame })),
    ),
  ]
  const last = new Map()
  const breaks = []
  for (const { stream, frame } of streams) {
    if (frame?._tag !== 'Chunk') continue
    const key = `${stream} request ${frame.requestId}`
    for (const { batch } of frame.values) {
      for (const { eventEncoded } of batch) {
        const previous = last.get(key)
        if (previous !== undefined && eventEncoded.seqNum !== previous + 1) {
          breaks.push(`${key}: e${eventEncoded.seqNum} after e${previous}`)
        }
        last.set(key, eventEncoded.seqNum)
      }
    }
  }
  return breaks
}
