"""The warm daemon and its client.

`protocol`, `connection` and `client` need only the standard library, pyzmq, msgpack and
platformdirs, so that Krita's and GIMP's embedded Pythons can run them; `options` (every
user setting, declared once) needs only the standard library, so the engine reads it too;
`server` is the daemon itself and needs the engine.
"""
