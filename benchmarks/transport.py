"""Transport and warm-start figures for the daemon.

(a) Round trip of a 4096 x 4096 RGBA u8 layer (64 MiB) to the daemon and back, signed both
    ways (`echo`), against a plain memcpy of the same bytes.
(b) Time to the first progress message: a job sent to a warm daemon, against a cold
    in-process cloak (a new Python process importing the engine and loading the models).

    python benchmarks/transport.py [--model demo|PATH] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time

import numpy as np
import zmq

from glaze.daemon import protocol
from glaze.daemon.client import Client
from glaze.daemon.control import start_background, stop
from glaze.daemon.protocol import layout_for

COLD = textwrap.dedent("""
    import sys, time
    import numpy as np
    from glaze.engine import CloakSettings, load_bundle
    from glaze.engine.cloak import cloak
    bundle = load_bundle(sys.argv[1])
    pixels = np.full((512, 512, 4), 128, np.uint8)
    def first(fraction, message):
        print(time.time(), flush=True)
        raise SystemExit(0)
    cloak(pixels, bundle, "Cubism painting by Juan Gris", CloakSettings(quality=1),
          progress=first)
""")


def transport(client: Client, repeats: int) -> tuple[float, float, float]:
    """Medians of: the echo round trip, a memcpy, and one MAC pass over the layer (the
    protocol signs and verifies it both ways: four passes per round trip)."""
    layer = np.random.default_rng(0).integers(0, 256, (4096, 4096, 4), np.uint8)
    target = np.empty_like(layer)
    trips, copies, macs = [], [], []
    for _ in range(repeats + 1):  # the first of each is a warm-up
        start = time.perf_counter()
        back = client.echo(layer)
        trips.append(time.perf_counter() - start)
        assert memoryview(back).nbytes == layer.nbytes
        start = time.perf_counter()
        np.copyto(target, layer)
        copies.append(time.perf_counter() - start)
        start = time.perf_counter()
        protocol.Session(client.info.key_bytes, protocol.CLIENT).sign([memoryview(layer)])
        macs.append(time.perf_counter() - start)
    return tuple(statistics.median(values[1:]) for values in (trips, copies, macs))


def one_way(curve: bool, repeats: int) -> float:
    """Median time to send the 64 MiB layer one way over loopback TCP between two bare
    sockets, with the daemon's CURVE encryption or without any."""
    layer = np.random.default_rng(0).integers(0, 256, (4096, 4096, 4), np.uint8)
    context = zmq.Context.instance()
    server, peer = context.socket(zmq.ROUTER), context.socket(zmq.DEALER)
    if curve:
        public, server.curve_secretkey = zmq.curve_keypair()
        server.curve_server = True
        peer.curve_serverkey = public
        peer.curve_publickey, peer.curve_secretkey = zmq.curve_keypair()
    peer.connect(f"tcp://127.0.0.1:{server.bind_to_random_port('tcp://127.0.0.1')}")
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        peer.send(layer, copy=False)
        server.recv_multipart(copy=False)
        times.append(time.perf_counter() - start)
    server.close(linger=0)
    peer.close(linger=0)
    return statistics.median(times[1:])


def first_progress_warm(client: Client, repeats: int) -> float:
    pixels = np.full((512, 512, 4), 128, np.uint8)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        job = client.submit(pixels, layout_for(512, 512),
                            {"quality": 1, "target": "Cubism painting by Juan Gris"})
        next(job.events())
        times.append(time.perf_counter() - start)
        job.cancel()
        for _event in job.events():
            pass
    return statistics.median(times)


def first_progress_cold(model: str, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.time()
        done = subprocess.run([sys.executable, "-c", COLD, model], capture_output=True,
                              text=True, check=True)
        times.append(float(done.stdout.split()[0]) - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="demo")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as state:
        os.environ["GLAZE_STATE_DIR"] = state  # a daemon of its own, not the user's
        info, _ = start_background(["--model", args.model])
        try:
            with Client(info) as client:
                trip, copy, mac = transport(client, args.repeats)
                warm = first_progress_warm(client, args.repeats)
        finally:
            stop()
    cold = first_progress_cold(args.model, max(1, args.repeats // 2))
    plain, encrypted = one_way(False, args.repeats), one_way(True, args.repeats)
    print(f"model {args.model}, medians of {args.repeats}")
    print(f"4096x4096 RGBA u8 round trip (signed, 2 x 64 MiB): {trip * 1000:8.1f} ms")
    print(f"memcpy of the same 64 MiB:                          {copy * 1000:8.1f} ms")
    print(f"ratio round trip / memcpy:                          {trip / copy:8.1f}")
    print(f"one HMAC-SHA256 pass over the layer:                {mac * 1000:8.1f} ms "
          f"(x4 per round trip: {4 * mac / trip:.0%} of it)")
    print(f"64 MiB one way, bare sockets, no encryption:       {plain * 1000:8.1f} ms")
    print(f"64 MiB one way, bare sockets, CURVE:                {encrypted * 1000:8.1f} ms "
          f"(x2 per round trip: {2 * (encrypted - plain) / trip:.0%} of it)")
    print(f"first progress, warm daemon:                        {warm * 1000:8.1f} ms")
    print(f"first progress, cold in-process:                    {cold * 1000:8.1f} ms")
    print(f"ratio cold / warm:                                  {cold / warm:8.1f}")


if __name__ == "__main__":
    main()
