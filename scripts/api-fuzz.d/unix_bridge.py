#!/usr/bin/env python3
"""Forwards TCP connections on 127.0.0.1:PORT to a Unix socket, byte for byte: for HTTP tools
that cannot speak to musterd's control socket directly (schemathesis). The bridge runs as its
caller, so musterd's SO_PEERCRED check sees that user.

    unix_bridge.py /path/to/muster.sock PORT
"""
import asyncio
import sys


async def pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        try:
            writer.write_eof()
        except (OSError, RuntimeError):
            pass


async def handle(client_reader, client_writer, path):
    try:
        server_reader, server_writer = await asyncio.open_unix_connection(path)
    except OSError:
        client_writer.close()
        return
    await asyncio.gather(pipe(client_reader, server_writer), pipe(server_reader, client_writer))
    client_writer.close()
    server_writer.close()


async def main():
    path, port = sys.argv[1], int(sys.argv[2])
    server = await asyncio.start_server(lambda r, w: handle(r, w, path), "127.0.0.1", port)
    async with server:
        await server.serve_forever()


asyncio.run(main())
