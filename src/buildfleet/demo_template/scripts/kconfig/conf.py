#!/usr/bin/env python3
"""Turn a defconfig into .config, autoconf.h and autoconf.mk for the demo tree.

Uses kconfiglib when this python has it, otherwise a small evaluator for the
subset of Kconfig the demo tree uses, so that any machine with python3 can
configure the tree. Both paths write the same files.
"""

import argparse
import os
import re
import shlex
import subprocess
import sys
import tempfile

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kparse import Expr, Parser, unquote  # noqa: E402


def preprocess(defconfig, srctree):
    """Return the path of the defconfig to load, run through cpp if it has #include."""
    with open(defconfig, encoding="utf-8") as inf:
        text = inf.read()
    if "#include" not in text:
        return defconfig, None
    cpp = shlex.split(os.environ.get("CPP", "cpp"))
    out = subprocess.run(cpp + ["-nostdinc", "-P", "-I", srctree, "-undef",
                                "-x", "assembler-with-cpp", defconfig],
                         capture_output=True, text=True, check=False)
    if out.returncode:
        sys.exit(f"{defconfig}: cpp failed: {out.stderr.strip()}")
    fd, tmp = tempfile.mkstemp(suffix="_defconfig")
    with os.fdopen(fd, "w", encoding="utf-8") as outf:
        outf.write(out.stdout)
    return tmp, tmp


def with_kconfiglib(srctree, defconfig):
    """(name, type, value) of every symbol kconfiglib would write, in order."""
    import kconfiglib
    os.environ["srctree"] = srctree
    os.environ.setdefault("UBOOTVERSION", "demo")
    os.environ["KCONFIG_OBJDIR"] = ""
    # Relative to $srctree, which kbuild makes relative itself ("..") when O= is
    # a direct child of the source tree: kconfiglib joins the two.
    kconf = kconfiglib.Kconfig("Kconfig", warn=False)
    kconf.load_config(defconfig)
    names = {kconfiglib.BOOL: "bool", kconfiglib.TRISTATE: "bool",
             kconfiglib.STRING: "string", kconfiglib.INT: "int", kconfiglib.HEX: "hex"}
    out = []
    for sym in kconf.unique_defined_syms:
        if sym.config_string:
            out.append((sym.name, names.get(sym.orig_type, "string"), sym.str_value))
    return out


# ---- the fallback: a small Kconfig evaluator -------------------------------


def read_defconfig(path):
    values = []
    with open(path, encoding="utf-8") as inf:
        for line in inf:
            line = line.strip()
            match = re.match(r"^# CONFIG_(\w+) is not set$", line)
            if match:
                values.append((match.group(1), "n"))
                continue
            match = re.match(r"^CONFIG_(\w+)=(.*)$", line)
            if match:
                values.append((match.group(1), match.group(2)))
    return values


def without_kconfiglib(srctree, defconfig):
    parser = Parser(srctree)
    parser.parse(os.path.join(srctree, "Kconfig"))
    user = {}
    user_order = []
    for name, val in read_defconfig(defconfig):
        user[name] = unquote(val)
        user_order.append((name, user[name]))
    syms = parser.syms
    choices = []
    for sym in syms.values():
        if sym.choice is not None and sym.choice not in choices:
            choices.append(sym.choice)

    def holds(conds, env):
        return all(c.value(env) for c in conds)

    env = {name: ("n" if s.type == "bool" else "") for name, s in syms.items()}
    written = {}
    for _ in range(100):
        new_env, new_written = {}, {}
        selection = {}
        for choice in choices:
            if not holds(choice.conds, env):
                continue
            visible = [m for m in choice.members if any(holds(p, env) for p in m.prompts)]
            chosen = None
            for name, val in user_order:
                if val == "y" and syms.get(name) in visible:
                    chosen = syms[name]
            if chosen is None:
                for val, conds in choice.defaults:
                    if holds(conds, env) and syms.get(val) in visible:
                        chosen = syms[val]
                        break
            if chosen is None and visible:
                chosen = visible[0]
            for member in visible:
                selection[member.name] = member is chosen
        for name, sym in syms.items():
            visible = any(holds(p, env) for p in sym.prompts)
            write = visible
            if sym.type == "bool":
                if sym.choice is not None:
                    val = "y" if selection.get(name) else "n"
                    write = name in selection
                else:
                    if visible and name in user:
                        val = "y" if user[name] == "y" else "n"
                    else:
                        val = "n"
                        for dval, conds in sym.defaults:
                            if holds(conds, env):
                                val = "y" if Expr(dval).value(env) else "n"
                                write = write or val == "y"
                                break
                    if any(env.get(sel) == "y" and holds(conds, env)
                           for sel, conds in sym.selected_by):
                        val, write = "y", True
            else:
                if visible and name in user:
                    val = user[name]
                else:
                    val = ""
                    for dval, conds in sym.defaults:
                        if holds(conds, env):
                            val = unquote(dval) if dval.startswith('"') or \
                                dval not in syms else env[dval]
                            write = True
                            break
                if sym.type == "hex" and val and not val.lower().startswith("0x"):
                    val = "0x" + val
            new_env[name] = val
            new_written[name] = write
        if new_env == env and new_written == written:
            break
        env, written = new_env, new_written
    return [(name, syms[name].type or "string", env[name])
            for name in parser.order if written.get(name)]


