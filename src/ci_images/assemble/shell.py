"""Variable expansion in Dockerfile words, as BuildKit's shell lexer does it.

A port of moby/buildkit ``frontend/dockerfile/shell/lex.go`` (master, 2025; the same rules as the copy vendored in
Docker 20.10's classic builder, plus the modifiers added since): ``$var``, ``${var}``, ``${var:-word}``,
``${var:+word}``, ``${var-word}``, ``${var+word}``, ``${var?msg}``, ``${var:?msg}``, ``${var#pattern}``,
``${var##pattern}``, ``${var%pattern}``, ``${var%%pattern}``, ``${var/pattern/repl}``, ``${var//pattern/repl}``;
single and double quotes are removed, the escape token (``\\`` or the ``# escape=`` directive's) escapes the next
character.

Two deliberate differences, both where BuildKit's own versions disagree:
- Docker 20.10's classic builder (buildkit v0.8 lexer) knows only the ``:``-forms, ``${var}`` and ``${var?msg}``;
  the others fail there with "missing ':' in substitution". Newer builders accept them; so does this port.
- Since dockerfile/1.10 (commit 4c935cf9a, "parser: optimize memory usage on env processing") ``ProcessWords`` shares
  one word buffer with the nested call that reads a ``${...}`` modifier's word, so ``a${x:-b}c`` splits as ``bc``.
  Only EXPOSE splits words; this port keeps the earlier, intended result ``abc``.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping

from ci_images.assemble.gotypes import go_quote

EOF = ""


class ExpansionError(ValueError):
    """A word the lexer cannot process (BuildKit fails the build with the same text)."""


def is_go_space(ch: str) -> bool:
    """Go's unicode.IsSpace."""
    if ch in "\t\n\v\f\r \x85\xa0":
        return True
    return ord(ch) > 0xFF and unicodedata.category(ch) in ("Zs", "Zl", "Zp")


def _is_digit(ch: str) -> bool:
    return unicodedata.category(ch) == "Nd"


def _is_special_param(ch: str) -> bool:
    # POSIX special parameters: $@ $* $# $? $- $$ $! $0
    return ch in "@*#?-$!0"


class _Words:
    """wordsStruct: splits on unquoted whitespace (what EXPOSE's ProcessWords returns)."""

    def __init__(self) -> None:
        self.buf = ""
        self.words: list[str] = []
        self.in_word = False

    def add_char(self, ch: str) -> None:
        if is_go_space(ch) and self.in_word:
            if self.buf:
                self.words.append(self.buf)
                self.buf = ""
                self.in_word = False
        elif not is_go_space(ch):
            self.add_raw_char(ch)

    def add_raw_char(self, ch: str) -> None:
        self.buf += ch
        self.in_word = True

    def add_string(self, text: str) -> None:
        for ch in text:
            self.add_char(ch)

    def add_raw_string(self, text: str) -> None:
        self.buf += text
        self.in_word = True

    def get_words(self) -> list[str]:
        if self.buf:
            self.words.append(self.buf)
            self.buf = ""
            self.in_word = False
        return self.words


