#!/usr/bin/env python3
"""Crash safety of two comityd processes under kill -9 (run by crash_test.sh).

Starts FR and JP as separate comityd processes on free loopback ports with
the real credentials of certs/make-network.sh (mutual TLS, Ed25519 signing
keys), then runs scenarios while operators work through the `comity` CLI,
each call a separate process (crash_test.py SOURCE BIN [A,B,C | D]):

  A  receiver crashes: FR's operators submit a stream of requests to JP
     (several submitters at once) while JP is kill -9'ed at random moments
     and restarted after a random pause; JP's operators decide on what
     they received and FR's withdraw or close some cases meanwhile.
  B  sender crashes: the same with FR killed and restarted while it
     submits and delivers (first with a backlog: JP is down for a moment,
     then FR is killed as it retries); while FR is down JP's operators
     decide, so the steps queue at JP and must reach FR after its restart.
  C  outages longer than the receiver's replay window, FR's signing key
     rotated meanwhile (OutageScenario below says what it checks besides).
  D  wrong wall clocks through libfaketime: JP 10 min behind, FR 2 h
     behind, FR ahead by more than the skew, each fixed by a restart
     (ClockScenario below). ctest runs A, B, C as crash_safety_script and
     D as crash_safety_clock, each on SQLite and, with COMITY_TEST_POSTGRES,
     on PostgreSQL.

After each scenario, and a bounded wait for the queues to drain (comity
peers), it checks:
  - every submit that returned an id is in FR's outgoing list (FR's list is
    the ground truth: a submit whose CLI call failed may or may not have
    been stored), every outgoing request is DELIVERED, and JP holds exactly
    the same ids, each once: none missing, none extra, none twice;
  - every request's signature and receipt verify on both sides (comity
    show), and both hold the same receipt (same time, same payload hash);
  - for each case both sides hold the same state and the same number of
    signed steps, and no step an operator was told was signed is lost;
  - both audit logs verify (comity audit verify), and record each request
    exactly once (REQUEST_SUBMITTED at FR, REQUEST_RECEIVED at JP,
    DELIVERY_ACKNOWLEDGED at FR) and each case step exactly once;
  - a submit at FR never fails because JP is down (scenario A), every CLI
    call returns within its deadline, every restart answers within 30 s,
    and neither node logs a split view or a failed store or audit write.

Randomness (pauses, kill moments, choices) comes from one seed, printed at
the start and settable with COMITY_CRASH_SEED; the interleaving with the
nodes' own threads still varies between runs. Other knobs (environment):
COMITY_CRASH_REQUESTS (per scenario A and B, default 100; C takes a fifth),
COMITY_CRASH_KILLS (per scenario A and B, default 6, plus one kill during a
restart), COMITY_CRASH_SUBMITTERS (default 3), COMITY_CRASH_DRAIN_SECONDS
(default 60), COMITY_CRASH_REPLAY_WINDOW (scenario C, seconds, default 4),
COMITY_CRASH_KEEP=1 (keep the directory even on success; it is always kept
on failure).
"""

import collections
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

T0 = time.monotonic()
PRINT_LOCK = threading.Lock()


def say(msg):
    with PRINT_LOCK:
        print(f"[{time.monotonic() - T0:6.1f}s] {msg}", flush=True)


def env_int(name, default):
    value = os.environ.get(name, "")
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        sys.exit(f"crash_test: {name}={value!r} is not a whole number")


class Failures:
    """Every check that failed, with what differed; the test fails if any."""

    def __init__(self):
        self.items = collections.Counter()  # message -> times seen
        self.lock = threading.Lock()

    def add(self, msg):
        with self.lock:
            self.items[msg] += 1
            first = self.items[msg] == 1
        if first:
            say(f"FAIL: {msg}")


FAILURES = Failures()
# Set when a node does not come back, to stop every thread of a scenario.
ABORT = threading.Event()


class Fatal(Exception):
    pass


