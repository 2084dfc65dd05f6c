#!/usr/bin/env python3
"""Checks README.md against the built CLI.

  tests/readme_test.py SOURCE_DIR BIN_DIR

- Every code fence is closed: fences alternate open/close, the file does not
  end inside one, and no prose line sits inside a shell block by mistake
  (a fence opened where one should have closed makes a whole section render
  as code).
- Every `comity COMMAND` in a code block is a command the CLI dispatches
  (the list its own "unknown command" errors give), and for groups (audit,
  treaty, admin) the subcommand too.
- Every --flag on such a line appears in that command's own --help.
"""
import re
import subprocess
import sys

FENCE = re.compile(r"^(\s*)(```|~~~)(.*)$")


def fail(errors):
    for e in errors:
        print("FAIL:", e)
    sys.exit(1)


def code_blocks(lines):
    """(errors, blocks): blocks are (first line number, info, [lines])."""
    errors, blocks = [], []
    open_at, info, body = None, "", []
    for n, line in enumerate(lines, 1):
        m = FENCE.match(line)
        if m:
            if open_at is None:
                open_at, info, body = n, m.group(3).strip(), []
            else:
                if m.group(3).strip():
                    errors.append(
                        f"README.md:{n}: a fence with an info string ('{m.group(3).strip()}') "
                        f"closes the block opened at line {open_at}: a fence is missing")
                blocks.append((open_at, info, body))
                open_at = None
            continue
        if open_at is not None:
            body.append((n, line))
    if open_at is not None:
        errors.append(f"README.md:{open_at}: code fence never closed")
    for start, info, body in blocks:
        if info not in ("sh", "bash", "shell", "console"):
            continue
        for n, line in body:
            text = line.strip()
            # A Markdown heading in a shell block: a fence is missing.
            if text.startswith("### ") or text.startswith("## "):
                errors.append(f"README.md:{n}: a Markdown heading inside the code block of line {start}")
    return errors, blocks


def listed_commands(comity, args):
    r = subprocess.run([comity] + args, capture_output=True, text=True)
    m = re.search(r"commands: (.*)$", r.stderr.strip())
    if not m:
        fail([f"`comity {' '.join(args)}` names no command list: {r.stderr!r}"])
    return [c.strip() for c in m.group(1).split(",")]


def main():
    src, bindir = sys.argv[1], sys.argv[2]
    comity = bindir + "/comity"
    lines = open(src + "/README.md", encoding="utf-8").read().split("\n")
    errors, blocks = code_blocks(lines)

    top = set(listed_commands(comity, ["frobnicate"]))
    groups = {
        "audit": set(listed_commands(comity, ["audit", "frobnicate"])),
        "treaty": set(listed_commands(comity, ["treaty", "frobnicate"])),
        "admin": {"backup"},
    }
    helps = {}

    def help_of(words):
        key = " ".join(words)
        if key not in helps:
            r = subprocess.run([comity] + words + ["--help"], capture_output=True, text=True)
            helps[key] = r.stdout if r.returncode == 0 else ""
        return helps[key]

    value_flags = {"--connect", "--treaties"}
    checked = 0
    for start, info, body in blocks:
        for n, line in body:
            code = line.split("  #")[0].split(" # ")[0]
            for m in re.finditer(r"(?:^|[\s/])comity\s+(.*)$", code):
                tokens = m.group(1).split()
                # Global flags before the command.
                i = 0
                while i < len(tokens) and tokens[i].startswith("--"):
                    i += 2 if tokens[i] in value_flags and "=" not in tokens[i] else 1
                if i >= len(tokens):
                    continue
                commands = tokens[i].split("|")
                for command in commands:
                    if command not in top:
                        errors.append(f"README.md:{n}: 'comity {command}' is not a command "
                                      f"(commands: {', '.join(sorted(top))})")
                        continue
                    words = [command]
                    if command in groups:
                        if i + 1 >= len(tokens) or tokens[i + 1].startswith("-"):
                            continue
                        for sub in tokens[i + 1].split("|"):
                            if sub not in groups[command]:
                                errors.append(f"README.md:{n}: 'comity {command} {sub}' is not a "
                                              f"command (commands: {', '.join(sorted(groups[command]))})")
                                continue
                            words = [command, sub]
                            checked += 1
                            check_flags(n, tokens[i + 2:], words, help_of(words), errors)
                        continue
                    checked += 1
                    check_flags(n, tokens[i + 1:], words, help_of(words), errors)
    if checked < 20:
        errors.append(f"only {checked} comity commands found in README.md's code blocks")
    if errors:
        fail(errors)
    print(f"README.md: {len(blocks)} code blocks closed, {checked} comity commands known with their flags")


def check_flags(n, tokens, words, help_text, errors):
    if not help_text:
        errors.append(f"README.md:{n}: 'comity {' '.join(words)} --help' failed")
        return
    for t in tokens:
        for flag in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", t):
            if flag not in help_text:
                errors.append(f"README.md:{n}: 'comity {' '.join(words)}' has no {flag} "
                              f"(not in its --help)")


if __name__ == "__main__":
    main()