class _ShellWord:
    def __init__(self, word: str, env: Mapping[str, str], escape: str) -> None:
        self.text = word
        self.pos = 0
        self.env = env
        self.escape = escape
        self.raw_escapes = False

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else EOF

    def next(self) -> str:
        ch = self.peek()
        if ch != EOF:
            self.pos += 1
        return ch

    def process(self) -> tuple[str, list[str]]:
        try:
            return self.process_stop_on(EOF, raw_escapes=False)
        except ExpansionError as exc:
            raise ExpansionError(f"failed to process {go_quote(self.text)}: {exc}") from None

    def process_stop_on(self, stop: str, *, raw_escapes: bool) -> tuple[str, list[str]]:
        result: list[str] = []
        words = _Words()
        saved, self.raw_escapes = self.raw_escapes, raw_escapes
        try:
            while self.peek() != EOF:
                ch = self.peek()
                if stop != EOF and ch == stop:
                    self.next()
                    return "".join(result), words.get_words()
                if ch in "$<'\"":
                    special = {
                        "$": self.process_dollar,
                        "<": self.process_possible_heredoc,
                        "'": self.process_single_quote,
                        '"': self.process_double_quote,
                    }[ch]
                    text = special()
                    result.append(text)
                    if ch == "$":
                        words.add_string(text)
                    else:
                        words.add_raw_string(text)
                    continue
                ch = self.next()
                if ch == self.escape:
                    if self.raw_escapes:
                        words.add_raw_char(ch)
                        result.append(ch)
                    ch = self.next()
                    if ch == EOF:
                        break
                    words.add_raw_char(ch)
                else:
                    words.add_char(ch)
                result.append(ch)
        finally:
            self.raw_escapes = saved
        if stop != EOF:
            raise ExpansionError(f"unexpected end of statement while looking for matching {stop}")
        return "".join(result), words.get_words()

    def process_single_quote(self) -> str:
        self.next()
        result: list[str] = []
        while True:
            ch = self.next()
            if ch == EOF:
                raise ExpansionError("unexpected end of statement while looking for matching single-quote")
            if ch == "'":
                return "".join(result)
            result.append(ch)

    def process_double_quote(self) -> str:
        self.next()
        result: list[str] = []
        while True:
            peeked = self.peek()
            if peeked == EOF:
                raise ExpansionError("unexpected end of statement while looking for matching double-quote")
            if peeked == '"':
                self.next()
                return "".join(result)
            if peeked == "$":
                result.append(self.process_dollar())
                continue
            ch = self.next()
            if ch == self.escape:
                if self.raw_escapes:
                    result.append(ch)
                following = self.peek()
                if following == EOF:
                    continue  # a trailing escape inside quotes is dropped
                if following in ('"', "$", self.escape):
                    ch = self.next()
            result.append(ch)

    def process_possible_heredoc(self) -> str:
        self.next()
        if self.peek() != "<":
            return "<"
        self.next()
        space = ""
        while self.peek() in (" ", "\t"):
            space += self.next()
        return "<<" + space

    def process_name(self) -> str:
        name = ""
        while self.peek() != EOF:
            ch = self.peek()
            if not name and _is_digit(ch):
                while self.peek() != EOF and _is_digit(self.peek()):
                    name += self.next()
                return name
            if not name and _is_special_param(ch):
                return self.next()
            if not (ch.isalpha() or _is_digit(ch) or ch == "_"):
                break
            name += self.next()
        return name

    def get_env(self, name: str) -> str | None:
        return self.env.get(name)

    def process_dollar(self) -> str:
        self.next()
        if self.peek() != "{":
            name = self.process_name()
            if not name:
                return "$"
            return self.get_env(name) or ""
        self.next()
        return self._braced()

    def _braced(self) -> str:
        """What follows ``${``: a name, then ``}`` or a modifier."""
        if self.peek() == EOF:
            raise ExpansionError("syntax error: missing '}'")
        if self.peek() in "{}:":
            raise ExpansionError("syntax error: bad substitution")
        name = self.process_name()
        ch = self.next()
        modifier = ch
        null_is_unset = False
        if ch == "}":
            return self.get_env(name) or ""
        if ch == ":":
            null_is_unset = True
            ch = self.next()
            modifier += ch
        if ch == EOF:
            raise ExpansionError("syntax error: missing '}'")
        if ch in ("+", "-", "?", "#", "%"):
            if null_is_unset and ch in ("#", "%"):
                raise ExpansionError(f"unsupported modifier ({modifier}) in substitution")
            return self._modified(name, ch, null_is_unset=null_is_unset)
        if ch == "/" and not null_is_unset:
            return self._replaced(name)
        raise ExpansionError(f"unsupported modifier ({modifier}) in substitution")

    def _modified(self, name: str, ch: str, *, null_is_unset: bool) -> str:
        """``${name-word}``, ``${name+word}``, ``${name?msg}`` (with ``:``: null counts as unset) and the trims
        ``${name#pat}``, ``${name##pat}``, ``${name%pat}``, ``${name%%pat}``."""
        word = self._word_until("}", raw_escapes=ch in ("#", "%"))
        value = self.get_env(name)
        unset_or_null = value is None or (null_is_unset and value == "")
        if ch == "-":
            return word if unset_or_null else (value or "")
        if ch == "+":
            return "" if unset_or_null else word
        if ch == "?":
            if value is None:
                raise ExpansionError(f"{name}: {word or 'is not allowed to be unset'}")
            if null_is_unset and value == "":
                raise ExpansionError(f"{name}: {word or 'is not allowed to be empty'}")
            return value
        greedy = word.startswith(ch)
        if greedy:
            word = word[1:]
        if ch == "%":
            return _trim_suffix(word, value or "", greedy=greedy)
        return _trim_prefix(word, value or "", greedy=greedy)

    def _replaced(self, name: str) -> str:
        """``${name/pattern/replacement}`` and ``${name//pattern/replacement}``."""
        replace_all = self.peek() == "/"
        if replace_all:
            self.next()
        try:
            pattern, _ = self.process_stop_on("/", raw_escapes=True)
        except ExpansionError:
            if self.peek() == EOF:
                raise ExpansionError("syntax error: missing '/' in ${}") from None
            raise
        replacement = self._word_until("}", raw_escapes=True)
        value = self.get_env(name) or ""
        regex = _shell_pattern(pattern, greedy=True, anchored=False)
        return regex.sub(lambda _m: replacement, value, count=0 if replace_all else 1)

    def _word_until(self, stop: str, *, raw_escapes: bool) -> str:
        try:
            word, _ = self.process_stop_on(stop, raw_escapes=raw_escapes)
        except ExpansionError:
            if self.peek() == EOF:
                raise ExpansionError("syntax error: missing '}'") from None
            raise
        return word