def free_ports(n):
    """n distinct loopback ports free right now (bound to port 0 at once)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class Network:
    def __init__(self, root, bin_dir, work):
        self.root = root
        self.bin = bin_dir
        self.dir = work
        self.comity = os.path.join(bin_dir, "comity")
        self.env = {k: v for k, v in os.environ.items() if k != "COMITY_CONNECT"}
        self.hangs = []
        self.databases = {}  # party -> PostgreSQL URL, when COMITY_TEST_POSTGRES is set
        self.ports = {}  # party -> (peer port, operator port)
        # party -> lines of its node.conf that scenarios change: its signing
        # keys, its limits.
        self.signing = {}
        self.limits = {}

    def conf(self, party, operator):
        return os.path.join(self.dir, party, f"{operator}.conf")

    def cli(self, party, operator, *args, timeout=90):
        """Runs `comity --connect ... --json ARGS`: (exit code, stdout, stderr).

        The CLI's own deadlines are at most 60 s: a call that outlives
        `timeout` is a hang, recorded as a failure."""
        cmd = [self.comity, "--connect", self.conf(party, operator), "--json", *args]
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                               env=self.env)
        except subprocess.TimeoutExpired:
            msg = f"HANG: 'comity {' '.join(args)}' at {party} did not return within {timeout} s"
            self.hangs.append(msg)
            FAILURES.add(msg)
            return -1, "", msg
        return p.returncode, p.stdout, p.stderr.strip()

    def cli_json(self, party, operator, *args, timeout=90):
        rc, out, err = self.cli(party, operator, *args, timeout=timeout)
        if rc != 0:
            return None, err or f"exit {rc}"
        try:
            return json.loads(out), ""
        except json.JSONDecodeError as e:
            return None, f"output is not JSON ({e}): {out[:300]}"


class Node:
    """One comityd process; started, killed and restarted from one thread at a time."""

    def __init__(self, net, party):
        self.net = net
        self.party = party
        self.dir = os.path.join(net.dir, party)
        self.log_path = os.path.join(self.dir, "comityd.log")
        self.proc = None
        self.starts = 0
        self.kills = 0

    def start(self, clock_offset=None):
        """Starts comityd; with `clock_offset` (a FAKETIME offset such as
        "-10m") its wall clock is that far off, its monotonic clock not."""
        self.starts += 1
        env = None
        what = f"start #{self.starts} of {self.party}"
        if clock_offset:
            env = dict(self.net.env, **faketime_env(clock_offset))
            what += f", wall clock {clock_offset}"
        with open(self.log_path, "a") as log:
            log.write(json.dumps({"crash_test": what}) + "\n")
            log.flush()
            self.proc = subprocess.Popen(
                [os.path.join(self.net.bin, "comityd"), "--config",
                 os.path.join(self.dir, "node.conf")],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=self.dir, env=env)

    def kill9(self, why):
        self.kills += 1
        pid = self.proc.pid
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        with open(self.log_path, "a") as log:
            log.write(json.dumps({"crash_test": f"kill -9 #{self.kills} of {self.party}"}) + "\n")
        say(f"kill -9 {self.party} (pid {pid}), #{self.kills}: {why}")

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def wait_up(self, timeout=30):
        """Until the node answers its operators; Fatal if it exits or stays silent."""
        deadline = time.monotonic() + timeout
        err = ""
        while time.monotonic() < deadline:
            rc, _, err = self.net.cli(self.party, "alice", "list", "--limit", "1", timeout=20)
            if rc == 0:
                return
            if self.proc.poll() is not None:
                raise Fatal(f"comityd {self.party} exited with status {self.proc.returncode} after "
                            f"start #{self.starts} (it does not restart after kill -9?); "
                            f"log: {self.log_path}\n{tail(self.log_path, 30)}")
            time.sleep(0.05)
        raise Fatal(f"comityd {self.party} does not answer {timeout} s after start #{self.starts}; "
                    f"last error: {err}; log: {self.log_path}\n{tail(self.log_path, 30)}")


# libfaketime (Debian package faketime): an LD_PRELOAD library that offsets
# what the process reads from the wall clock. comityd has no clock hook of
# its own for a child process, and needs none.
FAKETIME_LIB = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"


def faketime_env(offset):
    """The environment that runs a process with its wall clock `offset`
    ("+10m", "-2h", "+310": seconds) off; its monotonic clock, on which gRPC
    and comityd time their waits, stays the real one."""
    return {"LD_PRELOAD": FAKETIME_LIB, "FAKETIME": offset,
            "FAKETIME_DONT_FAKE_MONOTONIC": "1"}


def tail(path, n):
    try:
        with open(path, errors="replace") as f:
            lines = f.readlines()
    except OSError as e:
        return f"(cannot read {path}: {e})"
    return "".join("    " + line for line in lines[-n:])


PG_SERVER = os.environ.get("COMITY_TEST_POSTGRES", "")


def with_database(url, name):
    """A libpq URL for database `name` on the server of `url`."""
    return url + ("&" if "?" in url else "?") + "dbname=" + name


def create_pg_database(server):
    name = "comity_crash_%016x" % random.SystemRandom().getrandbits(64)
    subprocess.run(["psql", "-q", "-v", "ON_ERROR_STOP=1", server, "-c",
                    f"CREATE DATABASE {name} TEMPLATE template0 ENCODING 'UTF8' "
                    "LC_COLLATE 'C' LC_CTYPE 'C'"], check=True, stdout=subprocess.DEVNULL)
    return with_database(server, name)


def drop_pg_databases(net):
    for url in net.databases.values():
        name = url.rsplit("dbname=", 1)[1]
        subprocess.run(["psql", "-q", PG_SERVER, "-c", f"DROP DATABASE IF EXISTS {name}"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def write_configs(net, parties, ports):
    """Node and operator configurations as deploy/local-network.sh writes them,
    with short delivery retries and gossip so the test runs in seconds, and
    the signing keys and limits of net.signing and net.limits."""
    net.ports = ports
    treaties = os.path.join(net.root, "deploy", "treaties")
    for i, p in enumerate(parties):
        peer_port, op_port = ports[p]
        lines = [
            f"# Node configuration of party {p} for tests/e2e/crash_test.py.",
            f'party: "{p}"',
            f'peer_listen_address: "127.0.0.1:{peer_port}"',
            f'operator_listen_address: "127.0.0.1:{op_port}"',
            'data_dir: "data"',
            f'treaties_dir: "{treaties}"',
            "approval { assistance_types: [EXTRADITION, INTERCEPTION] }",
            'tls { cert_file: "node.pem" key_file: "node.key" operator_ca_file: "ca.pem" }',
            *net.signing.get(
                p, [f'signing_key {{ key_id: "{p}-1" private_key_file: "signing.key" }}']),
            "delivery { attempt_timeout_ms: 2000 retry_initial_ms: 100 retry_max_ms: 1000 }",
            "audit { head_interval_seconds: 2 }",
            *net.limits.get(p, []),
        ]
        if net.databases:
            lines.append(f'database: "{net.databases[p]}"')
        for q in parties:
            if q == p:
                continue
            with open(os.path.join(net.dir, q, "signing.pub")) as f:
                pub = f.read().strip()
            lines += [
                "peers {",
                f'  party: "{q}"',
                f'  address: "127.0.0.1:{ports[q][0]}"',
                f'  ca_file: "../{q}/ca.pem"',
                f'  signing_keys {{ key_id: "{q}-1" ed25519_public_key: "{pub}" }}',
                "}",
            ]
        with open(os.path.join(net.dir, p, "node.conf"), "w") as f:
            f.write("\n".join(lines) + "\n")
        for op in ("alice", "bob", "carol"):
            with open(net.conf(p, op), "w") as f:
                f.write(f'address: "127.0.0.1:{op_port}"\nca_file: "ca.pem"\n'
                        f'cert_file: "operators/{op}.pem"\nkey_file: "operators/{op}.key"\n')


# --- What the operators do. ---

# Moves of the requested party (JP, operator bob) from each case state
# (docs/lifecycle.md), weighted towards accept and refuse.
REFUSE = ("refuse", "--ground", "ESSENTIAL_INTERESTS", "--reasons",
          "crash test: execution would prejudice essential interests (ETS185 Art 29(5))")
JP_MOVES = {
    "CASE_DELIVERED": [("accept",), ("accept",), REFUSE, REFUSE, ("ack",), ("review",)],
    "CASE_ACKNOWLEDGED": [("accept",), REFUSE, ("review",)],
    "CASE_UNDER_REVIEW": [("accept",), REFUSE],
    "CASE_ACCEPTED": [("respond", "--final", "--text", "crash test: data preserved")],
    "CASE_EXECUTED": [("close",)],
    "CASE_REFUSED": [("close",)],
    "CASE_WITHDRAWN": [("close",)],
}
# Moves of the requesting party (FR, operator alice): signed proposals that
# JP numbers into the case at once.
OPEN_STATES = ("CASE_DELIVERED", "CASE_ACKNOWLEDGED", "CASE_UNDER_REVIEW", "CASE_ACCEPTED")
FR_MOVES = {s: [("withdraw", "--text", "crash test: no longer needed")] for s in OPEN_STATES}
FR_MOVES.update({s: [("close",)] for s in ("CASE_EXECUTED", "CASE_REFUSED", "CASE_WITHDRAWN")})


def submit(net, label):
    """One `comity submit` of a preservation request at FR for JP."""
    return net.cli(
        "FR", "alice", "submit", "--to", "JP", "--type", "PRESERVATION",
        "--offence", "DATA_INTERFERENCE", "--penalty-months", "60",
        "--authority", "Parquet de Paris, section J3",
        "--facts", f"crash test {label}",
        "--data-sought", "Connection logs of 203.0.113.7",
        "--relation", "The server relayed the command-and-control traffic",
        "--custodian", "Example Hosting KK", "--necessity", "Logs are rotated",
        "--intent-mla")


class Scenario:
    def __init__(self, net, nodes, name, victim, requests, kills, submitters, seed):
        self.net = net
        self.nodes = nodes
        self.name = name
        self.victim = victim
        self.requests = requests
        self.kills = kills
        self.submitters = submitters
        self.seed = seed
        self.lock = threading.Lock()
        self.submitted_ok = 0
        self.attempts = 0
        self.reported = {}  # id -> state the submit reported
        self.submit_errors = collections.Counter()
        self.decisions_ok = 0
        self.decisions_failed = collections.Counter()
        self.proposals_ok = 0
        self.proposals_failed = collections.Counter()
        self.signed_steps = {}  # id -> highest step number an operator was told was signed
        self.proposed = []  # (id, action) of FR's proposals the CLI took
        self.done = threading.Event()  # submitters and chaos finished
        self.chaos_over = threading.Event()

    def rng(self, role):
        return random.Random(f"{self.seed}/{self.name}/{role}")

    def note_step(self, rid, out):
        try:
            step = int(json.loads(out).get("step", 0))
        except (ValueError, AttributeError):
            return
        with self.lock:
            self.signed_steps[rid] = max(self.signed_steps.get(rid, 0), step)

    def submitter(self, k):
        rng = self.rng(f"submitter{k}")
        while not ABORT.is_set():
            with self.lock:
                if self.submitted_ok >= self.requests or self.attempts >= 4 * self.requests:
                    return
                self.attempts += 1
                n = self.attempts
            # Paced so the stream lasts about as long as the kills.
            if not self.chaos_over.is_set():
                time.sleep(rng.uniform(0.05, 0.4))
            rc, out, err = submit(self.net, f"{self.name}, submitter {k}, attempt {n}")
            if rc == 0:
                try:
                    rec = json.loads(out)
                    rid, state = rec["id"], rec["state"]
                except (ValueError, KeyError) as e:
                    FAILURES.add(f"{self.name}: submit succeeded but printed no id ({e}): "
                                 f"{out[:300]}")
                    continue
                with self.lock:
                    self.submitted_ok += 1
                    if rid in self.reported:
                        FAILURES.add(f"{self.name}: two submits returned the same id {rid}")
                    self.reported[rid] = state
            else:
                with self.lock:
                    self.submit_errors[err[:100]] += 1
                if self.victim == "JP":
                    # FR stays up in this scenario: a peer that is down must
                    # not make a submit fail (the request is stored and retried).
                    FAILURES.add(f"{self.name}: submit at FR failed while only JP was being "
                                 f"killed: {err}")
                time.sleep(rng.uniform(0.05, 0.3))

    def decide_once(self, rng, party, operator, moves):
        """One random legal move on a random case of `party`; True if it was tried."""
        direction = "--received" if party == "JP" else "--sent"
        records, err = self.net.cli_json(party, operator, "list", direction, "--limit", "1000")
        if records is None:
            return False
        candidates = sorted(r["id"] for r in records if r.get("case_state") in moves)
        if not candidates:
            return False
        rid = rng.choice(candidates)
        state = next(r["case_state"] for r in records if r["id"] == rid)
        move = rng.choice(moves[state])
        rc, out, err = self.net.cli(party, operator, move[0], rid, *move[1:])
        stats_ok = "decisions_ok" if party == "JP" else "proposals_ok"
        stats_failed = self.decisions_failed if party == "JP" else self.proposals_failed
        with self.lock:
            if rc == 0:
                setattr(self, stats_ok, getattr(self, stats_ok) + 1)
            else:
                stats_failed[f"{move[0]}: {err[:200]}"] += 1
        if rc == 0:
            self.note_step(rid, out)
            if party == "FR":
                with self.lock:
                    self.proposed.append((rid, move[0]))
        return True

    def operator(self, party, operator, moves, budget, pause):
        rng = self.rng(f"operator-{party}")
        tried = 0
        while not ABORT.is_set() and not self.done.is_set() and tried < budget:
            time.sleep(rng.uniform(*pause))
            if self.decide_once(rng, party, operator, moves):
                tried += 1

    def chaos(self):
        rng = self.rng("chaos")
        victim = self.nodes[self.victim]
        try:
            for k in range(self.kills):
                if ABORT.is_set():
                    return
                if self.victim == "FR" and k == 0:
                    # A backlog first: JP down while FR keeps accepting
                    # submissions, then FR killed while it retries them.
                    time.sleep(rng.uniform(0.3, 1.0))
                    jp = self.nodes["JP"]
                    jp.kill9("so that FR builds a backlog")
                    time.sleep(rng.uniform(1.0, 2.0))
                    jp.start()
                    jp.wait_up()
                    time.sleep(rng.uniform(0.0, 0.3))
                    victim.kill9("while it delivers its backlog")
                else:
                    time.sleep(rng.uniform(0.3, 2.0))
                    victim.kill9("mid-stream")
                down_until = time.monotonic() + rng.uniform(0.3, 1.5)
                if self.victim == "FR":
                    # JP decides while FR is down: the signed steps queue.
                    for _ in range(rng.randint(1, 3)):
                        self.decide_once(rng, "JP", "bob", JP_MOVES)
                time.sleep(max(0.0, down_until - time.monotonic()))
                victim.start()
                if k == self.kills - 2:
                    # Once per scenario, again while it recovers: the
                    # restart itself must survive a crash.
                    time.sleep(rng.uniform(0.0, 0.2))
                    victim.kill9("during its restart")
                    time.sleep(rng.uniform(0.1, 0.5))
                    victim.start()
                victim.wait_up()
        except Fatal as e:
            FAILURES.add(f"{self.name}: {e}")
            ABORT.set()
        finally:
            self.chaos_over.set()

    def run(self):
        say(f"scenario {self.name}: {self.requests} requests FR -> JP by {self.submitters} "
            f"submitters, {self.kills} x kill -9 {self.victim}")
        threads = [threading.Thread(target=self.submitter, args=(k,))
                   for k in range(self.submitters)]
        threads.append(threading.Thread(target=self.chaos))
        ops = [threading.Thread(target=self.operator,
                                args=("JP", "bob", JP_MOVES, self.requests, (0.05, 0.3))),
               threading.Thread(target=self.operator,
                                args=("FR", "alice", FR_MOVES, max(4, self.requests // 8),
                                      (0.2, 1.0)))]
        for t in threads + ops:
            t.start()
        for t in threads:
            t.join()
        self.done.set()
        for t in ops:
            t.join()
        say(f"scenario {self.name}: {self.submitted_ok} submits returned an id in "
            f"{self.attempts} attempts; failed submits: {dict(self.submit_errors) or 0}")
        say(f"scenario {self.name}: JP decisions signed {self.decisions_ok}, refused "
            f"{sum(self.decisions_failed.values())}; FR proposals numbered "
            f"{self.proposals_ok}, refused {sum(self.proposals_failed.values())}")
        for what, n in sorted((self.decisions_failed + self.proposals_failed).items()):
            say(f"    {n} x {what}")


    def check_extra(self):
        """Checks of this scenario beyond those of check()."""


def parse_duration(text):
    """Seconds in an absl::FormatDuration text such as "2h0m3s" or "7s"."""
    total, num = 0.0, ""
    units = {"h": 3600, "m": 60, "s": 1}
    for c in text:
        if c.isdigit() or c == ".":
            num += c
        elif c in units and num:
            total += float(num) * units[c]
            num = ""
        else:
            return None
    return total if not num else None


def received_ages(net, ids):
    """id -> the age JP's REQUEST_RECEIVED entry records ("arrived 7s later"),
    in seconds; None where it records none."""
    ages = {}
    for e in audit_entries(net, "JP", "REQUEST_RECEIVED") or []:
        rid = e.get("request_id", "")
        if rid not in ids:
            continue
        detail = e.get("detail", "")
        age = None
        if " arrived " in detail and detail.endswith(" later"):
            age = parse_duration(detail.rsplit(" arrived ", 1)[1][:-len(" later")])
        ages[rid] = age
    return ages


def refused_for_good(net, label, ids, proposed):
    """Fails if FR refused any of `ids` for good (DELIVERY_REFUSED) or JP
    refused any proposal of FR on `proposed` (PROPOSAL_REFUSED)."""
    for event, which in (("DELIVERY_REFUSED", set(ids)), ("PROPOSAL_REFUSED", set(proposed))):
        bad = [e for e in audit_entries(net, "FR", event) or [] if e.get("request_id") in which]
        if bad:
            FAILURES.add(f"{label}: {len(bad)} {event} entries at FR, first: "
                         f"{bad[0].get('request_id')} {bad[0].get('detail', '')[:300]}")


class OutageScenario(Scenario):
    """C: outages longer than the receiver's replay window.

    Both nodes run with limits { replay_window_seconds: W } (and a skew of 2 s,
    so that a request's age is recorded once it passes 2 s). JP is killed;
    FR is restarted with a rotated signing key (FR-2, vouched for by FR-1),
    its operators submit requests and propose steps, FR is killed once with
    that backlog; after more than W JP comes back. Then FR is down for more
    than W while JP's operators decide. Checks (beyond check()): every
    request is accepted once with its age (at least W) in REQUEST_RECEIVED,
    none refused for good (DELIVERY_REFUSED, PROPOSAL_REFUSED), JP learned
    FR-2 from the announcement FR signs at each attempt (none refused as
    outside its acceptance window), and FR saw JP acknowledge it.
    """

    SKEW = 2

    def __init__(self, net, nodes, requests, submitters, seed, window):
        super().__init__(net, nodes, "C", "JP", requests, 0, submitters, seed)
        self.window = window

    def submit_one(self, n):
        rc, out, err = submit(self.net, f"C, JP down, request {n}")
        with self.lock:
            self.attempts += 1
        if rc != 0:
            FAILURES.add(f"C: submit at FR failed while JP was down: {err}")
            return
        try:
            rec = json.loads(out)
            rid, state = rec["id"], rec["state"]
        except (ValueError, KeyError) as e:
            FAILURES.add(f"C: submit succeeded but printed no id ({e}): {out[:300]}")
            return
        with self.lock:
            self.submitted_ok += 1
            self.reported[rid] = state

    def wait_out_window(self, since, why):
        pause = since + self.window + 1.5 - time.monotonic()
        say(f"scenario C: {why}: waiting {max(pause, 0):.1f} s more, past the replay window")
        time.sleep(max(0.0, pause))

    def run(self):
        net, fr, jp = self.net, self.nodes["FR"], self.nodes["JP"]
        rng = self.rng("outage")
        say(f"scenario C: JP down for longer than its replay window ({self.window} s) while "
            f"FR, restarted with a new signing key, takes {self.requests} requests; then FR "
            f"down as long while JP decides")
        try:
            for p in ("FR", "JP"):
                net.limits[p] = [f"limits {{ replay_window_seconds: {self.window} "
                                 f"max_clock_skew_seconds: {self.SKEW} }}"]
            key = os.path.join(fr.dir, "signing2.key")
            subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", key],
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            os.chmod(key, 0o600)
            net.signing["FR"] = [
                'signing_key { key_id: "FR-2" private_key_file: "signing2.key" }',
                'previous_signing_keys { key_id: "FR-1" private_key_file: "signing.key" }']
            write_configs(net, ["FR", "JP"], net.ports)
            jp.kill9("an outage longer than its replay window begins")
            fr.kill9("to restart with a rotated signing key, FR-2")
            fr.start()
            fr.wait_up()
            announced_at = time.monotonic()
            with ThreadPoolExecutor(max_workers=self.submitters) as pool:
                list(pool.map(self.submit_one, range(self.requests)))
            for _ in range(max(2, self.requests // 5)):
                self.decide_once(rng, "FR", "alice", FR_MOVES)
            last = time.monotonic()
            time.sleep(rng.uniform(0.0, 1.0))
            fr.kill9("with its backlog for JP")
            fr.start()
            fr.wait_up()
            self.wait_out_window(max(last, announced_at), "JP down")
            jp.start()
            jp.wait_up()
            took = wait_drained(net, 60)
            say(f"scenario C: FR's backlog delivered {took:.1f} s after JP's restart")
            fr.kill9("an outage longer than its replay window begins")
            for _ in range(max(2, self.requests // 5)):
                self.decide_once(rng, "JP", "bob", JP_MOVES)
            self.wait_out_window(time.monotonic(), "FR down, JP's steps queued")
            fr.start()
            fr.wait_up()
        except Fatal as e:
            FAILURES.add(f"C: {e}")
            ABORT.set()
        say(f"scenario C: {self.submitted_ok} submits returned an id; JP decisions signed "
            f"{self.decisions_ok}, refused {sum(self.decisions_failed.values())}; FR "
            f"proposals queued {self.proposals_ok}, refused {sum(self.proposals_failed.values())}")
        for what, n in sorted((self.decisions_failed + self.proposals_failed).items()):
            say(f"    {n} x {what}")

    def check_extra(self):
        net, label = self.net, "scenario C"
        ages = received_ages(net, set(self.reported))
        young = sorted(f"{rid}: {ages.get(rid)}" for rid in self.reported
                       if ages.get(rid) is None or ages[rid] < self.window)
        if young:
            FAILURES.add(f"{label}: {len(young)} of {len(self.reported)} requests have no age of "
                         f"at least {self.window} s in JP's REQUEST_RECEIVED entry: {young[:5]}")
        else:
            say(f"  {label}: JP recorded the age of each of the {len(ages)} requests, "
                f"{min(ages.values()):.0f} to {max(ages.values()):.0f} s")
        refused_for_good(net, label, self.reported, [rid for rid, _ in self.proposed])
        stale = [e for e in audit_entries(net, "JP", "PEER_REQUEST_REFUSED") or []
                 if "acceptance window" in e.get("detail", "")]
        if stale:
            FAILURES.add(f"{label}: JP refused {len(stale)} key announcements as outside its "
                         f"acceptance window, first: {stale[0].get('detail', '')[:300]}")
        jp_keys, err = net.cli_json("JP", "alice", "keys", "--party", "FR")
        fr_keys, err2 = net.cli_json("FR", "alice", "keys", "--party", "FR")
        # `comity keys --json` is one array of keys (docs/cli.md).
        def key_list(doc):
            return doc if isinstance(doc, list) else (doc or {}).get("keys", [])
        jp_fr2 = [k for k in key_list(jp_keys) if k.get("key_id") == "FR-2"]
        fr_fr2 = [k for k in key_list(fr_keys) if k.get("key_id") == "FR-2"]
        if not jp_fr2 or jp_fr2[0].get("source") != "announced":
            FAILURES.add(f"{label}: JP does not hold FR-2 as announced: {jp_keys or err}")
        if not fr_fr2 or "JP" not in fr_fr2[0].get("acknowledged_by", []):
            FAILURES.add(f"{label}: FR does not list JP's acknowledgement of FR-2: "
                         f"{fr_keys or err2}")


class ClockScenario(Scenario):
    """D: wrong wall clocks (libfaketime), each phase ended by restarting the
    node without the offset, with kill -9:

      D1  JP's clock 10 min behind: FR's requests are dated ahead of it by
          more than limits.max_clock_skew_seconds. JP refuses them
          (FAILED_PRECONDITION, "later than this node's clock", audited as
          PEER_REQUEST_REFUSED); FR keeps each queued, retried with backoff,
          the reason in `comity show` and `comity peers`, none refused for
          good. JP's decision and FR's proposal of the phase wait as well.
      D2  FR's clock 2 h behind: JP accepts FR's requests with their age
          (REQUEST_RECEIVED "arrived 2h... later"); FR holds JP's receipts,
          steps and heads as dated ahead of it until its clock is fixed.
          FR's proposal is not refused for good.
      D3  FR's clock ahead by the skew and 10 s: as D1 from the sender's
          side; after FR's clock is fixed its queued requests, signed while
          it was ahead, are delivered once the clocks agree within the skew
          (their stored retry times, set by the clock that was ahead, are
          no obstacle), and a request submitted meanwhile is delivered at
          its first attempt, not held up behind them.

    Before them, requests delivered with the clocks right give each phase a
    case to decide on (JP) and one to propose on (FR). Then check() over
    everything: each request delivered exactly once, receipts, cases and
    both audit logs.
    """

    PER_PHASE = 6
    SKEW = 300  # The default limits.max_clock_skew_seconds.

    def __init__(self, net, nodes, seed):
        super().__init__(net, nodes, "D", "JP", 0, 0, 1, seed)
        self.cases = []

    def submit_phase(self, phase, n):
        ids = []
        for k in range(n):
            rc, out, err = submit(self.net, f"D, {phase}, request {k}")
            if rc != 0:
                FAILURES.add(f"D ({phase}): submit at FR failed: {err}")
                continue
            try:
                rec = json.loads(out)
                ids.append(rec["id"])
                self.reported[rec["id"]] = rec["state"]
            except (ValueError, KeyError) as e:
                FAILURES.add(f"D ({phase}): submit printed no id ({e}): {out[:300]}")
        return ids

    def decide(self, phase):
        """JP accepts one case and FR withdraws another, while a clock is off."""
        if len(self.cases) < 2:
            FAILURES.add(f"D ({phase}): no cases left to decide on")
            return
        accept, withdraw = self.cases.pop(0), self.cases.pop(0)
        rc, out, err = self.net.cli("JP", "bob", "accept", accept)
        if rc != 0:
            FAILURES.add(f"D ({phase}): JP's accept of {accept} failed: {err}")
        else:
            self.note_step(accept, out)
        rc, out, err = self.net.cli("FR", "alice", "withdraw", withdraw, "--text",
                                    f"crash test D, {phase}")
        if rc != 0:
            FAILURES.add(f"D ({phase}): FR's withdraw of {withdraw} failed: {err}")
        else:
            self.proposed.append((withdraw, "withdraw"))

    def held_back(self, phase, ids):
        """The requests of a phase whose sender is ahead of the receiver: still
        queued at FR, retried, refused for now and not for good."""
        time.sleep(3)  # Several retries.
        later = "later than this node's clock"
        for rid in ids:
            rec, err = self.net.cli_json("FR", "alice", "show", rid)
            if rec is None:
                FAILURES.add(f"D ({phase}): comity show {rid} at FR failed: {err}")
                continue
            attempts = int(rec.get("delivery_attempts", 0))
            if (rec.get("state") != "PENDING_DELIVERY" or later not in rec.get("last_error", "")
                    or "FAILED_PRECONDITION" not in rec.get("last_error", "")):
                FAILURES.add(f"D ({phase}): {rid} at FR is {rec.get('state')} after "
                             f"{attempts} attempts, last error {rec.get('last_error')!r}; "
                             f"expected PENDING_DELIVERY, FAILED_PRECONDITION ... {later}")
            elif not 2 <= attempts <= 40:
                FAILURES.add(f"D ({phase}): {rid} was tried {attempts} times in about 3 s; "
                             f"expected retries with backoff (2 to 40)")
        peers, err = self.net.cli_json("FR", "alice", "peers")
        jp = [p for p in peers or [] if p.get("party") == "JP"]
        if not jp or later not in jp[0].get("last_error", "") or \
                int(jp[0].get("requests_queued", 0)) < len(ids):
            FAILURES.add(f"D ({phase}): comity peers at FR does not show the {len(ids)} "
                         f"requests queued for JP and why: {jp or err}")
        received, err = self.net.cli_json("JP", "alice", "list", "--received", "--limit", "1000")
        early = sorted(set(ids) & {r["id"] for r in received or []})
        if early:
            FAILURES.add(f"D ({phase}): JP holds {len(early)} requests dated ahead of its "
                         f"clock: {early[:3]}")
        # The entry names the payload's hash, not the request (it is written
        # for what may not parse); requests travel in batches (DeliverRequests)
        # or alone (DeliverRequest).
        refused = [e for e in audit_entries(self.net, "JP", "PEER_REQUEST_REFUSED") or []
                   if e.get("detail", "").startswith(("DeliverRequest: FAILED_PRECONDITION",
                                                      "DeliverRequests: FAILED_PRECONDITION"))
                   and later in e.get("detail", "")]
        if len(refused) < len(ids):
            FAILURES.add(f"D ({phase}): JP audited {len(refused)} refusals of requests dated "
                         f"ahead of its clock (PEER_REQUEST_REFUSED), expected at least "
                         f"{len(ids)}")
        say(f"  D ({phase}): {len(ids)} requests queued at FR, refused for now by JP "
            f"({len(refused)} refusals audited so far)")

    def restart(self, party, offset, why):
        node = self.nodes[party]
        node.kill9(why)
        node.start(offset)
        node.wait_up()

    def run(self):
        fr, jp = "FR", "JP"
        say("scenario D: wrong clocks (libfaketime): JP 10 min behind, FR 2 h behind, FR "
            f"ahead by the skew and 10 s; {self.PER_PHASE} requests each")
        try:
            self.cases = self.submit_phase("clocks agree", 6)
            wait_drained(self.net, 60)

            self.restart(jp, "-10m", "to restart 10 minutes behind")
            ids = self.submit_phase("JP 10 min behind", self.PER_PHASE)
            self.decide("JP 10 min behind")
            self.held_back("JP 10 min behind", ids)
            self.restart(jp, None, "to restart with its clock right")
            took = wait_drained(self.net, 60)
            say(f"  D (JP 10 min behind): drained {took:.1f} s after JP's clock was fixed")

            self.restart(fr, "-2h", "to restart 2 hours behind")
            ids = self.submit_phase("FR 2 h behind", self.PER_PHASE)
            self.decide("FR 2 h behind")
            time.sleep(2)
            received, err = self.net.cli_json("JP", "alice", "list", "--received",
                                              "--limit", "1000")
            missing = sorted(set(ids) - {r["id"] for r in received or []})
            if missing:
                FAILURES.add(f"D (FR 2 h behind): JP did not accept {len(missing)} of "
                             f"{len(ids)} requests dated 2 h back: {missing[:3]} {err}")
            # FR holds JP's receipts as dated ahead of its clock until it is
            # fixed: it retries, JP answers with the same receipt.
            states = collections.Counter()
            for rid in ids:
                rec, _ = self.net.cli_json("FR", "alice", "show", rid)
                error = (rec or {}).get("last_error", "")
                states[(rec or {}).get("state", "?") +
                       (" (receipt dated ahead of FR's clock)"
                        if "receipt" in error and "later than this node's clock" in error
                        else f" ({error[:80]})" if error else "")] += 1
            say(f"  D (FR 2 h behind): JP holds {len(ids) - len(missing)} of {len(ids)}; FR: "
                + ", ".join(f"{n} {k}" for k, n in states.items()))
            self.restart(fr, None, "to restart with its clock right")
            took = wait_drained(self.net, 60)
            say(f"  D (FR 2 h behind): drained {took:.1f} s after FR's clock was fixed")
            ages = received_ages(self.net, set(ids))
            wrong = sorted(f"{rid}: {ages.get(rid)}" for rid in ids
                           if ages.get(rid) is None or abs(ages[rid] - 7200) > 300)
            if wrong:
                FAILURES.add(f"D (FR 2 h behind): JP's REQUEST_RECEIVED entries do not record "
                             f"an age of about 2 h: {wrong[:5]}")
            elif ages:
                say(f"  D (FR 2 h behind): JP recorded ages of {min(ages.values()):.0f} to "
                    f"{max(ages.values()):.0f} s")

            self.restart(fr, f"+{self.SKEW + 10}", f"to restart {self.SKEW + 10} s ahead")
            ids = self.submit_phase("FR ahead", self.PER_PHASE)
            self.decide("FR ahead")
            self.held_back("FR ahead", ids)
            self.restart(fr, None, "to restart with its clock right")
            # While those wait for JP's clock to reach them, a request signed
            # with the clock right is not held up behind them.
            for rid in self.submit_phase("FR fixed", 1):
                if self.reported[rid] != "DELIVERED":
                    FAILURES.add(f"D (FR fixed): a request submitted with FR's clock right "
                                 f"while {len(ids)} signed ahead wait is {self.reported[rid]} "
                                 f"after its first attempt, not DELIVERED")
            took = wait_drained(self.net, 60)
            say(f"  D (FR ahead): drained {took:.1f} s after FR's clock was fixed")
        except Fatal as e:
            FAILURES.add(f"D: {e}")
            ABORT.set()

    def check_extra(self):
        refused_for_good(self.net, "scenario D", self.reported, [r for r, _ in self.proposed])


# --- Checks. ---

def wait_drained(net, timeout):
    """Until neither node has requests or case steps queued for the other."""
    deadline = time.monotonic() + timeout
    start = time.monotonic()
    last = {}
    while True:
        queued = {}
        for party in ("FR", "JP"):
            peers, err = net.cli_json(party, "alice", "peers")
            if peers is None:
                queued[party] = f"cannot ask: {err}"
                continue
            for p in peers:
                n = int(p.get("requests_queued", 0)) + int(p.get("transitions_queued", 0))
                if n:
                    queued[party] = (f"{p.get('requests_queued', 0)} requests and "
                                     f"{p.get('transitions_queued', 0)} case steps queued for "
                                     f"{p['party']}; last error: {p.get('last_error', '-')}")
        sent, err = net.cli_json("FR", "alice", "list", "--sent", "--limit", "1000")
        pending = [r for r in (sent or []) if r.get("state") == "PENDING_DELIVERY"]
        if sent is None:
            queued["FR list"] = err
        elif pending:
            queued["FR list"] = (f"{len(pending)} PENDING_DELIVERY, e.g. {pending[0]['id']} "
                                 f"(attempts {pending[0].get('delivery_attempts')}, last error "
                                 f"{pending[0].get('last_error', '-')})")
        if not queued:
            return time.monotonic() - start
        last = queued
        if time.monotonic() > deadline:
            raise Fatal(f"queues not drained {timeout} s after the last restart: " +
                        "; ".join(f"{k}: {v}" for k, v in last.items()))
        time.sleep(0.25)


def audit_entries(net, party, event_type):
    """Every audit entry of that type at `party`, as JSON objects; None on error."""
    rc, out, err = net.cli(party, "carol", "audit", "log", "--type", event_type)
    if rc != 0:
        FAILURES.add(f"comity audit log --type {event_type} at {party} failed: {err}")
        return None
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def audit_counts(net, party, event_type):
    """request_id -> number of audit entries of that type at `party`."""
    rc, out, err = net.cli(party, "carol", "audit", "log", "--type", event_type)
    if rc != 0:
        FAILURES.add(f"comity audit log --type {event_type} at {party} failed: {err}")
        return None
    counts = collections.Counter()
    for line in out.splitlines():
        if line.strip():
            counts[json.loads(line).get("request_id", "")] += 1
    return counts


def check(net, scenarios, label):
    say(f"checks after {label}")
    sent, err = net.cli_json("FR", "alice", "list", "--sent", "--limit", "1000")
    received, err2 = net.cli_json("JP", "alice", "list", "--received", "--limit", "1000")
    if sent is None or received is None:
        FAILURES.add(f"{label}: cannot list: FR: {err} JP: {err2}")
        return
    fr_ids = collections.Counter(r["id"] for r in sent)
    jp_ids = collections.Counter(r["id"] for r in received)
    for who, ids in (("FR (sent)", fr_ids), ("JP (received)", jp_ids)):
        dups = sorted(i for i, n in ids.items() if n > 1)
        if dups:
            FAILURES.add(f"{label}: DUPLICATES: {who} lists {len(dups)} ids more than once: "
                         f"{dups[:5]}")
    for other, direction in (("FR", "--received"), ("JP", "--sent")):
        stray, _ = net.cli_json(other, "alice", "list", direction, "--limit", "1000")
        if stray:
            FAILURES.add(f"{label}: {other} lists {len(stray)} requests {direction}, "
                         f"expected none: {[r['id'] for r in stray[:5]]}")
    reported = {}
    for s in scenarios:
        reported.update(s.reported)
    lost = sorted(set(reported) - set(fr_ids))
    if lost:
        FAILURES.add(f"{label}: LOST: {len(lost)} of {len(reported)} requests whose submit "
                     f"returned an id are not in FR's outgoing list: {lost[:5]}")
    unreported = len(set(fr_ids) - set(reported))
    say(f"  FR holds {len(fr_ids)} outgoing requests ({len(reported)} reported by a successful "
        f"submit, {unreported} stored by a submit whose CLI call failed); JP holds "
        f"{len(jp_ids)} received")
    undelivered = [r for r in sent if r.get("state") != "DELIVERED"]
    if undelivered:
        FAILURES.add(f"{label}: {len(undelivered)} outgoing requests at FR are not DELIVERED: " +
                     ", ".join(f"{r['id']} {r.get('state')} ({r.get('last_error', '-')})"
                               for r in undelivered[:5]))
    missing = sorted(set(fr_ids) - set(jp_ids))
    extra = sorted(set(jp_ids) - set(fr_ids))
    if missing:
        FAILURES.add(f"{label}: MISSING at JP: {len(missing)} requests FR holds: {missing[:5]}")
    if extra:
        FAILURES.add(f"{label}: EXTRA at JP: {len(extra)} requests FR does not hold: {extra[:5]}")

    # Each request on both sides: signature, receipt, case.
    def show(args):
        party, rid = args
        rc, out, err = net.cli(party, "alice", "show", rid)
        try:
            return party, rid, rc, json.loads(out) if out.strip() else None, err
        except json.JSONDecodeError:
            return party, rid, rc, None, f"output is not JSON: {out[:200]}"

    both = sorted(set(fr_ids) & set(jp_ids))
    shown = {}
    with ThreadPoolExecutor(max_workers=4) as pool:
        for party, rid, rc, rec, err in pool.map(show, [(p, i) for i in both for p in ("FR", "JP")]):
            if isinstance(rec, list):  # Both directions on one node would be a bug.
                FAILURES.add(f"{label}: {party} holds {len(rec)} records for {rid}")
                rec = rec[0]
            if rc != 0 or rec is None:
                FAILURES.add(f"{label}: comity show {rid} at {party}: exit {rc}: {err}")
                continue
            shown[(party, rid)] = rec
    bad_receipts, disagree, lost_steps = [], [], []
    signed_steps = {}
    for s in scenarios:
        signed_steps.update(s.signed_steps)
    for rid in both:
        fr, jp = shown.get(("FR", rid)), shown.get(("JP", rid))
        if fr is None or jp is None:
            continue
        for party, rec in (("FR", fr), ("JP", jp)):
            v = rec.get("verification", {})
            if not v.get("signature", {}).get("verified") or not (v.get("receipt") or {}).get(
                    "verified"):
                bad_receipts.append(f"{rid} at {party}: {json.dumps(v)[:300]}")
        rf, rj = fr["verification"].get("receipt") or {}, jp["verification"].get("receipt") or {}
        for field in ("received_at", "request_payload_sha256"):
            if rf.get(field) != rj.get(field):
                bad_receipts.append(f"{rid}: receipt {field} differs: FR holds {rf.get(field)}, "
                                    f"JP {rj.get(field)}")
        if (fr.get("case_state"), fr.get("step_count")) != (jp.get("case_state"), jp.get("step_count")):
            disagree.append(f"{rid}: FR {fr.get('case_state')} after {fr.get('step_count')} steps, "
                            f"JP {jp.get('case_state')} after {jp.get('step_count')} steps")
        told = signed_steps.get(rid, 0)
        if int(jp.get("step_count", 0)) < told:
            lost_steps.append(f"{rid}: an operator was told step {told} was signed, JP holds "
                              f"{jp.get('step_count')}")
    if bad_receipts:
        FAILURES.add(f"{label}: {len(bad_receipts)} signature/receipt checks failed: " +
                     "; ".join(bad_receipts[:5]))
    if disagree:
        FAILURES.add(f"{label}: CASES DIFFER in {len(disagree)} of {len(both)} requests: " +
                     "; ".join(disagree[:8]))
    if lost_steps:
        FAILURES.add(f"{label}: LOST STEPS in {len(lost_steps)} cases: " +
                     "; ".join(lost_steps[:5]))
    states = collections.Counter(shown[("JP", i)].get("case_state") for i in both
                                 if ("JP", i) in shown)
    steps = sum(int(shown[("JP", i)].get("step_count", 0)) for i in both if ("JP", i) in shown)
    say(f"  {len(both)} requests shown on both sides; {steps} signed steps; case states: "
        + ", ".join(f"{k} {v}" for k, v in sorted(states.items())))

    # The audit logs: intact, and each event once.
    for party in ("FR", "JP"):
        res, err = net.cli_json(party, "carol", "audit", "verify", timeout=120)
        if res is None or not res.get("ok"):
            FAILURES.add(f"{label}: audit log of {party} does not verify: {res or err}")
        else:
            say(f"  audit log of {party}: {res['entries']} entries, {res['heads']} signed heads, "
                f"verified")

    def exactly_once(party, event_type, ids, expected=None):
        counts = audit_counts(net, party, event_type)
        if counts is None:
            return
        wrong = []
        for rid in sorted(ids):
            want = 1 if expected is None else expected(rid)
            if want is not None and counts.get(rid, 0) != want:
                wrong.append(f"{rid}: {counts.get(rid, 0)} (expected {want})")
        stray = sorted(set(counts) - set(ids) - {""})
        if stray:
            wrong.append(f"entries for unknown requests {stray[:3]}")
        if wrong:
            FAILURES.add(f"{label}: {party}'s audit log has wrong {event_type} entries for "
                         f"{len(wrong)} requests: " + "; ".join(wrong[:5]))

    exactly_once("FR", "REQUEST_SUBMITTED", fr_ids)
    exactly_once("FR", "DELIVERY_ACKNOWLEDGED", fr_ids)
    exactly_once("JP", "REQUEST_RECEIVED", jp_ids)

    def steps_at(party):
        return lambda rid: (int(shown[(party, rid)].get("step_count", 0))
                            if (party, rid) in shown else None)

    # Every step FR holds arrived once (CASE_UPDATED); every step JP holds was
    # either its own decision or FR's proposal, each audited once.
    exactly_once("FR", "CASE_UPDATED", fr_ids, steps_at("FR"))
    decided = audit_counts(net, "JP", "CASE_DECIDED")
    updated = audit_counts(net, "JP", "CASE_UPDATED")
    if decided is not None and updated is not None:
        wrong = [f"{rid}: {decided.get(rid, 0)} CASE_DECIDED + {updated.get(rid, 0)} "
                 f"CASE_UPDATED for {shown[('JP', rid)].get('step_count')} steps"
                 for rid in both if ("JP", rid) in shown and
                 decided.get(rid, 0) + updated.get(rid, 0) != int(shown[("JP", rid)].get("step_count", 0))]
        if wrong:
            FAILURES.add(f"{label}: JP's audit log does not record each step once in "
                         f"{len(wrong)} cases: " + "; ".join(wrong[:5]))


def error_lines(path, limit=12):
    out = []
    with open(path, errors="replace") as f:
        for line in f:
            if '"level":"error"' in line:
                out.append(line.rstrip())
    return out[:limit], len(out)


# Error log events that mean a node's own state went wrong (a forked audit
# log, a store or audit write that failed), not merely that a peer was down.
FATAL_LOG_EVENTS = ("split_view_detected", "store_error", "audit_error")


def check_logs(nodes):
    for party, n in nodes.items():
        with open(n.log_path, errors="replace") as f:
            bad = [line.rstrip() for line in f
                   if any(f'"event":"{e}"' in line for e in FATAL_LOG_EVENTS)]
        if bad:
            FAILURES.add(f"{party}'s log has {len(bad)} lines of "
                         f"{'/'.join(FATAL_LOG_EVENTS)}, first: {bad[0][:400]}")


def check_faketime():
    """Exits unless libfaketime offsets a child's wall clock and not its
    monotonic clock."""
    if not os.path.exists(FAKETIME_LIB):
        print(f"SKIP: {FAKETIME_LIB} not found; scenario D needs libfaketime (apt-get "
              "install faketime; deploy/install-deps.sh does)")
        sys.exit(77)
    probe = "import time; print(time.time(), time.monotonic())"
    env = dict(os.environ, **faketime_env("-2h"))
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True,
                         text=True, check=True).stdout.split()
    wall, mono = float(out[0]) - time.time(), float(out[1]) - time.monotonic()
    if abs(wall + 7200) > 60 or abs(mono) > 60:
        sys.exit(f"crash_test: libfaketime does not work here: FAKETIME=-2h gave a wall clock "
                 f"{wall:.0f} s and a monotonic clock {mono:.0f} s off")


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit("usage: crash_test.py SOURCE_DIR BIN_DIR [SCENARIOS, e.g. A,B,C or D]")
    root, bin_dir = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    selected = (sys.argv[3] if len(sys.argv) == 4 else "A,B,C").split(",")
    if not selected or any(n not in ("A", "B", "C", "D") for n in selected):
        sys.exit(f"crash_test: scenarios are A, B, C and D, not {sys.argv[3]!r}")
    for b in ("comityd", "comity"):
        if not os.access(os.path.join(bin_dir, b), os.X_OK):
            sys.exit(f"crash_test: {bin_dir}/{b} not found; build the comityd and comity targets")
    if "D" in selected:
        check_faketime()
    seed_text = os.environ.get("COMITY_CRASH_SEED") or str(random.SystemRandom().randrange(10**9))
    requests = env_int("COMITY_CRASH_REQUESTS", 100)
    kills = env_int("COMITY_CRASH_KILLS", 6)
    submitters = env_int("COMITY_CRASH_SUBMITTERS", 3)
    drain = env_int("COMITY_CRASH_DRAIN_SECONDS", 60)
    window = env_int("COMITY_CRASH_REPLAY_WINDOW", 4)
    keep = os.environ.get("COMITY_CRASH_KEEP") == "1"
    say(f"seed {seed_text} (rerun with COMITY_CRASH_SEED={seed_text}); scenarios "
        f"{','.join(selected)}; {requests} requests and {kills} kills per scenario A and B, "
        f"{submitters} submitters")

    work = tempfile.mkdtemp(prefix="comity-crash-")
    net = Network(root, bin_dir, work)
    nodes = {}

    def stop_all(*_):
        for n in nodes.values():
            n.stop()

    def on_signal(signum, _frame):
        stop_all()
        say(f"stopped by signal {signum}; nodes stopped, directory kept: {work}")
        os._exit(1)

    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, on_signal)

    try:
        # For scenario D the certificates are issued 3 h back (make-network.sh
        # under libfaketime), so that a node 2 h behind takes them as valid.
        subprocess.run([os.path.join(root, "certs", "make-network.sh"), work, "FR", "JP",
                        "--operators",
                        "alice:submitter+reviewer,bob:reviewer+approver,carol:auditor"],
                       check=True, stdout=subprocess.DEVNULL,
                       env=dict(os.environ, **faketime_env("-3h")) if "D" in selected else None)
        p = free_ports(4)
        if PG_SERVER:
            # The same scenarios on PostgreSQL: each node its own database.
            for party in ("FR", "JP"):
                net.databases[party] = create_pg_database(PG_SERVER)
            say(f"PostgreSQL stores: {', '.join(net.databases.values())}")
        write_configs(net, ["FR", "JP"], {"FR": (p[0], p[1]), "JP": (p[2], p[3])})
        for party in ("FR", "JP"):
            nodes[party] = Node(net, party)
            nodes[party].start()
        for party in ("FR", "JP"):
            nodes[party].wait_up()
        say(f"FR and JP up (peer ports {p[0]}, {p[2]}; directory {work})")

        scenarios = []
        for name in selected:
            if name in ("A", "B"):
                s = Scenario(net, nodes, name, "JP" if name == "A" else "FR", requests, kills,
                             submitters, seed_text)
            elif name == "C":
                s = OutageScenario(net, nodes, max(10, requests // 5), submitters, seed_text,
                                   window)
            else:
                s = ClockScenario(net, nodes, seed_text)
            scenarios.append(s)
            s.run()
            if ABORT.is_set():
                break
            for party in ("FR", "JP"):
                if nodes[party].proc.poll() is not None:
                    FAILURES.add(f"comityd {party} exited (status {nodes[party].proc.returncode})"
                                 f" without being killed; log: {nodes[party].log_path}")
                    raise Fatal("a node died")
            took = wait_drained(net, drain)
            say(f"scenario {name}: queues drained {took:.1f} s after the last restart")
            check(net, scenarios, f"scenario {name}")
            s.check_extra()
    except Fatal as e:
        FAILURES.add(str(e))
    except subprocess.CalledProcessError as e:
        FAILURES.add(f"{e.cmd[0]} failed with status {e.returncode}")
    finally:
        stop_all()
        drop_pg_databases(net)
    check_logs(nodes)

    kills_done = {p: n.kills for p, n in nodes.items()}
    say(f"kill -9 count: {kills_done}; took {time.monotonic() - T0:.1f} s")
    if FAILURES.items:
        print(f"\ncrash test FAILED (seed {seed_text}; rerun with COMITY_CRASH_SEED={seed_text}); "
              f"{len(FAILURES.items)} failed checks:")
        for f, n in FAILURES.items.items():
            print(f"  - {f}" + (f" ({n} times)" if n > 1 else ""))
        for party, n in nodes.items():
            errors, total = error_lines(n.log_path)
            print(f"\n== {n.log_path}: {total} error lines, first {len(errors)}:")
            for line in errors:
                print("    " + line)
            print(f"== last lines of {n.log_path}:\n{tail(n.log_path, 25)}")
        print(f"\nnode logs, configurations, keys and data kept in {work}")
        return 1
    for party, n in nodes.items():
        _, total = error_lines(n.log_path)
        say(f"{party}: {total} error lines in {n.log_path}")
    if keep:
        say(f"kept {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    print("crash test: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
