"""Text rules: the one place that says what a sentence, a word, a name, a number and clean text are.

Owns
- `markdown_to_text`: lore markdown rendered to plain prose from markdown-it-py's tokens (list items and table rows
  become sentences; headings, code and HTML tags go);
- `split_sentences` / `first_sentence`: the one sentence splitter of the code base (rules below);
- `words`, `proper_names`, `numbers`: the tokens that support checks and reply metrics compare;
- `markup_problems` / `is_fragment`: what makes a reply not clean text (leftover markdown, HTML, fragments,
  an unterminated end, unbalanced quotes or brackets).

Sentence rules. A sentence ends at `.`, `!`, `?`, `…` or `...` (with any closing quotes or brackets after it) when
whitespace follows and the next sentence starts with an upper-case letter or a digit (after any opening quote,
bracket, `¿` or `¡`); a blank line always ends one. These do not end a sentence: a title or Latin abbreviation
(`ABBREVIATIONS`: Mr., Dr., St., Fr., e.g., vs. ...), `No.`/`p.`/`c.` before a number, an initial ("J. R. Tolkien"),
a dotted abbreviation ("U.S."), an end inside a quotation or bracket that closes later in the paragraph (a quoted
line of two sentences stays one, with its quotes balanced). Decimals ("3.5") are never split. A piece without
a letter or digit (a stray "...") joins the sentence before it, so no piece is ever a fragment.
Not a package: pysbd 0.3.4 (unmaintained) splits after "Fr." and "c." at 2.4 ms per 100 words; sentencex 1.0.32
misses "No. Walked?" and splits after "Br.". These rules: every case above, about 0.07 ms per 100 words."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from markdown_it import MarkdownIt
from markdown_it.token import Token


# --- vocabularies (language rules, not any world's words) -----------------------------------------------------------
def _listed(text: str) -> list[str]:  # word lists written as one string
    return text.split()


ABBREVIATIONS = frozenset(_listed("""mr mrs ms mx dr st fr br sr sra srta dna prof rev hon capt col gen lt sgt cpl mt ft
e.g i.e vs cf viz ca approx dept esp"""))
ABBREVIATIONS_BEFORE_NUMBER = frozenset(_listed("no nos nr p pp c vol ch fig art sec op"))
NAME_JOINERS = frozenset(_listed("de del la las los of the van von y da di du le"))
FUNCTION_WORDS = frozenset(_listed("""a an the and or but nor so yet if then than that this these those there here
it its it's i i'm i'll i've i'd me my mine we us our you your he him his she her they them their who whom whose
which what when where why how not no yes let to of in on at by for with from as is are was were be been am do does did
has have had will would shall should can could may might must"""))
EVERYDAY = frozenset(_listed("""i sir madam ma'am mister miss mr mrs ms dr ok okay monday tuesday wednesday thursday
friday saturday sunday january february march april may june july august september october november december"""))
NUMBER_WORDS = {w: i + 1 for i, w in enumerate(_listed(
    "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen "
    "eighteen nineteen twenty"))} | {"hundred": 100, "thousand": 1000} | {w: i + 1 for i, w in enumerate(_listed(
    "first second third fourth fifth sixth seventh eighth ninth tenth"))}
_SENTENCE_FINAL_ABBREVIATIONS = frozenset(_listed("etc al inc ltd co"))
FRAGMENT_STARTS = frozenset(_listed("""which whom whose whereby wherein whereas called named known including nor than
rises lies stands"""))

_OPENERS = "\"'“‘«([¿¡—–-"
_QUOTE_OPENERS = "\"“‘«(¿¡"
_CLOSERS = "\"'”’»)]"
_WORD = re.compile(r"[^\W_]+(?:['’\-][^\W_]+)*")
_NUMBER = re.compile(r"(?<![\w,])(\d+(?:[.,:]\d+)*)(?:st|nd|rd|th|s)?(?!\w)")
_CANDIDATE = re.compile(rf"(?:\.\.\.|…|[.!?])+[{re.escape(_CLOSERS)}]*\s+")
_PARAGRAPH = re.compile(r"\n[ \t]*\n\s*")
_TERMINATED = re.compile(rf"(?:[.!?…])[{re.escape(_CLOSERS)}]*$")


# --- sentences ------------------------------------------------------------------------------------------------------
def _abbreviated(text: str, mark_start: int, next_char: str) -> bool:
    """Is the period at `mark_start` an abbreviation's (Dr., e.g., No. 5, J. R., U.S.) rather than an end?"""
    before = text[:mark_start]
    token = before.rsplit(None, 1)[-1].lstrip(_OPENERS) if before.strip() else ""
    low = token.lower()
    if low in ABBREVIATIONS or (low in ABBREVIATIONS_BEFORE_NUMBER and next_char.isdigit()):
        return True
    if len(token) == 1 and token.isalpha() and token.isupper() and token != "I":
        return True  # an initial: J. R. Tolkien
    return bool(re.fullmatch(r"(?:[^\W\d_]\.)+[^\W\d_]", token))  # dotted: e.g, U.S, i.e


