"""The warm daemon and its client.

`protocol`, `connection` and `client` need only the standard library, pyzmq, msgpack and
platformdirs, so that Krita's and GIMP's embedded Pythons can run them; `server` is the
daemon itself and needs the engine.
"""
