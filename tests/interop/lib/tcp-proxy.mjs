/**
 * A TCP proxy on a free loopback port in front of the sync server, so a scenario can take one client offline
 * (`cut`) and bring it back (`restore`) while the server and the other clients keep running, or hold that
 * client's outgoing bytes (`hold`/`release`) to line its push up with another client's.
 */
import net from 'node:net'

export const startTcpProxy = async (targetUrl) => {
  const target = new URL(targetUrl)
  const links = new Set()
  const heldChunks = []
  let isCut = false
  let isHeld = false

  const server = net.createServer((client) => {
    // A cut network refuses new connections: the client's connect attempt fails and it keeps retrying.
    if (isCut) {
      client.destroy()
      return
    }
    const upstream = net.connect(Number(target.port), target.hostname)
    const link = { client, upstream }
    links.add(link)
    const closeBoth = () => {
      links.delete(link)
      client.destroy()
      upstream.destroy()
    }
    client.on('data', (chunk) => {
      if (isHeld) heldChunks.push({ upstream, chunk })
      else upstream.write(chunk)
    })
    upstream.on('data', (chunk) => client.write(chunk))
    for (const socket of [client, upstream]) {
      socket.on('close', closeBoth)
      socket.on('error', closeBoth)
    }
  })

  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))

  return {
    url: `${target.protocol}//127.0.0.1:${server.address().port}`,
    /** Drops every open connection and refuses new ones until `restore`. */
    cut: () => {
      isCut = true
      for (const { client, upstream } of links) {
        client.destroy()
        upstream.destroy()
      }
      links.clear()
    },
    restore: () => {
      isCut = false
    },
    /** Buffers client-to-server bytes instead of forwarding them. */
    hold: () => {
      isHeld = true
    },
    heldByteCount: () => heldChunks.reduce((total, { chunk }) => total + chunk.length, 0),
    /** Forwards everything held, in order, and stops holding. */
    release: () => {
      isHeld = false
      for (const { upstream, chunk } of heldChunks.splice(0)) upstream.write(chunk)
    },
  }
}
