"""Shell, cmd.exe and PowerShell commands in URI text, and the encodings that hide them
(docs/detection.md#uri-command): the command vocabulary, the decoders, and the prefilter
pattern that picks candidate URIs in the engine.

Everything here is pure Python over short strings; `uri_command` applies it to the few
requests the prefilter keeps.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import unquote, unquote_plus

__all__ = [
    "COMMAND_PARAMETERS",
    "COMMAND_VERBS",
    "COMPLETE",
    "FULL",
    "KEYWORD",
    "SEARCH_PARAMETERS",
    "Match",
    "Text",
    "best_match",
    "command_path",
    "decoded_texts",
    "is_prose",
    "match_text",
    "normalize",
    "prefilter_pattern",
    "readable",
]

# Strength of a match: a command with the arguments that make it do something, a command that
# is complete on its own (whoami, ipconfig), a bare keyword (powershell, /etc/passwd).
FULL, COMPLETE, KEYWORD = 1.0, 0.7, 0.35

_WHOLE = r"(?:\.exe)?\b"
_FULL_PATTERNS: tuple[tuple[str, str], ...] = (
    (
        "powershell-encoded",
        r"\b(?:powershell|pwsh)" + _WHOLE + r"[^|;&]*\s[-/]e(?:c|nc|ncodedcommand)?\s+"
        r"[a-z0-9+/=]{8,}",
    ),
    (
        "powershell-options",
        r"\b(?:powershell|pwsh)" + _WHOLE + r"[^|;&]*\s[-/](?:nop|noprofile|noni|noninteractive"
        r"|w(?:indowstyle)?\s+h(?:idden)?|ep\s+bypass|exec(?:utionpolicy)?\s+bypass"
        r"|c(?:ommand)?\s+\S)",
    ),
    (
        "powershell-download",
        r"new-object\s+(?:system\.)?net\.webclient|\.download(?:string|file|data)\s*\("
        r"|\b(?:invoke-webrequest|iwr|invoke-restmethod|irm|start-bitstransfer)\s+"
        r"[^|;]{0,80}https?://",
    ),
    ("powershell-execute", r"\b(?:iex|invoke-expression)\s*[(\$'\"]|::frombase64string\s*\("),
    ("cmd-c", r"\bcmd" + _WHOLE + r"\s+/[ckr]\s+\S"),
    (
        "unix-shell",
        r"(?:/bin/(?:ba|da|z)?sh|\b(?:ba|z)?sh)\s+-c\s+\S|\bbash\s+-i\b|/dev/tcp/\d"
        r"|\bnc(?:at)?\s+(?:-\w+\s+)*-e\s+\S|\bmkfifo\s",
    ),
    (
        "download-and-run",
        r"\b(?:wget|curl|tftp|ftpget)\b[^|;&]{0,200}(?:https?|ftp)://"
        r"|\b(?:wget|curl)\b[^|;&]{0,200}\|\s*(?:ba|da)?sh\b",
    ),
    ("certutil", r"\bcertutil" + _WHOLE + r"[^|;&]*\s[-/](?:urlcache|decode|decodehex|encode)\b"),
    (
        "bitsadmin",
        r"\bbitsadmin" + _WHOLE + r"[^|;&]*\s/(?:transfer|addfile|create|setnotifycmdline)\b",
    ),
    (
        "proxy-execution",
        r"\bmshta" + _WHOLE + r"\s+\S*(?:https?://|javascript:|vbscript:)"
        r"|\bregsvr32" + _WHOLE + r"[^|;&]*\s/i:\S*https?://|\brundll32" + _WHOLE + r"\s+\S+,\s*\S"
        r"|\bwmic" + _WHOLE + r"[^|;&]*\b(?:process\s+call\s+create|shadowcopy\s+delete)",
    ),
    (
        "account-discovery",
        r"\bnet1?" + _WHOLE + r"\s+(?:user|localgroup|group|view|share|use|session|accounts)\b",
    ),
    (
        "read-secrets",
        r"\b(?:cat|type|more|head|tail|less)\s+\S*(?:/etc/(?:passwd|shadow|hosts|issue|group)"
        r"|win\.ini|\.ssh/|\.bash_history|web\.config|wp-config\.php)",
    ),
    (
        "recon-with-options",
        r"\b(?:uname\s+-[a-z]+|ipconfig\s+/\w+|ifconfig\s+-a|ls\s+-[a-z]+\b"
        r"|dir\s+(?:/\w\s+)*[a-z]:\\"
        r"|netstat\s+-[a-z]+|ps\s+-?(?:aux|ef)\b|whoami\s+/\w+|tasklist\s+/\w"
        r"|find\s+/\S*\s+-(?:name|perm|type)\b|reg" + _WHOLE + r"\s+(?:query|add|save)\s+hk"
        r"|schtasks" + _WHOLE + r"\s+/(?:create|run)\b|chmod\s+(?:\+x|[0-7]{3,4})\s+\S"
        r"|rm\s+-[rf]+\s+\S|echo\s+\S[^|;]*>\s*\S|python[23]?\s+-c\s|perl\s+-e\s|php\s+-r\s)",
    ),
)
# Recon commands that are complete without arguments, at the start of the text or after a shell
# separator: `whoami`, `;id`, `|hostname`.
_STANDALONE = (
    "whoami|id|pwd|uname|hostname|ipconfig|ifconfig|systeminfo|tasklist|netstat|ps|env|ver"
    "|quser|qwinsta|arp|route|uptime|getmac|nltest|klist|dir"
)
_COMPLETE_PATTERN = re.compile(
    r"(?:^|[;|&`\n]|\$\()\s*(" + _STANDALONE + r")(?:\.exe)?(?=$|[\s;|&`)])"
)
_KEYWORD_PATTERN = re.compile(
    r"\b(?:powershell|pwsh|cmd\.exe|certutil|bitsadmin|mshta|rundll32|regsvr32|wmic|whoami"
    r"|ipconfig|systeminfo|invoke-expression|downloadstring|frombase64string|wget|curl|iex)\b"
    r"|/bin/(?:ba|da|z)?sh\b|/etc/(?:passwd|shadow)\b"
)
_FULL = tuple((name, re.compile(pattern)) for name, pattern in _FULL_PATTERNS)


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# First words of shell and cmd.exe commands: a value of a command parameter (`cmd=...`) that
# starts with one of them, with arguments, is a command. A lone word is not (elFinder's file
# manager sends `cmd=ls`, `cmd=rm`, `cmd=mkdir` by design), except the recon commands above.
COMMAND_VERBS = _words(
    "ls dir id pwd cat echo whoami uname ps netstat ipconfig ifconfig ip net net1 wget curl cd"
    " powershell pwsh cmd python python3 perl php ruby nc ncat bash sh zsh chmod chown rm del"
    " mkdir mv cp tasklist taskkill systeminfo hostname grep head tail env ping nslookup"
    " certutil bitsadmin reg wmic schtasks sc quser arp route uptime crontab sudo base64 tar"
    " kill pkill killall touch find type more tftp telnet ssh scp nohup busybox dig who last"
    " history copy move xcopy attrib icacls runas vssadmin wevtutil bcdedit mshta rundll32"
    " regsvr32 cscript wscript"
)
# Parameters that carry commands in web shells and C2 tasking; `c` is ambiguous (MVC routers use
# `c=controller`), so its value must also have arguments.
COMMAND_PARAMETERS = _words(
    "cmd exec execute command cmnd run shell sh bash powershell pwsh ps system passthru c"
)
_AMBIGUOUS_PARAMETERS = frozenset({"c"})
# Parameters of search boxes and site search: their text is someone's question.
SEARCH_PARAMETERS = _words(
    "q query search s p term keyword keywords k text wd searchterm search_query"
)
_PROSE_WORDS = _words(
    "how to what is the a an use using for in of with does do why example examples tutorial"
    " command commands linux windows vs and or on install run"
)
_SHELL_SYNTAX = re.compile(r"[|;&`<>]|\$\(|\s-{1,2}[a-z]|\s/[a-z]\b")

_B64_TOKEN = re.compile(r"[A-Za-z0-9+/_-]{8,}={0,2}")
_HEX_TOKEN = re.compile(r"(?:0x)?((?:[0-9a-fA-F]{2}){4,})")
_ESCAPED_HEX = re.compile(r"(?:\\x[0-9a-fA-F]{2}){4,}")
_PERCENT_ASCII = re.compile(r"(?:%[2-7][0-9a-fA-F]){4,}")
MAX_TEXT = 4096  # longer decoded texts are cut: commands are short, evidence must stay small


@dataclass(frozen=True, slots=True)
class Text:
    """A text to look for commands in: where it came from and how it was encoded."""

    text: str
    encoding: str  # "plain", "percent", "base64", "base64url", "hex", with "+utf-16le"
    where: str  # the parameter name, or "path"


@dataclass(frozen=True, slots=True)
class Match:
    """The strongest command found in a text."""

    strength: float  # FULL, COMPLETE or KEYWORD
    pattern: str  # which rule matched, e.g. "powershell-encoded", "command-parameter"
    text: Text


def normalize(text: str) -> str:
    """Lower case, whitespace runs as one space: the form the patterns read."""
    return " ".join(text.lower().split())


def readable(raw: bytes) -> str | None:
    """`raw` as text when it is text (UTF-8, or UTF-16LE as PowerShell -enc uses), else None:
    random tokens, hashes and binary structures decode to junk and are dropped here."""
    if len(raw) >= 4 and len(raw) % 2 == 0 and raw[1::2].count(0) >= 0.9 * (len(raw) // 2):
        try:
            text = raw.decode("utf-16-le")
        except UnicodeDecodeError:
            return None
        return text if _printable(text) else None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return text if _printable(text) else None


def _printable(text: str) -> bool:
    if len(text) < 2:
        return False
    good = sum(1 for ch in text if ch.isprintable() or ch in "\t\r\n")
    return good >= 0.95 * len(text) and any(ch.isalpha() for ch in text)


def _base64(token: str) -> tuple[bytes, str] | None:
    urlsafe = "-" in token or "_" in token
    body = token.rstrip("=")
    if len(body) % 4 == 1:
        body = body[:-1]
    padded = body + "=" * (-len(body) % 4)
    try:
        if urlsafe:
            return base64.b64decode(padded, altchars=b"-_", validate=True), "base64url"
        return base64.b64decode(padded, validate=True), "base64"
    except (binascii.Error, ValueError):
        return None


def _decoded_tokens(text: str) -> Iterator[tuple[str, str]]:
    """(decoded text, encoding) of every base64, hex or escaped-hex token of `text` that
    decodes to readable text."""
    for match in _B64_TOKEN.finditer(text):
        token = match.group(0)
        if token.isdigit() or (token.isalpha() and token.islower()):
            continue  # a number or a word, not a blob
        found = _base64(token)
        if found is not None:
            raw, encoding = found
            decoded = readable(raw)
            if decoded is not None:
                wide = len(raw) % 2 == 0 and decoded.encode("utf-16-le") == raw
                yield decoded, encoding + ("+utf-16le" if wide else "")
    for match in _HEX_TOKEN.finditer(text):
        decoded = readable(bytes.fromhex(match.group(1)))
        if decoded is not None:
            yield decoded, "hex"
    for match in _ESCAPED_HEX.finditer(text):
        decoded = readable(bytes.fromhex(match.group(0).replace("\\x", "")))
        if decoded is not None:
            yield decoded, "hex"


def _texts_of(raw: str, where: str, *, plain: bool = True) -> Iterator[Text]:
    """The text of one path or parameter value (`raw` as logged, already split), and what its
    encoded tokens decode to, one level deeper too (a PowerShell -enc blob in a value)."""
    value = unquote_plus(raw) if where != "path" else unquote(raw)
    if "%" in value:
        value = unquote(value)  # double encoding
    if plain:
        encoding = "percent" if _PERCENT_ASCII.search(raw) else "plain"
        yield Text(value[:MAX_TEXT], encoding, where)
    for decoded, how in _decoded_tokens(value):
        yield Text(decoded[:MAX_TEXT], how, where)
        for inner, inner_how in _decoded_tokens(decoded):
            yield Text(inner[:MAX_TEXT], f"{how}>{inner_how}", where)


def decoded_texts(path: str, query: str | None) -> list[Text]:
    """Every text a request's path and query hold: the path, each parameter value (percent-
    decoded, twice for double encoding), and what their base64, hex and escaped-hex tokens
    decode to. Path segments are searched for tokens one by one as well, since standard
    base64 may itself contain `/`."""
    found = list(_texts_of(path, "path"))
    segments = [s for s in path.split("/") if s]
    if len(segments) > 1:
        for segment in segments:
            found.extend(_texts_of(segment, "path", plain=False))
    for pair in (query or "").split("&"):
        name, equals, value = pair.partition("=")
        if equals:
            found.extend(_texts_of(value, unquote_plus(name).lower()))
        elif name:
            found.extend(_texts_of(name, "query"))
    return found


def _command_parameter(text: Text, lowered: str) -> float:
    """Strength of a command-parameter value (`cmd=ls -la`), 0 when it is not a command."""
    if text.where not in COMMAND_PARAMETERS:
        return 0.0
    words = lowered.split()
    if not words:
        return 0.0
    verb = words[0].rsplit("/", 1)[-1].rsplit("\\", 1)[-1].removesuffix(".exe")
    if verb not in COMMAND_VERBS:
        return 0.0
    if len(words) > 1:
        return COMPLETE if text.where in _AMBIGUOUS_PARAMETERS else FULL
    if text.where in _AMBIGUOUS_PARAMETERS or verb == "ls":
        return 0.0
    return COMPLETE if _COMPLETE_PATTERN.match(lowered) else 0.0


def match_text(text: Text) -> Match | None:
    """The strongest command in one text, or None."""
    lowered = normalize(text.text)
    for name, pattern in _FULL:
        if pattern.search(lowered):
            return Match(FULL, name, text)
    if _chained(lowered):
        return Match(FULL, "chained-commands", text)
    parameter = _command_parameter(text, lowered)
    if parameter == FULL:
        return Match(FULL, "command-parameter", text)
    if parameter or _COMPLETE_PATTERN.search(lowered):
        return Match(COMPLETE, "command-parameter" if parameter else "recon-command", text)
    if _KEYWORD_PATTERN.search(lowered):
        return Match(KEYWORD, "keyword", text)
    return None


def _chained(lowered: str) -> bool:
    """Two or more commands joined by shell separators (`cd /tmp;wget ...;chmod ...`)."""
    parts = [p.split() for p in re.split(r"[;|&\n]+|\$\(|`", lowered)]
    return sum(1 for words in parts if words and words[0] in COMMAND_VERBS) >= 2


def best_match(texts: list[Text]) -> Match | None:
    """The strongest match among `texts`; on a tie the most deeply decoded text wins (the
    script inside `powershell -enc ...` is the evidence), then the first."""
    best: Match | None = None
    for text in texts:
        found = match_text(text)
        if found is None:
            continue
        if best is None or (found.strength, _depth(found)) > (best.strength, _depth(best)):
            best = found
    return best


def _depth(match: Match) -> int:
    """Layers of encoding the text was under: 0 as logged (or percent-escaped), 1 for one
    base64/hex layer, 2 for a blob inside a blob."""
    if match.text.encoding in ("plain", "percent"):
        return 0
    return 1 + match.text.encoding.count(">")


def is_prose(text: str) -> bool:
    """A sentence about a command rather than a command: three or more words, one of them a
    common English function word, and no shell syntax (pipes, separators, options)."""
    lowered = normalize(text)
    words = lowered.split()
    return (
        len(words) >= 3
        and any(w in _PROSE_WORDS for w in words)
        and not _SHELL_SYNTAX.search(lowered)
    )


# --- the prefilter: a cheap regular expression the engine runs over every URI ----------------

# Keywords whose base64 and hex forms the prefilter looks for (case matters in base64, so the
# spellings commands are written in).
_ENCODED_KEYWORDS = (
    "whoami", "ipconfig", "ifconfig", "systeminfo", "tasklist", "hostname", "uname -", "ls -",
    "powershell", "PowerShell", "POWERSHELL", "cmd.exe", "cmd /c", "CMD /C", "/bin/sh",
    "/bin/bash", "bash -", "/etc/passwd", "/etc/shadow", "net user", "net localgroup",
    "wget http", "curl http", "wget -", "curl -", "certutil", "bitsadmin", "IEX (", "IEX(",
    "iex (", "Invoke-", "invoke-", "DownloadString", "New-Object", "FromBase64", "/dev/tcp/",
    "cat /etc", "chmod ", "python -c", "nc -e", "mshta ", "rundll32", "regsvr32", "dir c:",
    "dir C:", "nltest", "net group", "net view", "net use", "net share", "reg query", "arp -a",
    "netstat", "quser", "schtasks", "wmic ", "Get-", "Set-", "Start-",
)  # fmt: skip
_WIDE_KEYWORDS = (
    "IEX", "iex", "Invoke-", "invoke-", "New-Object", "new-object", "DownloadString",
    "powershell", "Start-Process", "whoami", "cmd.exe", "net user", "$client", "Net.WebClient",
)  # fmt: skip
_PLAIN_KEYWORDS = (
    r"whoami|ipconfig|ifconfig|systeminfo|tasklist|powershell|pwsh|cmd\.exe|certutil|bitsadmin"
    r"|downloadstring|downloadfile|frombase64string|invoke-expression|new-object|mshta|rundll32"
    r"|regsvr32|/etc/passwd|/etc/shadow|/bin/(?:ba|da|z)?sh|/dev/tcp/|\biex\b"
    r"|(?:wget|curl|uname|netstat|nc|chmod)(?:\+|%20|\s)+[-/a-z0-9]"
    r"|\bnet1?(?:\+|%20|\s)+(?:user|localgroup|group|view|share|use)"
    r"|cmd(?:\+|%20|\s)+/[ck]"
    r"|(?:;|%3b|\||%7c|%60|\$\(|%24%28)(?:\+|%20|\s)*(?:id|whoami|uname|cat|ls|wget|curl|sh|bash)\b"
)
_SEPARATOR = r"(?:$|[&+ ;]|%20|%0a|%3b|%7c)"


def _base64_cores(word: bytes) -> list[str]:
    """The base64 characters that encode `word` whatever its offset in the encoded data (the
    three alignments), without the edge characters that depend on neighbouring bytes."""
    cores = []
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + word).decode("ascii")
        first = -(-8 * offset // 6)
        last = 8 * (offset + len(word)) // 6
        cores.append(encoded[first:last])
    return cores


def _core_pattern(core: str) -> str:
    """A base64 core as a regular expression matching both alphabets and percent-escapes."""
    out = []
    for ch in core:
        if ch == "+":
            out.append(r"(?:\+|-|%2[bB])")
        elif ch == "/":
            out.append(r"(?:/|_|%2[fF])")
        else:
            out.append(ch)
    return "".join(out)


def prefilter_pattern() -> str:
    """One regular expression over the URI as logged: keywords, command parameters whose value
    starts with a command, runs of percent-escaped ASCII and the hex forms of command keywords
    (case-insensitive), and the base64 forms of command keywords (case-sensitive). Plain
    syntax that both RE2 (DuckDB) and java.util.regex (Spark) read; one pattern, one pass."""
    verbs = "|".join(sorted(COMMAND_VERBS, key=lambda v: (-len(v), v)))
    names = "|".join(sorted(COMMAND_PARAMETERS - _AMBIGUOUS_PARAMETERS))
    hexes = sorted({w.encode().hex() for w in _ENCODED_KEYWORDS})
    lowered = "|".join(
        [
            _PLAIN_KEYWORDS,
            rf"(?:^|[?&;/])(?:{names})=(?:[^&]*(?:%2f|/))?(?:{verbs}){_SEPARATOR}",
            rf"(?:^|[?&;/])(?:{names})=[a-z0-9+/%_=-]{{8,}}",  # a blob in a command parameter
            rf"(?:^|[?&;])c=(?:{verbs})(?:\+|%20| )",
            r"(?:%[2-7][0-9a-f]){8,}",
            *hexes,
        ]
    )
    cores = {
        core
        for word in _ENCODED_KEYWORDS
        for core in _base64_cores(word.encode())
        if len(core) >= 6
    }
    cores |= {
        core
        for word in _WIDE_KEYWORDS
        for core in _base64_cores(word.encode("utf-16-le"))
        if len(core) >= 6
    }
    logged = "|".join(_core_pattern(c) for c in sorted(cores))
    return f"(?i:{lowered})|{logged}"


_SHELL_CUT = re.compile(r"[;|`$\s]")


def command_path(path: str) -> str:
    """The path with the part that carries a command replaced by `{command}`, so commands sent
    through one script are one series: `/api/exec/d2hvYW1p` -> `/api/exec/{command}`,
    `/cgi-bin/;cat%20/etc/passwd` -> `/cgi-bin/{command}`; the path itself otherwise."""
    segments = path.split("/")
    for i, segment in enumerate(segments):
        if not segment:
            continue
        carries = best_match(list(_texts_of(segment, "path"))) is not None
        if carries or _SHELL_CUT.search(unquote(segment)):
            return "/".join([*segments[:i], "{command}"])
    return path
