"""Events: the typed records (:mod:`.types`) and their bus and JSONL log (:mod:`.bus`).

``from pxewizard.events import TransferDone, EventBus`` works for both halves.
"""

from .bus import (EventBus, JsonlLog, LineBatch, RefusalLimit, Subscriber, decode_line,
                  jsonl_line, read_jsonl)
from .types import *  # noqa: F403  (every event class)
from .types import Event, event_types, from_dict

__all__ = ["EventBus", "JsonlLog", "LineBatch", "RefusalLimit", "Subscriber", "event_types",
           "decode_line", "from_dict", "jsonl_line", "read_jsonl", *sorted(cls.__name__ for cls in event_types().values())]
