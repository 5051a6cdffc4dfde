"""Untrusted text made visible: corpus text, LLM answers and server errors are data wherever they are shown
(a terminal, a prompt, a report), so no character in them may act as a control.

Control characters become visible symbols instead of moving the cursor, clearing the screen or starting
an escape sequence: C0 controls as their Unicode control pictures (ESC is ␛), DEL as ␡, C1 controls, line
and paragraph separators and bidirectional overrides as \\u escapes. Line breaks and tabs keep the marks
the project has always shown (⏎ and ⇥).
"""

SHOWN_AS = {"\n": "⏎", "\t": "⇥"}
C0 = {chr(code): SHOWN_AS.get(chr(code), chr(0x2400 + code)) for code in range(0x20)}
DEL = {"\x7f": "␡"}
ESCAPED = [*range(0x80, 0xA0), 0x2028, 0x2029, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A),
           0xFEFF]
"""C1 controls, the line and paragraph separators, and the marks that reorder text (bidi)."""
VISIBLE = str.maketrans(C0 | DEL | {chr(code): f"\\u{code:04x}" for code in ESCAPED})


def visible(text: str) -> str:
    """`text` with every control character shown as a visible symbol."""
    return text.translate(VISIBLE)


def visible_lines(text: str) -> str:
    """Multi-line untrusted text (an LLM's answer): line breaks kept, every other control made visible."""
    return "\n".join(visible(line) for line in text.split("\n"))


def is_control(char: str) -> bool:
    """What `visible` replaces."""
    return char in C0 or char in DEL or ord(char) in ESCAPED
