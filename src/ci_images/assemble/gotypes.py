"""The few Go value formats a Dockerfile's metadata passes through: durations, signals, port specs, ``%q``.

Each follows the Go code Docker runs, cited per function, so the assembled config holds what Docker's would.
"""

from __future__ import annotations

import re
from fractions import Fraction

_UNITS_NS = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,  # micro sign
    "\u03bcs": 1_000,  # Greek mu
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_DURATION_PART = re.compile(r"([0-9]*(?:\.[0-9]*)?)([^0-9.]*)")


def parse_go_duration(text: str) -> int:
    """Go's time.ParseDuration, in nanoseconds ("1m30s" -> 90_000_000_000; "0" is 0). ValueError if invalid."""
    original = text
    sign = 1
    if text[:1] in ("+", "-"):
        sign = -1 if text[0] == "-" else 1
        text = text[1:]
    if text == "0":
        return 0
    if not text:
        raise ValueError(f"time: invalid duration {go_quote(original)}")
    total = Fraction(0)
    position = 0
    while position < len(text):
        match = _DURATION_PART.match(text, position)
        if not match or match.group(1) in ("", "."):
            raise ValueError(f"time: invalid duration {go_quote(original)}")
        if not match.group(2):
            raise ValueError(f"time: missing unit in duration {go_quote(original)}")
        unit = _UNITS_NS.get(match.group(2))
        if unit is None:
            raise ValueError(
                f"time: unknown unit {go_quote(match.group(2))} in duration {go_quote(original)}"
            )
        total += Fraction(match.group(1)) * unit
        position = match.end()
    return sign * int(total)


def _fraction(value: int, unit: int) -> str:
    whole, rest = divmod(value, unit)
    if not rest:
        return str(whole)
    digits = len(str(unit)) - 1
    return f"{whole}." + f"{rest:0{digits}d}".rstrip("0")


def format_go_duration(ns: int) -> str:
    """Go's time.Duration.String: "10s", "1m0s", "1h2m3.5s", "1.5ms", "0s"."""
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    value = abs(ns)
    if value < 1_000:
        return f"{sign}{value}ns"
    if value < 1_000_000:
        return f"{sign}{_fraction(value, 1_000)}\u00b5s"
    if value < 1_000_000_000:
        return f"{sign}{_fraction(value, 1_000_000)}ms"
    seconds, rest = divmod(value, 1_000_000_000)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    text = _fraction(seconds * 1_000_000_000 + rest, 1_000_000_000) + "s"
    if hours or minutes:
        text = f"{minutes}m" + text
    if hours:
        text = f"{hours}h" + text
    return sign + text


# moby/sys/signal (signal_linux.go SignalMap): the names STOPSIGNAL accepts, with or without "SIG".
_SIGNALS = frozenset(
    {
        "ABRT", "ALRM", "BUS", "CHLD", "CLD", "CONT", "FPE", "HUP", "ILL", "INT", "IO", "IOT", "KILL", "PIPE",
        "POLL", "PROF", "PWR", "QUIT", "SEGV", "STKFLT", "STOP", "SYS", "TERM", "TRAP", "TSTP", "TTIN", "TTOU",
        "URG", "USR1", "USR2", "VTALRM", "WINCH", "XCPU", "XFSZ", "RTMIN", "RTMAX",
        *(f"RTMIN+{n}" for n in range(1, 16)),
        *(f"RTMAX-{n}" for n in range(1, 15)),
    }
)  # fmt: skip


def valid_signal(raw: str) -> bool:
    """moby/sys/signal.ParseSignal: a non-zero number, or a Linux signal name with or without SIG."""
    if re.fullmatch(r"[+-]?[0-9]+", raw):
        return int(raw) != 0
    return raw.upper().removeprefix("SIG") in _SIGNALS


def _port_range(text: str) -> tuple[int, int]:
    start, dash, end = text.partition("-")
    if not start.isdigit() or (dash and not end.isdigit()):
        raise ValueError(text)
    low, high = int(start), int(end) if dash else int(start)
    if high < low or high > 65535:
        raise ValueError(text)
    return low, high


def exposed_ports(spec: str) -> list[str]:
    """docker/go-connections nat.ParsePortSpec as EXPOSE uses it: ``[ip:][host:]port[-end][/proto]`` ->
    ["80/tcp", ...] (the container ports; the host part is checked and dropped). ValueError names what is wrong."""
    parts = spec.split(":")
    container = parts[-1]
    host = parts[-2] if len(parts) >= 2 else ""
    port, slash, proto = container.partition("/")
    if not port:
        raise ValueError(f"No port specified: {spec}<empty>")
    proto = proto if slash and proto else "tcp"
    try:
        low, high = _port_range(port)
    except ValueError:
        raise ValueError(f"Invalid containerPort: {port}") from None
    if host:
        try:
            host_low, host_high = _port_range(host)
        except ValueError:
            raise ValueError(f"Invalid hostPort: {host}") from None
        if high - low != host_high - host_low and high != low:
            raise ValueError(f"Invalid ranges specified for container and host Ports: {port} and {host}")
    if proto.lower() not in ("tcp", "udp", "sctp"):
        raise ValueError(f"Invalid proto: {proto}")
    return [f"{number}/{proto.lower()}" for number in range(low, high + 1)]


def go_quote(text: str) -> str:
    """Go's strconv.Quote (``%q``): BuildKit's history lines for CMD and ENTRYPOINT print arguments with it."""
    escapes = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}
    out = ['"']
    for ch in text:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch in escapes:
            out.append(escapes[ch])
        elif ch.isprintable():
            out.append(ch)
        elif ord(ch) < 0x80:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) <= 0xFFFF:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    out.append('"')
    return "".join(out)


def go_list(items: list[str], *, quoted: bool = False) -> str:
    """A []string as Go's ``%v`` (``[a b]``) or ``%q`` (``["a" "b"]``) prints it."""
    return "[" + " ".join(go_quote(item) if quoted else item for item in items) + "]"
