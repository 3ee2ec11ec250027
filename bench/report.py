#!/usr/bin/env python3
"""Helpers for bench/run.sh.

  report.py kindload-fields MEASURE_JSON STDOUT STDERR
      JSON fields (without braces) for one kindload run: temp bytes, bytes sent to and
      already present on the nodes (from `--output json`), actions, the transport, and the
      peak resident memory printed by `-v` when present.

  report.py transport STDOUT
      How the load whose `--output json` report is STDOUT moved the image.

  report.py check STDOUT NORMALIZED EXPECTED_ID NODE...
      Exit 1, saying why, unless kindload's `--output json` report proves that every NODE
      (and no other) answers to the image under NORMALIZED with EXPECTED_ID (when not empty).

  report.py node-bytes STDOUT...
      The most bytes any one node received, summed over the `--output json` reports given.

  report.py summary RAW_JSONL OUT_JSON [--key value ...]
      Medians, min/max and ratios as a table on stdout; raw numbers and the summary to OUT_JSON.
"""
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time

MIB = 1 << 20


def kindload_fields(measure, stdout, stderr):
    m = json.load(open(measure))
    fields = {"temp_bytes": m["temp_peak_bytes"], "exit": m["exit"]}
    try:
        report = json.load(open(stdout))
        nodes = [n for image in report.get("images", []) for n in image.get("nodes", [])]
        fields["bytes_sent"] = sum(n.get("bytes") or 0 for n in nodes)
        fields["bytes_present"] = sum(n.get("bytes_present") or 0 for n in nodes)
        fields["actions"] = sorted({n.get("action") for n in nodes if n.get("action")})
        pushes = [i["push"] for i in report.get("images", []) if i.get("push")]
        if pushes:
            fields["push"] = ",".join(sorted({p["with"] for p in pushes}))
            if all(p.get("blobs_sent") is not None for p in pushes):
                fields["blobs_sent"] = sum(p["blobs_sent"] for p in pushes)
        fields["transport"] = transport_of(report)
    except (OSError, ValueError, AttributeError):
        pass
    text = open(stderr, errors="replace").read()
    found = re.findall(r"peak resident memory: (\d+) KiB", text)
    if found:
        fields["peak_rss_kib"] = int(found[-1])
    print(json.dumps(fields)[1:-1])


def transport_of(report):
    """How kindload moved the image: the report's `transport` (top level, else per image);
    "none" when the report has the field but nothing moved (every node already had it);
    "sideload", the only way there was, when the report predates the field."""
    if report.get("transport"):
        return report["transport"]
    images = report.get("images", [])
    found = sorted({i["transport"] for i in images if i.get("transport")})
    if found:
        return ",".join(found)
    if "transport" in report or any("transport" in i for i in images):
        return "none"
    return "sideload"


def check(stdout, normalized, expected_id, nodes):
    problems = []
    try:
        report = json.load(open(stdout))
    except (OSError, ValueError) as e:
        print(f"check: kindload's report is not JSON: {e}", file=sys.stderr)
        return 1
    if report.get("ok") is not True:
        problems.append(f"ok is {report.get('ok')!r}")
    images = report.get("images") or []
    if len(images) != 1:
        problems.append(f"{len(images)} images in the report, expected 1")
    for image in images:
        if "normalized" in image and image["normalized"] != normalized:
            problems.append(f"normalized is {image['normalized']!r}, expected {normalized!r}")
        if "names" in image and normalized not in image["names"]:
            problems.append(f"{normalized} is not among the names {image['names']}")
        if expected_id and image.get("id") and image["id"] != expected_id:
            problems.append(f"id is {image['id']}, expected {expected_id}")
        rows = image.get("nodes") or []
        names = sorted(n.get("name") for n in rows)
        if names != sorted(nodes):
            problems.append(f"nodes {names}, expected {sorted(nodes)}")
        for n in rows:
            if n.get("verified") is not True:
                problems.append(f"{n.get('name')}: not verified ({n.get('error') or n.get('detail')})")
            if n.get("action") == "failed":
                problems.append(f"{n.get('name')}: failed ({n.get('error')})")
            if expected_id and n.get("id") and n["id"] != expected_id:
                problems.append(f"{n.get('name')}: id {n['id']}, expected {expected_id}")
    for p in problems:
        print(f"check: {p}", file=sys.stderr)
    return 1 if problems else 0


