#!/usr/bin/env python3
"""Runs README.md's shell commands against a real local network.

  tests/readme_run_test.py SOURCE_DIR BIN_DIR [--readme FILE]

Starts deploy/local-network.sh --keep (FR and JP on loopback), then takes every
command line of README.md's shell code blocks, in the README's order, makes it
runnable and runs it; each must exit 0. tests/readme_test.py checks the same
lines statically (fences, commands, flags); this one checks that they work.

Where the commands run: a working directory laid out like a checkout (every
top-level entry of SOURCE_DIR linked, build/bin -> BIN_DIR) that also holds the
network's party directories (FR/, JP/), so `FR/alice.conf`, `docs/...`,
`deploy/treaties` and `build/bin/comityd` all resolve; files the commands
write (fr-log.*, fr.db, ...) land there.

How a README line becomes a command (generic rules, no list of commands):
- `\\` continuations are joined; `# comments` are dropped; `export VAR=VALUE`
  sets VAR for the lines after it.
- `[--flag ...]` is optional: the line runs without the brackets, with each
  bracket alone (each `[a|b]` alternative once), and, where there are several,
  with all of them (their first alternatives); a bare `a|b|c` word runs once
  per alternative, in the order written.
- `comity` is BIN_DIR/comity; `"..."` (or `...` inside a quoted text) becomes a
  text; `DIR` after --out a fresh directory, elsewhere the last one written; a `--file` the checkout lacks (disk.img) is
  written with new random bytes for each run; `/tmp/net` is the network's directory (local-network.sh wrote
  there what make-network.sh writes, plus each node.conf), except as
  make-network.sh's output, which goes to a scratch directory rather than
  replace the running network's keys; a `curl` of a loopback `/metrics` URL
  goes to FR's metrics_listen_address, with -fsS so an HTTP error fails.
- `ID` is a real request id in the state the command needs. A command that
  moves a case (accept, refuse, respond, answer, withdraw, ...; STATE_NEEDED
  below) gets a fresh request brought to that state by the test's own steps,
  so that, e.g., a refusal is not tried on the request the line before
  accepted. Any other command (show, audit log --request) gets the request
  the README last submitted or acted on. Delivery is asynchronous, so a command with an ID
  that exits 1 (refused: the step has not arrived yet) is retried for a while.
- A command that serves until stopped (`audit serve`) must print its URL and
  serve that page (curl -f, following its redirect); it is then stopped.
Lines that cannot run here are in SKIP, printed with the reason.
"""
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time

FENCE = re.compile(r"^\s*(```|~~~)(.*)$")
SHELL = ("sh", "bash", "shell", "console")

# README lines not run here, by their first word, with why.
SKIP = [
    ("./deploy/quickstart.sh", "apt-installs and builds; its network part, deploy/local-network.sh, is what this test runs"),
    ("./tests/run.sh", "the whole test suite, this test included"),
    ("deploy/three-party.sh", "three more nodes and a whole case; tests/deploy/three_party_test.sh runs it"),
]
# Variants of a line not run here: (first word, flag it lacks, why).
SKIP_VARIANT = [
    ("build/bin/comityd", "--check-config",
     "would be a second FR node on the ports the network's FR holds; local-network.sh starts each node so"),
]
# The case state a command needs for its ID (docs/lifecycle.md); the others
# read a request and get the one the README last acted on.
STATE_NEEDED = {
    "approve": "awaiting-approval",
    "ack": "delivered", "review": "delivered", "accept": "delivered", "refuse": "delivered",
    "ask": "delivered", "withdraw": "delivered", "postpone": "accepted",
    "respond": "accepted",
    "answer": "info-requested",
    "accept-conditions": "conditions-pending",
    "close": "executed",
    "export": "evidence-released",
    "fetch": "evidence-released",
}
# Commands that serve until stopped: (command words).
SERVES = [("audit", "serve")]
TEXT = "the README test"
RETRY_SECONDS = 20


class Failure(Exception):
    pass


