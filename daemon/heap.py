"""Keep the cyclic garbage collector off the event loop's critical path.

Everything the daemon builds at start-up (modules, settings, models, the channels' clients) lives as
long as the process. Left in the collector's oldest generation, each full collection walked all of
it: 30-40 ms with the event loop stopped, about once a second during a bulk push (measured with
20,000 stock pushes in flight: every request on every channel waits that long). Freezing the heap
once start-up is done moves those objects out of the collector's sight; what the daemon allocates
afterwards is still collected as usual. The same reasoning is why some large Python services fork
after ``gc.freeze()``; here there is no fork, only the pauses.
"""

from __future__ import annotations

import gc


def settle_heap() -> int:
    """Collect what start-up (or a reload) left behind, then freeze the survivors; returns how many
    are frozen. Unfreezing first lets a reload's discarded settings and jobs be collected."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