def node_bytes(paths):
    per_node = {}
    for path in paths:
        try:
            report = json.load(open(path))
        except (OSError, ValueError):
            continue
        for image in report.get("images", []):
            for n in image.get("nodes", []):
                per_node[n.get("name")] = per_node.get(n.get("name"), 0) + (n.get("bytes") or 0)
    print(max(per_node.values(), default=0))


def machine():
    cpu = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kib = 0
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    except OSError:
        pass

    def out(*cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True).stdout.strip()
        except OSError:
            return "unknown"

    return {
        "nproc": os.cpu_count(),
        "memory_gib": round(mem_kib / (1 << 20), 1),
        "cpu": cpu,
        "kernel": platform.release(),
        "docker": out("docker", "version", "--format", "{{.Server.Version}}"),
        "docker_store": out("docker", "--host", os.environ["BENCH_STORE_HOST"], "version", "--format", "{{.Server.Version}}")
        if os.environ.get("BENCH_STORE_HOST") else None,
        "podman": out("podman", "version", "--format", "{{.Version}}") if os.environ.get("BENCH_PODMAN") else None,
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "loadavg_at_end": open("/proc/loadavg").read().split()[:3],
    }


def stats(values):
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


CASES = [
    ("first_load_1node", "first load, 1 node"),
    ("first_load_3nodes", "first load, 3 nodes"),
    ("reload_1mb_change", "reload, top layer changed, 3 nodes"),
    ("noop_reload", "no-op reload, 3 nodes"),
]

# kindload / kind's algorithm, medians of one run
TARGETS = {"first_load_3nodes": 0.6, "parallel_3loads": 0.6}

PARALLEL_CASES = [("parallel_3loads", "three parallel loads, shared base")]

REGISTRY_CASES = [
    ("reg_first_empty", "first load, empty registry"),
    ("reg_first_base", "first load, registry has the base"),
    ("reg_reload_1mb", "reload, 1 MiB top layer changed"),
    ("reg_noop", "no-op"),
]

# kindload / kind's registry recipe, medians of one run, per source
REGISTRY_TARGETS = {"reg_first_empty": 1.0, "reg_reload_1mb": 1.0, "reg_noop": 1.0}

SOURCES = ["docker", "containerd-store", "podman"]

# 10. the push to the registry: first load / kind's algorithm (per source), reload / recipe
PUSH_FIRST_TARGET = 0.45
PUSH_FIRST_SOURCES = ["containerd-store", "podman", "docker-ci"]
PUSH_RELOAD_TARGET = 1.2
PUSH_SOURCES = ["docker", "docker-ci", "containerd-store", "podman"]

RSS_CASES = [("rss_first_load_1gib", "no registry"), ("rss_first_load_1gib_registry", "registry up")]

RSS_LIMIT_BYTES = 64e6


def verdict(ok):
    return "met" if ok else "MISSED"


