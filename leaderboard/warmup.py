"""Warm the server before it answers its health check: every page runs once, in a throw-away session with
the choices a new visitor gets, so its cached queries, rankings, bootstraps and figures
(`st.cache_data` in :mod:`leaderboard.data` and :mod:`leaderboard.plots`) are filled before anyone visits.

:func:`install` (called by `python -m leaderboard` before Streamlit starts) makes Streamlit's runtime start
the warm-up as soon as it runs, and makes `/_stcore/health` answer "unavailable" until the warm-up has
finished; visitors therefore never compete with it, and the first visit after a start finds warm caches.
Guarantee: the warm-up never keeps the server from serving. A page that fails, a warm-up past
``TIMEOUT_S`` or a Streamlit whose internals differ is logged, and the health check answers as usual.
"""

import asyncio
import logging
import time

LOG = logging.getLogger("mergesec.leaderboard")
PAGES = ("", "transfer", "backdoor", "tradeoff", "method")  # url paths of leaderboard/app.py's pages
TIMEOUT_S = 300.0
_state = {"warm": False}


async def _run_page(runtime, page: str, deadline: float) -> None:
    """One script run of ``page`` in a session of its own (what Streamlit's script-health check does)."""
    from streamlit.proto.ClientState_pb2 import ClientState
    from streamlit.runtime.app_session import AppSession
    from streamlit.runtime.script_data import ScriptData
    from streamlit.runtime.state import SCRIPT_RUN_WITHOUT_ERRORS_KEY

    session = AppSession(script_data=ScriptData(runtime._main_script_path, False),
                         uploaded_file_manager=runtime.uploaded_file_mgr, script_cache=runtime._script_cache,
                         message_enqueued_callback=None, user_info={})
    try:
        state = ClientState()
        state.page_name = page
        session.request_rerun(state)
        while SCRIPT_RUN_WITHOUT_ERRORS_KEY not in session.session_state and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    finally:
        session.shutdown()


async def warm(runtime) -> None:
    """Run every page of :data:`PAGES` once, one after the other; then mark the server ready."""
    t0 = time.monotonic()
    try:
        for page in PAGES:
            await _run_page(runtime, page, t0 + TIMEOUT_S)
        LOG.info("leaderboard warm-up: %d pages in %.1f s", len(PAGES), time.monotonic() - t0)
    except Exception:  # a Streamlit whose internals differ: serve cold rather than not at all
        LOG.exception("leaderboard warm-up failed; serving with cold caches")
    finally:
        _state["warm"] = True


def install() -> None:
    """Patch Streamlit's runtime: start :func:`warm` right after the runtime starts, and report "not ready"
    to the health check until it has finished."""
    from streamlit.runtime.runtime import Runtime

    start, ready = Runtime.start, Runtime.__dict__["is_ready_for_browser_connection"]
    ready_of = ready.fget if isinstance(ready, property) else ready  # a property that returns a coroutine

    async def start_and_warm(self) -> None:
        await start(self)
        self._mergesec_warmup = asyncio.get_running_loop().create_task(warm(self), name="mergesec.warmup")

    async def ready_when_warm(self) -> tuple[bool, str]:
        if not _state["warm"]:
            return False, "warming up"
        return await ready_of(self)

    Runtime.start = start_and_warm
    Runtime.is_ready_for_browser_connection = property(ready_when_warm) if isinstance(ready, property) \
        else ready_when_warm
