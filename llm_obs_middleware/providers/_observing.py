"""What the providers' stream observers share: the decode-and-dispatch loop, tool-call slots, notes.

Each provider keeps its wire handling (which events exist, what each one means) in its own package;
this module holds only the machinery that is the same for all of them. It sits on the hot path (one
call per stream chunk), so it keeps to plain attribute access and dict look-ups.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

import msgspec

from llm_obs_middleware.codecs.sse import SSEParser
from llm_obs_middleware.providers._buffered import BufferedBody
from llm_obs_middleware.records.schema import ToolCall

if TYPE_CHECKING:
    from collections.abc import Callable

    from llm_obs_middleware.asgi.state import Exchange

__all__ = [
    "MAX_NOTED",
    "Accumulator",
    "CapturingBody",
    "ChunkStreamObserver",
    "NamedEventObserver",
    "StatusBody",
    "ToolSlot",
    "ToolSlots",
    "note",
    "stream_problem",
    "typed_event_decoder",
]

E = TypeVar("E")
MAX_NOTED = 5
"""How many unparsable or unknown events a record names (the rest are only counted)."""


class _Typed(msgspec.Struct):
    type: str = ""


_decode_type = msgspec.json.Decoder(_Typed).decode


def typed_event_decoder(union: Any, names: frozenset[bytes]) -> Callable[[bytes], Any]:
    """A decoder of one event's data into the tagged ``union``, or the ``type`` it does not know (``""``
    if none); it raises ``msgspec.DecodeError`` for JSON that does not parse or a known event (its type
    in ``names``) that does not fit."""
    decode = msgspec.json.Decoder(union).decode

    def decode_event(data: bytes) -> Any:
        try:
            return decode(data)
        except msgspec.ValidationError:
            kind = _decode_type(data).type
            if kind.encode() in names:
                raise
            return kind

    return decode_event


def note(notes: list[str], text: str) -> None:
    """Name one more unparsable or unknown event, up to ``MAX_NOTED``."""
    if len(notes) < MAX_NOTED:
        notes.append(text)


def stream_problem(
    error_type: str | None, message: str | None, bad: list[str], unknown: list[str]
) -> tuple[str | None, str | None]:
    """The error type and message once the unparsable (``invalid_response``) and unknown events are told."""
    if bad:
        return error_type or "invalid_response", message or f"unparsable stream events: {', '.join(bad)}"
    if unknown and message is None:
        return error_type, f"unknown stream events passed through: {', '.join(unknown)}"
    return error_type, message


class ToolSlot:
    """One streamed tool call: its id and name, the argument pieces so far, what stands for none."""

    __slots__ = ("fallback", "id", "name", "pieces")

    def __init__(self) -> None:
        self.id: str | None = None
        self.name: str | None = None
        self.pieces: list[str] = []
        self.fallback = ""

    def add(self, id: str | None, name: str | None, arguments: str | None) -> int:
        """Fold one streamed fragment in (what it leaves out keeps its value); the output characters it adds."""
        chars = 0
        if id:
            self.id = id
        if name:
            self.name = name
            chars += len(name)
        if arguments:
            self.pieces.append(arguments)
            chars += len(arguments)
        return chars


class CapturingBody(BufferedBody):
    """A non-streamed answer whose text is kept when content capture is on."""

    __slots__ = ("_capture",)

    def __init__(self, capture: bool) -> None:
        super().__init__()
        self._capture = capture


class StatusBody(BufferedBody):
    """An error answer, read with the HTTP status it came with (``http_<status>`` when it names no type)."""

    __slots__ = ("_status",)

    def __init__(self, status: int) -> None:
        super().__init__()
        self._status = status


class ToolSlots(dict[Any, ToolSlot]):
    """Tool calls being streamed, by the wire's index (or indexes): ``slot`` opens one on first sight."""

    __slots__ = ()

    def slot(self, key: object) -> ToolSlot:
        found = self.get(key)
        if found is None:
            found = self[key] = ToolSlot()
        return found

    def calls(self) -> list[ToolCall]:
        """The calls in index order, arguments joined (the slot's ``fallback`` when no piece came)."""
        return [
            ToolCall(id=slot.id, name=slot.name or "", arguments="".join(slot.pieces) or slot.fallback)
            for _, slot in sorted(self.items())
        ]