# ---- output -----------------------------------------------------------------

def escape(val):
    return val.replace("\\", "\\\\").replace('"', '\\"')


def write_outputs(objdir, symbols):
    gen = os.path.join(objdir, "include", "generated")
    os.makedirs(gen, exist_ok=True)
    config = ["#", "# Automatically generated file; DO NOT EDIT.",
              "# Demo U-Boot Configuration", "#"]
    header = ["/*", " * Automatically generated file; DO NOT EDIT.",
              " * Demo U-Boot Configuration", " */"]
    make = []
    for name, kind, val in symbols:
        full = "CONFIG_" + name
        if kind == "bool":
            if val == "y":
                config.append(f"{full}=y")
                header.append(f"#define {full} 1")
                make.append(f"{full}=y")
            else:
                config.append(f"# {full} is not set")
        elif kind == "string":
            config.append(f'{full}="{escape(val)}"')
            header.append(f'#define {full} "{escape(val)}"')
            make.append(f'{full}="{escape(val)}"')
        elif val:
            config.append(f"{full}={val}")
            header.append(f"#define {full} {val}")
            make.append(f"{full}={val}")
    files = {
        os.path.join(objdir, ".config"): config,
        os.path.join(gen, "autoconf.h"): header,
        os.path.join(objdir, "include", "autoconf.mk"): make,
    }
    # Always rewritten, unchanged or not, as U-Boot's kconfig rewrites .config
    # at every defconfig and its syncconfig then marks the objects that use
    # the symbols stale: every configure costs a full rebuild of the board.
    for path, lines in files.items():
        text = "\n".join(lines) + "\n"
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as outf:
            outf.write(text)
        os.replace(tmp, path)


def merge_inputs(paths, srctree):
    """The configs to load, #includes expanded, joined in order (a later line wins)."""
    parts = []
    for name in paths:
        if not os.path.isfile(name):
            sys.exit(f"*** Can't find default configuration \"{name}\"!")
        path, tmp = preprocess(name, srctree)
        try:
            with open(path, encoding="utf-8") as inf:
                text = inf.read()
        finally:
            if tmp:
                os.unlink(tmp)
        parts.append(text if text.endswith("\n") or not text else text + "\n")
    return "".join(parts)


def ask_new(symbols):
    """Ask for new int/hex symbols that have a prompt but no value and no default.

    As kconfig's conf does: it restarts the configuration and asks each one
    until it gets a number. With stdin at its end (make's /dev/null under a
    build tool) no answer ever comes, so it asks forever; build tools must
    notice the same question asked twice and stop it.
    """
    new = [i for i, (_name, kind, val) in enumerate(symbols)
           if kind in ("int", "hex") and not val]
    if not new:
        return symbols
    symbols = list(symbols)
    print("*\n* Restart config...\n*", flush=True)
    while new:
        i = new[0]
        name, kind, _ = symbols[i]
        sys.stdout.write(f"{name.replace('_', ' ').title()} ({name}) [] (NEW) ")
        sys.stdout.flush()
        answer = sys.stdin.readline().strip()
        pattern = r"0x[0-9a-fA-F]+" if kind == "hex" else r"-?[0-9]+"
        if re.fullmatch(pattern, answer):
            symbols[i] = (name, kind, answer)
            new.pop(0)
        else:
            sys.stdout.write("\n")
    return symbols


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--srctree", required=True)
    parser.add_argument("--objdir", required=True)
    parser.add_argument("--no-kconfiglib", action="store_true",
                        help="always use the built-in evaluator")
    parser.add_argument("--print", action="store_true",
                        help="print the symbols instead of writing files")
    parser.add_argument("configs", nargs="+",
                        help="defconfig, then fragments laid over it in order")
    args = parser.parse_args()
    merged = merge_inputs(args.configs, args.srctree)
    fd, path = tempfile.mkstemp(suffix="_defconfig")
    with os.fdopen(fd, "w", encoding="utf-8") as outf:
        outf.write(merged)
    try:
        symbols = None
        if not args.no_kconfiglib:
            try:
                symbols = with_kconfiglib(args.srctree, path)
            except ImportError:
                symbols = None
        if symbols is None:
            symbols = without_kconfiglib(args.srctree, path)
    finally:
        os.unlink(path)
    if not args.print:
        symbols = ask_new(symbols)
    if args.print:
        for name, kind, val in symbols:
            print(f"{name} {kind} {val}")
        return
    write_outputs(args.objdir, symbols)
    # What was loaded: "make savedefconfig" hands it back as the minimal config.
    with open(os.path.join(args.objdir, ".config.input"), "w", encoding="utf-8") as outf:
        outf.write(merged)


if __name__ == "__main__":
    main()
