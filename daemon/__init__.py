"""The warm daemon and its client.

`protocol`, `connection` and `client` need only the standard library, pyzmq, msgpack and
platformdirs, so that Krita's and GIMP's embedded Pythons can run them; `glaze.options`
(every user setting, declared once) and `glaze.processes` need only the standard library,
so the engine reads them too and the plug-ins carry copies beside the client; `server` is
the daemon itself and needs the engine.
"""