def _is_boundary(text: str, mark_start: int, mark: str, after: int) -> bool:
    """Does the end mark `mark` at `mark_start` (whitespace up to `after`) end a sentence?"""
    rest = text[after:].lstrip(_OPENERS)
    if not rest or not (rest[0].isupper() or rest[0].isdigit()):
        return False
    if not mark.startswith(".") or mark.startswith(".."):
        return True  # ! ? … or an ellipsis before a capital
    return not _abbreviated(text, mark_start, rest[0])


def _lowercase_restarts(text: str) -> list[str]:
    """Places where a plain period ends a sentence and the next one starts in lower case ("old. and they"): two
    pieces glued together, the second cut mid-sentence. Ellipses, quotes ('"Stop!" he said') and abbreviations
    (e.g., etc.) are not counted."""
    return [text[m.end():m.end() + 40] for m in _restarts(text)]


def _restarts(text: str) -> list[re.Match]:
    """The plain periods (with their whitespace) after which a lower-case word starts, abbreviations excepted."""
    out = []
    for m in re.finditer(r"(?<![.…])\.\s+(?=[^\W\d_])", text):
        nxt = text[m.end()]
        token = text[:m.start()].rsplit(None, 1)[-1].lower() if text[:m.start()].strip() else ""
        if nxt.islower() and token not in _SENTENCE_FINAL_ABBREVIATIONS and not _abbreviated(text, m.start(), nxt):
            out.append(m)
    return out


def typed_sentences(text: str) -> list[str]:
    """A player's typed line as sentences: `split_sentences`, where a plain period before a lower-case word also ends
    one ("long day lol. anyway how many ..."), abbreviations (e.g., etc.) excepted. Lore keeps `split_sentences`."""
    out = []
    for sentence in split_sentences(text):
        start = 0
        for m in _restarts(sentence):
            out.append(sentence[start:m.start() + 1].strip())
            start = m.end()
        out.append(sentence[start:].strip())
    return [s for s in out if s]


def _quoted_spans(par: str) -> list[tuple[int, int]]:
    """(open, close) positions of the quotations and brackets that close within the paragraph."""
    spans, stack = [], []
    pairs = {"“": "”", "«": "»", "(": ")", "[": "]"}
    straight = None
    for i, ch in enumerate(par):
        if ch == '"':
            if straight is None:
                straight = i
            else:
                spans.append((straight, i))
                straight = None
        elif ch in pairs:
            stack.append((ch, i))
        elif stack and ch == pairs[stack[-1][0]]:
            spans.append((stack.pop()[1], i))
    return spans


def _split_paragraph(par: str) -> list[str]:
    out, start = [], 0
    spans = _quoted_spans(par) if any(q in par for q in '"“«([') else []
    for m in _CANDIDATE.finditer(par):
        mark = m.group(0).rstrip().rstrip(_CLOSERS)
        if any(a < m.start() and b >= m.end() for a, b in spans):
            continue  # inside a quotation that closes later: "These are not fables. These are places."
        if _is_boundary(par, m.start(), mark, m.end()):
            out.append(par[start:m.end()])
            start = m.end()
    out.append(par[start:])
    sentences: list[str] = []
    for piece in (" ".join(p.split()) for p in out):
        if not piece:
            continue
        if sentences and not any(ch.isalnum() for ch in piece):
            sentences[-1] = f"{sentences[-1]} {piece}"  # a stray "..." is not a sentence
        else:
            sentences.append(piece)
    return sentences


def split_sentences(text: str, *, min_words: int = 1) -> list[str]:
    """The sentences of `text`, whitespace normalised, in order (rules in the module docstring).

    `min_words` drops shorter sentences (`app.grounding`'s evidence used to keep only sentences of 3+ words)."""
    sentences = [s for par in _PARAGRAPH.split(text) for s in _split_paragraph(par)]
    return [s for s in sentences if len(words(s)) >= min_words] if min_words > 1 else sentences


def first_sentence(text: str) -> str:
    sentences = split_sentences(text)
    return sentences[0] if sentences else ""


# --- tokens ---------------------------------------------------------------------------------------------------------
def words(text: str) -> list[str]:
    """Word tokens: runs of letters/digits, joined by inner apostrophes or hyphens ("ain't", "forty-two")."""
    return _WORD.findall(text)


