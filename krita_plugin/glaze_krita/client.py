"""Where the plug-in finds the shared Glaze client: its own vendor folder (the installer
puts the client and its pyzmq, msgpack and platformdirs there), else the Python path."""

import os
import sys

VENDOR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "vendor")
if os.path.isdir(VENDOR) and VENDOR not in sys.path:
    sys.path.insert(0, VENDOR)

try:
    from glaze_client import options  # noqa: E402  (the vendored copy)
    from glaze_client.client import (  # noqa: E402
        Client,
        DaemonError,
        DaemonState,
        JobCancelled,
        daemon_state,
        describe,
        keep_sheet,
        layout_for,
        left_out_lines,
    )
    from glaze_client.stamp import published  # noqa: E402
except ImportError:
    try:
        from glaze import options
        from glaze.daemon.client import (
            Client,
            DaemonError,
            DaemonState,
            JobCancelled,
            daemon_state,
            describe,
            keep_sheet,
            layout_for,
            left_out_lines,
        )
        from glaze.stamp import published
    except ImportError as error:
        raise ImportError(
            "Glaze: the plug-in cannot find its client library (pyzmq, msgpack and the Glaze "
            "client). Run `glaze install --krita` again, or see the Glaze README.") from error

__all__ = ["Client", "DaemonError", "DaemonState", "JobCancelled", "daemon_state", "describe",
           "keep_sheet", "layout_for", "left_out_lines", "options", "published"]
