"""The Buildfile language: a small, Python-flavoured build language, parsed into a plain model.

This module knows nothing about WebAssembly or wbuild; `app.py` turns its model into the IR.
A Buildfile is a list of statements, one a line; `#` starts a comment outside strings:

    param GREETING = "hello"          # a build parameter; --build-arg GREETING=... wins

    stage build from "busybox":       # a stage: from an image (a string), `scratch`, or
        workdir "/src"                #   the name of an earlier stage; its body is indented
        copy "message.txt" to "/src/"
        run "echo {GREETING} > greeting.txt"

    stage app from "busybox":
        copy "/src/greeting.txt" from build to "/app/"
        cmd ["cat", "/app/greeting.txt"]

    build app                         # the stage to build (default: the last one)

Stage statements: `run STRING` (a shell line) or `run LIST` (an argument vector);
`copy STRING, ... [from STAGE] to STRING`; `env NAME = STRING`; `label NAME = STRING`;
`workdir STRING` (absolute); `user STRING`; `cmd LIST`; `entrypoint LIST`; `expose PORT`
(`8080` or `53/udp`). Strings are double-quoted with the escapes \\\\ \\" \\n \\t; `{NAME}` in
a string is the value of the parameter NAME, `{{` and `}}` are literal braces.

Every error is a `BuildfileError` with the 1-based line and column of the offending text.
"""

import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple, Union


class BuildfileError(Exception):
    def __init__(self, line: int, column: int, message: str, text: str):
        super().__init__(message)
        self.line = line
        self.column = column
        self.message = message
        self.text = text


@dataclass
class Token:
    kind: str  # "name", "string", "number", or the punctuation itself: = : , [ ] /
    value: str
    column: int  # 1-based
    raw: str


@dataclass
class Step:
    line: int
    text: str
    kind: str
    args: list


@dataclass
class StageDef:
    name: str
    line: int
    text: str
    # ("image", ref) | ("scratch", None) | ("stage", index)
    base: Tuple[str, Optional[Union[str, int]]]
    steps: List[Step] = field(default_factory=list)


@dataclass
class Program:
    stages: List[StageDef]
    target: Optional[Tuple[str, int, int]]  # name, line, column


# One token, after optional blanks. Compiled once: componentize-py snapshots the module after
# import, so a translation starts with the pattern ready.
TOKEN = re.compile(
    r'[ \t]*(?:(?P<string>"(?:[^"\\]|\\.)*")|(?P<name>[A-Za-z_][A-Za-z0-9_.-]*)'
    r'|(?P<number>[0-9]+)|(?P<punct>[=:,\[\]/])|(?P<comment>#.*)|(?P<bad>\S))'
)
ESCAPE = re.compile(r"\\(.?)")
ESCAPES = {"\\": "\\", '"': '"', "n": "\n", "t": "\t"}
BRACES = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")


def tokenize(line: str, number: int) -> List[Token]:
    tokens: List[Token] = []
    pos = 0
    end = len(line.rstrip())
    while pos < end:
        m = TOKEN.match(line, pos)
        if m is None:
            break
        kind = m.lastgroup
        raw = m.group(kind)
        column = m.start(kind) + 1
        pos = m.end()
        if kind == "comment":
            break
        if kind == "bad":
            if raw == '"':
                raise BuildfileError(
                    number, column, "unterminated string: add the closing \"", line[column - 1 :]
                )
            raise BuildfileError(number, column, f"unexpected character {raw!r}", raw)
        if kind == "string":
            body = raw[1:-1]
            if "\\" in body:
                for e in ESCAPE.finditer(body):
                    if e.group(1) not in ESCAPES:
                        raise BuildfileError(
                            number,
                            column + 1 + e.start(),
                            "unknown escape (use \\\\, \\\", \\n or \\t)",
                            e.group(0),
                        )
                body = ESCAPE.sub(lambda e: ESCAPES[e.group(1)], body)
            tokens.append(Token("string", body, column, raw))
        elif kind == "punct":
            tokens.append(Token(raw, raw, column, raw))
        else:
            tokens.append(Token(kind, raw, column, raw))
    return tokens