def summary(raw_path, out_path, opts):
    if raw_path.endswith(".json"):
        # a stored result: summarise its raw numbers again, on the machine it ran on
        stored = json.load(open(raw_path))
        rows, host, opts = stored["raw"], stored["machine"], stored["config"]
    else:
        rows = [json.loads(line) for line in open(raw_path) if line.strip()]
        host = machine()
    timed = [r for r in rows if "seconds" in r]

    def values(case, tool, key="seconds", source=None):
        return [r[key] for r in timed if r["case"] == case and r["tool"] == tool and key in r
                and (source is None or r.get("source") == source)]

    result = {"machine": host, "config": opts, "cases": {}, "raw": rows}
    targets = []  # (what, measured, met)
    lines = []
    w = lines.append
    rule = "-" * 104

    # 1-3. against kind's algorithm
    if any(values(case, tool) for case, _ in CASES + PARALLEL_CASES for tool in ("kind", "kindload")):
        w(f"{'case':<38} {'tool':<9} {'median s':>9} {'min s':>8} {'max s':>8} {'n':>3}   kindload/kind")
        w(rule)
    for case, title in CASES + PARALLEL_CASES:
        kind, kl = stats(values(case, "kind")), stats(values(case, "kindload"))
        if not kind and not kl:
            continue
        entry = {"kind": kind, "kindload": kl}
        ratio = kl["median"] / kind["median"] if kind and kl and kind["median"] > 0 else None
        entry["ratio"] = ratio
        entry["target_ratio"] = TARGETS.get(case)
        result["cases"][case] = entry
        for i, (tool, s) in enumerate((("kind", kind), ("kindload", kl))):
            if not s:
                continue
            tail = ""
            if i == 1 and ratio is not None:
                target = TARGETS.get(case)
                tail = f"   {ratio:.2f}" + ("" if target is None else f"  (target <= {target}: {verdict(ratio <= target)})")
                if target is not None:
                    targets.append((f"{title} <= {target} x kind's algorithm",
                                    f"{ratio:.2f} x ({kl['median']:.2f} s vs {kind['median']:.2f} s)", ratio <= target))
            w(f"{title if i == 0 else '':<38} {tool:<9} {s['median']:>9.2f} {s['min']:>8.2f} {s['max']:>8.2f} {s['n']:>3}{tail}")

    # 9. parallel loads: every run ends and proves its image, nothing is left, the base once
    par = [r for r in timed if r["case"] in ("parallel_3loads", "parallel_soak") and r["tool"] == "kindload"]
    if par:
        w(rule)
        rounds_n = len(par)
        hung, wrong, left = (sum(r.get(k, 0) for r in par) for k in ("hung", "wrong", "leftovers"))
        most = max(r.get("max_node_bytes", 0) for r in par)
        once = (par[0]["base_mib"] + 3 * par[0]["app_mib"] + 1) * MIB
        soak_n = len([r for r in par if r["case"] == "parallel_soak"])
        result["cases"]["parallel"] = {"rounds": rounds_n, "soak_rounds": soak_n, "runs": 3 * rounds_n,
                                       "hung_runs": hung, "wrong_reports": wrong, "leftovers": left,
                                       "max_node_bytes": most, "base_and_apps_once_bytes": once,
                                       "base_mib": par[0]["base_mib"], "app_mib": par[0]["app_mib"]}
        w(f"three parallel loads ({par[0]['base_mib']} MiB base + 3 x {par[0]['app_mib']} MiB), kindload, "
          f"{rounds_n} rounds ({soak_n} of them the soak): {3 * rounds_n} runs, {hung} hung, {wrong} not proven, "
          f"{left} leftovers; most bytes one node received {most / MIB:.1f} MiB (the base and the apps once: "
          f"<= {once / MIB:.1f} MiB)")
        cpu = {tool: [r["cpu_s"] for r in timed if r["case"] == "parallel_3loads" and r["tool"] == tool and "cpu_s" in r]
               for tool in ("kind", "kindload")}
        if cpu["kind"] and cpu["kindload"]:
            used = {tool: statistics.median(v) for tool, v in cpu.items()}
            result["cases"]["parallel"]["cpu_seconds_median"] = used
            w(f"CPU the machine was busy during the three loads (median, steal included): kind {used['kind']:.2f} s, "
              f"kindload {used['kindload']:.2f} s ({used['kindload'] / used['kind']:.2f} x)")
        targets.append((f"parallel loads over {rounds_n} rounds: 0 hung, 0 wrong ids, 0 leftovers",
                        f"{hung} hung, {wrong} wrong, {left} leftovers", hung == 0 and wrong == 0 and left == 0))
        targets.append(("parallel loads: each node receives the base once", f"{most / MIB:.1f} MiB at most per node",
                        most <= once))

    # 8. against kind's registry recipe, per source
    registry = {}
    reg_rows = [r for r in timed if r["case"].startswith("reg_")]
    if reg_rows:
        if lines:
            w(rule)
        w("kind's registry recipe (push to a plain-HTTP registry on the nodes' network, every node pulls) against kindload, 3 nodes")
        w(f"{'source':<17} {'case':<34} {'tool':<9} {'median s':>9} {'min s':>7} {'max s':>7} {'n':>2}  {'transport':<13} kl/recipe")
        w(rule)
    for source in SOURCES + sorted({r.get("source") for r in reg_rows} - set(SOURCES)):
        if not any(r.get("source") == source for r in reg_rows):
            continue
        per = registry.setdefault(source, {})
        first = True
        for case, title in REGISTRY_CASES:
            rec = stats(values(case, "recipe", source=source))
            kl = stats(values(case, "kindload", source=source))
            chk = stats(values(case, "checked", source=source))
            if not rec and not kl:
                continue
            transports = sorted({r.get("transport", "sideload") for r in reg_rows
                                 if r["case"] == case and r["tool"] == "kindload" and r.get("source") == source})
            push = stats(values(case, "recipe", "push_seconds", source))
            pull = stats(values(case, "recipe", "pull_seconds", source))
            ratio = kl["median"] / rec["median"] if kl and rec and rec["median"] > 0 else None
            target = REGISTRY_TARGETS.get(case)
            base = sorted({r["base_transport"] for r in reg_rows if r["case"] == case and r.get("source") == source
                           and r.get("base_transport")})
            per[case] = {"recipe": rec, "recipe_push": push, "recipe_pulls": pull, "kindload": kl,
                         "kindload_transport": transports, "ratio": ratio, "target_ratio": target}
            if chk:
                per[case]["recipe_checked"] = chk
                per[case]["ratio_to_checked"] = kl["median"] / chk["median"] if kl and chk["median"] > 0 else None
            if base:
                per[case]["kindload_base_transport"] = base
            if rec:
                split = f"  (push {push['median']:.2f} + pulls {pull['median']:.2f})" if push and pull else ""
                w(f"{source if first else '':<17} {title:<34} {'recipe':<9} {rec['median']:>9.2f} {rec['min']:>7.2f} "
                  f"{rec['max']:>7.2f} {rec['n']:>2}  {'push+pull':<13}{split}")
                first = False
            if chk:
                w(f"{source if first else '':<17} {'':<34} {'+check':<9} {chk['median']:>9.2f} {chk['min']:>7.2f} "
                  f"{chk['max']:>7.2f} {chk['n']:>2}  {'push+pull':<13}  (the least a verified load adds)")
                first = False
            if kl:
                tail = ""
                if ratio is not None:
                    tail = f"{ratio:.2f}" + ("" if target is None else f"  (target <= {target}: {verdict(ratio <= target)})")
                    if base:
                        tail += f"  (the base image went by {','.join(base)})"
                    if chk and chk["median"] > 0:
                        tail += f"  ({kl['median'] / chk['median']:.2f} x +check)"
                    if target is not None:
                        targets.append((f"{title} <= {target} x recipe, {source}",
                                        f"{ratio:.2f} x ({kl['median']:.2f} s vs {rec['median']:.2f} s; {','.join(transports)})",
                                        ratio <= target))
                w(f"{source if first else '':<17} {title if not rec else '':<34} {'kindload':<9} {kl['median']:>9.2f} "
                  f"{kl['min']:>7.2f} {kl['max']:>7.2f} {kl['n']:>2}  {','.join(transports):<13} {tail}")
                first = False
    if registry:
        result["cases"]["registry"] = registry
        w("  (recipe: `docker push` / `podman push --tls-verify=false`, then `ctr -n k8s.io images pull --hosts-dir` on")
        w("   every node at once, standing in for crictl pull; containerd-store: nodes on Podman, both sides;")
        w("   +check: the recipe plus the image and nodes looked up, the user's name tagged, and each node's")
        w("   record read back in its pull's exec: the least a load that keeps names and verifies adds)")

    # 10. the push to the registry, per source
    push_rows = [r for r in rows if r["case"].startswith("push_")]
    pushes = {}
    if push_rows:
        if lines:
            w(rule)
        w("the push to the registry: first loads against kind's algorithm, reloads against kind's registry recipe, 3 nodes")
        w(f"{'source':<17} {'case':<30} {'tool':<9} {'median s':>9} {'min s':>7} {'max s':>7} {'n':>2}  {'push':<7} ratio")
        w(rule)
    for source in PUSH_SOURCES:
        if not any(r.get("source") == source for r in push_rows):
            continue
        base = "docker" if source == "docker-ci" else source  # docker-ci's baselines are docker's
        kind = stats(values("push_first", "kind", source=base))
        rec_first = stats(values("push_first", "recipe", source=base))
        rec_reload = stats(values("push_reload", "recipe", source=base))
        per = pushes.setdefault(source, {})
        first = True

        def line(title, tool, s, push, tail):
            nonlocal first
            w(f"{source if first else '':<17} {title:<30} {tool:<9} {s['median']:>9.2f} {s['min']:>7.2f} {s['max']:>7.2f} "
              f"{s['n']:>2}  {push:<7} {tail}")
            first = False

        def pushed(case):
            return ",".join(sorted({r.get("push", "-") for r in push_rows if r["case"] == case and r.get("source") == source
                                    and r["tool"] == "kindload"})) or "-"

        for tool, s, push in (("kind", kind, "-"), ("recipe", rec_first, "-")):
            if s and source != "docker-ci":
                line("first load, empty registry" if tool == "kind" else "", tool, s, push, "")
        for case, label in (("push_first", "kindload"), ("push_first_other", "other")):
            s = stats(values(case, "kindload", source=source))
            if not s:
                continue
            ratio = s["median"] / kind["median"] if kind and kind["median"] > 0 else None
            tail = "" if ratio is None else f"{ratio:.2f} x kind"
            if rec_first and rec_first["median"] > 0:
                tail += f", {s['median'] / rec_first['median']:.2f} x recipe"
            target = PUSH_FIRST_TARGET if case == "push_first" and source in PUSH_FIRST_SOURCES else None
            if target is not None and ratio is not None:
                tail += f"  (target <= {target}: {verdict(ratio <= target)})"
                targets.append((f"first load through the registry <= {target} x kind's algorithm, {source}",
                                f"{ratio:.2f} x ({s['median']:.2f} s vs {kind['median']:.2f} s; {pushed(case)})",
                                ratio <= target))
            per[case] = {"kindload": s, "push": pushed(case), "ratio_to_kind": ratio, "target_ratio": target}
            line("first load, empty registry" if first else "", label, s, pushed(case), tail)
        per["kind_first"], per["recipe_first"], per["recipe_reload"] = kind, rec_first, rec_reload
        if rec_reload and source != "docker-ci":
            line("reload, 1 MiB top layer changed", "recipe", rec_reload, "-", "")
        s = stats(values("push_reload", "kindload", source=source))
        if s:
            ratio = s["median"] / rec_reload["median"] if rec_reload and rec_reload["median"] > 0 else None
            tail = "" if ratio is None else f"{ratio:.2f} x recipe"
            if ratio is not None and source != "docker-ci":
                tail += f"  (target <= {PUSH_RELOAD_TARGET}: {verdict(ratio <= PUSH_RELOAD_TARGET)})"
                targets.append((f"reload through the registry <= {PUSH_RELOAD_TARGET} x recipe, {source}",
                                f"{ratio:.2f} x ({s['median']:.2f} s vs {rec_reload['median']:.2f} s; {pushed('push_reload')})",
                                ratio <= PUSH_RELOAD_TARGET))
            per["push_reload"] = {"kindload": s, "push": pushed("push_reload"), "ratio_to_recipe": ratio}
            line("reload, 1 MiB top layer changed" if source == "docker-ci" else "", "kindload", s, pushed("push_reload"), tail)
        again = [r["uploads"] for r in push_rows if r["case"] == "push_again_uploads" and r.get("source") == source]
        if again:
            per["push_again_uploads"] = again
            w(f"{'':<17} unchanged image pushed again for a node that lost it: {max(again)} blob(s) uploaded at most "
              f"({len(again)} round(s); push {pushed('push_again')})")
            targets.append((f"an unchanged image pushed again sends no blob, {source}", f"{max(again)} blob(s) at most",
                            max(again) == 0))
    if pushes:
        result["cases"]["push"] = pushes
        w("  (kind: the source's `save` and every node's import at once; recipe: the source's push to a plain-HTTP registry,")
        w("   then every node's `ctr images pull`; kindload: `load` with `registry up` done, by the push it picks, and")
        w("   `other`: by the push it does not pick (KINDLOAD_PUSH); docker-ci: CI=true, against docker's kind and recipe)")

    # 7. floor
    saves = {r["round"]: r["seconds"] for r in timed if r["case"] == "floor_save"}
    imports = {r["round"]: r["seconds"] for r in timed if r["case"] == "floor_import"}
    floors = [max(saves[k], imports[k]) for k in sorted(saves) if k in imports]
    floor = stats(floors)
    if floor:
        result["cases"]["floor"] = {"docker_save": stats(list(saves.values())),
                                    "concurrent_imports_3nodes": stats(list(imports.values())), "floor": floor}
        w(rule)
        s_save, s_imp = stats(list(saves.values())), stats(list(imports.values()))
        w(f"{'floor: docker save -o alone':<38} {'':<9} {s_save['median']:>9.2f} {s_save['min']:>8.2f} {s_save['max']:>8.2f} {s_save['n']:>3}")
        w(f"{'floor: 3 concurrent ctr imports':<38} {'':<9} {s_imp['median']:>9.2f} {s_imp['min']:>8.2f} {s_imp['max']:>8.2f} {s_imp['n']:>3}")
        w(f"{'floor: max(save, imports) per round':<38} {'':<9} {floor['median']:>9.2f} {floor['min']:>8.2f} {floor['max']:>8.2f} {floor['n']:>3}")
        kl = (result["cases"].get("first_load_3nodes") or {}).get("kindload")
        kind = (result["cases"].get("first_load_3nodes") or {}).get("kind")
        if kl and floor["median"] > 0:
            r = kl["median"] / floor["median"]
            result["cases"]["floor"]["kindload_first_load_over_floor"] = r
            w(f"first load, 3 nodes: kindload / floor = {r:.2f}")
        if kind and floor["median"] > 0:
            r = kind["median"] / floor["median"]
            result["cases"]["floor"]["kind_first_load_over_floor"] = r
            w(f"first load, 3 nodes: kind / floor     = {r:.2f}")

    # 5. peak RSS
    for case, how in RSS_CASES:
        rss = stats(values(case, "kindload", "peak_rss_kib"))
        if not rss:
            continue
        rss_s = stats(values(case, "kindload"))
        transports = sorted({r.get("transport", "sideload") for r in timed if r["case"] == case})
        result["cases"]["peak_rss" if case == "rss_first_load_1gib" else "peak_rss_registry"] = {
            "peak_rss_kib": rss, "seconds": rss_s, "image": opts.get("rss_image"), "transport": transports}
        w(rule)
        met = rss["max"] * 1024 < RSS_LIMIT_BYTES
        w(f"kindload peak RSS (VmHWM, own process), first load of {opts.get('rss_image')} into 3 nodes, {how} ({','.join(transports)}): "
          f"median {rss['median'] / 1024:.1f} MiB, max {rss['max'] / 1024:.1f} MiB  (target < 64 MB: {verdict(met)})")
        targets.append((f"peak RSS < 64 MB, {opts.get('rss_image')}, {how}",
                        f"{rss['max'] / 1024:.1f} MiB ({','.join(transports)})", met))
        if rss_s:
            w(f"  that load took {rss_s['median']:.2f} s (median)")

    # 6. temp disk
    temp = {}
    for case, title in CASES:
        kind_t = values(case, "kind", "temp_bytes")
        kl_t = values(case, "kindload", "temp_bytes")
        if not kind_t and not kl_t:
            continue
        if not temp:
            w(rule)
        temp[case] = {"kind_max_bytes": max(kind_t) if kind_t else None,
                      "kindload_max_bytes": max(kl_t) if kl_t else None}
        w(f"temp disk, {title:<36} kind {max(kind_t or [0]) / MIB:8.1f} MiB   kindload {max(kl_t or [0]) / MIB:8.1f} MiB")
    if temp:
        result["cases"]["temp_disk"] = temp
        w("  (kind: size of the `docker save -o` archive; kindload: largest total size, sampled every 50 ms, of files")
        w("   under its TMPDIR that its process held open via /proc/<pid>/fd, unlinked ones included, plus files left there)")

    # 4. disk growth
    growth = {}
    for r in rows:
        if r["case"] != "disk_growth":
            continue
        if not growth:
            w(rule)
        n = len(r["before"])
        grow = [(a - b) for a, b in zip(r["after_last"], r["before"])]
        one = [(f - b) for f, b in zip(r["after_first"], r["before"])]
        per_node = statistics.mean(grow) / MIB
        one_copy = statistics.mean(one) / MIB
        # one version: one copy, plus less than half of a changing layer (a second version would
        # add a whole one), in the same on-disk terms as one copy
        bound = one_copy * (r["base_mib"] + 1.5 * r["top_mib"]) / (r["base_mib"] + r["top_mib"])
        met = per_node <= bound
        growth[r["tool"]] = {"reloads": r["reloads"], "nodes": n, "growth_mib_per_node": per_node,
                             "one_copy_mib_per_node": one_copy, "growth_over_one_copy": per_node / one_copy if one_copy else None,
                             "target_mib_per_node": bound, "raw": r}
        w(f"node disk after {r['reloads']} changed reloads ({r['base_mib']} MiB + {r['top_mib']} MiB changing), {r['tool']:<17}: "
          f"+{per_node:8.1f} MiB/node = {per_node / one_copy:5.2f} x one copy ({one_copy:.1f} MiB)"
          f"  (one version, <= {bound:.1f} MiB: {verdict(met)})")
        if r["tool"] != "kind":
            transports = sorted({x.get("transport", "sideload") for x in timed
                                 if x["case"] == ("growth_reload_registry" if r["tool"] == "kindload+registry" else "growth_reload")
                                 and x["tool"] == "kindload"})
            growth[r["tool"]]["transport"] = transports
            targets.append((f"node disk after {r['reloads']} changed reloads: one version, {r['tool']}",
                            f"{per_node / one_copy:.2f} x one copy ({','.join(transports)})", met))
    if growth:
        result["cases"]["disk_growth"] = growth
        w("  (du -sb /var/lib/containerd in each node: before the first load, after the first, after the last; mean over nodes)")

    # 4b. disk growth with a new tag per build: K versions kept. One copy C (the first load)
    # holds the base and one changed layer; a changed layer's footprint on the node is
    # L = C * top / (base + top) (its blob and its unpacked snapshot, as C's). What the
    # builds hold beyond the base is (after_last - before) - (C - L); target <= 1.05 * K * L.
    tagged = {}
    for r in rows:
        if r["case"] != "disk_growth_tags":
            continue
        if not tagged:
            w(rule)
        grow = statistics.mean(a - b for a, b in zip(r["after_last"], r["before"])) / MIB
        one_copy = statistics.mean(f - b for f, b in zip(r["after_first"], r["before"])) / MIB
        layer = one_copy * r["top_mib"] / (r["base_mib"] + r["top_mib"])
        versions = (grow - (one_copy - layer)) / layer if layer else None
        bound = 1.05 * r["keep"] * layer
        met = versions is not None and grow - (one_copy - layer) <= bound
        tagged[r["tool"]] = {"builds": r["builds"], "keep": r["keep"], "nodes": len(r["before"]),
                             "growth_mib_per_node": grow, "one_copy_mib_per_node": one_copy,
                             "changed_layer_mib_per_node": layer, "changed_layers_held": versions,
                             "target_changed_layers": 1.05 * r["keep"], "raw": r}
        w(f"node disk after {r['builds']} builds, a new tag each ({r['base_mib']} MiB + {r['top_mib']} MiB changing), {r['tool']:<8}: "
          f"+{grow:8.1f} MiB/node = base + {versions:5.2f} changed layers of {layer:.1f} MiB"
          f"  (K = {r['keep']}: <= {1.05 * r['keep']:.2f}: {verdict(met)})")
        if r["tool"] == "kindload":
            targets.append((f"node disk after {r['builds']} builds, a new tag each: K = {r['keep']} versions",
                            f"{versions:.2f} changed layers (kind: "
                            f"{tagged.get('kind', {}).get('changed_layers_held') or 0:.2f})", met))
    if tagged:
        result["cases"]["disk_growth_tags"] = tagged
        w("  (du -sb /var/lib/containerd in each node: before the first load, after the first, after the last; mean over nodes;")
        w("   a changed layer's footprint is the first load's growth x top / (base + top), its blob and its snapshot)")

    for tool, case in (("kind", "growth_reload"), ("kindload", "growth_reload"), ("kindload+registry", "growth_reload_registry")):
        later = [r["seconds"] for r in timed if r["case"] == case and r["tool"] == ("kind" if tool == "kind" else "kindload")
                 and r["round"] > 1]
        if later:
            g = stats(later)
            result["cases"].setdefault("growth_reloads", {})[tool] = g
            w(f"  each of those reloads after the first, {tool:<17}: median {g['median']:.2f} s (min {g['min']:.2f}, max {g['max']:.2f}, n {g['n']})")
    for tool in ("kind", "kindload"):
        later = [r["seconds"] for r in timed if r["case"] == "growth_tag_load" and r["tool"] == tool and r["round"] > 1]
        if later:
            g = stats(later)
            result["cases"].setdefault("growth_tag_loads", {})[tool] = g
            w(f"  each of the new-tag loads after the first, {tool:<8}: median {g['median']:.2f} s (min {g['min']:.2f}, max {g['max']:.2f}, n {g['n']})")
    reload_bytes = values("reload_1mb_change", "kindload", "bytes_sent")
    if reload_bytes:
        w(f"kindload bytes sent on the 1 MiB-change reload (all nodes): median {statistics.median(reload_bytes) / MIB:.1f} MiB")

    if targets:
        w(rule)
        w("targets (3 nodes; ratios of medians measured in this run)")
        width = max(len(t[0]) for t in targets)
        for what, measured, met in targets:
            w(f"  {what:<{width}}  {measured:<52} {verdict(met)}")
        result["targets"] = [{"target": t[0], "measured": t[1], "met": t[2]} for t in targets]

    m = result["machine"]
    w("")
    w(f"machine: {m['nproc']} cpus, {m['memory_gib']} GiB, {m['cpu']}; kernel {m['kernel']}; docker {m['docker']}"
      f"{'; containerd-store docker ' + m['docker_store'] if m.get('docker_store') else ''}"
      f"{'; podman ' + m['podman'] if m.get('podman') else ''}; {m['date']}; "
      f"load average at the end {' '.join(m['loadavg_at_end'])}")
    w(f"config: containerd {opts.get('containerd')} nodes, {opts.get('rounds')} round(s), image {opts.get('big')}"
      f"{', quick' if opts.get('quick') == '1' else ''}; cases {opts.get('cases', 'kind,floor,rss,growth,tags')}"
      f"{'; sources ' + opts['sources'] if opts.get('sources') else ''}; {opts.get('kindload_version')} at {opts.get('commit')}")
    result["table"] = lines
    with open(out_path, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    print("\n".join(lines))


def main(argv):
    if argv[0] == "kindload-fields":
        kindload_fields(*argv[1:4])
    elif argv[0] == "transport":
        print(transport_of(json.load(open(argv[1]))))
    elif argv[0] == "node-bytes":
        node_bytes(argv[1:])
    elif argv[0] == "check":
        sys.exit(check(argv[1], argv[2], argv[3], argv[4:]))
    elif argv[0] == "summary":
        opts = {}
        rest = argv[3:]
        for i in range(0, len(rest), 2):
            opts[rest[i].lstrip("-").replace("-", "_")] = rest[i + 1]
        summary(argv[1], argv[2], opts)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