def _shell_pattern(pattern: str, *, greedy: bool, anchored: bool) -> re.Pattern[str]:
    """convertShellPatternToRegex: ``?`` one character, ``*`` the shortest (or, greedy, longest) run; no ``[]``."""
    out = "^" if anchored else ""
    star = ".*" if greedy else ".*?"
    i = 0
    while i < len(pattern):
        tok = pattern[i]
        i += 1
        if tok == "*":
            out += star
            continue
        if tok == "?":
            out += "."
            continue
        if tok == "\\":
            following = pattern[i] if i < len(pattern) else EOF
            if following in ("}", "/"):
                continue  # escaped only for the ${} syntax, not part of the pattern
            out += "\\"
            tok = following
            i += 1
            if tok not in ("*", "?", "\\"):
                raise ExpansionError(f"invalid pattern ({pattern}) in substitution: invalid escape '\\{tok}'")
        elif tok in "[]{}.+()|^$":
            out += "\\"
        out += tok
    return re.compile(out)


def _trim_prefix(pattern: str, value: str, *, greedy: bool) -> str:
    match = _shell_pattern(pattern, greedy=greedy, anchored=True).search(value)
    return value[match.end() :] if match else value


def _reverse_pattern(pattern: str) -> str:
    """Reverse a pattern keeping each escape before the character it escapes (a\\*c -> c\\*a)."""
    out = [""] * len(pattern)
    last = len(pattern) - 1
    i = 0
    while i <= last:
        tok = pattern[i]
        at = last - i
        if tok == "\\" and i != last:
            out[at - 1] = tok
            out[at] = pattern[i + 1]
            i += 2
        else:
            out[at] = tok
            i += 1
    return "".join(out)


def _trim_suffix(pattern: str, value: str, *, greedy: bool) -> str:
    # Regular expressions cannot find the shortest rightmost match: reverse both and trim a prefix.
    return _trim_prefix(_reverse_pattern(pattern), value[::-1], greedy=greedy)[::-1]


def process_word(word: str, env: Mapping[str, str], *, escape: str = "\\") -> str:
    """One word with its variables expanded and quotes removed (ProcessWord)."""
    result, _ = _ShellWord(word, env, escape).process()
    return result


def process_words(word: str, env: Mapping[str, str], *, escape: str = "\\") -> list[str]:
    """The word expanded, then split on unquoted whitespace (ProcessWords; EXPOSE uses it)."""
    _, words = _ShellWord(word, env, escape).process()
    return words
