"""The small Kconfig evaluator conf.py falls back on when python has no kconfiglib.

It reads the subset of Kconfig the demo tree uses: config and choice blocks,
bool/string/int/hex types, ``depends on``, ``select``, ``default ... if ...``,
``if``/``endif`` and ``source``; expressions with ``&&``, ``||``, ``!``, ``=``
and ``!=``. Kept apart from conf.py, which only turns a defconfig into the
configuration files.
"""

import glob
import os
import re


TOKEN = re.compile(r'\s*(&&|\|\||!=|[!()=]|"(?:[^"\\]|\\.)*"|[A-Za-z0-9_.$-]+)')


def tokenize(text):
    pos, out = 0, []
    text = text.strip()
    while pos < len(text):
        match = TOKEN.match(text, pos)
        if not match:
            raise SyntaxError(f"bad expression: {text}")
        out.append(match.group(1))
        pos = match.end()
    return out


class Expr:
    """A parsed Kconfig expression, evaluated against symbol values."""

    def __init__(self, text):
        self.tokens = tokenize(text) if text else ["y"]

    def value(self, env):
        self.pos = 0
        result = self._or(env)
        return result

    def _peek(self):
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def _or(self, env):
        val = self._and(env)
        while self._peek() == "||":
            self.pos += 1
            rhs = self._and(env)
            val = val or rhs
        return val

    def _and(self, env):
        val = self._not(env)
        while self._peek() == "&&":
            self.pos += 1
            rhs = self._not(env)
            val = val and rhs
        return val

    def _not(self, env):
        if self._peek() == "!":
            self.pos += 1
            return not self._not(env)
        return self._cmp(env)

    def _cmp(self, env):
        if self._peek() == "(":
            self.pos += 1
            val = self._or(env)
            self.pos += 1
            return val
        lhs = self._atom(env)
        if self._peek() in ("=", "!="):
            oper = self.tokens[self.pos]
            self.pos += 1
            rhs = self._atom(env)
            return (lhs == rhs) == (oper == "=")
        return lhs == "y"

    def _atom(self, env):
        tok = self.tokens[self.pos]
        self.pos += 1
        if tok.startswith('"'):
            return tok[1:-1]
        if tok in ("y", "n"):
            return tok
        return env.get(tok, "n")


class Sym:
    def __init__(self, name):
        self.name = name
        self.type = None
        self.prompts = []     # conditions (lists of Expr) under which a prompt shows
        self.defaults = []    # (value text, conditions)
        self.selected_by = []  # (selector name, conditions)
        self.choice = None


class Choice:
    def __init__(self, conds):
        self.conds = conds
        self.members = []
        self.defaults = []


def unquote(text):
    text = text.strip()
    if text.startswith('"') and text.endswith('"'):
        return re.sub(r"\\(.)", r"\1", text[1:-1])
    return text


def split_if(rest):
    """'"x" if A && B' -> ('"x"', 'A && B')."""
    match = re.match(r'^("(?:[^"\\]|\\.)*"|\S+)\s*(?:if\s+(.*))?$', rest.strip())
    if not match:
        return rest.strip(), None
    return match.group(1), match.group(2)


class Parser:
    def __init__(self, srctree):
        self.srctree = srctree
        self.syms = {}
        self.order = []
        self.ifs = []
        self.choice = None
        self.cur = None       # (Sym or Choice, list of dependency Exprs)

    def sym(self, name):
        if name not in self.syms:
            self.syms[name] = Sym(name)
        return self.syms[name]

    def parse(self, path):
        with open(path, encoding="utf-8") as inf:
            lines = inf.read().splitlines()
        help_indent = None
        in_help = False
        pending = []  # the current definition's prompt/default lines, resolved at its end
        for raw in lines:
            if in_help:
                if not raw.strip():
                    continue
                indent = len(raw) - len(raw.lstrip())
                if help_indent is None:
                    help_indent = indent
                if indent >= help_indent and indent > 0:
                    continue
                in_help = False
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            word, _, rest = line.partition(" ")
            rest = rest.strip()
            if word in ("help", "---help---"):
                in_help, help_indent = True, None
                continue
            if word in ("config", "menuconfig"):
                self.finish(pending)
                sym = self.sym(rest)
                if rest not in self.order:
                    self.order.append(rest)
                if self.choice is not None:
                    sym.choice = self.choice
                    self.choice.members.append(sym)
                self.cur = sym
                pending = []
            elif word == "choice":
                self.finish(pending)
                pending = []
                self.choice = Choice(list(self.ifs))
                self.cur = self.choice
            elif word == "endchoice":
                self.finish(pending)
                pending = []
                self.choice, self.cur = None, None
            elif word == "if":
                self.finish(pending)
                pending = []
                self.ifs.append(Expr(rest))
                self.cur = None
            elif word == "endif":
                self.finish(pending)
                pending = []
                self.ifs.pop()
                self.cur = None
            elif word in ("source", "osource", "rsource"):
                self.finish(pending)
                pending = []
                self.cur = None
                base = os.path.dirname(path) if word == "rsource" else self.srctree
                for inc in sorted(glob.glob(os.path.join(base, unquote(rest)))):
                    self.parse(inc)
            elif word in ("menu", "endmenu", "mainmenu", "comment"):
                self.finish(pending)
                pending = []
                self.cur = None
            elif self.cur is not None:
                pending.append((word, rest))
        self.finish(pending)

    def finish(self, pending):
        """Attach a definition's properties, with its dependencies."""
        item = self.cur
        if item is None or not pending:
            return
        deps = list(self.ifs) if not isinstance(item, Sym) or item.choice is None \
            else list(self.choice.conds)
        for word, rest in pending:
            if word == "depends" and rest.startswith("on "):
                deps.append(Expr(rest[3:]))
        for word, rest in pending:
            if isinstance(item, Choice):
                if word == "prompt":
                    item.conds = deps
                elif word == "default":
                    val, cond = split_if(rest)
                    item.defaults.append((val, deps + ([Expr(cond)] if cond else [])))
                continue
            if word in ("bool", "tristate", "string", "int", "hex", "def_bool"):
                item.type = "bool" if word in ("tristate", "def_bool") else word
                if word == "def_bool":
                    val, cond = split_if(rest)
                    item.defaults.append((val, deps + ([Expr(cond)] if cond else [])))
                elif rest:
                    _, cond = split_if(rest)
                    item.prompts.append(deps + ([Expr(cond)] if cond else []))
            elif word == "prompt":
                _, cond = split_if(rest)
                item.prompts.append(deps + ([Expr(cond)] if cond else []))
            elif word == "default":
                val, cond = split_if(rest)
                item.defaults.append((val, deps + ([Expr(cond)] if cond else [])))
            elif word == "select":
                target, cond = split_if(rest)
                self.sym(target).selected_by.append(
                    (item.name, deps + ([Expr(cond)] if cond else [])))