def code_lines(readme):
    """(line number, text) of each command in README's shell blocks."""
    lines = open(readme, encoding="utf-8").read().split("\n")
    out, in_block, info, pending, pending_n = [], False, "", "", 0
    for n, line in enumerate(lines, 1):
        m = FENCE.match(line)
        if m:
            in_block, info = (not in_block), m.group(2).strip()
            continue
        if not in_block or info not in SHELL:
            continue
        code = strip_comment(line).rstrip()
        if pending:
            code = pending + " " + code.strip()
        else:
            pending_n = n
        if code.endswith("\\"):
            pending = code[:-1].rstrip()
            continue
        pending = ""
        if code.strip():
            out.append((pending_n, code.strip()))
    return out


def strip_comment(line):
    """The line without a `# comment` (a # after a blank, outside quotes)."""
    quote = None
    for i, c in enumerate(line):
        if quote:
            if c == quote:
                quote = None
        elif c in "\"'":
            quote = c
        elif c == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i]
    return line


def split_top(text, sep):
    """Splits on sep outside quotes."""
    parts, quote, cur = [], None, ""
    for c in text:
        if quote:
            quote = None if c == quote else quote
        elif c in "\"'":
            quote = c
        elif c == sep:
            parts.append(cur)
            cur = ""
            continue
        cur += c
    return parts + [cur]


def variants(code):
    """Every command line a README line stands for (see the module doc)."""
    brackets = re.findall(r"\[([^\[\]]*)\]", code)
    template = re.sub(r"\[([^\[\]]*)\]", "\0", code)
    choices = [[""] * len(brackets)]  # without any bracket
    for i, b in enumerate(brackets):
        for alt in split_top(b, "|"):
            c = [""] * len(brackets)
            c[i] = alt.strip()
            choices.append(c)
    if len(brackets) > 1:
        choices.append([split_top(b, "|")[0].strip() for b in brackets])
    lines = []
    for c in choices:
        filled = template
        for alt in c:
            filled = filled.replace("\0", alt, 1)
        lines.append(filled)
    out = []
    for line in lines:
        words = shlex.split(line)
        # A bare a|b|c word: one command per alternative.
        bar = next((i for i, w in enumerate(words) if "|" in w and not w.startswith("-")
                    and not re.search(r"\s", w)), None)
        if bar is None:
            out.append(words)
        else:
            for alt in words[bar].split("|"):
                out.append(words[:bar] + [alt] + words[bar + 1:])
    unique = []
    for w in out:
        if w not in unique:
            unique.append(w)
    return unique


def command_words(words):
    """The comity command (and subcommand for groups) of a comity argv."""
    i = 1
    while i < len(words) and words[i].startswith("--"):
        i += 2 if words[i] in ("--connect", "--treaties") else 1
    return words[i:i + 2]


class Network:
    """deploy/local-network.sh --keep in tmp/net, its nodes stopped by stop()."""

    def __init__(self, src, bindir, tmp):
        self.src, self.bin, self.tmp = src, bindir, tmp
        self.dir = os.path.join(tmp, "net")
        self.out = ""

    def start(self):
        src, bindir, tmp = self.src, self.bin, self.tmp
        # A node refuses a taken port: another base then (tests/pick_base_port.sh).
        for attempt in range(3):
            port = subprocess.run([os.path.join(src, "tests/pick_base_port.sh")],
                                  capture_output=True, text=True, check=True).stdout.strip()
            log = os.path.join(tmp, "local-network.out")
            # To a file, not a pipe: the nodes it leaves running inherit it.
            with open(log, "w") as f:
                rc = subprocess.run([os.path.join(src, "deploy/local-network.sh"), "--bin", bindir,
                                     "--keep", "--dir", self.dir, "--base-port", port],
                                    stdout=f, stderr=subprocess.STDOUT).returncode
            self.out = open(log).read()
            if rc == 0:
                break
            self.stop()
            print(f"local-network.sh exited {rc} (base port {port}), attempt {attempt + 1}:\n{self.out}")
            for p in sorted(os.listdir(self.dir)) if os.path.isdir(self.dir) else []:
                log = os.path.join(self.dir, p, "comityd.log")
                if os.path.exists(log):
                    print(f"== {log}\n{open(log, errors='replace').read()}")
        else:
            raise Failure("deploy/local-network.sh did not start a network")
        self.parties = re.search(r"^== \d+ nodes up: (.*) \(", self.out, re.M).group(1).split()
        m = re.search(r"^submitted ([0-9a-f-]{36}):", self.out, re.M)
        self.first_id = m.group(1)
        conf = open(os.path.join(self.dir, self.parties[0], "node.conf")).read()
        self.metrics = re.search(r'^metrics_listen_address: "([^"]+)"', conf, re.M).group(1)
        self.approval_type = re.search(r"approval \{ assistance_types: \[(\w+)", conf).group(1)

    def stop(self):
        """Stops the nodes local-network.sh started (by their pid files)."""
        pids = []
        for p in os.listdir(self.dir) if os.path.isdir(self.dir) else []:
            f = os.path.join(self.dir, p, "comityd.pid")
            if os.path.exists(f):
                try:
                    pid = int(open(f).read())
                    os.kill(pid, signal.SIGTERM)
                    pids.append(pid)
                except (ProcessLookupError, ValueError):
                    pass
        deadline = time.time() + 10
        for pid in pids:
            while time.time() < deadline:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)


