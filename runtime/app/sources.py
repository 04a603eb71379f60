"""``dreamwire sources``: what the installed bridges can see; a missing extra is one line, not a traceback."""

from __future__ import annotations

import importlib

from dreamwire.bridges.base import BridgeError

DISCOVERABLE = ("ndi", "spout")


def print_sources() -> int:
    print("built-in: pattern, images:DIR, video:PATH (sources); images:DIR, null (sinks)")
    for name in DISCOVERABLE:
        try:
            senders = list(importlib.import_module(f"dreamwire.bridges.{name}").list_senders())
        except BridgeError as exc:  # the bridge's own message says what to install or use instead
            print(f"{name}: unavailable: {exc}")
            continue
        except ImportError as exc:
            print(f"{name}: unavailable ({exc}); install the extra: pip install 'dreamwire[{name}]'")
            continue
        if not senders:
            print(f"{name}: no senders found")
        for s in senders:
            print(f"{name}:{s}")
    return 0