def _name_starts(clause: str) -> list[tuple[str, bool, bool]]:
    """(word, starts a sentence or quote, joined to the previous word by whitespace only) for each word."""
    out, prev = [], 0
    for n, m in enumerate(_WORD.finditer(clause)):
        gap = clause[prev:m.start()]
        out.append((m.group(0), n == 0 or (bool(gap) and gap[-1] in _QUOTE_OPENERS), n > 0 and not gap.strip()))
        prev = m.end()
    return out


def proper_names(text: str) -> set[str]:
    """Capitalised words that do not open a sentence, a clause after ':' or a quotation, as runs joined by
    whitespace and name joiners (de, of, van...): "Íñigo de Arce". Capitalised function words (The, It, I...) are
    trimmed from both ends of a run. Where a sentence opens with a run, its first word counts only when a joiner
    binds it ("Íñigo de Arce laid..."); otherwise the run counts from its second word ("Ask Ana Ruiz" -> "Ana
    Ruiz"), since a capitalised opening word may be any word."""
    names: set[str] = set()
    for sentence in split_sentences(text):
        for clause in re.split(r":\s+", sentence):
            toks = _name_starts(clause)
            i = 0
            while i < len(toks):
                if not toks[i][0][0].isupper():
                    i += 1
                    continue
                j, run, starts = i + 1, [toks[i][0]], [toks[i][1]]
                while j < len(toks) and toks[j][2]:
                    word = toks[j][0]
                    if word[0].isupper():
                        run.append(word)
                        starts.append(toks[j][1])
                        j += 1
                    elif (word.lower() in NAME_JOINERS and j + 1 < len(toks) and toks[j + 1][2]
                          and toks[j + 1][0][0].isupper()):
                        run += [word, toks[j + 1][0]]
                        starts += [False, toks[j + 1][1]]
                        j += 2
                    else:
                        break
                while run and run[0].lower() in FUNCTION_WORDS | NAME_JOINERS:
                    run.pop(0)
                    starts.pop(0)
                while run and run[-1].lower() in FUNCTION_WORDS | NAME_JOINERS:
                    run.pop()
                if len(run) > 1 and starts[0] and run[1].lower() not in NAME_JOINERS:
                    run.pop(0)  # "Ask Orsino Vell": the opening word may be a verb, the rest is the name
                    starts.pop(0)
                    starts[0] = False
                if run and (not starts[0] or len(run) > 1):
                    names.add(re.sub(r"['’]s$", "", " ".join(run)))  # Varga's -> Varga
                i = j
    return names


def numbers(text: str) -> set[str]:
    """Numbers as written: digit runs ("1387", "3,000", "3.5") and number words, lower-cased (one..twenty,
    hundred, thousand, first..tenth)."""
    found = set(_NUMBER.findall(text))
    return found | {w.lower() for w in words(text) if w.lower() in NUMBER_WORDS}


# --- clean text -----------------------------------------------------------------------------------------------------
_MARKUP = [
    (re.compile(r"\*\*|__"), "markdown emphasis (** or __)"),
    (re.compile(r"`"), "markdown code (backtick)"),
    (re.compile(r"(?m)^[ \t]*#"), "markdown heading (line starts with #)"),
    (re.compile(r"(?m)^[ \t]*(?:[-*+][ \t]|\d{1,2}[.)][ \t])"), "markdown list item (line starts with -, * or 1.)"),
    (re.compile(r"(?m)^[^\n]*\|[^\n]*\|"), "markdown table (|)"),
    (re.compile(r"</?[A-Za-z][\w-]*(?:\s[^<>]*)?/?>"), "HTML tag"),
]
_PAIRS = [("“", "”"), ("«", "»"), ("(", ")"), ("[", "]")]


def is_fragment(sentence: str) -> bool:
    """A sentence that starts mid-sentence: its first letter is lower case ("and rises above the sea."), or its
    first word is a relative or participle that cannot open a statement ("Which stands...", "Called the ...");
    a question ("Which book?") is not a fragment."""
    body = sentence.strip().lstrip(_OPENERS + ".…,;: ")
    if not body:
        return False
    if body[0].islower():
        return True
    first = words(body)[:1]
    return bool(first) and first[0].lower() in FRAGMENT_STARTS and not sentence.rstrip(_CLOSERS + " ").endswith("?")


def _unbalanced(text: str) -> list[str]:
    problems = [f"unbalanced {a}{b}" for a, b in _PAIRS if text.count(a) != text.count(b)]
    if text.count('"') % 2:
        problems.append('unbalanced "')
    return problems