class Runner:
    def __init__(self, src, bindir, readme):
        self.src, self.bin, self.readme = src, bindir, readme
        self.tmp = tempfile.mkdtemp(prefix="comity-readme-")
        self.net = Network(src, bindir, self.tmp)
        self.work = os.path.join(self.tmp, "work")
        self.env = dict(os.environ)
        self.env.pop("COMITY_CONNECT", None)
        self.current_id = None
        self.fresh = 0
        self.last_out = ""
        self.made = set()  # placeholder files this test wrote
        self.ran, self.skipped, self.failures = 0, 0, []

    def start(self):
        """Starts the network and lays out the working directory."""
        src, bindir = self.src, self.bin
        self.net.start()
        os.makedirs(os.path.join(self.work, "build"))
        for name in os.listdir(src):
            if not name.startswith(".") and name != "build":
                os.symlink(os.path.join(src, name), os.path.join(self.work, name))
        os.symlink(bindir, os.path.join(self.work, "build", "bin"))
        for p in self.net.parties:
            os.symlink(os.path.join(self.net.dir, p), os.path.join(self.work, p))
        self.current_id = self.net.first_id
        print(f"network: {' '.join(self.net.parties)} in {self.net.dir}; "
              f"commands run in {self.work}")

    # --- the test's own steps, to bring a fresh request to a state ---

    def comity(self, *args, check=True):
        r = subprocess.run([os.path.join(self.bin, "comity")] + list(args), cwd=self.work,
                           env=self.env, capture_output=True, text=True, timeout=60)
        if check and r.returncode != 0:
            raise Failure(f"setup step `comity {' '.join(args)}` exited {r.returncode}:\n"
                          f"{r.stdout}{r.stderr}")
        return r

    def show(self, party, rid):
        r = self.comity("--connect", f"{party}/alice.conf", "show", rid, "--json", check=False)
        return json.loads(r.stdout) if r.returncode == 0 else None

    def wait(self, what, party, rid, ok):
        deadline = time.time() + RETRY_SECONDS
        while time.time() < deadline:
            s = self.show(party, rid)
            if s is not None and ok(s):
                return
            time.sleep(0.2)
        raise Failure(f"setup: {what} of {rid} not seen at {party} in {RETRY_SECONDS} s: "
                      f"{json.dumps(self.show(party, rid))[:2000]}")

    def submit(self, kind):
        fr, jp = self.net.parties[0], self.net.parties[1]
        args = ["--connect", f"{fr}/alice.conf", "submit", "--to", jp, "--offence", "DATA_INTERFERENCE",
                "--authority", "Parquet de Paris", "--facts", TEXT]
        if kind == "draft":
            args += ["--type", self.net.approval_type, "--penalty-months", "60"]
        else:
            args += ["--type", "PRESERVATION", "--data-sought", TEXT, "--relation", TEXT,
                     "--custodian", TEXT, "--necessity", TEXT, "--intent-mla"]
        out = self.comity(*args).stdout
        return re.search(r"^submitted ([0-9a-f-]{36}):", out, re.M).group(1)

    def request_in(self, state):
        """A fresh request FR sent JP, brought to state."""
        fr, jp = self.net.parties[0], self.net.parties[1]
        if state == "awaiting-approval":
            return self.submit("draft")
        rid = self.submit("request")
        self.wait("delivery", jp, rid, lambda s: True)

        def step(*args, steps):
            self.comity("--connect", f"{jp}/bob.conf", *args)
            self.wait(f"step {steps}", fr, rid, lambda s: s.get("step_count") == steps)

        if state == "delivered":
            return rid
        if state == "info-requested":
            step("ask", rid, "--text", TEXT, steps=1)
            return rid
        step("accept", rid, steps=1)
        if state == "accepted":
            return rid
        if state == "executed":
            step("respond", rid, "--text", TEXT, "--final", steps=2)
            return rid
        if state == "conditions-pending":
            step("respond", rid, "--text", TEXT, "--condition", TEXT, steps=2)
            return rid
        if state == "evidence-released":
            evidence = self.fresh_file("evidence.bin")
            step("respond", rid, "--text", TEXT, "--file", evidence, "--condition", TEXT, steps=2)
            self.comity("--connect", f"{fr}/alice.conf", "accept-conditions", rid)
            self.wait("evidence", fr, rid, lambda s: s.get("evidence") and all(
                e.get("state") == "verified" for e in s["evidence"]))
            return rid
        raise Failure(f"no way to make a request in state {state}")

    def fresh_file(self, name):
        self.fresh += 1
        path = os.path.join(self.work, f"{self.fresh}-{name}")
        with open(path, "wb") as f:
            f.write(os.urandom(64 * 1024))
        return path

    # --- README lines ---

    def substitute(self, words):
        """The argv to run for one variant, and whether it has an ID."""
        argv, has_id = [], False
        cmd = command_words(words) if words[0] == "comity" else []
        for i, w in enumerate(words):
            if i == 0 and w == "comity":
                w = os.path.join(self.bin, "comity")
            elif w == "ID":
                state = STATE_NEEDED.get(cmd[0] if cmd else "")
                if state:
                    self.current_id = self.request_in(state)
                w, has_id = self.current_id, True
            elif "..." in w:
                w = TEXT if w == "..." else w.replace("...", TEXT)
            elif w == "DIR":
                # Written to (--out DIR): a fresh one; read (verify-package
                # DIR): the one the line before wrote.
                if (i > 0 and words[i - 1] == "--out") or not self.last_out:
                    self.fresh += 1
                    self.last_out = os.path.join(self.work, f"out-{self.fresh}")
                w = self.last_out
            elif i == 1 and words[0].endswith("make-network.sh") and w.startswith("/tmp/"):
                w = os.path.join(self.tmp, "scratch" + w.replace("/", "-"))
            elif w == "/tmp/net" or w.startswith("/tmp/net/"):
                w = self.net.dir + w[len("/tmp/net"):]
            elif w.startswith("/tmp/"):
                w = os.path.join(self.tmp, "scratch" + w.replace("/", "-"))
            elif i > 0 and words[i - 1] == "--file" and (
                    w in self.made or not os.path.exists(os.path.join(self.work, w))):
                # New content each run: the node keeps evidence by SHA-256, and
                # uploading a file it already holds is not what the line shows.
                self.made.add(w)
                with open(os.path.join(self.work, w), "wb") as f:
                    f.write(os.urandom(64 * 1024))
            elif words[0] == "curl":
                w = re.sub(r"^(https?://)(127\.0\.0\.1|localhost):\d+(/metrics)",
                           rf"\g<1>{self.net.metrics}\3", w)
            argv.append(w)
        if argv[0] == "curl":
            argv[1:1] = ["-fsS"]
        return argv, has_id

    def run_line(self, n, code):
        words0 = code.split()
        for prefix, why in SKIP:
            if words0[0] == prefix:
                print(f"SKIP README.md:{n}: {code}\n     ({why})")
                self.skipped += 1
                return
        if words0[0] == "export" and "=" in code:
            name, value = code.split(None, 1)[1].split("=", 1)
            self.env[name] = value
            print(f"README.md:{n}: $ {code}   (set for the lines after it)")
            return
        for words in variants(code):
            skip = next((why for first, flag, why in SKIP_VARIANT
                         if words[0] == first and flag not in words), None)
            if skip:
                print(f"SKIP README.md:{n}: {' '.join(words)}\n     ({skip})")
                self.skipped += 1
                continue
            try:
                argv, has_id = self.substitute(words)
            except Failure as e:
                self.fail(n, code, " ".join(words), str(e))
                continue
            if tuple(command_words(argv)) in SERVES and words[0] == "comity":
                self.run_server(n, code, argv)
            else:
                self.run_one(n, code, argv, has_id)

    def run_one(self, n, code, argv, has_id):
        shown = shlex.join(argv)
        deadline, tries = time.time() + RETRY_SECONDS, 0
        while True:
            tries += 1
            try:
                r = subprocess.run(argv, cwd=self.work, env=self.env, capture_output=True,
                                   text=True, timeout=120)
                rc, out = r.returncode, r.stdout + r.stderr
            except subprocess.TimeoutExpired:
                rc, out = "timeout", "(no exit in 120 s)"
            if rc == 1 and has_id and time.time() < deadline:
                time.sleep(0.5)
                continue
            break
        m = re.search(r"^submitted ([0-9a-f-]{36}):", out, re.M) if rc == 0 else None
        if m:
            self.current_id = m.group(1)
        retried = f" after {tries} tries" if tries > 1 else ""
        print(f"README.md:{n}: $ {shown}\n     exit {rc}{retried}")
        self.ran += 1
        if rc != 0:
            self.fail(n, code, shown, f"exit {rc}, expected 0", out)

    def run_server(self, n, code, argv):
        shown = shlex.join(argv)
        p = subprocess.Popen(argv, cwd=self.work, env=self.env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
        out, url = "", None
        try:
            deadline = time.time() + 20
            while time.time() < deadline and url is None:
                line = p.stdout.readline()
                if not line:
                    break
                out += line
                m = re.search(r"https?://\S+", line)
                url = m.group(0) if m else None
            if url is None:
                self.fail(n, code, shown, f"printed no URL (exit {p.poll()})", out)
                return
            # The token sets a cookie and redirects to the page without it.
            jar = os.path.join(self.tmp, "cookies")
            r = subprocess.run(["curl", "-fsSL", "-c", jar, "-b", jar, "-o", "/dev/null",
                                "-w", "%{http_code}", url], capture_output=True, text=True, timeout=30)
            alive = p.poll() is None
            print(f"README.md:{n}: $ {shown}\n     serves {url.split('?')[0]}: HTTP {r.stdout or r.stderr.strip()}"
                  f"{'' if alive else ', then exited ' + str(p.poll())}")
            self.ran += 1
            if r.returncode != 0 or not alive:
                self.fail(n, code, shown, f"its page: curl exit {r.returncode} {r.stderr.strip()}; "
                                          f"still serving: {alive}", out)
        finally:
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()

    def fail(self, n, code, shown, why, output=""):
        """Records a failed README line: its number, the line, what ran, why."""
        print(f"FAIL README.md:{n}: {code}\n     ran: {shown}\n     {why}"
              + (f"; output:\n{output}" if output else ""))
        first = next((l for l in output.splitlines() if l.strip()), "")
        self.failures.append(f"README.md:{n}: `{code}`: {why}" + (f": {first}" if first else ""))

    def close(self):
        self.net.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)


def main():
    args = sys.argv[1:]
    readme = None
    if "--readme" in args:
        i = args.index("--readme")
        readme = os.path.abspath(args[i + 1])
        del args[i:i + 2]
    src, bindir = os.path.abspath(args[0]), os.path.abspath(args[1])
    readme = readme or os.path.join(src, "README.md")
    lines = code_lines(readme)
    runner = Runner(src, bindir, readme)
    try:
        runner.start()
        for n, code in lines:
            runner.run_line(n, code)
    except Failure as e:
        runner.failures.append(str(e))
    finally:
        runner.close()
    if runner.ran < 30:
        runner.failures.append(f"only {runner.ran} commands ran from {readme}'s code blocks")
    print(f"\n{readme}: {len(lines)} command lines, {runner.ran} commands run, "
          f"{runner.skipped} skipped, {len(runner.failures)} failed")
    if runner.failures:
        for f in runner.failures:
            print("FAIL:", f)
        sys.exit(1)


if __name__ == "__main__":
    main()
