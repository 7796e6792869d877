"""Runtime backends: one module per event loop, chosen automatically or by name.

The core never imports a backend module directly; it asks :func:`get_backend` or
:func:`current_backend`, which import the backend lazily (MicroPython-safe).
"""

from .._compat import IS_MICROPYTHON, TYPE_CHECKING

if TYPE_CHECKING:
    from ..abc import RuntimeBackend

BACKENDS = ("asyncio", "trio", "micropython")

_cache: "dict[str, RuntimeBackend]" = {}


def get_backend(name: str) -> "RuntimeBackend":
    """Return the backend object called ``name`` (``"asyncio"``, ``"trio"``, ``"micropython"``).

    Raises:
        LookupError: for an unknown name, or when the backend's library is not installed
            (the message names the extra to install, e.g. ``aimdb[trio]``).
    """
    be = _cache.get(name)
    if be is not None:
        return be
    if name not in BACKENDS:
        raise LookupError("unknown runtime backend " + repr(name) + "; known: " + ", ".join(BACKENDS))
    if name == "asyncio" and IS_MICROPYTHON:
        name = "micropython"
    try:
        mod = __import__("aimdb._backends._" + name, None, None, ["backend"])
    except ImportError as exc:
        raise LookupError(
            "the " + name + " backend is not available (pip install 'aimdb[" + name + "]'): " + str(exc)
        ) from exc
    loaded: RuntimeBackend = mod.backend
    _cache[name] = loaded
    return loaded


def current_backend() -> "RuntimeBackend":
    """Return the backend of the event loop running in this thread.

    Detection order: MicroPython → its asyncio backend; trio running in this thread →
    trio; otherwise asyncio (uvloop is an asyncio loop), also when no loop runs yet.
    """
    be = running_backend()
    return be if be is not None else get_backend("asyncio")


def running_backend() -> "RuntimeBackend | None":
    """Return the backend of the event loop running in this thread, or ``None`` when none runs.

    Unlike :func:`current_backend`, this does not fall back to asyncio: it answers
    whether a loop is running now (on MicroPython, whose core always has its asyncio,
    it returns that backend).
    """
    if IS_MICROPYTHON:
        return get_backend("micropython")
    import sys

    if "trio" in sys.modules:
        try:
            import trio

            trio.lowlevel.current_trio_token()
        except (ImportError, RuntimeError):
            pass
        else:
            return get_backend("trio")
    if "asyncio" in sys.modules:
        import asyncio

        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return None
        return get_backend("asyncio")
    return None