class Line:
    """The tokens of one line, consumed left to right."""

    def __init__(self, number: int, text: str, tokens: List[Token]):
        self.number = number
        self.text = text
        self.tokens = tokens
        self.pos = 0

    def error(self, message: str, token: Optional[Token] = None) -> BuildfileError:
        if token is None:
            column = len(self.text.rstrip()) + 1
            return BuildfileError(self.number, column, message, self.text.strip())
        return BuildfileError(self.number, token.column, message, token.raw)

    def peek(self) -> Optional[Token]:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, kind: str, what: str) -> Token:
        tok = self.peek()
        if tok is None or tok.kind != kind:
            found = "the end of the line" if tok is None else f"`{tok.raw}`"
            raise self.error(f"expected {what}, found {found}", tok)
        self.pos += 1
        return tok

    def keyword(self, word: str) -> bool:
        tok = self.peek()
        if tok is not None and tok.kind == "name" and tok.value == word:
            self.pos += 1
            return True
        return False

    def end(self) -> None:
        tok = self.peek()
        if tok is not None:
            raise self.error(f"unexpected `{tok.raw}` at the end of the statement", tok)

    def string_list(self) -> List[Token]:
        self.take("[", "a list such as [\"cat\", \"/file\"]")
        items: List[Token] = []
        while True:
            tok = self.peek()
            if tok is not None and tok.kind == "]" and not items:
                self.pos += 1
                return items
            items.append(self.take("string", "a string"))
            sep = self.peek()
            if sep is not None and sep.kind == ",":
                self.pos += 1
                continue
            self.take("]", "`,` or `]`")
            return items