def markup_problems(text: str) -> list[str]:
    """Why `text` is not clean prose a player could read; [] when it is."""
    problems = [what for pattern, what in _MARKUP if pattern.search(text)]
    sentences = split_sentences(text)
    problems += [f"fragment: {s[:40]!r}" for s in sentences if is_fragment(s)]
    problems += [f"fragment (starts mid-sentence): {s!r}" for s in _lowercase_restarts(text)]
    if sentences and not _TERMINATED.search(sentences[-1]):
        problems.append(f"unterminated last sentence: {sentences[-1][-40:]!r}")
    return problems + _unbalanced(text)


# --- markdown to prose ----------------------------------------------------------------------------------------------
class _HTMLText(HTMLParser):
    """The text of an HTML block, without tags, comments, scripts or styles."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        self._skip += tag in ("script", "style")
        if tag in ("p", "div", "br", "li", "tr", "section", "article", "blockquote") and self.parts:
            self.parts.append("\n\n")

    def handle_endtag(self, tag):
        self._skip = max(self._skip - (tag in ("script", "style")), 0)

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(data)


def _html_text(source: str) -> list[str]:
    parser = _HTMLText()
    parser.feed(source)
    parser.close()
    return [_sentence(" ".join(p.split())) for p in _PARAGRAPH.split("".join(parser.parts)) if p.strip()]


_BREAK_TAG = re.compile(r"</?(?:br|p|div|li|tr|td|th|hr)\b", re.IGNORECASE)


def _breaks_line(child: Token) -> bool:
    return child.type in ("softbreak", "hardbreak") or (child.type == "html_inline" and bool(_BREAK_TAG.match(
        child.content)))


def _inline(token: Token) -> str:
    """An inline token's text: markers, link targets, images and HTML tags dropped."""
    out = []
    for child in token.children or []:
        if child.type == "text":
            out.append(re.sub(r"\*{2,}|_{2,}|`+", "", child.content))
        elif child.type == "code_inline":
            out.append(child.content)
        elif _breaks_line(child):
            out.append(" ")
    return " ".join("".join(out).split())


def _sentence(text: str) -> str:
    """A block as a sentence: capitalised, ending in terminal punctuation (a trailing , ; : becomes a period)."""
    text = text.strip()
    if not text:
        return ""
    text = text[0].upper() + text[1:]
    if _TERMINATED.search(text):
        return text
    return text.rstrip(",;: —–-") + "."


def _table(tokens: list[Token], i: int) -> tuple[list[str], int]:
    """One sentence per body row ("Name: Ana; Age: 30."); returns them and the index after table_close."""
    header: list[str] = []
    rows: list[list[str]] = []
    while tokens[i].type != "table_close":
        t = tokens[i]
        if t.type == "tr_open":
            rows.append([])
        elif t.type == "inline":
            rows[-1].append(_inline(t))
        elif t.type == "thead_close" and rows:
            header = rows.pop()
        i += 1
    cells = ([f"{h}: {v}" if h else v for h, v in zip(header + [""] * len(r), r, strict=False) if v] for r in rows)
    return [_sentence("; ".join(c)) for c in cells if c], i + 1


_PARSER = MarkdownIt("commonmark").enable(["table", "strikethrough"])


def markdown_to_text(md: str) -> str:
    """Markdown (front matter already stripped) as plain prose, paragraphs separated by blank lines.

    Emphasis and code spans lose their markers, links keep their text, HTML keeps its text, code blocks and
    headings go. Each list item (nested ones too) becomes its own sentence on its own line; each table body row
    becomes one sentence, "Header: value; Header: value."; every block ends as a sentence (a trailing colon that
    led into a list becomes a period: the items stand alone)."""
    tokens = _PARSER.parse(md)
    blocks: list[str] = []
    item: list[str] = []  # the text of the list item being read
    items: list[str] = []  # the sentences of the list being read (one block)
    depth, i = 0, 0

    def flush_item() -> None:
        if item:
            items.append(_sentence(" ".join(item)))
            item.clear()

    def flush_list() -> None:
        flush_item()
        if items:
            blocks.append("\n".join(items))
            items.clear()

    while i < len(tokens):
        t = tokens[i]
        if t.type == "heading_open":
            while tokens[i].type != "heading_close":
                i += 1
        elif t.type in ("bullet_list_open", "ordered_list_open"):
            flush_item()
            depth += 1
        elif t.type in ("bullet_list_close", "ordered_list_close"):
            depth -= 1
            if depth == 0:
                flush_list()
        elif t.type in ("list_item_open", "list_item_close"):
            flush_item()
        elif t.type == "table_open":
            flush_list()
            rows, i = _table(tokens, i)
            blocks.extend(rows)
            continue
        elif t.type == "html_block":
            (item if depth else blocks).extend(_html_text(t.content))
        elif t.type == "inline":
            text = _inline(t)
            if text and depth:
                item.append(text)
            elif text:
                blocks.append(_sentence(text))
        i += 1
    flush_list()
    return "\n\n".join(b for b in blocks if b)
