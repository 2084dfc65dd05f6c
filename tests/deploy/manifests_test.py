#!/usr/bin/env python3
"""Checks deploy/docker-compose.yml, deploy/docker/ and deploy/k8s/ without
Docker or a cluster: structure (services, builds, volumes, healthchecks,
kinds, selectors, probe ports, referenced Secrets and ConfigMaps), and that
each node configuration loads (`comityd --check-config`) against real keys
laid out exactly where the mounts put them.

usage: manifests_test.py REPO_ROOT BIN_DIR
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

import yaml

ROOT, BIN = sys.argv[1], sys.argv[2]
DEPLOY = os.path.join(ROOT, "deploy")
COMITYD = os.path.join(BIN, "comityd")
failures = []


def check(cond, msg):
    if not cond:
        failures.append(msg)
    return cond


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def conf_paths(text):
    """(field, path) of every file or directory a node config names."""
    return re.findall(r'\b(cert_file|key_file|operator_ca_file|ca_file|private_key_file|'
                      r'treaties_dir|data_dir)\s*:\s*"([^"]*)"', text)


def check_config_in(fake_root, conf_text, label, expect_peers):
    """Rewrites the absolute paths of `conf_text` into `fake_root`, except the
    treaty library (the image's copy of deploy/treaties) and runs
    comityd --check-config on it."""
    text = conf_text.replace('"/usr/local/share/comity/treaties"',
                             '"%s"' % os.path.join(DEPLOY, "treaties"))
    for field, path in conf_paths(conf_text):
        if field == "treaties_dir":
            continue
        check(path.startswith("/"), "%s: %s %s is not absolute" % (label, field, path))
        text = text.replace('"%s"' % path, '"%s%s"' % (fake_root, path))
    os.makedirs(os.path.join(fake_root, "var/lib/comity"), exist_ok=True)
    path = os.path.join(fake_root, "check-node.conf")
    with open(path, "w") as f:
        f.write(text)
    r = run([COMITYD, "--config", path, "--check-config"])
    out = (r.stdout + r.stderr).strip()
    if check(r.returncode == 0, "%s: comityd --check-config failed: %s" % (label, out)):
        check("%d peers" % expect_peers in out, "%s: unexpected: %s" % (label, out))
        print("%s: %s" % (label, out.split(": ", 1)[-1]))


def place(src, dst):
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    shutil.copy2(src, dst)


def check_runtime_packages(dockerfile):
    """Every Debian package that holds a library comityd or comity needs
    (DT_NEEDED) is installed by the Dockerfile's last stage, or is part of
    every Debian image."""
    if not (shutil.which("readelf") and shutil.which("dpkg")):
        print("note: readelf or dpkg missing; run-time packages of the image not checked")
        return
    last_stage = dockerfile.rsplit("\nFROM ", 1)[-1]
    base = {"libc6", "libgcc-s1", "libstdc++6", "zlib1g"}
    for binary in ("comityd", "comity"):
        r = run(["readelf", "-d", os.path.join(BIN, binary)])
        for lib in re.findall(r"Shared library: \[([^\]]+)\]", r.stdout):
            owner = run(["dpkg", "-S", "*/" + lib]).stdout.split(":")[0].strip()
            if not owner:
                continue  # Not from a Debian package (a build tree): nothing to compare.
            check(owner in base or re.search(r"\b%s\b" % re.escape(owner), last_stage),
                  "Dockerfile: %s needs %s (package %s), which the image does not install"
                  % (binary, lib, owner))


# --------------------------------------------------------------------------
# docker compose
# --------------------------------------------------------------------------
def compose_tests(tmp):
    with open(os.path.join(DEPLOY, "docker-compose.yml")) as f:
        doc = yaml.safe_load(f)
    services = doc.get("services", {})
    parties = ["FR", "JP", "DE"]
    check(set(services) == {"postgres", "fr", "jp", "de"},
          "compose services are %s, want postgres, fr, jp, de" % sorted(services))
    declared_volumes = set((doc.get("volumes") or {}).keys())
    dockerfile = os.path.join(DEPLOY, "docker", "Dockerfile")
    check(os.path.isfile(dockerfile), "deploy/docker/Dockerfile missing")
    with open(dockerfile) as f:
        df = f.read()
    check(re.search(r"^FROM debian:12", df, re.M), "Dockerfile: not based on Debian 12")
    users = re.findall(r"^USER\s+(\S+)", df, re.M)
    check(users and not users[-1].startswith(("0", "root")), "Dockerfile: last USER is root")
    check("--target comityd comity" in df, "Dockerfile: does not build comityd and comity")
    for copied in re.findall(r"^COPY\s+(?!--from)(\S+)\s", df, re.M):
        check(os.path.exists(os.path.join(ROOT, copied)),
              "Dockerfile: COPY %s: no such path in the repository" % copied)

    check_runtime_packages(df)

    pg = services.get("postgres", {})
    check("image" in pg, "postgres: no image")
    check("healthcheck" in pg, "postgres: no healthcheck")
    init_sql = ""
    for v in pg.get("volumes", []):
        src = v.split(":")[0]
        if src.startswith("./"):
            p = os.path.join(DEPLOY, src[2:])
            check(os.path.isfile(p), "postgres: mounts %s, which does not exist" % src)
            if p.endswith(".sql") and os.path.isfile(p):
                init_sql = open(p).read()
        elif not src.startswith("/"):
            check(src in declared_volumes, "postgres: volume %s not declared" % src)

    # The network the compose file mounts, made as its header says.
    net = os.path.join(tmp, "compose-net")
    r = run([os.path.join(DEPLOY, "docker", "prepare-network.sh"), net])
    if not check(r.returncode == 0, "prepare-network.sh failed: %s" % (r.stdout + r.stderr)):
        return
    env = dict(os.environ, COMITY_NETWORK_DIR=net, COMITY_PG_PASSWORD="x")

    def expand(s):
        return re.sub(r"\$\{(\w+)(:\?[^}]*)?\}", lambda m: env[m.group(1)], s)

    for p in parties:
        name = p.lower()
        svc = services.get(name)
        if not check(svc is not None, "compose: no service %s" % name):
            continue
        label = "compose %s" % name
        check("build" in svc and svc["build"].get("dockerfile") == "deploy/docker/Dockerfile",
              "%s: not built from deploy/docker/Dockerfile" % label)
        check(os.path.normpath(os.path.join(DEPLOY, svc["build"].get("context", ""))) ==
              os.path.normpath(ROOT), "%s: build context is not the repository root" % label)
        check("image" in svc, "%s: no image name" % label)
        check(str(svc.get("user", "0")).split(":")[0] not in ("0", "root"),
              "%s: runs as root" % label)
        hc = svc.get("healthcheck", {})
        test = hc.get("test", [])
        check("health" in test and "--connect" in test, "%s: healthcheck is not comity health"
              % label)
        check(svc.get("depends_on", {}).get("postgres", {}).get("condition") ==
              "service_healthy", "%s: does not wait for a healthy postgres" % label)
        check("PGPASSWORD" in (svc.get("environment") or {}), "%s: no PGPASSWORD" % label)
        check(str(svc.get("stop_grace_period", "")).rstrip("s").isdigit() and
              int(str(svc["stop_grace_period"]).rstrip("s")) > 10,
              "%s: stop_grace_period must exceed the 10 s drain" % label)
        template = os.path.join(DEPLOY, "docker", "config", "%s.conf" % p)
        check(os.path.isfile(template), "%s: no example config deploy/docker/config/%s.conf"
              % (label, p))
        fake = os.path.join(tmp, "compose-root-" + name)
        mounts = {}
        has_state = False
        for v in svc.get("volumes", []):
            parts = expand(v).split(":")
            if parts[1] == "/var/lib/comity":
                has_state = True
                check(parts[0] in declared_volumes, "%s: volume %s not declared" % (label, parts[0]))
                continue
            check(parts[-1] == "ro", "%s: %s is not mounted read-only" % (label, v))
            src = parts[0]
            check(os.path.isfile(src), "%s: mounts %s, which prepare-network.sh did not make"
                  % (label, src))
            if os.path.isfile(src):
                mounts[parts[1]] = src
                place(src, fake + parts[1])
        check(has_state, "%s: /var/lib/comity is not a volume" % label)
        check('data_dir: "/var/lib/comity/' in open(template).read(),
              "%s: data_dir is not on the /var/lib/comity volume" % label)
        conf_src = mounts.get("/etc/comity/node.conf")
        if not check(conf_src, "%s: no /etc/comity/node.conf mount" % label):
            continue
        conf = open(conf_src).read()
        # Only the peers' keys differ from the example.
        strip = lambda t: re.sub(r'ed25519_public_key: "[^"]*"', "", t)
        check(strip(conf) == strip(open(template).read()),
              "%s: node.conf differs from deploy/docker/config/%s.conf beyond peer keys"
              % (label, p))
        for q in parties:
            if q == p:
                continue
            pub = open(os.path.join(net, q, "signing.pub")).read().strip()
            check('"%s"' % pub in conf, "%s: %s's public key not in node.conf" % (label, q))
            check('address: "%s:7400"' % q.lower() in conf,
                  "%s: peer %s not addressed by its service name" % (label, q))
        db = re.search(r'database: "postgresql://[^@]*@postgres:5432/(\w+)', conf)
        if check(db, "%s: database is not the compose postgres" % label):
            check("CREATE DATABASE %s " % db.group(1) in init_sql,
                  "%s: database %s is not created by the postgres init script"
                  % (label, db.group(1)))
        # Peers dial "jp:7400": JP's certificate must name jp.
        r = run(["openssl", "x509", "-in", os.path.join(net, p, "node.pem"), "-noout",
                 "-ext", "subjectAltName"])
        check("DNS:%s" % name in r.stdout, "%s: node.pem lacks DNS:%s" % (label, name))
        # The healthcheck's client config and files are mounted.
        probe = test[test.index("--connect") + 1] if "--connect" in test else ""
        if check(probe in mounts, "%s: healthcheck config %s not mounted" % (label, probe)):
            ptext = open(mounts[probe]).read()
            for field, path in re.findall(r'(\w+_file): "([^"]*)"', ptext):
                check(path in mounts, "%s: probe %s %s not mounted" % (label, field, path))
            check('"127.0.0.1:7401"' in ptext and '"0.0.0.0:7401"' in conf,
                  "%s: probe address does not match operator_listen_address" % label)
        check_config_in(fake, conf, label, 2)


# --------------------------------------------------------------------------
# Kubernetes
# --------------------------------------------------------------------------
def k8s_tests(tmp):
    kdir = os.path.join(DEPLOY, "k8s")
    objs = []
    for fn in sorted(os.listdir(kdir)):
        if fn.endswith((".yaml", ".yml")):
            with open(os.path.join(kdir, fn)) as f:
                objs += [(fn, d) for d in yaml.safe_load_all(f) if d]
    by_kind = {}
    for fn, o in objs:
        check("apiVersion" in o and "kind" in o and "name" in o.get("metadata", {}),
              "%s: object without apiVersion, kind or name" % fn)
        by_kind.setdefault(o["kind"], {})[o["metadata"]["name"]] = o
    missing = [k for k in ("Namespace", "Secret", "ConfigMap", "StatefulSet", "Service")
               if not check(k in by_kind, "k8s: no %s" % k)]
    if missing:
        return
    (ns,) = by_kind["Namespace"].keys()
    for fn, o in objs:
        if o["kind"] != "Namespace":
            check(o["metadata"].get("namespace") == ns,
                  "%s: %s %s not in namespace %s" % (fn, o["kind"], o["metadata"]["name"], ns))
    # No key material in the committed Secrets.
    for name, s in by_kind["Secret"].items():
        for k, v in list((s.get("stringData") or {}).items()) + list((s.get("data") or {}).items()):
            check("BEGIN" not in str(v) and str(v).startswith("REPLACE"),
                  "Secret %s: %s holds a value, not a REPLACE placeholder" % (name, k))

    (sts,) = by_kind["StatefulSet"].values()
    spec = sts["spec"]
    tmpl = spec["template"]
    labels = tmpl["metadata"]["labels"]
    sel = spec["selector"]["matchLabels"]
    check(all(labels.get(k) == v for k, v in sel.items()),
          "StatefulSet selector %s does not match template labels %s" % (sel, labels))
    check(spec.get("serviceName") in by_kind["Service"],
          "StatefulSet serviceName %s is not a Service" % spec.get("serviceName"))
    pod = tmpl["spec"]
    check(pod.get("securityContext", {}).get("runAsNonRoot") is True, "pod may run as root")
    check(int(pod.get("terminationGracePeriodSeconds", 30)) > 10,
          "terminationGracePeriodSeconds must exceed the 10 s drain")
    (main,) = [c for c in pod["containers"] if c["name"] == "comityd"]
    ports = {p["name"]: p["containerPort"] for p in main.get("ports", [])}
    check(set(ports) >= {"peer", "operator"}, "container ports %s lack peer/operator" % ports)

    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    claim_names = {c["metadata"]["name"] for c in spec.get("volumeClaimTemplates", [])}
    for c in pod.get("initContainers", []) + pod["containers"]:
        for m in c.get("volumeMounts", []):
            check(m["name"] in volumes or m["name"] in claim_names,
                  "%s: mounts unknown volume %s" % (c["name"], m["name"]))
    for name, v in volumes.items():
        if "secret" in v:
            sn = v["secret"]["secretName"]
            if check(sn in by_kind["Secret"], "volume %s: no Secret %s" % (name, sn)):
                keys = set((by_kind["Secret"][sn].get("stringData") or {}).keys()) | \
                    set((by_kind["Secret"][sn].get("data") or {}).keys())
                for item in v["secret"].get("items", []):
                    check(item["key"] in keys, "volume %s: Secret %s has no key %s"
                          % (name, sn, item["key"]))
        if "configMap" in v:
            check(v["configMap"]["name"] in by_kind["ConfigMap"],
                  "volume %s: no ConfigMap %s" % (name, v["configMap"]["name"]))
    for c in pod.get("initContainers", []) + pod["containers"]:
        for e in c.get("env", []) + c.get("envFrom", []):
            ref = (e.get("valueFrom", {}).get("secretKeyRef") or e.get("secretRef") or {})
            if ref:
                check(ref.get("name") in by_kind["Secret"], "env: no Secret %s" % ref.get("name"))

    for sname, svc in by_kind["Service"].items():
        ssel = svc["spec"].get("selector", {})
        check(ssel and all(labels.get(k) == v for k, v in ssel.items()),
              "Service %s selector %s matches no pod labels" % (sname, ssel))
        for p in svc["spec"].get("ports", []):
            tp = p.get("targetPort", p["port"])
            check(tp in ports or tp in ports.values(),
                  "Service %s targetPort %s is no container port" % (sname, tp))

    (cm,) = [o for o in by_kind["ConfigMap"].values() if "node.conf" in o.get("data", {})]
    conf = cm["data"]["node.conf"]
    listen = dict(re.findall(r'(peer|operator)_listen_address:\s*"[^"]*:(\d+)"', conf))
    check(int(listen.get("peer", -1)) == ports.get("peer"),
          "peer_listen_address port %s is not container port peer" % listen.get("peer"))
    check(int(listen.get("operator", -1)) == ports.get("operator"),
          "operator_listen_address port %s is not container port operator"
          % listen.get("operator"))

    mounts = {m["mountPath"]: m["name"] for m in main.get("volumeMounts", [])}
    for kind in ("readinessProbe", "livenessProbe"):
        probe = main.get(kind)
        if not check(probe, "comityd: no %s" % kind):
            continue
        if "grpc" in probe or "tcpSocket" in probe or "httpGet" in probe:
            port = (probe.get("grpc") or probe.get("tcpSocket") or probe.get("httpGet"))["port"]
            check(port in ports or port in ports.values(), "%s port %s is no container port"
                  % (kind, port))
            continue
        cmd = probe.get("exec", {}).get("command", [])
        check("health" in cmd and "--connect" in cmd, "%s is not `comity health`" % kind)
        if "--connect" not in cmd:
            continue
        path = cmd[cmd.index("--connect") + 1]
        d, base = os.path.split(path)
        vol = volumes.get(mounts.get(d, ""), {})
        if check("configMap" in vol, "%s: %s is not on a ConfigMap mount" % (kind, path)):
            pconf = by_kind["ConfigMap"][vol["configMap"]["name"]]["data"].get(base)
            if check(pconf, "%s: ConfigMap has no %s" % (kind, base)):
                port = re.search(r'address:\s*"[^"]*:(\d+)"', pconf)
                check(port and int(port.group(1)) == ports["operator"],
                      "%s: probe.conf port is not the operator container port" % kind)

    # Lay out real keys where the mounts and the init container put them,
    # then load node.conf and the probe config's files from there.
    net = os.path.join(tmp, "k8s-net")
    r = run([os.path.join(ROOT, "certs", "make-network.sh"), net, "FR", "JP", "DE",
             "--operators", "alice:submitter,probe"])
    if not check(r.returncode == 0, "make-network.sh failed: %s" % r.stderr):
        return
    source = {  # Secret key -> file made by certs/make-network.sh (secrets.yaml's recipe).
        "node.pem": "FR/node.pem", "node.key": "FR/node.key", "node-ca.pem": "FR/ca.pem",
        "signing.key": "FR/signing.key", "operator-ca.pem": "FR/ca.pem",
        "JP-ca.pem": "JP/ca.pem", "DE-ca.pem": "DE/ca.pem",
        "probe.pem": "FR/operators/probe.pem", "probe.key": "FR/operators/probe.key",
    }
    fake = os.path.join(tmp, "k8s-root")

    def populate(container):
        for m in container.get("volumeMounts", []):
            v = volumes.get(m["name"], {})
            dst = fake + m["mountPath"]
            os.makedirs(dst, exist_ok=True)
            if "secret" in v and v["secret"]["secretName"] in by_kind["Secret"]:
                s = by_kind["Secret"][v["secret"]["secretName"]]
                items = v["secret"].get("items") or [
                    {"key": k, "path": k} for k in (s.get("stringData") or {})]
                for it in items:
                    check(it["key"] in source, "test: no source for Secret key %s" % it["key"])
                    place(os.path.join(net, source[it["key"]]), os.path.join(dst, it["path"]))
            elif "configMap" in v and v["configMap"]["name"] in by_kind["ConfigMap"]:
                for k, text in by_kind["ConfigMap"][v["configMap"]["name"]]["data"].items():
                    with open(os.path.join(dst, k), "w") as f:
                        f.write(text)

    for c in pod.get("initContainers", []):
        populate(c)
        script = " ".join(c.get("command", []) + c.get("args", []))
        for src, dst in re.findall(r"cp (\S+) (\S+)", script):
            check(os.path.isfile(fake + src), "%s: copies %s, which is not mounted"
                  % (c["name"], src))
            if os.path.isfile(fake + src):
                place(fake + src, fake + dst)
                os.chmod(fake + dst, 0o600)
    populate(main)
    for field, path in conf_paths(conf):
        if field not in ("treaties_dir", "data_dir"):
            check(os.path.isfile(fake + path), "node.conf %s %s: nothing mounted there"
                  % (field, path))
    pconf = by_kind["ConfigMap"]["comity-config"]["data"].get("probe.conf", "")
    for field, path in re.findall(r'(\w+_file): "([^"]*)"', pconf):
        check(os.path.isfile(fake + path), "probe.conf %s %s: nothing mounted there"
              % (field, path))
    check_config_in(fake, conf, "k8s node.conf", 2)


def main():
    tmp = tempfile.mkdtemp()
    try:
        compose_tests(tmp)
        k8s_tests(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for f in failures:
        print("FAIL: " + f)
    if failures:
        sys.exit(1)
    print("deploy manifests: OK")


main()