class NamedEventObserver(Generic[E]):
    """An SSE stream of JSON events whose ``event:`` name (or ``type``) picks a tagged-union class.

    Subclasses give ``_NAMES`` (the event names they know), ``_DECODE`` (a ``typed_event_decoder``) and
    ``_HANDLERS`` (event class -> handler folding it into the state, ``True`` when it carried output
    tokens); unknown and unparsable events are only noted. ``_SKIP`` names events counted but not read
    (keep-alives); ``_DONE`` is a data terminator neither counted nor read.
    """

    __slots__ = ("_bad", "_capture", "_chars", "_events", "_exchange", "_listener", "_parser", "_texts", "_unknown")

    _NAMES: ClassVar[frozenset[bytes]]
    _SKIP: ClassVar[frozenset[bytes]] = frozenset()
    _DONE: ClassVar[bytes | None] = None
    _HANDLERS: ClassVar[dict[type, Callable[[Any, Any], bool]]]
    _DECODE: ClassVar[Callable[[bytes], Any]]

    def __init__(self, exchange: Exchange, capture: bool) -> None:
        self._exchange = exchange
        self._capture = capture
        self._parser = SSEParser()
        self._listener: Callable[[E], object] | None = None
        self._texts: list[str] = []
        self._chars = 0
        self._events = 0
        self._bad: list[str] = []
        self._unknown: list[str] = []

    def listen(self, listener: Callable[[E], object]) -> None:
        """Hand each decoded event to ``listener`` too (a stream translator: the stream is parsed once)."""
        self._listener = listener

    def feed(self, chunk: bytes, now_ns: int) -> None:
        self._handle(self._parser.feed(chunk), now_ns)

    def flush(self) -> None:
        """Read an event left unterminated at the end of the stream (``finish`` does it too)."""
        self._handle(self._parser.close(), 0)

    def _handle(self, events: list[tuple[bytes, bytes]], now_ns: int) -> None:
        saw_token = False
        listener = self._listener
        cls = type(self)
        handlers, decode, names, done = cls._HANDLERS, cls._DECODE, cls._NAMES, cls._DONE
        for name, data in events:
            if data == done:
                continue
            self._events += 1
            if name and name not in names:
                if name not in cls._SKIP:
                    note(self._unknown, name.decode(errors="replace"))
                continue  # passed through, uncounted in the result
            try:
                event = decode(data)
            except msgspec.DecodeError:
                note(self._bad, name.decode(errors="replace") or "(unnamed)")
                continue
            if isinstance(event, str):  # an unnamed event with a type we do not know
                note(self._unknown, event or "(untyped)")
                continue
            if listener is not None:
                listener(event)
            handler = handlers.get(type(event))
            if handler is not None and handler(self, event):
                saw_token = True
        if saw_token:
            self._exchange.mark_token(now_ns)

    def _text(self, text: str) -> None:
        """Output text: counted, and kept when content is captured."""
        self._chars += len(text)
        if self._capture:
            self._texts.append(text)


class Accumulator(Generic[E]):
    """What the whole chunks of one answer said so far (one chunk for a plain answer): the output text
    and characters, the tool calls, and the first parse problem. Subclasses implement ``add``."""

    __slots__ = ("capture", "chars", "model", "problem", "texts", "tools")

    def __init__(self, capture: bool) -> None:
        self.capture = capture
        self.model: str | None = None
        self.tools: list[ToolCall] = []
        self.texts: list[str] = []
        self.chars = 0
        self.problem: str | None = None

    def add(self, chunk: E) -> bool:
        """Take in one chunk; whether it carried output (text, thinking or a tool call)."""
        raise NotImplementedError

    def parse_failed(self, what: str, exc: Exception) -> None:
        """Note the first chunk that could not be parsed (the record says ``invalid_response``)."""
        if self.problem is None:
            self.problem = f"{what} could not be parsed: {exc}"


A = TypeVar("A", bound=Accumulator[Any])


class ChunkStreamObserver(Generic[E, A]):
    """A stream whose every event is one whole answer chunk (Gemini's SSE, Ollama's NDJSON): each is
    decoded, handed to the listener and added to the accumulator; marks token arrival for TTFT.

    Subclasses split the bytes (``feed``/``flush``, calling ``_handle`` with each event's payload) and
    give ``_DECODE`` and ``_WHAT`` (how a problem names an event)."""

    __slots__ = ("_acc", "_events", "_exchange", "_listener")

    _WHAT: ClassVar[str] = "stream event"
    _DECODE: ClassVar[Callable[[bytes], Any]]

    def __init__(self, exchange: Exchange, acc: A) -> None:
        self._exchange = exchange
        self._listener: Callable[[E], object] | None = None
        self._acc = acc
        self._events = 0

    def listen(self, listener: Callable[[E], object]) -> None:
        """Hand each decoded chunk to ``listener`` too (a stream translator: the stream is parsed once)."""
        self._listener = listener

    def _handle(self, payloads: list[bytes], now_ns: int) -> None:
        saw_output = False
        listener = self._listener
        acc = self._acc
        decode = type(self)._DECODE
        for data in payloads:
            self._events += 1
            try:
                chunk = decode(data)
            except msgspec.DecodeError as exc:
                acc.parse_failed(f"{self._WHAT} {self._events}", exc)
                continue
            if listener is not None:
                listener(chunk)
            if acc.add(chunk):
                saw_output = True
        if saw_output:
            self._exchange.mark_token(now_ns)
