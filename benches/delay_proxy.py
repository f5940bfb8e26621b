#!/usr/bin/env python3
"""A TCP proxy that holds every chunk a client sends for DELAY seconds before passing
it on, so that each request to a local server (the moto S3 server of the tests) costs
about one more network round trip, as against a real object store.

Usage: benches/delay_proxy.py LISTEN_PORT TARGET_PORT DELAY_SECONDS
  e.g. benches/delay_proxy.py 50999 "${AWS_ENDPOINT_URL##*:}" 0.02 &
       AWS_ENDPOINT_URL=http://127.0.0.1:50999 cbsnap --repo s3://… snapshots
Both ports on 127.0.0.1; runs until killed.
"""
import asyncio
import sys

LISTEN, TARGET, DELAY = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])


async def pipe(reader, writer, delay):
    try:
        while data := await reader.read(65536):
            if delay:
                await asyncio.sleep(delay)
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


async def handle(client_r, client_w):
    server_r, server_w = await asyncio.open_connection("127.0.0.1", TARGET)
    await asyncio.gather(pipe(client_r, server_w, DELAY), pipe(server_r, client_w, 0))


async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", LISTEN)
    async with server:
        await server.serve_forever()


asyncio.run(main())