class Parser:
    def __init__(self, source: str, build_args: Dict[str, str]):
        self.source = source
        self.params: Dict[str, str] = {}
        self.build_args = build_args
        self.used_args: set = set()

    def interpolate(self, line: Line, tok: Token) -> str:
        """`{NAME}` → the parameter's value; `{{` / `}}` → a brace."""
        s = tok.value
        if "{" not in s and "}" not in s:
            return s

        def one(m: "re.Match") -> str:
            text = m.group(0)
            if text in ("{{", "}}"):
                return text[0]
            if text == "{":
                raise line.error("unclosed `{` in a string (write `{{` for a brace)", tok)
            if text == "}":
                raise line.error("stray `}` in a string (write `}}` for a brace)", tok)
            name = m.group(1)
            if name not in self.params:
                known = ", ".join(sorted(self.params)) or "none is declared"
                raise BuildfileError(
                    line.number,
                    tok.column + max(0, tok.raw.find(text)),
                    f"unknown parameter `{name}` (parameters: {known})",
                    text,
                )
            return self.params[name]

        return BRACES.sub(one, s)

    def parse(self) -> Program:
        stages: List[StageDef] = []
        target = None
        current: Optional[StageDef] = None
        for number, text in enumerate(self.source.splitlines(), start=1):
            tokens = tokenize(text, number)
            if not tokens:
                continue
            line = Line(number, text, tokens)
            indented = text[:1] in (" ", "\t")
            if indented:
                if current is None:
                    raise line.error(
                        "an indented statement belongs to a stage: start one with "
                        "`stage NAME from BASE:`",
                        tokens[0],
                    )
                current.steps.append(self.step(line))
                continue
            current = None
            head = line.take("name", "a statement (param, stage or build)")
            if head.value == "param":
                name = line.take("name", "the parameter's name")
                line.take("=", "`=`")
                default = line.take("string", "the default value, a string")
                line.end()
                if name.value in self.build_args:
                    self.used_args.add(name.value)
                    self.params[name.value] = self.build_args[name.value]
                else:
                    self.params[name.value] = self.interpolate(line, default)
            elif head.value == "stage":
                current = self.stage(line, stages)
                stages.append(current)
            elif head.value == "build":
                name = line.take("name", "the name of the stage to build")
                line.end()
                target = (name.value, number, name.column)
            else:
                raise line.error(
                    f"unknown statement `{head.value}` (use param, stage or build; stage "
                    "statements are indented)",
                    head,
                )
        return Program(stages, target)

    def stage(self, line: Line, stages: List[StageDef]) -> StageDef:
        name = line.take("name", "the stage's name")
        if any(s.name == name.value for s in stages):
            raise line.error(f"a stage named `{name.value}` is already defined", name)
        if not line.keyword("from"):
            raise line.error("expected `from BASE:` after the stage's name", line.peek())
        base_tok = line.peek()
        if base_tok is not None and base_tok.kind == "string":
            line.pos += 1
            ref = self.interpolate(line, base_tok)
            if not ref.strip():
                raise line.error("the base image is empty", base_tok)
            base = ("image", ref)
        elif base_tok is not None and base_tok.kind == "name":
            line.pos += 1
            if base_tok.value == "scratch":
                base = ("scratch", None)
            else:
                index = next((i for i, s in enumerate(stages) if s.name == base_tok.value), None)
                if index is None:
                    raise line.error(
                        f"no earlier stage is named `{base_tok.value}` (an image is a string: "
                        f"from \"{base_tok.value}\")",
                        base_tok,
                    )
                base = ("stage", index)
        else:
            raise line.error("expected the base: an image string, `scratch` or a stage", base_tok)
        line.take(":", "`:` after the base")
        line.end()
        return StageDef(name.value, line.number, line.text.strip(), base)

    def step(self, line: Line) -> Step:
        head = line.take("name", "a stage statement")
        kind = head.value
        text = line.text.strip()
        if kind == "run":
            tok = line.peek()
            if tok is not None and tok.kind == "[":
                args = [self.interpolate(line, t) for t in line.string_list()]
                if not args:
                    raise line.error("run needs at least one argument", tok)
            else:
                args = ["/bin/sh", "-c", self.interpolate(line, line.take("string", "a shell line"))]
            line.end()
            return Step(line.number, text, "run", args)
        if kind == "copy":
            sources = [self.interpolate(line, line.take("string", "a source path"))]
            while line.peek() is not None and line.peek().kind == ",":
                line.pos += 1
                sources.append(self.interpolate(line, line.take("string", "a source path")))
            from_stage = None
            if line.keyword("from"):
                from_stage = line.take("name", "the stage to copy from")
            if not line.keyword("to"):
                raise line.error("expected `to DEST` (or `from STAGE to DEST`)", line.peek())
            dest = self.interpolate(line, line.take("string", "the destination"))
            line.end()
            return Step(line.number, text, "copy", [sources, from_stage, dest])
        if kind in ("env", "label"):
            key = line.take("name", "a name")
            line.take("=", "`=`")
            value = self.interpolate(line, line.take("string", "a value, a string"))
            line.end()
            return Step(line.number, text, kind, [key.value, value])
        if kind in ("workdir", "user"):
            tok = line.take("string", "a string")
            value = self.interpolate(line, tok)
            if kind == "workdir" and not value.startswith("/"):
                raise line.error("workdir must be an absolute path", tok)
            line.end()
            return Step(line.number, text, kind, [value])
        if kind in ("cmd", "entrypoint"):
            args = [self.interpolate(line, t) for t in line.string_list()]
            line.end()
            return Step(line.number, text, kind, args)
        if kind == "expose":
            port = line.take("number", "a port number")
            proto = "tcp"
            if line.peek() is not None and line.peek().kind == "/":
                line.pos += 1
                p = line.take("name", "tcp or udp")
                if p.value not in ("tcp", "udp"):
                    raise line.error("the protocol is tcp or udp", p)
                proto = p.value
            if not 0 < int(port.value) < 65536:
                raise line.error("a port is between 1 and 65535", port)
            line.end()
            return Step(line.number, text, "expose", [f"{int(port.value)}/{proto}"])
        raise line.error(
            f"unknown stage statement `{kind}` (run, copy, env, label, workdir, user, cmd, "
            "entrypoint, expose)",
            head,
        )


def parse(source: str, build_args: Dict[str, str]) -> Tuple[Program, List[str]]:
    """The program and the build args it did not use."""
    p = Parser(source, build_args)
    program = p.parse()
    unused = [k for k in build_args if k not in p.used_args]
    return program, unused
